//! The one HTTP error type. See `quarry_core::error` for the policy; this module is
//! where library outcomes become status codes:
//!
//! | variant / outcome                    | status |
//! |--------------------------------------|--------|
//! | `Core(Invalid)`                      | 400 (422 for `malformed_file`) |
//! | `Core(Unauthorized)`                 | 401, with `WWW-Authenticate: Bearer` |
//! | `Core(Forbidden)`                    | 403 |
//! | `Core(NotFound)`                     | 404 |
//! | `MethodNotAllowed`                   | 405 |
//! | `Core(Conflict)`                     | 409 |
//! | `Core(TooLarge)`                     | 413 |
//! | `UnsupportedMediaType`               | 415 |
//! | `Rejected(status, _)`                | that 4xx (the HTTP layer's other refusals) |
//! | `Core(Internal)`                     | 500, opaque body; the detail goes to the log |
//!
//! Every error under `/api/v1` answers `{"error": {"code", "message"}}`: handlers
//! return [`AppError`], the extractors of [`super::extract`] reject with it, and
//! [`json_errors`] rewrites whatever else the HTTP layer answers (405, 413 from the
//! body limit, …) into the same shape. Internal errors are logged in one place,
//! [`AppError::log`], whether they become a response or a form's `?error=` text
//! ([`AppError::user_message`]).

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quarry_core::Error;
use quarry_domain::ErrorBody;

/// The most bytes a request body may have, uploads excepted (they stream and are
/// bounded by `uploads.max_bytes`).
pub const BODY_LIMIT: usize = 1 << 20;

/// An HTTP-facing error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Core(#[from] Error),
    /// The body's media type is not one the route reads. 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The route exists but not with this method. 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Another refusal of the HTTP layer, with its 4xx status.
    #[error("{1}")]
    Rejected(StatusCode, String),
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Core(Error::Internal(e))
    }
}

impl AppError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Core(Error::invalid(code, message))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        AppError::Core(Error::Unauthorized(message.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Core(Error::Forbidden(message.into()))
    }

    /// A body over [`BODY_LIMIT`].
    pub fn body_too_large() -> Self {
        AppError::Core(Error::TooLarge(format!(
            "the request body is larger than {} bytes (1 MiB): send a smaller body; \
             datasets are uploaded with POST /api/v1/datasets",
            BODY_LIMIT
        )))
    }

    /// The status, the stable code and the client-safe message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
            ),
            AppError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                m.clone(),
            ),
            AppError::Rejected(status, m) => (*status, status_code_name(*status), m.clone()),
            AppError::Core(e) => match e {
                Error::Invalid {
                    code: "malformed_file",
                    message,
                } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "malformed_file",
                    message.clone(),
                ),
                Error::Invalid { code, message } => {
                    (StatusCode::BAD_REQUEST, code, message.clone())
                }
                Error::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.clone()),
                Error::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
                Error::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
                Error::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
                Error::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.clone()),
                Error::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side; the server log has the details \
                     under this response's x-request-id"
                        .to_owned(),
                ),
            },
        }
    }

    /// Logs the error: an internal one with its whole chain (the only place that
    /// detail goes), a refusal as a short line.
    pub fn log(&self) {
        match self {
            AppError::Core(Error::Internal(e)) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
            }
            other => {
                let (status, code, _) = other.parts();
                tracing::info!(%status, code, "request refused");
            }
        }
    }

    /// The client-safe message, for callers that show it rather than answer with it
    /// (the web forms' `?error=`); logs the error like a response would.
    pub fn user_message(&self) -> String {
        self.log();
        self.parts().2
    }
}

