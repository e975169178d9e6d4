//! The `/v2/` endpoints: one dispatcher over [`Route`], one function per operation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use strata_oci::{Algorithm, Digest};
use tokio::io::AsyncReadExt;

use crate::error::{ApiError, ErrorCode};
use crate::manifest::{self, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST};
use crate::metrics::Metrics;
use crate::names::{Reference, Route, is_valid_repository, parse_route};
use crate::storage::{ByteStream, Referrer, Storage, StoredManifest};

/// Blobs up to this size are read whole and sent as one body.
const SMALL_BLOB: u64 = 64 << 10;

pub const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// What every handler shares.
pub struct AppState<S> {
    pub storage: S,
    pub metrics: Metrics,
    /// See [`crate::ServerOptions::read_only`].
    pub read_only: bool,
    /// See [`crate::ServerOptions::delete_disabled`].
    pub delete_disabled: bool,
}

type QueryParams = HashMap<String, String>;

/// The `Range` header of an upload that has received `offset` bytes (`0-0` when empty, as
/// Distribution does).
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn request_body_stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed()
}

fn digest_param(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|error| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {text:?}: {error}"),
        )
    })
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn response(status: StatusCode) -> axum::http::response::Builder {
    Response::builder().status(status)
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Result<Response, ApiError> {
    builder
        .body(body)
        .map_err(|error| ApiError::new(ErrorCode::Internal, format!("building response: {error}")))
}

pub async fn dispatch<S: Storage>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
) -> Response {
    match handle(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle<S: Storage>(state: &AppState<S>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let Some(route) = parse_route(parts.uri.path()) else {
        return Ok((StatusCode::NOT_FOUND, "404 page not found\n").into_response());
    };
    if let Some(name) = route.name()
        && !is_valid_repository(name)
    {
        return Err(
            ApiError::new(ErrorCode::NameInvalid, "invalid repository name")
                .with_detail(json!({ "name": name })),
        );
    }
    let query: QueryParams = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let storage = &state.storage;
    let headers = &parts.headers;
    let method = parts.method.clone();
    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if state.read_only && writes {
        return Err(
            ApiError::new(ErrorCode::Unsupported, "the registry is in read-only mode")
                .with_header(header::ALLOW, header::HeaderValue::from_static("GET, HEAD")),
        );
    }
    if state.delete_disabled
        && method == Method::DELETE
        && matches!(route, Route::Manifest { .. } | Route::Blob { .. })
    {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "deletes are disabled (storage.delete.enabled is false)",
        ));
    }
    match route {
        Route::Base if method == Method::GET || method == Method::HEAD => finish(
            response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            Body::from("{}"),
        ),
        Route::Catalog if method == Method::GET => catalog(storage, &query).await,
        Route::Tags { name } if method == Method::GET => tags_list(storage, &name, &query).await,
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                manifest_get(storage, &name, &reference, method == Method::HEAD).await
            }
            Method::PUT => manifest_put(storage, &name, &reference, headers, body).await,
            Method::DELETE => manifest_delete(storage, &name, &reference).await,
            _ => Err(unsupported()),
        },
        Route::Blob { name, digest } => match method {
            Method::GET | Method::HEAD => {
                blob_get(storage, &name, &digest, headers, method == Method::HEAD).await
            }
            Method::DELETE => {
                storage.blob_unlink(&name, &digest_param(&digest)?).await?;
                finish(response(StatusCode::ACCEPTED), Body::empty())
            }
            _ => Err(unsupported()),
        },
        Route::UploadStart { name } if method == Method::POST => {
            upload_start(storage, &name, &query, body).await
        }
        Route::Upload { name, id } => match method {
            Method::GET => {
                let offset = storage.upload_offset(&name, &id).await?;
                upload_response(StatusCode::NO_CONTENT, &name, &id, offset)
            }
            Method::PATCH => upload_patch(storage, &name, &id, headers, body).await,
            Method::PUT => upload_put(storage, &name, &id, &query, headers, body).await,
            Method::DELETE => {
                storage.upload_cancel(&name, &id).await?;
                finish(response(StatusCode::NO_CONTENT), Body::empty())
            }
            _ => Err(unsupported()),
        },
        Route::Referrers { name, digest } if method == Method::GET => {
            referrers(storage, &name, &digest, &query).await
        }
        _ => Err(unsupported()),
    }
}

fn unsupported() -> ApiError {
    ApiError::new(ErrorCode::Unsupported, "the operation is unsupported")
}

