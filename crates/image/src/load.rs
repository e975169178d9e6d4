//! `strata load`: `docker save` archives (legacy `<id>/layer.tar` and Docker 25's OCI layout
//! with `manifest.json`) and OCI archives, streamed once into the store.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::json;
use strata_layer::Compression;
use strata_oci::{Digest, Platform, Reference, media_types};
use strata_store::{BlobRef, Catalog, ImageRecord, LayerRecord, Store};

use crate::document::{
    Config, Document, Index, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, choose_platform, parse_config,
    parse_document,
};
use crate::layer_io::{self, LayerSizes};
use crate::{ImageError, Result, gc};

/// Small metadata members kept in memory; anything larger is treated as a blob.
const MAX_METADATA_MEMBER: u64 = 8 << 20;
const MAX_METADATA_TOTAL: u64 = 256 << 20;
const MAX_MEMBERS: u64 = 1_000_000;
const MAX_LINK_HOPS: usize = 16;

/// An image the archive held, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    pub names: Vec<Reference>,
    /// Tags that pointed at another image before, with that image's ID.
    pub displaced: Vec<(Reference, Digest)>,
}

#[derive(Debug)]
enum Member {
    Blob(Digest),
    Bytes(Vec<u8>),
    Link(String),
}

/// Loads every image in the archive. On failure nothing is recorded and blobs this load added
/// are removed again; a concurrent load of the same archive is unaffected.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<LoadedImage>> {
    let lock = store.lock_content_shared()?;
    let mut added = Vec::new();
    let result = load_locked(store, input, &mut added);
    drop(lock);
    if result.is_err()
        && !added.is_empty()
        && let Err(e) = gc::remove_unreferenced(store, &added)
    {
        tracing::warn!("could not remove blobs of the failed load: {e}");
    }
    result
}

fn load_locked(
    store: &Store,
    input: impl Read,
    added: &mut Vec<Digest>,
) -> Result<Vec<LoadedImage>> {
    let members = read_members(store, input, added)?;
    let catalog = store.catalog()?;
    let mut planned: Vec<Planned> = Vec::new();

    let index = match members.get("index.json") {
        Some(_) => Some(parse_layout_index(&members)?),
        None => None,
    };
    // Each descriptor of index.json, checked once: (plan or why not, names from annotations).
    let mut oci_candidates: Vec<(Result<Planned>, Vec<Reference>)> = Vec::new();
    if let Some(index) = &index {
        for entry in &index.manifests {
            let names = names_from_annotations(entry.annotations.as_ref());
            oci_candidates.push((plan_target(store, &catalog, &entry.descriptor), names));
        }
    }

    if members.contains_key("manifest.json") {
        for entry in parse_docker_manifest(&members)? {
            let names = parse_repo_tags(entry.repo_tags.as_deref().unwrap_or_default())?;
            let config_bytes = member_bytes(store, &members, &entry.config, MAX_CONFIG_BYTES)?;
            let config_digest = Digest::sha256_of(&config_bytes);
            // Docker 25 archives also list the manifest in index.json: keep its digest.
            let matching = oci_candidates.iter().position(|(plan, _)| {
                plan.as_ref()
                    .is_ok_and(|p| p.record.config == config_digest)
            });
            let mut plan = match matching {
                Some(position) => {
                    let (plan, extra_names) = oci_candidates.remove(position);
                    let mut plan = plan?;
                    plan.names.extend(extra_names);
                    plan
                }
                None => plan_legacy(store, &catalog, &members, &entry, &config_bytes, added)?,
            };
            plan.names.extend(names);
            planned.push(plan);
        }
    } else if index.is_none() {
        return Err(ImageError::archive(
            "<archive>",
            "neither manifest.json nor index.json found: not a docker save or OCI archive",
        ));
    }
    for (plan, names) in oci_candidates {
        let mut plan = plan?;
        plan.names.extend(names);
        planned.push(plan);
    }
    if planned.is_empty() {
        return Err(ImageError::archive(
            "<archive>",
            "the archive lists no images",
        ));
    }
    commit(store, planned)
}

/// What one image will add to the catalog once everything has checked out.
struct Planned {
    record: ImageRecord,
    names: Vec<Reference>,
    layers: Vec<(Digest, BlobRef, LayerSizes)>,
}

