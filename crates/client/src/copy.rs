//! `copy SRC DST` between registries, OCI layouts and archives, docker archives and the local
//! store. The image passes through a store: the local one when either end is local, else a
//! temporary one, so every path reuses the same verified ingest and record code.

use std::fs::File;
use std::path::Path;

use serde_json::Value;
use strata_image::document::{Document, MAX_MANIFEST_BYTES, StoredImage, parse_document};
use strata_oci::{Digest, Platform, Reference};
use strata_store::{BlobRef, Store, layout::REF_NAME};

use crate::config::with_pull_sources;
use crate::http::{ClientOptions, Registry};
use crate::layout::layout_blob_path;
use crate::location::Location;
use crate::pull::{choose_manifest, pull};
use crate::push::{plan, push};
use crate::record::{NewImage, record_image, stored_manifest};
use crate::{ClientError, Result};

#[derive(Debug, Clone)]
pub struct Copied {
    /// The digest of the manifest (or index) written to the destination.
    pub digest: Digest,
}

/// A temporary store, removed when dropped.
struct Staging {
    _dir: tempfile::TempDir,
    store: Store,
}

fn staging_store() -> Result<Staging> {
    let dir = tempfile::Builder::new()
        .prefix("strata-copy-")
        .tempdir()
        .map_err(|e| ClientError::io("creating a temporary store", e))?;
    let store = Store::open(dir.path())?;
    Ok(Staging { _dir: dir, store })
}

/// Copies one image from `source` to `destination`; `local` is the local store.
pub async fn copy(
    local: &Store,
    source: &Location,
    destination: &Location,
    options: &ClientOptions,
    platform: &Platform,
) -> Result<Copied> {
    if let (Location::Registry(reference), Location::OciDir { dir, tag }) = (source, destination) {
        let direct = with_pull_sources(reference.domain(), options, |registry| async move {
            crate::layout::registry_to_layout(&registry, reference, dir, tag.as_deref()).await
        })
        .await?;
        if let Some(digest) = direct {
            return Ok(Copied { digest });
        }
    }
    let uses_local =
        matches!(source, Location::Store(_)) || matches!(destination, Location::Store(_));
    let temporary = if uses_local {
        None
    } else {
        Some(staging_store()?)
    };
    let staging = temporary.as_ref().map_or(local, |t| &t.store);
    let local_names = match destination {
        Location::Store(name) => vec![parse_name(name)?],
        _ => Vec::new(),
    };
    let key = import(staging, source, options, platform, local_names.clone()).await?;
    let top = export(
        staging,
        temporary.is_some(),
        &key,
        destination,
        default_name(source),
        options,
    )
    .await?;
    if !local_names.is_empty() {
        tag_in(staging, &key, &local_names)?;
    }
    Ok(Copied { digest: top })
}

fn parse_name(name: &str) -> Result<Reference> {
    Reference::parse(name)
        .map(Reference::with_default_tag)
        .map_err(|e| ClientError::Location {
            input: name.into(),
            message: e.to_string(),
        })
}

/// The name a docker archive gets when the destination names none: the source's.
fn default_name(source: &Location) -> Option<Reference> {
    match source {
        Location::Registry(r) => {
            Some(r.without_digest().with_default_tag()).filter(|r| r.tag().is_some())
        }
        Location::Store(name) => Reference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(Reference::with_default_tag),
        Location::DockerArchive { reference, .. } => reference.clone(),
        _ => None,
    }
}

fn tag_in(store: &Store, key: &Digest, names: &[Reference]) -> Result<()> {
    store.update::<_, ClientError>(|catalog| {
        for name in names {
            catalog.set_tag(name, key);
        }
        Ok(())
    })
}

