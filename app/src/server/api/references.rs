//! `/api/v1/references`: the reference analyses that gate promotions, and
//! `POST /api/v1/promotions/{id}/override-gate`. Reads need a lead, operator or admin;
//! pinning and retiring an operator or admin; overriding a blocked gate an admin.
//! Every handler calls `crate::control::gate`.

use super::control::{reader, writer};
use crate::control::{gate, reads};
use crate::server::auth::Auth;
use crate::server::error::ApiResult;
use crate::server::extract::{Json, Path, Query};
use crate::server::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use quarry_domain::ErrorBody;
use quarry_domain::control::PromotionView;
use quarry_domain::gate::ReferenceView;
use serde::Deserialize;

/// `POST /api/v1/references` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// A job that succeeded on the release production runs: its dataset, analysis
    /// and result become the reference.
    pub job_id: String,
    /// What the reference is called (default: the analysis kind); at most 100
    /// characters.
    #[serde(default)]
    pub name: String,
}

/// `GET /api/v1/references` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReferenceFilter {
    /// Also the retired ones.
    #[serde(default)]
    pub retired: bool,
}

/// A body with the override's reason.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    #[serde(default)]
    pub reason: String,
}

/// The pinned reference analyses, oldest first.
#[utoipa::path(get, path = "/api/v1/references", tag = "control", params(ReferenceFilter),
    responses(
        (status = 200, description = "The references", body = Vec<ReferenceView>),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(f): Query<ReferenceFilter>,
) -> ApiResult<axum::Json<Vec<ReferenceView>>> {
    reader(&who)?;
    Ok(axum::Json(
        gate::list(&s.services.control, f.retired).await?,
    ))
}

/// Pin a job's analysis and result as a reference: every promotion requested from now
/// on runs it on the candidate and is blocked if the result differs.
#[utoipa::path(post, path = "/api/v1/references", tag = "control", request_body = PinRequest,
    responses(
        (status = 201, description = "The reference", body = ReferenceView),
        (status = 400, description = "A bad body or name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job did not succeed, or not on the release production runs", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn pin(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<PinRequest>,
) -> ApiResult<(StatusCode, axum::Json<ReferenceView>)> {
    let actor = writer(&who)?;
    let s = &s.services;
    let r = gate::pin(
        &s.control,
        s.blobs.as_ref(),
        &body.job_id,
        &body.name,
        &actor,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(r)))
}

/// Retire a reference: promotions requested later no longer run it.
#[utoipa::path(delete, path = "/api/v1/references/{id}", tag = "control",
    params(("id" = String, Path, description = "Reference id")),
    responses(
        (status = 200, description = "The reference, retired", body = ReferenceView),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such reference", body = ErrorBody),
        (status = 409, description = "Already retired", body = ErrorBody),
    ))]
pub async fn retire(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ReferenceView>> {
    let actor = writer(&who)?;
    Ok(axum::Json(
        gate::retire(&s.services.control, &id, &actor).await?,
    ))
}

/// Let a promotion its reference gate blocked be approved: admins only, with a reason
/// (recorded on the promotion and in its history).
#[utoipa::path(post, path = "/api/v1/promotions/{id}/override-gate", tag = "control",
    params(("id" = String, Path, description = "Promotion id")),
    request_body = OverrideRequest,
    responses(
        (status = 200, description = "The promotion, its gate overridden", body = PromotionView),
        (status = 400, description = "No reason, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not awaiting approval, or its gate is not blocked", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn override_gate(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<OverrideRequest>,
) -> ApiResult<axum::Json<PromotionView>> {
    let actor = writer(&who)?;
    let plane = &s.services.control;
    gate::override_gate(plane, &id, &body.reason, &actor).await?;
    Ok(axum::Json(reads::promotion(plane, &id).await?))
}