fn commit(store: &Store, planned: Vec<Planned>) -> Result<Vec<LoadedImage>> {
    let now = chrono::Utc::now();
    let loaded = store.update::<_, ImageError>(|catalog: &mut Catalog| {
        let mut loaded = Vec::new();
        for plan in planned {
            let key = plan.record.target.digest.clone();
            let mut record = plan.record;
            if let Some(existing) = catalog.images.get(&key) {
                record.added_at = existing.added_at;
                record.repo_digests = existing.repo_digests.clone();
            }
            let mut names = plan.names;
            names.dedup();
            if !names.is_empty() {
                record.last_tag_time = Some(now);
            }
            let id = record.config.clone();
            catalog.images.insert(key.clone(), record);
            for (diff_id, blob, sizes) in plan.layers {
                upsert_layer(catalog, diff_id, blob, sizes);
            }
            let mut displaced = Vec::new();
            for name in &names {
                if let Some(previous) = catalog.set_tag(name, &key)
                    && let Some(old) = catalog.images.get(&previous)
                {
                    displaced.push((name.clone(), old.config.clone()));
                }
            }
            loaded.push(LoadedImage {
                id,
                names,
                displaced,
            });
        }
        Ok(loaded)
    })?;
    Ok(loaded)
}

/// Records that `blob` holds the layer `diff_id` (with its measured sizes).
pub fn upsert_layer(catalog: &mut Catalog, diff_id: Digest, blob: BlobRef, sizes: LayerSizes) {
    let layer: &mut LayerRecord = catalog.layers.entry(diff_id).or_default();
    if !layer.blobs.iter().any(|b| b.digest == blob.digest) {
        layer.blobs.push(blob);
    }
    layer.uncompressed_size = Some(sizes.uncompressed);
    layer.content_size = Some(sizes.content);
}

fn read_members(
    store: &Store,
    input: impl Read,
    added: &mut Vec<Digest>,
) -> Result<BTreeMap<String, Member>> {
    let mut archive = tar::Archive::new(input);
    let mut members = BTreeMap::new();
    let mut metadata_total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| ImageError::archive("<archive>", e.to_string()))?;
    for (count, entry) in entries.enumerate() {
        if count as u64 >= MAX_MEMBERS {
            return Err(ImageError::archive(
                "<archive>",
                format!("more than {MAX_MEMBERS} members"),
            ));
        }
        let mut entry =
            entry.map_err(|e| ImageError::archive("<archive>", format!("unreadable tar: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = normalize_member_name(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| ImageError::archive(&name, "link without a target"))?
                .into_owned();
            let target = String::from_utf8_lossy(&target).into_owned();
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                normalize_member_name(format!("{dir}/{target}").as_bytes())?
            } else {
                normalize_member_name(target.as_bytes())?
            };
            members.insert(name, Member::Link(resolved));
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if let Some(digest) = blob_member_digest(&name) {
            let ingested = store.ingest(&mut entry, Some(&digest))?;
            if ingested.created {
                added.push(ingested.digest.clone());
            }
            members.insert(name, Member::Blob(digest));
        } else if is_metadata_name(&name) && size <= MAX_METADATA_MEMBER {
            metadata_total += size;
            if metadata_total > MAX_METADATA_TOTAL {
                return Err(ImageError::archive(
                    &name,
                    "metadata members exceed the 256 MiB bound",
                ));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .by_ref()
                .take(MAX_METADATA_MEMBER + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| ImageError::archive(&name, e.to_string()))?;
            members.insert(name, Member::Bytes(bytes));
        } else {
            let ingested = store.ingest(&mut entry, None)?;
            if ingested.created {
                added.push(ingested.digest.clone());
            }
            members.insert(name, Member::Blob(ingested.digest));
        }
    }
    Ok(members)
}

/// Member names are only keys, never paths we write to, but links between them must resolve
/// inside the archive.
fn normalize_member_name(raw: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ImageError::archive(
                        text.as_ref(),
                        "path escapes the archive root",
                    ));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

fn blob_member_digest(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    format!("{algorithm}:{hex}").parse().ok()
}

fn is_metadata_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.ends_with(".json") || matches!(base, "json" | "VERSION" | "repositories" | "oci-layout")
}

fn resolve<'a>(members: &'a BTreeMap<String, Member>, name: &str) -> Result<&'a Member> {
    let mut current = normalize_member_name(name.as_bytes())?;
    for _ in 0..MAX_LINK_HOPS {
        match members.get(&current) {
            Some(Member::Link(target)) => current = target.clone(),
            Some(member) => return Ok(member),
            None => {
                return Err(ImageError::archive(
                    name,
                    "referenced but not present in the archive",
                ));
            }
        }
    }
    Err(ImageError::archive(name, "too many levels of links"))
}

