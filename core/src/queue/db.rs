//! The embedded adapter of [`JobQueue`]: leases are rows of `queue_messages`, written
//! in the database the jobs live in.

use super::{DeadLetter, Delivery, JobQueue, Tx};
use crate::clock::now_ms;
use crate::db::Db;
use crate::db::statements::{Param, Row, Statements, Step, fetch_on, run_steps};
use crate::error::{Error, Result};
use async_trait::async_trait;
use quarry_domain::QueueCounts;
use std::sync::Arc;
use std::time::Duration;

/// The embedded adapter: leases in the `queue_messages` table.
#[derive(Debug, Clone)]
pub struct DbQueue {
    db: Db,
    name: String,
    visibility: Duration,
    max_receives: u32,
    poll: Duration,
    /// The last receive found a message: the next one leases in a single statement
    /// (see [`DbQueue::try_receive`]).
    busy: Arc<std::sync::atomic::AtomicBool>,
}

const DELETE: &str =
    "DELETE FROM queue_messages WHERE seq = $1 AND receipt = $2 AND dead_at IS NULL";

const INSERT: &str = "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count) \
     VALUES ($1, $2, $3, $4, $4, 0)";

impl DbQueue {
    pub fn new(db: Db, name: &str, visibility: Duration, max_receives: u32) -> Self {
        Self {
            db,
            name: name.to_owned(),
            visibility,
            max_receives,
            poll: Duration::from_millis(100),
            busy: Arc::default(),
        }
    }

    /// Where the single-message statements run (see [`crate::db::statements`]).
    fn statements(&self) -> Result<Statements> {
        self.db.statements()
    }

