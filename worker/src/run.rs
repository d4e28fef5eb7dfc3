//! The worker loop (`quarry worker`).
//!
//! Receive a job (long poll), run it on a separate thread while heartbeating its lease,
//! write the result through the blob store, commit exactly once, delete the message.
//! The worker exits by itself once the queue has stayed empty for `idle_timeout`. On
//! SIGTERM it takes no new job and hands the running one back unless it finishes
//! within `stop_timeout`. A panic in an analysis fails that attempt only.
//!
//! An attempt that runs past `analyses.max_runtime_secs` is stopped and its job
//! failed for good: every retry would run as long. A polars I/O or object-store
//! failure is the worker's trouble: it is logged with the job id, the attempt is
//! retried, and the user only ever sees a short message. When a job finishes, the
//! owner's oldest held job (see `quarry_core::jobs::release_held`) is released.

use crate::analysis::{self, INTERNAL_MESSAGE, RunContext, RunError};
use crate::limits::{self, MemoryGuard};
use crate::scan::{Source, scan_source};
use anyhow::Context as _;
use polars::prelude::*;
use quarry_core::blob::BlobStore;
use quarry_core::jobs::{self, ResultMeta, Start};
use quarry_core::queue::{Delivery, JobQueue};
use quarry_core::{Config, Db, datasets};
use quarry_domain::{Analysis, ColumnInfo, DatasetFormat};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub use quarry_core::jobs::JobMessage;

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub config: Config,
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub blobs: Arc<dyn BlobStore>,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The queue stayed empty for `idle_timeout`.
    Idle,
    /// SIGTERM or SIGINT.
    Shutdown,
    /// An analysis thread could not be stopped in time: the process must exit.
    Abandoned,
}

enum Outcome {
    Continue,
    ExitNow(Exit),
}

struct Produced {
    file: tempfile::NamedTempFile,
    rows: u64,
    columns: Vec<ColumnInfo>,
}