fn member_bytes(
    store: &Store,
    members: &BTreeMap<String, Member>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    match resolve(members, name)? {
        Member::Bytes(bytes) => Ok(bytes.clone()),
        Member::Blob(digest) => Ok(store.read_blob(digest, limit)?),
        Member::Link(_) => Err(ImageError::archive(name, "unresolved link")),
    }
}

fn parse_layout_index(members: &BTreeMap<String, Member>) -> Result<Index> {
    let Ok(Member::Bytes(bytes)) = resolve(members, "index.json") else {
        return Err(ImageError::archive("index.json", "not a readable file"));
    };
    #[derive(Deserialize)]
    struct RawIndex {
        #[serde(default)]
        manifests: Option<Vec<crate::document::IndexEntry>>,
    }
    let raw: RawIndex = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::archive("index.json", e.to_string()))?;
    Ok(Index {
        media_type: Some(media_types::OCI_INDEX.to_string()),
        manifests: raw.manifests.unwrap_or_default(),
    })
}

#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn parse_docker_manifest(members: &BTreeMap<String, Member>) -> Result<Vec<DockerManifestEntry>> {
    let Ok(Member::Bytes(bytes)) = resolve(members, "manifest.json") else {
        return Err(ImageError::archive("manifest.json", "not a readable file"));
    };
    let entries: Option<Vec<DockerManifestEntry>> = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::archive("manifest.json", e.to_string()))?;
    match entries {
        None => Err(ImageError::archive(
            "manifest.json",
            "is null: the archive describes no image",
        )),
        Some(entries) if entries.is_empty() => {
            Err(ImageError::archive("manifest.json", "lists no image"))
        }
        Some(entries) => Ok(entries),
    }
}

fn parse_repo_tags(tags: &[String]) -> Result<Vec<Reference>> {
    tags.iter()
        .map(|tag| {
            Reference::parse(tag)
                .map(Reference::with_default_tag)
                .map_err(|e| {
                    ImageError::archive("manifest.json", format!("RepoTags entry {tag:?}: {e}"))
                })
        })
        .collect()
}

fn names_from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Vec<Reference> {
    let Some(annotations) = annotations else {
        return Vec::new();
    };
    let full = annotations
        .get(strata_store::layout::CONTAINERD_NAME)
        .or_else(|| {
            annotations
                .get(strata_store::layout::REF_NAME)
                .filter(|n| n.contains([':', '/', '@']))
        });
    full.and_then(|n| Reference::parse(n).ok())
        .map(Reference::with_default_tag)
        .into_iter()
        .collect()
}

/// Checks an OCI descriptor from the archive's index.json and everything under it.
fn plan_target(store: &Store, catalog: &Catalog, target: &BlobRef) -> Result<Planned> {
    let bytes = read_verified(store, target, MAX_MANIFEST_BYTES)?;
    let (manifest_ref, manifest_bytes) = match parse_document(&bytes, &target.digest)? {
        Document::Manifest(_) => (target.clone(), bytes),
        Document::Index(index) => {
            let host = Platform::host();
            let child =
                choose_platform(store, &index, &host).ok_or_else(|| ImageError::Document {
                    what: "index",
                    digest: target.digest.to_string(),
                    message: format!("the archive holds no manifest for platform {host}"),
                })?;
            let child_bytes = read_verified(store, &child.descriptor, MAX_MANIFEST_BYTES)?;
            (child.descriptor.clone(), child_bytes)
        }
    };
    let Document::Manifest(manifest) = parse_document(&manifest_bytes, &manifest_ref.digest)?
    else {
        return Err(ImageError::Document {
            what: "index",
            digest: target.digest.to_string(),
            message: "nested indexes are not supported".into(),
        });
    };
    let config_bytes = read_verified(store, &manifest.config, MAX_CONFIG_BYTES)?;
    let config = parse_config(&config_bytes, &manifest.config.digest)?;
    let layers = verify_layers(
        store,
        catalog,
        &manifest_ref.digest,
        &manifest.layers,
        &config,
    )?;
    Ok(Planned {
        record: new_record(target.clone(), manifest_ref.digest, manifest.config.digest),
        names: Vec::new(),
        layers,
    })
}

