//! `/api/v1/environments`, `/api/v1/promotions`, `/api/v1/artifacts`: the operator
//! control plane over REST. Writes need an operator or an admin; reads a lead too;
//! analysts get 403. Every handler calls `crate::control::ops` (or
//! `crate::control::reads`), as the CLI does, through [`read`] or [`write`].

use crate::control::ops::{self, Actor};
use crate::control::reads;
use crate::server::auth::Auth;
use crate::server::error::{ApiResult, AppError};
use crate::server::extract::{Json, Path, Query};
use crate::server::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use quarry_core::auth::Principal;
use quarry_domain::control::{
    ArtifactView, EnvironmentDetail, EnvironmentView, PromotionView, ReleaseView,
};
use quarry_domain::{ErrorBody, Role};
use serde::Deserialize;

type JsonOut<T> = axum::Json<T>;

/// Refuses `who` unless they may read the control plane (leads, operators, admins).
pub(crate) fn reader(who: &Principal) -> ApiResult<()> {
    if who.sees_system() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "environments are for leads, operators and admins; ask an admin for a role",
        ))
    }
}

/// `who` as an actor, unless they may not change the control plane (operators and
/// admins may).
pub(crate) fn writer(who: &Principal) -> ApiResult<Actor> {
    if matches!(who.role, Role::Operator | Role::Admin) {
        Ok(Actor {
            name: who.name.clone(),
            admin: who.role == Role::Admin,
        })
    } else {
        Err(AppError::forbidden(
            "deploying, promoting, rolling back and freezing are for operators and admins",
        ))
    }
}

/// Answers a read: refuses `who` unless they may read, else runs `call` (not polled
/// before the check) and returns what it gives as JSON.
async fn read<T>(
    who: &Principal,
    call: impl Future<Output = quarry_core::Result<T>>,
) -> ApiResult<JsonOut<T>> {
    reader(who)?;
    Ok(axum::Json(call.await?))
}

/// Answers a change: refuses `who` unless they may write, else runs `call` as them and
/// returns what it gives as JSON.
async fn write<T, E, Fut>(who: &Principal, call: impl FnOnce(Actor) -> Fut) -> ApiResult<JsonOut<T>>
where
    Fut: Future<Output = Result<T, E>>,
    AppError: From<E>,
{
    let actor = writer(who)?;
    Ok(axum::Json(call(actor).await?))
}

/// `POST …/deploy` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// `<repository>@sha256:<64 hex>`: an image by digest, never a tag alone.
    pub artifact: String,
    pub commit: Option<String>,
    /// An admin deploying through a freeze (recorded).
    #[serde(default, rename = "override")]
    pub override_freeze: bool,
}

/// `POST /api/v1/promotions` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionRequest {
    pub from: String,
    pub to: String,
    #[serde(default, rename = "override")]
    pub override_freeze: bool,
}

/// A decision's body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    #[serde(default)]
    pub comment: String,
    #[serde(default, rename = "override")]
    pub override_freeze: bool,
}

/// `POST …/rollback` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The release to return to (default: the last good one before the current).
    pub to: Option<String>,
    /// Also reject the artifact running now.
    #[serde(default)]
    pub reject_artifact: bool,
    pub reason: String,
    #[serde(default, rename = "override")]
    pub override_freeze: bool,
}

/// A body with a reason.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    pub reason: String,
}

/// `GET /api/v1/promotions` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PromotionFilter {
    /// Only promotions in this state (`awaiting_approval`, `deploying`, `succeeded`,
    /// `failed`, `rejected`, `cancelled`, `expired`).
    pub status: Option<String>,
}

/// Every stack environment: stack, upstream, status, artifact, freeze and hold.
#[utoipa::path(get, path = "/api/v1/environments", tag = "control",
    responses(
        (status = 200, description = "The environments", body = Vec<EnvironmentView>),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<JsonOut<Vec<EnvironmentView>>> {
    read(&who, reads::list_environments(&s.services.control)).await
}

/// One environment with its resources, outputs, alarms, recent events and drift.
#[utoipa::path(get, path = "/api/v1/environments/{env}", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The environment", body = EnvironmentDetail),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
) -> ApiResult<JsonOut<EnvironmentDetail>> {
    read(&who, reads::environment_detail(&s.services.control, &env)).await
}

/// The environment's releases, newest first.
#[utoipa::path(get, path = "/api/v1/environments/{env}/releases", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "Releases, newest first", body = Vec<ReleaseView>),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ))]
pub async fn releases(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
) -> ApiResult<JsonOut<Vec<ReleaseView>>> {
    read(&who, reads::releases(&s.services.control, &env)).await
}

