//! Group commit on a process's own SQLite connection: writes of the process that
//! arrive together share one transaction (see [`LocalConn::write`]).

use super::{Connection, LocalConn, Pause, is_busy, rollback};
use crate::error::Result;

/// Writes sharing one transaction (see [`LocalConn::write`]): the first ran in it
/// directly, each that joined in a savepoint of its own; all but the last wait for
/// the commit, which tells them how it went.
pub(super) struct Group {
    pub(super) members: usize,
    pub(super) committed: tokio::sync::watch::Sender<Option<bool>>,
}

impl Group {
    /// Ends the group: every member waiting hears whether it committed.
    fn close(self, committed: bool) {
        self.committed.send_replace(Some(committed));
    }
}

/// The most writes one transaction groups: the first of them waits for the rest.
const GROUP_MAX: usize = 64;

impl LocalConn {
    /// Runs the write `f` in a write transaction: its changes are kept if it answers
    /// `Some`, undone if it answers `None` or fails. A `single` statement (atomic by
    /// itself) with no other write about runs in SQLite's own transaction, and a write
    /// that begins a transaction runs in it directly; only writes that join one run
    /// in a savepoint of their own, so a write alone costs what it did before groups.
    /// Writes of this process that arrive together share the transaction (group
    /// commit): one that finds another waiting for the connection leaves the
    /// transaction open for it, and the last commits them all. Each returns once the
    /// commit has happened, with an error if it failed; so every caller sees its write
    /// durable (or not) as if alone, while the database takes one commit, and every
    /// other process one turn of the write lock, for the group. A write waits while a
    /// checkpoint runs, and again after a pause while another connection holds
    /// SQLite's lock, for up to [`BUSY_FOR`](super::BUSY_FOR).
    pub(super) async fn write<T>(
        &self,
        single: bool,
        f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut pause = Pause::new();
        loop {
            let open = self.gate.read().await;
            let turn = match self.turnstile.as_deref() {
                Some(t) if self.contended() => Some(t.enter().await),
                _ => None,
            };
            match self.write_once(single, &f) {
                Wrote::Busy(e) => {
                    drop((turn, open));
                    if pause.again(self).await {
                        continue;
                    }
                    return Err(self.failed(e));
                }
                Wrote::Failed(e) => return Err(e),
                Wrote::Done(outcome) => return outcome.map_err(|e| self.failed(e)),
                Wrote::Committed(outcome) => {
                    drop((turn, open));
                    self.wrote();
                    return outcome.map_err(|e| self.failed(e));
                }
                Wrote::Joined(mut committed, outcome) => {
                    // Another write is about to take the connection: it commits, or
                    // the one after it does.
                    drop((turn, open));
                    let heard = committed
                        .wait_for(Option::is_some)
                        .await
                        .map(|v| *v == Some(true));
                    return match heard {
                        Ok(true) => outcome.map_err(|e| self.failed(e)),
                        _ => Err(anyhow::anyhow!(
                            "job-path write on {}: the transaction it shared with others failed to commit; nothing was written",
                            self.path.display()
                        )
                        .into()),
                    };
                }
            }
        }
    }

    /// One try of [`LocalConn::write`] on the connection: join the open transaction or
    /// begin one, run `f` in its savepoint, and commit unless another write waits.
    fn write_once<T>(
        &self,
        single: bool,
        f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<Option<T>>,
    ) -> Wrote<T> {
        use std::sync::atomic::Ordering::SeqCst;
        // Announced before taking the connection, and taken without a pause in
        // between: a write that leaves the transaction open for this one is joined at
        // once.
        self.waiting.fetch_add(1, SeqCst);
        let mut conn = self.lock();
        self.waiting.fetch_sub(1, SeqCst);
        lost_group(&mut conn);
        if conn.1.is_none() {
            end_abandoned(&mut conn);
            if single && self.waiting.load(SeqCst) == 0 {
                // One statement, and no other write about: SQLite's own transaction.
                return match f(&conn.0) {
                    Err(e) if is_busy(&e) => Wrote::Busy(e),
                    outcome => Wrote::Committed(outcome),
                };
            }
            match conn
                .0
                .prepare_cached("BEGIN IMMEDIATE")
                .and_then(|mut b| b.raw_execute())
            {
                Ok(_) => {
                    conn.1 = Some(Group {
                        members: 0,
                        committed: tokio::sync::watch::Sender::new(None),
                    });
                }
                Err(e) if is_busy(&e) => return Wrote::Busy(e),
                Err(e) => return Wrote::Failed(self.failed(e)),
            }
        }
        let first = conn.1.as_ref().is_some_and(|g| g.members == 0);
        let mut member = Member { conn };
        let outcome = if first {
            // Alone in the transaction so far: no savepoint needed, and one that is
            // fenced or fails rolls it all back (no other write has joined yet).
            let outcome = f(&member.conn.0);
            if !matches!(outcome, Ok(Some(_))) {
                member.abort();
                return Wrote::Done(outcome);
            }
            outcome
        } else {
            member.run(&f)
        };
        let Some(group) = member.conn.1.as_mut() else {
            // An error SQLite answers by ending the transaction (a full disk, an I/O
            // error) ended everyone's: `run` told the others.
            let cause = outcome.err().map(|e| e.to_string()).unwrap_or_default();
            return Wrote::Failed(
                anyhow::anyhow!(
                    "job-path write on {}: SQLite ended the transaction ({cause}); nothing was written",
                    self.path.display()
                )
                .into(),
            );
        };
        group.members += 1;
        if self.waiting.load(SeqCst) > 0 && group.members < GROUP_MAX {
            return Wrote::Joined(group.committed.subscribe(), outcome);
        }
        match member.commit() {
            Ok(()) => Wrote::Committed(outcome),
            Err(e) => Wrote::Failed(self.failed(e)),
        }
    }
}