/// Builds an OCI manifest for a legacy `docker save` entry, as Docker 25 does when it saves: the
/// config bytes (and so the image ID) stay as they are, and OCI tools can read the result.
fn plan_legacy(
    store: &Store,
    catalog: &Catalog,
    members: &BTreeMap<String, Member>,
    entry: &DockerManifestEntry,
    config_bytes: &[u8],
    added: &mut Vec<Digest>,
) -> Result<Planned> {
    let config_blob = store.ingest_bytes(config_bytes)?;
    if config_blob.created {
        added.push(config_blob.digest.clone());
    }
    let config = parse_config(config_bytes, &config_blob.digest)?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(ImageError::archive(
            "manifest.json",
            format!(
                "{} lists {} layers but its config has {} diff_ids",
                entry.config,
                entry.layers.len(),
                config.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for path in &entry.layers {
        let Member::Blob(digest) = resolve(members, path)? else {
            return Err(ImageError::archive(path, "layer is not a file"));
        };
        let mut head = [0u8; 8];
        let mut file = store.open_blob(digest)?;
        let n = read_up_to(&mut file, &mut head).map_err(|e| ImageError::io(path.clone(), e))?;
        let compression = Compression::sniff(&head[..n]);
        let media_type = match compression {
            Compression::None => media_types::OCI_LAYER,
            Compression::Gzip => media_types::OCI_LAYER_GZIP,
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
        };
        layers.push(BlobRef {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: store.blob_size(digest)?,
        });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "size": config_blob.size,
            "digest": config_blob.digest.to_string(),
        },
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON values serialise");
    let manifest_blob = store.ingest_bytes(&manifest_bytes)?;
    if manifest_blob.created {
        added.push(manifest_blob.digest.clone());
    }
    let verified = verify_layers(store, catalog, &manifest_blob.digest, &layers, &config)?;
    let target = BlobRef {
        media_type: media_types::OCI_MANIFEST.to_string(),
        digest: manifest_blob.digest.clone(),
        size: manifest_blob.size,
    };
    Ok(Planned {
        record: new_record(target, manifest_blob.digest, config_blob.digest),
        names: Vec::new(),
        layers: verified,
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn new_record(target: BlobRef, manifest: Digest, config: Digest) -> ImageRecord {
    ImageRecord {
        target,
        manifest,
        config,
        added_at: chrono::Utc::now(),
        last_tag_time: None,
        repo_digests: Vec::new(),
        parent: None,
    }
}

/// Reads a descriptor's blob, checking it is present and of the declared size.
fn read_verified(store: &Store, descriptor: &BlobRef, limit: u64) -> Result<Vec<u8>> {
    let bytes = store
        .read_blob(&descriptor.digest, limit)
        .map_err(|e| match e {
            strata_store::StoreError::BlobNotFound(d) => ImageError::archive(
                format!("blobs/{}", d.to_string().replace(':', "/")),
                "referenced but not present in the archive",
            ),
            other => other.into(),
        })?;
    if bytes.len() as u64 != descriptor.size {
        return Err(ImageError::Document {
            what: "blob",
            digest: descriptor.digest.to_string(),
            message: format!(
                "is {} bytes but its descriptor says {}",
                bytes.len(),
                descriptor.size
            ),
        });
    }
    Ok(bytes)
}

/// Checks each layer is present with its declared size and uncompresses to its diffID (skipped
/// for layers the store already verified).
fn verify_layers(
    store: &Store,
    catalog: &Catalog,
    manifest: &Digest,
    layers: &[BlobRef],
    config: &Config,
) -> Result<Vec<(Digest, BlobRef, LayerSizes)>> {
    if layers.len() != config.diff_ids.len() {
        return Err(ImageError::Document {
            what: "manifest",
            digest: manifest.to_string(),
            message: format!(
                "has {} layers but its config lists {} diff_ids",
                layers.len(),
                config.diff_ids.len()
            ),
        });
    }
    let mut verified = Vec::new();
    for (layer, diff_id) in layers.iter().zip(&config.diff_ids) {
        let size = store.blob_size(&layer.digest).map_err(|_| {
            ImageError::archive(
                format!("blobs/{}", layer.digest.to_string().replace(':', "/")),
                "layer referenced but not present in the archive",
            )
        })?;
        if size != layer.size {
            return Err(ImageError::Document {
                what: "layer",
                digest: layer.digest.to_string(),
                message: format!("is {size} bytes but the manifest says {}", layer.size),
            });
        }
        let sizes = layer_io::measured_sizes(store, catalog, layer, diff_id)?;
        verified.push((diff_id.clone(), layer.clone(), sizes));
    }
    Ok(verified)
}
