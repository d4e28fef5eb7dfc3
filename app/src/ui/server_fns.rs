//! Server functions: the web app's calls into the server. Their bodies run on the
//! server only; the browser gets a typed HTTP stub. Every one authenticates the
//! session and applies the same role rules as the REST API (they call the same code).
//! Errors carry client-safe text only (see `quarry_app::server::error`) and the same
//! HTTP status as the REST API. Each has a stable endpoint, `/api/<name>`.

use crate::ui::charts::Series;
use leptos::prelude::*;
use quarry_domain::{Dataset, Job, JobAttempt, JobEvent, ReleaseFleet, ResultPage, Role};
use serde::{Deserialize, Serialize};

/// The signed-in user as the pages show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUser {
    pub name: String,
    pub role: Role,
}

/// A dataset with its first rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetView {
    pub dataset: Dataset,
    pub preview: ResultPage,
}

/// One of the caller's API tokens (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub label: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked: bool,
}

/// A job as the jobs list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub job: Job,
    pub dataset_name: Option<String>,
    /// Run time so far (running) or in total (finished), in seconds.
    pub duration_secs: Option<f64>,
}

/// One graph of the system page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
}

/// The system page's graphs of one environment over one time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemCharts {
    /// The environment shown (`local`, `staging`…).
    pub environment: String,
    /// Every environment the picker offers, `local` first.
    pub environments: Vec<String>,
    /// Where the series come from ("database samples of `local`", "CloudWatch, eu-west-1").
    pub origin: String,
    /// Why the graphs are empty when the source could not be read (say, CloudWatch
    /// unreachable), in words for the reader.
    pub unavailable: Option<String>,
    pub from: i64,
    pub to: i64,
    pub graphs: Vec<Graph>,
}

#[cfg(feature = "ssr")]
pub(crate) mod backend {
    use crate::server::auth::session_principal;
    use crate::server::error::AppError;
    use crate::server::state::Services;
    use leptos::prelude::*;
    use quarry_core::auth::Principal;
    use std::sync::Arc;

    /// The client-safe message as the function's error, and the matching HTTP
    /// status on its response (401, 403, 404… as the REST API would answer).
    pub fn fail(e: impl Into<AppError>) -> ServerFnError {
        let e = e.into();
        e.log();
        let (status, _, message) = e.parts();
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
        ServerFnError::new(message)
    }

    pub fn services() -> Result<Arc<Services>, ServerFnError> {
        use_context::<Arc<Services>>().ok_or_else(|| {
            fail(AppError::from(anyhow::anyhow!(
                "server function called without the services in context"
            )))
        })
    }

    pub async fn caller() -> Result<(Arc<Services>, Principal), ServerFnError> {
        let services = services()?;
        let headers: axum::http::HeaderMap = leptos_axum::extract().await?;
        let who = session_principal(&services.db, &headers)
            .await
            .map_err(fail)?;
        Ok((services, who))
    }
}

/// Who is signed in, if anyone (not an error: every page asks, the login page too).
#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<Option<SessionUser>, ServerFnError> {
    let services = backend::services()?;
    let headers: axum::http::HeaderMap = leptos_axum::extract().await?;
    Ok(
        crate::server::auth::session_principal(&services.db, &headers)
            .await
            .ok()
            .map(|who| SessionUser {
                name: who.name,
                role: who.role,
            }),
    )
}

/// The caller's datasets, newest first.
#[server(endpoint = "list_datasets")]
pub async fn list_datasets() -> Result<Vec<Dataset>, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let all = quarry_core::datasets::list(&services.db, &who)
        .await
        .map_err(backend::fail)?;
    Ok(all.into_iter().map(|d| d.view).collect())
}

/// One dataset and its first rows.
#[server(endpoint = "dataset_detail")]
pub async fn dataset_detail(id: String) -> Result<DatasetView, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let stored = quarry_core::datasets::get(&services.db, &who, &id)
        .await
        .map_err(backend::fail)?;
    let (key, format) = stored.scan_target();
    let file = services
        .blobs
        .local_file(key)
        .await
        .map_err(backend::fail)?;
    let columns = stored.view.columns.clone();
    let preview = tokio::task::spawn_blocking(move || {
        quarry_engine::results::preview(file.path(), format, &columns, 10)
    })
    .await
    .map_err(|e| backend::fail(anyhow::anyhow!("preview task: {e}")))?
    .map_err(|e| backend::fail(anyhow::anyhow!("preview: {e}")))?;
    Ok(DatasetView {
        dataset: stored.view,
        preview,
    })
}

/// Deletes one of the caller's datasets.
#[server(endpoint = "delete_dataset")]
pub async fn delete_dataset(id: String) -> Result<(), ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::uploads::delete(&services, &who, &id)
        .await
        .map_err(backend::fail)
}

