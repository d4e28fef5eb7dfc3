//! Jobs run in another environment: a re-run on a release that environment runs
//! (`[control.peers.<env>]`). The job is recorded here, without a queue message or a
//! lease; the server's forwarder uploads its dataset there, submits it, follows it
//! and brings the result back ([`succeeded`]). The reconciler leaves such jobs alone
//! (`peer IS NOT NULL`). Every step is a compare-and-set on the job's state, so a
//! restarted forwarder continues where the last one stopped, and a cancellation wins
//! over a late result.

use super::{ResultMeta, Row, StoredJob};
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::Result;

/// Records a job to run in environment `peer`.
pub async fn insert(db: &Db, new: &super::NewJob<'_>, peer: &str) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (id, owner_id, dataset_id, analysis_json, status, held, created_at, \
         enqueued_at, required_release, rerun_of, peer) \
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5, $6, $7, $8)",
    )
    .bind(new.id)
    .bind(new.owner_id)
    .bind(new.dataset_id)
    .bind(new.analysis_json)
    .bind(now)
    .bind(new.required_release)
    .bind(new.rerun_of)
    .bind(peer)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// How many of `owner_id`'s jobs run in other environments now.
pub async fn open_of(db: &Db, owner_id: &str) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE peer IS NOT NULL AND owner_id = $1 \
         AND status IN ('queued', 'running')",
    )
    .bind(owner_id)
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The jobs the forwarder has work on, oldest first: not finished, or finished with a
/// copy of their dataset still in the other environment.
pub async fn open(db: &Db, limit: i64) -> Result<Vec<StoredJob>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {} FROM jobs WHERE peer IS NOT NULL \
         AND (status IN ('queued', 'running') OR peer_dataset_id IS NOT NULL) \
         ORDER BY created_at, id LIMIT $1",
        columns!()
    ))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(Row::into_stored).collect()
}

async fn set(db: &Db, sql: &str, id: &str, value: Option<&str>) -> Result<bool> {
    let done = sqlx::query(sql)
        .bind(value)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the copy of the dataset uploaded for a queued job; `false` when it is no
/// longer waiting for one (cancelled meanwhile: delete the copy).
pub async fn uploaded(db: &Db, id: &str, dataset_id: &str) -> Result<bool> {
    set(
        db,
        "UPDATE jobs SET peer_dataset_id = $1 WHERE id = $2 AND status = 'queued' \
         AND peer_dataset_id IS NULL AND cancel_requested = 0",
        id,
        Some(dataset_id),
    )
    .await
}

/// Records the job the other environment runs it as; `false` when it is no longer
/// waiting for one.
pub async fn submitted(db: &Db, id: &str, peer_job_id: &str) -> Result<bool> {
    set(
        db,
        "UPDATE jobs SET peer_job_id = $1 WHERE id = $2 AND status = 'queued' \
         AND peer_job_id IS NULL AND cancel_requested = 0",
        id,
        Some(peer_job_id),
    )
    .await
}

/// Forgets the copy of the dataset, once it is deleted there.
pub async fn upload_gone(db: &Db, id: &str) -> Result<()> {
    set(
        db,
        "UPDATE jobs SET peer_dataset_id = $1 WHERE id = $2",
        id,
        None,
    )
    .await
    .map(drop)
}

/// Mirrors the other environment's progress: running there, `progress` done.
pub async fn running(db: &Db, id: &str, progress: f64) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET status = 'running', progress = $1, started_at = COALESCE(started_at, $2) \
         WHERE id = $3 AND status IN ('queued', 'running') AND cancel_requested = 0",
    )
    .bind(progress.clamp(0.0, 1.0))
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Ends a job without a result: `failed` (with why) or `cancelled`; `false` when it
/// had ended already.
pub async fn ended(db: &Db, id: &str, status: &str, error: Option<&str>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = $1, error = $2, finished_at = $3, \
         started_at = COALESCE(started_at, $3) \
         WHERE id = $4 AND peer IS NOT NULL AND status IN ('queued', 'running')",
    )
    .bind(status)
    .bind(error)
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the result brought back, and where it came from, in one transaction;
/// `false` (nothing changed) when the job ended meanwhile or was cancelled: the
/// caller removes the result's file.
pub async fn succeeded(
    db: &Db,
    id: &str,
    result: &ResultMeta,
    provenance_json: &str,
) -> Result<bool> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', progress = 1, error = NULL, finished_at = $1, \
         started_at = COALESCE(started_at, $1), provenance_json = $2 \
         WHERE id = $3 AND peer IS NOT NULL AND status IN ('queued', 'running') \
         AND cancel_requested = 0",
    )
    .bind(now)
    .bind(provenance_json)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 || !super::insert_result(&mut tx, id, result, now).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