/// One server-sent event of `GET /api/v1/environments/{env}/events`.
#[derive(Debug, utoipa::ToSchema)]
pub struct ControlEventMessage {
    /// `stack`, `release` or `promotion`.
    #[schema(pattern = "^(stack|release|promotion)$")]
    pub event: String,
    /// A stack event, a release or a promotion, as JSON text.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The environment's changes, live: stack events and release and promotion state
/// changes, as server-sent events.
#[utoipa::path(get, path = "/api/v1/environments/{env}/events", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "A stream of `stack`, `release` and `promotion` events",
            content_type = "text/event-stream", body = ControlEventMessage),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 429, description = "Too many streams of yours open (auth.max_streams_per_user)", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
) -> ApiResult<impl IntoResponse> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    reader(&who)?;
    let plane = s.services.control.clone();
    plane.env(&env)?;
    let slot = s.services.streams.take(&who.user_id)?;
    let rx = plane.subscribe();
    let db = s.services.db.clone();
    let ending = s.services.shutdown.clone().cancelled_owned();
    let state = (rx, db, who, env, slot);
    let stream = futures::stream::unfold(state, |(mut rx, db, who, env, slot)| async move {
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv()).await;
            // A revoked or expired credential ends the stream it opened.
            if quarry_core::auth::still_valid(&db, &who).await.is_err() {
                return None;
            }
            match next {
                Err(_) => continue,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return None,
                Ok(Ok(event)) if event.environment == env => {
                    let sse = Event::default()
                        .event(event.kind)
                        .data(event.data.to_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (rx, db, who, env, slot),
                    ));
                }
                Ok(Ok(_)) => continue,
            }
        }
    });
    let stream = futures::StreamExt::take_until(stream, ending);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Deploy an artifact to an environment without an upstream (staging). The artifact
/// is registered on first use; the deployment runs in the background.
#[utoipa::path(post, path = "/api/v1/environments/{env}/deploy", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    request_body = DeployRequest,
    responses(
        (status = 202, description = "The release, running", body = ReleaseView),
        (status = 400, description = "Not an image by digest, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "Frozen, being deployed, takes promotions only, or the artifact is rejected", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn deploy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
    Json(body): Json<DeployRequest>,
) -> ApiResult<(StatusCode, JsonOut<ReleaseView>)> {
    let release = write(&who, |actor| async move {
        let commit = body.commit.as_deref();
        let plane = &s.services.control;
        ops::deploy(
            plane,
            &env,
            &body.artifact,
            commit,
            &actor,
            body.override_freeze,
        )
        .await
    });
    Ok((StatusCode::ACCEPTED, release.await?))
}

/// Return the environment to its last good release (or `to`), and hold it.
#[utoipa::path(post, path = "/api/v1/environments/{env}/rollback", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    request_body = RollbackRequest,
    responses(
        (status = 202, description = "The rollback release, running", body = ReleaseView),
        (status = 400, description = "No reason, or a release of another environment", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment or release", body = ErrorBody),
        (status = 409, description = "Frozen, being deployed, or nothing to return to", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn rollback(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
    Json(body): Json<RollbackRequest>,
) -> ApiResult<(StatusCode, JsonOut<ReleaseView>)> {
    let release = write(&who, |actor| async move {
        let (to, reject) = (body.to.as_deref(), body.reject_artifact);
        let plane = &s.services.control;
        ops::rollback(
            plane,
            &env,
            to,
            reject,
            &body.reason,
            &actor,
            body.override_freeze,
        )
        .await
    });
    Ok((StatusCode::ACCEPTED, release.await?))
}

/// Freeze an environment: deploys, promotions and rollbacks are refused.
#[utoipa::path(post, path = "/api/v1/environments/{env}/freeze", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    request_body = Reason,
    responses(
        (status = 200, description = "The environment, frozen", body = EnvironmentView),
        (status = 400, description = "No reason, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "Already frozen", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn freeze(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
    Json(body): Json<Reason>,
) -> ApiResult<JsonOut<EnvironmentView>> {
    write(&who, |actor| async move {
        ops::freeze(&s.services.control, &env, &body.reason, &actor).await
    })
    .await
}

fn optional_reason(body: &axum::body::Bytes) -> ApiResult<Reason> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Reason::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        AppError::invalid(
            "bad_json",
            format!("the body must be {{\"reason\": \"…\"}}: {e}"),
        )
    })
}

/// End a freeze (the optional reason is recorded).
#[utoipa::path(delete, path = "/api/v1/environments/{env}/freeze", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    request_body(content = Option<Reason>, description = "Optional: why", content_type = "application/json"),
    responses(
        (status = 200, description = "The environment, no longer frozen", body = EnvironmentView),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "Not frozen", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
    ))]
