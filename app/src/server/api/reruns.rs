//! Re-running a job on another release, and comparing two jobs' results:
//! `POST /api/v1/jobs/{id}/rerun` and `GET /api/v1/jobs/{id}/compare?with=OTHER`.
//!
//! A re-run submits the same analysis of the same dataset as a job only a worker of
//! the chosen release may start, linked to the original (`rerun_of`). It goes to the
//! workers of the release this server's fleet runs now (after a deploy: the new one);
//! a release that another environment runs is run there when that environment is in
//! `[control.peers]` (`control::forward` brings the result back), and is named in the
//! refusal otherwise, since this server's queue does not reach its workers.

use super::jobs::{Placement, submit_placed};
use super::results::{blocking, committed_result};
use crate::server::auth::Auth;
use crate::server::error::{ApiResult, AppError};
use crate::server::extract::{Path, Query};
use crate::server::state::{AppState, Services};
use axum::extract::State;
use axum::http::StatusCode;
use quarry_core::auth::Principal;
use quarry_core::control::environments;
use quarry_core::{Error, datasets, fleet, jobs, releases};
use quarry_domain::gate::{Comparison, Tolerance};
use quarry_domain::{ErrorBody, Job};
use serde::Deserialize;
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// Rows of differences a comparison shows.
const KEEP_ROWS: usize = 20;

/// Comparisons running at once (each reads both results whole); more wait.
static COMPARISONS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

/// `POST /api/v1/jobs/{id}/rerun` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// The release to run it on (default: the one this server's fleet runs now).
    pub release: Option<String>,
}

/// `GET /api/v1/jobs/{id}/compare` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareWith {
    /// The other job (its result is "actual"; this job's is "expected").
    pub with: String,
}

/// The release this server's fleet runs now.
pub async fn current_release(s: &Services) -> quarry_core::Result<String> {
    Ok(fleet::current_release(&s.db)
        .await?
        .map_or_else(|| s.config.worker.release(), |c| c.release))
}

/// The stack environments whose current release runs `image`.
async fn environments_running(s: &Services, image: &str) -> quarry_core::Result<Vec<String>> {
    let mut out = Vec::new();
    for env in s.control.environments() {
        let state = environments::get(&s.db, &env.name).await?;
        if let Some(id) = state.current_release_id
            && releases::get(&s.db, &id).await?.image == image
        {
            out.push(env.name.clone());
        }
    }
    Ok(out)
}

/// The releases of the environments in `[control.peers]` that run another release
/// than `current`, as `(environment, release)`: a re-run on one runs there.
pub async fn peer_releases(
    s: &Services,
    current: &str,
) -> quarry_core::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for env in s.control.environments() {
        if !s.config.control.peers.contains_key(&env.name) {
            continue;
        }
        let state = environments::get(&s.db, &env.name).await?;
        if let Some(id) = state.current_release_id {
            let image = releases::get(&s.db, &id).await?.image;
            if image != current {
                out.push((env.name.clone(), image));
            }
        }
    }
    Ok(out)
}

/// Re-runs job `id` on `release` (default: the current one); returns the new job.
pub async fn rerun_job(
    s: &Services,
    who: &Principal,
    id: &str,
    release: Option<&str>,
) -> ApiResult<Job> {
    let job = jobs::get(&s.db, who, id).await?;
    let current = current_release(s).await?;
    let release = release.map(str::trim).filter(|r| !r.is_empty());
    if let Some(wanted) = release
        && wanted != current
    {
        let elsewhere = environments_running(s, wanted).await?;
        if let Some(env) = elsewhere
            .iter()
            .find(|e| s.config.control.peers.contains_key(*e))
        {
            return forward(s, who, &job, wanted, env).await;
        }
        let hint = if elsewhere.is_empty() {
            "no environment runs it now".to_owned()
        } else {
            format!(
                "it runs in {}, whose workers this server's queue does not reach, and which \
                 is not in [control.peers]: re-run the job there",
                elsewhere.join(", ")
            )
        };
        return Err(Error::Conflict(format!(
            "this server's workers run release {current}, not {wanted} ({hint}); re-run on \
             {current} by leaving out `release`"
        ))
        .into());
    }
    let analysis = serde_json::to_value(&job.view.analysis).map_err(anyhow::Error::from)?;
    let placement = Placement {
        required_release: Some(&current),
        rerun_of: Some(id),
    };
    submit_placed(s, who, &job.view.dataset_id, analysis, placement).await
}