/// Brings the source image into `store`; returns its catalog key.
async fn import(
    store: &Store,
    source: &Location,
    options: &ClientOptions,
    platform: &Platform,
    names: Vec<Reference>,
) -> Result<Digest> {
    match source {
        Location::Registry(reference) => {
            let pulled = with_pull_sources(reference.domain(), options, |registry| {
                let names = names.clone();
                async move { pull(&registry, store, reference, platform, names, None).await }
            })
            .await?;
            Ok(pulled.recorded.key)
        }
        Location::Store(name) => {
            let catalog = store.catalog()?;
            Ok(StoredImage::resolve(store, &catalog, name)?
                .record
                .target
                .digest)
        }
        Location::OciDir { dir, tag } => import_oci_dir(store, dir, tag.as_deref(), platform),
        Location::OciArchive { file, tag } => {
            let unpacked = tempfile::Builder::new()
                .prefix("strata-oci-archive-")
                .tempdir()
                .map_err(|e| ClientError::io("creating a temporary directory", e))?;
            let input =
                File::open(file).map_err(|e| ClientError::io(file.display().to_string(), e))?;
            // The tar crate refuses members that would land outside the directory.
            tar::Archive::new(std::io::BufReader::new(input))
                .unpack(unpacked.path())
                .map_err(|e| ClientError::io(format!("unpacking {}", file.display()), e))?;
            import_oci_dir(store, unpacked.path(), tag.as_deref(), platform)
        }
        Location::DockerArchive { file, reference } => {
            let input =
                File::open(file).map_err(|e| ClientError::io(file.display().to_string(), e))?;
            let loaded = strata_image::load(store, std::io::BufReader::new(input))?;
            let chosen = match reference {
                Some(wanted) => loaded
                    .iter()
                    .find(|l| l.names.contains(wanted))
                    .ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "{} holds no image named {wanted}",
                            file.display()
                        ))
                    })?,
                None if loaded.len() == 1 => &loaded[0],
                None => {
                    return Err(ClientError::Invalid(format!(
                        "{} holds {} images: name one (docker-archive:FILE:REF)",
                        file.display(),
                        loaded.len()
                    )));
                }
            };
            let catalog = store.catalog()?;
            let key = chosen
                .names
                .first()
                .and_then(|n| catalog.tags.get(&n.to_string()).cloned())
                .or_else(|| catalog.keys_with_config(&chosen.id).into_iter().next())
                .ok_or_else(|| {
                    ClientError::Invalid(format!("{}: loaded image not found", file.display()))
                })?;
            Ok(key)
        }
    }
}

/// Writes the image `key` of `store` to the destination; returns the digest written.
/// `temporary`: `store` is a staging store of this copy, whose blob files may be hard-linked.
async fn export(
    store: &Store,
    temporary: bool,
    key: &Digest,
    destination: &Location,
    source_name: Option<Reference>,
    options: &ClientOptions,
) -> Result<Digest> {
    match destination {
        Location::Registry(reference) => {
            // A copy is byte for byte: the destination gets the source's digests.
            let options = ClientOptions {
                compress_layers: false,
                ..options.clone()
            };
            let registry = Registry::connect(reference.domain(), options).await?;
            Ok(push(&registry, store, &key.to_string(), reference)
                .await?
                .digest)
        }
        Location::Store(_) => Ok(key.clone()),
        Location::OciDir { dir, tag } => write_oci_dir(store, key, dir, tag.as_deref(), temporary),
        Location::OciArchive { file, tag } => {
            let dir = tempfile::Builder::new()
                .prefix("strata-oci-archive-")
                .tempdir()
                .map_err(|e| ClientError::io("creating a temporary directory", e))?;
            // The directory only lives until it is tarred: linking store blobs is safe.
            let digest = write_oci_dir(store, key, dir.path(), tag.as_deref(), true)?;
            write_tar(dir.path(), file)?;
            Ok(digest)
        }
        Location::DockerArchive { file, reference } => {
            // The archive names the image by tags of the store it is saved from: save it from
            // a temporary store holding just this image under the wanted name.
            let staging = staging_store()?;
            transfer(store, key, &staging.store)?;
            let name = reference.clone().or(source_name);
            let input = match &name {
                Some(name) => {
                    tag_in(&staging.store, key, std::slice::from_ref(name))?;
                    name.to_string()
                }
                None => key.to_string(),
            };
            let out = atomic_file(file)?;
            strata_image::save(
                &staging.store,
                &[input],
                strata_image::SaveFormat::Docker,
                std::io::BufWriter::new(out.as_file()),
            )?;
            out.persist(file)
                .map_err(|e| ClientError::io(file.display().to_string(), e.error))?;
            let catalog = staging.store.catalog()?;
            Ok(catalog
                .images
                .get(key)
                .map_or_else(|| key.clone(), |r| r.target.digest.clone()))
        }
    }
}

fn atomic_file(file: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(dir).map_err(|e| ClientError::io(dir.display().to_string(), e))
}

/// Copies image `key` (its stored blobs) from one store to another and records it there.
fn transfer(from: &Store, key: &Digest, to: &Store) -> Result<()> {
    let catalog = from.catalog()?;
    let record = catalog
        .images
        .get(key)
        .ok_or_else(|| strata_store::StoreError::ImageNotFound(key.to_string()))?;
    let image = StoredImage::load(from, record)?;
    for blob in image.blobs() {
        let input = from.open_blob(&blob.digest)?;
        to.ingest(std::io::BufReader::new(input), Some(&blob.digest))?;
    }
    record_image(
        to,
        NewImage {
            target: record.target.clone(),
            manifest: record.manifest.clone(),
            names: Vec::new(),
            repo_digest: None,
        },
    )?;
    Ok(())
}