/// Submits an analysis (JSON, as in `POST /api/v1/jobs`); returns the job's id.
#[server(endpoint = "submit_job")]
pub async fn submit_job(dataset_id: String, analysis: String) -> Result<String, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let analysis: serde_json::Value = serde_json::from_str(&analysis).map_err(|e| {
        backend::fail(crate::server::error::AppError::invalid(
            "bad_json",
            format!("the analysis is not valid JSON: {e}"),
        ))
    })?;
    let job = crate::server::api::jobs::submit_analysis(&services, &who, &dataset_id, analysis)
        .await
        .map_err(backend::fail)?;
    Ok(job.id)
}

/// The jobs the caller may see, newest first, optionally with one status.
#[server(endpoint = "list_jobs")]
pub async fn list_jobs(status: Option<String>) -> Result<Vec<JobRow>, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let status = status
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<quarry_domain::JobStatus>())
        .transpose()
        .map_err(|m| backend::fail(crate::server::error::AppError::invalid("bad_status", m)))?;
    let jobs = quarry_core::jobs::list(&services.db, &who, status, 500)
        .await
        .map_err(backend::fail)?;
    let names = quarry_core::datasets::names(&services.db)
        .await
        .map_err(backend::fail)?;
    let now = quarry_core::clock::now_ms();
    Ok(jobs
        .into_iter()
        .map(|j| {
            let ms = |s: &Option<String>| s.as_deref().and_then(quarry_core::clock::parse_rfc3339);
            let duration_secs = ms(&j.view.started_at)
                .map(|start| (ms(&j.view.finished_at).unwrap_or(now) - start) as f64 / 1000.0);
            JobRow {
                dataset_name: names.get(&j.view.dataset_id).cloned(),
                duration_secs,
                job: j.view,
            }
        })
        .collect())
}

/// A job, and why it waits if it is queued.
#[server(endpoint = "job_detail")]
pub async fn job_detail(id: String) -> Result<JobEvent, ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::api::jobs::job_event(&services, &who, &id)
        .await
        .map_err(backend::fail)
}

/// A job's attempts, first to last: worker, release, times and outcome.
#[server(endpoint = "job_attempts")]
pub async fn job_attempts(id: String) -> Result<Vec<JobAttempt>, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let job = quarry_core::jobs::get(&services.db, &who, &id)
        .await
        .map_err(backend::fail)?;
    quarry_core::jobs::attempts(&services.db, &job.view.id)
        .await
        .map_err(backend::fail)
}

/// What a job's page offers and shows of re-runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reruns {
    /// The release this server's workers run now: where a re-run goes.
    pub current_release: String,
    /// Other releases a re-run may go to: `(environment, release)` of each environment
    /// in `[control.peers]` that runs another release (the re-run runs there).
    #[serde(default)]
    pub elsewhere: Vec<(String, String)>,
    /// The job's re-runs, newest first.
    pub reruns: Vec<Job>,
    /// When the job is a re-run and both have succeeded: how its result compares
    /// with the original's.
    pub comparison: Option<quarry_domain::gate::Comparison>,
}

/// A job's re-runs, the release a new one would run on, and (for a re-run) how its
/// result compares with the original's.
#[server(endpoint = "job_reruns")]
pub async fn job_reruns(id: String) -> Result<Reruns, ServerFnError> {
    use crate::server::api::reruns;
    let (services, who) = backend::caller().await?;
    let job = quarry_core::jobs::get(&services.db, &who, &id)
        .await
        .map_err(backend::fail)?;
    let current_release = reruns::current_release(&services)
        .await
        .map_err(backend::fail)?;
    let list = quarry_core::jobs::reruns(&services.db, &id)
        .await
        .map_err(backend::fail)?
        .into_iter()
        .filter(|j| who.reads_all_jobs() || j.owner_id == who.user_id)
        .map(|j| j.view)
        .collect();
    let comparison = match &job.view.rerun_of {
        Some(original) if job.view.status == quarry_domain::JobStatus::Succeeded => {
            // The original gone, failed or not the caller's: nothing to compare.
            reruns::compare_jobs(&services, &who, original, &id)
                .await
                .ok()
        }
        _ => None,
    };
    Ok(Reruns {
        elsewhere: reruns::peer_releases(&services, &current_release)
            .await
            .map_err(backend::fail)?,
        current_release,
        reruns: list,
        comparison,
    })
}

/// Re-runs a job on `release` (default: the one this server's workers run now);
/// returns the new job's id.
#[server(endpoint = "rerun_job")]
pub async fn rerun_job(id: String, release: Option<String>) -> Result<String, ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::api::reruns::rerun_job(&services, &who, &id, release.as_deref())
        .await
        .map(|j| j.id)
        .map_err(backend::fail)
}

/// Cancels a job (its owner, an operator or an admin).
#[server(endpoint = "cancel_job")]
pub async fn cancel_job(id: String) -> Result<(), ServerFnError> {
    let (services, who) = backend::caller().await?;
    services
        .lifecycle
        .cancel(&who, &id)
        .await
        .map_err(backend::fail)?;
    Ok(())
}