/// Applies `n`/`last` pagination to a sorted list; returns the page and whether more follow.
fn paginate(
    items: Vec<String>,
    query: &QueryParams,
) -> Result<(Vec<String>, Option<usize>, bool), ApiError> {
    let limit = match query.get("n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, "n must be a non-negative integer")
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let mut page: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|item| item > last).collect(),
        None => items,
    };
    let mut more = false;
    if let Some(limit) = limit
        && page.len() > limit
    {
        page.truncate(limit);
        // `n=0` asks for an empty list and, by the spec, no Link header.
        more = limit > 0;
    }
    Ok((page, limit, more))
}

fn link_header(path: &str, limit: Option<usize>, last: Option<&String>) -> String {
    let last = last.map(String::as_str).unwrap_or_default();
    match limit {
        Some(n) => format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        None => format!("<{path}?last={last}>; rel=\"next\""),
    }
}

async fn catalog<S: Storage>(storage: &S, query: &QueryParams) -> Result<Response, ApiError> {
    let (page, limit, more) = paginate(storage.repositories().await?, query)?;
    let mut builder = response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if more {
        builder = builder.header(
            header::LINK,
            link_header("/v2/_catalog", limit, page.last()),
        );
    }
    finish(
        builder,
        Body::from(json!({ "repositories": page }).to_string()),
    )
}

async fn tags_list<S: Storage>(
    storage: &S,
    name: &str,
    query: &QueryParams,
) -> Result<Response, ApiError> {
    let Some(tags) = storage.tags(name).await? else {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            "repository name not known to registry",
        )
        .with_detail(json!({ "name": name })));
    };
    let (page, limit, more) = paginate(tags, query)?;
    let mut builder = response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if more {
        let path = format!("/v2/{name}/tags/list");
        builder = builder.header(header::LINK, link_header(&path, limit, page.last()));
    }
    finish(
        builder,
        Body::from(json!({ "name": name, "tags": page }).to_string()),
    )
}

fn parse_reference(reference: &str) -> Result<Reference, ApiError> {
    Reference::parse(reference).ok_or_else(|| {
        let code = if reference.contains(':') {
            ErrorCode::DigestInvalid
        } else {
            ErrorCode::ManifestInvalid
        };
        ApiError::new(code, format!("invalid reference {reference:?}"))
    })
}

/// The reference of a GET, HEAD or DELETE: text that cannot be a tag names no manifest, so it
/// is MANIFEST_UNKNOWN (404, as the spec says of a manifest not found, and as the conformance
/// suite checks with `.INVALID_MANIFEST_NAME`); a malformed digest stays DIGEST_INVALID.
fn parse_existing_reference(name: &str, reference: &str) -> Result<Reference, ApiError> {
    if !reference.contains(':') && Reference::parse(reference).is_none() {
        return Err(manifest_unknown(name, reference));
    }
    parse_reference(reference)
}

fn manifest_unknown(name: &str, reference: &str) -> ApiError {
    ApiError::new(ErrorCode::ManifestUnknown, "manifest unknown to registry")
        .with_detail(json!({ "name": name, "reference": reference }))
}

async fn manifest_get<S: Storage>(
    storage: &S,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let reference = parse_existing_reference(name, reference)?;
    let Some(manifest) = storage.manifest_get(name, &reference).await? else {
        return Err(manifest_unknown(name, &reference_text(&reference)));
    };
    let builder = response(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest.media_type.as_str())
        .header(header::CONTENT_LENGTH, manifest.bytes.len())
        .header(DIGEST_HEADER, manifest.digest.to_string());
    finish(
        builder,
        if head {
            Body::empty()
        } else {
            Body::from(manifest.bytes)
        },
    )
}

fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Tag(tag) => tag.clone(),
        Reference::Digest(digest) => digest.to_string(),
    }
}

