//! `/api/v1/jobs` and `/api/v1/system`: submit analyses, follow them, read results.

use crate::server::auth::Auth;
use crate::server::error::{ApiResult, AppError};
use crate::server::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quarry_core::{Error, datasets, decisions, fleet, jobs};
use quarry_domain::{Analysis, Job, JobEvent, JobStatus, ResultPage, SystemStatus, Waiting};
use quarry_worker::analysis::validate::validate;
use quarry_worker::run::JobMessage;
use serde::Deserialize;

/// `POST /api/v1/jobs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub dataset_id: String,
    #[schema(value_type = Object)]
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
        (status = 400, description = "Bad analysis: the message names the column or op", body = quarry_domain::ErrorBody),
        (status = 404, description = "Unknown dataset", body = quarry_domain::ErrorBody),
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
    let analysis: Analysis = serde_json::from_value(analysis).map_err(|e| {
        AppError::invalid(
            "bad_analysis",
            format!("the analysis is not valid: {e}; kinds are profile, aggregate, sql, histogram, correlation, spin"),
        )
    })?;
    let dataset = datasets::get(&s.db, who, dataset_id).await?;
    validate(
        &analysis,
        &dataset.view.columns,
        s.config.analyses.allow_spin,
    )
    .map_err(|e| AppError::invalid(e.code, e.message))?;

    let id = uuid::Uuid::new_v4().to_string();
    let analysis_json = serde_json::to_string(&analysis).map_err(anyhow::Error::from)?;
    jobs::insert(&s.db, &id, &who.user_id, &dataset.view.id, &analysis_json).await?;
    let message =
        serde_json::to_string(&JobMessage { job_id: id.clone() }).map_err(anyhow::Error::from)?;
    if let Err(e) = s.queue.send(&message).await {
        jobs::remove(&s.db, &id).await?;
        return Err(e.into());
    }
    s.nudge.notify_one();
    tracing::info!(job_id = %id, dataset_id = %dataset.view.id, kind = analysis.kind(), "job queued");
    Ok(jobs::get(&s.db, who, &id).await?.view)
}

/// `GET /api/v1/jobs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// queued, running, succeeded, failed or cancelled.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Your jobs (a lead, operator or admin: everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = Vec<Job>), (status = 400, body = quarry_domain::ErrorBody)))]
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
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = quarry_domain::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(jobs::get(&state.services.db, &who, &id).await?.view))
}

/// Cancel a job: a queued job at once, a running one within a few seconds.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 409, description = "Already finished", body = quarry_domain::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(
        jobs::request_cancel(&state.services.db, &who, &id)
            .await?
            .view,
    ))
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
    let fleet = fleet::registry_counts(&services.db).await?;
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
    }))
}

