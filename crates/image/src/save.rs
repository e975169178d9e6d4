//! `strata save`: a tar that `docker load` accepts (Docker 25's layout: an OCI image layout plus
//! `manifest.json` and `repositories`), or a plain OCI archive.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::{Map, Value, json};
use strata_oci::{Digest, Reference, media_types};
use strata_store::{Resolved, Store};

use crate::document::StoredImage;
use crate::{ImageError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// Loadable by `docker load` (Docker 25 style) and by OCI tools.
    Docker,
    /// A plain OCI image layout archive.
    Oci,
}

/// One image to write and the names it goes under.
struct Selected {
    image: StoredImage,
    names: Vec<Reference>,
}

/// Resolves what the user named; a name given by tag carries that tag into the archive, one
/// given by ID carries every tag of the image (as `docker save` does).
fn select(store: &Store, inputs: &[String]) -> Result<Vec<Selected>> {
    let catalog = store.catalog()?;
    let mut selected: Vec<Selected> = Vec::new();
    for input in inputs {
        let resolved = catalog.resolve(input)?;
        let (key, names) = match &resolved {
            Resolved::Tag { reference, key } => {
                let name = Reference::parse(reference).map_err(|e| ImageError::Reference {
                    input: reference.clone(),
                    message: e.to_string(),
                })?;
                (key.clone(), vec![name])
            }
            Resolved::Id { keys, .. } => {
                let key = keys[0].clone();
                let names = catalog
                    .tags_of(&key)
                    .iter()
                    .filter_map(|t| Reference::parse(t).ok())
                    .collect();
                (key, names)
            }
        };
        if let Some(existing) = selected
            .iter_mut()
            .find(|s| s.image.record.target.digest == key)
        {
            for name in names {
                if !existing.names.contains(&name) {
                    existing.names.push(name);
                }
            }
            continue;
        }
        let record = catalog
            .images
            .get(&key)
            .ok_or_else(|| strata_store::StoreError::ImageNotFound(input.clone()))?;
        selected.push(Selected {
            image: StoredImage::load(store, record)?,
            names,
        });
    }
    Ok(selected)
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// Writes the archive for `inputs` to `out`.
pub fn save(store: &Store, inputs: &[String], format: SaveFormat, out: impl Write) -> Result<()> {
    let selected = select(store, inputs)?;
    let mut builder = tar::Builder::new(out);
    let write_err = |e: io::Error| ImageError::io("writing the archive", e);

    let mut written: BTreeSet<Digest> = BTreeSet::new();
    append_dir(&mut builder, "blobs/").map_err(write_err)?;
    let mut algorithms = BTreeSet::new();
    for s in &selected {
        for blob in s.image.blobs() {
            if algorithms.insert(blob.digest.algorithm().to_string()) {
                append_dir(&mut builder, &format!("blobs/{}/", blob.digest.algorithm()))
                    .map_err(write_err)?;
            }
            if !written.insert(blob.digest.clone()) {
                continue;
            }
            let file = store.open_blob(&blob.digest)?;
            let size = file
                .metadata()
                .map_err(|e| ImageError::io(blob.digest.to_string(), e))?
                .len();
            let mut header = file_header(size);
            builder
                .append_data(&mut header, blob_path(&blob.digest), file)
                .map_err(write_err)?;
        }
    }

    let mut manifests = Vec::new();
    for s in &selected {
        let target = &s.image.record.target;
        let descriptor = |annotations: Option<Map<String, Value>>| {
            let mut d = json!({
                "mediaType": target.media_type,
                "digest": target.digest.to_string(),
                "size": target.size,
            });
            if let Some(a) = annotations {
                d["annotations"] = Value::Object(a);
            }
            d
        };
        if s.names.is_empty() {
            manifests.push(descriptor(None));
        }
        for name in &s.names {
            let mut annotations = Map::new();
            annotations.insert("io.containerd.image.name".into(), name.to_string().into());
            if let Some(tag) = name.tag() {
                annotations.insert("org.opencontainers.image.ref.name".into(), tag.into());
            }
            manifests.push(descriptor(Some(annotations)));
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    append_json(&mut builder, "index.json", &index).map_err(write_err)?;

    if format == SaveFormat::Docker {
        let docker_manifest: Vec<Value> = selected
            .iter()
            .map(|s| {
                json!({
                    "Config": blob_path(&s.image.manifest.config.digest),
                    "RepoTags": s.names.iter().map(Reference::familiar_string).collect::<Vec<_>>(),
                    "Layers": s.image.manifest.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
                })
            })
            .collect();
        append_json(
            &mut builder,
            "manifest.json",
            &Value::Array(docker_manifest),
        )
        .map_err(write_err)?;
        let mut repositories = Map::new();
        for s in &selected {
            let Some(top) = s.image.config.diff_ids.last() else {
                continue;
            };
            for name in &s.names {
                let Some(tag) = name.tag() else { continue };
                let entry = repositories
                    .entry(name.familiar_name())
                    .or_insert_with(|| json!({}));
                entry[tag] = Value::String(top.hex().to_string());
            }
        }
        append_json(&mut builder, "repositories", &Value::Object(repositories))
            .map_err(write_err)?;
    }
    append_json(
        &mut builder,
        "oci-layout",
        &json!({"imageLayoutVersion": "1.0.0"}),
    )
    .map_err(write_err)?;
    builder
        .into_inner()
        .map_err(write_err)?
        .flush()
        .map_err(write_err)?;
    Ok(())
}

/// Headers carry no host detail (owner, time), so the same images always give the same bytes.
fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = file_header(0);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    builder.append_data(&mut header, path, io::empty())
}

fn append_json<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    value: &Value,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).expect("JSON values serialise");
    let mut header = file_header(bytes.len() as u64);
    builder.append_data(&mut header, path, bytes.as_slice())
}
