//! `strata import`: a root filesystem (directory or tarball) as a one-layer image, and
//! `strata export`: an image's merged filesystem as one tarball.

use std::io::{Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use strata_layer::{Compression, CreateOptions};
use strata_oci::{Algorithm, Digest, Platform, Reference, media_types};
use strata_store::{BlobRef, Store};

use crate::change::apply_change;
use crate::commit::{NewLayer, commit_image};
use crate::document::StoredImage;
use crate::{ImageError, Result, gc, layer_io};

pub enum ImportSource {
    /// A directory to archive.
    Dir(PathBuf),
    /// A tarball, plain or compressed (gzip, zstd), from a file or standard input.
    Tarball { reader: Box<dyn Read>, name: String },
}

pub struct ImportOptions {
    pub reference: Option<Reference>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Platform,
    /// Clamps file times and sets the image's creation time, for reproducible images.
    pub source_date_epoch: Option<i64>,
}

/// Imports `source`; returns the new image ID.
pub fn import(store: &Store, source: ImportSource, options: &ImportOptions) -> Result<Digest> {
    let mut config_fields = Map::new();
    for change in &options.changes {
        apply_change(&mut config_fields, change)?;
    }
    let lock = store.lock_content_shared()?;
    let mut added = Vec::new();
    let result = import_locked(store, source, options, config_fields, &mut added);
    drop(lock);
    if result.is_err() && !added.is_empty() {
        let _ = gc::remove_unreferenced(store, &added);
    }
    result
}

fn import_locked(
    store: &Store,
    source: ImportSource,
    options: &ImportOptions,
    config_fields: Map<String, Value>,
    added: &mut Vec<Digest>,
) -> Result<Digest> {
    let (layer, source_name) = match source {
        ImportSource::Dir(dir) => {
            let writer = store.blob_writer(Algorithm::Sha256)?;
            let create = CreateOptions {
                source_date_epoch: options.source_date_epoch,
                ..CreateOptions::default()
            };
            let (writer, _) = strata_layer::write_layer(&dir, &create, writer)?;
            (writer.commit(None)?, dir.display().to_string())
        }
        ImportSource::Tarball { reader, name } => {
            let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
            let head = std::io::BufRead::fill_buf(&mut reader)
                .map_err(|e| ImageError::io(name.clone(), e))?;
            let compression = Compression::sniff(head);
            let mut tar = strata_layer::decompress(compression, reader)?;
            let mut writer = store.blob_writer(Algorithm::Sha256)?;
            std::io::copy(&mut tar, &mut writer).map_err(|e| ImageError::io(name.clone(), e))?;
            (writer.commit(None)?, name)
        }
    };
    if layer.created {
        added.push(layer.digest.clone());
    }
    let layer_ref = BlobRef {
        media_type: media_types::OCI_LAYER.to_string(),
        digest: layer.digest.clone(),
        size: layer.size,
    };
    // Also proves the input is a tar archive, which beats a confusing failure at run time.
    let sizes = layer_io::scan_layer(store, &layer_ref, &layer.digest)
        .map_err(|e| ImageError::archive(&source_name, format!("not a valid tar archive: {e}")))?;

    let created = match options.source_date_epoch {
        Some(epoch) => DateTime::<Utc>::from_timestamp(epoch, 0).ok_or_else(|| {
            ImageError::Conflict(format!("SOURCE_DATE_EPOCH {epoch} is out of range"))
        })?,
        None => Utc::now(),
    };
    let created_text = created.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let mut history = json!({"created": created_text, "created_by": "strata import"});
    history["comment"] = Value::String(
        options
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {source_name}")),
    );
    let mut config = json!({
        "created": created_text,
        "architecture": options.platform.architecture,
        "os": options.platform.os,
    });
    if let Some(variant) = &options.platform.variant {
        config["variant"] = Value::String(variant.clone());
    }
    if !config_fields.is_empty() {
        config["config"] = Value::Object(config_fields);
    }
    config["rootfs"] = json!({"type": "layers", "diff_ids": [layer.digest.to_string()]});
    config["history"] = json!([history]);
    let config_bytes = serde_json::to_vec(&config).expect("JSON values serialise");
    let layers = [NewLayer {
        diff_id: layer.digest.clone(),
        blob: layer_ref,
        sizes,
    }];
    let tags: Vec<Reference> = options.reference.iter().cloned().collect();
    Ok(commit_image(store, &config_bytes, &layers, &tags, added)?.id)
}

/// Writes the merged filesystem of `input`'s layers to `out` as one tar.
pub fn export(store: &Store, input: &str, out: impl Write) -> Result<()> {
    let image = StoredImage::resolve(store, &store.catalog()?, input)?;
    let layers = image.manifest.layers.clone();
    let mut open = |i: usize| -> std::result::Result<Box<dyn Read>, strata_layer::LayerError> {
        layer_io::open_layer(store, &layers[i]).map_err(|e| strata_layer::LayerError::Io {
            path: layers[i].digest.to_string(),
            op: "opening layer",
            error: std::io::Error::other(e.to_string()),
        })
    };
    strata_layer::flatten_layers(&mut open, layers.len(), out)?;
    Ok(())
}

/// Applies `input`'s layers in order onto `dir` (created if missing), checking each layer
/// against its diffID as it streams. Returns the number of layers applied.
pub fn unpack(store: &Store, input: &str, dir: &std::path::Path) -> Result<usize> {
    let image = StoredImage::resolve(store, &store.catalog()?, input)?;
    std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir.display().to_string(), e))?;
    let options = strata_layer::ApplyOptions::default();
    for (layer, diff_id) in image.manifest.layers.iter().zip(&image.config.diff_ids) {
        let mut reader =
            strata_oci::DigestReader::new(layer_io::open_layer(store, layer)?, diff_id.algorithm());
        strata_layer::apply_layer(dir, &mut reader, &options)?;
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| ImageError::io(format!("reading layer {}", layer.digest), e))?;
        let (actual, _) = reader.finish();
        if actual != *diff_id {
            return Err(layer_io::diff_id_mismatch(layer, &actual, diff_id));
        }
    }
    Ok(image.manifest.layers.len())
}
