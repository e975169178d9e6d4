//! Pull-through cache: a [`Storage`] decorator that fills the local storage from an upstream
//! registry on a miss. Pushes go to the local storage only.
//!
//! Tags: a tag fetched upstream is remembered with the time it was fetched or confirmed and its
//! digest. Within the upstream's tag TTL it is served from the cache without asking upstream;
//! after it, a `HEAD` of the tag (which registries do not count as a pull) compares the digest
//! upstream with the cached one, and only a changed tag is fetched again. When upstream fails,
//! is unreachable or no longer has the tag, the cached copy is served. The check times live in
//! memory: after a restart the first request for a cached tag checks it with a `HEAD`.
//!
//! Blobs: a miss starts one download per blob and repository. Its bytes go into an upload
//! session of the inner storage (completed against the expected digest, so a cache holds only
//! content that matches its name) and, for a large blob, to the first `GET` at the same time,
//! through bounded queues (the slower of the cache writer and that client paces the download).
//! The client gets the last chunk only after the digest was verified, and an aborted body when
//! it was not. Other requests for the blob meanwhile wait for the download and are served from
//! the cache. Manifests by digest are served locally when present and fetched otherwise, with
//! their digest checked.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use strata_oci::Digest;
use tokio::sync::{mpsc, watch};

use crate::names::Reference;
use crate::storage::{
    BlobReader, ByteStream, Referrer, Storage, StorageError, StorageResult, StoredManifest,
};

/// How long a cached tag is served without asking upstream, unless configured.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);

/// Blobs up to this size are downloaded whole before they are answered (configs, small
/// layers: streaming gains nothing there); larger ones are streamed while they are cached.
const STREAM_MIN: u64 = 1 << 20;

/// Chunks queued towards each of the cache writer and the streaming client.
const TEE_QUEUE: usize = 8;

/// How long a download waits for a `GET` to take the stream it offers (a `HEAD`, or a pushed
/// manifest's check, asks the size and never takes it); the `GET` that follows the size
/// question in the same request takes it within microseconds. After this the download goes on
/// for the cache alone. Only whether a client is streamed depends on it, never correctness.
const CLAIM_WINDOW: Duration = Duration::from_secs(5);

/// A client that takes no bytes for this long is left behind so the cache fill can finish
/// (the upstream connection's own read timeout is 120 s).
const CLIENT_STALL: Duration = Duration::from_secs(60);

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
    /// How long a tag fetched or confirmed upstream is served from the cache before upstream
    /// is asked again (with a `HEAD`).
    pub tag_ttl: Duration,
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
        let token = lock(&self.tokens).get(scope).cloned();
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
        self.request(reqwest::Method::GET, repository, path, accept)
            .await
    }

    /// Sends `method` for `path` in `repository`, answering a Bearer challenge once.
    async fn request(
        &self,
        method: reqwest::Method,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{repository}:pull");
        let url = self.url(path);
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), &url);
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
        lock(&self.tokens).insert(scope.to_owned(), token.to_owned());
        Ok(true)
    }

    /// The digest upstream gives for `tag` of `repository` in answer to a `HEAD` (which does
    /// not count as a pull against rate limits); `None` when the answer names none.
    async fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let response = self
            .request(
                reqwest::Method::HEAD,
                repository,
                &path,
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    inner: Arc<S>,
    /// `(namespace, upstream)`, longest namespace first; `None` covers every repository.
    upstreams: Vec<(Option<String>, Arc<Upstream>)>,
    /// When each cached tag, by repository and tag, was last fetched or confirmed upstream.
    tag_checks: Mutex<HashMap<(String, String), TagCheck>>,
    /// Blob downloads in progress, by repository and digest.
    fills: Fills,
}

/// A tag as last fetched or confirmed upstream.
struct TagCheck {
    at: Instant,
    digest: Digest,
}

type Fills = Arc<Mutex<HashMap<(String, Digest), Fill>>>;

/// A queue of blob chunks (or the error that ends them).
type ChunkSender = mpsc::Sender<io::Result<Bytes>>;
type ChunkReceiver = mpsc::Receiver<io::Result<Bytes>>;