/// What one try of a write came to.
enum Wrote<T> {
    /// Another connection holds SQLite's lock: try again after a pause.
    Busy(rusqlite::Error),
    /// Nothing was written.
    Failed(crate::error::Error),
    /// Committed, with what `f` answered.
    Committed(rusqlite::Result<Option<T>>),
    /// Nothing written (`f` answered `None` or failed, alone in its transaction).
    Done(rusqlite::Result<Option<T>>),
    /// In a group another write will commit: wait to hear how it went.
    Joined(
        tokio::sync::watch::Receiver<Option<bool>>,
        rusqlite::Result<Option<T>>,
    ),
}

/// A write running in the group's transaction. Should it panic, dropping this while
/// unwinding rolls the whole transaction back and tells the group's other members
/// it failed: no one commits half of a write.
struct Member<'a> {
    conn: std::sync::MutexGuard<'a, Connection>,
}

impl Member<'_> {
    /// `f` in a savepoint: released if it answers `Some`, rolled back otherwise. If
    /// SQLite ended the whole transaction meanwhile, the group is closed as failed.
    fn run<T>(
        &mut self,
        f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<Option<T>>,
    ) -> rusqlite::Result<Option<T>> {
        let c = &self.conn.0;
        let outcome = c
            .prepare_cached("SAVEPOINT member")
            .and_then(|mut s| s.raw_execute())
            .and_then(|_| f(c));
        let ended = match &outcome {
            Ok(Some(_)) => c
                .prepare_cached("RELEASE member")
                .and_then(|mut s| s.raw_execute()),
            _ => c
                .prepare_cached("ROLLBACK TO member")
                .and_then(|mut s| s.raw_execute())
                .and_then(|_| c.prepare_cached("RELEASE member"))
                .and_then(|mut s| s.raw_execute()),
        };
        if c.is_autocommit() {
            if let Some(group) = self.conn.1.take() {
                group.close(false);
            }
        } else if let Err(e) = ended {
            // A savepoint that could not be ended leaves the transaction in doubt.
            self.abort();
            return Err(e);
        }
        outcome
    }

    /// Commits the group's transaction and tells its members how it went.
    fn commit(&mut self) -> rusqlite::Result<()> {
        let done = self
            .conn
            .0
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.raw_execute());
        if done.is_err() {
            rollback(&self.conn.0);
        }
        if let Some(group) = self.conn.1.take() {
            group.close(done.is_ok());
        }
        done.map(|_| ())
    }

    /// Rolls the group's transaction back; its members hear it failed.
    fn abort(&mut self) {
        rollback(&self.conn.0);
        if let Some(group) = self.conn.1.take() {
            group.close(false);
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abort();
        }
    }
}

/// Closes, as failed, a group whose transaction SQLite ended under it (an I/O error
/// in a read that ran in it): its members hear that nothing was written.
pub(super) fn lost_group(conn: &mut Connection) {
    if conn.0.is_autocommit()
        && let Some(group) = conn.1.take()
    {
        group.close(false);
    }
}

/// Ends a transaction no group owns: one a panic left open (outside a [`Member`])
/// would take every later statement into it, never committed, with the write lock
/// held.
pub(super) fn end_abandoned(conn: &mut Connection) {
    if conn.1.is_none() {
        rollback(&conn.0);
    }
}
