//! The S3 backend: the key layout of the filesystem backend (docs/registry-storage.md) under a
//! prefix of a bucket, through `object_store`.
//!
//! Upload sessions stay on local disk (a [`FsStorage`] used only for `uploads/`), where they
//! are hashed as they stream in exactly as on the filesystem backend; only a verified upload
//! is sent to `blobs/<alg>/<hex>` (multipart above [`MULTIPART_THRESHOLD`]), and only then is
//! its repository link written. Links, tags, revisions and referrers are small objects; S3
//! replaces an object atomically, so a reader sees the old or the new one.

use std::collections::HashSet;
use std::io;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart,
};
use serde_json::{Value, json};
use strata_oci::Digest;
use tokio::io::AsyncReadExt;

use super::{
    BlobReader, ByteStream, FsStorage, Referrer, Storage, StorageError, StorageResult,
    StoredManifest,
};
use crate::gc::GcReport;
use crate::names::Reference;

/// Blobs at least this large are sent as a multipart upload.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight per multipart upload.
const PART_CONCURRENCY: usize = 4;

/// Where the registry's objects live.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000`; AWS when absent.
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id and secret; from the environment (`AWS_ACCESS_KEY_ID`, …) when absent.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Key prefix of every object (`""` for the bucket root).
    #[serde(default)]
    pub prefix: String,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path-style (`host/bucket`).
    #[serde(default)]
    pub virtual_hosted: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

pub struct S3Storage {
    store: AmazonS3,
    prefix: String,
    /// Upload sessions only.
    staging: FsStorage,
    /// As on the filesystem: an online collection pass holds this exclusively; making content
    /// reachable (an upload's link, a mount, a manifest put, a link refresh) holds it shared.
    collection: tokio::sync::RwLock<()>,
}

/// A blob link older than this is rewritten when the blob is looked up, so that online
/// collection (which spares blobs with a link younger than its grace period) does not delete
/// a blob a client has just been told exists.
const LINK_REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

fn s3_error(key: &Key) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
    move |error| StorageError::Io {
        path: format!("s3://{key}").into(),
        source: io::Error::other(error),
    }
}

fn is_not_found(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
}

fn corrupt(key: &Key, reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        path: format!("s3://{key}").into(),
        reason: reason.to_string(),
    }
}

