//! One attempt's analysis, on a thread of its own, while the worker heartbeats its
//! lease, reports progress, watches for cancellation, the memory limit, the run-time
//! limit and a shutdown.

use super::{Worker, retrying};
use anyhow::Context as _;
use quarry_core::datasets;
use quarry_core::jobs::StoredJob;
use quarry_core::lifecycle::{Fenced, Lease};
use quarry_domain::{Analysis, DatasetFormat, InputProvenance};
use quarry_engine::analysis::RunError;
use quarry_engine::limits::MemoryGuard;
use quarry_engine::produce::{Destination, Produced, produce};
use quarry_engine::scan::Source;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the analysis thread sends back.
type ThreadResult = std::thread::Result<Result<Produced, RunError>>;

impl Worker {
    pub(super) async fn execute(
        &self,
        job: &StoredJob,
        lease: &mut Lease,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Executed> {
        let job_id = job.view.id.clone();
        let analysis: Analysis = job.view.analysis.clone();
        let found = retrying(
            "reading the dataset's record",
            || lease.expired(),
            || datasets::find(&self.db, &job.view.dataset_id),
        )
        .await?;
        let Some(dataset) = found else {
            return Ok(Executed::Failed("the dataset was deleted".to_owned()));
        };
        if let Some(fault) = injected_fault() {
            return Ok(Executed::Internal(fault));
        }
        // The typed Parquet copy, or the original of a dataset stored before them.
        let (scan_key, format) = dataset.scan_target();
        let input = InputProvenance {
            id: dataset.view.id.clone(),
            sha256: dataset.view.sha256.clone(),
            format: dataset.view.format,
            read: if dataset.parquet_key.is_some() {
                "typed_copy"
            } else {
                "original"
            }
            .to_owned(),
            ingest: dataset.view.ingest.clone(),
            rows: dataset.view.rows,
        };
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
        let tmp_dir = self.config.tmp_dir();
        let inline_max = self.config.analyses.inline_result_max_bytes();
        std::fs::create_dir_all(&tmp_dir).context("creating the worker's temp directory")?;

        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0_f64.to_bits()));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        {
            let (stop, progress) = (stop.clone(), progress.clone());
            crate::threads::run(
                move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        produce(
                            &analysis,
                            &source,
                            format,
                            &columns,
                            Destination {
                                tmp_dir: &tmp_dir,
                                inline_max,
                            },
                            &stop,
                            &progress,
                        )
                    }))
                },
                tx,
            )
            .context("starting the analysis thread")?;
        }
        // Stops the analysis thread and waits a little for it; whether it ended.
        let halt = async |rx: &mut tokio::sync::oneshot::Receiver<ThreadResult>| {
            stop.store(true, Ordering::Relaxed);
            tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .is_ok()
        };

        let guard = MemoryGuard::start(
            self.config
                .worker
                .memory_limit_mb
                .saturating_mul(1024 * 1024),
            stop.clone(),
        );
        let heartbeat = Duration::from_secs(self.config.worker.heartbeat_secs);
        let mut last_beat = Instant::now();
        // Begin recorded progress 0; the first tick comes after 500 ms, so a short
        // job writes nothing between its start and its result.
        let mut last_progress = 0.0_f64;
        let every = Duration::from_millis(500);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
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
                        Ok(Ok(produced)) => Executed::Done(produced, Box::new(input)),
                        Ok(Err(RunError::Failed(m))) => Executed::Failed(m),
                        Ok(Err(RunError::Internal(detail))) => Executed::Internal(detail),
                        Ok(Err(RunError::Stopped)) if started.elapsed() >= max_runtime => Executed::TimedOut { thread_done: true },
                        Ok(Err(RunError::Stopped)) if stop_deadline.is_some() => Executed::HandedBack { thread_done: true },
                        Ok(Err(RunError::Stopped)) => Executed::Cancelled { thread_done: true },
                        Err(panic) => Executed::Crashed(format!("the analysis crashed: {}", panic_text(&panic))),
                    });
                }
                _ = shutdown.cancelled(), if stop_deadline.is_none() => {
                    let grace = if self.stop_now.is_cancelled() {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(self.config.worker.stop_timeout_secs)
                    };
                    tracing::info!(%job_id, ?grace, "shutting down: finishing the running job if it can within stop_timeout");
                    stop_deadline = Some(Instant::now() + grace);
                }
                _ = tick.tick() => {
                    if guard.exceeded() {
                        return Ok(Executed::OverMemory { peak_bytes: guard.peak_bytes() });
                    }
                    // Past the grace, or the launching process went away meanwhile.
                    if stop_deadline.is_some_and(|deadline| Instant::now() >= deadline || self.stop_now.is_cancelled()) {
                        let thread_done = halt(&mut rx).await;
                        return Ok(Executed::HandedBack { thread_done });
                    }
                    if started.elapsed() >= max_runtime {
                        let thread_done = halt(&mut rx).await;
                        return Ok(Executed::TimedOut { thread_done });
                    }
                    // The database or the queue may fail for a while (a busy SQLite, a
                    // failover): the lease is given up only once it has run out.
                    if last_beat.elapsed() >= heartbeat {
                        match self.lifecycle.heartbeat(lease).await {
                            Ok(Ok(())) => last_beat = Instant::now(),
                            Ok(Err(Fenced)) => {
                                tracing::warn!(%job_id, "the heartbeat was refused: the lease passed to another worker; stopping");
                                let thread_done = halt(&mut rx).await;
                                return Ok(Executed::Fenced { thread_done });
                            }
                            Err(e) if lease.expired() => {
                                tracing::error!(%job_id, error = %e, "the lease ran out while the heartbeat failed; stopping");
                                let thread_done = halt(&mut rx).await;
                                return Ok(Executed::Fenced { thread_done });
                            }
                            Err(e) => tracing::warn!(%job_id, error = %e, "heartbeat failed: retrying while the lease holds"),
                        }
                    }
                    let p = f64::from_bits(progress.load(Ordering::Relaxed));
                    if (p - last_progress).abs() >= 0.01 {
                        match self.lifecycle.progress(lease, p).await {
                            Ok(Ok(())) => last_progress = p,
                            Ok(Err(Fenced)) => {
                                let thread_done = halt(&mut rx).await;
                                return Ok(Executed::Fenced { thread_done });
                            }
                            Err(e) => tracing::debug!(%job_id, error = %e, "progress not recorded"),
                        }
                    }
                    match self.lifecycle.cancel_requested(lease).await {
                        Ok(Ok(false)) => {}
                        Ok(Ok(true)) => {
                            let thread_done = halt(&mut rx).await;
                            return Ok(Executed::Cancelled { thread_done });
                        }
                        Ok(Err(Fenced)) => {
                            let thread_done = halt(&mut rx).await;
                            return Ok(Executed::Fenced { thread_done });
                        }
                        Err(e) => tracing::debug!(%job_id, error = %e, "could not check for cancellation"),
                    }
                }
            }
        }
    }
}

pub(super) enum Executed {
    /// The result, and the input it was computed from.
    Done(Produced, Box<InputProvenance>),
    Failed(String),
    /// The analysis panicked.
    Crashed(String),
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
    HandedBack {
        thread_done: bool,
    },
    /// The lease passed to another worker: nothing more is done with the job.
    Fenced {
        thread_done: bool,
    },
}

/// A fault the tests inject into every job (`QUARRY_TEST_FAULT=fail_every_job`): a
/// release built to fail, for the regression watch's test. Debug builds only; a
/// release build has no such switch.
fn injected_fault() -> Option<String> {
    if cfg!(debug_assertions)
        && std::env::var("QUARRY_TEST_FAULT").as_deref() == Ok("fail_every_job")
    {
        Some("injected fault (QUARRY_TEST_FAULT=fail_every_job, a test build)".to_owned())
    } else {
        None
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}
