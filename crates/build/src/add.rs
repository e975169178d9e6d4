//! What ADD adds beyond COPY: remote files over HTTP(S) (with `--checksum`) and local tar
//! archives, which are extracted.
//!
//! A URL is downloaded once per build into the build's `downloads` directory (the cache key
//! needs its content before the step runs); the file keeps the name from the URL's path, mode
//! 0600 and the `Last-Modified` time (the Unix epoch without one), as Docker gives it.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Bound on one downloaded file.
const MAX_DOWNLOAD_BYTES: u64 = 16 << 30;

/// Whether ADD treats `src` as a git repository (BuildKit's rule: `git@`, `git://`, `ssh://`,
/// or an HTTP(S) URL whose path ends in `.git`).
pub fn is_git(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    if let Some(rest) = src
        .strip_prefix("http://")
        .or_else(|| src.strip_prefix("https://"))
    {
        let path = rest.split(['#', '?']).next().unwrap_or("");
        return path.ends_with(".git");
    }
    false
}

/// Whether ADD downloads `src`.
pub fn is_url(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git(src)
}

/// The file name ADD gives a download: the last element of the URL's path, `__unnamed__`
/// when there is none (BuildKit's rule).
pub fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['#', '?']).next().unwrap_or("");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => {
            percent_decode(base).unwrap_or_else(|| base.to_string())
        }
        _ => "__unnamed__".to_string(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.contains('/') && !decoded.contains('\0')).then_some(decoded)
}

/// A downloaded URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Download {
    /// The content.
    #[serde(skip)]
    pub path: PathBuf,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// From `Last-Modified`, seconds since the epoch.
    pub mtime: i64,
}

/// A `--checksum` value: algorithm and expected hex digest.
pub fn parse_checksum(text: &str) -> Result<(&str, String), String> {
    let (algorithm, hex) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid checksum digest format: {text}"))?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(format!("unsupported digest algorithm: {other}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("invalid checksum digest format: {text}"));
    }
    Ok((algorithm, hex.to_ascii_lowercase()))
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: &str) -> Hasher {
        match algorithm {
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// A name part no other download or checkout of this process uses.
pub fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Downloads `url` into `dir` (once per build: a second call returns the first download),
/// verifying `checksum` when given.
pub fn fetch(dir: &Path, url: &str, checksum: Option<&str>) -> Result<Download, String> {
    let expected = checksum.map(parse_checksum).transpose()?;
    let name = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    let content = dir.join(&name);
    let meta_path = dir.join(format!("{name}.json"));
    if let Ok(bytes) = std::fs::read(&meta_path)
        && let Ok(mut download) = serde_json::from_slice::<Download>(&bytes)
    {
        download.path = content;
        verify_again(&download, expected.as_ref(), url)?;
        return Ok(download);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Stages of one build run in parallel and may fetch the same URL: each writes its own
    // temporary file; the renames put the same content in place.
    let temp = dir.join(format!("{name}.part-{}", unique()));
    let result = download_to(url, &temp, expected.as_ref().map(|(a, _)| *a));
    let (digest, other, mtime) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    if let Some((algorithm, want)) = &expected {
        let got = other.as_deref().unwrap_or(&digest);
        if got != want {
            let _ = std::fs::remove_file(&temp);
            return Err(format!(
                "checksum mismatch for {url}: expected {algorithm}:{want}, got {algorithm}:{got}"
            ));
        }
    }
    std::fs::rename(&temp, &content).map_err(|e| format!("{}: {e}", content.display()))?;
    let download = Download {
        path: content,
        digest: format!("sha256:{digest}"),
        mtime,
    };
    let meta = serde_json::to_vec(&download).map_err(|e| e.to_string())?;
    let meta_temp = dir.join(format!("{name}.json-{}", unique()));
    std::fs::write(&meta_temp, meta).map_err(|e| format!("{}: {e}", meta_temp.display()))?;
    std::fs::rename(&meta_temp, &meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    Ok(download)
}

/// A download reused within the build must still match a `--checksum` given by a later step.
fn verify_again(
    download: &Download,
    expected: Option<&(&str, String)>,
    url: &str,
) -> Result<(), String> {
    let Some((algorithm, want)) = expected else {
        return Ok(());
    };
    let mut hasher = Hasher::new(algorithm);
    let mut file = std::fs::File::open(&download.path)
        .map_err(|e| format!("{}: {e}", download.path.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hasher.finish();
    if &got != want {
        return Err(format!(
            "checksum mismatch for {url}: expected {algorithm}:{want}, got {algorithm}:{got}"
        ));
    }
    Ok(())
}

/// Streams `url` into `target`; returns the content's SHA-256, its digest in `algorithm`
/// when that is another one, and the `Last-Modified` time.
fn download_to(
    url: &str,
    target: &Path,
    algorithm: Option<&str>,
) -> Result<(String, Option<String>, i64), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the HTTP client: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("{url}: {e}"))?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: invalid response status {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOWNLOAD_BYTES)
        {
            return Err(format!(
                "{url}: the file is larger than {MAX_DOWNLOAD_BYTES} bytes"
            ));
        }
        let mtime = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map_or(0, |t| t.timestamp());
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(target).map_err(|e| format!("{}: {e}", target.display()))?,
        );
        let mut sha256 = sha2::Sha256::new();
        let mut other = algorithm.filter(|a| *a != "sha256").map(Hasher::new);
        let mut total: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            total += chunk.len() as u64;
            if total > MAX_DOWNLOAD_BYTES {
                return Err(format!(
                    "{url}: the file is larger than {MAX_DOWNLOAD_BYTES} bytes"
                ));
            }
            sha256.update(&chunk);
            if let Some(h) = other.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", target.display()))?;
        }
        file.into_inner()
            .map_err(|e| format!("{}: {e}", target.display()))?
            .sync_all()
            .map_err(|e| format!("{}: {e}", target.display()))?;
        Ok((
            hex::encode(sha256.finalize()),
            other.map(Hasher::finish),
            mtime,
        ))
    })
}