/// A blob download in progress, as the requests that wait on it see it.
#[derive(Clone)]
struct Fill {
    /// The upstream's Content-Length once its answer arrived. The sender is dropped when the
    /// download is over (the blob is then in the inner storage, or the download failed).
    length: watch::Receiver<Option<u64>>,
    /// The client end of the download's stream, until a `GET` takes it (large blobs only).
    offered: Arc<Mutex<Option<ChunkReceiver>>>,
}

impl Fill {
    /// The blob's length as upstream announced it; `None` when the download ended without one.
    async fn length(&self) -> Option<u64> {
        let mut length = self.length.clone();
        length.wait_for(Option::is_some).await.ok().and_then(|l| *l)
    }

    /// Completes when the download is over. Declines the stream the download offers, if no
    /// `GET` took it yet: the download would otherwise wait for a taker that is not coming.
    async fn finished(&self) {
        // The offer, if any, is made before the length is published.
        if self.length().await.is_some() {
            drop(lock(&self.offered).take());
        }
        let mut length = self.length.clone();
        while length.changed().await.is_ok() {}
    }
}

/// Held by a download's task: unregisters the download, then (dropping the sender) wakes the
/// requests waiting for it, once the blob is stored or the download failed.
struct FillGuard {
    fills: Fills,
    key: (String, Digest),
    length: watch::Sender<Option<u64>>,
    offered: Arc<Mutex<Option<ChunkReceiver>>>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        lock(&self.fills).remove(&self.key);
    }
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
        let mut upstreams: Vec<(Option<String>, Arc<Upstream>)> = configs
            .into_iter()
            .map(|(namespace, config)| {
                let namespace = namespace.map(|namespace| namespace.trim_matches('/').to_owned());
                let upstream = Upstream {
                    config,
                    http: http.clone(),
                    tokens: Mutex::new(HashMap::new()),
                };
                (namespace, Arc::new(upstream))
            })
            .collect();
        upstreams
            .sort_by_key(|(namespace, _)| std::cmp::Reverse(namespace.as_ref().map(String::len)));
        Ok(ProxyStorage {
            inner: Arc::new(inner),
            upstreams,
            tag_checks: Mutex::new(HashMap::new()),
            fills: Arc::default(),
        })
    }

    /// The upstream covering `repository` and the repository's name there.
    fn route<'a>(&'a self, repository: &str) -> Option<(&'a Arc<Upstream>, String)> {
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

    /// The download of `digest` into `repository`: the one in progress, or a new one. `None`
    /// when no upstream covers the repository.
    fn fill(&self, repository: &str, digest: &Digest) -> Option<Fill> {
        let (upstream, remote) = self.route(repository)?;
        let key = (repository.to_owned(), digest.clone());
        let mut fills = lock(&self.fills);
        if let Some(fill) = fills.get(&key) {
            return Some(fill.clone());
        }
        let (length_sender, length) = watch::channel(None);
        let fill = Fill {
            length,
            offered: Arc::default(),
        };
        fills.insert(key.clone(), fill.clone());
        drop(fills);
        let guard = FillGuard {
            fills: self.fills.clone(),
            key,
            length: length_sender,
            offered: fill.offered.clone(),
        };
        tokio::spawn(fill_from_upstream(
            self.inner.clone(),
            upstream.clone(),
            remote,
            guard,
        ));
        Some(fill)
    }

    /// Waits for the downloads into `repository` in progress.
    async fn fills_finished(&self, repository: &str) {
        let running: Vec<Fill> = lock(&self.fills)
            .iter()
            .filter(|((name, _), _)| name == repository)
            .map(|(_, fill)| fill.clone())
            .collect();
        for fill in running {
            fill.finished().await;
        }
    }

    /// Whether `tag` was fetched or confirmed upstream within `ttl`, with digest `digest`.
    fn tag_is_fresh(&self, repository: &str, tag: &str, digest: &Digest, ttl: Duration) -> bool {
        lock(&self.tag_checks)
            .get(&(repository.to_owned(), tag.to_owned()))
            .is_some_and(|check| check.digest == *digest && check.at.elapsed() < ttl)
    }

    fn tag_checked(&self, repository: &str, tag: &str, digest: &Digest) {
        lock(&self.tag_checks).insert(
            (repository.to_owned(), tag.to_owned()),
            TagCheck {
                at: Instant::now(),
                digest: digest.clone(),
            },
        );
    }

    /// A manifest by tag: the cached one while its check is fresh or upstream confirms it (or
    /// cannot answer), else the one upstream, cached.
    async fn manifest_by_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> StorageResult<Option<StoredManifest>> {
        let reference = Reference::Tag(tag.to_owned());
        let Some((upstream, remote)) = self.route(repository) else {
            return self.inner.manifest_get(repository, &reference).await;
        };
        let cached = self.inner.manifest_get(repository, &reference).await?;
        if let Some(cached) = &cached {
            if self.tag_is_fresh(repository, tag, &cached.digest, upstream.config.tag_ttl) {
                return Ok(Some(cached.clone()));
            }
            match upstream.tag_digest(&remote, tag).await {
                // Upstream may name it with another algorithm than the cache's sha256.
                Ok(Some(digest)) if Digest::of(digest.algorithm(), &cached.bytes) == digest => {
                    tracing::debug!(%repository, %tag, "tag unchanged upstream");
                    self.tag_checked(repository, tag, &cached.digest);
                    return Ok(Some(cached.clone()));
                }
                Ok(_) => {}
                // As Distribution does: a tag gone upstream stays served from the cache.
                Err(UpstreamError::NotFound) => {
                    tracing::warn!(%repository, %tag, "tag no longer upstream; serving the cached copy");
                    self.tag_checked(repository, tag, &cached.digest);
                    return Ok(Some(cached.clone()));
                }
                Err(UpstreamError::Failed(reason)) => {
                    tracing::warn!(%repository, %tag, "upstream tag check: {reason}; serving the cached copy");
                    self.tag_checked(repository, tag, &cached.digest);
                    return Ok(Some(cached.clone()));
                }
            }
        }
        match self.fetch_manifest(repository, &reference).await {
            Ok(manifest) => {
                self.inner
                    .manifest_put(repository, Some(tag), manifest.clone(), None)
                    .await?;
                self.tag_checked(repository, tag, &manifest.digest);
                Ok(Some(manifest))
            }
            Err(error) => {
                if let UpstreamError::Failed(reason) = &error {
                    tracing::warn!(%repository, %tag, "upstream manifest: {reason}");
                }
                if let Some(cached) = &cached {
                    self.tag_checked(repository, tag, &cached.digest);
                }
                Ok(cached)
            }
        }
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

/// Downloads the blob of `guard.key` from `upstream` into `inner`, offering the bytes to one
/// client as they arrive when the blob is large.
async fn fill_from_upstream<S: Storage>(
    inner: Arc<S>,
    upstream: Arc<Upstream>,
    remote: String,
    guard: FillGuard,
) {
    let (repository, digest) = &guard.key;
    // A download that ended between the caller's look and this one's start.
    if let Ok(Some(_)) = inner.blob_size(repository, digest).await {
        return;
    }
    let path = format!("/v2/{remote}/blobs/{digest}");
    let response = match upstream.get(&remote, &path, None).await {
        Ok(response) => response,
        Err(UpstreamError::NotFound) => return,
        Err(UpstreamError::Failed(reason)) => {
            tracing::warn!(%repository, %digest, "upstream blob: {reason}");
            return;
        }
    };
    let id = match inner.upload_create(repository).await {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%repository, %digest, "caching an upstream blob: {error}");
            return;
        }
    };
    let length = response.content_length();
    let client = match length {
        Some(length) if length > STREAM_MIN => {
            let (sender, receiver) = mpsc::channel(TEE_QUEUE);
            *lock(&guard.offered) = Some(receiver);
            Some(sender)
        }
        _ => None,
    };
    if length.is_some() {
        guard.length.send_replace(length);
    }
    tracing::info!(%repository, %digest, length, "fetching blob from upstream");
    let (cache_sender, cache_receiver) = mpsc::channel(TEE_QUEUE);
    let written = inner.upload_complete(
        repository,
        &id,
        digest,
        Some(receiver_stream(cache_receiver)),
    );
    let read = forward(
        response.bytes_stream(),
        cache_sender,
        client,
        &guard.offered,
    );
    let (written, (mut client, last)) = futures_util::join!(written, read);
    match written {
        Ok(size) => {
            tracing::info!(%repository, %digest, size, "cached blob from upstream");
            if let Some(last) = last {
                send_to_client(&mut client, &guard.offered, Ok(last)).await;
            }
        }
        Err(error) => {
            tracing::warn!(%repository, %digest, "upstream blob not cached: {error}");
            // A digest mismatch discarded the session already; a cut body left it.
            let _ = inner.upload_cancel(repository, &id).await;
            let error = io::Error::other(format!("upstream blob {digest}: {error}"));
            send_to_client(&mut client, &guard.offered, Err(error)).await;
        }
    }
}

