//! The REST API under `/api/v1`. Every route requires `Authorization: Bearer <token>`
//! (read-only routes also accept the web app's session cookie).

pub mod datasets;
pub mod jobs;

use super::error::AppError;
use super::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use quarry_domain::{
    AggOp, Aggregation, Analysis, ColumnInfo, Dataset, DatasetFormat, Decision, ErrorBody,
    ErrorDetail, FleetCounts, Job, JobEvent, JobStatus, OrderKey, QueueCounts, ResultPage, Role,
    SystemStatus, Waiting,
};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Quarry", description = "Upload datasets, run analyses, read results."),
    paths(datasets::upload, datasets::list, datasets::get, datasets::delete, jobs::submit, jobs::list,
        jobs::get, jobs::cancel, jobs::result, jobs::events, jobs::system, openapi_json),
    components(schemas(Dataset, DatasetFormat, ColumnInfo, ErrorBody, ErrorDetail, Role, Job, JobStatus,
        ResultPage, SystemStatus, JobEvent, Waiting, QueueCounts, FleetCounts, Decision, Analysis, Aggregation, AggOp, OrderKey, jobs::NewJob)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
async fn openapi_json(_auth: super::auth::Auth) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Unknown routes still demand a token first: `/api/v1` reveals nothing to strangers.
async fn not_found(_auth: super::auth::Auth) -> AppError {
    AppError::Core(quarry_core::Error::NotFound(
        "no such API route: see GET /api/v1/openapi.json for the routes".to_owned(),
    ))
}

/// The `/api/v1` router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/datasets", get(datasets::list).post(datasets::upload))
        .route(
            "/datasets/{id}",
            get(datasets::get).delete(datasets::delete),
        )
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/{id}", get(jobs::get))
        .route("/jobs/{id}/cancel", axum::routing::post(jobs::cancel))
        .route("/jobs/{id}/result", get(jobs::result))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/system", get(jobs::system))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        // Uploads enforce `uploads.max_bytes` themselves while streaming.
        .layer(DefaultBodyLimit::disable())
}
