//! `/api/v1/datasets`: upload, list, read, delete.

use crate::server::auth::Auth;
use crate::server::error::ApiResult;
use crate::server::state::AppState;
use crate::server::uploads::{self, UploadHints};
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use quarry_core::datasets;
use quarry_domain::Dataset;
use serde::Deserialize;

/// Query parameters of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadParams {
    /// The dataset's name, unique per user. Defaults to the multipart file name.
    pub name: Option<String>,
    /// `csv`, `parquet` or `ndjson`, overriding the content type.
    pub format: Option<String>,
}

/// Upload a dataset.
///
/// The body is the raw file (`text/csv`, `application/vnd.apache.parquet`,
/// `application/x-ndjson`) or `multipart/form-data` with the file in field `file`.
/// It is streamed to storage; polars reads its schema and row count.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "datasets", params(UploadParams),
    request_body(content = Vec<u8>, description = "The file", content_type = "text/csv"),
    responses(
        (status = 201, description = "Stored", body = Dataset),
        (status = 400, description = "Empty body, bad name or multipart", body = quarry_domain::ErrorBody),
        (status = 401, description = "Missing or bad token", body = quarry_domain::ErrorBody),
        (status = 409, description = "Duplicate name", body = quarry_domain::ErrorBody),
        (status = 413, description = "Over uploads.max_bytes", body = quarry_domain::ErrorBody),
        (status = 415, description = "Unknown format", body = quarry_domain::ErrorBody),
        (status = 422, description = "The file does not parse", body = quarry_domain::ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(params): Query<UploadParams>,
    request: Request,
) -> ApiResult<(StatusCode, Json<Dataset>)> {
    let hints = UploadHints {
        name: params.name,
        format: params.format,
    };
    let dataset = uploads::ingest_request(&state.services, &who, hints, request).await?;
    Ok((StatusCode::CREATED, Json(dataset)))
}

/// List your datasets (an admin sees everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
    responses((status = 200, body = Vec<Dataset>), (status = 401, body = quarry_domain::ErrorBody)))]
pub async fn list(State(state): State<AppState>, Auth(who): Auth) -> ApiResult<Json<Vec<Dataset>>> {
    let all = datasets::list(&state.services.db, &who).await?;
    Ok(Json(all.into_iter().map(|d| d.view).collect()))
}

/// One dataset.
#[utoipa::path(get, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 200, body = Dataset), (status = 404, body = quarry_domain::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Dataset>> {
    Ok(Json(
        datasets::get(&state.services.db, &who, &id).await?.view,
    ))
}

/// Delete a dataset and its file.
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = quarry_domain::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    uploads::delete(&state.services, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