/// Copies the upstream body to the cache writer and the client. Returns the client (unless it
/// went away) and the last chunk, which the client only gets once the cache verified the
/// digest: a client must not see a complete body of bytes that do not match.
async fn forward(
    body: impl Stream<Item = reqwest::Result<Bytes>>,
    cache: ChunkSender,
    mut client: Option<ChunkSender>,
    offered: &Mutex<Option<ChunkReceiver>>,
) -> (Option<ChunkSender>, Option<Bytes>) {
    let mut body = std::pin::pin!(body);
    let mut held: Option<Bytes> = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) if chunk.is_empty() => continue,
            Ok(chunk) => chunk,
            Err(error) => {
                // Fails the upload; the caller tells the client.
                let _ = cache.send(Err(io::Error::other(error))).await;
                return (client, None);
            }
        };
        if cache.send(Ok(chunk.clone())).await.is_err() {
            // The writer failed; the caller tells the client.
            return (client, None);
        }
        if let Some(previous) = held.replace(chunk) {
            send_to_client(&mut client, offered, Ok(previous)).await;
        }
    }
    (client, held)
}

/// Queues `item` for the client; drops the client when it went away, stalls, or nobody took
/// the stream within [`CLAIM_WINDOW`] (the download then goes on for the cache alone).
async fn send_to_client(
    client: &mut Option<ChunkSender>,
    offered: &Mutex<Option<ChunkReceiver>>,
    item: io::Result<Bytes>,
) {
    let Some(sender) = client.as_ref() else {
        return;
    };
    loop {
        let unclaimed = lock(offered).is_some();
        let window = if unclaimed {
            CLAIM_WINDOW
        } else {
            CLIENT_STALL
        };
        match tokio::time::timeout(window, sender.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(item);
                return;
            }
            Ok(Err(_)) => break,
            Err(_) => {
                if lock(offered).take().is_some() {
                    break;
                }
                if !unclaimed {
                    tracing::warn!("a client stopped reading a blob being cached; left behind");
                    break;
                }
                // Taken during the claim window: wait on as for any client.
            }
        }
    }
    *client = None;
}