/// Re-runs `job` on `release` in environment `env`, which runs it: recorded here and
/// run there by the server's forwarder (`control::forward`). At most
/// `analyses.max_running_per_user` of a user's jobs run elsewhere at once (429).
async fn forward(
    s: &Services,
    who: &Principal,
    job: &jobs::StoredJob,
    release: &str,
    env: &str,
) -> ApiResult<Job> {
    // The same rule as any submit: the caller's own dataset.
    let dataset = datasets::get(&s.db, who, &job.view.dataset_id).await?;
    let limit = u64::from(s.config.analyses.max_running_per_user.max(1));
    if jobs::forwarded::open_of(&s.db, &who.user_id).await? >= limit {
        return Err(AppError::Rejected(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{limit} of your re-runs already run in other environments \
                 (analyses.max_running_per_user): wait for one to end"
            ),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let analysis_json = serde_json::to_string(&job.view.analysis).map_err(anyhow::Error::from)?;
    jobs::forwarded::insert(
        &s.db,
        &jobs::NewJob {
            id: &id,
            owner_id: &who.user_id,
            dataset_id: &dataset.view.id,
            analysis_json: &analysis_json,
            required_release: Some(release),
            rerun_of: Some(&job.view.id),
        },
        env,
    )
    .await?;
    tracing::info!(job_id = %id, rerun_of = %job.view.id, %env, %release, "a re-run goes to the environment that runs its release");
    Ok(jobs::get(&s.db, who, &id).await?.view)
}

/// Compares job `id`'s result (expected) with job `with`'s (actual): canonical row
/// order, floats within [`Tolerance::default`].
pub async fn compare_jobs(
    s: &Services,
    who: &Principal,
    id: &str,
    with: &str,
) -> ApiResult<Comparison> {
    let expected = committed_result(s, who, id).await?;
    let actual = committed_result(s, who, with).await?;
    for (job, meta) in [(id, &expected), (with, &actual)] {
        quarry_engine::results::compare::comparable(meta.bytes, meta.rows, meta.columns.len())
            .map_err(|why| Error::Conflict(format!("job `{job}`: {why}")))?;
    }
    let _permit = COMPARISONS
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("comparison permits: {e}"))?;
    let (e, a) = (
        expected.local_file(s.blobs.as_ref()).await?,
        actual.local_file(s.blobs.as_ref()).await?,
    );
    let (ep, ap) = (e.path().to_owned(), a.path().to_owned());
    blocking(move || {
        quarry_engine::results::compare::compare_files(&ep, &ap, Tolerance::default(), KEEP_ROWS)
    })
    .await
}

/// Run a job again, on the release this server's fleet runs now, or on `release`: the
/// same analysis of the same dataset, linked to the original (`rerun_of`) so the two
/// results can be compared. A release another environment in `[control.peers]` runs
/// is run there (`"environment"` on the job) and its result brought back.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/rerun", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    request_body(content = Option<RerunRequest>, description = "Optional: no body re-runs on the current release"),
    responses(
        (status = 202, description = "The re-run, queued", body = Job),
        (status = 400, description = "A bad body, or the analysis no longer fits the dataset", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such job, or its dataset, of yours", body = ErrorBody),
        (status = 409, description = "Neither this server's workers nor a peer environment run that release", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 429, description = "Too many of your re-runs run in other environments", body = ErrorBody),
    ))]
pub async fn rerun(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    // No body at all is the default re-run; one that is there must be the request.
    let body: RerunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RerunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AppError::invalid(
                "bad_json",
                format!("the body must be {{}} or {{\"release\": \"…\"}}: {e}"),
            )
        })?
    };
    let job = rerun_job(&state.services, &who, &id, body.release.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)))
}

/// Compare this job's result with another's, as a promotion gate does.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/compare", tag = "jobs",
    params(("id" = String, Path, description = "Job id (expected)"), CompareWith),
    responses(
        (status = 200, description = "How the results compare", body = Comparison),
        (status = 400, description = "No `with`", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
        (status = 409, description = "One of them has not succeeded, or is too large to compare", body = ErrorBody),
    ))]
pub async fn compare(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(q): Query<CompareWith>,
) -> ApiResult<axum::Json<Comparison>> {
    Ok(axum::Json(
        compare_jobs(&state.services, &who, &id, &q.with).await?,
    ))
}
