//! What the registry needs from a storage backend, independent of HTTP.
//!
//! Blobs are addressed by digest and written once, everything per-repository is a small "link"
//! object, and uploads are addressed by an opaque id, so the trait maps onto a filesystem
//! ([`FsStorage`]) and an object store ([`S3Storage`]) alike. Layouts:
//! docs/registry-storage.md.

mod fs;
mod s3;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde_json::Value;
use strata_oci::Digest;
use tokio::io::AsyncRead;

pub use fs::{FORMAT, FsStorage, list_repositories};
pub use s3::{S3Config, S3Storage};

use crate::names::Reference;

/// A request body being streamed into storage.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// A blob being streamed out of storage, positioned at the requested offset.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),
    #[error("upload {0} is unknown")]
    UploadUnknown(String),
    #[error("manifest {0} is unknown")]
    ManifestUnknown(String),
    /// A manifest being stored names a blob that is not (or no longer) in the repository.
    #[error("manifest references blob {0}, unknown to the repository")]
    ManifestBlobUnknown(Digest),
    #[error("uploaded content has digest {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("chunk does not start at the upload's current offset {offset}")]
    UploadOutOfOrder { offset: u64 },
    #[error("request body: {0}")]
    UploadBody(io::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A manifest as stored: its bytes, their digest and the media type it was pushed with.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A manifest that names another one as its `subject`, as listed by the referrers API.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub subject: Digest,
    /// The OCI descriptor of the referring manifest (mediaType, digest, size, artifactType,
    /// annotations).
    pub descriptor: Value,
}

/// The operations of a registry backend. Every per-repository operation only sees what was
/// pushed or mounted into that repository, although blob bytes are shared by all of them.
pub trait Storage: Send + Sync + 'static {
    /// The size of `digest` if it is linked into `repository`.
    fn blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<Option<u64>>> + Send;

    /// Opens `digest` (linked into `repository`) positioned at `offset`; returns its full size.
    fn blob_open(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> impl Future<Output = StorageResult<(u64, BlobReader)>> + Send;

    /// The `length` bytes of `digest` (linked into `repository`) from `offset`, as a stream of
    /// chunks for a response body. Backends that can read straight into the chunks override
    /// this; the default reads [`Storage::blob_open`] through a buffer.
    fn blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = StorageResult<ByteStream>> + Send {
        async move {
            use futures_util::StreamExt as _;
            use tokio::io::AsyncReadExt as _;
            let (_, reader) = self.blob_open(repository, digest, offset).await?;
            Ok(tokio_util::io::ReaderStream::with_capacity(reader.take(length), 256 << 10).boxed())
        }
    }

    /// Removes `digest` from `repository` (the bytes stay while other repositories link them).
    fn blob_unlink(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Links `digest` from repository `from` into `repository`; `false` when `from` lacks it.
    fn blob_mount(
        &self,
        repository: &str,
        from: &str,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// Starts an upload session and returns its id.
    fn upload_create(&self, repository: &str)
    -> impl Future<Output = StorageResult<String>> + Send;

    /// Number of bytes received so far by an upload.
    fn upload_offset(
        &self,
        repository: &str,
        id: &str,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Appends a chunk; `start`, when given, must equal the current offset. Returns the new
    /// offset.
    fn upload_append(
        &self,
        repository: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Appends the optional last chunk, verifies the whole content against `expected`, and
    /// makes it a blob of `repository`. On mismatch the upload is discarded and nothing is
    /// stored. Returns the blob size.
    fn upload_complete(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
        body: Option<ByteStream>,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    /// Abandons an upload.
    fn upload_cancel(
        &self,
        repository: &str,
        id: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Looks a manifest up by tag or digest.
    fn manifest_get(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> impl Future<Output = StorageResult<Option<StoredManifest>>> + Send;

    /// Whether the manifest `digest` is in `repository`.
    fn manifest_exists(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// A client's manifest push: [`Storage::manifest_put`] after checking that every blob and
    /// child manifest it names is in `repository` (else `ManifestBlobUnknown`), the check and
    /// the write both under the online collection's lock so no pass can sweep in between.
    fn manifest_push(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Stores a (validated) manifest, tags it when `tag` is given and records it as a referrer.
    /// Does not look at what it references (a pull-through cache stores a manifest before its
    /// blobs).
    fn manifest_put(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Deletes a tag, or a manifest revision together with the tags pointing at it.
    fn manifest_delete(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// The tags of `repository`, sorted; `None` when the repository does not exist.
    fn tags(
        &self,
        repository: &str,
    ) -> impl Future<Output = StorageResult<Option<Vec<String>>>> + Send;

    /// Every repository name, sorted.
    fn repositories(&self) -> impl Future<Output = StorageResult<Vec<String>>> + Send;

    /// Deletes, while serving, the blobs no manifest references whose bytes and links are all
    /// older than `grace`. Backends that cannot collect online report nothing.
    fn collect_garbage(
        &self,
        grace: std::time::Duration,
    ) -> impl Future<Output = StorageResult<crate::gc::GcReport>> + Send {
        let _ = grace;
        async { Ok(crate::gc::GcReport::default()) }
    }

    /// Descriptors of the manifests of `repository` whose subject is `subject`.
    fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> impl Future<Output = StorageResult<Vec<Value>>> + Send;
}