impl S3Storage {
    /// Connects to the bucket; uploads in progress are kept under `staging_root/uploads`.
    pub fn open(config: &S3Config, staging_root: &std::path::Path) -> StorageResult<S3Storage> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(config.virtual_hosted);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &config.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|error| StorageError::Io {
            path: format!("s3://{}", config.bucket).into(),
            source: io::Error::other(error),
        })?;
        Ok(S3Storage {
            store,
            prefix: config.prefix.trim_matches('/').to_owned(),
            staging: FsStorage::open(staging_root)?,
            collection: tokio::sync::RwLock::new(()),
        })
    }

    fn key(&self, relative: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(relative)
        } else {
            Key::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Digest) -> Key {
        self.key(&format!("blobs/{}/{}", digest.algorithm(), digest.hex()))
    }

    fn repository_key(&self, repository: &str, rest: &str) -> Key {
        self.key(&format!("repositories/{repository}/{rest}"))
    }

    fn layer_key(&self, repository: &str, digest: &Digest) -> Key {
        self.repository_key(
            repository,
            &format!("_layers/{}/{}", digest.algorithm(), digest.hex()),
        )
    }

    fn revision_key(&self, repository: &str, digest: &Digest) -> Key {
        self.repository_key(
            repository,
            &format!(
                "_manifests/revisions/{}/{}",
                digest.algorithm(),
                digest.hex()
            ),
        )
    }

    fn tags_prefix(&self, repository: &str) -> Key {
        self.repository_key(repository, "_manifests/tags")
    }

    fn referrers_prefix(&self, repository: &str, subject: &Digest) -> Key {
        self.repository_key(
            repository,
            &format!("_referrers/{}/{}", subject.algorithm(), subject.hex()),
        )
    }

    fn referrer_key(&self, repository: &str, subject: &Digest, manifest: &Digest) -> Key {
        self.referrers_prefix(repository, subject).join(format!(
            "{}-{}",
            manifest.algorithm(),
            manifest.hex()
        ))
    }

    async fn read_optional(&self, key: &Key) -> StorageResult<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(s3_error(key))?)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(s3_error(key)(error)),
        }
    }

    async fn size_optional(&self, key: &Key) -> StorageResult<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(s3_error(key)(error)),
        }
    }

    async fn write(&self, key: &Key, bytes: impl Into<Bytes>) -> StorageResult<()> {
        self.store
            .put(key, PutPayload::from(bytes.into()))
            .await
            .map(|_| ())
            .map_err(s3_error(key))
    }

    /// Deletes `key`; `false` when it did not exist.
    async fn remove_optional(&self, key: &Key) -> StorageResult<bool> {
        if self.size_optional(key).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(key).await {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(s3_error(key)(error)),
        }
    }

    /// The keys under `prefix`, relative to it.
    async fn list_names(&self, prefix: &Key) -> StorageResult<Vec<String>> {
        let metas: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(s3_error(prefix))?;
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|meta| {
                meta.location
                    .prefix_match(prefix)
                    .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>())
            })
            .map(|parts| parts.join("/"))
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn linked_blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> StorageResult<Option<u64>> {
        if self
            .size_optional(&self.layer_key(repository, digest))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        self.size_optional(&self.blob_key(digest)).await
    }

    async fn read_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> StorageResult<Option<StoredManifest>> {
        let link = self.revision_key(repository, digest);
        let Some(revision) = self.read_optional(&link).await? else {
            return Ok(None);
        };
        let revision: Value =
            serde_json::from_slice(&revision).map_err(|error| corrupt(&link, error))?;
        let Some(bytes) = self.read_optional(&self.blob_key(digest)).await? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest: digest.clone(),
            media_type: revision["mediaType"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            bytes,
        }))
    }

    async fn resolve_tag(&self, repository: &str, tag: &str) -> StorageResult<Option<Digest>> {
        let key = self.tags_prefix(repository).clone().join(tag);
        let Some(bytes) = self.read_optional(&key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|error| corrupt(&key, format!("{error}")))
    }

    /// Sends the verified file at `path` (`size` bytes) to `key`.
    async fn upload_file(&self, path: &std::path::Path, size: u64, key: &Key) -> StorageResult<()> {
        let local = |error: io::Error| StorageError::Io {
            path: path.to_owned(),
            source: error,
        };
        if size < MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(path).await.map_err(local)?;
            return self.write(key, bytes).await;
        }
        let upload = self.store.put_multipart(key).await.map_err(s3_error(key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(path).await.map_err(local)?;
        let mut buffer = vec![0u8; 1 << 20];
        let sent = async {
            loop {
                let read = file.read(&mut buffer).await.map_err(local)?;
                if read == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(s3_error(key))?;
                writer.write(&buffer[..read]);
            }
        }
        .await;
        match sent {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(s3_error(key)),
            Err(error) => {
                let _ = writer.abort().await;
                Err(error)
            }
        }
    }
}

impl Storage for S3Storage {
    async fn blob_size(&self, repository: &str, digest: &Digest) -> StorageResult<Option<u64>> {
        let link = self.layer_key(repository, digest);
        let modified = match self.store.head(&link).await {
            Ok(meta) => meta.last_modified,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(s3_error(&link)(error)),
        };
        let stale = (chrono::Utc::now() - modified)
            .to_std()
            .is_ok_and(|age| age > LINK_REFRESH_AFTER);
        if !stale {
            return self.size_optional(&self.blob_key(digest)).await;
        }
        // The client may now skip uploading this blob and reference it: refresh the link
        // under the collection lock, after checking the bytes survived any pass in between.
        let _commit = self.collection.read().await;
        let size = self.size_optional(&self.blob_key(digest)).await?;
        if size.is_some()
            && let Err(error) = self.write(&link, digest.to_string().into_bytes()).await
        {
            tracing::warn!(%link, "refreshing a blob link: {error}");
        }
        Ok(size)
    }