    /// Dead-letters messages that were delivered `max_attempts` times and whose last
    /// lease has run out.
    async fn sweep(&self, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE queue_messages SET dead_at = $1, receipt = NULL \
             WHERE queue = $2 AND dead_at IS NULL AND visible_at <= $1 AND receive_count >= $3",
        )
        .bind(now)
        .bind(&self.name)
        .bind(i64::from(self.max_receives))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Leases the oldest visible message, if any, and runs `then` on the delivery in
    /// the lease's own transaction (see [`DbQueue::receive_then`]).
    ///
    /// While messages keep coming (the last receive found one) the lease is a single
    /// `UPDATE … WHERE seq = (oldest) RETURNING`. Otherwise, and once that finds
    /// nothing, a poll first only reads, so an idle receiver never takes SQLite's
    /// write lock, and the lease is one conditional `UPDATE` by primary key; either
    /// way two receivers never get the same delivery. A candidate delivered
    /// `max_receives` times already is dead-lettered on the way (the single-statement
    /// lease skips such messages, and the next read finds them).
    async fn try_receive<T>(
        &self,
        then: Option<&Then<'_, T>>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.busy.load(Relaxed) {
            if let Some(d) = self.lease_oldest(then).await? {
                return Ok(Some(d));
            }
            self.busy.store(false, Relaxed);
        }
        let found = self.read_then_lease(then).await?;
        self.busy.store(found.is_some(), Relaxed);
        Ok(found)
    }

    /// The lease in one statement; `None` if no message under the receive limit is
    /// visible (or, on Postgres, a concurrent receiver took the one chosen).
    async fn lease_oldest<T>(
        &self,
        then: Option<&Then<'_, T>>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        let token = receipt_token();
        let params = self.oldest_params(now_ms(), &token);
        self.lease(LEASE_OLDEST, &params, |row| leased(&token, row), then)
            .await
    }

    /// The parameters of [`LEASE_OLDEST`] at `now`, leasing with `token`.
    fn oldest_params<'a>(&'a self, now: i64, token: &'a str) -> [Param<'a>; 5] {
        [
            Param::Int(now + duration_ms(self.visibility)),
            Param::Text(token),
            Param::Text(&self.name),
            Param::Int(now),
            Param::Int(i64::from(self.max_receives)),
        ]
    }

    /// A read for the oldest visible message, then its lease by primary key.
    async fn read_then_lease<T>(
        &self,
        then: Option<&Then<'_, T>>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        let statements = self.statements()?;
        for _ in 0..16 {
            let now = now_ms();
            let candidate: Option<(i64, i64)> = statements
                .fetch_optional(
                    false,
                    "SELECT seq, receive_count FROM queue_messages WHERE queue = $1 \
                     AND dead_at IS NULL AND visible_at <= $2 ORDER BY sent_at, seq LIMIT 1",
                    &[Param::Text(&self.name), Param::Int(now)],
                )
                .await?;
            let Some((seq, count)) = candidate else {
                return Ok(None);
            };
            if count >= i64::from(self.max_receives) {
                statements
                    .execute(
                        "UPDATE queue_messages SET dead_at = $1, receipt = NULL \
                         WHERE seq = $2 AND dead_at IS NULL AND visible_at <= $1",
                        &[Param::Int(now), Param::Int(seq)],
                    )
                    .await?;
                continue;
            }
            let token = receipt_token();
            let params = [
                Param::Int(now + duration_ms(self.visibility)),
                Param::Text(&token),
                Param::Int(seq),
                Param::Int(now),
            ];
            let delivery =
                |(message_id, body, count, sent_at_ms): (String, String, i64, i64)| Delivery {
                    message_id,
                    receipt: format!("{seq}.{token}"),
                    body,
                    receive_count: u32::try_from(count).unwrap_or(u32::MAX),
                    sent_at_ms,
                };
            // Taken by another receiver between the read and the lease: look again.
            if let Some(leased) = self.lease(LEASE_BY_SEQ, &params, delivery, then).await? {
                return Ok(Some(leased));
            }
        }
        Ok(None)
    }

    /// Runs the lease statement `sql` (an `UPDATE … RETURNING` the row `R`), and
    /// `then` on its delivery in the same transaction where the statements run on the
    /// process's own connection; on the pool, the lease alone.
    async fn lease<R: Row, T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        delivery: impl Fn(R) -> Delivery,
        then: Option<&Then<'_, T>>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        let statements = self.statements()?;
        let Some(then) = then else {
            // Nothing to run with it: the lease alone, one statement.
            return Ok(statements
                .fetch_optional::<R>(true, sql, params)
                .await?
                .map(|row| (delivery(row), None)));
        };
        let leased = statements
            .local_transaction(|c| {
                // Nothing leased: nothing to commit.
                let Some(row) = fetch_on::<R>(c, sql, params)? else {
                    return Ok(None);
                };
                let d = delivery(row);
                let done = then(c, &d)?;
                Ok(Some((d, done)))
            })
            .await?;
        match leased {
            Some(leased) => Ok(leased),
            None => Ok(statements
                .fetch_optional::<R>(true, sql, params)
                .await?
                .map(|row| (delivery(row), None))),
        }
    }

    /// [`JobQueue::receive`], running `then` on the delivery in the lease's own
    /// transaction on SQLite (the job lifecycle starts the job there: one write
    /// instead of two). If `then` answers `None` the lease still commits (with what
    /// `then` changed: a guarded update that found no row changed nothing); if it
    /// fails, nothing does. On the pool `then` is not run: the delivery comes with
    /// `None`.
    pub async fn receive_then<T>(
        &self,
        wait: Duration,
        then: &Then<'_, T>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        self.receive_with(wait, Some(then)).await
    }

    /// Runs `before` (a worker's commit: its job's outcome and its message's delete)
    /// and then leases the oldest visible message and runs `then` on it, all in one
    /// transaction on the process's own SQLite connection: a worker's commit and the
    /// start of its next job are one write, not two. Nothing changes if `before` is
    /// fenced (a step that must change something changed nothing).
    pub async fn after_then_receive<T>(
        &self,
        before: &[Step<'_>],
        then: &Then<'_, T>,
    ) -> Result<AfterThen<T>> {
        let token = receipt_token();
        let params = self.oldest_params(now_ms(), &token);
        let ran = self
            .statements()?
            .local_transaction(|c| {
                if run_steps(c, before)?.is_none() {
                    return Ok(None);
                }
                let Some(row) = fetch_on::<LeasedRow>(c, LEASE_OLDEST, &params)? else {
                    return Ok(Some(None));
                };
                let d = leased(&token, row);
                let done = then(c, &d)?;
                Ok(Some(Some((d, done))))
            })
            .await?;
        Ok(match ran {
            None => AfterThen::Pool,
            Some(None) => AfterThen::Fenced,
            Some(Some(leased)) => {
                self.busy
                    .store(leased.is_some(), std::sync::atomic::Ordering::Relaxed);
                AfterThen::Done(leased)
            }
        })
    }

    /// [`DbQueue::receive_then`], or a plain receive without `then`.
    async fn receive_with<T>(
        &self,
        wait: Duration,
        then: Option<&Then<'_, T>>,
    ) -> Result<Option<(Delivery, Option<T>)>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(leased) = self.try_receive(then).await? {
                return Ok(Some(leased));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll.min(deadline - now)) => {}
                () = WAKE.notified() => {}
            }
        }
    }
}

