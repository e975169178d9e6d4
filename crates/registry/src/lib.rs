//! strata-registry: an OCI Distribution Spec v1.1 registry server.
//!
//! [`router`] builds the HTTP application over any [`Storage`]; [`serve`] runs it on a
//! listener until a shutdown signal. The backends are [`FsStorage`] and
//! [`storage::S3Storage`] (layouts: docs/registry-storage.md); authentication is HTTP Basic
//! ([`auth`]) or Docker token authentication with a built-in token server ([`token`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod handlers;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod storage;
pub mod tls;
pub mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;

pub use handlers::AppState;
pub use storage::{FsStorage, Storage};

const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// Counts a body's bytes into `add`: at once when its length is known, else as chunks pass.
fn counted(body: Body, add: impl Fn(u64) + Send + Sync + 'static) -> Body {
    if let Some(length) = body.size_hint().exact() {
        add(length);
        return body;
    }
    Body::from_stream(body.into_data_stream().inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            add(chunk.len() as u64);
        }
    }))
}

/// Counts, logs and stamps every response with the API version header.
async fn observe<S: Storage>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let metrics = state.clone();
    let request = request.map(|body| counted(body, move |n| metrics.metrics.add_received(n)));
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    let status = response.status().as_u16();
    state.metrics.record_request(method.as_str(), status);
    tracing::info!(
        method = %method,
        path = %path,
        status,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let metrics = state.clone();
    response.map(|body| counted(body, move |n| metrics.metrics.add_sent(n)))
}

/// What the server enforces beyond the spec.
#[derive(Default)]
pub struct ServerOptions {
    /// Require HTTP Basic credentials from this file on `/v2/` (not on `/metrics`, `/healthz`).
    pub htpasswd: Option<auth::Htpasswd>,
    /// Collect garbage while serving (see [`gc`]).
    pub online_gc: Option<OnlineGc>,
    /// Docker token authentication with the built-in token server at `/token` (replaces
    /// `htpasswd`, whose users move into the token configuration).
    pub token: Option<token::TokenConfig>,
    /// Refuse every write (pushes, deletes, upload cancels) with 405 `UNSUPPORTED`, as
    /// Distribution's `storage.maintenance.readonly` does; pulls are served.
    pub read_only: bool,
    /// Refuse DELETE of manifests, tags and blobs with 405 `UNSUPPORTED` (Distribution's
    /// `storage.delete.enabled: false`).
    pub delete_disabled: bool,
}

/// Periodic online garbage collection.
#[derive(Debug, Clone, Copy)]
pub struct OnlineGc {
    /// Time between passes.
    pub interval: std::time::Duration,
    /// Unreferenced blobs whose bytes or links are younger than this are spared.
    pub grace: std::time::Duration,
}

/// Runs collection passes forever (the caller aborts the task on shutdown).
async fn collect_periodically<S: Storage>(storage: Arc<AppState<S>>, gc: OnlineGc) {
    loop {
        tokio::time::sleep(gc.interval).await;
        match storage.storage.collect_garbage(gc.grace).await {
            Ok(report) => tracing::info!(
                blobs = report.blobs_deleted.len(),
                bytes = report.bytes_freed,
                "online garbage collection"
            ),
            Err(error) => tracing::error!("online garbage collection: {error}"),
        }
    }
}

/// Answers 401 with a Basic challenge unless the request carries valid credentials.
async fn authenticate(
    State(htpasswd): State<auth::SharedHtpasswd>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v2") {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let checker = htpasswd.clone();
    let allowed = tokio::task::spawn_blocking(move || checker.check(authorization.as_deref()))
        .await
        .unwrap_or(false);
    if allowed {
        return next.run(request).await;
    }
    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", htpasswd.realm()))
        .unwrap_or(HeaderValue::from_static("Basic"));
    error::ApiError::new(error::ErrorCode::Unauthorized, "authentication required")
        .with_header(header::WWW_AUTHENTICATE, challenge)
        .into_response()
}

/// The token verifier's configuration and memory.
struct TokenState {
    config: token::TokenConfig,
    verified: token::VerifiedTokens,
}

