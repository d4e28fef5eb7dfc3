//! `/api/v1/jobs` and `/api/v1/system`: submit analyses, follow them, read results.

use crate::server::auth::Auth;
use crate::server::error::{ApiResult, AppError};
use crate::server::extract::{Path, Query};
use crate::server::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use quarry_core::{datasets, decisions, fleet, jobs};
use quarry_domain::{
    Analysis, ErrorBody, Job, JobAttempt, JobEvent, JobStatus, SystemStatus, Waiting,
};
use quarry_engine::analysis::validate::validate;
use serde::Deserialize;

/// `POST /api/v1/jobs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub dataset_id: String,
    /// What to compute; checked against the dataset's columns.
    #[schema(value_type = Analysis)]
    pub analysis: serde_json::Value,
}

fn bad_json(message: String) -> AppError {
    AppError::invalid("bad_json", message)
}

/// Submit an analysis of a dataset. Validated against the dataset's schema, recorded,
/// enqueued, answered: the analysis itself runs on a worker.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = NewJob,
    responses(
        (status = 202, description = "Queued", body = Job),
        (status = 400, description = "Bad JSON or analysis: the message names the field, column or op", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "Unknown dataset", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let request: NewJob = serde_json::from_slice(&body).map_err(|e| {
        bad_json(format!(
            "the body must be {{\"dataset_id\", \"analysis\": {{\"kind\", ...}}}}: {e}"
        ))
    })?;
    let job = submit_analysis(&state.services, &who, &request.dataset_id, request.analysis).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Validates an analysis against the dataset's schema, records the job and enqueues
/// it. Shared by the REST API and the web app's launch form.
pub async fn submit_analysis(
    s: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    dataset_id: &str,
    analysis: serde_json::Value,
) -> ApiResult<Job> {
    submit_placed(s, who, dataset_id, analysis, Placement::default()).await
}

/// Where a submitted job must run: on one release only, as a re-run of another job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    pub required_release: Option<&'a str>,
    pub rerun_of: Option<&'a str>,
}

/// [`submit_analysis`] with a placement (a re-run's).
pub async fn submit_placed(
    s: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    dataset_id: &str,
    analysis: serde_json::Value,
    placement: Placement<'_>,
) -> ApiResult<Job> {
    let analysis: Analysis = serde_json::from_value(analysis).map_err(|e| {
        AppError::invalid(
            "bad_analysis",
            format!("the analysis is not valid: {e}; kinds are profile, aggregate, sql, histogram, correlation, spin"),
        )
    })?;
    let dataset = datasets::get(&s.db, who, dataset_id).await?;
    let limits = quarry_engine::analysis::validate::Limits::from_config(&s.config.analyses);
    let checked = match analysis {
        // At most one pass over the schema: less than the hop to a blocking thread and
        // back.
        Analysis::Profile | Analysis::Histogram { .. } | Analysis::Spin { .. } => {
            validate(&analysis, &dataset.view.columns, &limits)
        }
        // Planning SQL is CPU work on threads of its own, and the lists of an aggregate
        // or a correlation are searched in the schema once per entry (as long as the
        // body allows): off the runtime.
        Analysis::Sql { .. } | Analysis::Aggregate { .. } | Analysis::Correlation { .. } => {
            let columns = dataset.view.columns.clone();
            let checked = analysis.clone();
            tokio::task::spawn_blocking(move || validate(&checked, &columns, &limits))
                .await
                .map_err(|e| anyhow::anyhow!("validation task: {e}"))?
        }
    };
    checked.map_err(|e| AppError::invalid(e.code, e.message))?;

    let id = uuid::Uuid::new_v4().to_string();
    let analysis_json = serde_json::to_string(&analysis).map_err(anyhow::Error::from)?;
    let new = jobs::NewJob {
        id: &id,
        owner_id: &who.user_id,
        dataset_id: &dataset.view.id,
        analysis_json: &analysis_json,
        required_release: placement.required_release,
        rerun_of: placement.rerun_of,
    };
    let created_at = quarry_core::clock::now_ms();
    let held = s.lifecycle.submit_at(&new, created_at).await?;
    s.wake_workers.notify_one();
    s.nudge.notify_one();
    tracing::info!(job_id = %id, dataset_id = %dataset.view.id, kind = analysis.kind(), held, "job queued");
    // The job as the submit recorded it, not read back: a worker woken just now may
    // already have started it, and the answer to a submit says it was queued.
    Ok(Job {
        id,
        dataset_id: dataset.view.id,
        analysis,
        status: JobStatus::Queued,
        attempts: 0,
        progress: 0.0,
        error: None,
        dead_letter: false,
        created_at: quarry_core::clock::rfc3339(created_at),
        started_at: None,
        finished_at: None,
        provenance: None,
        required_release: placement.required_release.map(str::to_owned),
        rerun_of: placement.rerun_of.map(str::to_owned),
        environment: None,
    })
}

/// `GET /api/v1/jobs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs with this status.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 0)]
    pub limit: Option<u32>,
}

