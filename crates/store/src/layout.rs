//! The OCI image-layout views of the catalog.
//!
//! `<root>/index.json` lists every image, tagged ones annotated with their full reference, so the
//! root is one OCI layout holding everything. `<root>/repositories/<name>/` is an OCI layout per
//! repository whose `index.json` names images by tag alone and whose `blobs` is a symlink to the
//! shared blob directory: `skopeo inspect oci:<root>/repositories/docker.io/library/debian:12`
//! and `umoci unpack --image <same>` read it directly. A registry port's `:` is written `_`
//! (`localhost_5000`), since tools split `oci:` references at the first `:`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use strata_oci::{Reference, media_types};

use crate::blobs::write_atomic;
use crate::{Catalog, Result, Store, StoreError};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Makes `dir` a valid (possibly empty) OCI image layout.
pub(crate) fn ensure_layout_file(dir: &Path) -> Result<()> {
    let path = dir.join(LAYOUT_FILE);
    if !path.exists() {
        write_atomic(&path, LAYOUT_CONTENT)?;
    }
    let index = dir.join("index.json");
    if !index.exists() {
        write_atomic(&index, &index_document(Vec::new()))?;
    }
    Ok(())
}

fn index_document(manifests: Vec<Value>) -> Vec<u8> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let mut bytes = serde_json::to_vec_pretty(&index).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

fn descriptor(record: &crate::ImageRecord, annotations: &[(&str, &str)]) -> Value {
    let mut d = json!({
        "mediaType": record.target.media_type,
        "digest": record.target.digest.to_string(),
        "size": record.target.size,
    });
    if !annotations.is_empty() {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        d["annotations"] = Value::Object(map);
    }
    d
}

/// The directory of a repository's layout, relative to `repositories/`.
pub fn repository_dir(reference: &Reference) -> PathBuf {
    let mut dir = PathBuf::from(reference.domain().replace(':', "_"));
    dir.push(reference.path());
    dir
}

/// The views the catalog calls for: path relative to the root -> file bytes.
fn desired_views(catalog: &Catalog) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut root_manifests = Vec::new();
    let mut per_repo: BTreeMap<PathBuf, Vec<Value>> = BTreeMap::new();
    for (key, record) in &catalog.images {
        let tags = catalog.tags_of(key);
        if tags.is_empty() {
            root_manifests.push(descriptor(record, &[]));
        }
        for tag in tags {
            root_manifests.push(descriptor(
                record,
                &[(REF_NAME, tag), (CONTAINERD_NAME, tag)],
            ));
            let Ok(reference) = Reference::parse(tag) else {
                continue;
            };
            let Some(tag_only) = reference.tag() else {
                continue;
            };
            per_repo
                .entry(Path::new("repositories").join(repository_dir(&reference)))
                .or_default()
                .push(descriptor(record, &[(REF_NAME, tag_only)]));
        }
    }
    let mut views = BTreeMap::new();
    views.insert(PathBuf::from("index.json"), index_document(root_manifests));
    for (dir, mut manifests) in per_repo {
        manifests.sort_by(|a, b| {
            a["annotations"][REF_NAME]
                .as_str()
                .cmp(&b["annotations"][REF_NAME].as_str())
        });
        views.insert(dir.join("index.json"), index_document(manifests));
    }
    views
}

/// Brings every `index.json` view in line with `catalog` and removes views of repositories that
/// no longer have tags.
pub(crate) fn sync(store: &Store, catalog: &Catalog) -> Result<()> {
    let views = desired_views(catalog);
    for (relative, bytes) in &views {
        let path = store.root.join(relative);
        if std::fs::read(&path).is_ok_and(|existing| existing == *bytes) {
            continue;
        }
        let dir = path.parent().expect("views live in a directory");
        if dir != store.root {
            prepare_repository_dir(store, dir)?;
        }
        write_atomic(&path, bytes)?;
    }
    let mut existing = Vec::new();
    find_repository_indexes(&store.repositories_dir(), &mut existing)?;
    for index in existing {
        let relative = index
            .strip_prefix(&store.root)
            .unwrap_or(&index)
            .to_path_buf();
        if !views.contains_key(&relative) {
            remove_repository_dir(store, index.parent().expect("index.json has a parent"))?;
        }
    }
    Ok(())
}

fn prepare_repository_dir(store: &Store, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    ensure_layout_file(dir)?;
    let link = dir.join("blobs");
    if std::fs::symlink_metadata(&link).is_err() {
        let depth = dir
            .strip_prefix(&store.root)
            .map_or(0, |p| p.components().count());
        let target: PathBuf = std::iter::repeat_n("..", depth).chain(["blobs"]).collect();
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&link, e)),
        }
    }
    Ok(())
}

fn remove_repository_dir(store: &Store, dir: &Path) -> Result<()> {
    for name in ["index.json", LAYOUT_FILE, "blobs"] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    }
    // Remove now-empty parents up to `repositories/`; a non-empty one holds another repository.
    let stop = store.repositories_dir();
    let mut current = Some(dir);
    while let Some(d) = current {
        if d == stop || std::fs::remove_dir(d).is_err() {
            break;
        }
        current = d.parent();
    }
    Ok(())
}

fn find_repository_indexes(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let file_type = entry
            .file_type()
            .map_err(|e| StoreError::io(&entry.path(), e))?;
        if file_type.is_dir() {
            find_repository_indexes(&entry.path(), found)?;
        } else if entry.file_name() == "index.json" {
            found.push(entry.path());
        }
    }
    Ok(())
}
