//! What `images`, `inspect` and `history` show, shaped like Docker's output.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use strata_oci::{Digest, Reference};
use strata_store::{Catalog, ImageRecord, Store};

use crate::Result;
use crate::document::StoredImage;

/// Each layer's size as Docker reports it, bottom first (the blob size until measured).
fn layer_sizes<'a>(catalog: &'a Catalog, image: &'a StoredImage) -> impl Iterator<Item = u64> + 'a {
    image
        .config
        .diff_ids
        .iter()
        .zip(&image.manifest.layers)
        .map(|(diff_id, blob)| {
            catalog
                .layers
                .get(diff_id)
                .and_then(|l| l.display_size())
                .unwrap_or(blob.size)
        })
}

/// An image's size: the sum of its layers, as Docker reports it.
pub fn image_size(catalog: &Catalog, image: &StoredImage) -> u64 {
    layer_sizes(catalog, image).sum()
}

pub fn created(image: &StoredImage) -> Option<DateTime<Utc>> {
    image
        .config
        .value
        .get("created")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.to_utc())
}

fn familiar_tags(catalog: &Catalog, key: &Digest) -> Vec<String> {
    catalog
        .tags_of(key)
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .map(|r| r.familiar_string())
        .collect()
}

/// The `Config` object with Docker's always-present fields filled in.
fn docker_config(config: Option<&Value>) -> Value {
    let mut out: Map<String, Value> = serde_json::from_value(json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    }))
    .expect("a literal object");
    if let Some(Value::Object(fields)) = config {
        for (k, v) in fields {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// One element of `strata inspect`'s array.
pub fn inspect_json(catalog: &Catalog, image: &StoredImage) -> Value {
    let config = &image.config.value;
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let size = image_size(catalog, image);
    let mut out = json!({
        "Id": image.record.config.to_string(),
        "RepoTags": familiar_tags(catalog, &image.record.target.digest),
        "RepoDigests": image.record.repo_digests,
        "Parent": image.record.parent.as_ref().map(Digest::to_string).unwrap_or_default(),
        "Comment": text("comment"),
        "Created": text("created"),
        "DockerVersion": text("docker_version"),
        "Author": text("author"),
        "Config": docker_config(config.get("config")),
        "Architecture": text("architecture"),
    });
    if let Some(variant) = config.get("variant").and_then(Value::as_str) {
        out["Variant"] = Value::String(variant.to_string());
    }
    out["Os"] = Value::String(text("os"));
    if let Some(version) = config.get("os.version").and_then(Value::as_str) {
        out["OsVersion"] = Value::String(version.to_string());
    }
    out["Size"] = json!(size);
    out["VirtualSize"] = json!(size);
    out["RootFS"] = json!({
        "Type": "layers",
        "Layers": image.config.diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>(),
    });
    out["Metadata"] = json!({
        "LastTagTime": image.record.last_tag_time.map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        ),
    });
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image ID on the newest row, `<missing>` below it (Docker shows the same for pulled images).
    pub id: String,
    pub created: Option<DateTime<Utc>>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// History newest first, with each entry's layer size.
pub fn history(catalog: &Catalog, image: &StoredImage) -> Vec<HistoryRow> {
    let entries = image
        .config
        .value
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut layer_sizes = layer_sizes(catalog, image);
    let mut rows: Vec<HistoryRow> = entries
        .iter()
        .map(|entry| {
            let empty_layer = entry
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if empty_layer {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            };
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            HistoryRow {
                id: "<missing>".into(),
                created: entry
                    .get("created")
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.to_utc()),
                created_by: text("created_by"),
                size,
                comment: text("comment"),
                empty_layer,
            }
        })
        .collect();
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first.id = image.record.config.to_string();
    }
    rows
}

/// One line of `strata images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub key: Digest,
    pub id: Digest,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub created: Option<DateTime<Utc>>,
    pub size: u64,
    pub labels: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    Dangling(bool),
    /// A glob over `name` or `name:tag`, as Docker's `reference=` filter.
    Reference(String),
    Label {
        key: String,
        value: Option<String>,
    },
    Before(Digest),
    Since(Digest),
}