/// A job's changes as server-sent events: an `event: job` with a [`JobEvent`] now and
/// on every change, until the job has finished. The browser follows a job with this
/// instead of polling.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of `job` events carrying a JobEvent", body = JobEvent),
        (status = 404, body = quarry_domain::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let services = state.services.clone();
    let first = job_event(&services, &who, &id).await?;
    let stream = futures::stream::unfold(
        (Some(first), None::<String>, false),
        move |(next, last, done)| {
            let (services, who, id) = (services.clone(), who.clone(), id.clone());
            async move {
                if done {
                    return None;
                }
                let mut next = next;
                loop {
                    let event = match next.take() {
                        Some(e) => e,
                        None => {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            match job_event(&services, &who, &id).await {
                                Ok(e) => e,
                                // The job was deleted with its dataset: end the stream.
                                Err(_) => return None,
                            }
                        }
                    };
                    let json = serde_json::to_string(&event).unwrap_or_default();
                    if last.as_deref() == Some(json.as_str()) {
                        continue;
                    }
                    let finished = event.job.status.is_terminal();
                    let sse = Event::default().event("job").data(json.clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (None, Some(json), finished),
                    ));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/jobs/{id}/result` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ResultParams {
    pub offset: Option<u64>,
    /// Rows per page (default 100, at most 10000).
    pub limit: Option<u64>,
    /// `json` (default, paged), `csv` or `parquet` (the whole result as a download).
    pub format: Option<String>,
    /// Sort the JSON pages by this column; a leading `-` sorts descending.
    pub sort: Option<String>,
}

/// A job's result: a JSON page, or the whole result as CSV or Parquet.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/result", tag = "jobs", params(("id" = String, Path), ResultParams),
    responses(
        (status = 200, body = ResultPage),
        (status = 409, description = "The job has not succeeded", body = quarry_domain::ErrorBody),
    ))]
pub async fn result(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(p): Query<ResultParams>,
) -> ApiResult<Response> {
    let s = &state.services;
    let format = p.format.as_deref().unwrap_or("json");
    if format == "json" {
        let page = result_page(
            s,
            &who,
            &id,
            p.offset.unwrap_or(0),
            p.limit.unwrap_or(100),
            p.sort.as_deref(),
        )
        .await?;
        return Ok(Json(page).into_response());
    }
    let meta = committed_result(s, &who, &id).await?;
    match format {
        "parquet" => {
            let name = format!("job-{id}.parquet");
            // From object storage the bytes go straight to the client, by a short-lived
            // signed URL; the local store streams them through this server.
            if let Some(url) = s
                .blobs
                .presigned_get(&meta.blob_key, DOWNLOAD_URL_TTL, &name)
                .await?
            {
                return Ok(axum::response::Redirect::to(&url).into_response());
            }
            let stream = s.blobs.get_stream(&meta.blob_key).await?;
            Ok(download(
                Body::from_stream(stream),
                "application/vnd.apache.parquet",
                &name,
            ))
        }
        "csv" => {
            let file = s.blobs.local_file(&meta.blob_key).await?;
            let path = file.path().to_owned();
            let tmp = tempfile::NamedTempFile::new_in(quarry_worker::run::tmp_dir(&s.config))
                .or_else(|_| tempfile::NamedTempFile::new())
                .map_err(anyhow::Error::from)?;
            let out = tmp.path().to_owned();
            tokio::task::spawn_blocking(move || quarry_worker::results::to_csv(&path, &out))
                .await
                .map_err(|e| anyhow::anyhow!("csv task: {e}"))?
                .map_err(|e| anyhow::anyhow!("writing csv: {e}"))?;
            // The open file keeps its data readable after the name is removed.
            let file = tokio::fs::File::from_std(tmp.into_file());
            let stream = tokio_util::io::ReaderStream::new(file);
            Ok(download(
                Body::from_stream(stream),
                "text/csv",
                &format!("job-{id}.csv"),
            ))
        }
        other => Err(AppError::invalid(
            "bad_format",
            format!("`format={other}` is unknown: use json, csv or parquet"),
        )),
    }
}

/// How long a signed download URL stays valid.
const DOWNLOAD_URL_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// The committed result of a job the principal may read, as a local file.
async fn result_file(
    s: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    id: &str,
) -> ApiResult<(jobs::ResultMeta, quarry_core::blob::LocalFile)> {
    let meta = committed_result(s, who, id).await?;
    let file = s.blobs.local_file(&meta.blob_key).await?;
    Ok((meta, file))
}

/// The description of a job's committed result, if the principal may read it.
async fn committed_result(
    s: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    id: &str,
) -> ApiResult<jobs::ResultMeta> {
    let job = jobs::get(&s.db, who, id).await?;
    if job.view.status != JobStatus::Succeeded {
        return Err(Error::Conflict(format!(
            "job `{id}` is {}: a result exists once it has succeeded",
            job.view.status
        ))
        .into());
    }
    let meta = jobs::result(&s.db, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("succeeded job {id} has no result row"))?;
    Ok(meta)
}

/// One page of a job's result, optionally sorted (`sort`: a column, `-column` for
/// descending).
pub async fn result_page(
    s: &crate::server::state::Services,
    who: &quarry_core::auth::Principal,
    id: &str,
    offset: u64,
    limit: u64,
    sort: Option<&str>,
) -> ApiResult<ResultPage> {
    let (meta, file) = result_file(s, who, id).await?;
    let path = file.path().to_owned();
    let limit = limit.max(1);
    let sort = sort
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('-') {
            Some(column) => (column.to_owned(), true),
            None => (s.to_owned(), false),
        });
    if let Some((by, _)) = &sort
        && !meta.columns.iter().any(|c| &c.name == by)
    {
        let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(AppError::invalid(
            "unknown_column",
            format!(
                "cannot sort by `{by}`: the result's columns are {}",
                names.join(", ")
            ),
        ));
    }
    let page = tokio::task::spawn_blocking(move || {
        let _keep = file;
        match sort {
            None => quarry_worker::results::page(&path, offset, limit),
            Some((by, descending)) => {
                quarry_worker::results::sorted_page(&path, offset, limit, &by, descending)
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("result page task: {e}"))?;
    Ok(page.map_err(|e| anyhow::anyhow!("reading result: {e}"))?)
}

fn download(body: Body, content_type: &'static str, file_name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

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
#[utoipa::path(get, path = "/api/v1/system", tag = "system", responses((status = 200, body = SystemStatus), (status = 403, body = quarry_domain::ErrorBody)))]
pub async fn system(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<Json<SystemStatus>> {
    require_system(&who)?;
    let s = &state.services;
    Ok(Json(SystemStatus {
        environment: s.config.environment.clone(),
        queue: s.queue.counts().await?,
        workers: fleet::registry_counts(&s.db).await?,
        max_workers: u64::from(s.config.fleet.max_workers),
        jobs_per_worker: u64::from(s.config.fleet.jobs_per_worker),
        last_decision: decisions::latest(&s.db).await?,
    }))
}
