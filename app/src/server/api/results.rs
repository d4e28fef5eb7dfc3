//! `GET /api/v1/jobs/{id}/result`: a job's result as JSON pages (bounded in rows and
//! cells; sorted pages come from a cached sorted copy, so paging a sorted result sorts
//! it once), or the whole result as a streamed CSV or a Parquet download.

use crate::server::auth::Auth;
use crate::server::error::{ApiResult, AppError};
use crate::server::extract::{Path, Query};
use crate::server::state::{AppState, Services};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use quarry_core::auth::Principal;
use quarry_core::{Error, jobs};
use quarry_domain::{JobStatus, ResultPage};
use quarry_engine::results::sorted::{SortCache, SortKey};
use quarry_engine::results::{self, CSV_CHUNK_ROWS};
use serde::Deserialize;
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// How a result is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultFormat {
    /// A page of rows as JSON.
    #[default]
    Json,
    /// The whole result as CSV, streamed.
    Csv,
    /// The whole result as Parquet (a signed redirect from object storage).
    Parquet,
}

/// `GET /api/v1/jobs/{id}/result` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultParams {
    /// The page's first row (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// Rows per page: default 100, at most 10000 rows and at most 100000 cells
    /// (rows × columns); the page's `limit` is the limit applied.
    #[param(minimum = 0)]
    pub limit: Option<u64>,
    /// `json` (default, paged), `csv` or `parquet` (the whole result as a download).
    pub format: Option<ResultFormat>,
    /// Sort the JSON pages by this column; a leading `-` sorts descending. Nulls
    /// sort last; ties keep the result's order.
    pub sort: Option<String>,
}

/// Sorted copies kept at once, and their total size.
const SORT_CACHE_ENTRIES: usize = 32;
const SORT_CACHE_BYTES: u64 = 2 << 30;

/// Sorted copies built at once; further sorts wait their turn.
static SORTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

/// CSV downloads streamed at once; beyond, 429 (each holds a row group in memory).
const CSV_DOWNLOADS: usize = 8;
static DOWNLOADS: LazyLock<std::sync::Arc<Semaphore>> =
    LazyLock::new(|| std::sync::Arc::new(Semaphore::new(CSV_DOWNLOADS)));

/// CSV chunks buffered between the reader and a slow client.
const CSV_CHANNEL: usize = 4;

/// How long a signed download URL stays valid.
const DOWNLOAD_URL_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A job's result: a JSON page, or the whole result as CSV or Parquet.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/result", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), ResultParams),
    responses(
        (status = 200, description = "A page (`format=json`), or the whole result as CSV or Parquet",
            content((ResultPage = "application/json"), (String = "text/csv"),
                (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 303, description = "`format=parquet` from object storage: see the signed URL in `Location`"),
        (status = 400, description = "Bad parameter or unknown sort column", body = quarry_domain::ErrorBody),
        (status = 401, description = "Missing or bad token", body = quarry_domain::ErrorBody),
        (status = 404, description = "No such job of yours", body = quarry_domain::ErrorBody),
        (status = 409, description = "The job has not succeeded", body = quarry_domain::ErrorBody),
        (status = 429, description = "Too many CSV downloads at once: retry after `Retry-After` seconds", body = quarry_domain::ErrorBody),
    ))]
pub async fn result(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(p): Query<ResultParams>,
) -> ApiResult<Response> {
    let s = &state.services;
    match p.format.unwrap_or_default() {
        ResultFormat::Json => {
            let page = result_page(
                s,
                &who,
                &id,
                p.offset.unwrap_or(0),
                p.limit.unwrap_or(100),
                p.sort.as_deref(),
            )
            .await?;
            Ok(Json(page).into_response())
        }
        ResultFormat::Parquet => parquet(s, &who, &id).await,
        ResultFormat::Csv => csv(s, &who, &id).await,
    }
}

/// One page of a job's result, optionally sorted (`sort`: a column, `-column` for
/// descending). The page's `limit` is the one applied (see
/// [`results::page_limit`]).
pub async fn result_page(
    s: &Services,
    who: &Principal,
    id: &str,
    offset: u64,
    limit: u64,
    sort: Option<&str>,
) -> ApiResult<ResultPage> {
    let meta = committed_result(s, who, id).await?;
    let Some(key) = sort_key(&meta, sort)? else {
        let file = meta.local_file(s.blobs.as_ref()).await?;
        return blocking(move || results::page(file.path(), offset, limit)).await;
    };
    let cache = SortCache::new(
        s.config.data_dir.join("cache").join("sorted"),
        SORT_CACHE_ENTRIES,
        SORT_CACHE_BYTES,
    );
    let cached = {
        let (cache, key) = (cache.clone(), key.clone());
        move || cache.cached_page(&key, offset, limit)
    };
    if let Some(page) = blocking(cached.clone()).await? {
        return Ok(page);
    }
    let _permit = SORTS
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("sort permits: {e}"))?;
    // Another request may have built the copy while this one waited.
    if let Some(page) = blocking(cached).await? {
        return Ok(page);
    }
    let file = meta.local_file(s.blobs.as_ref()).await?;
    tracing::info!(job_id = %id, column = %key.column, descending = key.descending, "sorting a result");
    blocking(move || cache.build_page(&key, file.path(), offset, limit)).await
}