impl ListFilter {
    /// Parses `key=value` of `--filter`, resolving image names of before/since in `catalog`.
    pub fn parse(text: &str, catalog: &Catalog) -> Result<ListFilter> {
        let bad = |m: String| crate::ImageError::Conflict(format!("invalid filter {text:?}: {m}"));
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| bad("expected key=value".into()))?;
        match key {
            "dangling" => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(ListFilter::Dangling(true)),
                "false" | "0" => Ok(ListFilter::Dangling(false)),
                _ => Err(bad("dangling takes true or false".into())),
            },
            "reference" => Ok(ListFilter::Reference(value.to_string())),
            "label" => Ok(match value.split_once('=') {
                Some((k, v)) => ListFilter::Label {
                    key: k.into(),
                    value: Some(v.into()),
                },
                None => ListFilter::Label {
                    key: value.into(),
                    value: None,
                },
            }),
            "before" | "since" => {
                let resolved = catalog.resolve(value)?;
                let config = match resolved {
                    strata_store::Resolved::Tag { key, .. } => catalog.images[&key].config.clone(),
                    strata_store::Resolved::Id { config, .. } => config,
                };
                Ok(if key == "before" {
                    ListFilter::Before(config)
                } else {
                    ListFilter::Since(config)
                })
            }
            other => Err(bad(format!(
                "unknown filter {other:?} (dangling, reference, label, before, since)"
            ))),
        }
    }
}

/// Rows of `strata images`, newest first: one per tag, and one `<none>` row per untagged image.
pub fn list(store: &Store, catalog: &Catalog, filters: &[ListFilter]) -> Result<Vec<ListRow>> {
    let mut rows = Vec::new();
    let mut created_by_id = std::collections::BTreeMap::new();
    for (key, record) in &catalog.images {
        let image = StoredImage::load(store, record)?;
        let created_at = created(&image);
        created_by_id.insert(record.config.clone(), created_at);
        let size = image_size(catalog, &image);
        let labels = image
            .config
            .value
            .pointer("/config/Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let row = |repository: String, tag: String, digest: String| ListRow {
            key: key.clone(),
            id: record.config.clone(),
            repository,
            tag,
            digest,
            created: created_at,
            size,
            labels: labels.clone(),
        };
        let tags = catalog.tags_of(key);
        if tags.is_empty() {
            rows.push(row(
                "<none>".into(),
                "<none>".into(),
                repo_digest(record, None),
            ));
        }
        for tag in tags {
            let Ok(reference) = Reference::parse(tag) else {
                continue;
            };
            rows.push(row(
                reference.familiar_name(),
                reference.tag().unwrap_or("<none>").to_string(),
                repo_digest(record, Some(&reference)),
            ));
        }
    }
    rows.retain(|row| {
        filters.iter().all(|f| match f {
            ListFilter::Dangling(d) => (row.tag == "<none>") == *d,
            ListFilter::Reference(pattern) => {
                glob_match(pattern, &row.repository)
                    || glob_match(pattern, &format!("{}:{}", row.repository, row.tag))
            }
            ListFilter::Label { key, value } => match (row.labels.get(key), value) {
                (Some(_), None) => true,
                (Some(v), Some(want)) => v.as_str() == Some(want.as_str()),
                (None, _) => false,
            },
            ListFilter::Before(id) => created_by_id.get(id).is_some_and(|t| row.created < *t),
            ListFilter::Since(id) => created_by_id.get(id).is_some_and(|t| row.created > *t),
        })
    });
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then(a.repository.cmp(&b.repository))
            .then(a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

fn repo_digest(record: &ImageRecord, reference: Option<&Reference>) -> String {
    let wanted = reference.map(Reference::name);
    record
        .repo_digests
        .iter()
        .find(|rd| {
            wanted
                .as_ref()
                .is_none_or(|name| rd.starts_with(&format!("{name}@")))
        })
        .and_then(|rd| rd.split_once('@').map(|(_, d)| d.to_string()))
        .unwrap_or_else(|| "<none>".into())
}

/// Go's `path.Match`: `*` and `?` stop at `/`; `[...]` classes with ranges and `^` negation.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class_matches(class: &[char], c: char) -> Option<(bool, usize)> {
        let mut i = 0;
        let negate = class.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let start = i;
        while i < class.len() {
            if class[i] == ']' && i > start {
                return Some((matched != negate, i + 1));
            }
            let lo = class[i];
            if i + 2 < class.len() && class[i + 1] == '-' && class[i + 2] != ']' {
                if lo <= c && c <= class[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if lo == c {
                    matched = true;
                }
                i += 1;
            }
        }
        None
    }
    fn matches(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| matches(&p[1..], &n[i..])),
            Some('?') => n.first().is_some_and(|&c| c != '/') && matches(&p[1..], &n[1..]),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class_matches(&p[1..], c) {
                    Some((true, used)) => matches(&p[1 + used..], &n[1..]),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && matches(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && matches(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_like_go_path_match() {
        for (pattern, name, expected) in [
            ("debian", "debian", true),
            ("deb*", "debian", true),
            ("*", "library/debian", false),
            ("*/*", "library/debian", true),
            ("debian:1?", "debian:12", true),
            ("debian:[0-9]*", "debian:12", true),
            ("debian:[^0-9]*", "debian:12", false),
            ("busy*:latest", "busybox:latest", true),
            ("localhost:5000/*", "localhost:5000/x", true),
            ("x", "y", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
