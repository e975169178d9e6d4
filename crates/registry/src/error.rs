//! Distribution-spec errors: a code, its HTTP status and the `{"errors":[...]}` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::storage::StorageError;

/// The error codes of the distribution spec (plus `INTERNAL` for our own failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unsupported,
    Unauthorized,
    Denied,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// The status a code is sent with unless the handler picks another one (413, 416).
    pub const fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer to a registry request (boxed: it travels in every handler's `Result`).
#[derive(Debug, thiserror::Error)]
#[error("{} ({}): {}", .0.code.as_str(), .0.status, .0.message)]
pub struct ApiError(Box<ApiErrorBody>);

#[derive(Debug)]
pub struct ApiErrorBody {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: Value,
    /// Extra headers (the `Range` of an upload on 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorBody {
            code,
            status: code.default_status(),
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }))
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.0.status = status;
        self
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.0.detail = detail;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.0.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        if this.status.is_server_error() {
            tracing::error!(code = this.code.as_str(), "{}", this.message);
        }
        let body = json!({
            "errors": [{
                "code": this.code.as_str(),
                "message": this.message,
                "detail": this.detail,
            }]
        });
        let mut response = (
            this.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (name, value) in this.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> ApiError {
        match error {
            StorageError::BlobUnknown(digest) => {
                ApiError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
                    .with_detail(json!({ "digest": digest.to_string() }))
            }
            StorageError::ManifestBlobUnknown(digest) => ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                "manifest references a blob unknown to the repository",
            )
            .with_detail(json!({ "digest": digest.to_string() })),
            StorageError::UploadUnknown(id) => ApiError::new(
                ErrorCode::BlobUploadUnknown,
                "blob upload unknown to registry",
            )
            .with_detail(json!({ "uuid": id })),
            StorageError::ManifestUnknown(reference) => {
                ApiError::new(ErrorCode::ManifestUnknown, "manifest unknown to registry")
                    .with_detail(json!({ "reference": reference }))
            }
            StorageError::DigestMismatch { expected, actual } => ApiError::new(
                ErrorCode::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(json!({ "expected": expected.to_string(), "actual": actual.to_string() })),
            StorageError::UploadOutOfOrder { offset } => {
                let range = HeaderValue::from_str(&crate::handlers::range_header(offset))
                    .unwrap_or(HeaderValue::from_static("0-0"));
                ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    "chunk does not start at the end of the upload",
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_detail(json!({ "offset": offset }))
                .with_header(header::RANGE, range)
            }
            StorageError::UploadBody(source) => ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("reading the request body: {source}"),
            ),
            error @ (StorageError::Io { .. } | StorageError::Corrupt { .. }) => {
                ApiError::new(ErrorCode::Internal, error.to_string())
            }
        }
    }
}