/// The sorted copy a `sort` parameter asks for; an unknown column is a 400 naming the
/// result's columns. A column whose name starts with `-` is sorted ascending by its
/// exact name.
fn sort_key(meta: &jobs::ResultMeta, sort: Option<&str>) -> ApiResult<Option<SortKey>> {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let position = |name: &str| meta.columns.iter().position(|c| c.name == name);
    let found = match position(sort) {
        Some(index) => Some((sort, index, false)),
        None => sort
            .strip_prefix('-')
            .and_then(|name| position(name).map(|index| (name, index, true))),
    };
    let Some((column, index, descending)) = found else {
        let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
        let shown = sort.strip_prefix('-').unwrap_or(sort);
        return Err(AppError::invalid(
            "unknown_column",
            format!(
                "cannot sort by `{shown}`: the result's columns are {}",
                names.join(", ")
            ),
        ));
    };
    Ok(Some(SortKey {
        blob_key: meta.blob_key.clone(),
        column: column.to_owned(),
        index,
        descending,
    }))
}

/// Runs polars work off the async threads.
pub(super) async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T> {
    let out = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("result task: {e}"))?;
    Ok(out.map_err(|e| anyhow::anyhow!("reading a result: {e}"))?)
}

/// The committed result of a job the principal may read.
pub(super) async fn committed_result(
    s: &Services,
    who: &Principal,
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

async fn parquet(s: &Services, who: &Principal, id: &str) -> ApiResult<Response> {
    let meta = committed_result(s, who, id).await?;
    let name = format!("job-{id}.parquet");
    // From object storage the bytes go straight to the client, by a short-lived
    // signed URL; the local store streams them through this server, as does a result
    // kept in its row.
    if meta.inline.is_none()
        && let Some(url) = s
            .blobs
            .presigned_get(&meta.blob_key, DOWNLOAD_URL_TTL, &name)
            .await?
    {
        return Ok(axum::response::Redirect::to(&url).into_response());
    }
    let stream = meta.stream(s.blobs.as_ref()).await?;
    Ok(download(
        Body::from_stream(stream),
        "application/vnd.apache.parquet",
        &name,
    ))
}

/// The whole result as CSV, written into the response as it is read: a blocking
/// producer reads the Parquet row groups and sends CSV chunks over a bounded channel.
/// A client that goes away closes the channel, which stops the producer; its local
/// copy of the result (a download from object storage) is removed when it stops.
async fn csv(s: &Services, who: &Principal, id: &str) -> ApiResult<Response> {
    let meta = committed_result(s, who, id).await?;
    let Ok(permit) = DOWNLOADS.clone().try_acquire_owned() else {
        let mut response = AppError::Rejected(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{CSV_DOWNLOADS} CSV downloads are already running: retry in a few seconds, \
                 or download `format=parquet`"
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return Ok(response);
    };
    let file = meta.local_file(s.blobs.as_ref()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CSV_CHANNEL);
    let job_id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let written = results::csv_chunks(file.path(), CSV_CHUNK_ROWS, |chunk| {
            tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
        });
        if let Err(e) = written {
            tracing::error!(%job_id, error = %e, "writing a CSV download failed");
            // Ends the response with an error, so the client sees a cut download.
            let _ = tx.blocking_send(Err(std::io::Error::other("the CSV download failed")));
        }
        drop(file);
    });
    // The header chunk decides between a download and an error answer.
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        _ => {
            return Err(anyhow::anyhow!("the CSV download of job {id} produced nothing").into());
        }
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let body = futures::stream::once(async move { Ok(first) }).chain(rest);
    Ok(download(
        Body::from_stream(body),
        "text/csv",
        &format!("job-{id}.csv"),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_domain::ColumnInfo;

    fn meta(names: &[&str]) -> jobs::ResultMeta {
        jobs::ResultMeta {
            blob_key: "results/j/a.parquet".to_owned(),
            rows: 1,
            bytes: 1,
            columns: names
                .iter()
                .map(|n| ColumnInfo {
                    name: (*n).to_owned(),
                    r#type: "int64".to_owned(),
                })
                .collect(),
            inline: None,
        }
    }

    #[test]
    fn sort_parameters_name_a_column_and_a_direction() {
        let m = meta(&["a", "-b", "c"]);
        assert_eq!(sort_key(&m, None).unwrap(), None);
        assert_eq!(sort_key(&m, Some("")).unwrap(), None);
        let k = sort_key(&m, Some("-c")).unwrap().unwrap();
        assert_eq!((k.column.as_str(), k.index, k.descending), ("c", 2, true));
        let k = sort_key(&m, Some("a")).unwrap().unwrap();
        assert_eq!((k.column.as_str(), k.index, k.descending), ("a", 0, false));
        let k = sort_key(&m, Some("-b")).unwrap().unwrap();
        assert_eq!(
            (k.column.as_str(), k.descending),
            ("-b", false),
            "exact name first"
        );
        let e = sort_key(&m, Some("-zz")).unwrap_err();
        let (status, code, message) = e.parts();
        assert_eq!((status.as_u16(), code), (400, "unknown_column"));
        assert!(
            message.contains("`zz`") && message.contains("a, -b, c"),
            "{message}"
        );
    }
}