/// What [`DbQueue::after_then_receive`] came to.
#[derive(Debug)]
pub enum AfterThen<T> {
    /// The statements run on sqlx's pool: nothing ran (commit, then receive).
    Pool,
    /// The steps before were fenced: nothing changed.
    Fenced,
    /// Committed, with the next delivery leased if one was visible (and what `then`
    /// made of it).
    Done(Option<(Delivery, Option<T>)>),
}

/// What [`DbQueue::receive_then`] runs on a delivery inside the lease's transaction.
pub type Then<'a, T> =
    dyn Fn(&rusqlite::Connection, &Delivery) -> rusqlite::Result<Option<T>> + Send + Sync + 'a;

/// A lease's answer: seq, id, body, receive count, sent at.
type LeasedRow = (i64, String, String, i64, i64);

/// The delivery a lease with `token` answered.
fn leased(token: &str, (seq, message_id, body, count, sent_at_ms): LeasedRow) -> Delivery {
    Delivery {
        message_id,
        receipt: format!("{seq}.{token}"),
        body,
        receive_count: u32::try_from(count).unwrap_or(u32::MAX),
        sent_at_ms,
    }
}

const LEASE_OLDEST: &str = "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = $1, \
     receipt = $2 WHERE seq = (SELECT seq FROM queue_messages WHERE queue = $3 \
     AND dead_at IS NULL AND visible_at <= $4 AND receive_count < $5 \
     ORDER BY sent_at, seq LIMIT 1) AND dead_at IS NULL AND visible_at <= $4 \
     RETURNING seq, id, body, receive_count, sent_at";

const LEASE_BY_SEQ: &str = "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = $1, \
     receipt = $2 WHERE seq = $3 AND dead_at IS NULL AND visible_at <= $4 \
     RETURNING id, body, receive_count, sent_at";

/// Wakes this process's [`DbQueue`] receivers: the one waiting polls at once instead
/// of after its poll interval (a worker whose parent announced a job, see
/// `crate::fleet::Fleet::wake`). Every receiver waiting now wakes, and one wake-up is
/// kept for the next wait if none was.
pub fn wake_receivers() {
    WAKE.notify_waiters();
    WAKE.notify_one();
}

