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
use quarry_domain::{Analysis, Job, JobStatus, ResultPage, SystemStatus};
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
    let s = &state.services;
    let request: NewJob = serde_json::from_slice(&body).map_err(|e| {
        bad_json(format!(
            "the body must be {{\"dataset_id\", \"analysis\": {{\"kind\", ...}}}}: {e}"
        ))
    })?;
    let analysis: Analysis = serde_json::from_value(request.analysis.clone()).map_err(|e| {
        AppError::invalid(
            "bad_analysis",
            format!("the analysis is not valid: {e}; kinds are profile, aggregate, sql, histogram, correlation, spin"),
        )
    })?;
    let dataset = datasets::get(&s.db, &who, &request.dataset_id).await?;
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
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::get(&s.db, &who, &id).await?.view),
    ))
}

/// `GET /api/v1/jobs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// queued, running, succeeded, failed or cancelled.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Your jobs (an admin: everyone's), newest first.
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

/// `GET /api/v1/jobs/{id}/result` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ResultParams {
    pub offset: Option<u64>,
    /// Rows per page (default 100, at most 10000).
    pub limit: Option<u64>,
    /// `json` (default, paged), `csv` or `parquet` (the whole result as a download).
    pub format: Option<String>,
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
    let job = jobs::get(&s.db, &who, &id).await?;
    if job.view.status != JobStatus::Succeeded {
        return Err(Error::Conflict(format!(
            "job `{id}` is {}: a result exists once it has succeeded",
            job.view.status
        ))
        .into());
    }
    let meta = jobs::result(&s.db, &id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("succeeded job {id} has no result row"))?;
    let file = s.blobs.local_file(&meta.blob_key).await?;
    let path = file.path().to_owned();
    let format = p.format.as_deref().unwrap_or("json");
    match format {
        "json" => {
            let (offset, limit) = (p.offset.unwrap_or(0), p.limit.unwrap_or(100).max(1));
            let page = tokio::task::spawn_blocking(move || {
                quarry_worker::results::page(&path, offset, limit)
            })
            .await
            .map_err(|e| anyhow::anyhow!("result page task: {e}"))?
            .map_err(|e| anyhow::anyhow!("reading result: {e}"))?;
            Ok(Json(page).into_response())
        }
        "parquet" => {
            let stream = s.blobs.get_stream(&meta.blob_key).await?;
            Ok(download(
                Body::from_stream(stream),
                "application/vnd.apache.parquet",
                &format!("job-{id}.parquet"),
            ))
        }
        "csv" => {
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

/// The engine's state: queue counts, workers, limits and the orchestrator's last decision.
#[utoipa::path(get, path = "/api/v1/system", tag = "system", responses((status = 200, body = SystemStatus)))]
pub async fn system(
    State(state): State<AppState>,
    Auth(_who): Auth,
) -> ApiResult<Json<SystemStatus>> {
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
