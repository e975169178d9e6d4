//! Pull-through cache: a [`Storage`] decorator that fills the local storage from an upstream
//! registry on a miss. Tags are asked upstream first (so they stay fresh) and fall back to the
//! local copy when upstream cannot answer; digests are served locally when present. Everything
//! fetched goes through the inner storage's normal verified paths (an upload session completed
//! against the expected digest for blobs, a digest check for manifests), so a cache holds only
//! content that matches its name. Pushes go to the local storage only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use strata_oci::Digest;

use crate::names::Reference;
use crate::storage::{
    BlobReader, ByteStream, Referrer, Storage, StorageError, StorageResult, StoredManifest,
};

/// Manifest media types asked for upstream (everything we can store and serve).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Where and how to reach the upstream registry.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `https://registry-1.docker.io`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// An upstream registry client: anonymous, Basic, or Bearer tokens obtained from the realm the
/// upstream's `WWW-Authenticate` challenge names (Docker token authentication).
struct Upstream {
    config: UpstreamConfig,
    http: reqwest::Client,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
}

#[derive(Debug)]
enum UpstreamError {
    NotFound,
    Failed(String),
}

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.url.trim_end_matches('/'))
    }

    fn authorize(&self, request: reqwest::RequestBuilder, scope: &str) -> reqwest::RequestBuilder {
        let token = self
            .tokens
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(scope)
            .cloned();
        match (token, &self.config.username) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(user)) => request.basic_auth(user, self.config.password.as_ref()),
            (None, None) => request,
        }
    }

    /// GETs `path` in `repository`, answering a Bearer challenge once.
    async fn get(
        &self,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{repository}:pull");
        let url = self.url(path);
        for attempt in 0..2 {
            let mut request = self.http.get(&url);
            if let Some(accept) = accept {
                request = request.header(reqwest::header::ACCEPT, accept);
            }
            let response = self
                .authorize(request, &scope)
                .send()
                .await
                .map_err(|error| UpstreamError::Failed(error.to_string()))?;
            match response.status() {
                status if status.is_success() => return Ok(response),
                reqwest::StatusCode::NOT_FOUND => return Err(UpstreamError::NotFound),
                reqwest::StatusCode::UNAUTHORIZED if attempt == 0 => {
                    let challenge = response
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if !self.fetch_token(&challenge, &scope).await? {
                        return Err(UpstreamError::Failed(format!("{url}: unauthorized")));
                    }
                }
                status => return Err(UpstreamError::Failed(format!("{url}: {status}"))),
            }
        }
        Err(UpstreamError::Failed(format!("{url}: unauthorized")))
    }

    /// Obtains a token for a `Bearer realm=...,service=...` challenge; `false` for other
    /// challenges (Basic credentials were already sent when configured).
    async fn fetch_token(&self, challenge: &str, scope: &str) -> Result<bool, UpstreamError> {
        let Some(parameters) = challenge.strip_prefix("Bearer ") else {
            return Ok(false);
        };
        let parameters = parse_challenge(parameters);
        let Some(realm) = parameters.get("realm") else {
            return Ok(false);
        };
        let mut query = vec![("scope", scope.to_owned())];
        if let Some(service) = parameters.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(user) = &self.config.username {
            request = request.basic_auth(user, self.config.password.as_ref());
        }
        let response = request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| UpstreamError::Failed(format!("token from {realm}: {error}")))?;
        let body: Value = response
            .json()
            .await
            .map_err(|error| UpstreamError::Failed(format!("token from {realm}: {error}")))?;
        let Some(token) = body["token"].as_str().or(body["access_token"].as_str()) else {
            return Err(UpstreamError::Failed(format!("{realm} returned no token")));
        };
        self.tokens
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(scope.to_owned(), token.to_owned());
        Ok(true)
    }
}

/// `key="value",key2="value2"` of a `WWW-Authenticate` challenge.
fn parse_challenge(text: &str) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_owned(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        parameters.insert(key, value);
        rest = remaining.trim_start_matches(',').trim();
    }
    parameters
}

