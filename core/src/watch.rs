//! Job changes, pushed to whoever follows them: the event streams.
//!
//! One watcher per server finds the jobs that changed and wakes only the streams that
//! follow them, so a thousand open streams on quiet jobs cost nothing but memory, and
//! the database sees one small query per interval, not one per connection.
//!
//! * **SQLite:** every insert or update of a job gives it the next `changed_seq`
//!   (triggers of migration 0010). SQLite has one writer at a time, so the numbers are
//!   handed out in commit order and "every row above the last number read" is exactly
//!   what changed since. While anybody follows, the watcher reads them every
//!   [`SQLITE_INTERVAL`] with an indexed range query (nothing returned when quiet).
//! * **Postgres:** the triggers `NOTIFY quarry_jobs` with the job's id and status when its
//!   transaction commits, and the watcher `LISTEN`s. Notifications sent while the
//!   connection was down are lost, so after a reconnection every follower is woken.
//!
//! Workers are other processes; they change jobs through the database alone, and this
//! is how the server learns of it. Three signals go to each follower: its job
//! changed; some job changed its status (a queued job's place in line may have moved;
//! progress and heartbeats of a running job do not count); and credentials changed in
//! this server (a token revoked, a session ended), for the stream to check its own. Deleted jobs: Postgres notifies; on SQLite a follower
//! finds out at its periodic check.

use crate::db::{Db, Dialect};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the SQLite watcher looks for changes while anybody follows a job.
pub const SQLITE_INTERVAL: Duration = Duration::from_millis(50);

/// The Postgres channel the job triggers notify.
pub const CHANNEL: &str = "quarry_jobs";

/// Rows read per look on SQLite; a busier interval is read in several looks at once.
const PAGE: i64 = 1000;

/// Statuses remembered; past this the memory starts afresh (a spurious `queue_moved`).
const MAX_STATUSES: usize = 100_000;

/// The job changes hub: one per server, shared by its event streams.
#[derive(Debug, Clone)]
pub struct JobWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    followed: Mutex<HashMap<String, watch::Sender<u64>>>,
    queue_moved: watch::Sender<u64>,
    /// The status each recently changed job had, to tell a status change from progress.
    statuses: Mutex<HashMap<String, String>>,
    credentials: watch::Sender<u64>,
    /// Wakes an idle SQLite watcher when the first follower arrives.
    first_follower: tokio::sync::Notify,
}

/// What one event stream listens to.
#[derive(Debug)]
pub struct Following {
    /// Its job changed (or may have: after a Postgres reconnection).
    pub job: watch::Receiver<u64>,
    /// Some job changed its status.
    pub queue_moved: watch::Receiver<u64>,
    /// Credentials changed in this server.
    pub credentials: watch::Receiver<u64>,
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|v| *v = v.wrapping_add(1));
}

impl Default for JobWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl JobWatch {
    /// A hub nobody follows yet; [`JobWatch::run`] feeds it.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                followed: Mutex::new(HashMap::new()),
                queue_moved: watch::channel(0).0,
                statuses: Mutex::new(HashMap::new()),
                credentials: watch::channel(0).0,
                first_follower: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Starts following `job_id`; dropping the [`Following`] stops.
    pub fn follow(&self, job_id: &str) -> Following {
        let job = self
            .lock()
            .entry(job_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        // An idle watcher starts looking (a busy one takes one look early).
        self.inner.first_follower.notify_one();
        Following {
            job,
            queue_moved: self.inner.queue_moved.subscribe(),
            credentials: self.inner.credentials.subscribe(),
        }
    }

    /// Jobs followed now (by at least one stream).
    pub fn followed(&self) -> usize {
        self.lock()
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }

    /// A job changed and has `status` now: wakes its followers, and if its status is
    /// not the one last seen, every follower's `queue_moved`.
    pub fn changed(&self, job_id: &str, status: &str) {
        if let Some(tx) = self.lock().get(job_id) {
            bump(tx);
        }
        let moved = {
            let mut statuses = self
                .inner
                .statuses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if statuses.len() >= MAX_STATUSES {
                statuses.clear();
            }
            statuses
                .insert(job_id.to_owned(), status.to_owned())
                .as_deref()
                != Some(status)
        };
        if moved {
            bump(&self.inner.queue_moved);
        }
    }

    /// Credentials changed in this server: every stream checks its own.
    pub fn credentials_changed(&self) {
        bump(&self.inner.credentials);
    }

    /// Changes may have been missed: wakes every follower.
    fn everything_changed(&self) {
        for tx in self.lock().values() {
            bump(tx);
        }
        bump(&self.inner.queue_moved);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.inner
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets jobs nobody follows any more; `true` if none is followed.
    fn prune(&self) -> bool {
        let mut followed = self.lock();
        followed.retain(|_, tx| tx.receiver_count() > 0);
        followed.is_empty()
    }

    /// Feeds the hub from `db` until `shutdown`. Errors are logged and retried.
    pub async fn run(&self, db: Db, shutdown: CancellationToken) {
        match db.dialect() {
            Dialect::Sqlite => self.run_sqlite(&db, &shutdown).await,
            Dialect::Postgres => self.run_postgres(&db, &shutdown).await,
        }
    }

    async fn run_sqlite(&self, db: &Db, shutdown: &CancellationToken) {
        let mut last = loop {
            match latest_seq(db).await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(error = %e, "job watch: reading the latest change failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut interval = tokio::time::interval(SQLITE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.prune() {
                // Nobody follows: skip ahead instead of reading changes nobody wants. The
                // latest number is read before looking again whether anybody follows,
                // so a follower that came meanwhile keeps the older starting point and
                // misses no change made after it started following.
                match latest_seq(db).await {
                    Ok(n) if self.prune() => last = n,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "job watch: reading the latest change failed")
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.inner.first_follower.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            loop {
                match changes_after(db, last).await {
                    Ok(rows) => {
                        let full = rows.len() as i64 >= PAGE;
                        for (id, seq, status) in &rows {
                            self.changed(id, status);
                            last = last.max(*seq);
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "job watch: reading changes failed");
                        break;
                    }
                }
            }
        }
    }

    async fn run_postgres(&self, db: &Db, shutdown: &CancellationToken) {
        let Some(url) = db.url() else {
            tracing::error!(
                "job watch: no database URL to listen on; streams fall back to their periodic checks"
            );
            return;
        };
        loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(url).await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = tokio::select! {
                () = shutdown.cancelled() => return,
                l = listener => match l {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "job watch: cannot listen; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                        continue;
                    }
                }
            };
            // Anything may have changed while nobody listened.
            self.everything_changed();
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match next {
                    Ok(Some(n)) => {
                        let (id, status) = n.payload().split_once(' ').unwrap_or((n.payload(), ""));
                        self.changed(id, status);
                    }
                    Ok(None) => {
                        tracing::warn!("job watch: the listening connection dropped; reconnecting");
                        self.everything_changed();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "job watch: listening failed; reconnecting");
                        break;
                    }
                }
                self.prune();
            }
        }
    }
}

