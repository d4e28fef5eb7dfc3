//! The fleet port: launching workers and counting them. It has no way to stop a
//! worker, on purpose: workers stop themselves when the queue stays empty.
//!
//! Workers register in the `workers` table (`starting` when launched, `running` once
//! the process is up, `exited` when it ends) and renew their row every heartbeat. The
//! registry is live, not remembered: a row that stopped being renewed (its process
//! was killed, or its host went away) does not count and is marked exited, so a
//! worker of an earlier `quarry up` is never counted as running.

use crate::clock::now_ms;
use crate::db::Db;
use crate::error::Result;
use anyhow::Context as _;
use async_trait::async_trait;
use quarry_domain::{FleetCounts, FleetWorker, ReleaseFleet};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Launches workers.
#[async_trait]
pub trait Fleet: Send + Sync + fmt::Debug {
    /// Starts `n` workers; returns their ids.
    async fn launch(&self, n: u64) -> Result<Vec<String>>;
    /// Starts `n` workers that wait for work until `until_ms` (Unix ms) before their
    /// idle time counts (`worker.patient_until_ms`): the pre-scaler's workers, launched
    /// ahead of a surge the profile expects. A fleet that cannot tell its workers
    /// starts ordinary ones.
    async fn launch_patient(&self, n: u64, until_ms: i64) -> Result<Vec<String>> {
        let _ = until_ms;
        self.launch(n).await
    }
    /// Workers running and starting.
    async fn counts(&self) -> Result<FleetCounts>;
    /// Ends the workers this process launched as its own children, because this
    /// process is stopping (`quarry up` on SIGTERM): they hand their jobs back, and
    /// any still running after `grace` is killed. Scaling never calls it; fleets
    /// whose workers outlive the orchestrator (ECS) do nothing.
    async fn shutdown(&self, _grace: Duration) {}
    /// Tells this process's idle workers that a job may be waiting, so they poll at
    /// once instead of at their next poll. Never blocks; a wake that cannot be
    /// delivered is dropped (the worker still polls). Fleets whose workers are not this
    /// process's children (ECS: SQS long polls answer at once) do nothing.
    fn wake(&self) {}
}

/// How long a running worker's row counts without being renewed: three heartbeats,
/// and a little more for a loaded machine.
pub fn stale_after(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_secs(5)
}

/// How long a launched worker may take to come up before its row stops counting.
pub const STARTING_GRACE: Duration = Duration::from_secs(60);

/// Renews a worker's row (its heartbeat). A live worker whose row was expired (its
/// heartbeats failed for a while) counts again.
pub async fn heartbeat(db: &Db, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE workers SET last_seen_at = $1, state = 'running', exited_at = NULL WHERE id = $2",
    )
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Marks exited the rows that stopped being renewed; returns how many. Reads first:
/// every orchestrator tick calls it, and an `UPDATE` takes SQLite's write lock even
/// when it matches nothing.
pub async fn expire(db: &Db, stale: Duration) -> Result<u64> {
    let now = now_ms();
    let any: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM workers WHERE (state = 'running' AND last_seen_at < $1) \
         OR (state = 'starting' AND last_seen_at < $2) LIMIT 1",
    )
    .bind(now - ms(stale))
    .bind(now - ms(STARTING_GRACE))
    .fetch_optional(db.pool())
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE workers SET state = 'exited', exited_at = $1, \
         detail = COALESCE(detail, '') || ' (lost: no heartbeat)' \
         WHERE (state = 'running' AND last_seen_at < $2) OR (state = 'starting' AND last_seen_at < $3)",
    )
    .bind(now)
    .bind(now - ms(stale))
    .bind(now - ms(STARTING_GRACE))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