/// A storage that fills itself from upstream registries: one for every repository (Distribution's
/// `proxy.remoteurl`), and/or one per namespace, where `<namespace>/<rest>` is fetched as
/// `<rest>` from that namespace's registry. Repositories no upstream covers are local only.
pub struct ProxyStorage<S> {
    inner: S,
    /// `(namespace, upstream)`, longest namespace first; `None` covers every repository.
    upstreams: Vec<(Option<String>, Upstream)>,
}

impl<S: Storage> ProxyStorage<S> {
    /// A cache of one upstream for every repository.
    pub fn new(inner: S, config: UpstreamConfig) -> Result<ProxyStorage<S>, String> {
        ProxyStorage::with_upstreams(inner, vec![(None, config)])
    }

    /// A cache of several upstreams, each for a namespace (or, with `None`, for every
    /// repository no namespace covers).
    pub fn with_upstreams(
        inner: S,
        configs: Vec<(Option<String>, UpstreamConfig)>,
    ) -> Result<ProxyStorage<S>, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata-registry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|error| error.to_string())?;
        let mut upstreams: Vec<(Option<String>, Upstream)> = configs
            .into_iter()
            .map(|(namespace, config)| {
                let namespace = namespace.map(|namespace| namespace.trim_matches('/').to_owned());
                let upstream = Upstream {
                    config,
                    http: http.clone(),
                    tokens: Mutex::new(HashMap::new()),
                };
                (namespace, upstream)
            })
            .collect();
        upstreams
            .sort_by_key(|(namespace, _)| std::cmp::Reverse(namespace.as_ref().map(String::len)));
        Ok(ProxyStorage { inner, upstreams })
    }

    /// The upstream covering `repository` and the repository's name there.
    fn route<'a>(&'a self, repository: &str) -> Option<(&'a Upstream, String)> {
        self.upstreams
            .iter()
            .find_map(|(namespace, upstream)| match namespace {
                Some(namespace) => repository
                    .strip_prefix(namespace.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| (upstream, rest.to_owned())),
                None => Some((upstream, repository.to_owned())),
            })
    }

    /// Fetches a blob upstream into the inner storage; `false` when upstream lacks it.
    async fn fill_blob(&self, repository: &str, digest: &Digest) -> StorageResult<bool> {
        let Some((upstream, remote)) = self.route(repository) else {
            return Ok(false);
        };
        let path = format!("/v2/{remote}/blobs/{digest}");
        let response = match upstream.get(&remote, &path, None).await {
            Ok(response) => response,
            Err(UpstreamError::NotFound) => return Ok(false),
            Err(UpstreamError::Failed(reason)) => {
                tracing::warn!(%repository, %digest, "upstream blob: {reason}");
                return Ok(false);
            }
        };
        let body: ByteStream = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other))
            .boxed();
        let id = self.inner.upload_create(repository).await?;
        self.inner
            .upload_complete(repository, &id, digest, Some(body))
            .await?;
        tracing::info!(%repository, %digest, "cached blob from upstream");
        Ok(true)
    }

    async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<StoredManifest, UpstreamError> {
        let reference_text = match reference {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(digest) => digest.to_string(),
        };
        let Some((upstream, remote)) = self.route(repository) else {
            return Err(UpstreamError::NotFound);
        };
        let path = format!("/v2/{remote}/manifests/{reference_text}");
        let response = upstream.get(&remote, &path, Some(MANIFEST_ACCEPT)).await?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(crate::manifest::OCI_MANIFEST)
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let bytes: Bytes = response
            .bytes()
            .await
            .map_err(|error| UpstreamError::Failed(error.to_string()))?;
        if bytes.len() > crate::manifest::MAX_MANIFEST_SIZE {
            return Err(UpstreamError::Failed(format!("{path}: manifest too large")));
        }
        let algorithm = match reference {
            Reference::Digest(digest) => digest.algorithm(),
            Reference::Tag(_) => strata_oci::Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(UpstreamError::Failed(format!(
                "{path}: upstream sent content with digest {digest}"
            )));
        }
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }
}

impl<S: Storage> Storage for ProxyStorage<S> {
    async fn blob_size(&self, repository: &str, digest: &Digest) -> StorageResult<Option<u64>> {
        if let Some(size) = self.inner.blob_size(repository, digest).await? {
            return Ok(Some(size));
        }
        if self.fill_blob(repository, digest).await? {
            self.inner.blob_size(repository, digest).await
        } else {
            Ok(None)
        }
    }

