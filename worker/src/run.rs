//! The worker loop (`quarry worker`).
//!
//! Receive a job (long poll), begin it through the lifecycle (which gives this worker
//! a lease on it), run it on a separate thread while heartbeating the lease, write the
//! result through the blob store and commit it. Every state change goes through
//! [`Lifecycle`] and names the lease: once the lease has passed to another worker
//! (this one was stopped past it), a heartbeat is refused, the analysis is stopped at
//! once and nothing more is done with the job.
//!
//! The worker exits by itself once the queue has stayed empty for `idle_timeout`. On
//! SIGTERM (or when the process that launched it goes away) it takes no new job and
//! hands the running one back unless it finishes within `stop_timeout`; a hand-back
//! does not use up an attempt. A panic in an analysis fails that attempt only.
//!
//! Database and queue errors are retried with backoff for as long as the lease holds
//! (a busy SQLite, an RDS failover): a job is abandoned only when its lease is gone.
//! An attempt that runs past `analyses.max_runtime_secs` is stopped and its job
//! failed for good: every retry would run as long. A polars I/O or object-store
//! failure is the worker's trouble: it is logged with the job id, the attempt is
//! retried, and the user only ever sees a short message.

use quarry_core::blob::BlobStore;
use quarry_core::jobs::{ResultMeta, StoredJob};
use quarry_core::lifecycle::{Begin, Fenced, Lease, Lifecycle, Received, Retry};
use quarry_core::queue::Delivery;
use quarry_core::{Config, Db, fleet};
use quarry_domain::{FailureKind, Provenance};
use quarry_engine::analysis::INTERNAL_MESSAGE;
use quarry_engine::limits;
use quarry_engine::produce::{Output, Produced};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub config: Config,
    pub db: Db,
    pub lifecycle: Lifecycle,
    pub blobs: Arc<dyn BlobStore>,
    /// Cancelled when the process that launched this worker went away: the running
    /// job is handed back at once instead of after `stop_timeout`.
    pub stop_now: CancellationToken,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The queue stayed empty for `idle_timeout`.
    Idle,
    /// SIGTERM or SIGINT, or the launching process went away.
    Shutdown,
    /// An analysis thread could not be stopped in time: the process must exit.
    Abandoned,
    /// A deploy made another release current: this worker finished what it held and
    /// takes no more work.
    Superseded,
}

/// What beginning a delivery came to.
enum Begun {
    Run(Box<Lease>, Box<StoredJob>),
    /// Nothing to run: acknowledged, dead-lettered or deferred.
    Skipped,
    /// Could not begin within the delivery's lease: it is delivered again.
    Failed,
    Exit(Exit),
}

enum Outcome {
    Continue,
    /// Go on with this delivery: leased with the last job's commit.
    Next(Box<Received>),
    ExitNow(Exit),
}

/// The longest wait of one receive (SQS allows 20 s); the embedded queue polls within
/// it, and a wake-up from the parent cuts it short.
const LONG_POLL: Duration = Duration::from_secs(20);

/// How often an idle or finishing worker asks whether its release was superseded.
const RELEASE_CHECK_MS: u64 = 1000;

/// The longest pause between two tries of a failing database or queue call.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Calls `op` until it succeeds or `until` says to give up, backing off between
/// tries; each failure is logged.
async fn retrying<T, F, Fut>(
    what: &str,
    mut give_up: impl FnMut() -> bool,
    mut op: F,
) -> quarry_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = quarry_core::Result<T>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if give_up() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, ?wait, "{what} failed: retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

mod execute;
use execute::Executed;

