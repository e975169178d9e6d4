//! Reading stored layers: uncompressed by media type, verified against diffIDs.

use std::io::{Read, Seek};

use strata_layer::Compression;
use strata_oci::{Digest, DigestReader};
use strata_store::{BlobRef, Store};

use crate::{ImageError, Result};

/// The uncompressed tar stream of a stored layer blob.
pub fn open_layer(store: &Store, layer: &BlobRef) -> Result<Box<dyn Read>> {
    let compression = Compression::from_media_type(&layer.media_type)?;
    let file = store.open_blob(&layer.digest)?;
    Ok(strata_layer::decompress(
        compression,
        std::io::BufReader::with_capacity(1 << 20, file),
    )?)
}

/// Sizes measured by reading a layer once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSizes {
    /// Bytes of the uncompressed tar.
    pub uncompressed: u64,
    /// Bytes of content (see [`strata_store::LayerRecord::content_size`]).
    pub content: u64,
}

/// Adds up what Docker counts as a layer's size: regular files and symlink targets, hardlinks
/// not again.
fn content_size<R: Read>(entries: tar::Entries<'_, R>, layer: &BlobRef) -> Result<u64> {
    let mut size = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| invalid_tar(layer, e))?;
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_file() {
            size += entry.size();
        } else if kind.is_symlink() {
            size += entry.link_name_bytes().map_or(0, |l| l.len() as u64);
        }
    }
    Ok(size)
}

fn invalid_tar(layer: &BlobRef, e: std::io::Error) -> ImageError {
    ImageError::Document {
        what: "layer",
        digest: layer.digest.to_string(),
        message: format!("not a valid tar: {e}"),
    }
}

/// The sizes of a layer blob: from the catalog when already measured for this blob, otherwise by
/// [`scan_layer`] (which also verifies the diffID).
pub fn measured_sizes(
    store: &Store,
    catalog: &strata_store::Catalog,
    layer: &BlobRef,
    diff_id: &Digest,
) -> Result<LayerSizes> {
    let known =
        catalog
            .layers
            .get(diff_id)
            .and_then(|l| match (l.uncompressed_size, l.content_size) {
                (Some(uncompressed), Some(content))
                    if l.blobs.iter().any(|b| b.digest == layer.digest) =>
                {
                    Some(LayerSizes {
                        uncompressed,
                        content,
                    })
                }
                _ => None,
            });
    match known {
        Some(sizes) => Ok(sizes),
        None => scan_layer(store, layer, diff_id),
    }
}

/// Reads a layer once: checks it uncompresses to `diff_id` and measures it. An uncompressed
/// layer is its own diffID (checked when it was ingested), so only its headers are read.
pub fn scan_layer(store: &Store, layer: &BlobRef, diff_id: &Digest) -> Result<LayerSizes> {
    let compression = Compression::from_media_type(&layer.media_type)?;
    if compression == Compression::None {
        if layer.digest != *diff_id {
            return Err(ImageError::Document {
                what: "layer",
                digest: layer.digest.to_string(),
                message: format!(
                    "is uncompressed, so its diff_id must equal its digest, but the config says {diff_id}"
                ),
            });
        }
        let mut file = store.open_blob(&layer.digest)?;
        let uncompressed = file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| ImageError::io(layer.digest.to_string(), e))?;
        file.rewind()
            .map_err(|e| ImageError::io(layer.digest.to_string(), e))?;
        let mut archive = tar::Archive::new(file);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| invalid_tar(layer, e))?;
        return Ok(LayerSizes {
            uncompressed,
            content: content_size(entries, layer)?,
        });
    }
    let mut reader = DigestReader::new(open_layer(store, layer)?, diff_id.algorithm());
    let content = {
        let mut archive = tar::Archive::new(&mut reader);
        content_size(archive.entries().map_err(|e| invalid_tar(layer, e))?, layer)?
    };
    // The tar's end-of-archive padding belongs to the diffID too.
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| ImageError::io(format!("uncompressing layer {}", layer.digest), e))?;
    let (actual, uncompressed) = reader.finish();
    if actual != *diff_id {
        return Err(diff_id_mismatch(layer, &actual, diff_id));
    }
    Ok(LayerSizes {
        uncompressed,
        content,
    })
}

pub(crate) fn diff_id_mismatch(layer: &BlobRef, actual: &Digest, diff_id: &Digest) -> ImageError {
    ImageError::Document {
        what: "layer",
        digest: layer.digest.to_string(),
        message: format!("uncompresses to {actual}, but the config's diff_id is {diff_id}"),
    }
}
