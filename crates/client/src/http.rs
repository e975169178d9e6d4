//! The distribution API over HTTP: one [`Registry`] per registry host, with authentication,
//! retries and the blob and manifest endpoints.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use strata_oci::{Digest, media_types};
use strata_store::{BlobRef, Ingested, Store};

use crate::auth::{Challenge, TokenCache, parse_challenge, repository_scope};
use crate::credentials::{self, Credentials};
use crate::{ClientError, Result};

/// Manifests larger than this are refused (the distribution spec's limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Every manifest kind strata understands, for content negotiation.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Read size when streaming a blob file into an upload.
const UPLOAD_READ_BUFFER: usize = 1 << 20;

/// Chunk size for registries that demand chunked uploads.
const UPLOAD_CHUNK: u64 = 16 << 20;

/// How a command talks to registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Accept invalid certificates and fall back to plain HTTP (`--tls-verify=false`).
    pub insecure: bool,
    /// Blobs transferred at the same time.
    pub parallel: usize,
    /// Attempts for one request (connection errors, 5xx, 429).
    pub attempts: u32,
    /// First retry delay; doubled on each further attempt.
    pub backoff: Duration,
    /// Credentials to use instead of the stored ones (`login`).
    pub credentials: Option<Credentials>,
    /// Push uncompressed layers gzip-compressed (as Docker and skopeo do); the pushed manifest
    /// then differs from the stored one. False: push byte for byte.
    pub compress_layers: bool,
    /// Told about blob transfers (progress bars).
    pub progress: Option<Progress>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure: false,
            parallel: 3,
            attempts: 6,
            backoff: Duration::from_millis(500),
            credentials: None,
            compress_layers: true,
            progress: None,
        }
    }
}

/// A fetched manifest or index, byte for byte as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl FetchedManifest {
    pub fn descriptor(&self) -> BlobRef {
        BlobRef {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// True for hosts Docker treats as insecure by default: loopback names and addresses.
pub fn is_loopback(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The HTTP client for a registry; `plain_http_only`: without a TLS trust store.
fn http_client(domain: &str, insecure: bool, plain_http_only: bool) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(insecure)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120));
    if plain_http_only && !insecure {
        builder = builder.tls_certs_only(std::iter::empty());
    }
    builder.build().map_err(|e| ClientError::Connection {
        registry: domain.into(),
        message: e.to_string(),
    })
}

/// The host to contact for a reference's domain.
fn api_host(domain: &str) -> &str {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// One registry: its base URL, HTTP client, credentials and tokens.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    domain: String,
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    tokens: TokenCache,
    /// Set once the registry asked for Basic authentication.
    basic: std::sync::atomic::AtomicBool,
    options: ClientOptions,
}

/// What went wrong with one attempt, and whether another may succeed.
enum Attempt {
    Retry(String, Option<Duration>),
    Fail(ClientError),
}

