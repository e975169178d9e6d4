//! Content digests (`sha256:<hex>`) and streaming digest computation.
//!
//! Only the two algorithms registered by the OCI image spec that are used in
//! practice are supported. Parsing is deliberately strict (lowercase hex of the
//! exact length) because a digest is an identity: two spellings of the same
//! hash must never compare unequal.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A hash algorithm usable in a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in the `<algorithm>:<hex>` digest form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in a digest of this algorithm.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(DigestError::UnsupportedAlgorithm {
                input: name.to_owned(),
                algorithm: name.to_owned(),
            }),
        }
    }
}

/// Why a string is not a valid [`Digest`]. Every variant carries the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error(
        "invalid digest {input:?}: expected \"<algorithm>:<hex>\", e.g. \"sha256:<64 hex characters>\""
    )]
    MissingSeparator { input: String },
    #[error(
        "invalid digest {input:?}: unsupported algorithm {algorithm:?} (supported: sha256, sha512)"
    )]
    UnsupportedAlgorithm { input: String, algorithm: String },
    #[error(
        "invalid digest {input:?}: a {algorithm} digest has {expected} hex characters, found {found}"
    )]
    WrongLength {
        input: String,
        algorithm: Algorithm,
        expected: usize,
        found: usize,
    },
    #[error("invalid digest {input:?}: hex must be lowercase, found {character:?}")]
    UppercaseHex { input: String, character: char },
    #[error("invalid digest {input:?}: {character:?} is not a hexadecimal digit")]
    NonHex { input: String, character: char },
}

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// Ordering is by algorithm, then hex, which gives a stable order for listings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from an algorithm and its hex encoding, validating the hex.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        validate_hex(algorithm, hex, || format!("{algorithm}:{hex}"))?;
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Hashes `data` in one go.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut digester = Digester::new(algorithm);
        digester.update(data);
        digester.finish()
    }

    /// The SHA-256 digest of `data`, the algorithm used for virtually all content.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }

    pub fn sha512_of(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha512, data)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the `algorithm:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters: Docker's short image ID.
    pub fn short_id(&self) -> &str {
        // Both algorithms produce at least 64 ASCII characters, so slicing is in bounds.
        &self.hex[..12]
    }

    /// Whether `data` hashes to this digest.
    pub fn verify(&self, data: &[u8]) -> bool {
        Digest::of(self.algorithm, data) == *self
    }
}

fn validate_hex(
    algorithm: Algorithm,
    hex: &str,
    input: impl Fn() -> String,
) -> Result<(), DigestError> {
    if hex.len() != algorithm.hex_len() {
        return Err(DigestError::WrongLength {
            input: input(),
            algorithm,
            expected: algorithm.hex_len(),
            found: hex.chars().count(),
        });
    }
    if let Some(character) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(if character.is_ascii_hexdigit() {
            DigestError::UppercaseHex {
                input: input(),
                character,
            }
        } else {
            DigestError::NonHex {
                input: input(),
                character,
            }
        });
    }
    Ok(())
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let Some((algorithm_name, hex)) = input.split_once(':') else {
            return Err(DigestError::MissingSeparator {
                input: input.to_owned(),
            });
        };
        let algorithm = match algorithm_name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(DigestError::UnsupportedAlgorithm {
                    input: input.to_owned(),
                    algorithm: algorithm_name.to_owned(),
                });
            }
        };
        validate_hex(algorithm, hex, || input.to_owned())?;
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<&str> for Digest {
    type Error = DigestError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        input.parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for crate::spec::Digest {
    fn from(digest: &Digest) -> Self {
        // Our grammar (lowercase hex of the exact length) is a strict subset of
        // the OCI digest grammar, so oci-spec cannot reject it.
        digest
            .to_string()
            .parse()
            .expect("a validated digest is a valid OCI digest")
    }
}

impl From<Digest> for crate::spec::Digest {
    fn from(digest: Digest) -> Self {
        crate::spec::Digest::from(&digest)
    }
}

impl TryFrom<&crate::spec::Digest> for Digest {
    type Error = DigestError;

    fn try_from(digest: &crate::spec::Digest) -> Result<Self, Self::Error> {
        digest.as_ref().parse()
    }
}

#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Incremental digest computation, for content that arrives in pieces.
///
/// Also implements [`Write`], so it can be the target of [`io::copy`].
#[derive(Clone)]
pub struct Digester {
    hasher: Hasher,
}

impl Digester {
    pub fn new(algorithm: Algorithm) -> Digester {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        };
        Digester { hasher }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(hasher) => hasher.update(data),
            Hasher::Sha512(hasher) => hasher.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.hasher {
            Hasher::Sha256(hasher) => (Algorithm::Sha256, hex::encode(hasher.finalize())),
            Hasher::Sha512(hasher) => (Algorithm::Sha512, hex::encode(hasher.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Write for Digester {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Read`] adapter that digests and counts every byte read through it.
#[derive(Debug)]
pub struct DigestReader<R> {
    inner: R,
    digester: Digester,
    bytes: u64,
}

impl<R> DigestReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> DigestReader<R> {
        DigestReader {
            inner,
            digester: Digester::new(algorithm),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    ///
    /// With [`Read`] in scope, `reader.bytes()` resolves to `Read::bytes`
    /// (which takes `self` by value); use [`DigestReader::bytes_read`] there.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Same as [`DigestReader::bytes`], without the clash with `Read::bytes`.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The digest and size of everything read so far. Bytes the caller did not
    /// read are not included, so drain the reader first if the whole stream counts.
    pub fn finish(self) -> (Digest, u64) {
        (self.digester.finish(), self.bytes)
    }

    /// Gives back the wrapped reader, discarding the digest.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.digester.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// A [`Write`] adapter that digests and counts every byte accepted by the inner writer.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    digester: Digester,
    bytes: u64,
}

impl<W> DigestWriter<W> {
    pub fn new(inner: W, algorithm: Algorithm) -> DigestWriter<W> {
        DigestWriter {
            inner,
            digester: Digester::new(algorithm),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Returns the inner writer (not flushed: call `flush` first if it buffers),
    /// the digest of everything written and its size.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.digester.finish(), self.bytes)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Only the bytes the inner writer accepted are hashed, so short writes
        // (which the caller retries) are not counted twice.
        let written = self.inner.write(data)?;
        self.digester.update(&data[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
