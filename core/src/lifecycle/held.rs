//! Holding jobs back while their owner is at `analyses.max_running_per_user`.
//!
//! A job is *released* once it is sent to the queue; released jobs that are queued
//! or running are the owner's *active* jobs. A job submitted while its owner has
//! `max_running_per_user` active jobs (or older held ones, which go first) is
//! recorded *held*: `jobs.held` stores the limit it waits under, and nothing is sent.
//! Re-delivering a message until a slot frees would count every receive toward the
//! queue's dead-letter limit (SQS `maxReceiveCount`) and would look like queue depth
//! to the orchestrator; a held job does neither.
//!
//! Held jobs are released oldest first, up to the limit, whenever one of the owner's
//! jobs finishes ([`release_after`]) and on every reconciliation ([`sweep_held`],
//! which also covers cancellations and crashes). Each release takes the owner's lock
//! (the write lock on SQLite, the owner's `users` row on Postgres), so two releases
//! never exceed the limit together.
//!
//! Releasing a job and sending its message are one transaction on the embedded
//! queue. On SQS the message is sent after the commit and `enqueued_at` recorded; a
//! crash in between leaves a released job without a message, which the reconciler
//! sends (see [`super::reconcile`]).

use crate::clock::now_ms;
use crate::db::{Db, Dialect};
use crate::error::Result;
use crate::jobs::{self, NewJob};
use crate::queue::{JobMessage, JobQueue, Tx};

/// Serialises the owner's submits and releases.
async fn lock_owner(db: &Db, tx: &mut Tx, owner_id: &str) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(owner_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn active_in(tx: &mut Tx, owner_id: &str) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND held = 0 \
         AND status IN ('queued', 'running')",
    )
    .bind(owner_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The owner's active jobs: released to the queue and not finished.
pub async fn active_count(db: &Db, owner_id: &str) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND held = 0 \
         AND status IN ('queued', 'running')",
    )
    .bind(owner_id)
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Records a new job and sends it to the queue, or holds it when its owner already
/// has `max_running` active jobs or older held ones. Returns whether it was held.
/// If SQS refuses the message after the job was recorded, the job stays queued and
/// the reconciler sends it: the submit is never lost.
pub(super) async fn submit(
    db: &Db,
    queue: &dyn JobQueue,
    new: &NewJob<'_>,
    max_running: u32,
) -> Result<bool> {
    let max_running = max_running.max(1);
    let mut tx = db.begin_write().await?;
    lock_owner(db, &mut tx, new.owner_id).await?;
    let active = active_in(&mut tx, new.owner_id).await?;
    let (older_held,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND held > 0 AND status = 'queued'",
    )
    .bind(new.owner_id)
    .fetch_one(&mut *tx)
    .await?;
    let hold = active >= u64::from(max_running) || older_held > 0;
    sqlx::query(
        "INSERT INTO jobs (id, owner_id, dataset_id, analysis_json, status, held, created_at, \
         required_release, rerun_of) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8)",
    )
    .bind(new.id)
    .bind(new.owner_id)
    .bind(new.dataset_id)
    .bind(new.analysis_json)
    .bind(if hold { i64::from(max_running) } else { 0 })
    .bind(now_ms())
    .bind(new.required_release)
    .bind(new.rerun_of)
    .execute(&mut *tx)
    .await?;
    if !hold {
        enqueue(db, queue, tx, new.id).await?;
        return Ok(false);
    }
    tx.commit().await?;
    if active < u64::from(max_running) {
        // Room, but older held jobs go first: release in order, this one maybe too.
        if let Err(e) = release_held(db, queue, new.owner_id).await {
            tracing::warn!(job_id = new.id, error = %e, "releasing held jobs failed; the orchestrator retries");
        }
    }
    let still_held = jobs::find(db, new.id)
        .await?
        .is_some_and(|j| j.held.is_some());
    Ok(still_held)
}

/// Sends a released job's message: within `tx` on the embedded queue, else after
/// committing it. A send that fails leaves `enqueued_at` unset for the reconciler.
async fn enqueue(db: &Db, queue: &dyn JobQueue, mut tx: Tx, id: &str) -> Result<()> {
    let body = JobMessage::body(id);
    let mark = "UPDATE jobs SET enqueued_at = $1 WHERE id = $2";
    if queue.send_in(&mut tx, &body).await? {
        sqlx::query(mark)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(());
    }
    tx.commit().await?;
    match queue.send(&body).await {
        Ok(_) => {
            sqlx::query(mark)
                .bind(now_ms())
                .bind(id)
                .execute(db.pool())
                .await?;
        }
        Err(e) => {
            tracing::warn!(job_id = id, error = %e, "the queue refused a job's message; the reconciler sends it");
        }
    }
    Ok(())
}

/// Releases the owner's held jobs, oldest first, while they have fewer active jobs
/// than the limit each held job waits under. Returns how many were sent.
pub(super) async fn release_held(db: &Db, queue: &dyn JobQueue, owner_id: &str) -> Result<u32> {
    let mut released = 0;
    loop {
        let mut tx = db.begin_write().await?;
        lock_owner(db, &mut tx, owner_id).await?;
        let next: Option<(String, i64)> = sqlx::query_as(
            "SELECT id, held FROM jobs WHERE owner_id = $1 AND held > 0 AND status = 'queued' \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(owner_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, limit)) = next else {
            tx.commit().await?;
            return Ok(released);
        };
        let active = active_in(&mut tx, owner_id).await?;
        if active >= u64::try_from(limit).unwrap_or(0) {
            tx.commit().await?;
            return Ok(released);
        }
        sqlx::query("UPDATE jobs SET held = 0 WHERE id = $1 AND held > 0")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        enqueue(db, queue, tx, &id).await?;
        tracing::info!(job_id = %id, owner_id, "held job released to the queue");
        released += 1;
    }
}

/// After one of its owner's jobs finished (or was found finished): releases what
/// the freed slot allows.
pub(super) async fn release_after(db: &Db, queue: &dyn JobQueue, job_id: &str) -> Result<u32> {
    // Most owners hold nothing back: one read, and no write lock, tells.
    let held: Option<(String,)> = sqlx::query_as(
        "SELECT o.owner_id FROM jobs j JOIN jobs o ON o.owner_id = j.owner_id \
         WHERE j.id = $1 AND o.held > 0 AND o.status = 'queued' LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(db.pool())
    .await?;
    match held {
        Some((owner,)) => release_held(db, queue, &owner).await,
        None => Ok(0),
    }
}

/// Releases held jobs of every owner who is under their limit (the orchestrator's
/// tick: covers cancellations and workers that died between finishing and
/// releasing). Returns how many were sent.
pub(super) async fn sweep_held(db: &Db, queue: &dyn JobQueue) -> Result<u32> {
    let owners: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT owner_id FROM jobs WHERE held > 0 AND status = 'queued' LIMIT 1000",
    )
    .fetch_all(db.pool())
    .await?;
    let mut released = 0;
    for (owner,) in owners {
        released += release_held(db, queue, &owner).await?;
    }
    Ok(released)
}

#[cfg(test)]
mod tests;