/// Records the release a worker runs (its attempts record it from here).
pub async fn set_release(db: &Db, id: &str, release: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET release = $1 WHERE id = $2")
        .bind(release)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Declares `release` the one the environment's fleet runs now (the orchestrator does,
/// when it starts). Workers of any other release are superseded from this moment: they
/// finish the job they hold, start no new one, and exit. Returns the release this one
/// replaced, when it replaced one (declaring the current release again changes nothing).
pub async fn declare_release(db: &Db, release: &str) -> Result<Option<String>> {
    let before = current_release(db).await?;
    sqlx::query(
        "INSERT INTO current_release (id, release, declared_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET \
           previous = CASE WHEN current_release.release = excluded.release \
                      THEN current_release.previous ELSE current_release.release END, \
           declared_at = CASE WHEN current_release.release = excluded.release \
                         THEN current_release.declared_at ELSE excluded.declared_at END, \
           release = excluded.release",
    )
    .bind(release)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(before.map(|c| c.release).filter(|r| r != release))
}

/// The release the fleet runs now, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRelease {
    pub release: String,
    /// When it became current (ms since the epoch).
    pub since_ms: i64,
    /// The release it replaced.
    pub previous: Option<String>,
}

/// The release the fleet runs now; `None` before any orchestrator declared one.
pub async fn current_release(db: &Db) -> Result<Option<CurrentRelease>> {
    let row: Option<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT release, declared_at, previous FROM current_release WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|(release, since_ms, previous)| CurrentRelease {
        release,
        since_ms,
        previous,
    }))
}

/// The current release when it is not `release`: a worker of `release` is then
/// superseded and takes no new job. (Starting a job checks the same in its own
/// statement, so a worker that asks just before a switch still cannot start one after.)
pub async fn superseded_by(db: &Db, release: &str) -> Result<Option<String>> {
    Ok(current_release(db)
        .await?
        .map(|c| c.release)
        .filter(|r| r != release))
}

/// The current release when the registered worker `worker_id` runs another.
pub async fn worker_superseded(db: &Db, worker_id: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT c.release FROM current_release c JOIN workers w ON w.id = $1 \
         WHERE c.id = 1 AND w.release <> c.release",
    )
    .bind(worker_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(r,)| r))
}

/// How many live workers say they run `release`.
pub async fn live_workers_of(db: &Db, release: &str, stale: Duration) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM workers WHERE release = $1 AND state = 'running' \
         AND last_seen_at >= $2",
    )
    .bind(release)
    .bind(now_ms() - ms(stale))
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The release a registered worker said it runs.
pub async fn worker_release(db: &Db, worker_id: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT release FROM workers WHERE id = $1")
            .bind(worker_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.and_then(|(r,)| r))
}

/// Live workers of a release other than the current one: they are draining (finishing
/// the job they hold before they exit).
pub async fn draining(db: &Db, stale: Duration) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM workers w JOIN current_release c ON c.id = 1 \
         WHERE w.state = 'running' AND w.last_seen_at >= $1 AND w.release <> c.release",
    )
    .bind(now_ms() - ms(stale))
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The live workers grouped by release, the current release first (then the others
/// by name, workers that have not said theirs last), each with the job it runs.
pub async fn by_release(db: &Db, stale: Duration) -> Result<Vec<ReleaseFleet>> {
    let now = now_ms();
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT w.id, w.state, w.release, \
                (SELECT j.id FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running' \
                 ORDER BY j.started_at DESC LIMIT 1) \
         FROM workers w \
         WHERE (w.state = 'running' AND w.last_seen_at >= $1) \
            OR (w.state = 'starting' AND w.last_seen_at >= $2) \
         ORDER BY w.launched_at, w.id",
    )
    .bind(now - ms(stale))
    .bind(now - ms(STARTING_GRACE))
    .fetch_all(db.pool())
    .await?;
    // Every running job by its worker (a worker runs up to `jobs_per_worker`).
    let running: Vec<(String, String)> = sqlx::query_as(
        "SELECT worker_id, id FROM jobs WHERE status = 'running' AND worker_id IS NOT NULL \
         ORDER BY started_at, id",
    )
    .fetch_all(db.pool())
    .await?;
    let current = current_release(db).await?.map(|c| c.release);
    let mut groups: Vec<ReleaseFleet> = Vec::new();
    for (id, state, release, job_id) in rows {
        let job_ids = running
            .iter()
            .filter(|(worker, _)| *worker == id)
            .map(|(_, job)| job.clone())
            .collect();
        let worker = FleetWorker {
            id,
            state,
            job_id,
            job_ids,
        };
        match groups.iter_mut().find(|g| g.release == release) {
            Some(g) => g.workers.push(worker),
            None => groups.push(ReleaseFleet {
                current: release.is_some() && release == current,
                release,
                workers: vec![worker],
            }),
        }
    }
    groups.sort_by(|a, b| {
        (!a.current, a.release.is_none(), &a.release).cmp(&(
            !b.current,
            b.release.is_none(),
            &b.release,
        ))
    });
    Ok(groups)
}

/// Counts the live workers by state from the registry: rows renewed within `stale`
/// (running) or launched within [`STARTING_GRACE`] (starting).
pub async fn registry_counts(db: &Db, stale: Duration) -> Result<FleetCounts> {
    let now = now_ms();
    let (running, starting): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN state = 'running' AND last_seen_at >= $1 THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN state = 'starting' AND last_seen_at >= $2 THEN 1 ELSE 0 END), 0) \
         FROM workers",
    )
    .bind(now - ms(stale))
    .bind(now - ms(STARTING_GRACE))
    .fetch_one(db.pool())
    .await?;
    Ok(FleetCounts {
        running: u64::try_from(running).unwrap_or(0),
        starting: u64::try_from(starting).unwrap_or(0),
    })
}

