//! Flattening a stack of layers into one tar of the merged filesystem.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use crate::apply::ApplyOptions;
use crate::error::{LayerError, display_path};
use crate::paths::{EntryName, LayerPaths, classify_name, join_into, normalize_into, split_parent};
use crate::tar_format::{EntryHeader, EntryKind, ReadLimits, TarReader, TarWriter};

/// Position of an entry: (layer index, entry ordinal within the layer).
type Pos = (usize, u64);

/// A path of the merged filesystem as known after the layers read so far.
enum Node {
    Directory {
        /// The first explicit entry of this directory since it last became a
        /// directory (it is emitted there, before its children), with the
        /// metadata of the latest entry (which wins). `None`: only implied
        /// by descendants, like `mkdir -p` would create it.
        explicit: Option<(Pos, Box<EntryHeader>)>,
    },
    NonDirectory {
        pos: Pos,
        /// The entry that created the inode (differs from `pos` for
        /// hardlinks, whose content comes from that entry).
        inode: Pos,
        symlink: bool,
    },
}

/// What to write when pass 2 reaches an entry position.
enum Emit {
    /// The entry itself (header and content) under `path` — possibly not its
    /// own path, when its original path was hidden but a hardlink to the
    /// inode survives.
    Entry {
        path: Vec<u8>,
    },
    Directory {
        path: Vec<u8>,
        meta: Box<EntryHeader>,
    },
    Hardlink {
        path: Vec<u8>,
        target: Vec<u8>,
    },
}

/// Writes one tar of the filesystem that results from applying `count`
/// uncompressed layers (index 0 = bottom), without touching the disk.
///
/// Pass 1 reads only headers and replays the changesets (whiteouts, opaque
/// directories, replacements) on an in-memory tree. It runs bottom-up rather
/// than top-down because a hardlink's meaning depends on what its target
/// path held *when that layer was applied*; replaying in order is the only
/// way to know which inode each surviving link shares. Pass 2 reads the
/// layers bottom-up again and emits survivors in that order, so hardlink
/// targets precede their links. Whiteout files are never emitted; a
/// directory is emitted where it first appeared, with its latest metadata.
///
/// Limitation: entries written through a symlinked directory (`l/x` where
/// `l` is a symlink) keep their literal path; consumers that, like
/// [`crate::apply_layer`], resolve parents inside the root place them the
/// same way.
pub fn flatten_layers<W: Write>(
    layers: &mut dyn FnMut(usize) -> Result<Box<dyn Read>, LayerError>,
    count: usize,
    out: W,
) -> Result<W, LayerError> {
    let defaults = ApplyOptions::default();
    let limits = ReadLimits {
        max_total_bytes: defaults.max_total_bytes,
        max_entries: defaults.max_entries,
        max_header_size: defaults.max_header_size,
    };
    let mut tree = MergedTree::default();
    let mut hdr = EntryHeader::default();
    for layer in 0..count {
        let mut reader = TarReader::new(layers(layer)?, limits);
        tree.layer_paths.clear();
        let mut ordinal = 0;
        while reader.next_entry(&mut hdr)? {
            tree.apply_header((layer, ordinal), &hdr)?;
            ordinal += 1;
        }
    }
    let mut plan = tree.into_plan();

    let mut writer = TarWriter::new(out);
    for layer in 0..count {
        let mut reader = TarReader::new(layers(layer)?, limits);
        let mut ordinal = 0;
        while reader.next_entry(&mut hdr)? {
            if let Some(emit) = plan.remove(&(layer, ordinal)) {
                write_emit(&mut writer, emit, &mut hdr, &mut reader)?;
            }
            ordinal += 1;
        }
    }
    if let Some((_, emit)) = plan.into_iter().next() {
        let path = match emit {
            Emit::Entry { path } | Emit::Directory { path, .. } | Emit::Hardlink { path, .. } => {
                path
            }
        };
        return Err(LayerError::MalformedTar {
            path: display_path(&path),
            offset: 0,
            reason: "layer contents changed between the two flatten passes".to_owned(),
        });
    }
    writer
        .finish()
        .map_err(|e| LayerError::io(b"<end of archive>", "writing the archive", e))
}