    async fn blob_open(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> StorageResult<(u64, BlobReader)> {
        let Some(size) = self.linked_blob_size(repository, digest).await? else {
            return Err(StorageError::BlobUnknown(digest.clone()));
        };
        if offset >= size {
            return Ok((size, Box::pin(tokio::io::empty())));
        }
        let key = self.blob_key(digest);
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&key, options).await {
            Ok(result) => result,
            Err(error) if is_not_found(&error) => {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
            Err(error) => return Err(s3_error(&key)(error)),
        };
        let stream = result.into_stream().map_err(io::Error::other);
        Ok((size, Box::pin(tokio_util::io::StreamReader::new(stream))))
    }

    async fn blob_unlink(&self, repository: &str, digest: &Digest) -> StorageResult<()> {
        if self
            .remove_optional(&self.layer_key(repository, digest))
            .await?
        {
            Ok(())
        } else {
            Err(StorageError::BlobUnknown(digest.clone()))
        }
    }

    async fn blob_mount(
        &self,
        repository: &str,
        from: &str,
        digest: &Digest,
    ) -> StorageResult<bool> {
        if self.linked_blob_size(from, digest).await?.is_none() {
            return Ok(false);
        }
        let _commit = self.collection.read().await;
        if self.size_optional(&self.blob_key(digest)).await?.is_none() {
            return Ok(false);
        }
        self.write(
            &self.layer_key(repository, digest),
            digest.to_string().into_bytes(),
        )
        .await?;
        Ok(true)
    }

    async fn upload_create(&self, repository: &str) -> StorageResult<String> {
        self.staging.upload_create(repository).await
    }

    async fn upload_offset(&self, repository: &str, id: &str) -> StorageResult<u64> {
        self.staging.upload_offset(repository, id).await
    }

    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64> {
        self.staging
            .upload_append(repository, id, start, body)
            .await
    }

    async fn upload_complete(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
        body: Option<ByteStream>,
    ) -> StorageResult<u64> {
        let (dir, size) = self
            .staging
            .upload_verify(repository, id, expected, body)
            .await?;
        let blob = self.blob_key(expected);
        let _commit = self.collection.read().await;
        // Identical bytes may already be there (another repository, a concurrent push).
        let result = async {
            if self.size_optional(&blob).await? != Some(size) {
                self.upload_file(&dir.join("data"), size, &blob).await?;
            }
            self.write(
                &self.layer_key(repository, expected),
                expected.to_string().into_bytes(),
            )
            .await
        }
        .await;
        // On failure the (verified) session stays: the client may retry the PUT, which
        // digests the data again before sending it.
        result?;
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(upload = id, "removing a finished upload: {error}");
        }
        Ok(size)
    }

    async fn upload_cancel(&self, repository: &str, id: &str) -> StorageResult<()> {
        self.staging.upload_cancel(repository, id).await
    }

    async fn manifest_get(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StorageResult<Option<StoredManifest>> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => match self.resolve_tag(repository, tag).await? {
                Some(digest) => digest,
                None => return Ok(None),
            },
        };
        self.read_manifest(repository, &digest).await
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> StorageResult<bool> {
        Ok(self
            .size_optional(&self.revision_key(repository, digest))
            .await?
            .is_some()
            && self.size_optional(&self.blob_key(digest)).await?.is_some())
    }

    async fn manifest_push(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.store_manifest(repository, tag, manifest, referrer, true)
            .await
    }

    async fn manifest_put(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.store_manifest(repository, tag, manifest, referrer, false)
            .await
    }