async fn latest_seq(db: &Db) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(changed_seq), 0) FROM jobs")
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}

async fn changes_after(db: &Db, last: i64) -> sqlx::Result<Vec<(String, i64, String)>> {
    sqlx::query_as(
        "SELECT id, changed_seq, status FROM jobs WHERE changed_seq > $1 ORDER BY changed_seq LIMIT $2",
    )
    .bind(last)
    .bind(PAGE)
    .fetch_all(db.pool())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::temp_db;

    async fn insert_job(db: &Db, id: &str) {
        sqlx::query("INSERT INTO users (id, name, role, created_at) VALUES ('u', 'u', 'analyst', 0) ON CONFLICT DO NOTHING")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO datasets (id, owner_id, name, format, blob_key, row_count, byte_count, columns_json, created_at) VALUES ('d', 'u', 'd', 'csv', 'k', 0, 0, '[]', 0) ON CONFLICT DO NOTHING")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO jobs (id, owner_id, dataset_id, analysis_json, status, created_at) VALUES ($1, 'u', 'd', '{}', 'queued', 0)")
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn every_insert_and_update_takes_the_next_change_number() {
        let (_dir, db) = temp_db().await;
        insert_job(&db, "a").await;
        insert_job(&db, "b").await;
        sqlx::query("UPDATE jobs SET progress = 0.5 WHERE id = 'a'")
            .execute(db.pool())
            .await
            .unwrap();
        let rows = changes_after(&db, 0).await.unwrap();
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "a's update comes after b's insert");
        let seqs: Vec<i64> = rows.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(seqs, [2, 3]);
        // A statement touching several rows numbers each.
        sqlx::query("UPDATE jobs SET progress = 0.7")
            .execute(db.pool())
            .await
            .unwrap();
        let after: Vec<i64> = changes_after(&db, 3)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(after, [4, 5]);
    }

    #[tokio::test]
    async fn a_follower_is_woken_by_its_job_and_not_by_others() {
        let (_dir, db) = temp_db().await;
        insert_job(&db, "a").await;
        insert_job(&db, "b").await;
        let hub = JobWatch::new();
        let stop = CancellationToken::new();
        let feeding = tokio::spawn({
            let (hub, db, stop) = (hub.clone(), db.clone(), stop.clone());
            async move { hub.run(db, stop).await }
        });
        let mut a = hub.follow("a");
        assert_eq!(hub.followed(), 1);
        let update = |sql: &'static str| {
            let db = db.clone();
            async move { sqlx::query(sql).execute(db.pool()).await.unwrap() }
        };
        let within = Duration::from_secs(5);
        // Let the watcher read its starting point, then see both jobs once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        update("UPDATE jobs SET progress = 0.1 WHERE id = 'b'").await;
        update("UPDATE jobs SET progress = 0.1 WHERE id = 'a'").await;
        tokio::time::timeout(within, a.job.changed())
            .await
            .expect("a's change wakes its follower")
            .unwrap();
        a.queue_moved.mark_unchanged();
        // Progress is not a move in the queue, and b's change is not a's.
        update("UPDATE jobs SET progress = 0.2 WHERE id = 'b'").await;
        update("UPDATE jobs SET progress = 0.2 WHERE id = 'a'").await;
        tokio::time::timeout(within, a.job.changed())
            .await
            .expect("a's second change")
            .unwrap();
        assert!(
            !a.queue_moved.has_changed().unwrap(),
            "progress moved nothing in the queue"
        );
        update("UPDATE jobs SET status = 'running' WHERE id = 'b'").await;
        tokio::time::timeout(within, a.queue_moved.changed())
            .await
            .expect("b's start moves the queue")
            .unwrap();
        assert!(!a.job.has_changed().unwrap(), "b's change is not a's");
        drop(a);
        assert_eq!(hub.followed(), 0);
        stop.cancel();
        feeding.await.unwrap();
    }
}