fn write_emit<R: Read>(
    writer: &mut TarWriter<impl Write>,
    emit: Emit,
    hdr: &mut EntryHeader,
    reader: &mut TarReader<R>,
) -> Result<(), LayerError> {
    let out_err = |path: &[u8], e| LayerError::io(path, "writing the archive", e);
    match emit {
        Emit::Entry { path } => {
            hdr.path = path;
            writer
                .write_header(hdr)
                .map_err(|e| out_err(&hdr.path, e))?;
            loop {
                let chunk = reader.content_chunk()?;
                if chunk.is_empty() {
                    break;
                }
                writer
                    .write_content(chunk)
                    .map_err(|e| out_err(&hdr.path, e))?;
                let n = chunk.len();
                reader.consume_content(n);
            }
        }
        Emit::Directory { path, mut meta } => {
            meta.path = path;
            writer
                .write_header(&meta)
                .map_err(|e| out_err(&meta.path, e))?;
        }
        Emit::Hardlink { path, target } => {
            hdr.path = path;
            hdr.link_target = target;
            hdr.kind = EntryKind::Hardlink;
            hdr.size = 0;
            writer
                .write_header(hdr)
                .map_err(|e| out_err(&hdr.path, e))?;
        }
    }
    writer.end_content().map_err(|e| out_err(b"<entry>", e))
}

#[derive(Default)]
struct MergedTree {
    /// Normalised path -> node; ordered so a subtree is a contiguous range.
    nodes: BTreeMap<Vec<u8>, Node>,
    /// Paths provided by the layer being replayed.
    layer_paths: LayerPaths,
    path: Vec<u8>,
    scratch: Vec<u8>,
}

/// The key range holding every strict descendant of `dir`.
fn descendants_range(dir: &[u8]) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    use std::ops::Bound;
    if dir.is_empty() {
        return (Bound::Unbounded, Bound::Unbounded);
    }
    let mut start = dir.to_vec();
    start.push(b'/');
    let mut end = dir.to_vec();
    end.push(b'/' + 1);
    (Bound::Included(start), Bound::Excluded(end))
}

impl MergedTree {
    fn apply_header(&mut self, pos: Pos, hdr: &EntryHeader) -> Result<(), LayerError> {
        let mut path = std::mem::take(&mut self.path);
        let result = self.apply_normalized(pos, hdr, &mut path);
        self.path = path;
        result
    }

    fn apply_normalized(
        &mut self,
        pos: Pos,
        hdr: &EntryHeader,
        path: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        normalize_into(&hdr.path, path).map_err(|r| LayerError::invalid_path(&hdr.path, r))?;
        if path.is_empty() {
            if hdr.kind == EntryKind::Directory {
                return Ok(());
            }
            return Err(LayerError::invalid_path(
                &hdr.path,
                "non-directory entry refers to the layer root itself",
            ));
        }
        let (parent, name) = split_parent(path);
        match classify_name(name).map_err(|r| LayerError::invalid_path(&hdr.path, r))? {
            EntryName::Plain => {}
            EntryName::Reserved => return Ok(()),
            EntryName::OpaqueMarker => {
                self.layer_paths.insert_with_ancestors(parent);
                self.remove_lower_descendants(parent);
                return Ok(());
            }
            EntryName::Whiteout(victim) => {
                self.layer_paths.insert_with_ancestors(parent);
                let mut victim_path = std::mem::take(&mut self.scratch);
                join_into(parent, victim, &mut victim_path);
                if !self.layer_paths.contains(&victim_path) {
                    self.remove_subtree(&victim_path);
                } else if let Some(Node::Directory { .. }) = self.nodes.get(&victim_path) {
                    self.remove_lower_descendants(&victim_path);
                }
                self.scratch = victim_path;
                return Ok(());
            }
        }
        self.layer_paths.insert_with_ancestors(path);
        self.ensure_parents(hdr, parent)?;
        let node = match hdr.kind {
            EntryKind::Directory => {
                if let Some(Node::Directory { explicit }) = self.nodes.get_mut(path.as_slice()) {
                    // Directory over directory: merge, newest metadata wins.
                    let first = explicit.as_ref().map_or(pos, |(first, _)| *first);
                    *explicit = Some((first, Box::new(hdr.clone())));
                    return Ok(());
                }
                Node::Directory {
                    explicit: Some((pos, Box::new(hdr.clone()))),
                }
            }
            EntryKind::Hardlink => {
                let mut target = Vec::new();
                let bad_target = |reason| LayerError::InvalidHardlink {
                    path: display_path(&hdr.path),
                    target: display_path(&hdr.link_target),
                    reason,
                };
                normalize_into(&hdr.link_target, &mut target).map_err(bad_target)?;
                let (inode, symlink) = match self.nodes.get(&target) {
                    Some(Node::NonDirectory { inode, symlink, .. }) => (*inode, *symlink),
                    Some(Node::Directory { .. }) => return Err(bad_target("is a directory")),
                    None => return Err(bad_target("does not exist in the layers below")),
                };
                if target == *path {
                    return Ok(());
                }
                Node::NonDirectory {
                    pos,
                    inode,
                    symlink,
                }
            }
            kind => Node::NonDirectory {
                pos,
                inode: pos,
                symlink: kind == EntryKind::Symlink,
            },
        };
        self.remove_subtree(path);
        self.nodes.insert(path.clone(), node);
        Ok(())
    }