/// A stable snake_case code for a status the HTTP layer refused with.
fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        _ => "rejected",
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let (status, code, message) = self.parts();
        let mut response = (status, Json(ErrorBody::new(code, message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quarry\""),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot carry another
            // request, and saying so keeps clients from reusing it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, AppError>;

/// The REST API's last word on errors: a 4xx or 5xx answer that is not JSON (axum's
/// own refusals: 405 Method Not Allowed, 413 over the body limit, a body cut off
/// mid-way, …) is rewritten into `{"error": {"code", "message"}}` with a message that
/// says what to fix. A 5xx keeps its detail in the log only.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // Inside a nested router the URI has lost its prefix; the client sent this one.
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path(), |u| u.path())
        .to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut out = rewrite(status, &method, &path, &text).into_response();
    // Axum adds `Allow` to a 405 after this layer; other headers are kept here.
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The error a bare HTTP-layer answer stands for.
fn rewrite(status: StatusCode, method: &Method, path: &str, text: &str) -> AppError {
    if status.is_server_error() {
        return AppError::from(anyhow::anyhow!(
            "{method} {path} answered {status} without an error body: {text}"
        ));
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed(format!(
            "{method} is not allowed on {path}: use one of the methods in this response's \
             `Allow` header (see GET /api/v1/openapi.json)"
        )),
        StatusCode::PAYLOAD_TOO_LARGE => AppError::body_too_large(),
        StatusCode::NOT_FOUND => AppError::Core(Error::NotFound(format!(
            "nothing at {path}: see GET /api/v1/openapi.json for the routes"
        ))),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(if text.is_empty() {
            "this route does not read a body of that media type: see GET /api/v1/openapi.json"
                .to_owned()
        } else {
            format!("{text}: see GET /api/v1/openapi.json for what this route reads")
        }),
        _ => {
            let reason = status.canonical_reason().unwrap_or("refused");
            let detail = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            AppError::Rejected(
                status,
                format!(
                    "{reason}{detail}; see GET /api/v1/openapi.json for what {method} {path} accepts"
                ),
            )
        }
    }
}

/// Body limit for routes whose handlers read the body themselves (server
/// functions), which axum's `DefaultBodyLimit` does not reach: the body is read up to
/// [`BODY_LIMIT`] bytes before the handler runs, and a larger one is refused with 413.
pub async fn limit_body(request: Request, next: Next) -> Response {
    use futures::StreamExt as _;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return AppError::body_too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return AppError::invalid(
                "body_interrupted",
                "the request body was cut off: send it again",
            )
            .into_response();
        };
        if buffered.len() + chunk.len() > BODY_LIMIT {
            return AppError::body_too_large().into_response();
        }
        buffered.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(buffered)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_refusals_become_errors_that_say_what_to_fix() {
        let e = rewrite(
            StatusCode::METHOD_NOT_ALLOWED,
            &Method::PUT,
            "/api/v1/jobs/1",
            "",
        );
        let (status, code, message) = e.parts();
        assert_eq!(
            (status, code),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        assert!(
            message.contains("PUT /api/v1/jobs/1")
                || message.contains("PUT is not allowed on /api/v1/jobs/1"),
            "{message}"
        );

        let (status, code, message) = rewrite(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Method::POST,
            "/api/v1/jobs",
            "length limit exceeded",
        )
        .parts();
        assert_eq!((status, code), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
        assert!(message.contains("1048576"), "{message}");

        let (status, code, message) = rewrite(
            StatusCode::from_u16(431).unwrap(),
            &Method::GET,
            "/api/v1/x",
            "",
        )
        .parts();
        assert_eq!((status.as_u16(), code), (431, "headers_too_large"));
        assert!(
            message.starts_with("Request Header Fields Too Large"),
            "{message}"
        );
    }

    #[test]
    fn a_bare_server_error_stays_opaque() {
        let (status, code, message) = rewrite(
            StatusCode::BAD_GATEWAY,
            &Method::GET,
            "/api/v1/x",
            "secret upstream detail",
        )
        .parts();
        assert_eq!(
            (status, code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn user_messages_of_internal_errors_are_opaque() {
        let e = AppError::from(anyhow::anyhow!("SELECT * FROM users failed"));
        assert!(!e.user_message().contains("SELECT"));
        let e = AppError::forbidden("ask an admin");
        assert_eq!(e.user_message(), "ask an admin");
    }
}
