//! Quarry's scale-up-only orchestrator: a pure policy ([`policy`]) and the loop that
//! applies it every tick and right after each enqueue. It launches workers and never
//! stops one; it also records metrics, turns dead letters into failed jobs and
//! releases jobs held back by `analyses.max_running_per_user` once their owner is
//! under it. Held jobs are not in the queue, so they never count as queue depth.

pub mod policy;

use policy::{Observation, Plan, decide};
use quarry_core::clock::{now_ms, rfc3339};
use quarry_core::decisions;
use quarry_core::fleet::Fleet;
use quarry_core::jobs;
use quarry_core::metrics::{Metrics, Sample};
use quarry_core::queue::JobQueue;
use quarry_core::{Db, Result};
use quarry_domain::Decision;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The orchestrator and what it drives.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub fleet: Arc<dyn Fleet>,
    pub metrics: Arc<dyn Metrics>,
    pub jobs_per_worker: u64,
    pub max_workers: u64,
    pub tick: Duration,
    /// Wakes the loop at once (after an enqueue).
    pub nudge: Arc<Notify>,
}

/// Decisions kept for the system page.
const KEEP_DECISIONS: i64 = 1000;

impl Orchestrator {
    /// Ticks until `shutdown`; a failed tick is logged and retried on the next.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since = now_ms();
        tracing::info!(max_workers = self.max_workers, "orchestrator started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
                _ = self.nudge.notified() => {}
            }
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

    /// One tick: reconcile dead letters, release held jobs, observe, decide, launch,
    /// record.
    pub async fn tick(&self, since_ms: i64) -> Result<Plan> {
        self.reconcile_dead_letters().await?;
        let released = jobs::sweep_held(&self.db, self.queue.as_ref()).await?;
        if released > 0 {
            tracing::info!(released, "held jobs released to the queue");
        }
        let queue = self.queue.counts().await?;
        let fleet = self.fleet.counts().await?;
        let plan = decide(Observation {
            visible: queue.visible,
            in_flight: queue.in_flight,
            running: fleet.running,
            starting: fleet.starting,
            jobs_per_worker: self.jobs_per_worker,
            max_workers: self.max_workers,
        });
        if plan.launch > 0 {
            self.fleet.launch(plan.launch).await?;
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
                name: "queue_visible",
                value: queue.visible as f64,
            },
            Sample {
                name: "queue_in_flight",
                value: queue.in_flight as f64,
            },
            Sample {
                name: "queue_dead",
                value: queue.dead as f64,
            },
            Sample {
                name: "oldest_job_age_seconds",
                value: oldest,
            },
            Sample {
                name: "workers_running",
                value: fleet.running as f64,
            },
            Sample {
                name: "workers_starting",
                value: fleet.starting as f64,
            },
            Sample {
                name: "workers_launched",
                value: plan.launch as f64,
            },
            Sample {
                name: "jobs_started",
                value: activity.started as f64,
            },
            Sample {
                name: "jobs_succeeded",
                value: activity.succeeded as f64,
            },
            Sample {
                name: "jobs_failed",
                value: activity.failed as f64,
            },
        ];
        for (name, value) in [
            ("job_duration_seconds", activity.mean_duration_secs),
            ("job_duration_p50_seconds", activity.p50_duration_secs),
            ("job_duration_p95_seconds", activity.p95_duration_secs),
        ] {
            if let Some(value) = value {
                samples.push(Sample { name, value });
            }
        }
        // Worker time used since the last tick: what the fleet costs.
        let elapsed_secs = (now_ms() - since_ms).max(0) as f64 / 1000.0;
        samples.push(Sample {
            name: "worker_seconds",
            value: (fleet.running + fleet.starting) as f64 * elapsed_secs,
        });
        self.metrics.record(&samples).await?;
        Ok(plan)
    }

    /// A job whose message was dead-lettered (its worker kept dying) is failed, with
    /// an error saying so. Idempotent: finished jobs are left alone.
    async fn reconcile_dead_letters(&self) -> Result<()> {
        for letter in self.queue.dead_letters(100).await? {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&letter.body) else {
                continue;
            };
            let Some(job_id) = message.get("job_id").and_then(|v| v.as_str()) else {
                continue;
            };
            let error = format!(
                "gave up after {} attempts: the worker stopped without finishing \
                 (killed, crashed or out of memory)",
                letter.receive_count
            );
            jobs::fail_attempt(&self.db, job_id, &error, true).await?;
        }
        Ok(())
    }

    async fn record_decision(&self, d: &Decision) -> Result<()> {
        decisions::record(&self.db, now_ms(), d, KEEP_DECISIONS).await
    }
}