    /// Mirrors `mkdir -p` of the parent as applying would do it.
    fn ensure_parents(&mut self, hdr: &EntryHeader, parent: &[u8]) -> Result<(), LayerError> {
        let mut end = 0;
        while end < parent.len() {
            end = parent[end..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |i| end + i);
            let prefix = &parent[..end];
            match self.nodes.get(prefix) {
                None => {
                    self.nodes
                        .insert(prefix.to_vec(), Node::Directory { explicit: None });
                }
                Some(Node::Directory { .. }) => {}
                // Written through a symlink: kept under its literal path.
                Some(Node::NonDirectory { symlink: true, .. }) => return Ok(()),
                Some(Node::NonDirectory { .. }) => {
                    return Err(LayerError::io(
                        &hdr.path,
                        "resolving the parent directory",
                        rustix::io::Errno::NOTDIR,
                    ));
                }
            }
            end += 1;
        }
        Ok(())
    }

    fn remove_subtree(&mut self, path: &[u8]) {
        self.nodes.remove(path);
        let doomed: Vec<Vec<u8>> = self
            .nodes
            .range(descendants_range(path))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
    }

    /// Removes descendants of `dir` that the current layer did not provide.
    fn remove_lower_descendants(&mut self, dir: &[u8]) {
        let doomed: Vec<Vec<u8>> = self
            .nodes
            .range(descendants_range(dir))
            .filter(|(k, _)| !self.layer_paths.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
    }

    /// Decides, for every surviving path, at which entry it is emitted.
    fn into_plan(self) -> HashMap<Pos, Emit> {
        let mut plan = HashMap::new();
        let mut inodes: HashMap<Pos, Vec<(Pos, Vec<u8>)>> = HashMap::new();
        for (path, node) in self.nodes {
            match node {
                Node::Directory {
                    explicit: Some((pos, meta)),
                } => {
                    plan.insert(pos, Emit::Directory { path, meta });
                }
                Node::Directory { explicit: None } => {}
                Node::NonDirectory { pos, inode, .. } => {
                    inodes.entry(inode).or_default().push((pos, path));
                }
            }
        }
        for (inode, mut members) in inodes {
            members.sort();
            // The inode's content is emitted at its original entry, under
            // its original path if that survived, else under the earliest
            // surviving link; the other links point there.
            let primary = members
                .iter()
                .position(|(pos, _)| *pos == inode)
                .unwrap_or(0);
            let primary_path = members[primary].1.clone();
            for (i, (pos, path)) in members.into_iter().enumerate() {
                if i != primary {
                    let target = primary_path.clone();
                    plan.insert(pos, Emit::Hardlink { path, target });
                }
            }
            plan.insert(inode, Emit::Entry { path: primary_path });
        }
        plan
    }
}
