//! The job lifecycle: the one place that changes a job's state and talks to the queue
//! about it. The REST handlers, the web app's server functions, the worker loop and
//! the orchestrator all call it; none of them pairs a state change with a queue call.
//!
//! * [`Lifecycle::submit`] records a job and its message together (in one transaction
//!   on the embedded queue; on SQS the message follows the commit, and the reconciler
//!   re-sends a released job whose message never went out);
//! * [`Lifecycle::begin`] turns a delivery into a [`Lease`]: the job is `running`
//!   under that delivery's receipt, attempt `attempts + 1`;
//! * every later change ([`heartbeat`](Lifecycle::heartbeat),
//!   [`progress`](Lifecycle::progress), [`commit`](Lifecycle::commit),
//!   [`fail`](Lifecycle::fail), [`hand_back`](Lifecycle::hand_back),
//!   [`cancelled`](Lifecycle::cancelled)) names the lease, and the store refuses it
//!   with [`Fenced`] once the lease has passed to another delivery: a worker that was
//!   stopped past its lease can neither commit, requeue nor fail the job another
//!   worker now runs;
//! * the job row's attempt count is the authority: a hand-back (SIGTERM, shutdown)
//!   gives the attempt back, and the queue's own dead-letter limit is only a backstop
//!   above `max_attempts` ([`crate::queue::backstop_receives`]);
//! * [`Lifecycle::reconcile`] (every orchestrator tick) makes sure nothing is stuck:
//!   a job is `running` only while a worker renews its lease, every released job has
//!   a message, and every dead letter is accounted for.
//!
//! Errors from the database or the queue are returned as they are: the worker
//! retries them within its lease (see the worker loop), and only [`Fenced`] means the
//! job is no longer the caller's.

mod held;
mod reconcile;

pub use held::active_count;
pub use reconcile::Reconciled;

use crate::auth::Principal;
use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::db::statements::{Param, Step};
use crate::error::{Error, Result};
use crate::jobs::{self, ResultMeta, StoredJob};
use crate::queue::{AfterThen, Delivery, JobMessage, JobQueue};
use anyhow::Context as _;
use quarry_domain::{FailureKind, Provenance};
use std::sync::Arc;
use std::time::Duration;

/// How far a lease's recorded end may run ahead of the queue's own lease on the same
/// delivery (the two are renewed one after the other, and SQS counts whole seconds).
/// A delivery of a job whose lease ends later than this is a duplicate message.
pub const LEASE_SKEW: Duration = Duration::from_secs(2);

/// How long a delivery of a job that must run on another release stays hidden from
/// this worker's kind before it is offered again.
pub const OTHER_RELEASE_DEFER: Duration = Duration::from_secs(2);

/// The error a worker gets when its lease has passed to another delivery (or the job
/// finished meanwhile): it must stop and take no further action on the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced;

/// What a delivery turned into.
#[derive(Debug)]
pub enum Begin {
    /// Run the job under this lease.
    Run(Box<Lease>, Box<StoredJob>),
    /// Nothing to run: the delivery was acknowledged, dead-lettered or deferred, and
    /// the reason logged.
    Skipped,
    /// The worker's release was superseded by this one: the delivery was given back
    /// at once, and the worker must take no more work.
    Superseded(String),
}

/// What [`Lifecycle::receive`] got.
#[derive(Debug)]
pub enum Received {
    /// The job started with the lease: run it.
    Started(Box<Lease>, Box<StoredJob>),
    /// A delivery to [begin](Lifecycle::begin).
    Delivered(Delivery),
}

/// A delivery as a worker receives it: its job started with the lease (`started`:
/// the row and the lease's end), or the delivery alone for [`Lifecycle::begin`].
fn received(d: Delivery, started: Option<(jobs::Started, i64)>) -> Result<Received> {
    let Some((started, until_ms)) = started else {
        return Ok(Received::Delivered(d));
    };
    let job = started.into_stored()?;
    let lease = Lease {
        job_id: job.view.id.clone(),
        attempt: job.view.attempts,
        until_ms,
        delivery: d,
    };
    Ok(Received::Started(Box::new(lease), Box::new(job)))
}

/// A worker's hold on one job: the delivery that runs it and its attempt number.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: String,
    /// 1 for the first counted attempt.
    pub attempt: u32,
    /// When the lease ends unless renewed (milliseconds since the epoch).
    pub until_ms: i64,
    pub delivery: Delivery,
}

impl Lease {
    pub fn receipt(&self) -> &str {
        &self.delivery.receipt
    }

