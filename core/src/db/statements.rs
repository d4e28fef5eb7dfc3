//! Where the job path's statements run: the queue's, the job lifecycle's (a
//! submit, a start, a commit, a lease's end) and the reads every request or job makes
//! (a job, a token, a dataset).
//!
//! On Postgres they go through the pool. On SQLite each process has a connection of
//! its own for them ([`LocalConn`], one per [`Db`]), on which a statement runs in the
//! calling thread: sqlx runs every SQLite statement on a worker thread of its own and
//! waits for the answer, a round trip that costs more than the statement (the
//! benchmark's bare statements through sqlx reach a fifth of the same statements
//! here). A transaction through sqlx holds SQLite's one write lock for all of its
//! round trips, and every other process's writer waits that long; on this
//! connection a transaction ([`Statements::transaction`]) is a list of [`Step`]s run
//! in one go, so the lock is held only while its statements run.
//!
//! Writes of one process that arrive together share a transaction (group commit,
//! [`LocalConn::write`]): each runs in a savepoint of its own, so one that is fenced
//! or fails undoes only its own changes, and the last commits them all; each caller
//! returns only once that commit is done. Concurrent submits in the server, and a
//! worker's slots, then write the pages they share (the `jobs` table's and its
//! indexes' last leaves) once per group instead of once each, and the other processes
//! wait for one turn of the write lock instead of several.
//!
//! The connection never waits inside SQLite: its busy timeout is zero, and a
//! statement that finds the write lock taken (another process commits) is tried again
//! after an asynchronous sleep, so a runtime thread is held only while a statement
//! runs (tens of microseconds on the queue's indexes). Its automatic checkpoint is
//! off, since a checkpoint writes the database file and syncs it: every
//! [`CHECKPOINT_EVERY`] writes a `RESTART` checkpoint runs on a blocking thread and a
//! connection of its own, while this process's writes wait for it asynchronously
//! (its reads go on: they do not keep a `RESTART` checkpoint waiting). It copies the
//! whole log, so the next write starts the log from its beginning. Two ways measured not to work: a passive checkpoint while the queue
//! kept writing never caught up, so the log grew with every write (42 MB after
//! 6,000); and a `RESTART` one on a pool connection, while the queue's statements
//! kept trying, held the write lock as it waited, most likely for readers to leave the
//! log (each try of a statement reads it), until the statements gave up after 10 s.
//! Hence the gate that keeps this process's writes out while a checkpoint runs,
//! and a checkpoint that waits at most [`CHECKPOINT_WAIT`]: while it waits it holds
//! the write lock, so every writer of every process waits as long.
//!
//! With the turnstile on, while writers of several processes meet (for a second after
//! a write found the lock taken), a write first waits its turn at the writers'
//! [`turnstile`] (a lock on a file beside the database, which every process's writers
//! take in turn), so a writer that would find SQLite's lock taken sleeps in the
//! kernel until it is free, instead of pausing a whole timer tick and trying again.
//! It is off unless `QUARRY_SQLITE_TURNSTILE=on`: measured against the default, it no
//! longer pays.
//!
//! Each statement is written once, with `$1`… placeholders, and run by either side;
//! [`Row`] reads its answer from either.

use crate::db::Db;
use crate::error::Result;
use anyhow::Context as _;
use group::{Group, end_abandoned, lost_group};
use sqlx::Row as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use turnstile::Turnstile;

mod group;
mod steps;
mod turnstile;

pub(crate) use steps::stored_row;
pub use steps::{Cell, Done, Param, Row, Step, When};

/// Writes on a process's own connection between two checkpoints.
pub const CHECKPOINT_EVERY: u64 = 1000;

/// How long writes keep taking the turnstile after one found SQLite's lock taken.
const CONTENDED_FOR: Duration = Duration::from_secs(1);

/// How long a checkpoint waits for the write lock and for readers of older snapshots;
/// one that found the database busy is tried again [`CHECKPOINT_EVERY`] writes later.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(250);

/// How long a statement keeps trying while other processes hold SQLite's write lock
/// (the pool's `busy_timeout`).
const BUSY_FOR: Duration = Duration::from_secs(10);

/// Runs the job path's statements: on the pool, or on the process's own SQLite
/// connection (see [`Db::statements`]).
#[derive(Debug, Clone)]
pub enum Statements {
    Pool(Db),
    Local(Arc<LocalConn>),
}

