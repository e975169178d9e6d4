//! Lexical handling of entry paths: normalisation, whiteout names, and the
//! set of paths a layer itself provides.

use std::collections::HashSet;

/// Prefix marking a whiteout file.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix reserved for whiteout metadata (aufs `.wh..wh.plnk` etc.).
const RESERVED_PREFIX: &[u8] = b".wh..wh.";

/// Normalises a tar path into `out`: leading `/` and `./`, empty and `.`
/// components are dropped and `..` pops the previous component. An empty
/// result means the layer root itself.
///
/// Absolute paths are thus taken relative to the root (as Docker does),
/// while a `..` that would climb above the root is rejected outright rather
/// than clamped: such an entry is an attack or a broken tool, and silently
/// re-rooting it could overwrite an unrelated file.
pub(crate) fn normalize_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err("path escapes the layer root through '..'");
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(())
}

/// Splits a normalised, non-empty path into (parent, final component).
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Joins a normalised directory path and a child name.
pub(crate) fn join_into(dir: &[u8], name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
}

/// What a final path component means under the OCI whiteout conventions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryName<'a> {
    /// An ordinary name.
    Plain,
    /// `.wh..wh..opq`: hide everything lower layers put in the directory.
    OpaqueMarker,
    /// `.wh.<name>`: delete `<name>` from lower layers.
    Whiteout(&'a [u8]),
    /// Other `.wh..wh.*` names: whiteout-implementation metadata, ignored.
    Reserved,
}

pub(crate) fn classify_name(name: &[u8]) -> Result<EntryName<'_>, &'static str> {
    if name == OPAQUE_MARKER {
        return Ok(EntryName::OpaqueMarker);
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Ok(EntryName::Reserved);
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(EntryName::Plain),
        Some(b"" | b"." | b"..") => Err("whiteout does not name a removable file"),
        Some(target) => Ok(EntryName::Whiteout(target)),
    }
}

/// Paths provided by the layer being processed, plus all their ancestors.
///
/// Whiteouts and opaque markers only hide content from *lower* layers, and
/// the order of entries inside one tar is arbitrary, so removal consults this
/// set: whatever this layer already put somewhere is kept.
#[derive(Default)]
pub(crate) struct LayerPaths {
    paths: HashSet<Vec<u8>>,
}

impl LayerPaths {
    /// Records `path` and every ancestor directory of it.
    pub fn insert_with_ancestors(&mut self, path: &[u8]) {
        let mut end = path.len();
        loop {
            let prefix = &path[..end];
            if prefix.is_empty() || self.paths.contains(prefix) {
                return;
            }
            self.paths.insert(prefix.to_vec());
            match prefix.iter().rposition(|&b| b == b'/') {
                Some(i) => end = i,
                None => return,
            }
        }
    }

    pub fn contains(&self, path: &[u8]) -> bool {
        self.paths.contains(path)
    }

    pub fn clear(&mut self) {
        self.paths.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, &'static str> {
        let mut out = Vec::new();
        normalize_into(raw.as_bytes(), &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("./a/b/").unwrap(), "a/b");
        assert_eq!(norm("/etc//x").unwrap(), "etc/x");
        assert_eq!(norm("a/../b").unwrap(), "b");
        assert_eq!(norm("./").unwrap(), "");
        assert_eq!(norm("").unwrap(), "");
        assert!(norm("../x").is_err());
        assert!(norm("a/../../x").is_err());
        assert!(norm("/..").is_err());
        assert!(norm("a\0b").is_err());
    }

    #[test]
    fn whiteouts() {
        assert_eq!(classify_name(b"x"), Ok(EntryName::Plain));
        assert_eq!(classify_name(b".wh.x"), Ok(EntryName::Whiteout(b"x")));
        assert_eq!(classify_name(b".wh..wh..opq"), Ok(EntryName::OpaqueMarker));
        assert_eq!(classify_name(b".wh..wh.plnk"), Ok(EntryName::Reserved));
        assert!(classify_name(b".wh.").is_err());
        assert!(classify_name(b".wh..").is_err());
        assert!(classify_name(b".wh...").is_err());
    }

    #[test]
    fn ancestors_are_recorded() {
        let mut set = LayerPaths::default();
        set.insert_with_ancestors(b"a/b/c");
        assert!(set.contains(b"a") && set.contains(b"a/b") && set.contains(b"a/b/c"));
        assert!(!set.contains(b"a/b/d"));
    }
}
