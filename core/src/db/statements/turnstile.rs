//! The writers' turnstile: an advisory lock on a file beside the database that every
//! process's job-path writers take, one after the other, before SQLite's own write
//! lock.
//!
//! SQLite's write lock cannot be waited on: a writer that finds it taken is told
//! "busy" and must try again later, and the connection's pause (tokio's timer counts
//! whole milliseconds) is ten times as long as the transaction it waited for. With
//! the server and two workers each writing a few thousand times a second, those
//! pauses were the idle third of the machine in the no-op benchmark. A lock on a
//! file can be waited on: the kernel wakes the next waiter the moment the holder lets
//! go. The wait happens on a blocking thread, never on a runtime thread.
//!
//! It only orders writers; it guards nothing. SQLite's lock still decides, so a
//! writer that does not take the turnstile (a statement through the pool, a process
//! of an older release) only costs a busy retry, as before.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

/// `on` in this variable: writers take the turnstile (off by default since
/// 2026-12-07: once a worker's commit also started its next job, the server's submits
/// waiting their turn behind the workers cost more than the turnstile saved; the
/// benchmark measures it beside the default in the same run).
pub const VAR: &str = "QUARRY_SQLITE_TURNSTILE";

/// Whether this process's writers take the turnstile ([`VAR`]).
pub(super) fn wanted() -> bool {
    std::env::var_os(VAR).is_some_and(|v| v == "on")
}

/// One per [`super::LocalConn`].
#[derive(Debug)]
pub(super) struct Turnstile {
    file: Arc<File>,
    /// This process's writers, one at a time and in turn: the file lock belongs to
    /// the open file, which all of them share.
    inside: tokio::sync::Mutex<()>,
}

/// A writer's turn; the next one's begins when it is dropped.
#[derive(Debug)]
pub(super) struct Turn<'a> {
    // Fields drop in this order: the file lock is let go before the next writer of
    // this process may take it (the lock belongs to the open file, so letting it go
    // after would let go of that writer's turn).
    _held: Option<Held>,
    _inside: tokio::sync::MutexGuard<'a, ()>,
}

/// The file lock, released when dropped (also when a waiter gave up before it came).
#[derive(Debug)]
pub(super) struct Held(Arc<File>);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Turnstile {
    /// The turnstile of the database at `db_path`; `None` if its lock file cannot be
    /// opened (a read-only directory, say): writers then meet at SQLite's lock alone.
    pub(super) fn open(db_path: &Path) -> Option<Self> {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".writers");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .inspect_err(|e| tracing::warn!(path = ?name, error = %e, "no writers' turnstile: writers will meet at SQLite's lock"))
            .ok()?;
        Some(Self {
            file: Arc::new(file),
            inside: tokio::sync::Mutex::new(()),
        })
    }

    /// Waits for this writer's turn.
    pub(super) async fn enter(&self) -> Turn<'_> {
        let inside = self.inside.lock().await;
        let held = match self.file.try_lock() {
            Ok(()) => Some(Held(Arc::clone(&self.file))),
            Err(TryLockError::WouldBlock) => self.wait().await,
            Err(TryLockError::Error(e)) => {
                tracing::debug!(error = %e, "the writers' turnstile failed: going on without it");
                None
            }
        };
        Turn {
            _held: held,
            _inside: inside,
        }
    }

    /// Takes the lock on a blocking thread. If this future is dropped first, the lock
    /// is let go as soon as it comes.
    async fn wait(&self) -> Option<Held> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || match file.lock() {
            // A refused send hands the lock back, and so does a receiver dropped later.
            Ok(()) => drop(tx.send(Held(file))),
            Err(e) => tracing::debug!(error = %e, "waiting at the writers' turnstile failed"),
        });
        rx.await.ok()
    }

    /// Takes the lock on this (blocking) thread, for a checkpoint's connection.
    pub(super) fn block(&self) -> Option<Held> {
        self.file.lock().ok().map(|()| Held(Arc::clone(&self.file)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two turnstiles on one database behave as two processes': each has an open file
    /// of its own.
    fn two() -> (tempfile::TempDir, Turnstile, Turnstile) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("q.db");
        let ours = Turnstile::open(&db).expect("lock file");
        let theirs = Turnstile::open(&db).expect("lock file");
        (dir, ours, theirs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_for_another_processs_turn_and_gets_it_when_that_ends() {
        let (_dir, ours, theirs) = two();
        let held = theirs.enter().await;
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let _turn = ours.enter().await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "entered while another held the turn"
        );
        drop(held);
        let waited = waiting.await.expect("the waiter");
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_gives_up_leaves_the_turn_free() {
        let (_dir, ours, theirs) = two();
        let held = theirs.enter().await;
        // Gives up while the other holds the turn; its blocking thread gets the lock
        // later, with nobody to hand it to.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), ours.enter()).await;
        assert!(gave_up.is_err(), "entered while another held the turn");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let entered = tokio::time::timeout(Duration::from_secs(5), theirs.enter()).await;
        assert!(
            entered.is_ok(),
            "the lock a waiter gave up on was never let go"
        );
    }
}