/// Your jobs (a lead, operator or admin: everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListParams),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        (status = 400, description = "Bad status or limit", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Vec<Job>>> {
    let status = p
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<JobStatus>()
                .map_err(|m| AppError::invalid("bad_status", m))
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let all = jobs::list(&state.services.db, &who, status, limit).await?;
    Ok(Json(all.into_iter().map(|j| j.view).collect()))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(jobs::get(&state.services.db, &who, &id).await?.view))
}

/// A job's attempts: which worker and release ran each, when, and how it ended.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/attempts", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The attempts, first to last", body = Vec<JobAttempt>),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    ))]
pub async fn attempts(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<JobAttempt>>> {
    let job = jobs::get(&state.services.db, &who, &id).await?;
    Ok(Json(
        jobs::attempts(&state.services.db, &job.view.id).await?,
    ))
}

/// Cancel a job: a queued job at once, a running one within a few seconds.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, cancelled or flagged for cancellation", body = Job),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Someone else's job, seen read-only", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(state.services.lifecycle.cancel(&who, &id).await?.view))
}

/// A job with, while it is queued, why it waits.
pub async fn job_event(
    services: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    id: &str,
) -> ApiResult<JobEvent> {
    let job = jobs::get(&services.db, who, id).await?.view;
    let waiting = if job.status == JobStatus::Queued {
        waiting(services, id).await?
    } else {
        None
    };
    Ok(JobEvent { job, waiting })
}

async fn waiting(
    services: &crate::server::state::Services,
    id: &str,
) -> ApiResult<Option<Waiting>> {
    let Some(position) = jobs::queue_position(&services.db, id).await? else {
        return Ok(None);
    };
    let reason = match jobs::find(&services.db, id).await? {
        Some(job) => match job.held {
            Some(limit) => {
                let active =
                    quarry_core::lifecycle::active_count(&services.db, &job.owner_id).await?;
                Some(held_reason(active, limit))
            }
            None => None,
        },
        None => None,
    };
    let fleet = services.fleet_counts().await?;
    let busy = jobs::running_count(&services.db).await?;
    let capacity = u64::from(services.config.fleet.max_workers)
        * u64::from(services.config.fleet.jobs_per_worker);
    let median = jobs::recent_median_secs(&services.db, 50).await?;
    Ok(Some(Waiting {
        position,
        workers_running: fleet.running,
        workers_starting: fleet.starting,
        max_workers: u64::from(services.config.fleet.max_workers),
        estimated_start_secs: Waiting::estimate(position, busy, capacity, median),
        reason,
    }))
}

/// Results live in [`super::results`]; the web app's result view pages through them.
pub use super::results::result_page;

/// Leads, operators and admins only.
pub fn require_system(who: &quarry_core::auth::Principal) -> ApiResult<()> {
    if who.sees_system() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "the system view is for leads, operators and admins; ask an admin for the lead role",
        ))
    }
}

/// The engine's state: queue counts, workers, limits and the orchestrator's last decision.
#[utoipa::path(get, path = "/api/v1/system", tag = "system",
    responses(
        (status = 200, description = "Queue, workers, limits and the last scaling decision", body = SystemStatus),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not a lead, operator or admin", body = ErrorBody),
    ))]
pub async fn system(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<Json<SystemStatus>> {
    require_system(&who)?;
    let s = &state.services;
    Ok(Json(SystemStatus {
        environment: s.config.environment.clone(),
        queue: s.queue.counts().await?,
        workers: s.fleet_counts().await?,
        max_workers: u64::from(s.config.fleet.max_workers),
        jobs_per_worker: u64::from(s.config.fleet.jobs_per_worker),
        last_decision: decisions::latest(&s.db).await?,
        current_release: fleet::current_release(&s.db).await?.map(|c| c.release),
        releases: fleet::by_release(&s.db, fleet::stale_after(s.config.heartbeat())).await?,
        pre_scaling: Some(crate::server::prescale::view(s).await?),
    }))
}

/// Why a held job waits: its owner is at `analyses.max_running_per_user`.
fn held_reason(active: u64, limit: u32) -> String {
    let jobs = if active == 1 { "job" } else { "jobs" };
    format!(
        "you have {active} {jobs} running; analyses.max_running_per_user is {limit}: \
         this one starts when one of yours finishes"
    )
}