fn receiver_stream(receiver: ChunkReceiver) -> ByteStream {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
}

/// The client's body: the chunks of the download, which must add up to `length` bytes.
fn client_stream(receiver: ChunkReceiver, length: u64) -> ByteStream {
    futures_util::stream::unfold((Some(receiver), 0u64), move |(receiver, sent)| async move {
        let mut receiver = receiver?;
        let item = match receiver.recv().await {
            Some(Ok(chunk)) => {
                let sent = sent + chunk.len() as u64;
                if sent <= length {
                    return Some((Ok(chunk), (Some(receiver), sent)));
                }
                Err(io::Error::other(
                    "upstream sent more bytes than it announced",
                ))
            }
            Some(Err(error)) => Err(error),
            None if sent == length => return None,
            None => Err(io::Error::other(
                "the upstream download ended before the announced length",
            )),
        };
        Some((item, (None, sent)))
    })
    .boxed()
}

impl<S: Storage> Storage for ProxyStorage<S> {
    async fn blob_size(&self, repository: &str, digest: &Digest) -> StorageResult<Option<u64>> {
        if let Some(size) = self.inner.blob_size(repository, digest).await? {
            return Ok(Some(size));
        }
        let Some(fill) = self.fill(repository, digest) else {
            return Ok(None);
        };
        match fill.length().await {
            // Answered as soon as upstream announced it, so that the GET asking can stream.
            Some(length) if length > STREAM_MIN => Ok(Some(length)),
            _ => {
                fill.finished().await;
                self.inner.blob_size(repository, digest).await
            }
        }
    }