/// The embedded adapter: workers are child processes of this one (`quarry worker`),
/// reaped by a task that records their exit. Their output goes to this log.
///
/// Each child's stdin is a pipe from this process, and the worker treats its end of
/// file as SIGTERM: however this process ends, even by SIGKILL, the kernel closes the
/// pipe and the children hand their jobs back and exit (the portable equivalent of
/// `PR_SET_PDEATHSIG`, without unsafe code). A byte on the pipe is a wake-up
/// ([`Fleet::wake`]): the worker polls the queue at once. The lease is still taken in
/// the database, so a lost or extra wake-up changes nothing but latency.
#[derive(Debug, Clone)]
pub struct ProcessFleet {
    db: Db,
    exe: PathBuf,
    env: Vec<(String, String)>,
    stale: Duration,
    nice: u32,
    scheduler: crate::config::WorkerScheduler,
    children: Arc<Mutex<HashMap<String, Child>>>,
}

/// A child worker: the pipe whose closing stops it, and a way to kill it.
#[derive(Debug)]
struct Child {
    stdin: Option<tokio::process::ChildStdin>,
    kill: Arc<tokio::sync::Notify>,
    exited: tokio::sync::watch::Receiver<bool>,
}

/// The byte [`Fleet::wake`] writes to a child's stdin.
pub const WAKE_BYTE: u8 = b'w';

/// The variable that tells a worker to stop when its stdin closes.
pub const PARENT_PIPE_ENV: &str = "QUARRY_WORKER_PARENT_PIPE";

impl ProcessFleet {
    /// Uses the running executable as the worker binary. Rows of workers that
    /// stopped renewing them (an earlier server's children that were killed) are
    /// marked exited: a pid alone proves nothing, it may have been reused.
    pub async fn new(db: Db, heartbeat: Duration) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the quarry binary")?;
        let stale = stale_after(heartbeat);
        let lost = expire(&db, stale).await?;
        if lost > 0 {
            tracing::warn!(
                lost,
                "workers of an earlier run stopped renewing their rows: marked exited"
            );
        }
        Ok(Self {
            db,
            exe,
            env: Vec::new(),
            stale,
            nice: 0,
            scheduler: crate::config::WorkerScheduler::Normal,
            children: Arc::default(),
        })
    }

    /// Runs workers at this niceness (`worker.nice`), through `nice(1)`, which execs
    /// the worker in place (same pid). Where `nice` is missing, workers start at the
    /// server's priority.
    #[must_use]
    pub fn with_nice(mut self, nice: u32) -> Self {
        self.nice = nice.min(19);
        self
    }

    /// Runs workers under this scheduling policy (`worker.scheduler`), through
    /// `chrt(1)`, which also execs in place. Where `chrt` is missing, the policy is the
    /// server's.
    #[must_use]
    pub fn with_scheduler(mut self, scheduler: crate::config::WorkerScheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// `[chrt --idle 0] [nice -n N] quarry`: each wrapper execs the next, so the pid
    /// is the worker's.
    fn command(&self) -> tokio::process::Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        let chrt = std::path::Path::new("/usr/bin/chrt");
        if let Some(flag) = self.scheduler.chrt_flag()
            && chrt.exists()
        {
            argv.extend([chrt.into(), flag.into(), "0".into()]);
        }
        let nice = std::path::Path::new("/usr/bin/nice");
        if self.nice > 0 && nice.exists() {
            argv.extend([nice.into(), "-n".into(), self.nice.to_string().into()]);
        }
        argv.push(self.exe.clone().into());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Extra environment for every worker process (see `WorkerConfig::process_env`).
    #[must_use]
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }
}