/// Answers 401 with a Bearer challenge unless the request carries a valid token granting the
/// action its route needs (GET/HEAD pull, POST/PUT/PATCH push, DELETE delete, the catalog
/// `registry:catalog:*`).
async fn authorize_token(
    State(state): State<Arc<TokenState>>,
    mut request: Request,
    next: Next,
) -> Response {
    use error::{ApiError, ErrorCode};
    let Some(route) = names::parse_route(request.uri().path()) else {
        return next.run(request).await;
    };
    let config = &state.config;
    let required = token::required_access(&route, request.method());
    // Ask for pull with push, as Distribution does: a pusher checks what exists first.
    let scope = required.as_ref().map(|access| {
        let mut access = access.clone();
        if access.actions == ["push"] {
            access.actions = vec!["pull".to_owned(), "push".to_owned()];
        }
        token::scope_string(&access)
    });
    let refuse = |code: ErrorCode, message: String, error: Option<&str>| {
        let challenge = HeaderValue::from_str(&config.challenge(scope.as_deref(), error))
            .unwrap_or(HeaderValue::from_static("Bearer"));
        let mut refusal = ApiError::new(code, message)
            .with_status(axum::http::StatusCode::UNAUTHORIZED)
            .with_header(header::WWW_AUTHENTICATE, challenge);
        if let Some(access) = &required {
            refusal = refusal.with_detail(serde_json::json!([{
                "Type": access.kind, "Name": access.name, "Action": access.actions.join(","),
            }]));
        }
        refusal.into_response()
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let Some(bearer) = bearer else {
        return refuse(
            ErrorCode::Unauthorized,
            "authentication required".to_owned(),
            None,
        );
    };
    let verified = match state.verified.verify(config, &bearer) {
        Ok(verified) => verified,
        Err(error) => {
            return refuse(
                ErrorCode::Unauthorized,
                error.to_string(),
                Some("invalid_token"),
            );
        }
    };
    if let Some(access) = &required
        && !verified.allows(&access.kind, &access.name, &access.actions[0])
    {
        return refuse(
            ErrorCode::Denied,
            "requested access to the resource is denied".to_owned(),
            Some("insufficient_scope"),
        );
    }
    // A cross-repository mount also reads the source: without pull on it, drop the mount and
    // let the request start a plain upload (as the spec allows).
    if let names::Route::UploadStart { .. } = route
        && let Some(query) = request.uri().query()
    {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let readable = pairs
            .iter()
            .filter(|(key, _)| key == "from")
            .all(|(_, from)| verified.allows("repository", from, "pull"));
        if !readable {
            // Re-encoded from the decoded pairs, so no spelling of `from` or `mount` survives.
            let kept = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    pairs
                        .iter()
                        .filter(|(key, _)| key != "from" && key != "mount"),
                )
                .finish();
            let path = request.uri().path().to_owned();
            let uri = if kept.is_empty() {
                path
            } else {
                format!("{path}?{kept}")
            };
            match uri.parse() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(_) => {
                    return refuse(
                        ErrorCode::Denied,
                        "requested access to the resource is denied".to_owned(),
                        Some("insufficient_scope"),
                    );
                }
            }
        }
    }
    next.run(request).await
}

/// `GET /token?service=&scope=...`: the built-in token server.
async fn token_endpoint(State(state): State<Arc<TokenState>>, request: Request) -> Response {
    let config = &state.config;
    use error::{ApiError, ErrorCode};
    let query = request.uri().query().unwrap_or_default();
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "service" if value != config.service => {
                return ApiError::new(ErrorCode::Denied, format!("unknown service {value:?}"))
                    .with_status(axum::http::StatusCode::BAD_REQUEST)
                    .into_response();
            }
            // Several scopes come as repeated parameters or space-separated.
            "scope" => scopes.extend(value.split(' ').filter_map(token::parse_scope)),
            _ => {}
        }
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let account = match authorization {
        None => token::ANONYMOUS.to_owned(),
        Some(authorization) => {
            let checker = state.clone();
            let account = tokio::task::spawn_blocking(move || {
                let users = checker.config.users.as_ref()?;
                users.check_user(Some(&authorization))
            })
            .await
            .ok()
            .flatten();
            match account {
                Some(account) => account,
                None => {
                    let realm = config
                        .users
                        .as_ref()
                        .map_or(auth::REALM, |users| users.realm());
                    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
                        .unwrap_or(HeaderValue::from_static("Basic"));
                    return ApiError::new(ErrorCode::Unauthorized, "invalid credentials")
                        .with_header(header::WWW_AUTHENTICATE, challenge)
                        .into_response();
                }
            }
        }
    };
    let (token, expires_in, _) = grant_token(config, &account, scopes);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
        })
        .to_string(),
    )
        .into_response()
}