/// A page of a job's result, optionally sorted (`-column` for descending).
#[server(endpoint = "job_result")]
pub async fn job_result(
    id: String,
    offset: u64,
    limit: u64,
    sort: Option<String>,
) -> Result<ResultPage, ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::api::jobs::result_page(&services, &who, &id, offset, limit, sort.as_deref())
        .await
        .map_err(backend::fail)
}

/// The system page's graphs of `environment` (default `local`; 404 for an unknown
/// one) for the last `minutes` (15, 60 or 1440).
#[server(endpoint = "system_graphs")]
pub async fn system_graphs(
    minutes: u32,
    environment: Option<String>,
) -> Result<SystemCharts, ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::api::jobs::require_system(&who).map_err(backend::fail)?;
    crate::server::graphs::system_graphs(&services, minutes, environment.as_deref())
        .await
        .map_err(backend::fail)
}

/// This server's fleet by release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub current_release: Option<String>,
    pub releases: Vec<ReleaseFleet>,
}

/// The release this server's environment runs and its live workers by release (leads,
/// operators and admins).
#[server(endpoint = "fleet_releases")]
pub async fn fleet_releases() -> Result<FleetView, ServerFnError> {
    use quarry_core::fleet;
    let (services, who) = backend::caller().await?;
    crate::server::api::jobs::require_system(&who).map_err(backend::fail)?;
    let stale = fleet::stale_after(services.config.heartbeat());
    Ok(FleetView {
        current_release: fleet::current_release(&services.db)
            .await
            .map_err(backend::fail)?
            .map(|c| c.release),
        releases: fleet::by_release(&services.db, stale)
            .await
            .map_err(backend::fail)?,
    })
}

/// The pre-scaler's profile and the orchestrator's last decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreScalingView {
    pub pre_scaling: quarry_domain::PreScaling,
    pub last_decision: Option<quarry_domain::Decision>,
}

/// The pre-scaler's learned profile and the last scaling decision (leads, operators
/// and admins).
#[server(endpoint = "pre_scaling")]
pub async fn pre_scaling() -> Result<PreScalingView, ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::api::jobs::require_system(&who).map_err(backend::fail)?;
    Ok(PreScalingView {
        pre_scaling: crate::server::prescale::view(&services)
            .await
            .map_err(backend::fail)?,
        last_decision: quarry_core::decisions::latest(&services.db)
            .await
            .map_err(backend::fail)?,
    })
}

/// The caller's API tokens, newest first.
#[server(endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<ApiToken>, ServerFnError> {
    use quarry_core::clock::rfc3339;
    let (services, who) = backend::caller().await?;
    let tokens = quarry_core::auth::list_tokens(&services.db, &who.user_id)
        .await
        .map_err(backend::fail)?;
    Ok(tokens
        .into_iter()
        .map(|t| ApiToken {
            id: t.id,
            label: t.label,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            revoked: t.revoked_at.is_some(),
        })
        .collect())
}

/// Creates an API token for the caller and returns it: the only time it is shown. A
/// session opened with an API token cannot mint one that outlives that token (403).
#[server(endpoint = "create_token")]
pub async fn create_token(label: String, expires_in_days: u32) -> Result<String, ServerFnError> {
    use secrecy::ExposeSecret as _;
    let (services, who) = backend::caller().await?;
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 64 {
        return Err(backend::fail(crate::server::error::AppError::invalid(
            "bad_label",
            "give the token a name of 1 to 64 characters, such as the machine it is for",
        )));
    }
    let expires_at = (expires_in_days > 0)
        .then(|| quarry_core::clock::now_ms() + i64::from(expires_in_days) * 24 * 3600 * 1000);
    let token = quarry_core::auth::issue_token_for(&services.db, &who, label, expires_at)
        .await
        .map_err(backend::fail)?;
    Ok(token.expose_secret().to_owned())
}

/// Revokes one of the caller's API tokens.
#[server(endpoint = "revoke_token")]
pub async fn revoke_token(id: String) -> Result<(), ServerFnError> {
    let (services, who) = backend::caller().await?;
    quarry_core::auth::revoke_token(&services.db, &who.user_id, &id)
        .await
        .map_err(backend::fail)?;
    // Streams opened with the token end with it.
    services.watch.credentials_changed();
    Ok(())
}

/// Reads one of the caller's datasets again with other column types or null
/// markers (`schema`: JSON object of column to type; `null_values`: comma-separated).
#[server(endpoint = "retype_dataset")]
pub async fn retype_dataset(
    id: String,
    schema: String,
    null_values: String,
) -> Result<Dataset, ServerFnError> {
    use crate::server::error::AppError;
    let (services, who) = backend::caller().await?;
    let schema = serde_json::from_str(&schema).map_err(|e| {
        backend::fail(AppError::invalid(
            "bad_option",
            format!("the types must be a JSON object of column to type: {e}"),
        ))
    })?;
    let options = quarry_domain::IngestOptions {
        schema,
        null_values: Some(
            null_values
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
        ),
        ..Default::default()
    };
    crate::server::uploads::retype(&services, &who, &id, &options)
        .await
        .map_err(backend::fail)
}