impl Statements {
    /// Runs `steps` in one write transaction (on SQLite one that takes the write lock
    /// at once), in order, each as its [`When`] says. `None`, with nothing changed,
    /// if a step that [must change](Step::must_change) a row changed none.
    pub async fn transaction(&self, steps: &[Step<'_>]) -> Result<Option<Vec<Done>>> {
        match self {
            Statements::Pool(db) => {
                let mut tx = db.begin_write().await?;
                let mut done = Vec::with_capacity(steps.len());
                for step in steps {
                    if !runs(step, &done) {
                        done.push(Done::default());
                        continue;
                    }
                    let query = bind(sqlx::query(step.sql), &step.params);
                    let outcome = if step.returns {
                        let row = query.fetch_optional(&mut *tx).await?;
                        match row {
                            Some(row) => Done {
                                ran: true,
                                changed: 1,
                                value: Some(row.try_get::<i64, _>(0)?),
                            },
                            None => Done {
                                ran: true,
                                ..Done::default()
                            },
                        }
                    } else {
                        Done {
                            ran: true,
                            changed: query.execute(&mut *tx).await?.rows_affected(),
                            value: None,
                        }
                    };
                    if step.must_change && outcome.changed == 0 {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    done.push(outcome);
                }
                tx.commit().await?;
                Ok(Some(done))
            }
            Statements::Local(conn) => conn.write(false, |c| run_steps(c, steps)).await,
        }
    }

    /// Runs `f` in one write transaction on the process's own SQLite connection, and
    /// commits what it did if it answers `Some` (nothing changes if it answers `None`
    /// or fails). `Ok(None)` without running it on the pool, where the caller runs
    /// its statements one by one.
    pub async fn local_transaction<T>(
        &self,
        f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<Option<T>>,
    ) -> Result<Option<Option<T>>> {
        match self {
            Statements::Pool(_) => Ok(None),
            Statements::Local(conn) => conn.write(false, &f).await.map(Some),
        }
    }

    /// Runs a statement that returns no rows; the rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        match self {
            Statements::Pool(db) => Ok(bind(sqlx::query(sql), params)
                .execute(db.pool())
                .await?
                .rows_affected()),
            Statements::Local(conn) => Ok(conn
                .write(true, |c| {
                    let mut statement = prepared(c, sql, params)?;
                    statement.raw_execute().map(|n| Some(n as u64))
                })
                .await?
                .unwrap_or(0)),
        }
    }

    /// Runs a statement that returns at most one row (a `SELECT … LIMIT 1`, or an
    /// `UPDATE … RETURNING` by key); `write` says whether it can change anything.
    pub async fn fetch_optional<R: Row>(
        &self,
        write: bool,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<R>> {
        match self {
            Statements::Pool(db) => match bind(sqlx::query(sql), params)
                .fetch_optional(db.pool())
                .await?
            {
                Some(row) => Ok(Some(R::from_any(&row)?)),
                None => Ok(None),
            },
            Statements::Local(conn) if write => Ok(conn
                .write(true, |c| fetch_on(c, sql, params).map(Some))
                .await?
                .flatten()),
            Statements::Local(conn) => conn.read(|c| fetch_on(c, sql, params)).await,
        }
    }
}

/// [`Statements::fetch_optional`] on a connection, within a
/// [`Statements::local_transaction`].
pub fn fetch_on<R: Row>(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> rusqlite::Result<Option<R>> {
    let mut statement = prepared(c, sql, params)?;
    let mut rows = statement.raw_query();
    let first = match rows.next()? {
        Some(row) => Some(R::from_sqlite(row)?),
        None => None,
    };
    // RETURNING answers after every change is made; stepping to the end finishes the
    // statement before the connection is let go.
    while rows.next()?.is_some() {}
    Ok(first)
}

/// Whether `step` runs after the steps `done`.
fn runs(step: &Step<'_>, done: &[Done]) -> bool {
    match step.when {
        When::Always => true,
        When::Changed(i) => done.get(i).is_some_and(|d| d.changed > 0),
        When::Returned(i, value) => done.get(i).is_some_and(|d| d.value == Some(value)),
    }
}

/// The steps of a transaction on the connection, within `BEGIN … COMMIT`; `None` when
/// a step that must change something changed nothing (the caller rolls back).
pub(crate) fn run_steps(
    c: &rusqlite::Connection,
    steps: &[Step<'_>],
) -> rusqlite::Result<Option<Vec<Done>>> {
    let mut done = Vec::with_capacity(steps.len());
    for step in steps {
        if !runs(step, &done) {
            done.push(Done::default());
            continue;
        }
        let mut statement = prepared(c, step.sql, &step.params)?;
        let outcome = if step.returns {
            let mut rows = statement.raw_query();
            let value = match rows.next()? {
                Some(row) => Some(row.get::<_, i64>(0)?),
                None => None,
            };
            while rows.next()?.is_some() {}
            Done {
                ran: true,
                changed: u64::from(value.is_some()),
                value,
            }
        } else {
            Done {
                ran: true,
                changed: statement.raw_execute()? as u64,
                value: None,
            }
        };
        if step.must_change && outcome.changed == 0 {
            return Ok(None);
        }
        done.push(outcome);
    }
    Ok(Some(done))
}

/// Ends a failed transaction; a connection whose rollback failed has none open.
fn rollback(c: &rusqlite::Connection) {
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: &'q [Param<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        query = match p {
            Param::Int(v) => query.bind(*v),
            Param::Real(v) => query.bind(*v),
            Param::Text(v) => query.bind(*v),
            Param::Owned(v) => query.bind(v.clone()),
            Param::Null => query.bind(None::<String>),
            Param::Blob(v) => query.bind(v.as_ref().map(|b| b.to_vec())),
        };
    }
    query
}

/// The cached statement for `sql` with `params` bound to `$1`, `$2`… by name (SQLite
/// numbers `$N` placeholders in the order they first appear, not by `N`).
fn prepared<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    const NAMES: [&str; 12] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12",
    ];
    let mut statement = conn.prepare_cached(sql)?;
    for (i, p) in params.iter().enumerate() {
        let name = NAMES.get(i).copied().unwrap_or("$?");
        let index = statement
            .parameter_index(name)?
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?;
        statement.raw_bind_parameter(index, p)?;
    }
    Ok(statement)
}