impl Worker {
    /// Runs until idle, shut down, or an analysis had to be abandoned. The worker's
    /// row in the registry is renewed every heartbeat while it runs.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<Exit> {
        let beat = Duration::from_secs(self.config.worker.heartbeat_secs);
        let registry = tokio::spawn({
            let (db, id) = (self.db.clone(), self.id.clone());
            async move {
                loop {
                    if let Err(e) = fleet::heartbeat(&db, &id).await {
                        tracing::warn!(worker_id = %id, error = %e, "could not renew the worker's registry row");
                    }
                    tokio::time::sleep(beat).await;
                }
            }
        });
        let exit = self.serve(&shutdown).await;
        registry.abort();
        exit
    }

    /// Runs `fleet.jobs_per_worker` slots, each taking and running one job at a time,
    /// until every slot has ended; the process's exit is the most serious of theirs.
    async fn serve(&self, shutdown: &CancellationToken) -> anyhow::Result<Exit> {
        let slots = usize::try_from(self.config.fleet.jobs_per_worker.max(1)).unwrap_or(1);
        let release = self.config.worker.release();
        tracing::info!(
            worker_id = %self.id,
            %release,
            slots,
            idle_timeout_secs = self.config.worker.idle_timeout_secs,
            patient_until_ms = ?self.config.worker.patient_until_ms,
            "worker started"
        );
        // An analysis thread that would not stop ends the process: the other slots
        // then finish their jobs within stop_timeout or hand them back.
        let stop = shutdown.child_token();
        // A worker pre-scaled ahead of a surge waits for it before its idle time counts.
        let patience = self.config.worker.patient_until_ms.map_or(0, |until| {
            until.saturating_sub(quarry_core::clock::now_ms()).max(0)
        });
        let activity = Activity::new(Duration::from_millis(patience as u64));
        let exits = futures::future::join_all((0..slots).map(|_| async {
            let exit = self.slot(&stop, &activity).await;
            if exit == Exit::Abandoned {
                stop.cancel();
            }
            exit
        }))
        .await;
        let exit = most_serious(&exits);
        let (lock_waits, lock_waited) = quarry_core::db::statements::lock_waits();
        tracing::info!(worker_id = %self.id, ?exit, lock_waits, lock_waited_ms = lock_waited.as_millis() as u64, "worker stopping");
        Ok(exit)
    }

    /// One slot: takes a job, runs it, commits it, and takes the next, until the
    /// whole worker has been idle for `idle_timeout`, shut down, or superseded.
    async fn slot(&self, shutdown: &CancellationToken, activity: &Activity) -> Exit {
        let idle_timeout = Duration::from_secs(self.config.worker.idle_timeout_secs);
        let mut backoff = Duration::from_millis(100);
        let release = self.config.worker.release();
        // The next delivery when the last commit leased it in its own transaction.
        let mut next: Option<Received> = None;
        loop {
            let received = match next.take() {
                Some(leased) => Ok(Some(leased)),
                None => {
                    if shutdown.is_cancelled() {
                        return Exit::Shutdown;
                    }
                    let idle_for = activity.idle_for();
                    if idle_for >= idle_timeout {
                        return Exit::Idle;
                    }
                    // At most once a second for the whole worker, not once a job: the
                    // statement that starts a job refuses a superseded worker anyway,
                    // and this only spares it a receive.
                    if activity.release_check_due() {
                        match fleet::superseded_by(&self.db, &release).await {
                            Ok(Some(current)) => {
                                tracing::info!(worker_id = %self.id, %release, %current, "superseded by a new release: taking no more work");
                                activity.superseded.store(true, Relaxed);
                            }
                            Ok(None) => {}
                            // The start of a job checks again; a failing database shows below.
                            Err(e) => {
                                tracing::warn!(worker_id = %self.id, error = %e, "could not read the current release")
                            }
                        }
                    }
                    if activity.superseded.load(Relaxed) {
                        return Exit::Superseded;
                    }
                    // SQS's longest long poll: one request per 20 s while the queue is empty.
                    let wait = (idle_timeout - idle_for).min(LONG_POLL);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Exit::Shutdown,
                        r = self.lifecycle.receive(wait, &self.id) => r,
                    }
                }
            };
            let delivery = match received {
                // Started in the lease's own transaction (the embedded queue's common case).
                Ok(Some(Received::Started(lease, job))) => Err((*lease, *job)),
                Ok(Some(Received::Delivered(d))) => Ok(d),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(worker_id = %self.id, error = %e, ?backoff, "receiving from the queue failed: retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let (lease, job) = match delivery {
                Err(started) => started,
                Ok(delivery) => match self.begin(delivery).await {
                    Begun::Run(lease, job) => (*lease, *job),
                    Begun::Exit(exit) => {
                        // The other slots take no more work either.
                        if exit == Exit::Superseded {
                            activity.superseded.store(true, Relaxed);
                        }
                        return exit;
                    }
                    // Acknowledged, dead-lettered or deferred: the queue was not empty.
                    Begun::Skipped => {
                        activity.touch();
                        continue;
                    }
                    Begun::Failed => continue,
                },
            };
            let busy = activity.busy();
            let outcome = self.process(lease, job, shutdown).await;
            drop(busy);
            match outcome {
                Outcome::Continue => {}
                Outcome::Next(leased) => next = Some(*leased),
                Outcome::ExitNow(exit) => return exit,
            }
        }
    }

    /// Begins a delivery that did not start its job with the lease.
    async fn begin(&self, delivery: Delivery) -> Begun {
        // The delivery's own lease bounds how long beginning it may be retried.
        let lease_end = Instant::now() + self.lifecycle.queue().visibility_timeout();
        let begun = retrying(
            "beginning a job",
            || Instant::now() >= lease_end,
            || self.lifecycle.begin(delivery.clone(), &self.id),
        )
        .await;
        match begun {
            Ok(Begin::Run(lease, job)) => Begun::Run(lease, job),
            Ok(Begin::Skipped) => Begun::Skipped,
            Ok(Begin::Superseded(current)) => {
                let release = self.config.worker.release();
                tracing::info!(worker_id = %self.id, %release, %current, "superseded by a new release: the delivery went back");
                Begun::Exit(Exit::Superseded)
            }
            Err(e) => {
                tracing::error!(message_id = %delivery.message_id, error = %e, "could not begin a job within its lease: it is delivered again");
                Begun::Failed
            }
        }
    }

    /// Retries a lifecycle call while the lease holds; `Err(Fenced)` once it is gone.
    async fn keep<T, F, Fut>(&self, lease: &Lease, what: &str, op: F) -> Result<T, Fenced>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = quarry_core::Result<Result<T, Fenced>>>,
    {
        match retrying(what, || lease.expired(), op).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(job_id = %lease.job_id, error = %e, "{what} failed until the lease ran out");
                Err(Fenced)
            }
        }
    }

    async fn process(
        &self,
        mut lease: Lease,
        job: StoredJob,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let job_id = lease.job_id.clone();
        tracing::info!(%job_id, attempt = lease.attempt, "job started");
        let started = Instant::now();
        let result = match self.execute(&job, &mut lease, shutdown).await {
            Ok(executed) => executed,
            Err(e) => {
                // Reading the dataset's record or the local disk failed: an attempt of
                // its own, retried while attempts remain.
                tracing::error!(%job_id, error = format!("{e:#}"), "job could not run");
                Executed::Internal(format!("{e:#}"))
            }
        };
        let last = lease.attempt >= self.lifecycle.max_attempts();
        let done = match result {
            Executed::Done(produced, input) => {
                let provenance = Provenance {
                    release: self.config.worker.release(),
                    image: self.config.worker.image.clone(),
                    worker: self.id.clone(),
                    attempt: lease.attempt,
                    engine: quarry_engine::version(),
                    analysis: job.view.analysis.clone(),
                    dataset: *input,
                    // Stamped by the commit.
                    computed_at: String::new(),
                };
                // No next job for a worker that is shutting down.
                let next_for = (!shutdown.is_cancelled()).then_some(self.id.as_str());
                let committed = self.commit(&lease, produced, &provenance, next_for).await;
                if committed.is_ok() {
                    tracing::info!(%job_id, elapsed_ms = started.elapsed().as_millis() as u64, "job succeeded");
                }
                committed.map(|next| next.map_or(Outcome::Continue, |r| Outcome::Next(Box::new(r))))
            }
            Executed::Failed(message) => {
                self.fail(&lease, &message, FailureKind::Data, Retry::IfAttemptsLeft)
                    .await
            }
            Executed::Crashed(message) => {
                self.fail(&lease, &message, FailureKind::Crash, Retry::IfAttemptsLeft)
                    .await
            }
            Executed::Internal(detail) => {
                tracing::error!(%job_id, attempt = lease.attempt, last, error = %detail, "the analysis could not read its data or write its result");
                let message = if last {
                    format!(
                        "the worker could not read the dataset (tried {} times); ask an operator to check the worker logs",
                        lease.attempt
                    )
                } else {
                    INTERNAL_MESSAGE.to_owned()
                };
                self.fail(
                    &lease,
                    &message,
                    FailureKind::Internal,
                    Retry::IfAttemptsLeft,
                )
                .await
            }
            Executed::TimedOut { thread_done } => {
                let limit = self.config.analyses.max_runtime_secs;
                tracing::warn!(%job_id, limit_secs = limit, "analysis ran past analyses.max_runtime_secs: failed");
                self.fail(
                    &lease,
                    &runtime_exceeded_message(limit),
                    FailureKind::Timeout,
                    Retry::Never,
                )
                .await
                .map(|_| exit_unless(thread_done))
            }
            Executed::OverMemory { peak_bytes } => {
                let limit_mb = self.config.worker.memory_limit_mb;
                tracing::warn!(%job_id, limit_mb, peak_mb = peak_bytes >> 20, "analysis went over the memory limit");
                // The analysis thread may still hold the memory: give it back by exiting.
                self.fail(
                    &lease,
                    &limits::exceeded_message(limit_mb),
                    FailureKind::Memory,
                    Retry::IfAttemptsLeft,
                )
                .await
                .map(|_| Outcome::ExitNow(Exit::Abandoned))
            }
            Executed::Cancelled { thread_done } => {
                let done = self
                    .keep(&lease, "recording a cancellation", || {
                        self.lifecycle.cancelled(&lease)
                    })
                    .await;
                if done.is_ok() {
                    tracing::info!(%job_id, "job cancelled");
                }
                done.map(|()| exit_unless(thread_done))
            }
            Executed::HandedBack { thread_done } => {
                let done = self
                    .keep(&lease, "handing a job back", || {
                        self.lifecycle.hand_back(&lease)
                    })
                    .await;
                if done.is_ok() {
                    tracing::info!(%job_id, "shutting down: job handed back to the queue");
                }
                done.map(|()| {
                    if thread_done {
                        Outcome::ExitNow(Exit::Shutdown)
                    } else {
                        Outcome::ExitNow(Exit::Abandoned)
                    }
                })
            }
            Executed::Fenced { thread_done } => {
                tracing::warn!(%job_id, attempt = lease.attempt, "stopped: the lease passed to another worker, this attempt takes no action");
                return exit_unless(thread_done);
            }
        };
        done.unwrap_or_else(|Fenced| {
            tracing::warn!(%job_id, attempt = lease.attempt, "the lease passed to another worker: this attempt took no action");
            Outcome::Continue
        })
    }

    async fn fail(
        &self,
        lease: &Lease,
        message: &str,
        kind: FailureKind,
        retry: Retry,
    ) -> Result<Outcome, Fenced> {
        tracing::warn!(job_id = %lease.job_id, attempt = lease.attempt, error = %message, "job attempt failed");
        self.keep(lease, "recording a failure", || {
            self.lifecycle.fail(lease, message, kind, retry)
        })
        .await
        .map(|_| Outcome::Continue)
    }

    /// Stores and commits a result; with `next_for` (this worker's id) the commit may
    /// lease and start the next job in its own transaction, and answers it.
    async fn commit(
        &self,
        lease: &Lease,
        produced: Produced,
        provenance: &Provenance,
        next_for: Option<&str>,
    ) -> Result<Option<Received>, Fenced> {
        // One directory for all results: a directory per job was a `mkdir` per job. A
        // small result is kept in its row and never stored here, but the key names it.
        let key = format!(
            "results/{}.attempt-{}-{}.parquet",
            lease.job_id, lease.attempt, self.id
        );
        let (bytes, inline) = match produced.output {
            Output::Bytes(bytes) => (bytes.len() as u64, Some(bytes::Bytes::from(bytes))),
            Output::File(file) => (self.store(lease, &key, file).await?, None),
        };
        let meta = ResultMeta {
            blob_key: key.clone(),
            rows: produced.rows,
            bytes,
            columns: produced.columns,
            inline,
        };
        let in_store = meta.inline.is_none();
        let committed = self
            .keep(lease, "committing a result", || {
                self.lifecycle
                    .commit_then_receive(lease, &meta, provenance, next_for)
            })
            .await;
        if committed.is_err() {
            tracing::info!(job_id = %lease.job_id, "the lease passed on before the commit: result discarded");
            if in_store && let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(blob_key = %key, error = %e, "could not remove a discarded result (the start-up sweep will)");
            }
        }
        committed
    }

    /// Moves a result file into the blob store at `key`; the bytes stored.
    async fn store(
        &self,
        lease: &Lease,
        key: &str,
        file: tempfile::NamedTempFile,
    ) -> Result<u64, Fenced> {
        let stored = retrying(
            "storing a result",
            || lease.expired(),
            || self.blobs.put_file_moving(key, file.path()),
        )
        .await;
        let bytes = match stored {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(job_id = %lease.job_id, error = %e, "the result could not be stored within the lease");
                return Err(Fenced);
            }
        };
        // Moved into the store (renamed): nothing is left to delete. Dropping the temp
        // file would still `unlink` its old name, and an unlink takes the temp
        // directory's lock, which the other workers' new result files need too (seen
        // in the no-op benchmark's profile as workers spinning on that lock); a stat
        // does not take it.
        if !file.path().exists() {
            let _ = file.into_temp_path().keep();
        }
        Ok(bytes)
    }
}