impl Worker {
    /// Runs until idle, shut down, or an analysis had to be abandoned.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<Exit> {
        let idle_timeout = Duration::from_secs(self.config.worker.idle_timeout_secs);
        let mut idle_since = Instant::now();
        tracing::info!(worker_id = %self.id, "worker started");
        let exit = loop {
            if shutdown.is_cancelled() {
                break Exit::Shutdown;
            }
            let idle_for = idle_since.elapsed();
            if idle_for >= idle_timeout {
                break Exit::Idle;
            }
            let wait = (idle_timeout - idle_for).min(Duration::from_secs(2));
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break Exit::Shutdown,
                d = self.queue.receive(wait) => d.context("receiving from the queue")?,
            };
            let Some(delivery) = delivery else { continue };
            match self.process(delivery, &shutdown).await? {
                Outcome::Continue => idle_since = Instant::now(),
                Outcome::ExitNow(exit) => break exit,
            }
        };
        tracing::info!(worker_id = %self.id, ?exit, "worker stopping");
        Ok(exit)
    }

    async fn process(&self, d: Delivery, shutdown: &CancellationToken) -> anyhow::Result<Outcome> {
        let Ok(message) = serde_json::from_str::<JobMessage>(&d.body) else {
            tracing::error!(message_id = %d.message_id, "unparseable queue message: dead-lettered");
            self.queue.dead_letter(&d).await?;
            return Ok(Outcome::Continue);
        };
        let job_id = message.job_id;
        match jobs::start(&self.db, &job_id, &self.id, d.receive_count).await? {
            Start::Run => {}
            Start::AlreadyFinished(status) => {
                tracing::info!(%job_id, %status, "duplicate delivery of a finished job: deleted");
                self.queue.delete(&d.receipt).await?;
                self.release_after(&job_id).await;
                return Ok(Outcome::Continue);
            }
            Start::Gone => {
                self.queue.delete(&d.receipt).await?;
                return Ok(Outcome::Continue);
            }
        }
        tracing::info!(%job_id, attempt = d.receive_count, "job started");
        let started = Instant::now();
        let result = self.execute(&job_id, &d, shutdown).await;
        let last = d.receive_count >= self.queue.max_attempts();
        match result {
            Ok(Executed::Done(produced)) => {
                self.commit(&job_id, &d, produced).await?;
                tracing::info!(%job_id, elapsed_ms = started.elapsed().as_millis() as u64, "job succeeded");
                self.release_after(&job_id).await;
                Ok(Outcome::Continue)
            }
            Ok(Executed::Failed(message)) => {
                self.fail_attempt(&job_id, &d, &message, last).await?;
                Ok(Outcome::Continue)
            }
            Ok(Executed::Internal(detail)) => {
                tracing::error!(%job_id, attempt = d.receive_count, last, error = %detail, "the analysis could not read its data or write its result");
                let message = if last {
                    format!(
                        "the worker could not read the dataset (tried {} times); ask an operator to check the worker logs",
                        d.receive_count
                    )
                } else {
                    INTERNAL_MESSAGE.to_owned()
                };
                self.fail_attempt(&job_id, &d, &message, last).await?;
                Ok(Outcome::Continue)
            }
            Ok(Executed::TimedOut { thread_done }) => {
                let limit = self.config.analyses.max_runtime_secs;
                tracing::warn!(%job_id, limit_secs = limit, "analysis ran past analyses.max_runtime_secs: failed");
                jobs::fail_final(&self.db, &job_id, &runtime_exceeded_message(limit)).await?;
                self.queue.delete(&d.receipt).await?;
                self.release_after(&job_id).await;
                Ok(if thread_done {
                    Outcome::Continue
                } else {
                    Outcome::ExitNow(Exit::Abandoned)
                })
            }
            Ok(Executed::OverMemory { peak_bytes }) => {
                let limit_mb = self.config.worker.memory_limit_mb;
                tracing::warn!(%job_id, limit_mb, peak_mb = peak_bytes >> 20, "analysis went over the memory limit");
                self.fail_attempt(&job_id, &d, &limits::exceeded_message(limit_mb), last)
                    .await?;
                // The analysis thread may still hold the memory: give it back by exiting.
                Ok(Outcome::ExitNow(Exit::Abandoned))
            }
            Ok(Executed::Cancelled { thread_done }) => {
                jobs::finish_cancelled(&self.db, &job_id).await?;
                self.queue.delete(&d.receipt).await?;
                tracing::info!(%job_id, "job cancelled");
                self.release_after(&job_id).await;
                Ok(if thread_done {
                    Outcome::Continue
                } else {
                    Outcome::ExitNow(Exit::Abandoned)
                })
            }
            Ok(Executed::HandedBack) => {
                jobs::requeue(&self.db, &job_id).await?;
                self.queue
                    .change_visibility(&d.receipt, Duration::ZERO)
                    .await
                    .ok();
                tracing::info!(%job_id, "shutting down: job handed back to the queue");
                Ok(Outcome::ExitNow(Exit::Shutdown))
            }
            Err(e) => {
                // Infrastructure trouble (database, blob store): let the lease expire
                // so another worker retries, and stop this one.
                tracing::error!(%job_id, error = format!("{e:#}"), "job could not run");
                Ok(Outcome::ExitNow(Exit::Abandoned))
            }
        }
    }

    /// Records a failed attempt; the last one dead-letters the message, the others
    /// make it visible again soon for the next attempt.
    async fn fail_attempt(
        &self,
        job_id: &str,
        d: &Delivery,
        message: &str,
        last: bool,
    ) -> anyhow::Result<()> {
        tracing::warn!(%job_id, attempt = d.receive_count, last, error = %message, "job attempt failed");
        jobs::fail_attempt(&self.db, job_id, message, last).await?;
        if last {
            self.queue.dead_letter(d).await?;
            self.release_after(job_id).await;
        } else {
            let _ = self
                .queue
                .change_visibility(&d.receipt, Duration::from_secs(1))
                .await;
        }
        Ok(())
    }

    /// Releases what the owner's finished job frees; a failure is only logged (the
    /// orchestrator's sweep releases it on its next tick).
    async fn release_after(&self, job_id: &str) {
        if let Err(e) = jobs::release_after(&self.db, self.queue.as_ref(), job_id).await {
            tracing::warn!(%job_id, error = %e, "could not release the owner's held jobs");
        }
    }

    async fn commit(&self, job_id: &str, d: &Delivery, produced: Produced) -> anyhow::Result<()> {
        let key = format!(
            "results/{job_id}/attempt-{}-{}.parquet",
            d.receive_count, self.id
        );
        let bytes = self.blobs.put_file(&key, produced.file.path()).await?;
        let meta = ResultMeta {
            blob_key: key.clone(),
            rows: produced.rows,
            bytes,
            columns: produced.columns,
        };
        if !jobs::commit_success(&self.db, job_id, &meta).await? {
            tracing::info!(%job_id, "another delivery committed first: result discarded");
            self.blobs.delete(&key).await?;
        }
        self.queue.delete(&d.receipt).await?;
        Ok(())
    }

    async fn execute(
        &self,
        job_id: &str,
        d: &Delivery,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Executed> {
        let job = jobs::find(&self.db, job_id)
            .await?
            .context("job vanished")?;
        let analysis: Analysis = match serde_json::from_value(job.view.analysis.clone()) {
            Ok(a) => a,
            Err(e) => {
                return Ok(Executed::Failed(format!(
                    "the analysis cannot be read: {e}"
                )));
            }
        };
        let Some(dataset) = datasets::find(&self.db, &job.view.dataset_id).await? else {
            return Ok(Executed::Failed("the dataset was deleted".to_owned()));
        };
        // The typed Parquet copy, or the original of a dataset stored before them.
        let (scan_key, format) = dataset.scan_target();
        let scan_key = scan_key.to_owned();
        // Parquet in object storage is read in place, by byte ranges: polars fetches the
        // footer and only the column chunks the analysis needs. Row formats (CSV,
        // NDJSON) must be read whole anyway, so they are streamed to a local file.
        let (source, _download) = match (format, self.blobs.polars_location(&scan_key)) {
            (DatasetFormat::Parquet, Some(location)) => (Source::Cloud(location), None),
            _ => {
                let file = self.blobs.local_file(&scan_key).await?;
                (Source::File(file.path().to_owned()), Some(file))
            }
        };
        let columns = dataset.view.columns.clone();
        let tmp_dir = tmp_dir(&self.config);
        std::fs::create_dir_all(&tmp_dir).context("creating the worker's temp directory")?;

        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0_f64.to_bits()));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        {
            let (stop, progress) = (stop.clone(), progress.clone());
            // polars plans SQL and expressions recursively: give it room (reserved only).
            std::thread::Builder::new()
                .name(format!("job-{job_id}"))
                .stack_size(analysis::sql::BIG_STACK)
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        produce(
                            &analysis, &source, format, &columns, &tmp_dir, &stop, &progress,
                        )
                    }));
                    let _ = tx.send(outcome);
                })
                .context("starting the analysis thread")?;
        }

        let guard = MemoryGuard::start(
            self.config
                .worker
                .memory_limit_mb
                .saturating_mul(1024 * 1024),
            stop.clone(),
        );
        let visibility = self.queue.visibility_timeout();
        let heartbeat = Duration::from_secs(self.config.worker.heartbeat_secs);
        let mut last_beat = Instant::now();
        let mut last_progress = -1.0_f64;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut stop_deadline: Option<Instant> = None;
        let started = Instant::now();
        let max_runtime = Duration::from_secs(self.config.analyses.max_runtime_secs);
        loop {
            tokio::select! {
                outcome = &mut rx => {
                    let outcome = outcome.context("the analysis thread vanished")?;
                    tracing::debug!(%job_id, peak_mb = guard.peak_bytes() >> 20, "analysis finished");
                    if guard.exceeded() {
                        return Ok(Executed::OverMemory { peak_bytes: guard.peak_bytes() });
                    }
                    return Ok(match outcome {
                        Ok(Ok(produced)) => Executed::Done(produced),
                        Ok(Err(RunError::Failed(m))) => Executed::Failed(m),
                        Ok(Err(RunError::Internal(detail))) => Executed::Internal(detail),
                        Ok(Err(RunError::Stopped)) if started.elapsed() >= max_runtime => Executed::TimedOut { thread_done: true },
                        Ok(Err(RunError::Stopped)) if stop_deadline.is_some() => Executed::HandedBack,
                        Ok(Err(RunError::Stopped)) => Executed::Cancelled { thread_done: true },
                        Err(panic) => Executed::Failed(format!("the analysis crashed: {}", panic_text(&panic))),
                    });
                }
                _ = shutdown.cancelled(), if stop_deadline.is_none() => {
                    let grace = Duration::from_secs(self.config.worker.stop_timeout_secs);
                    tracing::info!(%job_id, ?grace, "SIGTERM: finishing the running job if it can within stop_timeout");
                    stop_deadline = Some(Instant::now() + grace);
                }
                _ = tick.tick() => {
                    if guard.exceeded() {
                        return Ok(Executed::OverMemory { peak_bytes: guard.peak_bytes() });
                    }
                    if stop_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        stop.store(true, Ordering::Relaxed);
                        return Ok(Executed::HandedBack);
                    }
                    if started.elapsed() >= max_runtime {
                        stop.store(true, Ordering::Relaxed);
                        let finished = tokio::time::timeout(Duration::from_secs(2), &mut rx).await.is_ok();
                        return Ok(Executed::TimedOut { thread_done: finished });
                    }
                    if last_beat.elapsed() >= heartbeat {
                        if let Err(e) = self.queue.change_visibility(&d.receipt, visibility).await {
                            tracing::warn!(%job_id, error = %e, "heartbeat failed");
                        }
                        last_beat = Instant::now();
                    }
                    let p = f64::from_bits(progress.load(Ordering::Relaxed));
                    if (p - last_progress).abs() >= 0.01 {
                        jobs::set_progress(&self.db, job_id, p).await?;
                        last_progress = p;
                    }
                    if jobs::cancel_requested(&self.db, job_id).await? {
                        stop.store(true, Ordering::Relaxed);
                        let finished = tokio::time::timeout(Duration::from_secs(2), &mut rx).await.is_ok();
                        return Ok(Executed::Cancelled { thread_done: finished });
                    }
                }
            }
        }
    }
}

