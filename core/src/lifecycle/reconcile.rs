//! Reconciliation, every orchestrator tick: nothing stays stuck.
//!
//! * A job is `running` only while a worker renews its lease. One whose lease ended
//!   (its worker was killed, or stopped past its lease) goes back to `queued`, where
//!   its message is delivered again, or is failed as a dead letter once its attempts
//!   are used up.
//! * Every released `queued` job has a message: one released without (SQS refused
//!   the send, or the process died between the commit and the send) is sent.
//! * Every dead letter is accounted for, in pages, not only the newest: a job it
//!   names that has not finished is failed once its attempts are used up, and
//!   redriven otherwise (the queue's limit is a backstop; the job row's count
//!   decides).
//! * Held jobs whose owner is under the limit are released.

use super::{LEASE_SKEW, Lifecycle, gave_up, held, ms};
use crate::clock::now_ms;
use crate::error::Result;
use crate::jobs;
use crate::queue::{DeadLetter, JobMessage};
use std::time::Duration;

/// How long a released job may wait for its message before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Rows handled per kind and tick.
const BATCH: i64 = 500;
/// Dead letters read per page, and pages per tick.
const PAGE: u32 = 100;
const PAGES: usize = 50;

/// What one reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Running jobs without a live lease, put back in the queue.
    pub requeued: u32,
    /// Jobs failed as dead letters (their attempts used up).
    pub dead_lettered: u32,
    /// Released jobs whose message was sent again.
    pub resent: u32,
    /// Dead letters put back in the queue for jobs with attempts left.
    pub redriven: u32,
    /// Held jobs released.
    pub released: u32,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Lifecycle {
    /// One pass; see the module documentation.
    pub async fn reconcile(&self) -> Result<Reconciled> {
        let mut done = Reconciled::default();
        self.expired_leases(&mut done).await?;
        self.unsent(&mut done).await?;
        self.dead_letters(&mut done).await?;
        done.released = held::sweep_held(&self.db, self.queue()).await?;
        Ok(done)
    }

    async fn expired_leases(&self, done: &mut Reconciled) -> Result<()> {
        let cut = now_ms() - ms(LEASE_SKEW);
        let stale: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT id, attempts, cancel_requested FROM jobs WHERE status = 'running' \
             AND (lease_until IS NULL OR lease_until < $1) AND peer IS NULL LIMIT $2",
        )
        .bind(cut)
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?;
        // Each change re-checks that the lease is still gone (a worker may take the
        // job meanwhile).
        let guard = "AND status = 'running' AND (lease_until IS NULL OR lease_until < $2)";
        for (id, attempts, cancel) in stale {
            let attempts = u32::try_from(attempts).unwrap_or(0);
            let (sql, error, kind) = if cancel != 0 {
                (
                    format!(
                        "UPDATE jobs SET status = 'cancelled', finished_at = $1, lease = NULL, lease_until = NULL WHERE id = $3 {guard}"
                    ),
                    None,
                    "cancelled",
                )
            } else if attempts >= self.max_attempts {
                (
                    format!(
                        "UPDATE jobs SET status = 'failed', error = $4, dead_letter = 1, finished_at = $1, lease = NULL, lease_until = NULL WHERE id = $3 {guard}"
                    ),
                    Some(gave_up(attempts)),
                    "dead-lettered",
                )
            } else {
                (
                    format!(
                        "UPDATE jobs SET status = 'queued', progress = 0, lease = NULL, lease_until = NULL, started_at = COALESCE(started_at, $1) WHERE id = $3 {guard}"
                    ),
                    None,
                    "requeued",
                )
            };
            let mut q = sqlx::query(&sql).bind(now_ms()).bind(cut).bind(&id);
            if let Some(e) = &error {
                q = q.bind(e);
            }
            if q.execute(self.db.pool()).await?.rows_affected() == 0 {
                continue;
            }
            tracing::warn!(job_id = %id, attempts, outcome = kind, "a running job's lease ran out without its worker");
            match kind {
                "requeued" => done.requeued += 1,
                "dead-lettered" => done.dead_lettered += 1,
                _ => {}
            }
            if kind != "requeued" {
                self.release_after(&id).await;
            }
        }
        Ok(())
    }

    async fn unsent(&self, done: &mut Reconciled) -> Result<()> {
        let unsent: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE status = 'queued' AND held = 0 AND enqueued_at IS NULL \
             AND peer IS NULL AND created_at < $1 LIMIT $2",
        )
        .bind(now_ms() - ms(RESEND_AFTER))
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?;
        for (id,) in unsent {
            self.queue.send(&JobMessage::body(&id)).await?;
            sqlx::query("UPDATE jobs SET enqueued_at = $1 WHERE id = $2 AND enqueued_at IS NULL")
                .bind(now_ms())
                .bind(&id)
                .execute(self.db.pool())
                .await?;
            tracing::warn!(job_id = %id, "a released job had no message: sent");
            done.resent += 1;
        }
        Ok(())
    }

    async fn dead_letters(&self, done: &mut Reconciled) -> Result<()> {
        let mut cursor = self.dead_cursor.lock().await;
        for _ in 0..PAGES {
            let page = self.queue.dead_letters(cursor.as_deref(), PAGE).await?;
            for letter in &page {
                self.dead_letter(letter, done).await?;
            }
            if let Some(last) = page.last().filter(|l| !l.cursor.is_empty()) {
                *cursor = Some(last.cursor.clone());
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter, done: &mut Reconciled) -> Result<()> {
        let Ok(message) = JobMessage::parse(&letter.body) else {
            return Ok(());
        };
        let Some(job) = jobs::find(&self.db, &message.job_id).await? else {
            return Ok(());
        };
        if job.view.status.is_terminal() || job.live_lease_until(now_ms()).is_some() {
            return Ok(());
        }
        if job.view.attempts >= self.max_attempts || job.cancel_requested {
            let (status, error) = if job.cancel_requested {
                ("cancelled", None)
            } else {
                ("failed", Some(gave_up(job.view.attempts)))
            };
            self.set_terminal(&job.view.id, status, error.as_deref(), error.is_some())
                .await?;
            tracing::warn!(job_id = %job.view.id, status, "a dead letter's job was finished");
            done.dead_lettered += 1;
            self.release_after(&job.view.id).await;
        } else {
            self.queue.redrive(letter).await?;
            tracing::warn!(job_id = %job.view.id, attempts = job.view.attempts, "a dead letter's job has attempts left: redriven");
            done.redriven += 1;
        }
        Ok(())
    }
}