/// Go on with the next job, unless the analysis thread would not stop.
fn exit_unless(thread_done: bool) -> Outcome {
    if thread_done {
        Outcome::Continue
    } else {
        Outcome::ExitNow(Exit::Abandoned)
    }
}

/// What a worker's slots share: whether any runs a job, when the last one finished,
/// and the release check.
struct Activity {
    epoch: Instant,
    /// Slots running a job now.
    running: AtomicUsize,
    /// When the last job began or ended (ms after `epoch`).
    last_ms: AtomicU64,
    /// When the release was last checked (ms after `epoch`), `u64::MAX` before the first.
    checked_ms: AtomicU64,
    superseded: AtomicBool,
}

/// Marks a slot busy while it lives.
struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Relaxed);
    }
}

impl Activity {
    /// Activity that counts as idle only after `patience` (a worker launched ahead of
    /// an expected surge waits for it).
    fn new(patience: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            running: AtomicUsize::new(0),
            last_ms: AtomicU64::new(u64::try_from(patience.as_millis()).unwrap_or(u64::MAX)),
            checked_ms: AtomicU64::new(u64::MAX),
            superseded: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.fetch_max(self.now_ms(), Relaxed);
    }

    /// A slot runs a job (from its start until its outcome is recorded).
    fn busy(&self) -> Busy<'_> {
        self.running.fetch_add(1, Relaxed);
        self.touch();
        Busy(self)
    }

    /// How long no slot has had a job: zero while one has.
    fn idle_for(&self) -> Duration {
        if self.running.load(Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Relaxed)))
    }

    /// Whether this slot should ask about the release now (one slot a second does).
    fn release_check_due(&self) -> bool {
        let now = self.now_ms();
        let last = self.checked_ms.load(Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= RELEASE_CHECK_MS;
        due && self
            .checked_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    }
}

/// The worker's exit from its slots': an abandoned analysis first (the process must
/// go), then a shutdown, a supersession, and idle only when every slot was idle.
fn most_serious(exits: &[Exit]) -> Exit {
    [Exit::Abandoned, Exit::Shutdown, Exit::Superseded]
        .into_iter()
        .find(|e| exits.contains(e))
        .unwrap_or(Exit::Idle)
}

/// The message a job gets when an attempt ran past `analyses.max_runtime_secs`.
pub fn runtime_exceeded_message(limit_secs: u64) -> String {
    format!(
        "the analysis ran longer than analyses.max_runtime_secs ({limit_secs} s) and was \
         stopped; it is not retried. Make it cheaper (filter, aggregate, select fewer \
         columns) or ask an operator to raise analyses.max_runtime_secs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_message_names_the_key_and_the_limit() {
        let m = runtime_exceeded_message(2);
        assert!(
            m.contains("analyses.max_runtime_secs (2 s)") && m.contains("not retried"),
            "{m}"
        );
    }
}