fn manifest_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!("manifest exceeds {MAX_MANIFEST_SIZE} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

async fn manifest_put<S: Storage>(
    storage: &S,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    let declared_length =
        header_str(headers, header::CONTENT_LENGTH).and_then(|length| length.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_MANIFEST_SIZE as u64) {
        return Err(manifest_too_large());
    }
    let bytes = read_bounded(body, MAX_MANIFEST_SIZE).await?;
    let algorithm = match &reference {
        Reference::Digest(digest) => digest.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = Digest::of(algorithm, &bytes);
    if let Reference::Digest(expected) = &reference
        && *expected != digest
    {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            "manifest digest does not match the reference",
        )
        .with_detail(json!({ "expected": expected.to_string(), "actual": digest.to_string() })));
    }
    let parsed = manifest::parse(&bytes)
        .map_err(|error| ApiError::new(ErrorCode::ManifestInvalid, error.to_string()))?;
    let media_type = header_str(headers, header::CONTENT_TYPE)
        .filter(|media_type| !media_type.is_empty() && *media_type != "application/octet-stream")
        .map(|media_type| {
            media_type
                .split(';')
                .next()
                .unwrap_or(media_type)
                .trim()
                .to_owned()
        })
        .or_else(|| {
            parsed
                .json
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            if parsed.json.contains_key("manifests") {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            }
            .to_owned()
        });
    for blob in &parsed.references.blobs {
        if storage.blob_size(name, blob).await?.is_none() {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                "manifest references a blob unknown to the repository",
            )
            .with_detail(json!({ "digest": blob.to_string() })));
        }
    }
    for child in &parsed.references.manifests {
        if !storage.manifest_exists(name, child).await? {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                "index references a manifest unknown to the repository",
            )
            .with_detail(json!({ "digest": child.to_string() })));
        }
    }
    let referrer = parsed.subject.clone().map(|subject| Referrer {
        descriptor: parsed.referrer_descriptor(&digest, bytes.len(), &media_type),
        subject,
    });
    let tag = match &reference {
        Reference::Tag(tag) => Some(tag.as_str()),
        Reference::Digest(_) => None,
    };
    let stored = StoredManifest {
        digest: digest.clone(),
        media_type,
        bytes,
    };
    storage.manifest_push(name, tag, stored, referrer).await?;
    let mut builder = response(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &parsed.subject {
        builder = builder.header("oci-subject", subject.to_string());
    }
    finish(builder, Body::empty())
}

/// Reads a body of at most `limit` bytes; a body without (or lying about) its length stops
/// being read as soon as it passes the limit.
async fn read_bounded(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest: {error}"),
            )
        })?;
        if buffer.len() + chunk.len() > limit {
            return Err(manifest_too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

async fn manifest_delete<S: Storage>(
    storage: &S,
    name: &str,
    reference: &str,
) -> Result<Response, ApiError> {
    let reference = parse_existing_reference(name, reference)?;
    storage.manifest_delete(name, &reference).await?;
    finish(response(StatusCode::ACCEPTED), Body::empty())
}

/// A single byte range `bytes=a-b`, `bytes=a-` or `bytes=-n` resolved against `size`.
/// `Ok(None)`: no (usable) header, serve everything; `Err`: unsatisfiable.
fn parse_byte_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // Multiple ranges: answer with the whole blob, which is allowed.
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().map_err(|_| ())?;
        if suffix == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let first: u64 = first.parse().map_err(|_| ())?;
        let last = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if first >= size || last < first {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

async fn blob_get<S: Storage>(
    storage: &S,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let digest = digest_param(digest)?;
    let Some(size) = storage.blob_size(name, &digest).await? else {
        return Err(
            ApiError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
                .with_detail(json!({ "digest": digest.to_string() })),
        );
    };
    let range = match parse_byte_range(header_str(headers, header::RANGE), size) {
        Ok(range) => range,
        Err(()) => {
            return finish(
                response(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}")),
                Body::empty(),
            );
        }
    };
    let (status, start, length) = match range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut builder = response(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, digest.to_string());
    if let Some((first, last)) = range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    if head {
        return finish(builder, Body::empty());
    }
    if length > SMALL_BLOB {
        let stream = storage.blob_stream(name, &digest, start, length).await?;
        return finish(builder, Body::from_stream(stream));
    }
    // Configs and small layers: one read and one body write beat a stream.
    let (_, reader) = storage.blob_open(name, &digest, start).await?;
    let mut bytes = Vec::with_capacity(length as usize);
    reader
        .take(length)
        .read_to_end(&mut bytes)
        .await
        .map_err(|error| {
            ApiError::new(
                ErrorCode::Internal,
                format!("reading blob {digest}: {error}"),
            )
        })?;
    finish(builder, Body::from(bytes))
}

fn upload_response(
    status: StatusCode,
    name: &str,
    id: &str,
    offset: u64,
) -> Result<Response, ApiError> {
    let builder = response(status)
        .header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, range_header(offset))
        .header(UPLOAD_UUID_HEADER, id)
        .header(header::CONTENT_LENGTH, 0);
    finish(builder, Body::empty())
}

fn blob_created(name: &str, digest: &Digest) -> Result<Response, ApiError> {
    let builder = response(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    finish(builder, Body::empty())
}

async fn upload_start<S: Storage>(
    storage: &S,
    name: &str,
    query: &QueryParams,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = digest_param(mount)?;
        if let Some(from) = query.get("from").filter(|from| is_valid_repository(from))
            && storage.blob_mount(name, from, &digest).await?
        {
            return blob_created(name, &digest);
        }
        // Not mountable: the spec says to fall back to a plain upload session.
    } else if let Some(digest) = query.get("digest") {
        // Monolithic upload in a single POST.
        let digest = digest_param(digest)?;
        let id = storage.upload_create(name).await?;
        storage
            .upload_complete(name, &id, &digest, Some(request_body_stream(body)))
            .await?;
        return blob_created(name, &digest);
    }
    let id = storage.upload_create(name).await?;
    upload_response(StatusCode::ACCEPTED, name, &id, 0)
}

/// The first offset of a `Content-Range: <first>-<last>` chunk header.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let value = value
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '=']);
    let first = value
        .split_once('-')
        .map(|(first, _)| first)
        .unwrap_or(value);
    first.trim().parse().map(Some).map_err(|_| {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("invalid Content-Range {value:?}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    })
}

async fn upload_patch<S: Storage>(
    storage: &S,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let start = content_range_start(headers)?;
    let offset = storage
        .upload_append(name, id, start, request_body_stream(body))
        .await?;
    upload_response(StatusCode::ACCEPTED, name, id, offset)
}

async fn upload_put<S: Storage>(
    storage: &S,
    name: &str,
    id: &str,
    query: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(digest) = query.get("digest") else {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            "the digest parameter is required",
        ));
    };
    let digest = digest_param(digest)?;
    // A last chunk with a Content-Range is placed like a PATCH (416 when out of order).
    let body = match content_range_start(headers)? {
        Some(start) => {
            storage
                .upload_append(name, id, Some(start), request_body_stream(body))
                .await?;
            None
        }
        None => Some(request_body_stream(body)),
    };
    storage.upload_complete(name, id, &digest, body).await?;
    blob_created(name, &digest)
}