static WAKE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// A new message's id: a version-4 UUID from the thread's generator (`uuid`'s own
/// asks the kernel for every one, a system call per message).
fn message_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A lease's token: 128 random bits, in hex.
fn receipt_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A receipt's row and token (`<seq>.<token>`, as the leases write it); one in any
/// other form names no row.
fn receipt_key(receipt: &str) -> (i64, &str) {
    receipt
        .split_once('.')
        .and_then(|(seq, token)| Some((seq.parse().ok()?, token)))
        .unwrap_or((-1, receipt))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl JobQueue for DbQueue {
    async fn send(&self, body: &str) -> Result<String> {
        let id = message_id();
        self.statements()?
            .execute(
                INSERT,
                &[
                    Param::Text(&id),
                    Param::Text(&self.name),
                    Param::Text(body),
                    Param::Int(now_ms()),
                ],
            )
            .await?;
        Ok(id)
    }

    async fn send_in(&self, tx: &mut Tx, body: &str) -> Result<bool> {
        sqlx::query(INSERT)
            .bind(message_id())
            .bind(&self.name)
            .bind(body)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }

    fn send_step(&self, body: &str) -> Option<Step<'static>> {
        Some(Step::new(
            INSERT,
            vec![
                Param::Owned(message_id()),
                Param::Owned(self.name.clone()),
                Param::Owned(body.to_owned()),
                Param::Int(now_ms()),
            ],
        ))
    }

    fn delete_step<'a>(&self, receipt: &'a str) -> Option<Step<'a>> {
        let (seq, token) = receipt_key(receipt);
        Some(Step::new(DELETE, vec![Param::Int(seq), Param::Text(token)]))
    }

    async fn hand_back(&self, delivery: &Delivery) -> Result<()> {
        let (seq, token) = receipt_key(&delivery.receipt);
        self.statements()?
            .execute(
                "UPDATE queue_messages SET visible_at = $1, receipt = NULL, \
                 receive_count = CASE WHEN receive_count > 0 THEN receive_count - 1 ELSE 0 END \
                 WHERE seq = $2 AND receipt = $3 AND dead_at IS NULL",
                &[Param::Int(now_ms()), Param::Int(seq), Param::Text(token)],
            )
            .await?;
        Ok(())
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.receive_with::<()>(wait, None).await?.map(|(d, _)| d))
    }

    fn as_db_queue(&self) -> Option<&DbQueue> {
        Some(self)
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let now = now_ms();
        let (seq, token) = receipt_key(receipt);
        let done = self
            .statements()?
            .execute(
                "UPDATE queue_messages SET visible_at = $1 \
                 WHERE seq = $2 AND receipt = $3 AND dead_at IS NULL AND visible_at > $4",
                &[
                    Param::Int(now + duration_ms(visibility)),
                    Param::Int(seq),
                    Param::Text(token),
                    Param::Int(now - 1),
                ],
            )
            .await?;
        if done == 0 {
            return Err(Error::Conflict(
                "the lease on this message was lost".to_owned(),
            ));
        }
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.statements()?
            .execute(DELETE, &{
                let (seq, token) = receipt_key(receipt);
                [Param::Int(seq), Param::Text(token)]
            })
            .await?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<()> {
        let (seq, token) = receipt_key(&delivery.receipt);
        self.statements()?
            .execute(
                "UPDATE queue_messages SET dead_at = $1, receipt = NULL \
                 WHERE seq = $2 AND receipt = $3 AND dead_at IS NULL",
                &[Param::Int(now_ms()), Param::Int(seq), Param::Text(token)],
            )
            .await?;
        Ok(())
    }

    async fn counts(&self) -> Result<QueueCounts> {
        let now = now_ms();
        self.sweep(now).await?;
        let (visible, in_flight, dead): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND visible_at <= $1 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND visible_at > $1 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
             FROM queue_messages WHERE queue = $2",
        )
        .bind(now)
        .bind(&self.name)
        .fetch_one(self.db.pool())
        .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(QueueCounts {
            visible: n(visible),
            in_flight: n(in_flight),
            dead: n(dead),
        })
    }

    async fn dead_letters(&self, after: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let (at, seq) = after
            .and_then(|c| c.split_once('|'))
            .map(|(at, seq)| {
                (
                    at.parse::<i64>().unwrap_or(-1),
                    seq.parse::<i64>().unwrap_or(-1),
                )
            })
            .unwrap_or((-1, -1));
        let rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, id, body, receive_count, dead_at FROM queue_messages \
             WHERE queue = $1 AND dead_at IS NOT NULL \
             AND (dead_at > $2 OR (dead_at = $2 AND seq > $3)) ORDER BY dead_at, seq LIMIT $4",
        )
        .bind(&self.name)
        .bind(at)
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, message_id, body, count, dead_at)| DeadLetter {
                cursor: format!("{dead_at}|{seq}"),
                handle: seq.to_string(),
                message_id,
                body,
                receive_count: u32::try_from(count).unwrap_or(u32::MAX),
            })
            .collect())
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<()> {
        sqlx::query(
            "UPDATE queue_messages SET dead_at = NULL, receipt = NULL, receive_count = 0, \
             visible_at = $1 WHERE seq = $2 AND queue = $3 AND dead_at IS NOT NULL",
        )
        .bind(now_ms())
        .bind(letter.handle.parse::<i64>().unwrap_or(-1))
        .bind(&self.name)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

#[cfg(test)]
mod tests;