/// A process's own connection to a SQLite file, for the job path's writes.
#[derive(Debug)]
pub struct LocalConn {
    path: PathBuf,
    conn: std::sync::Mutex<Connection>,
    /// Statements hold it shared; a checkpoint holds it alone, so this process's
    /// statements wait for it (asynchronously) instead of starving it of the lock.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Where this process's writers queue with every other process's (see
    /// [`turnstile`]).
    turnstile: Option<Arc<Turnstile>>,
    /// Until when (ms after `epoch`) writes take the turnstile.
    contended_until: AtomicU64,
    epoch: std::time::Instant,
    writes: AtomicU64,
    checkpointing: Arc<AtomicBool>,
    /// This process's writes between the checkpoint gate and the connection: while
    /// any waits, a write leaves its transaction open for it to join.
    waiting: std::sync::atomic::AtomicUsize,
}

/// `rusqlite::Connection` with a `Debug` that names nothing inside it, and the group
/// of writes its open transaction holds, if any.
struct Connection(rusqlite::Connection, Option<Group>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

/// Opens the (migrated) database file `path` for the job path: no waiting inside SQLite,
/// no automatic checkpoints.
fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::ZERO)?;
    c.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
    )?;
    // The job path's distinct statements (a few dozen), kept prepared.
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

