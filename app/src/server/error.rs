//! The one HTTP error type. See `quarry_core::error` for the policy; this module is
//! where library outcomes become status codes:
//!
//! | variant / outcome                    | status |
//! |--------------------------------------|--------|
//! | `Core(Invalid)`                      | 400 (422 for `malformed_file`) |
//! | `Core(Unauthorized)`                 | 401, with `WWW-Authenticate: Bearer` |
//! | `Core(Forbidden)`                    | 403 |
//! | `Core(NotFound)`                     | 404 |
//! | `Core(Conflict)`                     | 409 |
//! | `Core(TooLarge)`                     | 413 |
//! | `UnsupportedMediaType`               | 415 |
//! | `Core(Internal)`                     | 500, opaque body; the detail goes to the log |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quarry_core::Error;
use quarry_domain::ErrorBody;

/// An HTTP-facing error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Core(#[from] Error),
    /// The body's media type is not one the route reads. 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
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

    /// The status, the stable code and the client-safe message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
            ),
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
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if let AppError::Core(Error::Internal(e)) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        } else {
            tracing::info!(%status, code, "request refused");
        }
        let mut response = (status, Json(ErrorBody::new(code, message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quarry\""),
            );
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, AppError>;