pub async fn unfreeze(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<JsonOut<EnvironmentView>> {
    write(&who, |actor| async move {
        let reason = optional_reason(&body)?;
        Ok::<_, AppError>(ops::unfreeze(&s.services.control, &env, &reason.reason, &actor).await?)
    })
    .await
}

/// Lift the hold a rollback set, with a reason.
#[utoipa::path(delete, path = "/api/v1/environments/{env}/hold", tag = "control",
    params(("env" = String, Path, description = "Environment name")),
    request_body = Reason,
    responses(
        (status = 200, description = "The environment, no longer held", body = EnvironmentView),
        (status = 400, description = "No reason, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "No hold to lift", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
    ))]
pub async fn lift_hold(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(env): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<JsonOut<EnvironmentView>> {
    write(&who, |actor| async move {
        let reason = optional_reason(&body)?;
        Ok::<_, AppError>(ops::lift_hold(&s.services.control, &env, &reason.reason, &actor).await?)
    })
    .await
}

/// Request the promotion of what runs on `from` into `to`; it waits for approval.
#[utoipa::path(post, path = "/api/v1/promotions", tag = "control",
    request_body = PromotionRequest,
    responses(
        (status = 201, description = "The promotion, awaiting approval, with its diff", body = PromotionView),
        (status = 400, description = "`to` is not promoted to from `from`, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "Frozen, held, nothing running upstream, or the artifact is rejected", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn promote(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<PromotionRequest>,
) -> ApiResult<(StatusCode, JsonOut<PromotionView>)> {
    let p = write(&who, |actor| async move {
        let plane = &s.services.control;
        ops::request_promotion(plane, &body.from, &body.to, &actor, body.override_freeze).await
    });
    Ok((StatusCode::CREATED, p.await?))
}

/// Promotions, newest first.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "control", params(PromotionFilter),
    responses(
        (status = 200, description = "Promotions, newest first", body = Vec<PromotionView>),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
    ))]
pub async fn promotions(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(f): Query<PromotionFilter>,
) -> ApiResult<JsonOut<Vec<PromotionView>>> {
    read(
        &who,
        reads::list_promotions(&s.services.control, f.status.as_deref()),
    )
    .await
}

/// One promotion with its diff and approvals.
#[utoipa::path(get, path = "/api/v1/promotions/{id}", tag = "control",
    params(("id" = String, Path, description = "Promotion id")),
    responses(
        (status = 200, description = "The promotion", body = PromotionView),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
    ))]
pub async fn promotion(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<JsonOut<PromotionView>> {
    read(&who, reads::promotion(&s.services.control, &id)).await
}

/// Approve a promotion (not your own). The diff is checked again first; once
/// approved, it deploys in the background.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/approve", tag = "control",
    params(("id" = String, Path, description = "Promotion id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The promotion: deploying, or awaiting further approvals", body = PromotionView),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin, or your own promotion", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not awaiting approval (expired, decided), frozen, held, rejected artifact, or the diff changed", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn approve(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<DecisionRequest>,
) -> ApiResult<JsonOut<PromotionView>> {
    write(&who, |actor| async move {
        let plane = &s.services.control;
        ops::approve(plane, &id, &actor, &body.comment, body.override_freeze).await
    })
    .await
}

/// Reject a promotion awaiting approval.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/reject", tag = "control",
    params(("id" = String, Path, description = "Promotion id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The promotion, rejected", body = PromotionView),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not awaiting approval", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn reject(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<DecisionRequest>,
) -> ApiResult<JsonOut<PromotionView>> {
    write(&who, |actor| async move {
        ops::reject(&s.services.control, &id, &actor, &body.comment).await
    })
    .await
}

/// Cancel a promotion awaiting approval.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/cancel", tag = "control",
    params(("id" = String, Path, description = "Promotion id")),
    responses(
        (status = 200, description = "The promotion, cancelled", body = PromotionView),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such promotion", body = ErrorBody),
        (status = 409, description = "Not awaiting approval", body = ErrorBody),
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<JsonOut<PromotionView>> {
    write(&who, |actor| async move {
        ops::cancel(&s.services.control, &id, &actor).await
    })
    .await
}

/// Every artifact, newest first.
#[utoipa::path(get, path = "/api/v1/artifacts", tag = "control",
    responses(
        (status = 200, description = "Artifacts, newest first", body = Vec<ArtifactView>),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
    ))]
pub async fn artifacts(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<JsonOut<Vec<ArtifactView>>> {
    read(&who, reads::list_artifacts(&s.services.control)).await
}

/// Reject an artifact: it is refused everywhere from now on.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/reject", tag = "control",
    params(("id" = String, Path, description = "Artifact id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The artifact, rejected", body = ArtifactView),
        (status = 400, description = "No reason, or a bad body", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an operator or admin", body = ErrorBody),
        (status = 404, description = "No such artifact", body = ErrorBody),
        (status = 409, description = "Already rejected", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
pub async fn reject_artifact(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> ApiResult<JsonOut<ArtifactView>> {
    write(&who, |actor| async move {
        ops::reject_artifact(&s.services.control, &id, &body.reason, &actor).await
    })
    .await
}