    async fn manifest_delete(&self, repository: &str, reference: &Reference) -> StorageResult<()> {
        let digest = match reference {
            Reference::Tag(tag) => {
                let key = self.tags_prefix(repository).clone().join(tag.as_str());
                return if self.remove_optional(&key).await? {
                    Ok(())
                } else {
                    Err(StorageError::ManifestUnknown(tag.clone()))
                };
            }
            Reference::Digest(digest) => digest,
        };
        let Some(manifest) = self.read_manifest(repository, digest).await? else {
            return Err(StorageError::ManifestUnknown(digest.to_string()));
        };
        self.remove_optional(&self.revision_key(repository, digest))
            .await?;
        let tags = self.tags_prefix(repository);
        for tag in self.list_names(&tags).await? {
            if self.resolve_tag(repository, &tag).await?.as_ref() == Some(digest) {
                self.remove_optional(&tags.clone().join(tag.as_str()))
                    .await?;
            }
        }
        if let Some(subject) = crate::manifest::subject_of(&manifest.bytes) {
            self.remove_optional(&self.referrer_key(repository, &subject, digest))
                .await?;
        }
        Ok(())
    }

    async fn tags(&self, repository: &str) -> StorageResult<Option<Vec<String>>> {
        let mut exists = false;
        for part in ["_manifests", "_layers"] {
            let prefix = self.repository_key(repository, part);
            if self.store.list(Some(&prefix)).next().await.is_some() {
                exists = true;
                break;
            }
        }
        if !exists {
            return Ok(None);
        }
        Ok(Some(self.list_names(&self.tags_prefix(repository)).await?))
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let mut found: Vec<String> = self
            .list_names(&self.key("repositories"))
            .await?
            .into_iter()
            .filter_map(|name| {
                let parts: Vec<&str> = name.split('/').collect();
                let marker = parts
                    .iter()
                    .position(|part| *part == "_manifests" || *part == "_layers")?;
                (marker > 0).then(|| parts[..marker].join("/"))
            })
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The online pass of the filesystem backend over the bucket: marks every manifest revision
    /// of every repository with its config and layers, then deletes the unmarked blobs whose
    /// object and every `_layers` link are older than `grace`, and the links to them. Never
    /// deletes manifests or uploads.
    async fn collect_garbage(&self, grace: std::time::Duration) -> StorageResult<GcReport> {
        let _pass = self.collection.write().await;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let repositories_prefix = self.key("repositories");
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&repositories_prefix))
            .try_collect()
            .await
            .map_err(s3_error(&repositories_prefix))?;
        let mut marked: HashSet<Digest> = HashSet::new();
        let mut recent: HashSet<Digest> = HashSet::new();
        // Layer links by digest, to delete those of swept blobs.
        let mut links: Vec<(Digest, Key)> = Vec::new();
        for meta in &objects {
            let Some(parts) = meta.location.prefix_match(&repositories_prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|part| part.as_ref().to_owned()).collect();
            let n = parts.len();
            if n < 4 {
                continue;
            }
            let digest: Option<Digest> = format!("{}:{}", parts[n - 2], parts[n - 1]).parse().ok();
            let Some(digest) = digest else { continue };
            if parts[n - 3] == "_layers" {
                if meta.last_modified > cutoff {
                    recent.insert(digest.clone());
                }
                links.push((digest, meta.location.clone()));
            } else if n >= 5 && parts[n - 4] == "_manifests" && parts[n - 3] == "revisions" {
                if let Some(bytes) = self.read_optional(&self.blob_key(&digest)).await?
                    && let Ok(parsed) = crate::manifest::parse(&bytes)
                {
                    marked.extend(parsed.references.blobs);
                }
                marked.insert(digest);
            }
        }
        let blobs_prefix = self.key("blobs");
        let blobs: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&blobs_prefix))
            .try_collect()
            .await
            .map_err(s3_error(&blobs_prefix))?;
        let mut report = GcReport::default();
        for meta in blobs {
            let Some(parts) = meta.location.prefix_match(&blobs_prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|part| part.as_ref().to_owned()).collect();
            let [algorithm, hex] = parts.as_slice() else {
                continue;
            };
            let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                continue;
            };
            if marked.contains(&digest) || recent.contains(&digest) || meta.last_modified > cutoff {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(s3_error(&meta.location)(error)),
            }
            report.bytes_freed += meta.size;
            report.blobs_deleted.push(digest);
        }
        // Layer links to swept blobs would otherwise make HEAD say "exists" after a re-push check.
        let swept: HashSet<&Digest> = report.blobs_deleted.iter().collect();
        for (digest, link) in &links {
            if swept.contains(digest) {
                self.remove_optional(link).await?;
            }
        }
        Ok(report)
    }

    async fn referrers(&self, repository: &str, subject: &Digest) -> StorageResult<Vec<Value>> {
        let prefix = self.referrers_prefix(repository, subject);
        let mut descriptors = Vec::new();
        for name in self.list_names(&prefix).await? {
            let key = prefix.clone().join(name.as_str());
            let Some(bytes) = self.read_optional(&key).await? else {
                continue;
            };
            descriptors.push(serde_json::from_slice(&bytes).map_err(|error| corrupt(&key, error))?);
        }
        Ok(descriptors)
    }
}