async fn referrers<S: Storage>(
    storage: &S,
    name: &str,
    digest: &str,
    query: &QueryParams,
) -> Result<Response, ApiError> {
    let subject = digest_param(digest)?;
    let mut descriptors = storage.referrers(name, &subject).await?;
    let mut builder = response(StatusCode::OK).header(header::CONTENT_TYPE, OCI_INDEX);
    if let Some(artifact_type) = query.get("artifactType") {
        descriptors.retain(|descriptor| descriptor["artifactType"].as_str() == Some(artifact_type));
        builder = builder.header("oci-filters-applied", "artifactType");
    }
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors });
    finish(builder, Body::from(index.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_that_cannot_exist_are_unknown_and_bad_digests_invalid() {
        let cases = [
            (".INVALID_MANIFEST_NAME", Some(ErrorCode::ManifestUnknown)),
            ("-dash", Some(ErrorCode::ManifestUnknown)),
            ("sha256:totallywrong", Some(ErrorCode::DigestInvalid)),
            ("v1.0", None),
        ];
        for (reference, expected) in cases {
            let code = parse_existing_reference("repo", reference)
                .err()
                .map(|e| e.code());
            assert_eq!(code, expected, "{reference}");
        }
    }

    #[test]
    fn byte_ranges_resolve_against_the_size() {
        assert_eq!(parse_byte_range(None, 10), Ok(None));
        assert_eq!(parse_byte_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_byte_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_byte_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_byte_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_byte_range(Some("bytes=0-1,3-4"), 10), Ok(None));
    }

    #[test]
    fn pagination_is_exclusive_of_last() {
        let items: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let query: QueryParams = [
            ("n".to_owned(), "2".to_owned()),
            ("last".to_owned(), "a".to_owned()),
        ]
        .into();
        let (page, limit, more) = paginate(items.clone(), &query).unwrap();
        assert_eq!(page, ["b", "c"]);
        assert_eq!(limit, Some(2));
        assert!(more);
        let (page, _, more) =
            paginate(items, &[("last".to_owned(), "c".to_owned())].into()).unwrap();
        assert_eq!(page, ["d"]);
        assert!(!more);
        let (page, _, more) =
            paginate(vec!["a".into()], &[("n".to_owned(), "0".to_owned())].into()).unwrap();
        assert!(page.is_empty() && !more);
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(5), "0-4");
    }
}
