//! Quarry's scale-up-only orchestrator: a pure policy ([`policy`]) and the loop that
//! applies it every tick and right after each enqueue. It launches workers and never
//! stops one; it also records metrics and runs the lifecycle's reconciliation
//! ([`Lifecycle::reconcile`]): running jobs whose lease ran out go back to the queue,
//! released jobs without a message are sent, dead letters are accounted for, and
//! jobs held back by `analyses.max_running_per_user` are released once their owner
//! is under it. Held jobs are not in the queue, so they never count as queue depth.

pub mod policy;
pub mod sim;

use policy::{Observation, Plan, decide};
use quarry_core::clock::{now_ms, rfc3339};
use quarry_core::config::PreScaleConfig;
use quarry_core::decisions;
use quarry_core::fleet::Fleet;
use quarry_core::jobs;
use quarry_core::lifecycle::Lifecycle;
use quarry_core::metrics::{Metrics, Sample};
use quarry_core::prescale::{Ahead, Learned, learn_from_jobs};
use quarry_core::{Db, Result};
use quarry_domain::Decision;
use quarry_domain::metrics as metric;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The orchestrator and what it drives.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    pub db: Db,
    pub lifecycle: Lifecycle,
    pub fleet: Arc<dyn Fleet>,
    pub metrics: Arc<dyn Metrics>,
    pub jobs_per_worker: u64,
    pub max_workers: u64,
    pub tick: Duration,
    /// How far over `max_workers` the fleet may go while workers of a superseded
    /// release drain (`fleet.surge`).
    pub surge: u64,
    /// The release this orchestrator launches workers of: it declares it current when
    /// it starts, which supersedes workers of any other.
    pub release: String,
    /// How long a worker's registry row counts without a heartbeat.
    pub stale: Duration,
    /// Wakes the loop at once (after an enqueue).
    pub nudge: Arc<Notify>,
    /// Pre-scaling from the job history (`fleet.prescale`).
    pub prescale: PreScaleConfig,
    /// The profile it learned, relearned hourly.
    pub learned: Arc<tokio::sync::Mutex<Option<Learned>>>,
}

/// The shortest time between two ticks when enqueues wake the loop.
pub const MIN_TICK_GAP: Duration = Duration::from_millis(250);

/// Decisions kept for the system page.
const KEEP_DECISIONS: i64 = 1000;