impl S3Storage {
    /// Writes a manifest (bytes, revision, referrer, tag) under the collection lock; with
    /// `check`, first verifies its references there (see [`Storage::manifest_push`]).
    async fn store_manifest(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
        check: bool,
    ) -> StorageResult<()> {
        // Bytes first, then the links that make them visible.
        let _commit = self.collection.read().await;
        // Checked again under the lock: a collection pass may have swept a blob since the
        // handler looked (see the filesystem backend).
        if check && let Ok(parsed) = crate::manifest::parse(&manifest.bytes) {
            for blob in &parsed.references.blobs {
                if self.linked_blob_size(repository, blob).await?.is_none() {
                    return Err(StorageError::ManifestBlobUnknown(blob.clone()));
                }
            }
            for child in &parsed.references.manifests {
                if !Storage::manifest_exists(self, repository, child).await? {
                    return Err(StorageError::ManifestBlobUnknown(child.clone()));
                }
            }
        }
        let blob = self.blob_key(&manifest.digest);
        if self.size_optional(&blob).await?.is_none() {
            self.write(&blob, manifest.bytes.clone()).await?;
        }
        let revision = json!({ "mediaType": manifest.media_type }).to_string();
        self.write(
            &self.revision_key(repository, &manifest.digest),
            revision.into_bytes(),
        )
        .await?;
        if let Some(referrer) = referrer {
            self.write(
                &self.referrer_key(repository, &referrer.subject, &manifest.digest),
                referrer.descriptor.to_string().into_bytes(),
            )
            .await?;
        }
        if let Some(tag) = tag {
            self.write(
                &self.tags_prefix(repository).clone().join(tag),
                manifest.digest.to_string().into_bytes(),
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_follow_the_filesystem_layout_under_the_prefix() {
        let staging = tempfile::tempdir().unwrap();
        let config = S3Config {
            bucket: "bucket".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: default_region(),
            access_key: Some("key".into()),
            secret_key: Some("secret".into()),
            prefix: "/strata/registry/".into(),
            virtual_hosted: false,
        };
        let storage = S3Storage::open(&config, staging.path()).unwrap();
        let digest = Digest::sha256_of(b"x");
        let hex = digest.hex();
        assert_eq!(
            storage.blob_key(&digest).as_ref(),
            format!("strata/registry/blobs/sha256/{hex}")
        );
        assert_eq!(
            storage.layer_key("a/b", &digest).as_ref(),
            format!("strata/registry/repositories/a/b/_layers/sha256/{hex}")
        );
        assert_eq!(
            storage.revision_key("a", &digest).as_ref(),
            format!("strata/registry/repositories/a/_manifests/revisions/sha256/{hex}")
        );
        assert_eq!(
            storage.tags_prefix("a").join("v1").as_ref(),
            "strata/registry/repositories/a/_manifests/tags/v1"
        );
        assert_eq!(
            storage.referrer_key("a", &digest, &digest).as_ref(),
            format!("strata/registry/repositories/a/_referrers/sha256/{hex}/sha256-{hex}")
        );
        // Uploads are staged locally, in the filesystem backend's format.
        let id = storage.upload_create("a").await.unwrap();
        assert!(
            staging
                .path()
                .join("uploads")
                .join(&id)
                .join("data")
                .is_file()
        );
    }
}
