//! Repository names, tags and request paths, checked against the distribution-spec grammar.
//!
//! Pure functions: routing a `/v2/...` path is done here rather than by the HTTP router
//! because repository names contain `/` and so cannot be a single path parameter.

use strata_oci::Digest;

/// Longest repository name accepted (Distribution's limit, so names round-trip between them).
pub const MAX_NAME_LEN: usize = 255;

/// Whether `name` matches
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !is_alnum(first) || !is_alnum(last) {
        return false;
    }
    // Every run of non-alphanumerics must be one separator: `.`, `_`, `__` or `-+`.
    let mut index = 0;
    while index < bytes.len() {
        if is_alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !is_alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match bytes.first() {
        Some(&first) if word(first) => {}
        _ => return false,
    }
    bytes.len() <= 128 && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// What a manifest request names: a tag or a content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// Parses a `<reference>` path segment; `None` when it is neither a tag nor a digest.
    pub fn parse(text: &str) -> Option<Reference> {
        if text.contains(':') {
            text.parse().ok().map(Reference::Digest)
        } else if is_valid_tag(text) {
            Some(Reference::Tag(text.to_owned()))
        } else {
            None
        }
    }
}

/// A request path under `/v2/`, split into what it addresses. Segments after the repository
/// name are kept as (percent-decoded) text; the handlers validate them so that each error
/// carries the right code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<uuid>`
    Upload { name: String, id: String },
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
}

impl Route {
    /// The repository name the route addresses, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Splits a request path. `None` means the path is not a distribution endpoint (404).
/// The repository name is returned unvalidated; see [`is_valid_repository`].
pub fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags {
            name: name.to_owned(),
        });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart {
            name: name.to_owned(),
        });
    }
    // The last segment never contains `/`, so split at the last marker.
    let split = |marker: &str| -> Option<(String, String)> {
        let (name, last) = rest.rsplit_once(marker)?;
        (!last.is_empty() && !last.contains('/')).then(|| (name.to_owned(), percent_decode(last)))
    };
    if let Some((name, id)) = split("/blobs/uploads/") {
        return Some(Route::Upload { name, id });
    }
    if let Some((name, reference)) = split("/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = split("/blobs/") {
        return Some(Route::Blob { name, digest });
    }
    if let Some((name, digest)) = split("/referrers/") {
        return Some(Route::Referrers { name, digest });
    }
    None
}

/// Decodes `%XX` escapes (clients may send `sha256%3A...`); malformed escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(hex, 16) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for valid in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "x/y/z",
            "0",
            "my-org/my-app",
        ] {
            assert!(is_valid_repository(valid), "{valid} should be valid");
        }
        for invalid in [
            "",
            "A",
            "Library/busybox",
            "..",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a_-b",
            "a b",
            "a:b",
            ".a",
            "_a",
        ] {
            assert!(!is_valid_repository(invalid), "{invalid} should be invalid");
        }
        assert!(!is_valid_repository(&"a".repeat(256)));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_v1.2-rc.3"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".hidden"));
        assert!(!is_valid_tag("-x"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag("a/b"));
    }

    #[test]
    fn routes_split_names_containing_markers() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("/v2/", Some(Route::Base)),
            ("/v2", Some(Route::Base)),
            ("/v2/_catalog", Some(Route::Catalog)),
            (
                "/v2/a/blobs/b/manifests/latest",
                Some(Route::Manifest {
                    name: "a/blobs/b".into(),
                    reference: "latest".into(),
                }),
            ),
            (
                &format!("/v2/x/blobs/{}", digest.replace(':', "%3A")),
                Some(Route::Blob {
                    name: "x".into(),
                    digest: digest.clone(),
                }),
            ),
            (
                "/v2/x/y/blobs/uploads/",
                Some(Route::UploadStart { name: "x/y".into() }),
            ),
            (
                "/v2/x/blobs/uploads",
                Some(Route::UploadStart { name: "x".into() }),
            ),
            (
                "/v2/x/blobs/uploads/abc",
                Some(Route::Upload {
                    name: "x".into(),
                    id: "abc".into(),
                }),
            ),
            ("/v2/x/tags/list", Some(Route::Tags { name: "x".into() })),
            (
                &format!("/v2/x/referrers/{digest}"),
                Some(Route::Referrers {
                    name: "x".into(),
                    digest: digest.clone(),
                }),
            ),
            ("/v2/x/other", None),
            ("/v3/", None),
        ];
        for (path, expected) in cases {
            assert_eq!(parse_route(path), expected, "{path}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(Reference::parse("v1"), Some(Reference::Tag("v1".into())));
        let digest = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(
            Reference::parse(&digest),
            Some(Reference::Digest(_))
        ));
        assert_eq!(Reference::parse("sha256:zz"), None);
        assert_eq!(Reference::parse("-bad"), None);
    }
}