/// A token for `account` with, per requested resource, the requested actions some grant
/// allows; also its lifetime and the granted scopes.
fn grant_token(
    config: &token::TokenConfig,
    account: &str,
    scopes: Vec<token::Access>,
) -> (String, u64, Vec<String>) {
    let access: Vec<token::Access> = scopes
        .into_iter()
        .filter_map(|requested| {
            let actions = config.granted(account, &requested);
            (!actions.is_empty()).then_some(token::Access {
                actions,
                ..requested
            })
        })
        .collect();
    let granted = access.iter().map(token::scope_string).collect();
    let (token, expires_in) = config.issue(account, access);
    (token, expires_in, granted)
}

/// Largest form body accepted by `POST /token`.
const TOKEN_FORM_LIMIT: usize = 64 << 10;

/// An OAuth2 error answer (`{"error", "error_description"}`).
fn oauth_error(status: axum::http::StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": error, "error_description": description }).to_string(),
    )
        .into_response()
}

/// `POST /token`: the OAuth2 form of Docker's token spec. `grant_type=password` (with
/// `username`, `password`) or `grant_type=refresh_token` (with `refresh_token`), plus
/// `service`, `client_id`, `scope` (space-separated) and `access_type=offline` for a refresh
/// token in the answer.
async fn token_post(State(state): State<Arc<TokenState>>, request: Request) -> Response {
    use axum::http::StatusCode;
    let config = &state.config;
    let body = match axum::body::to_bytes(request.into_body(), TOKEN_FORM_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "unreadable or oversized form",
            );
        }
    };
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&body)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if field("service") != Some(config.service.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("service must be {:?}", config.service),
        );
    }
    if field("client_id").is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id is required",
        );
    }
    let account = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                );
            };
            let authorization = format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}")
                )
            );
            let checker = state.clone();
            tokio::task::spawn_blocking(move || {
                let users = checker.config.users.as_ref()?;
                users.check_user(Some(&authorization))
            })
            .await
            .ok()
            .flatten()
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            // A user removed from the htpasswd file can no longer refresh.
            config.verify_refresh(refresh).ok().filter(|account| {
                config
                    .users
                    .as_ref()
                    .is_some_and(|users| users.has_user(account))
            })
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password or refresh_token",
            );
        }
    };
    let Some(account) = account else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "invalid credentials or refresh token",
        );
    };
    let scopes = field("scope")
        .unwrap_or_default()
        .split(' ')
        .filter_map(token::parse_scope)
        .collect();
    let (token, expires_in, granted) = grant_token(config, &account, scopes);
    let mut answer = serde_json::json!({
        "access_token": token,
        "token": token,
        "expires_in": expires_in,
        "scope": granted.join(" "),
        "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if field("access_type") == Some("offline") {
        answer["refresh_token"] = match field("refresh_token") {
            Some(refresh) if field("grant_type") == Some("refresh_token") => refresh.into(),
            _ => config.issue_refresh(&account).into(),
        };
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// The registry application: `/v2/...`, `/metrics` and `/healthz`.
pub fn router<S: Storage>(storage: S, options: ServerOptions) -> Router {
    app(new_state(storage, &options), options)
}

fn new_state<S: Storage>(storage: S, options: &ServerOptions) -> Arc<AppState<S>> {
    Arc::new(AppState {
        storage,
        metrics: metrics::Metrics::default(),
        read_only: options.read_only,
        delete_disabled: options.delete_disabled,
    })
}

fn app<S: Storage>(state: Arc<AppState<S>>, options: ServerOptions) -> Router {
    let mut router = Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState<S>>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(handlers::dispatch::<S>)
        .with_state(state.clone());
    if let Some(config) = options.token {
        let config = Arc::new(TokenState {
            config,
            verified: token::VerifiedTokens::default(),
        });
        router = router
            .layer(middleware::from_fn_with_state(
                config.clone(),
                authorize_token,
            ))
            .route(
                "/token",
                get(token_endpoint).post(token_post).with_state(config),
            );
    } else if let Some(htpasswd) = options.htpasswd {
        router = router.layer(middleware::from_fn_with_state(
            Arc::new(htpasswd),
            authenticate,
        ));
    }
    // Outermost, so that refused requests are counted and logged too.
    router.layer(middleware::from_fn_with_state(state, observe::<S>))
}

/// Send buffer of a connection from this host (the kernel doubles it for bookkeeping).
const LOOPBACK_SEND_BUFFER: usize = 256 << 10;

/// Socket options of an accepted connection, plain or TLS.
pub(crate) fn configure_connection(stream: &tokio::net::TcpStream) {
    // Without TCP_NODELAY a response written as head + small body waits for the peer's
    // delayed ACK (~40 ms) before the body goes out.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::warn!("setting TCP_NODELAY: {error}");
    }
    // A client on this host (a local builder, CI, a kind cluster's registry): the round trip
    // is microseconds, so a send buffer beyond a few hundred KiB buys no throughput; with the
    // kernel's autotuning (up to tcp_wmem's 4 MiB) a large blob download runs megabytes ahead
    // of the client, and the client's receive copy then reads bytes that have left the CPU
    // cache. With a fixed 256 KiB buffer a 256 MiB loopback pull took 64 ms instead of 110 ms
    // (the client's CPU per pull halved; bench/README.md, 2026-11-29). Remote clients keep
    // autotuning: a fixed buffer would cap a download at buffer / RTT.
    let local = stream
        .peer_addr()
        .is_ok_and(|peer| peer.ip().to_canonical().is_loopback());
    if !local {
        return;
    }
    if let Err(error) =
        rustix::net::sockopt::set_socket_send_buffer_size(stream, LOOPBACK_SEND_BUFFER)
    {
        tracing::warn!("setting SO_SNDBUF: {error}");
    }
}

/// Serves `storage` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn serve<S: Storage>(
    listener: tokio::net::TcpListener,
    storage: S,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| configure_connection(stream));
    let state = new_state(storage, &options);
    let collector = options
        .online_gc
        .map(|gc| tokio::spawn(collect_periodically(state.clone(), gc)));
    let result = axum::serve(listener, app(state, options))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(collector) = collector {
        collector.abort();
    }
    result
}

/// Like [`serve`], over TLS with `config` (see [`tls::server_config`]).
pub async fn serve_tls<S: Storage>(
    listener: tokio::net::TcpListener,
    config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    storage: S,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, config)?;
    let state = new_state(storage, &options);
    let collector = options
        .online_gc
        .map(|gc| tokio::spawn(collect_periodically(state.clone(), gc)));
    let result = axum::serve(listener, app(state, options))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(collector) = collector {
        collector.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted loopback connection: its send buffer is fixed at LOOPBACK_SEND_BUFFER
    /// (Linux reports twice the value set) instead of autotuned, and Nagle is off.
    #[tokio::test]
    async fn loopback_connections_get_a_small_fixed_send_buffer() {
        use rustix::net::sockopt::socket_send_buffer_size;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let autotuned = socket_send_buffer_size(&accepted).unwrap();
        assert_ne!(autotuned, 2 * LOOPBACK_SEND_BUFFER);
        configure_connection(&accepted);
        assert_eq!(
            socket_send_buffer_size(&accepted).unwrap(),
            2 * LOOPBACK_SEND_BUFFER
        );
        assert!(accepted.nodelay().unwrap());
    }
}