impl Orchestrator {
    /// Ticks until `shutdown`; a failed tick is logged and retried on the next.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since = now_ms();
        let mut last = tokio::time::Instant::now();
        loop {
            match quarry_core::fleet::declare_release(&self.db, &self.release).await {
                Ok(replaced) => {
                    if let Some(old) = replaced {
                        tracing::info!(release = %self.release, superseded = %old, "a new release: workers of the old one drain");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not declare the current release: retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        tracing::info!(max_workers = self.max_workers, release = %self.release, "orchestrator started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
                _ = self.nudge.notified() => {
                    // A burst of submits makes one tick, not one each.
                    let next = last + MIN_TICK_GAP;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
            }
            last = tokio::time::Instant::now();
            let now = now_ms();
            match self.tick(since).await {
                Ok(plan) if plan.launch > 0 => {
                    tracing::info!(launch = plan.launch, reason = %plan.reason, "scaling up")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "orchestrator tick failed"),
            }
            since = now;
        }
        tracing::info!("orchestrator stopped");
    }

    /// One tick: reconcile, observe, decide, launch, record.
    pub async fn tick(&self, since_ms: i64) -> Result<Plan> {
        let reconciled = self.lifecycle.reconcile().await?;
        if !reconciled.is_empty() {
            tracing::info!(?reconciled, "reconciled jobs");
        }
        let queue = self.lifecycle.queue().counts().await?;
        let fleet = self.fleet.counts().await?;
        let draining = quarry_core::fleet::draining(&self.db, self.stale).await?;
        let observed = Observation {
            visible: queue.visible,
            in_flight: queue.in_flight,
            running: fleet.running,
            starting: fleet.starting,
            draining,
            jobs_per_worker: self.jobs_per_worker,
            max_workers: self.max_workers,
            surge: self.surge,
            ahead: 0,
        };
        let for_work = decide(observed);
        let ahead = self.ahead().await;
        let mut plan = decide(Observation {
            ahead: ahead.map_or(0, |a| a.workers),
            ..observed
        });
        if for_work.launch > 0 {
            self.fleet.launch(for_work.launch).await?;
        }
        // Workers beyond what the queue wants are the pre-scaler's: they wait for the
        // surge they are launched for.
        let early = plan.launch.saturating_sub(for_work.launch);
        if let Some(ahead) = ahead {
            if early > 0 {
                let patience = i64::try_from(self.prescale.patience_secs).unwrap_or(0);
                self.fleet
                    .launch_patient(early, (ahead.hour_start + patience) * 1000)
                    .await?;
            }
            plan.reason = format!("{}: {}", plan.reason, ahead.explain());
        }
        if queue.visible > 0 {
            // Jobs the reconciler released or redrove, or that a poll has not found.
            self.fleet.wake();
        }
        self.record_decision(&Decision {
            at: rfc3339(now_ms()),
            visible: queue.visible,
            in_flight: queue.in_flight,
            running: fleet.running,
            starting: fleet.starting,
            launch: plan.launch,
            reason: plan.reason.clone(),
        })
        .await?;
        let oldest = jobs::oldest_unfinished_age(&self.db)
            .await?
            .map_or(0.0, |d| d.as_secs_f64());
        let activity = jobs::activity_since(&self.db, since_ms).await?;
        let mut samples = vec![
            Sample {
                name: metric::QUEUE_VISIBLE,
                value: queue.visible as f64,
            },
            Sample {
                name: metric::QUEUE_IN_FLIGHT,
                value: queue.in_flight as f64,
            },
            Sample {
                name: metric::QUEUE_DEAD,
                value: queue.dead as f64,
            },
            Sample {
                name: metric::OLDEST_JOB_AGE_SECONDS,
                value: oldest,
            },
            Sample {
                name: metric::WORKERS_RUNNING,
                value: fleet.running as f64,
            },
            Sample {
                name: metric::WORKERS_STARTING,
                value: fleet.starting as f64,
            },
            Sample {
                name: metric::WORKERS_LAUNCHED,
                value: plan.launch as f64,
            },
            Sample {
                name: metric::JOBS_STARTED,
                value: activity.started as f64,
            },
            Sample {
                name: metric::JOBS_SUCCEEDED,
                value: activity.succeeded as f64,
            },
            Sample {
                name: metric::JOBS_FAILED,
                value: activity.failed as f64,
            },
        ];
        for (name, value) in [
            (metric::JOB_DURATION_SECONDS, activity.mean_duration_secs),
            (metric::JOB_DURATION_P50_SECONDS, activity.p50_duration_secs),
            (metric::JOB_DURATION_P95_SECONDS, activity.p95_duration_secs),
        ] {
            if let Some(value) = value {
                samples.push(Sample { name, value });
            }
        }
        // Worker time used since the last tick: what the fleet costs.
        let elapsed_secs = (now_ms() - since_ms).max(0) as f64 / 1000.0;
        samples.push(Sample {
            name: metric::WORKER_SECONDS,
            value: (fleet.running + fleet.starting) as f64 * elapsed_secs,
        });
        self.metrics.record(&samples).await?;
        Ok(plan)
    }

    /// What the pre-scaler wants now, relearning the profile from the job history when
    /// an hour has passed; `None` when it is off. A failure to learn is logged: scaling
    /// by the queue goes on without it.
    async fn ahead(&self) -> Option<Ahead> {
        let c = &self.prescale;
        if !c.enabled {
            return None;
        }
        let now = now_ms();
        let mut learned = self.learned.lock().await;
        if learned.as_ref().is_none_or(|l| now - l.at_ms >= 3_600_000) {
            match learn_from_jobs(&self.db, c, now).await {
                Ok(l) => {
                    tracing::info!(
                        jobs = l.jobs,
                        median_secs = l.median_secs,
                        "pre-scaling profile learned"
                    );
                    *learned = Some(l);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not learn the pre-scaling profile");
                    return None;
                }
            }
        }
        let l = learned.as_ref()?;
        l.profile.ahead(
            now / 1000,
            i64::try_from(c.lead_secs).unwrap_or(0),
            l.median_secs,
            self.jobs_per_worker,
            c.min_workers,
        )
    }

    async fn record_decision(&self, d: &Decision) -> Result<()> {
        decisions::record(&self.db, now_ms(), d, KEEP_DECISIONS).await
    }
}
