//! `/api/v1/datasets`: upload, list, read, delete.

use crate::server::auth::Auth;
use crate::server::error::ApiResult;
use crate::server::error::AppError;
use crate::server::extract::{Path, Query};
use crate::server::state::AppState;
use crate::server::uploads::{self, OptionParams, UploadHints};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quarry_core::datasets;
use quarry_domain::{Dataset, IngestOptions};
use serde::Deserialize;

/// Query parameters of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadParams {
    /// The dataset's name, unique per user. Defaults to the multipart file name.
    pub name: Option<String>,
    /// `csv`, `parquet`, `ndjson` or `xlsx`, overriding the content type.
    pub format: Option<String>,
}

/// Upload a dataset.
///
/// The body is the raw file (`text/csv`, `application/vnd.apache.parquet`,
/// `application/x-ndjson`, `.xlsx`) or `multipart/form-data` with the file in field
/// `file` (option fields may precede it). It is streamed to storage as the original;
/// a child process checks it against the upload limits and reads it with polars
/// (pandas' null markers, date detection, the given or sniffed delimiter, the type
/// overrides) into the typed Parquet copy every analysis scans.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "datasets", params(UploadParams, OptionParams),
    request_body(content = Vec<u8>, description = "The file", content_type = "text/csv"),
    responses(
        (status = 201, description = "Stored", body = Dataset),
        (status = 400, description = "Empty body, bad name or multipart", body = quarry_domain::ErrorBody),
        (status = 401, description = "Missing or bad token", body = quarry_domain::ErrorBody),
        (status = 409, description = "Duplicate name", body = quarry_domain::ErrorBody),
        (status = 413, description = "Over uploads.max_bytes, max_line_bytes, max_columns or the inspection's memory or time", body = quarry_domain::ErrorBody),
        (status = 415, description = "Unknown format, compressed body, UTF-16", body = quarry_domain::ErrorBody),
        (status = 422, description = "The file does not parse: not UTF-8, unbalanced quotes, duplicate columns, too deep, no rows", body = quarry_domain::ErrorBody),
        (status = 429, description = "Every inspection slot stayed busy for two minutes", body = quarry_domain::ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(params): Query<UploadParams>,
    Query(options): Query<OptionParams>,
    request: Request,
) -> ApiResult<(StatusCode, Json<Dataset>)> {
    let options = options.parse()?;
    let hints = UploadHints {
        name: params.name,
        format: params.format,
        options,
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
    responses((status = 200, body = Dataset),
        (status = 401, description = "Missing or bad token", body = quarry_domain::ErrorBody),
        (status = 404, description = "No such dataset of yours", body = quarry_domain::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Dataset>> {
    Ok(Json(
        datasets::get(&state.services.db, &who, &id).await?.view,
    ))
}

/// Delete a dataset: its row, its original, its typed copy and its jobs' results.
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "Missing or bad token", body = quarry_domain::ErrorBody),
        (status = 403, description = "A session cookie cannot delete through the API", body = quarry_domain::ErrorBody),
        (status = 404, description = "No such dataset of yours", body = quarry_domain::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    uploads::delete(&state.services, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/datasets/{id}/retype` body: what to change in how the original is
/// read. `schema` replaces the earlier overrides; absent fields keep what was found.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retype {
    /// Per-column types, e.g. `{"delay": "float64"}`.
    #[serde(default)]
    pub schema: std::collections::BTreeMap<String, String>,
    /// Markers read as missing values (replacing the list in effect).
    #[serde(default)]
    pub null_values: Option<Vec<String>>,
    #[serde(default)]
    pub delimiter: Option<char>,
    #[serde(default)]
    pub has_header: Option<bool>,
    #[serde(default)]
    pub encoding: Option<quarry_domain::Encoding>,
    #[serde(default)]
    pub decimal_comma: Option<bool>,
    #[serde(default)]
    pub sheet: Option<String>,
}

/// Re-type a dataset: read its original again with other column types or null
/// markers, replacing the typed copy analyses read.
#[utoipa::path(post, path = "/api/v1/datasets/{id}/retype", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")), request_body = Retype,
    responses(
        (status = 200, description = "Re-typed", body = Dataset),
        (status = 400, description = "Bad option, unknown column or type", body = quarry_domain::ErrorBody),
        (status = 401, body = quarry_domain::ErrorBody),
        (status = 404, body = quarry_domain::ErrorBody),
        (status = 413, body = quarry_domain::ErrorBody),
        (status = 422, description = "A value does not convert to the asked type", body = quarry_domain::ErrorBody),
        (status = 429, description = "Every inspection slot stayed busy for two minutes", body = quarry_domain::ErrorBody),
    ))]
pub async fn retype(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Dataset>> {
    let change: Retype = serde_json::from_slice(&body).map_err(|e| {
        AppError::invalid(
            "bad_json",
            format!("the body must be {{\"schema\": {{\"column\": \"type\"}}, \"null_values\": [...]}}: {e}"),
        )
    })?;
    let options = IngestOptions {
        null_values: change.null_values,
        delimiter: change.delimiter,
        has_header: change.has_header,
        encoding: change.encoding,
        decimal_comma: change.decimal_comma,
        schema: change.schema,
        sheet: change.sheet,
    };
    Ok(Json(
        uploads::retype(&state.services, &who, &id, &options).await?,
    ))
}

/// Download a dataset's original file, as uploaded.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/download", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")),
    responses(
        (status = 200, description = "The original file, as uploaded", content(
            (Vec<u8> = "text/csv"), (Vec<u8> = "application/vnd.apache.parquet"),
            (Vec<u8> = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 303, description = "A short-lived signed URL (object storage)"),
        (status = 401, body = quarry_domain::ErrorBody),
        (status = 404, body = quarry_domain::ErrorBody),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let s = &state.services;
    let stored = datasets::get(&s.db, &who, &id).await?;
    let format = stored.view.format;
    let file_name = format!(
        "{}.{}",
        stored.view.name.replace(['"', '\\', '\r', '\n'], "_"),
        format.extension()
    );
    if let Some(url) = s
        .blobs
        .presigned_get(
            &stored.blob_key,
            std::time::Duration::from_secs(300),
            &file_name,
        )
        .await?
    {
        return Ok(axum::response::Redirect::to(&url).into_response());
    }
    let stream = s.blobs.get_stream(&stored.blob_key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.media_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
