//! Reachability from the catalog, pruning and disk usage.

use std::collections::{BTreeMap, BTreeSet};

use strata_oci::Digest;
use strata_store::{Catalog, ImageRecord, Store};

use crate::document::{Document, MAX_MANIFEST_BYTES, parse_document};
use crate::{ImageError, Result};

/// Blobs one image record needs: its target and, for what is present, everything below it.
fn blobs_of(store: &Store, record: &ImageRecord, into: &mut BTreeSet<Digest>) {
    let mut pending = vec![record.target.digest.clone()];
    while let Some(digest) = pending.pop() {
        if !into.insert(digest.clone()) {
            continue;
        }
        // A missing or unreadable manifest references nothing more; prune keeps what it can see.
        let Ok(bytes) = store.read_blob(&digest, MAX_MANIFEST_BYTES) else {
            continue;
        };
        match parse_document(&bytes, &digest) {
            Ok(Document::Index(index)) => {
                pending.extend(index.manifests.into_iter().map(|m| m.descriptor.digest))
            }
            Ok(Document::Manifest(manifest)) => {
                into.insert(manifest.config.digest);
                into.extend(manifest.layers.into_iter().map(|l| l.digest));
            }
            Err(_) => {}
        }
    }
}

/// Every blob some image record or build cache record in `catalog` needs.
pub fn referenced_blobs(store: &Store, catalog: &Catalog) -> BTreeSet<Digest> {
    let mut referenced = BTreeSet::new();
    for record in catalog.images.values() {
        blobs_of(store, record, &mut referenced);
    }
    referenced.extend(
        catalog
            .build_cache
            .values()
            .filter_map(|r| r.layer.as_ref().map(|l| l.blob.digest.clone())),
    );
    referenced
}

/// Removes those of `candidates` that no image needs. Waits for in-flight ingests to finish.
pub fn remove_unreferenced(store: &Store, candidates: &[Digest]) -> Result<()> {
    let _lock = store.lock_content_exclusive()?;
    let referenced = referenced_blobs(store, &store.catalog()?);
    for digest in candidates.iter().filter(|d| !referenced.contains(d)) {
        store.remove_blob(digest)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Also remove untagged images (Docker's dangling images).
    pub dangling_images: bool,
}

#[derive(Debug, Default)]
pub struct PruneReport {
    /// Image IDs of the removed untagged images.
    pub images: Vec<Digest>,
    pub blobs: Vec<(Digest, u64)>,
    pub partial_ingest_bytes: u64,
    /// chainIDs of the removed layer snapshots.
    pub snapshots: Vec<Digest>,
}

impl PruneReport {
    pub fn reclaimed_bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum::<u64>() + self.partial_ingest_bytes
    }
}

/// Removes blobs no image needs and leftovers of killed ingests (and, when asked, untagged
/// images), holding the content lock exclusively so nothing being added is touched.
pub fn prune(store: &Store, options: PruneOptions) -> Result<PruneReport> {
    let _lock = store.lock_content_exclusive()?;
    let mut report = PruneReport::default();
    let mut catalog = store.catalog()?;
    if options.dangling_images {
        let dangling: Vec<Digest> = catalog
            .images
            .keys()
            .filter(|k| catalog.is_dangling(k))
            .cloned()
            .collect();
        for key in &dangling {
            if let Some(record) = catalog.images.remove(key) {
                report.images.push(record.config);
            }
        }
        if !options.dry_run && !dangling.is_empty() {
            catalog = store.update::<_, ImageError>(|c| {
                for key in &dangling {
                    if c.is_dangling(key) {
                        c.images.remove(key);
                    }
                }
                Ok(c.clone())
            })?;
        }
    }
    let referenced = referenced_blobs(store, &catalog);
    report.blobs = store
        .list_blobs()?
        .into_iter()
        .filter(|(d, _)| !referenced.contains(d))
        .collect();
    report.snapshots = unneeded_snapshots(store, &catalog)?;
    if options.dry_run {
        return Ok(report);
    }
    for (digest, _) in &report.blobs {
        store.remove_blob(digest)?;
    }
    report.partial_ingest_bytes = store.remove_stale_ingests()?;
    remove_snapshot_dirs(store, &report.snapshots)?;
    // Layer records whose blobs are all gone describe nothing the store can serve.
    store.update::<_, ImageError>(|c| {
        for layer in c.layers.values_mut() {
            layer.blobs.retain(|b| referenced.contains(&b.digest));
        }
        c.layers.retain(|_, l| !l.blobs.is_empty());
        for chain in &report.snapshots {
            c.snapshots.remove(chain);
        }
        Ok(())
    })?;
    Ok(report)
}

/// Snapshots (recorded or only on disk) whose chain no image in `catalog` has. When an image
/// cannot be read, nothing is reported: better to keep a snapshot than to break an image.
fn unneeded_snapshots(store: &Store, catalog: &Catalog) -> Result<Vec<Digest>> {
    let mut needed = BTreeSet::new();
    for record in catalog.images.values() {
        match crate::document::StoredImage::load(store, record) {
            Ok(image) => needed.extend(crate::snapshot::chain_ids(&image.config.diff_ids)),
            Err(_) => return Ok(Vec::new()),
        }
    }
    let mut present: BTreeSet<Digest> = catalog.snapshots.keys().cloned().collect();
    let dir = store.snapshots_dir();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(chain) = name
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            {
                present.insert(chain);
            }
        }
    }
    Ok(present
        .into_iter()
        .filter(|c| !needed.contains(c))
        .collect())
}

/// Removes snapshot directories and leftovers of interrupted unpacks (`.tmp-*`). Only safe
/// under the exclusive content lock.
fn remove_snapshot_dirs(store: &Store, chains: &[Digest]) -> Result<()> {
    let dir = store.snapshots_dir();
    let mut doomed: Vec<std::path::PathBuf> = chains.iter().map(|c| dir.join(c.hex())).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        doomed.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .map(|e| e.path()),
        );
    }
    for path in doomed {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ImageError::io(
                    format!("removing snapshot {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// What `system df` reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub images: usize,
    /// Images with at least one tag.
    pub tagged_images: usize,
    /// Bytes of blobs that some image needs.
    pub image_bytes: u64,
    /// Bytes of blobs needed only by untagged images.
    pub untagged_only_bytes: u64,
    pub unreferenced_blobs: usize,
    pub unreferenced_bytes: u64,
}

pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let catalog = store.catalog()?;
    let sizes: BTreeMap<Digest, u64> = store.list_blobs()?.into_iter().collect();
    let mut tagged_needs = BTreeSet::new();
    let mut all_needs = BTreeSet::new();
    let mut usage = DiskUsage {
        images: catalog.images.len(),
        ..DiskUsage::default()
    };
    for (key, record) in &catalog.images {
        blobs_of(store, record, &mut all_needs);
        if !catalog.is_dangling(key) {
            usage.tagged_images += 1;
            blobs_of(store, record, &mut tagged_needs);
        }
    }
    for (digest, size) in &sizes {
        if all_needs.contains(digest) {
            usage.image_bytes += size;
            if !tagged_needs.contains(digest) {
                usage.untagged_only_bytes += size;
            }
        } else {
            usage.unreferenced_blobs += 1;
            usage.unreferenced_bytes += size;
        }
    }
    Ok(usage)
}