    /// Whether the lease has run out by now: nothing can be saved after that.
    pub fn expired(&self) -> bool {
        now_ms() >= self.until_ms
    }
}

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Tried again while attempts remain; the last one dead-letters the job.
    IfAttemptsLeft,
    /// Failed for good now, not dead-lettered (every attempt would fail the same way).
    Never,
}

/// The lifecycle service over the database and the queue.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    db: Db,
    queue: Arc<dyn JobQueue>,
    max_attempts: u32,
    max_running_per_user: u32,
    /// Where the reconciler's walk of the dead letters got to.
    dead_cursor: Arc<tokio::sync::Mutex<Option<String>>>,
}

type Fence<T> = std::result::Result<T, Fenced>;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Lifecycle {
    pub fn new(
        db: Db,
        queue: Arc<dyn JobQueue>,
        max_attempts: u32,
        max_running_per_user: u32,
    ) -> Self {
        Self {
            db,
            queue,
            max_attempts: max_attempts.max(1),
            max_running_per_user: max_running_per_user.max(1),
            dead_cursor: Arc::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn queue(&self) -> &dyn JobQueue {
        self.queue.as_ref()
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Records a new job and enqueues it, or holds it while its owner is at
    /// `analyses.max_running_per_user`. Returns whether it was held.
    pub async fn submit(&self, new: &jobs::NewJob<'_>) -> Result<bool> {
        self.submit_at(new, now_ms()).await
    }

    /// [`Lifecycle::submit`], recording `created_at_ms` as the job's creation time:
    /// the caller can then answer with the job as recorded, without reading it back
    /// (by then a worker may have started it).
    pub async fn submit_at(&self, new: &jobs::NewJob<'_>, created_at_ms: i64) -> Result<bool> {
        held::submit(
            &self.db,
            self.queue(),
            new,
            self.max_running_per_user,
            created_at_ms,
        )
        .await
    }

    /// Asks for cancellation: a queued job is cancelled at once (and its owner's next
    /// held job released), a running one is flagged and stopped by its worker.
    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<StoredJob> {
        let job = jobs::request_cancel(&self.db, who, id).await?;
        if job.view.status.is_terminal() {
            self.release_after(id).await;
        }
        Ok(job)
    }

    /// Waits up to `wait` for a delivery. On the embedded queue the lease also
    /// starts its job when that is the common case (queued, attempts left, not being
    /// cancelled): one transaction, not two. Anything else comes back as the delivery
    /// alone, for [`Lifecycle::begin`].
    pub async fn receive(&self, wait: Duration, worker_id: &str) -> Result<Option<Received>> {
        let Some(q) = self.queue.as_db_queue() else {
            return Ok(self.queue.receive(wait).await?.map(Received::Delivered));
        };
        let start = self.starter(worker_id);
        q.receive_then(wait, &start)
            .await?
            .map(|(d, started)| received(d, started))
            .transpose()
    }

    /// What starts a job in its lease's transaction: the common case (queued, attempts
    /// left, not being cancelled, a worker of the current release); the started row
    /// and the lease's end.
    fn starter<'a>(
        &self,
        worker_id: &'a str,
    ) -> impl Fn(&rusqlite::Connection, &Delivery) -> rusqlite::Result<Option<(jobs::Started, i64)>>
    + Send
    + Sync
    + 'a {
        let visibility = ms(self.queue.visibility_timeout());
        let max_attempts = self.max_attempts;
        move |c, d| {
            let Ok(message) = JobMessage::parse(&d.body) else {
                // `begin` dead-letters it.
                return Ok(None);
            };
            let now = now_ms();
            let until = now + visibility;
            let started = jobs::start_on(
                c,
                &message.job_id,
                &d.receipt,
                worker_id,
                (now, until),
                max_attempts,
            )?;
            Ok(started.map(|job| (job, until)))
        }
    }

    /// Turns a delivery into a lease on its job, or acknowledges, dead-letters or
    /// defers it when there is nothing to run.
    pub async fn begin(&self, d: Delivery, worker_id: &str) -> Result<Begin> {
        let message = match JobMessage::parse(&d.body) {
            Ok(m) => m,
            Err(reason) => {
                tracing::error!(message_id = %d.message_id, %reason, "unusable queue message: dead-lettered");
                self.queue.dead_letter(&d).await?;
                return Ok(Begin::Skipped);
            }
        };
        let id = message.job_id;
        let now = now_ms();
        let until = now + ms(self.queue.visibility_timeout());
        let lease_of = |job: &jobs::StoredJob, d: Delivery, job_id: String| Lease {
            job_id,
            attempt: job.view.attempts,
            until_ms: until,
            delivery: d,
        };
        // The common case in one statement: a queued job with attempts left.
        let only = jobs::StartIf::Queued {
            max_attempts: self.max_attempts,
        };
        if let Some(job) =
            jobs::start(&self.db, &id, &d.receipt, worker_id, (now, until), only).await?
        {
            let lease = lease_of(&job, d, id);
            return Ok(Begin::Run(Box::new(lease), Box::new(job)));
        }
        if let Some(current) = crate::fleet::worker_superseded(&self.db, worker_id).await? {
            tracing::info!(job_id = %id, %worker_id, %current, "this worker's release was superseded: the delivery goes back");
            self.queue
                .change_visibility(&d.receipt, Duration::ZERO)
                .await
                .ok();
            return Ok(Begin::Superseded(current));
        }
        let Some(job) = jobs::find(&self.db, &id).await? else {
            tracing::info!(job_id = %id, "a message for a job that no longer exists: deleted");
            self.queue.delete(&d.receipt).await?;
            return Ok(Begin::Skipped);
        };
        if job.view.status.is_terminal() {
            tracing::info!(job_id = %id, status = %job.view.status, "a delivery of a finished job: deleted");
            self.queue.delete(&d.receipt).await?;
            self.release_after(&id).await;
            return Ok(Begin::Skipped);
        }
        if let Some(required) = job.view.required_release.as_deref()
            && crate::fleet::worker_release(&self.db, worker_id)
                .await?
                .as_deref()
                != Some(required)
        {
            // A check pinned to another release (a promotion gate's): that release's
            // workers take it. Looked at again shortly, not counted as an attempt.
            tracing::debug!(job_id = %id, %worker_id, required, "a job for another release: deferred");
            self.queue
                .change_visibility(&d.receipt, OTHER_RELEASE_DEFER)
                .await
                .ok();
            return Ok(Begin::Skipped);
        }
        if let Some(until) = job.live_lease_until(now) {
            // A duplicate message while another worker holds the job: look again once
            // that lease would have ended.
            let wait = Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
                + Duration::from_secs(1);
            tracing::info!(job_id = %id, ?wait, "a duplicate delivery of a running job: deferred");
            self.queue.change_visibility(&d.receipt, wait).await.ok();
            return Ok(Begin::Skipped);
        }
        if job.cancel_requested {
            self.set_terminal(&id, "cancelled", None, false).await?;
            self.queue.delete(&d.receipt).await?;
            self.release_after(&id).await;
            return Ok(Begin::Skipped);
        }
        if job.view.attempts >= self.max_attempts {
            // Every counted attempt ended with its worker: killed, crashed, out of memory.
            let error = gave_up(job.view.attempts);
            tracing::warn!(job_id = %id, attempts = job.view.attempts, "every attempt's worker died: dead-lettered");
            self.set_terminal(&id, "failed", Some(&error), true).await?;
            self.queue.dead_letter(&d).await?;
            self.release_after(&id).await;
            return Ok(Begin::Skipped);
        }
        let only = jobs::StartIf::Unchanged {
            attempts: job.view.attempts,
        };
        let Some(job) =
            jobs::start(&self.db, &id, &d.receipt, worker_id, (now, until), only).await?
        else {
            // Another delivery of it started first: look at it again shortly.
            self.queue
                .change_visibility(&d.receipt, Duration::from_secs(1))
                .await
                .ok();
            return Ok(Begin::Skipped);
        };
        let lease = lease_of(&job, d, id);
        Ok(Begin::Run(Box::new(lease), Box::new(job)))
    }

    /// Renews the lease (in the job row and in the queue) for another visibility
    /// timeout.
    pub async fn heartbeat(&self, lease: &mut Lease) -> Result<Fence<()>> {
        let until = now_ms() + ms(self.queue.visibility_timeout());
        let kept = self
            .db
            .statements()?
            .execute(
                "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease = $3 AND status = 'running'",
                &[
                    Param::Int(until),
                    Param::Text(&lease.job_id),
                    Param::Text(lease.receipt()),
                ],
            )
            .await?;
        if kept == 0 {
            return Ok(Err(Fenced));
        }
        match self
            .queue
            .change_visibility(lease.receipt(), self.queue.visibility_timeout())
            .await
        {
            Ok(()) => {
                lease.until_ms = until;
                Ok(Ok(()))
            }
            Err(Error::Conflict(_)) => Ok(Err(Fenced)),
            Err(e) => Err(e),
        }
    }

    /// Records progress (0..1).
    pub async fn progress(&self, lease: &Lease, progress: f64) -> Result<Fence<()>> {
        let done = self
            .db
            .statements()?
            .execute(
                "UPDATE jobs SET progress = $1 WHERE id = $2 AND lease = $3 AND status = 'running'",
                &[
                    Param::Real(progress.clamp(0.0, 1.0)),
                    Param::Text(&lease.job_id),
                    Param::Text(lease.receipt()),
                ],
            )
            .await?;
        Ok(fenced_unless(done == 1))
    }

    /// Whether the job's cancellation was asked for.
    pub async fn cancel_requested(&self, lease: &Lease) -> Result<Fence<bool>> {
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT cancel_requested, lease FROM jobs WHERE id = $1")
                .bind(&lease.job_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(match row {
            Some((flag, Some(holder))) if holder == lease.receipt() => Ok(flag != 0),
            _ => Err(Fenced),
        })
    }

    /// Commits the attempt's result and where it came from: the job succeeds and the
    /// message is deleted. Refused once the lease has passed on; the caller then
    /// removes its result blob.
    pub async fn commit(
        &self,
        lease: &Lease,
        result: &ResultMeta,
        provenance: &Provenance,
    ) -> Result<Fence<()>> {
        Ok(self
            .commit_then_receive(lease, result, provenance, None)
            .await?
            .map(|_| ()))
    }

    /// [`Lifecycle::commit`], and then, for the worker `next_for`, the next delivery
    /// where the queue is in the process's own SQLite connection: leased (and its job
    /// started, as [`Lifecycle::receive`] does) in the commit's own transaction, so a
    /// busy worker writes once per job. `None` when nothing was visible, or the queue
    /// is elsewhere (the worker receives as usual).
    pub async fn commit_then_receive(
        &self,
        lease: &Lease,
        result: &ResultMeta,
        provenance: &Provenance,
        next_for: Option<&str>,
    ) -> Result<Fence<Option<Received>>> {
        let now = now_ms();
        let provenance = serde_json::to_string(&Provenance {
            computed_at: rfc3339(now),
            ..provenance.clone()
        })
        .context("provenance")?;
        let succeed = format!(
            "UPDATE jobs SET status = 'succeeded', progress = 1, error = NULL, finished_at = $1, \
             lease = NULL, lease_until = NULL, provenance_json = $4{} \
             WHERE id = $2 AND lease = $3 AND status = 'running' AND cancel_requested = 0",
            jobs::changes(self.db.dialect())
        );
        let updated = Step::new(
            &succeed,
            vec![
                Param::Int(now),
                Param::Text(&lease.job_id),
                Param::Text(lease.receipt()),
                Param::Owned(provenance),
            ],
        )
        .must_change();
        let mut steps = vec![
            updated,
            jobs::result_step(&lease.job_id, result, now)?.must_change(),
        ];
        // The message goes with the outcome where the queue is in the database.
        let delete = self.queue.delete_step(lease.receipt());
        let deleted = delete.is_some();
        steps.extend(delete);
        let mut next = None;
        let fused = match (next_for, self.queue.as_db_queue()) {
            (Some(worker_id), Some(q)) if deleted => {
                let start = self.starter(worker_id);
                q.after_then_receive(&steps, &start).await?
            }
            _ => AfterThen::Pool,
        };
        match fused {
            AfterThen::Fenced => return Ok(Err(Fenced)),
            AfterThen::Done(leased) => {
                next = leased
                    .map(|(d, started)| received(d, started))
                    .transpose()?;
            }
            AfterThen::Pool => {
                if self.db.statements()?.transaction(&steps).await?.is_none() {
                    return Ok(Err(Fenced));
                }
                if !deleted {
                    self.settle(lease, Settle::Delete).await;
                }
            }
        }
        self.release_after(&lease.job_id).await;
        Ok(Ok(next))
    }

    /// Records a failed attempt. While attempts remain (and `retry` allows) the job
    /// goes back to `queued` and its message is delivered again soon; otherwise it is
    /// failed for good.
    pub async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        kind: FailureKind,
        retry: Retry,
    ) -> Result<Fence<bool>> {
        let last = retry == Retry::Never || lease.attempt >= self.max_attempts;
        let (set, next) = match (last, retry) {
            (true, Retry::IfAttemptsLeft) => {
                ("status = 'failed', dead_letter = 1", Settle::DeadLetter)
            }
            (true, Retry::Never) => ("status = 'failed', dead_letter = 0", Settle::Delete),
            (false, _) => ("status = 'queued', progress = 0", Settle::RetrySoon),
        };
        // The kind is one of the enum's fixed words, never input.
        let set = format!("{set}, failure_kind = '{}'", kind.as_str());
        if !self.end_lease(lease, &set, Some(error), last).await? {
            return Ok(Err(Fenced));
        }
        self.settle(lease, next).await;
        if last {
            self.release_after(&lease.job_id).await;
        }
        Ok(Ok(last))
    }

    /// Gives the job back for another worker (this one is shutting down). The attempt
    /// does not count.
    pub async fn hand_back(&self, lease: &Lease) -> Result<Fence<()>> {
        let set = "status = 'queued', progress = 0, \
                   attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END";
        if !self.end_lease(lease, set, None, false).await? {
            return Ok(Err(Fenced));
        }
        self.settle(lease, Settle::HandBack).await;
        Ok(Ok(()))
    }

    /// Records that the worker stopped the job because its cancellation was asked for.
    pub async fn cancelled(&self, lease: &Lease) -> Result<Fence<()>> {
        if !self
            .end_lease(lease, "status = 'cancelled'", None, true)
            .await?
        {
            return Ok(Err(Fenced));
        }
        self.settle(lease, Settle::Delete).await;
        self.release_after(&lease.job_id).await;
        Ok(Ok(()))
    }

    /// Ends the lease with the change `set` (and `error`, and the finish time when
    /// `finished`), if the lease still holds the job; whether it did.
    async fn end_lease(
        &self,
        lease: &Lease,
        set: &str,
        error: Option<&str>,
        finished: bool,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET {set}, error = COALESCE($1, error), \
             finished_at = CASE WHEN $2 = 1 THEN $3 ELSE finished_at END, \
             lease = NULL, lease_until = NULL \
             WHERE id = $4 AND lease = $5 AND status = 'running'"
        );
        let done = self
            .db
            .statements()?
            .execute(
                &sql,
                &[
                    Param::from(error),
                    Param::Int(i64::from(finished)),
                    Param::Int(now_ms()),
                    Param::Text(&lease.job_id),
                    Param::Text(lease.receipt()),
                ],
            )
            .await?;
        Ok(done == 1)
    }

    /// Ends a job that no lease holds (`status` = `failed` or `cancelled`).
    async fn set_terminal(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        dead_letter: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = $1, error = COALESCE($2, error), dead_letter = $3, \
             finished_at = $4, lease = NULL, lease_until = NULL \
             WHERE id = $5 AND status IN ('queued', 'running')",
        )
        .bind(status)
        .bind(error)
        .bind(i64::from(dead_letter))
        .bind(now_ms())
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The queue side of a recorded outcome. The job row already says what happened;
    /// if the queue call fails, the message is delivered again after its lease and
    /// [`Lifecycle::begin`] acknowledges it then, so a failure here is only logged
    /// (after a few tries).
    async fn settle(&self, lease: &Lease, what: Settle) {
        let (q, d) = (self.queue.as_ref(), &lease.delivery);
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=4 {
            let done = match what {
                Settle::Delete => q.delete(&d.receipt).await,
                Settle::DeadLetter => q.dead_letter(d).await,
                Settle::RetrySoon => {
                    q.change_visibility(&d.receipt, Duration::from_secs(1))
                        .await
                }
                Settle::HandBack => q.hand_back(d).await,
            };
            match done {
                // A lease already lost: the queue delivers the message again anyway.
                Ok(()) | Err(Error::Conflict(_)) => return,
                Err(e) if attempt == 4 => {
                    tracing::warn!(job_id = %lease.job_id, error = %e, "the queue did not take a job's outcome; its message is handled on redelivery");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// Releases what the owner's finished job frees; a failure is only logged (the
    /// reconciler releases it on its next tick).
    async fn release_after(&self, job_id: &str) {
        if let Err(e) = held::release_after(&self.db, self.queue(), job_id).await {
            tracing::warn!(%job_id, error = %e, "could not release the owner's held jobs");
        }
    }
}

/// What happens to a delivery once its job's outcome is recorded.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Delete,
    DeadLetter,
    RetrySoon,
    HandBack,
}

fn fenced_unless(ok: bool) -> Fence<()> {
    if ok { Ok(()) } else { Err(Fenced) }
}

/// The error of a job whose every attempt ended with its worker.
fn gave_up(attempts: u32) -> String {
    format!(
        "gave up after {attempts} attempts: the worker stopped without finishing \
         (killed, crashed or out of memory)"
    )
}