enum Executed {
    Done(Produced),
    Failed(String),
    /// Reading the data or writing the result failed; the detail is for the log.
    Internal(String),
    /// The attempt ran past `analyses.max_runtime_secs`.
    TimedOut {
        thread_done: bool,
    },
    /// The memory guard tripped; the analysis thread may still be running.
    OverMemory {
        peak_bytes: u64,
    },
    Cancelled {
        thread_done: bool,
    },
    HandedBack,
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// Runs the analysis and writes its result as Parquet to a temporary file.
fn produce(
    analysis: &Analysis,
    source: &Source,
    format: quarry_domain::DatasetFormat,
    columns: &[ColumnInfo],
    tmp_dir: &std::path::Path,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<Produced, RunError> {
    let report = |p: f64| progress.store(p.to_bits(), Ordering::Relaxed);
    let ctx = RunContext {
        stop,
        progress: &report,
    };
    let data = scan_source(source, format, columns)?;
    let mut df = analysis::run(analysis, data, &ctx)?;
    let file = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile_in(tmp_dir)
        .map_err(|e| RunError::Internal(format!("cannot create the result file: {e}")))?;
    ParquetWriter::new(file.as_file()).finish(&mut df)?;
    Ok(Produced {
        rows: df.height() as u64,
        columns: analysis::result_columns(&df),
        file,
    })
}

/// The message a job gets when an attempt ran past `analyses.max_runtime_secs`.
pub fn runtime_exceeded_message(limit_secs: u64) -> String {
    format!(
        "the analysis ran longer than analyses.max_runtime_secs ({limit_secs} s) and was \
         stopped; it is not retried. Make it cheaper (filter, aggregate, select fewer \
         columns) or ask an operator to raise analyses.max_runtime_secs"
    )
}

/// Where a worker keeps temporary files.
pub fn tmp_dir(config: &Config) -> PathBuf {
    config.data_dir.join("tmp")
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

    #[test]
    fn the_queue_message_is_the_one_the_lifecycle_sends() {
        let body = JobMessage::body("j-1");
        let parsed: JobMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.job_id, "j-1");
    }
}