    async fn blob_open(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> StorageResult<(u64, BlobReader)> {
        if self.inner.blob_size(repository, digest).await?.is_none()
            && !self.fill_blob(repository, digest).await?
        {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        self.inner.blob_open(repository, digest, offset).await
    }

    /// The inner backend's download path (for the filesystem, chunks read straight into the
    /// body), once the blob is cached.
    async fn blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> StorageResult<ByteStream> {
        if self.inner.blob_size(repository, digest).await?.is_none()
            && !self.fill_blob(repository, digest).await?
        {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        self.inner
            .blob_stream(repository, digest, offset, length)
            .await
    }

    async fn blob_unlink(&self, repository: &str, digest: &Digest) -> StorageResult<()> {
        self.inner.blob_unlink(repository, digest).await
    }

    async fn blob_mount(
        &self,
        repository: &str,
        from: &str,
        digest: &Digest,
    ) -> StorageResult<bool> {
        self.inner.blob_mount(repository, from, digest).await
    }

    async fn upload_create(&self, repository: &str) -> StorageResult<String> {
        self.inner.upload_create(repository).await
    }

    async fn upload_offset(&self, repository: &str, id: &str) -> StorageResult<u64> {
        self.inner.upload_offset(repository, id).await
    }

    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64> {
        self.inner.upload_append(repository, id, start, body).await
    }

    async fn upload_complete(
        &self,
        repository: &str,
        id: &str,
        expected: &Digest,
        body: Option<ByteStream>,
    ) -> StorageResult<u64> {
        self.inner
            .upload_complete(repository, id, expected, body)
            .await
    }

    async fn upload_cancel(&self, repository: &str, id: &str) -> StorageResult<()> {
        self.inner.upload_cancel(repository, id).await
    }

    async fn manifest_get(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StorageResult<Option<StoredManifest>> {
        if let Reference::Digest(_) = reference
            && let Some(local) = self.inner.manifest_get(repository, reference).await?
        {
            return Ok(Some(local));
        }
        match self.fetch_manifest(repository, reference).await {
            Ok(manifest) => {
                let tag = match reference {
                    Reference::Tag(tag) => Some(tag.as_str()),
                    Reference::Digest(_) => None,
                };
                self.inner
                    .manifest_put(repository, tag, manifest.clone(), None)
                    .await?;
                Ok(Some(manifest))
            }
            Err(UpstreamError::NotFound) => self.inner.manifest_get(repository, reference).await,
            Err(UpstreamError::Failed(reason)) => {
                // Offline or failing upstream: serve what the cache has.
                tracing::warn!(%repository, "upstream manifest: {reason}");
                self.inner.manifest_get(repository, reference).await
            }
        }
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> StorageResult<bool> {
        self.inner.manifest_exists(repository, digest).await
    }

    async fn manifest_put(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.inner
            .manifest_put(repository, tag, manifest, referrer)
            .await
    }

    async fn manifest_push(
        &self,
        repository: &str,
        tag: Option<&str>,
        manifest: StoredManifest,
        referrer: Option<Referrer>,
    ) -> StorageResult<()> {
        self.inner
            .manifest_push(repository, tag, manifest, referrer)
            .await
    }

    async fn manifest_delete(&self, repository: &str, reference: &Reference) -> StorageResult<()> {
        self.inner.manifest_delete(repository, reference).await
    }

    async fn tags(&self, repository: &str) -> StorageResult<Option<Vec<String>>> {
        self.inner.tags(repository).await
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        self.inner.repositories().await
    }

    async fn collect_garbage(&self, grace: Duration) -> StorageResult<crate::gc::GcReport> {
        self.inner.collect_garbage(grace).await
    }

    async fn referrers(&self, repository: &str, subject: &Digest) -> StorageResult<Vec<Value>> {
        self.inner.referrers(repository, subject).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let parameters = parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(parameters["realm"], "https://auth.example/token");
        assert_eq!(parameters["service"], "registry.example");
        assert_eq!(parameters["scope"], "repository:a/b:pull");
    }
}