    async fn blob_open(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> StorageResult<(u64, BlobReader)> {
        if self.inner.blob_size(repository, digest).await?.is_none() {
            match self.fill(repository, digest) {
                Some(fill) => fill.finished().await,
                None => return Err(StorageError::BlobUnknown(digest.clone())),
            }
            if self.inner.blob_size(repository, digest).await?.is_none() {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
        }
        self.inner.blob_open(repository, digest, offset).await
    }

    /// On a miss, the upstream download streamed while it is cached; otherwise the inner
    /// backend's download path (for the filesystem, chunks read straight into the body).
    async fn blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> StorageResult<ByteStream> {
        if self.inner.blob_size(repository, digest).await?.is_none() {
            let Some(fill) = self.fill(repository, digest) else {
                return Err(StorageError::BlobUnknown(digest.clone()));
            };
            // The whole blob, and no other request took the stream: stream it while caching.
            if offset == 0
                && fill.length().await == Some(length)
                && let Some(receiver) = lock(&fill.offered).take()
            {
                tracing::info!(%repository, %digest, "streaming blob from upstream while caching it");
                return Ok(client_stream(receiver, length));
            }
            fill.finished().await;
            if self.inner.blob_size(repository, digest).await?.is_none() {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
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
        if let Reference::Tag(tag) = reference {
            return self.manifest_by_tag(repository, tag).await;
        }
        if let Some(local) = self.inner.manifest_get(repository, reference).await? {
            return Ok(Some(local));
        }
        match self.fetch_manifest(repository, reference).await {
            Ok(manifest) => {
                self.inner
                    .manifest_put(repository, None, manifest.clone(), None)
                    .await?;
                Ok(Some(manifest))
            }
            Err(UpstreamError::NotFound) => Ok(None),
            Err(UpstreamError::Failed(reason)) => {
                tracing::warn!(%repository, "upstream manifest: {reason}");
                Ok(None)
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
        // The push's check of the blobs it names may have started downloads of large ones.
        self.fills_finished(repository).await;
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

    /// A streamed client body ends cleanly only after exactly the announced bytes.
    #[tokio::test]
    async fn client_stream_ends_in_an_error_unless_the_length_is_exact() {
        let cases: [(&[&[u8]], bool, bool); 4] = [
            (&[b"abc", b"de"], false, true),
            (&[b"abc", b"def"], false, false),
            (&[b"abc"], false, false),
            (&[b"abc", b"de"], true, false),
        ];
        for (chunks, then_error, clean) in cases {
            let (sender, receiver) = mpsc::channel(8);
            for chunk in chunks {
                sender.send(Ok(Bytes::from_static(chunk))).await.unwrap();
            }
            if then_error {
                sender
                    .send(Err(io::Error::other("bad digest")))
                    .await
                    .unwrap();
            }
            drop(sender);
            let items: Vec<io::Result<Bytes>> = client_stream(receiver, 5).collect().await;
            let failed = items.iter().filter(|item| item.is_err()).count();
            assert_eq!(failed, usize::from(!clean), "{chunks:?} {then_error}");
            assert!(
                items.last().unwrap().is_ok() == clean,
                "the error comes last"
            );
            let sent: usize = items.iter().flatten().map(Bytes::len).sum();
            assert!(sent <= 5, "{chunks:?}: {sent} bytes passed");
        }
    }
}
