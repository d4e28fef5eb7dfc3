//! Axum's `Query`, `Path` and `Json` extractors with [`AppError`] as their rejection,
//! so a bad query string, path segment or JSON body is answered in the API's error
//! shape, with a message that names the parameter and what to send instead.

use super::error::AppError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

const SEE_DOC: &str = "see GET /api/v1/openapi.json for this route's parameters";

/// The query string, deserialized; `?limit=ten` is a 400 naming `limit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(AppError::invalid(
                "bad_query",
                format!(
                    "the query string is not valid ({}); {SEE_DOC}",
                    e.body_text()
                ),
            )),
        }
    }
}

/// Path parameters, deserialized.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) if e.status().is_server_error() => Err(AppError::from(anyhow::anyhow!(
                "path parameters: {}",
                e.body_text()
            ))),
            Err(e) => Err(AppError::invalid(
                "bad_path",
                format!("the URL path is not valid ({}); {SEE_DOC}", e.body_text()),
            )),
        }
    }
}

/// A JSON body, deserialized: 415 without `Content-Type: application/json`, 413
/// over the body limit, 400 naming the field otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(e) => Err(match e.status() {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
                    "send the body as JSON with `Content-Type: application/json`".to_owned(),
                ),
                StatusCode::PAYLOAD_TOO_LARGE => AppError::body_too_large(),
                _ => AppError::invalid(
                    "bad_json",
                    format!("the JSON body is not valid ({}); {SEE_DOC}", e.body_text()),
                ),
            }),
        }
    }
}