impl ProcessFleet {
    /// Spawns `n` worker processes, patient until `patient` (Unix ms) when set.
    async fn spawn_workers(&self, n: u64, patient: Option<i64>) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            set_state(&self.db, &id, "starting", None).await?;
            let spawned = self
                .command()
                .arg("worker")
                .env("QUARRY_WORKER_ID", &id)
                .env(PARENT_PIPE_ENV, "1")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .envs(patient.map(|until| (PATIENT_UNTIL_ENV, until.to_string())))
                .stdin(std::process::Stdio::piped())
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
            let kill = Arc::new(tokio::sync::Notify::new());
            let (exited_tx, exited) = tokio::sync::watch::channel(false);
            if let Ok(mut children) = self.children.lock() {
                children.insert(
                    id.clone(),
                    Child {
                        stdin: child.stdin.take(),
                        kill: kill.clone(),
                        exited,
                    },
                );
            }
            let (db, worker_id, children) = (self.db.clone(), id.clone(), self.children.clone());
            tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    () = kill.notified() => {
                        tracing::warn!(worker_id, "a worker did not stop in time: killed");
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                tracing::info!(worker_id, ?status, "worker process exited");
                if let Ok(mut children) = children.lock() {
                    children.remove(&worker_id);
                }
                let _ = exited_tx.send(true);
                if let Err(e) = set_state(&db, &worker_id, "exited", None).await {
                    tracing::error!(worker_id, error = %e, "could not record a worker's exit");
                }
            });
            tracing::info!(worker_id = %id, "worker launched");
            ids.push(id);
        }
        Ok(ids)
    }
}

/// The variable that makes a worker wait for work until then (Unix ms) before its idle
/// time counts.
pub const PATIENT_UNTIL_ENV: &str = "QUARRY_WORKER__PATIENT_UNTIL_MS";

#[async_trait]
impl Fleet for ProcessFleet {
    async fn launch(&self, n: u64) -> Result<Vec<String>> {
        self.spawn_workers(n, None).await
    }

    async fn launch_patient(&self, n: u64, until_ms: i64) -> Result<Vec<String>> {
        self.spawn_workers(n, Some(until_ms)).await
    }

    async fn counts(&self) -> Result<FleetCounts> {
        expire(&self.db, self.stale).await?;
        registry_counts(&self.db, self.stale).await
    }

    fn wake(&self) {
        use futures::FutureExt as _;
        use tokio::io::AsyncWriteExt as _;
        let Ok(mut children) = self.children.lock() else {
            return;
        };
        for child in children.values_mut() {
            if let Some(stdin) = child.stdin.as_mut() {
                // One poll of a non-blocking pipe: written now, or dropped when the
                // pipe is full (a stopped worker that is not reading).
                let _ = stdin.write(&[WAKE_BYTE]).now_or_never();
            }
        }
    }

    async fn shutdown(&self, grace: Duration) {
        // Closing the pipes is each child's SIGTERM.
        let waiting: Vec<_> = match self.children.lock() {
            Ok(mut children) => children
                .values_mut()
                .map(|c| {
                    c.stdin.take();
                    (c.kill.clone(), c.exited.clone())
                })
                .collect(),
            Err(_) => return,
        };
        if waiting.is_empty() {
            return;
        }
        tracing::info!(
            workers = waiting.len(),
            ?grace,
            "stopping this server's workers: they hand their jobs back"
        );
        let all_exited = || {
            futures::future::join_all(waiting.iter().map(|(_, exited)| {
                let mut exited = exited.clone();
                async move {
                    let _ = exited.wait_for(|done| *done).await;
                }
            }))
        };
        if tokio::time::timeout(grace, all_exited()).await.is_err() {
            for (kill, _) in &waiting {
                kill.notify_one();
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), all_exited()).await;
        }
    }
}
