//! The fleet port: launching workers and counting them. It has no way to stop a
//! worker, on purpose: workers stop themselves when the queue stays empty.
//!
//! Workers register in the `workers` table (`starting` when launched, `running` once
//! the process is up, `exited` when it ends), so every process sees the same fleet.

use crate::clock::now_ms;
use crate::db::Db;
use crate::error::Result;
use anyhow::Context as _;
use async_trait::async_trait;
use quarry_domain::FleetCounts;
use std::fmt;
use std::path::PathBuf;

/// Launches workers.
#[async_trait]
pub trait Fleet: Send + Sync + fmt::Debug {
    /// Starts `n` workers; returns their ids.
    async fn launch(&self, n: u64) -> Result<Vec<String>>;
    /// Workers running and starting.
    async fn counts(&self) -> Result<FleetCounts>;
}

/// Records a worker's state.
pub async fn set_state(db: &Db, id: &str, state: &str, detail: Option<&str>) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workers (id, state, launched_at, last_seen_at, detail) VALUES ($1, $2, $3, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET state = $2, last_seen_at = $3, \
         exited_at = CASE WHEN $2 = 'exited' THEN $3 ELSE workers.exited_at END, \
         detail = COALESCE($4, workers.detail)",
    )
    .bind(id)
    .bind(state)
    .bind(now)
    .bind(detail)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Counts workers by state from the registry.
pub async fn registry_counts(db: &Db) -> Result<FleetCounts> {
    let (running, starting): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN state = 'starting' THEN 1 ELSE 0 END), 0) FROM workers",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(FleetCounts {
        running: u64::try_from(running).unwrap_or(0),
        starting: u64::try_from(starting).unwrap_or(0),
    })
}

/// The embedded adapter: workers are child processes of this one (`quarry worker`),
/// reaped by a task that records their exit. Their output goes to this log.
#[derive(Debug, Clone)]
pub struct ProcessFleet {
    db: Db,
    exe: PathBuf,
    env: Vec<(String, String)>,
}

impl ProcessFleet {
    /// Uses the running executable as the worker binary. Workers left `running` by a
    /// previous process that no longer exist are marked exited.
    pub async fn new(db: Db) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the quarry binary")?;
        let fleet = Self {
            db,
            exe,
            env: Vec::new(),
        };
        fleet.forget_dead().await?;
        Ok(fleet)
    }

    /// Extra environment for every worker process (see `WorkerConfig::process_env`).
    #[must_use]
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    async fn forget_dead(&self) -> anyhow::Result<()> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, detail FROM workers WHERE state <> 'exited'")
                .fetch_all(self.db.pool())
                .await?;
        for (id, detail) in rows {
            let alive = detail
                .as_deref()
                .and_then(|d| d.strip_prefix("pid "))
                .is_some_and(|pid| std::path::Path::new("/proc").join(pid).exists());
            if !alive {
                set_state(&self.db, &id, "exited", None).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Fleet for ProcessFleet {
    async fn launch(&self, n: u64) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            set_state(&self.db, &id, "starting", None).await?;
            let spawned = tokio::process::Command::new(&self.exe)
                .arg("worker")
                .env("QUARRY_WORKER_ID", &id)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .kill_on_drop(false)
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    set_state(&self.db, &id, "exited", Some("spawn failed")).await?;
                    return Err(anyhow::Error::new(e)
                        .context("launching a worker process")
                        .into());
                }
            };
            let pid = child.id().map(|p| format!("pid {p}"));
            set_state(&self.db, &id, "starting", pid.as_deref()).await?;
            let (db, worker_id) = (self.db.clone(), id.clone());
            tokio::spawn(async move {
                let status = child.wait().await;
                tracing::info!(worker_id, ?status, "worker process exited");
                if let Err(e) = set_state(&db, &worker_id, "exited", None).await {
                    tracing::error!(worker_id, error = %e, "could not record a worker's exit");
                }
            });
            tracing::info!(worker_id = %id, "worker launched");
            ids.push(id);
        }
        Ok(ids)
    }

    async fn counts(&self) -> Result<FleetCounts> {
        registry_counts(&self.db).await
    }
}
