//! The REST API under `/api/v1`. Every route requires `Authorization: Bearer <token>`
//! (read-only routes also accept the web app's session cookie).
//!
//! Request bodies are at most 1 MiB ([`BODY_LIMIT`]), except the dataset upload,
//! which streams and enforces `uploads.max_bytes` itself. Every refusal, axum's own
//! included, answers `{"error": {"code", "message"}}` (see [`json_errors`]).

pub mod control;
pub mod datasets;
pub mod job_events;
pub mod jobs;
pub mod references;
pub mod reruns;
pub mod results;

use super::error::{AppError, BODY_LIMIT, json_errors};
use super::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
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
    paths(datasets::upload, datasets::list, datasets::get, datasets::delete, datasets::retype,
        datasets::download, jobs::submit, jobs::list,
        jobs::get, jobs::attempts, jobs::cancel, reruns::rerun, reruns::compare, results::result, job_events::events, jobs::system,
        control::list, control::get, control::releases, control::events, control::deploy,
        control::rollback, control::freeze, control::unfreeze, control::lift_hold,
        control::promote, control::promotions, control::promotion, control::approve,
        control::reject, control::cancel, control::artifacts, control::reject_artifact,
        references::list, references::pin, references::retire, references::override_gate,
        openapi_json),
    components(schemas(Dataset, DatasetFormat, ColumnInfo, quarry_domain::IngestOptions,
        quarry_domain::Encoding, datasets::Retype, ErrorBody, ErrorDetail, Role, Job, quarry_domain::JobAttempt, quarry_domain::Provenance,
        quarry_domain::InputProvenance, JobStatus,
        ResultPage, SystemStatus, quarry_domain::PreScaling, quarry_domain::ProfileHour, quarry_domain::ReleaseFleet, quarry_domain::FleetWorker, JobEvent, Waiting, QueueCounts, FleetCounts, Decision, Analysis, Aggregation, AggOp, OrderKey, jobs::NewJob, job_events::JobEventMessage, results::ResultFormat,
        control::DeployRequest, control::PromotionRequest, control::DecisionRequest,
        control::RollbackRequest, control::Reason, control::ControlEventMessage,
        quarry_domain::control::EnvironmentView, quarry_domain::control::EnvironmentDetail,
        quarry_domain::control::MarkView, quarry_domain::control::DiffRow,
        quarry_domain::control::ResourceView, quarry_domain::control::StackEventView,
        quarry_domain::control::ReleaseView, quarry_domain::control::PromotionView,
        quarry_domain::control::ApprovalView, quarry_domain::control::OverrideView, quarry_domain::control::ArtifactView,
        reruns::RerunRequest, references::PinRequest, references::OverrideRequest, quarry_domain::gate::ReferenceView,
        quarry_domain::gate::GateView, quarry_domain::gate::GateCheckView,
        quarry_domain::gate::Comparison, quarry_domain::gate::RowDiff,
        quarry_domain::gate::Tolerance)),
    modifiers(&BearerAuth, &AnyCells),
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

/// A result's cells are numbers, text, booleans or null: any JSON value.
#[derive(Debug)]
struct AnyCells;

impl utoipa::Modify for AnyCells {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Array, Object, Schema, SchemaType};
        let page = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("ResultPage"));
        if let Some(RefOr::T(Schema::Object(page))) = page {
            let row = Array::new(Object::with_type(SchemaType::AnyValue));
            page.properties
                .insert("rows".to_owned(), Array::new(row).into());
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ))]
async fn openapi_json(_auth: super::auth::Auth) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Unknown routes still demand a token first: `/api/v1` reveals nothing to strangers.
async fn not_found(_auth: super::auth::Auth) -> AppError {
    AppError::Core(quarry_core::Error::NotFound(
        "no such API route: see GET /api/v1/openapi.json for the routes".to_owned(),
    ))
}

/// The `/api/v1` router: every body at most [`BODY_LIMIT`] but the upload's, every
/// refusal in the JSON error shape.
pub fn router() -> Router<AppState> {
    // Uploads stream to the blob store and enforce `uploads.max_bytes` themselves.
    let upload = post(datasets::upload).layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/datasets", get(datasets::list).merge(upload))
        .route(
            "/datasets/{id}",
            get(datasets::get).delete(datasets::delete),
        )
        .route("/datasets/{id}/retype", post(datasets::retype))
        .route("/datasets/{id}/download", get(datasets::download))
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/{id}", get(jobs::get))
        .route("/jobs/{id}/attempts", get(jobs::attempts))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/rerun", post(reruns::rerun))
        .route("/jobs/{id}/compare", get(reruns::compare))
        .route("/jobs/{id}/result", get(results::result))
        .route("/jobs/{id}/events", get(job_events::events))
        .route("/system", get(jobs::system))
        .route("/environments", get(control::list))
        .route("/environments/{env}", get(control::get))
        .route("/environments/{env}/releases", get(control::releases))
        .route("/environments/{env}/events", get(control::events))
        .route("/environments/{env}/deploy", post(control::deploy))
        .route("/environments/{env}/rollback", post(control::rollback))
        .route(
            "/environments/{env}/freeze",
            post(control::freeze).delete(control::unfreeze),
        )
        .route("/environments/{env}/hold", delete(control::lift_hold))
        .route(
            "/promotions",
            get(control::promotions).post(control::promote),
        )
        .route("/promotions/{id}", get(control::promotion))
        .route("/promotions/{id}/approve", post(control::approve))
        .route("/promotions/{id}/reject", post(control::reject))
        .route("/promotions/{id}/cancel", post(control::cancel))
        .route(
            "/promotions/{id}/override-gate",
            post(references::override_gate),
        )
        .route("/references", get(references::list).post(references::pin))
        .route("/references/{id}", delete(references::retire))
        .route("/artifacts", get(control::artifacts))
        .route("/artifacts/{id}/reject", post(control::reject_artifact))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(json_errors))
}