/// Imports one image of an OCI image layout directory: the entry whose
/// `org.opencontainers.image.ref.name` is `tag`, or the only entry.
fn import_oci_dir(
    store: &Store,
    dir: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Digest> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path)
        .map_err(|e| ClientError::io(index_path.display().to_string(), e))?;
    let index: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", index_path.display())))?;
    let entries: Vec<&Value> = index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let ref_name = |e: &Value| {
        e.pointer("/annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let entry = match tag {
        Some(tag) => entries
            .iter()
            .find(|e| ref_name(e).as_deref() == Some(tag))
            .ok_or_else(|| ClientError::ManifestUnknown {
                reference: format!("oci:{}:{tag}", dir.display()),
            })?,
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(ClientError::Invalid(format!(
                "{} holds {} images: name one with oci:DIR:TAG",
                dir.display(),
                entries.len()
            )));
        }
    };
    let target: BlobRef = serde_json::from_value((*entry).clone())
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", index_path.display())))?;

    let lock = store.lock_content_shared()?;
    let mut added = Vec::new();
    let result = (|| {
        let mut ingest = |blob: &BlobRef| -> Result<()> {
            let path = layout_blob_path(dir, &blob.digest);
            let file =
                File::open(&path).map_err(|e| ClientError::io(path.display().to_string(), e))?;
            let ingested = store.ingest(std::io::BufReader::new(file), Some(&blob.digest))?;
            if ingested.created {
                added.push(ingested.digest.clone());
            }
            if ingested.size != blob.size {
                return Err(ClientError::Invalid(format!(
                    "{} is {} bytes but its descriptor says {}",
                    path.display(),
                    ingested.size,
                    blob.size
                )));
            }
            Ok(())
        };
        ingest(&target)?;
        let bytes = store.read_blob(&target.digest, MAX_MANIFEST_BYTES)?;
        let manifest_ref = match parse_document(&bytes, &target.digest)? {
            Document::Manifest(_) => target.clone(),
            Document::Index(index) => {
                let chosen = choose_manifest(&index, platform)?;
                ingest(&chosen)?;
                chosen
            }
        };
        let manifest = stored_manifest(store, &manifest_ref.digest)?;
        ingest(&manifest.config)?;
        for layer in &manifest.layers {
            ingest(layer)?;
        }
        record_image(
            store,
            NewImage {
                target: target.clone(),
                manifest: manifest_ref.digest.clone(),
                names: Vec::new(),
                repo_digest: None,
            },
        )
    })();
    drop(lock);
    if result.is_err()
        && !added.is_empty()
        && let Err(e) = strata_image::gc::remove_unreferenced(store, &added)
    {
        tracing::warn!("could not remove blobs of the failed copy: {e}");
    }
    Ok(result?.key)
}

/// Writes image `key` into an OCI image layout directory (created if needed), replacing the
/// entry that had the same `tag`; returns the digest of the entry. With `link`, blob files are
/// hard-linked from the store when they can be (never for a lasting layout from the local store,
/// whose blobs must not change if someone edits the layout).
fn write_oci_dir(
    store: &Store,
    key: &Digest,
    dir: &Path,
    tag: Option<&str>,
    link: bool,
) -> Result<Digest> {
    let catalog = store.catalog()?;
    let record = catalog
        .images
        .get(key)
        .ok_or_else(|| strata_store::StoreError::ImageNotFound(key.to_string()))?;
    let image = StoredImage::load(store, record)?;
    let (manifests, top) = plan(store, &image)?;
    let io = |p: &Path, e| ClientError::io(p.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut blobs: Vec<BlobRef> = vec![top.clone()];
    for m in &manifests {
        blobs.push(m.descriptor.clone());
        blobs.extend(m.blobs.iter().cloned());
    }
    for blob in &blobs {
        let path = layout_blob_path(dir, &blob.digest);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
            continue;
        }
        let parent = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        if link && std::fs::hard_link(store.blob_path(&blob.digest), &path).is_ok() {
            continue;
        }
        let temp = tempfile::NamedTempFile::new_in(parent).map_err(|e| io(parent, e))?;
        std::io::copy(&mut store.open_blob(&blob.digest)?, &mut temp.as_file())
            .map_err(|e| io(&path, e))?;
        temp.persist(&path).map_err(|e| io(&path, e.error))?;
    }
    crate::layout::ensure_layout(dir)?;
    crate::layout::write_index_entry(dir, &top, tag)?;
    Ok(top.digest)
}

/// Tars a directory (an OCI layout) into `file`, atomically.
fn write_tar(dir: &Path, file: &Path) -> Result<()> {
    let out = atomic_file(file)?;
    {
        let mut builder = tar::Builder::new(std::io::BufWriter::new(out.as_file()));
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", dir)
            .and_then(|_| builder.into_inner().map(drop))
            .map_err(|e| ClientError::io(file.display().to_string(), e))?;
    }
    out.persist(file)
        .map_err(|e| ClientError::io(file.display().to_string(), e.error))?;
    Ok(())
}
