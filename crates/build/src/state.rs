//! The state of a stage while it is being built: image config, layers, history, and the
//! snapshot directories that make up its root filesystem.

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use strata_image::layer_io;
use strata_oci::Digest;
use strata_store::BlobRef;

use crate::{DEFAULT_PATH, config};

#[derive(Debug, Clone)]
pub(crate) struct LayerInfo {
    pub blob: BlobRef,
    pub diff_id: Digest,
    pub sizes: layer_io::LayerSizes,
}

/// The state of a stage while it is being built.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    /// The image config's `config` object.
    pub config: Map<String, Value>,
    pub author: Option<String>,
    pub layers: Vec<LayerInfo>,
    pub history: Vec<Value>,
    /// Snapshot directories of the first `lowers.len()` layers, bottom first: stacked, the
    /// stage's root filesystem once every layer has one (`Engine::ensure_lowers`). Layers
    /// taken from the cache get theirs only when a later step needs the file system.
    pub lowers: Vec<PathBuf>,
    pub cmd_set: bool,
    /// The cache key of the state so far.
    pub key: Digest,
    /// History entries this build added (the rest came with the base image).
    pub new_history: usize,
}

impl StageState {
    pub fn scratch(key: Digest) -> StageState {
        let mut config = Map::new();
        config.insert("Env".into(), json!([format!("PATH={DEFAULT_PATH}")]));
        config.insert("WorkingDir".into(), json!("/"));
        StageState {
            config,
            author: None,
            layers: Vec::new(),
            history: Vec::new(),
            lowers: Vec::new(),
            cmd_set: false,
            key,
            new_history: 0,
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        config::env_pairs(&self.config)
    }

    pub fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".to_string(),
        }
    }

    pub fn shell(&self) -> Vec<String> {
        match self.config.get("Shell").and_then(Value::as_array) {
            Some(s) if !s.is_empty() => s
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }

    /// `path` (absolute) with the symlinks of its directories resolved inside the stage's root
    /// filesystem (absolute targets start at its root, `..` stops there); the last component
    /// is resolved too when `follow_last`.
    pub fn resolve_path(&self, path: &str, follow_last: bool) -> String {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let is_last = pending.is_empty();
            let candidate = format!("{}/{part}", resolved.join("/"));
            let link = (!is_last || follow_last)
                .then(|| self.rootfs_path(&candidate))
                .flatten()
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink()))
                .and_then(|p| std::fs::read_link(p).ok());
            match link {
                Some(target) if hops < 255 => {
                    hops += 1;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .rev()
                            .filter(|p| !p.is_empty())
                            .map(String::from),
                    );
                }
                _ => resolved.push(part),
            }
        }
        format!("/{}", resolved.join("/"))
    }

    /// The path of `rel` (relative to `/`) in the topmost directory that has it, unless a
    /// whiteout hides it.
    pub fn rootfs_path(&self, rel: &str) -> Option<PathBuf> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let rel = rel.trim_start_matches('/');
        for lower in self.lowers.iter().rev() {
            let path = if rel.is_empty() {
                lower.clone()
            } else {
                lower.join(rel)
            };
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    return None;
                }
                return Some(path);
            }
        }
        None
    }
}
