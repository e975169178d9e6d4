//! Unpacked layer snapshots: each layer of an image applied on its own into
//! `snapshots/<chainID hex>/fs`, whiteouts kept as overlayfs whiteouts, so that an image's
//! snapshots stacked as overlay lower directories (top first) give its root filesystem. A
//! snapshot is shared by every image whose layers start with the same chain.

use std::path::PathBuf;

use strata_oci::{Digest, DigestReader};
use strata_store::{SnapshotRecord, Store};

use crate::document::StoredImage;
use crate::{ImageError, Result, layer_io};

/// The OCI chainIDs of a layer stack: chainID(L0) = diffID(L0), chainID(Ln) =
/// sha256(chainID(Ln-1) + " " + diffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
        };
        chains.push(chain);
    }
    chains
}

/// The `fs` directory of a snapshot.
pub fn snapshot_fs(store: &Store, chain: &Digest) -> PathBuf {
    store.snapshots_dir().join(chain.hex()).join("fs")
}

/// Unpacks whatever layers of `image` have no snapshot yet and returns the snapshot directories,
/// bottom layer first. Needs root: overlay whiteouts are device nodes.
pub fn prepare(store: &Store, image: &StoredImage) -> Result<Vec<PathBuf>> {
    let _lock = store.lock_content_shared()?;
    let chains = chain_ids(&image.config.diff_ids);
    let catalog = store.catalog()?;
    let dir = store.snapshots_dir();
    std::fs::create_dir_all(&dir).map_err(|e| ImageError::io(dir.display().to_string(), e))?;
    let mut new_records = Vec::new();
    for (index, (layer, diff_id)) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.diff_ids)
        .enumerate()
    {
        let chain = &chains[index];
        let target = dir.join(chain.hex());
        if !(catalog.snapshots.contains_key(chain) && target.join("fs").is_dir()) {
            if !target.join("fs").is_dir() {
                unpack_snapshot(store, layer, diff_id, &target)?;
            }
            new_records.push((
                chain.clone(),
                SnapshotRecord {
                    diff_id: diff_id.clone(),
                    parent: index.checked_sub(1).map(|i| chains[i].clone()),
                    created_at: chrono::Utc::now(),
                },
            ));
        }
    }
    if !new_records.is_empty() {
        store.update::<_, ImageError>(|catalog| {
            for (chain, record) in new_records {
                catalog.snapshots.entry(chain).or_insert(record);
            }
            Ok(())
        })?;
    }
    Ok(chains.iter().map(|c| snapshot_fs(store, c)).collect())
}

/// One layer of a stack for [`ensure`]: its stored blob and diffID.
pub struct StackLayer<'a> {
    pub blob: &'a strata_store::BlobRef,
    pub diff_id: &'a Digest,
}

/// The snapshot directories of a layer stack (bottom first), unpacking the missing ones. Like
/// [`prepare`] for layers that belong to no image yet (a build's intermediate layers).
pub fn ensure(store: &Store, layers: &[StackLayer<'_>]) -> Result<Vec<PathBuf>> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let dir = store.snapshots_dir();
    std::fs::create_dir_all(&dir).map_err(|e| ImageError::io(dir.display().to_string(), e))?;
    let catalog = store.catalog()?;
    let mut new_records = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let chain = &chains[index];
        let target = dir.join(chain.hex());
        if !target.join("fs").is_dir() {
            unpack_snapshot(store, layer.blob, layer.diff_id, &target)?;
        }
        if !catalog.snapshots.contains_key(chain) {
            new_records.push((
                chain.clone(),
                SnapshotRecord {
                    diff_id: layer.diff_id.clone(),
                    parent: index.checked_sub(1).map(|i| chains[i].clone()),
                    created_at: chrono::Utc::now(),
                },
            ));
        }
    }
    record(store, new_records)?;
    Ok(chains.iter().map(|c| snapshot_fs(store, c)).collect())
}

/// Makes `dir` (a layer's content in snapshot form: overlay whiteouts, on the store's file
/// system) the snapshot of `chain`, by renaming it; when that snapshot exists already, `dir`
/// is left alone. Returns the snapshot's `fs` directory.
pub fn adopt(
    store: &Store,
    dir: &std::path::Path,
    chain: &Digest,
    parent: Option<&Digest>,
    diff_id: &Digest,
) -> Result<PathBuf> {
    let snapshots = store.snapshots_dir();
    std::fs::create_dir_all(&snapshots)
        .map_err(|e| ImageError::io(snapshots.display().to_string(), e))?;
    let target = snapshots.join(chain.hex());
    if !target.join("fs").is_dir() {
        let temp = snapshots.join(format!(".tmp-{}-adopt-{}", std::process::id(), chain.hex()));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir(&temp).map_err(|e| ImageError::io(temp.display().to_string(), e))?;
        std::fs::rename(dir, temp.join("fs"))
            .map_err(|e| ImageError::io(format!("moving {} into a snapshot", dir.display()), e))?;
        if std::fs::rename(&temp, &target).is_err() {
            // Another build made the same snapshot first: identical content, keep theirs.
            let _ = std::fs::remove_dir_all(&temp);
        }
    }
    record(
        store,
        vec![(
            chain.clone(),
            SnapshotRecord {
                diff_id: diff_id.clone(),
                parent: parent.cloned(),
                created_at: chrono::Utc::now(),
            },
        )],
    )?;
    Ok(snapshot_fs(store, chain))
}

fn record(store: &Store, records: Vec<(Digest, SnapshotRecord)>) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    store.update::<_, ImageError>(|catalog| {
        for (chain, record) in records {
            catalog.snapshots.entry(chain).or_insert(record);
        }
        Ok(())
    })
}

/// Applies one layer into a private directory and renames it into place, so a snapshot
/// directory is either absent or complete.
fn unpack_snapshot(
    store: &Store,
    layer: &strata_store::BlobRef,
    diff_id: &Digest,
    target: &std::path::Path,
) -> Result<()> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temp = store.snapshots_dir().join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let fs_dir = temp.join("fs");
    let result = (|| {
        std::fs::create_dir_all(&fs_dir)
            .map_err(|e| ImageError::io(fs_dir.display().to_string(), e))?;
        let options = strata_layer::ApplyOptions {
            overlay_whiteouts: true,
            ..Default::default()
        };
        let mut reader =
            DigestReader::new(layer_io::open_layer(store, layer)?, diff_id.algorithm());
        strata_layer::apply_layer(&fs_dir, &mut reader, &options)?;
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| ImageError::io(format!("reading layer {}", layer.digest), e))?;
        let (actual, _) = reader.finish();
        if actual != *diff_id {
            return Err(layer_io::diff_id_mismatch(layer, &actual, diff_id));
        }
        match std::fs::rename(&temp, target) {
            Ok(()) => Ok(()),
            // Another process made the same snapshot first: identical content, keep theirs.
            Err(_) if target.join("fs").is_dir() => {
                let _ = std::fs::remove_dir_all(&temp);
                Ok(())
            }
            Err(e) => Err(ImageError::io(
                format!("renaming the snapshot into {}", target.display()),
                e,
            )),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