impl Registry {
    /// Connects to the registry of `domain` (`docker.io`, `127.0.0.1:5000`): picks the scheme,
    /// reads credentials, and pings `/v2/`.
    pub async fn connect(domain: &str, options: ClientOptions) -> Result<Registry> {
        let credentials = match &options.credentials {
            Some(c) => Some(c.clone()),
            None => credentials::lookup(domain)?,
        };
        let mut options = options;
        options.insecure |= crate::config::RegistriesConfig::load()?.insecure(domain);
        // A loopback registry is spoken to over plain HTTP: its client loads no trust store
        // (reading the platform's ~100 ms of certificates); HTTPS token realms get a full one.
        let http = http_client(domain, options.insecure, is_loopback(domain))?;
        let host = api_host(domain);
        // Like Docker, loopback registries speak plain HTTP; --tls-verify=false tries HTTPS
        // first and falls back to HTTP.
        let schemes: &[&str] = if is_loopback(domain) {
            &["http"]
        } else if options.insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last_error = None;
        for scheme in schemes {
            let registry = Registry {
                inner: Arc::new(RegistryInner {
                    domain: domain.into(),
                    base: format!("{scheme}://{host}"),
                    http: http.clone(),
                    credentials: credentials.clone(),
                    tokens: TokenCache::default(),
                    basic: false.into(),
                    options: options.clone(),
                }),
            };
            match registry.ping().await {
                Ok(()) => return Ok(registry),
                Err(e @ (ClientError::Tls { .. } | ClientError::Connection { .. })) => {
                    last_error = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one scheme is tried"))
    }

    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// `GET /v2/`: reachable, speaks the distribution API, and accepts our credentials.
    async fn ping(&self) -> Result<()> {
        let response = self.send(Method::GET, "/v2/", &[], |r| r, "").await;
        match response {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(self.unexpected(Method::GET, "/v2/", r, "/v2/").await),
            // Anonymous pulls of public repositories still work when /v2/ wants credentials.
            Err(ClientError::Unauthorized { .. }) if self.inner.credentials.is_none() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks the credentials: `/v2/` must accept them (with a token when bearer auth is used).
    pub async fn check_login(&self) -> Result<()> {
        let response = self.send(Method::GET, "/v2/", &[], |r| r, "").await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.unexpected(Method::GET, "/v2/", response, "/v2/").await)
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.inner.base, path_or_url)
        }
    }

    /// Sends a request built by `build` (called again for each attempt), authenticating on
    /// `401` and retrying connection errors, `429` and `5xx` with backoff (`Retry-After` wins).
    /// `scope` is the token scope the request needs.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        scope: &str,
    ) -> Result<Response> {
        let url = self.url(path);
        let mut authenticated_after_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = build(self.inner.http.request(method.clone(), &url).query(query));
            request = self.authorize(request, scope);
            let outcome = match request.send().await {
                Err(e) => self.classify_send_error(e),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    if authenticated_after_challenge {
                        return Err(self.unauthorized(scope));
                    }
                    authenticated_after_challenge = true;
                    self.answer_challenge(&response, scope).await?;
                    attempt -= 1;
                    continue;
                }
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        || response.status().is_server_error() =>
                {
                    let wait = retry_after(response.headers());
                    Attempt::Retry(format!("HTTP {}", response.status()), wait)
                }
                Ok(response) => return Ok(response),
            };
            match outcome {
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(message, wait) => {
                    if attempt >= self.inner.options.attempts {
                        return Err(ClientError::Connection {
                            registry: self.inner.domain.clone(),
                            message: format!(
                                "{method} {url}: {message} (after {attempt} attempts)"
                            ),
                        });
                    }
                    let delay = wait.unwrap_or_else(|| self.backoff(attempt));
                    tracing::info!("{method} {url}: {message}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.inner.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(6))
    }

    fn classify_send_error(&self, e: reqwest::Error) -> Attempt {
        let message = error_chain(&e);
        let lower = message.to_ascii_lowercase();
        // rustls reports a plain-HTTP answer as a corrupt message.
        let tls_failure = [
            "certificate",
            "tls",
            "handshake",
            "corrupt message",
            "invalidcontenttype",
            "alert received",
        ];
        if tls_failure.iter().any(|t| lower.contains(t)) {
            return Attempt::Fail(ClientError::Tls {
                registry: self.inner.domain.clone(),
                message,
            });
        }
        // An unknown host name stays unknown: no point retrying.
        if lower.contains("dns error") || lower.contains("failed to lookup address") {
            return Attempt::Fail(ClientError::Connection {
                registry: self.inner.domain.clone(),
                message,
            });
        }
        if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
            return Attempt::Retry(message, None);
        }
        Attempt::Fail(ClientError::Connection {
            registry: self.inner.domain.clone(),
            message,
        })
    }

    fn authorize(&self, request: RequestBuilder, scope: &str) -> RequestBuilder {
        if let Some(token) = self.inner.tokens.get(scope) {
            return request.bearer_auth(token);
        }
        if self.inner.basic.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(c) = &self.inner.credentials
        {
            return request.basic_auth(&c.username, Some(&c.password));
        }
        request
    }

    fn unauthorized(&self, scope: &str) -> ClientError {
        ClientError::Unauthorized {
            registry: self.inner.domain.clone(),
            scope: if scope.is_empty() {
                "the registry".into()
            } else {
                scope.into()
            },
            hint: if self.inner.credentials.is_none() {
                " (no credentials stored: run `strata login`)"
            } else {
                " (check the stored credentials)"
            },
        }
    }

    /// Prepares credentials for the next attempt from a `401`'s challenge.
    async fn answer_challenge(&self, response: &Response, scope: &str) -> Result<()> {
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        match challenge {
            Some(Challenge::Basic) if self.inner.credentials.is_some() => {
                self.inner
                    .basic
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: offered,
            }) => {
                let token = self
                    .fetch_token(&realm, service.as_deref(), scope, offered.as_deref())
                    .await?;
                self.inner.tokens.insert(scope, token);
                Ok(())
            }
            _ => Err(self.unauthorized(scope)),
        }
    }

    /// The token flow: `GET realm?service=..&scope=..`, with Basic credentials when we have
    /// them. Scopes are space-separated in our scope strings (one request may need several).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        offered: Option<&str>,
    ) -> Result<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        let wanted = if scope.is_empty() {
            offered.unwrap_or_default()
        } else {
            scope
        };
        for s in wanted.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let full_tls;
        let http = if is_loopback(&self.inner.domain) && realm.starts_with("https://") {
            full_tls = http_client(&self.inner.domain, self.inner.options.insecure, false)?;
            &full_tls
        } else {
            &self.inner.http
        };
        let mut request = http.get(realm).query(&query);
        if let Some(c) = &self.inner.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| ClientError::Connection {
            registry: self.inner.domain.clone(),
            message: format!("token server {realm}: {}", error_chain(&e)),
        })?;
        if !response.status().is_success() {
            return Err(self.unauthorized(wanted));
        }
        let bytes = self.read_bounded(response, 1 << 20, realm).await?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Connection {
                registry: self.inner.domain.clone(),
                message: format!("token server {realm}: {e}"),
            })?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClientError::Connection {
                registry: self.inner.domain.clone(),
                message: format!("token server {realm} answered without a token"),
            })
    }

    /// Turns an unexpected response into an error, reading the registry's error code.
    async fn unexpected(
        &self,
        method: Method,
        path: &str,
        response: Response,
        subject: &str,
    ) -> ClientError {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let codes: Vec<(String, String)> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let field = |n| {
                    e.get(n)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                (field("code"), field("message"))
            })
            .collect();
        let has = |code: &str| codes.iter().any(|(c, _)| c == code);
        if has("MANIFEST_UNKNOWN")
            || (status == StatusCode::NOT_FOUND
                && path.contains("/manifests/")
                && !has("NAME_UNKNOWN"))
        {
            return ClientError::ManifestUnknown {
                reference: subject.to_string(),
            };
        }
        if has("NAME_UNKNOWN") {
            return ClientError::NameUnknown {
                registry: self.inner.domain.clone(),
                repository: repository_of(subject).to_string(),
            };
        }
        let detail = if codes.is_empty() {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() {
                String::new()
            } else {
                format!(": {}", text.chars().take(200).collect::<String>())
            }
        } else {
            let joined: Vec<String> = codes.iter().map(|(c, m)| format!("{c}: {m}")).collect();
            format!(": {}", joined.join("; "))
        };
        ClientError::Registry {
            registry: self.inner.domain.clone(),
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            detail,
        }
    }

    /// `GET /v2/<repo>/manifests/<reference>`, verified against the digest when the reference
    /// is one (and against `Docker-Content-Digest` otherwise).
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let scope = repository_scope(repository, "pull");
        let response = self
            .send(
                Method::GET,
                &path,
                &[],
                |r| r.header(header::ACCEPT, MANIFEST_ACCEPT),
                &scope,
            )
            .await?;
        let subject = format!(
            "{}/{repository}{}{reference}",
            self.inner.domain,
            if reference.contains(':') { "@" } else { ":" }
        );
        if !response.status().is_success() {
            return Err(self
                .unexpected(Method::GET, &path, response, &subject)
                .await);
        }
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = self
            .read_bounded(response, MAX_MANIFEST_BYTES, &path)
            .await?;
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        let digest = match &expected {
            Some(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != *expected {
                    return Err(ClientError::DigestMismatch {
                        registry: self.inner.domain.clone(),
                        what: "manifest",
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let media_type = document_media_type(&bytes)
            .or(content_type)
            .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    async fn read_bounded(
        &self,
        mut response: Response,
        limit: usize,
        path: &str,
    ) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Connection {
                registry: self.inner.domain.clone(),
                message: format!("{path}: {}", error_chain(&e)),
            })?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(ClientError::Invalid(format!(
                    "{path} on {}: larger than {limit} bytes",
                    self.inner.domain
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest the registry computed.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let scope = repository_scope(repository, "pull,push");
        let body = bytes.to_vec();
        let response = self
            .send(
                Method::PUT,
                &path,
                &[],
                |r| {
                    r.header(header::CONTENT_TYPE, media_type)
                        .body(body.clone())
                },
                &scope,
            )
            .await?;
        if !response.status().is_success() {
            let subject = format!("{}/{repository}:{reference}", self.inner.domain);
            return Err(self
                .unexpected(Method::PUT, &path, response, &subject)
                .await);
        }
        let expected = Digest::sha256_of(bytes);
        if let Some(returned) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && returned.algorithm() == expected.algorithm()
            && returned != expected
        {
            return Err(ClientError::DigestMismatch {
                registry: self.inner.domain.clone(),
                what: "pushed manifest",
                expected: expected.to_string(),
                actual: returned.to_string(),
            });
        }
        Ok(())
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the repository has the blob.
    pub async fn has_blob(
        &self,
        repository: &str,
        digest: &Digest,
        scope_actions: &str,
    ) -> Result<bool> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scope = repository_scope(repository, scope_actions);
        let response = self.send(Method::HEAD, &path, &[], |r| r, &scope).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .unexpected(
                    Method::HEAD,
                    &path,
                    response,
                    &format!("{repository}@{digest}"),
                )
                .await),
        }
    }

    /// Downloads a blob into the store. Bytes are digested as they stream; the blob becomes
    /// visible only after its digest and size checked out. An interrupted transfer is resumed
    /// with a `Range` request when the registry supports it, restarted otherwise.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        blob: &BlobRef,
        store: &Store,
    ) -> Result<Ingested> {
        let writer = self
            .download(repository, blob, || {
                Ok(store.blob_writer(blob.digest.algorithm())?)
            })
            .await?;
        let expected = blob.digest.clone();
        let registry = self.inner.domain.clone();
        // Commit fsyncs: keep it off the async workers.
        tokio::task::spawn_blocking(move || writer.commit(Some(&expected)))
            .await
            .map_err(|e| ClientError::Invalid(format!("blob commit task failed: {e}")))?
            .map_err(|e| match e {
                strata_store::StoreError::DigestMismatch { expected, actual } => {
                    ClientError::DigestMismatch {
                        registry,
                        what: "blob",
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    }
                }
                other => other.into(),
            })
    }

    /// Streams a blob into a sink made by `new_sink` (made again when the registry restarts a
    /// resumed transfer from the start); returns the sink holding exactly `blob.size` bytes,
    /// for the caller to verify and commit.
    pub(crate) async fn download<S: BlobSink>(
        &self,
        repository: &str,
        blob: &BlobRef,
        new_sink: impl Fn() -> Result<S>,
    ) -> Result<S> {
        let path = format!("/v2/{repository}/blobs/{}", blob.digest);
        let scope = repository_scope(repository, "pull");
        let progress = self.inner.options.progress.clone();
        if let Some(p) = &progress {
            p.0.started(&blob.digest, blob.size);
        }
        let mut writer = new_sink()?;
        let mut failures = 0;
        loop {
            let offset = writer.bytes_written();
            let range = format!("bytes={offset}-");
            let response = self
                .send(
                    Method::GET,
                    &path,
                    &[],
                    |r| {
                        if offset > 0 {
                            r.header(header::RANGE, range.as_str())
                        } else {
                            r
                        }
                    },
                    &scope,
                )
                .await?;
            match response.status() {
                StatusCode::PARTIAL_CONTENT if offset > 0 => {}
                s if s.is_success() => {
                    if offset > 0 {
                        // The registry ignored the range: start over.
                        writer = new_sink()?;
                        if let Some(p) = &progress {
                            p.0.restarted(&blob.digest);
                        }
                    }
                }
                _ => {
                    let subject = format!("{}/{repository}@{}", self.inner.domain, blob.digest);
                    return Err(self
                        .unexpected(Method::GET, &path, response, &subject)
                        .await);
                }
            }
            match self
                .stream_into(response, &mut writer, blob, progress.as_ref())
                .await
            {
                Ok(()) => break,
                Err(StreamError::Fatal(e)) => return Err(e),
                Err(StreamError::Interrupted(message)) => {
                    failures += 1;
                    if failures >= self.inner.options.attempts {
                        return Err(ClientError::Connection {
                            registry: self.inner.domain.clone(),
                            message: format!("GET {path}: {message} (after {failures} attempts)"),
                        });
                    }
                    let delay = self.backoff(failures);
                    tracing::info!("GET {path}: {message}; resuming in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if writer.bytes_written() != blob.size {
            return Err(ClientError::Invalid(format!(
                "blob {} from {}: received {} bytes, the descriptor says {}",
                blob.digest,
                self.inner.domain,
                writer.bytes_written(),
                blob.size
            )));
        }
        if let Some(p) = &progress {
            p.0.finished(&blob.digest);
        }
        Ok(writer)
    }

    async fn stream_into<S: BlobSink>(
        &self,
        mut response: Response,
        writer: &mut S,
        blob: &BlobRef,
        progress: Option<&Progress>,
    ) -> std::result::Result<(), StreamError> {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if writer.bytes_written() + chunk.len() as u64 > blob.size {
                        return Err(StreamError::Fatal(ClientError::Invalid(format!(
                            "blob {} from {}: more bytes than the {} its descriptor says",
                            blob.digest, self.inner.domain, blob.size
                        ))));
                    }
                    // Buffered writes into the page cache; the fsync happens at commit.
                    let len = chunk.len() as u64;
                    writer.write_chunk(chunk).map_err(|e| {
                        StreamError::Fatal(ClientError::io(
                            format!("writing blob {}", blob.digest),
                            e,
                        ))
                    })?;
                    if let Some(p) = progress {
                        p.0.advanced(&blob.digest, len);
                    }
                }
                Ok(None) => {
                    if writer.bytes_written() < blob.size {
                        return Err(StreamError::Interrupted(format!(
                            "connection closed after {} of {} bytes",
                            writer.bytes_written(),
                            blob.size
                        )));
                    }
                    return Ok(());
                }
                Err(e) => return Err(StreamError::Interrupted(error_chain(&e))),
            }
        }
    }

    /// Uploads a blob (the bytes of `blob_path`) unless the repository has it. With
    /// `mount_from` (another repository of this registry known to hold it), asks for a
    /// cross-repository mount first. Says what was done.
    pub async fn push_blob(
        &self,
        repository: &str,
        blob: &BlobRef,
        blob_path: &Path,
        mount_from: Option<&str>,
    ) -> Result<BlobPush> {
        let progress = self.inner.options.progress.clone();
        let result = self
            .push_blob_inner(repository, blob, blob_path, mount_from)
            .await;
        if let Some(p) = progress {
            p.0.finished(&blob.digest);
        }
        result
    }

    async fn push_blob_inner(
        &self,
        repository: &str,
        blob: &BlobRef,
        blob_path: &Path,
        mount_from: Option<&str>,
    ) -> Result<BlobPush> {
        if self.has_blob(repository, &blob.digest, "pull,push").await? {
            return Ok(BlobPush::Exists);
        }
        let path = format!("/v2/{repository}/blobs/uploads/");
        let digest = blob.digest.to_string();
        let mut scope = repository_scope(repository, "pull,push");
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(from) = mount_from {
            query.push(("mount", &digest));
            query.push(("from", from));
            scope = format!("{scope} {}", repository_scope(from, "pull"));
        }
        let response = self
            .send(
                Method::POST,
                &path,
                &query,
                |r| r.header(header::CONTENT_LENGTH, "0"),
                &scope,
            )
            .await?;
        if response.status() == StatusCode::CREATED && mount_from.is_some() {
            return Ok(BlobPush::Mounted);
        }
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .unexpected(Method::POST, &path, response, repository)
                .await);
        }
        let location = self.location(&response, &path)?;
        let chunk_min = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match chunk_min {
            Some(min) => {
                self.upload_chunked(&location, blob, blob_path, min.max(UPLOAD_CHUNK), &scope)
                    .await?
            }
            None => {
                let put = self
                    .put_monolithic(&location, blob, blob_path, &scope)
                    .await?;
                if put.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    // The registry wants chunks: start a fresh session for them.
                    let location = self.start_upload_scoped(repository, &scope).await?;
                    self.upload_chunked(&location, blob, blob_path, UPLOAD_CHUNK, &scope)
                        .await?;
                } else if !put.status().is_success() {
                    return Err(self
                        .unexpected(Method::PUT, &path, put, &format!("{repository}@{digest}"))
                        .await);
                }
            }
        }
        Ok(BlobPush::Uploaded)
    }

    /// Starts an upload session in `repository` (`POST .../blobs/uploads/`): its location.
    pub(crate) async fn start_upload(&self, repository: &str) -> Result<String> {
        let scope = repository_scope(repository, "pull,push");
        self.start_upload_scoped(repository, &scope).await
    }

    /// [`Registry::start_upload`] with the token scope of the push it is part of (which may
    /// also cover a mount's source repository).
    async fn start_upload_scoped(&self, repository: &str, scope: &str) -> Result<String> {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let response = self
            .send(
                Method::POST,
                &path,
                &[],
                |r| r.header(header::CONTENT_LENGTH, "0"),
                scope,
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .unexpected(Method::POST, &path, response, repository)
                .await);
        }
        self.location(&response, &path)
    }

    /// Sends the whole content of an upload session in one streamed `PATCH` (Docker's push
    /// flow: the digest of content produced while it is sent is known only at the end, and goes
    /// in [`Registry::finish_upload`]). One attempt: a stream cannot be replayed, so the
    /// caller starts over with a new session. Returns the session's next location and the
    /// byte count the registry says it holds, when it says.
    pub(crate) async fn patch_stream(
        &self,
        repository: &str,
        location: &str,
        body: reqwest::Body,
    ) -> Result<(String, Option<u64>)> {
        let scope = repository_scope(repository, "pull,push");
        let request = self.authorize(
            self.inner
                .http
                .request(Method::PATCH, self.url(location))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
            &scope,
        );
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Err(match self.classify_send_error(e) {
                    Attempt::Fail(e) => e,
                    Attempt::Retry(message, _) => ClientError::Connection {
                        registry: self.inner.domain.clone(),
                        message: format!("PATCH {location}: {message}"),
                    },
                });
            }
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            // Worth another attempt, in a new session (the caller's retry).
            return Err(ClientError::Connection {
                registry: self.inner.domain.clone(),
                message: format!("PATCH {location}: HTTP {status}"),
            });
        }
        if status != StatusCode::ACCEPTED {
            return Err(self
                .unexpected(Method::PATCH, location, response, repository)
                .await);
        }
        // `Range: 0-<last byte>`: what the registry received.
        let received = response
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("0-"))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|last| last + 1);
        Ok((self.location(&response, location)?, received))
    }

    /// Closes an upload session with the digest of what was sent (`PUT ...?digest=`): the
    /// registry checks it before the blob exists.
    pub(crate) async fn finish_upload(
        &self,
        repository: &str,
        location: &str,
        blob: &BlobRef,
    ) -> Result<()> {
        let scope = repository_scope(repository, "pull,push");
        let url = with_digest(location, &blob.digest);
        let response = self
            .send(
                Method::PUT,
                &url,
                &[],
                |r| r.header(header::CONTENT_LENGTH, "0"),
                &scope,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .unexpected(
                    Method::PUT,
                    location,
                    response,
                    &format!("{repository}@{}", blob.digest),
                )
                .await);
        }
        Ok(())
    }

    fn location(&self, response: &Response, path: &str) -> Result<String> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "{path} on {}: upload started without a Location",
                    self.inner.domain
                ))
            })?;
        Ok(self.url(location))
    }

    async fn put_monolithic(
        &self,
        location: &str,
        blob: &BlobRef,
        file: &Path,
        scope: &str,
    ) -> Result<Response> {
        use futures_util::StreamExt;
        let url = with_digest(location, &blob.digest);
        let size = blob.size.to_string();
        let open_error = std::sync::Mutex::new(None);
        let progress = self.inner.options.progress.clone();
        let response = self
            .send(
                Method::PUT,
                &url,
                &[],
                |r| {
                    // Reopened for each attempt: a body stream cannot be replayed.
                    let body = match std::fs::File::open(file) {
                        // 1 MiB reads: the default 4 KiB costs a blocking-pool hop per read.
                        Ok(f) => {
                            let (progress, digest) = (progress.clone(), blob.digest.clone());
                            if let Some(p) = &progress {
                                p.0.started(&digest, blob.size);
                            }
                            let stream = tokio_util::io::ReaderStream::with_capacity(
                                tokio::fs::File::from_std(f),
                                UPLOAD_READ_BUFFER,
                            )
                            .inspect(move |chunk| {
                                if let (Some(p), Ok(chunk)) = (&progress, chunk) {
                                    p.0.advanced(&digest, chunk.len() as u64);
                                }
                            });
                            reqwest::Body::wrap_stream(stream)
                        }
                        Err(e) => {
                            *open_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            reqwest::Body::from(Vec::new())
                        }
                    };
                    r.header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_LENGTH, size.as_str())
                        .body(body)
                },
                scope,
            )
            .await?;
        if let Some(e) = open_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(ClientError::io(file.display().to_string(), e));
        }
        Ok(response)
    }

    async fn upload_chunked(
        &self,
        location: &str,
        blob: &BlobRef,
        file: &Path,
        chunk: u64,
        scope: &str,
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut location = location.to_string();
        let mut offset = 0u64;
        let mut source = std::fs::File::open(file)
            .map_err(|e| ClientError::io(file.display().to_string(), e))?;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let mut data = vec![0u8; len as usize];
            source
                .seek(SeekFrom::Start(offset))
                .and_then(|_| source.read_exact(&mut data))
                .map_err(|e| ClientError::io(file.display().to_string(), e))?;
            let range = format!("{offset}-{}", offset + len - 1);
            let response = self
                .send(
                    Method::PATCH,
                    &location,
                    &[],
                    |r| {
                        r.header(header::CONTENT_TYPE, "application/octet-stream")
                            .header(header::CONTENT_RANGE, range.as_str())
                            .body(data.clone())
                    },
                    scope,
                )
                .await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(self
                    .unexpected(Method::PATCH, &location, response, &blob.digest.to_string())
                    .await);
            }
            location = self.location(&response, &location)?;
            offset += len;
        }
        let url = with_digest(&location, &blob.digest);
        let response = self
            .send(
                Method::PUT,
                &url,
                &[],
                |r| r.header(header::CONTENT_LENGTH, "0"),
                scope,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .unexpected(Method::PUT, &location, response, &blob.digest.to_string())
                .await);
        }
        Ok(())
    }

    /// `GET /v2/<repo>/tags/list`, following `Link` pagination.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>> {
        let scope = repository_scope(repository, "pull");
        let mut next = Some(format!("/v2/{repository}/tags/list"));
        let mut tags = Vec::new();
        while let Some(path) = next.take() {
            let response = self.send(Method::GET, &path, &[], |r| r, &scope).await?;
            if !response.status().is_success() {
                let subject = format!("{}/{repository}", self.inner.domain);
                return Err(self
                    .unexpected(Method::GET, &path, response, &subject)
                    .await);
            }
            next = next_link(response.headers());
            let body = self.read_bounded(response, 64 << 20, &path).await?;
            let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                ClientError::Invalid(format!("{path} on {}: {e}", self.inner.domain))
            })?;
            if let Some(list) = value.get("tags").and_then(|t| t.as_array()) {
                tags.extend(list.iter().filter_map(|t| t.as_str()).map(str::to_string));
            }
        }
        Ok(tags)
    }

    /// Downloads a small blob (a config) into memory, verified.
    pub async fn fetch_small_blob(
        &self,
        repository: &str,
        blob: &BlobRef,
        limit: usize,
    ) -> Result<Vec<u8>> {
        let path = format!("/v2/{repository}/blobs/{}", blob.digest);
        let scope = repository_scope(repository, "pull");
        let response = self.send(Method::GET, &path, &[], |r| r, &scope).await?;
        if !response.status().is_success() {
            let subject = format!("{}/{repository}@{}", self.inner.domain, blob.digest);
            return Err(self
                .unexpected(Method::GET, &path, response, &subject)
                .await);
        }
        let bytes = self.read_bounded(response, limit, &path).await?;
        let actual = Digest::of(blob.digest.algorithm(), &bytes);
        if actual != blob.digest {
            return Err(ClientError::DigestMismatch {
                registry: self.inner.domain.clone(),
                what: "blob",
                expected: blob.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }
}

/// Where a download streams: digested and counted as written.
pub(crate) trait BlobSink: Write + Send {
    fn bytes_written(&self) -> u64;

    /// Writes one chunk of the HTTP body (a sink may keep it without copying).
    fn write_chunk(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.write_all(&chunk)
    }
}

impl BlobSink for strata_store::BlobWriter {
    fn bytes_written(&self) -> u64 {
        strata_store::BlobWriter::bytes_written(self)
    }
}

/// Told about blob transfers as bytes move (for progress bars).
pub trait TransferObserver: Send + Sync {
    /// A transfer of `total` bytes begins.
    fn started(&self, digest: &Digest, total: u64);
    /// `bytes` more were transferred.
    fn advanced(&self, digest: &Digest, bytes: u64);
    /// The transfer starts over from byte 0.
    fn restarted(&self, _digest: &Digest) {}
    /// The transfer is over (done, or not needed after all).
    fn finished(&self, _digest: &Digest) {}
}

/// A shared [`TransferObserver`] in [`ClientOptions`].
#[derive(Clone)]
pub struct Progress(pub Arc<dyn TransferObserver>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// What [`Registry::push_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had the blob.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted,
    Uploaded,
}

enum StreamError {
    Interrupted(String),
    Fatal(ClientError),
}

/// `host:port/repo` of `host:port/repo:tag` or `host:port/repo@digest`.
fn repository_of(subject: &str) -> &str {
    let without_digest = subject.split('@').next().unwrap_or(subject);
    match without_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => without_digest,
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// `Retry-After` in seconds (the HTTP-date form is rare on registries and treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Bounded so a hostile server cannot park the command.
    Some(Duration::from_secs(seconds.min(60)))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let value: &HeaderValue = headers.get(header::LINK)?;
    let value = value.to_str().ok()?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The `mediaType` a manifest declares in its JSON, if any.
fn document_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// The error with its sources, which hold the useful part (connection refused, reset, TLS).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "foo.localhost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "docker.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn repository_of_subjects() {
        assert_eq!(repository_of("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
        assert_eq!(repository_of("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b");
        assert_eq!(repository_of("h/a@sha256:00"), "h/a");
        assert_eq!(repository_of("h:1/a:t@sha256:00"), "h:1/a");
    }

    #[test]
    fn link_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static("</v2/x/tags/list?n=2&last=b>; rel=\"next\""),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        assert_eq!(
            with_digest("http://h/u?_state=1", &Digest::sha256_of(b"")),
            format!("http://h/u?_state=1&digest={}", Digest::sha256_of(b""))
        );
    }
}