/// How a tar archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Plain,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl ArchiveKind {
    fn sniff(head: &[u8]) -> ArchiveKind {
        if head.starts_with(b"BZh") {
            ArchiveKind::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            ArchiveKind::Xz
        } else {
            match strata_layer::Compression::sniff(head) {
                strata_layer::Compression::Gzip => ArchiveKind::Gzip,
                strata_layer::Compression::Zstd => ArchiveKind::Zstd,
                strata_layer::Compression::None => ArchiveKind::Plain,
            }
        }
    }
}

/// `path`'s content, decompressed as `kind` says.
fn decoder(path: &Path, kind: ArchiveKind) -> Result<Box<dyn Read>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = BufReader::new(file);
    let compression = match kind {
        ArchiveKind::Bzip2 => {
            return Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(reader)));
        }
        ArchiveKind::Xz => {
            return Ok(Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(
                reader,
            )));
        }
        ArchiveKind::Plain => strata_layer::Compression::None,
        ArchiveKind::Gzip => strata_layer::Compression::Gzip,
        ArchiveKind::Zstd => strata_layer::Compression::Zstd,
    };
    strata_layer::decompress(compression, reader).map_err(|e| e.to_string())
}

/// How a local ADD source is compressed when it is a tar archive (Docker extracts it: plain,
/// gzip, bzip2, xz, zstd), or `None` when it is not one (a gzip file that does not hold a tar
/// stays a file).
pub fn archive_kind(path: &Path) -> Result<Option<ArchiveKind>, String> {
    let head = {
        let Ok(mut file) = std::fs::File::open(path) else {
            return Ok(None);
        };
        let mut head = [0u8; 8];
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        head[..n].to_vec()
    };
    let kind = ArchiveKind::sniff(&head);
    let Ok(mut decoder) = decoder(path, kind) else {
        return Ok(None);
    };
    let mut header = [0u8; 512];
    let mut n = 0;
    while n < header.len() {
        match decoder.read(&mut header[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    Ok((n == 512 && is_tar_header(&header)).then_some(kind))
}

/// Whether `block` is a tar header: its checksum field matches its bytes.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == recorded
}

/// Extracts the archive at `path` into `target` with strata-layer's safe apply: no entry can
/// land outside `target`.
pub fn extract_archive(path: &Path, kind: ArchiveKind, target: &Path) -> Result<(), String> {
    let tar = decoder(path, kind)?;
    strata_layer::apply_layer(target, tar, &strata_layer::ApplyOptions::default())
        .map_err(|e| format!("extracting {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_and_kinds() {
        assert_eq!(url_file_name("http://h:1/a/file.txt"), "file.txt");
        assert_eq!(url_file_name("http://h:1/a/file.txt?x=1#y"), "file.txt");
        assert_eq!(url_file_name("http://h:1/"), "__unnamed__");
        assert_eq!(url_file_name("http://h:1"), "__unnamed__");
        assert_eq!(url_file_name("https://h/dir/"), "dir");
        assert_eq!(url_file_name("https://h/a%20b"), "a b");
        assert!(is_git("https://github.com/o/r.git#main"));
        assert!(is_git("git@github.com:o/r.git"));
        assert!(!is_git("https://h/file.tar.gz"));
        assert!(is_url("https://h/file.tar.gz"));
        assert!(!is_url("https://h/r.git"));
    }

    #[test]
    fn checksums_parse() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_checksum(&format!("sha256:{hex}")).unwrap(),
            ("sha256", hex.clone())
        );
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("md5:{hex}")).is_err());
        assert!(parse_checksum(&hex).is_err());
    }
}
