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
use crate::db::statements::{Param, Step};
use crate::db::{Db, Dialect};
use crate::error::Result;
use crate::jobs::{self, NewJob, next_change};
use crate::queue::{JobMessage, JobQueue, Tx};

/// Takes the owner's lock on Postgres (SQLite's write lock is everyone's).
const LOCK_OWNER: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";

/// Serialises the owner's submits and releases.
async fn lock_owner(db: &Db, tx: &mut Tx, owner_id: &str) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        sqlx::query(LOCK_OWNER)
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
    now: i64,
) -> Result<bool> {
    let max_running = i64::from(max_running.max(1));
    let body = JobMessage::body(new.id);
    // One transaction, run in one go on SQLite (see `crate::db::statements`): the
    // owner's lock, the job (held when the owner is at the limit or has older held
    // jobs, decided by the insert itself: the count stops at the limit, so a long
    // backlog is not counted on every submit), and, if it is released and the queue
    // is in the database, its message. The insert records when that message was sent
    // and takes the job's change number itself: the row is written once.
    let send = queue.send_step(&body);
    let sent_within = send.is_some();
    let mut steps = Vec::with_capacity(3);
    if db.dialect() == Dialect::Postgres {
        steps.push(Step::new(LOCK_OWNER, vec![Param::Text(new.owner_id)]));
    }
    let insert = steps.len();
    steps.push(
        Step::new(
            insert_sql(db.dialect(), sent_within),
            vec![
                Param::Text(new.id),
                Param::Text(new.owner_id),
                Param::Text(new.dataset_id),
                Param::Text(new.analysis_json),
                Param::Int(max_running),
                Param::Int(now),
                Param::from(new.required_release),
                Param::from(new.rerun_of),
            ],
        )
        .returning(),
    );
    // Sent only if the insert did not hold the job.
    steps.extend(send.map(|send| send.if_returned(insert, 0)));
    let done = db
        .statements()?
        .transaction(&steps)
        .await?
        .ok_or_else(|| anyhow::anyhow!("recording a job: no step must change a row"))?;
    let held = done.get(insert).and_then(|d| d.value).unwrap_or(0) > 0;
    if !held {
        if !sent_within {
            send_after_commit(db, queue, new.id, &body).await?;
        }
        return Ok(false);
    }
    // Older held jobs go first, and there may be room: release in order, this one
    // maybe too.
    if let Err(e) = release_held(db, queue, new.owner_id).await {
        tracing::warn!(job_id = new.id, error = %e, "releasing held jobs failed; the orchestrator retries");
    }
    let still_held = jobs::find(db, new.id)
        .await?
        .is_some_and(|j| j.held.is_some());
    Ok(still_held)
}

/// The insert of a submitted job, answering the limit it is held under (0: released).
/// With `sent_within` (the message is sent in the same transaction) a released job
/// records the submit as the time it was sent. On SQLite the row takes the next change
/// number ([`crate::watch`]) here, not in a second write by the insert trigger.
fn insert_sql(dialect: Dialect, sent_within: bool) -> &'static str {
    macro_rules! insert {
        ($enqueued:expr, $changed:expr) => {
            concat!(
                "INSERT INTO jobs (id, owner_id, dataset_id, analysis_json, status, held, \
                 created_at, required_release, rerun_of, enqueued_at, changed_seq) \
                 SELECT $1, $2, $3, $4, 'queued', h.held, $6, $7, $8, ",
                $enqueued,
                ", ",
                $changed,
                " FROM (SELECT CASE \
                   WHEN (SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE owner_id = $2 \
                         AND held = 0 AND status IN ('queued', 'running') LIMIT $5) a) >= $5 \
                     OR EXISTS (SELECT 1 FROM jobs WHERE owner_id = $2 AND held > 0 \
                                AND status = 'queued') \
                   THEN $5 ELSE 0 END AS held) h \
                 RETURNING held"
            )
        };
    }
    match (dialect, sent_within) {
        (Dialect::Sqlite, true) => insert!("CASE WHEN h.held = 0 THEN $6 END", next_change!()),
        (Dialect::Sqlite, false) => insert!("NULL", next_change!()),
        (Dialect::Postgres, true) => insert!("CASE WHEN h.held = 0 THEN $6 END", "0"),
        (Dialect::Postgres, false) => insert!("NULL", "0"),
    }
}

/// Sends a released job's message: within `tx` on the embedded queue, else after
/// committing it. A send that fails leaves `enqueued_at` unset for the reconciler.
async fn enqueue(db: &Db, queue: &dyn JobQueue, mut tx: Tx, id: &str) -> Result<()> {
    let body = JobMessage::body(id);
    if queue.send_in(&mut tx, &body).await? {
        sqlx::query(MARK_SENT)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(());
    }
    tx.commit().await?;
    send_after_commit(db, queue, id, &body).await
}

/// When a job's message was sent.
const MARK_SENT: &str = "UPDATE jobs SET enqueued_at = $1 WHERE id = $2";

/// Sends a released job's message to a queue outside the database, after its
/// transaction committed. A send that fails leaves `enqueued_at` unset for the
/// reconciler.
async fn send_after_commit(db: &Db, queue: &dyn JobQueue, id: &str, body: &str) -> Result<()> {
    match queue.send(body).await {
        Ok(_) => {
            sqlx::query(MARK_SENT)
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
    let held: Option<(String,)> = db
        .statements()?
        .fetch_optional(
            false,
            "SELECT o.owner_id FROM jobs j JOIN jobs o ON o.owner_id = j.owner_id \
             WHERE j.id = $1 AND o.held > 0 AND o.status = 'queued' LIMIT 1",
            &[Param::Text(job_id)],
        )
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