impl LocalConn {
    /// Opens the (migrated) database file `path`; its writers take the
    /// [`turnstile`] when `QUARRY_SQLITE_TURNSTILE=on`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::opened(path, turnstile::wanted())
    }

    /// [`LocalConn::open`], its writers taking the turnstile or not.
    pub(crate) fn opened(path: &Path, with_turnstile: bool) -> Result<Self> {
        let conn =
            open(path).with_context(|| format!("opening {} for the job path", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            conn: std::sync::Mutex::new(Connection(conn, None)),
            gate: Arc::default(),
            turnstile: with_turnstile
                .then(|| Turnstile::open(path).map(Arc::new))
                .flatten(),
            contended_until: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            writes: AtomicU64::new(0),
            checkpointing: Arc::default(),
            waiting: Default::default(),
        })
    }

    /// Runs the read `f` on the connection, again after a pause while SQLite says
    /// another connection holds the lock, for up to [`BUSY_FOR`]. Reads do not wait
    /// for a checkpoint to finish: a `RESTART` checkpoint waits only for readers that
    /// were reading the log before it copied it, and one that starts now reads the
    /// database file (the server's job reads and token checks run here and must not
    /// stall behind one). A read while this process's writes share an open
    /// transaction reads in it.
    async fn read<T>(&self, f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut pause = Pause::new();
        loop {
            let outcome = {
                let mut conn = self.lock();
                end_abandoned(&mut conn);
                let read = f(&conn.0);
                lost_group(&mut conn);
                read
            };
            match outcome {
                Err(e) if is_busy(&e) && pause.again(self).await => {}
                done => return done.map_err(|e| self.failed(e)),
            }
        }
    }

    /// The connection, whoever held it last (a panic while holding it is handled by
    /// [`Member`] and [`end_abandoned`]).
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failed(&self, e: rusqlite::Error) -> crate::error::Error {
        anyhow::Error::new(e)
            .context(format!("job-path statement on {}", self.path.display()))
            .into()
    }

    /// Whether this process's writes take the turnstile now: for [`CONTENDED_FOR`]
    /// after one found SQLite's lock taken. A process that writes alone (the queue's
    /// own benchmark, a quiet server) spends no system call on it.
    fn contended(&self) -> bool {
        self.epoch.elapsed().as_millis() < u128::from(self.contended_until.load(Ordering::Relaxed))
    }

    fn contended_now(&self) {
        let until = self.epoch.elapsed() + CONTENDED_FOR;
        let until = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.contended_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Counts a write, and every [`CHECKPOINT_EVERY`] writes starts a checkpoint
    /// (one at a time).
    fn wrote(&self) {
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(CHECKPOINT_EVERY) || self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (path, gate) = (self.path.clone(), Arc::clone(&self.gate));
        let turnstile = self.turnstile.clone();
        let checkpointing = Arc::clone(&self.checkpointing);
        tokio::spawn(async move {
            let closed = gate.write_owned().await;
            let done = tokio::task::spawn_blocking(move || {
                let _closed = closed;
                // Other processes' writers wait at the turnstile, not in busy retries.
                let _turn = turnstile.as_deref().and_then(Turnstile::block);
                checkpoint(&path)
            })
            .await;
            match done {
                Ok(Ok((false, _))) => {}
                Ok(Ok((true, frames))) => {
                    tracing::info!(
                        frames,
                        "the queue's checkpoint found the database busy: the next one tries again"
                    );
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "checkpointing the queue's writes"),
                Err(e) => tracing::warn!(error = %e, "the queue's checkpoint stopped"),
            }
            checkpointing.store(false, Ordering::Release);
        });
    }
}

/// The pauses of a statement that found SQLite's lock taken by another connection.
struct Pause {
    started: tokio::time::Instant,
    next: Duration,
}

impl Pause {
    fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            next: Duration::from_micros(500),
        }
    }

    /// Pauses before the next try; `false` (no pause) once [`BUSY_FOR`] has passed.
    async fn again(&mut self, conn: &LocalConn) -> bool {
        if self.started.elapsed() >= BUSY_FOR {
            return false;
        }
        conn.contended_now();
        let slept = tokio::time::Instant::now();
        tokio::time::sleep(self.next).await;
        LOCK_WAITS.fetch_add(1, Ordering::Relaxed);
        LOCK_WAITED_US.fetch_add(
            u64::try_from(slept.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.next = (self.next * 2).min(Duration::from_millis(20));
        true
    }
}

/// How often this process's statements found another connection holding SQLite's
/// lock and paused, and how long those pauses took in all: logged when a worker or
/// the server stops, to tell lock waits from work.
pub fn lock_waits() -> (u64, Duration) {
    (
        LOCK_WAITS.load(Ordering::Relaxed),
        Duration::from_micros(LOCK_WAITED_US.load(Ordering::Relaxed)),
    )
}

static LOCK_WAITS: AtomicU64 = AtomicU64::new(0);
static LOCK_WAITED_US: AtomicU64 = AtomicU64::new(0);

/// A `RESTART` checkpoint of `path` on a connection of its own, waiting up to
/// [`CHECKPOINT_WAIT`] for other processes; whether it found the database busy, and
/// the frames in the log.
fn checkpoint(path: &Path) -> rusqlite::Result<(bool, i64)> {
    let c = rusqlite::Connection::open(path)?;
    c.busy_timeout(CHECKPOINT_WAIT)?;
    c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        Ok((row.get::<_, i64>(0)? != 0, row.get::<_, i64>(1)?))
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests;
