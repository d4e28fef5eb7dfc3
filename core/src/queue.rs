//! The job-queue port, with Amazon SQS semantics, and its embedded adapter.
//!
//! * `send` durably records a message; `receive` long-polls and leases one message for
//!   the queue's visibility timeout, counting the delivery;
//! * `change_visibility` extends (heartbeat) or shortens (retry later) a lease;
//! * `hand_back` gives a delivery back without counting it (a worker shutting down);
//! * `delete` acknowledges; a message whose lease runs out is delivered again;
//! * a message received `max_receives` times and not deleted is dead-lettered instead
//!   of being delivered once more. That is a backstop: the job row's attempt count
//!   decides when a job has failed for good (see `crate::lifecycle`), and
//!   [`backstop_receives`] sets the queue's limit above it.
//!
//! The one message the queue carries is [`JobMessage`]; every sender and receiver
//! uses it. Leases of the embedded queue are rows in the database, so they survive
//! any process crash, and its messages can be written in the transaction that
//! records their job ([`JobQueue::send_in`]). [`conformance`] holds the tests every
//! adapter must pass.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use crate::clock::now_ms;
use crate::db::Db;
use crate::db::statements::{Param, Row, Statements, Step, fetch_on, run_steps};
use crate::error::{Error, Result};
use async_trait::async_trait;
use quarry_domain::QueueCounts;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A transaction on the database, for [`JobQueue::send_in`].
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The version of [`JobMessage`] this build writes.
pub const MESSAGE_VERSION: u32 = 1;

/// The queue message for a job: the one contract between whoever enqueues a job (the
/// API, the held-job release, the reconciler) and the workers. New fields must be
/// optional, so old and new workers read each other's messages; a change that is not
/// backwards compatible raises [`MESSAGE_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// The message format's version; messages from before versions had none.
    #[serde(default = "first_version")]
    pub v: u32,
    pub job_id: String,
}

fn first_version() -> u32 {
    1
}

impl JobMessage {
    /// The message for `job_id`.
    pub fn new(job_id: &str) -> Self {
        Self {
            v: MESSAGE_VERSION,
            job_id: job_id.to_owned(),
        }
    }

    /// The message body for `job_id`.
    pub fn body(job_id: &str) -> String {
        serde_json::to_string(&Self::new(job_id)).unwrap_or_default()
    }

    /// Reads a message body; the error says why it cannot be used (it is then
    /// dead-lettered, never retried).
    pub fn parse(body: &str) -> std::result::Result<Self, String> {
        let message: Self = serde_json::from_str(body)
            .map_err(|e| format!("not a job message ({e}): {}", preview(body)))?;
        if message.v > MESSAGE_VERSION {
            return Err(format!(
                "job message version {} is newer than this worker's {MESSAGE_VERSION}: \
                 a newer Quarry sent it",
                message.v
            ));
        }
        if message.job_id.is_empty() {
            return Err("job message without a job id".to_owned());
        }
        Ok(message)
    }
}

/// The start of a body, for log lines.
fn preview(body: &str) -> String {
    let mut end = body.len().min(120);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", &body[..end])
}

pub use quarry_domain::backstop_receives;

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    /// Names this delivery; stale after the lease ends and the message is re-delivered.
    pub receipt: String,
    pub body: String,
    /// Deliveries so far, this one included.
    pub receive_count: u32,
    pub sent_at_ms: i64,
}

/// A dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
    /// What [`JobQueue::redrive`] needs to find it (an id, or an SQS receipt handle).
    pub handle: String,
    /// Where a walk of the dead letters continues after this one.
    pub cursor: String,
}

/// A durable queue with leases.
#[async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug {
    /// Records a message; returns its id.
    async fn send(&self, body: &str) -> Result<String>;
    /// Waits up to `wait` for a message and leases it for the visibility timeout.
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>>;
    /// Records a message within `tx` if the adapter lives in the database, so the
    /// message exists exactly when the transaction commits; returns `false` (having
    /// done nothing) if it does not, and the caller sends after committing.
    async fn send_in(&self, _tx: &mut Tx, _body: &str) -> Result<bool> {
        Ok(false)
    }
    /// The statement that records a message within a [`Statements::transaction`] if
    /// the adapter lives in the database (as [`JobQueue::send_in`] does); `None` if it
    /// does not, and the caller sends after committing.
    fn send_step(&self, _body: &str) -> Option<Step<'static>> {
        None
    }
    /// The statement that acknowledges a delivery within a
    /// [`Statements::transaction`] if the adapter lives in the database, so the
    /// message is gone exactly when the job's outcome commits; `None` if it does not,
    /// and the caller deletes after committing.
    fn delete_step<'a>(&self, _receipt: &'a str) -> Option<Step<'a>> {
        None
    }
    /// Sets the remaining lease of a delivery; `Error::Conflict` if the lease was lost.
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()>;
    /// Gives a delivery back for another worker at once, without counting it toward
    /// the dead-letter limit (the receive count of the next delivery is this one's).
    async fn hand_back(&self, delivery: &Delivery) -> Result<()>;
    /// Acknowledges a delivery: the message is gone. A stale receipt is not an error.
    async fn delete(&self, receipt: &str) -> Result<()>;
    /// Moves a delivered message to the dead letters now (e.g. it cannot be parsed).
    async fn dead_letter(&self, delivery: &Delivery) -> Result<()>;
    /// Approximate visible, in-flight and dead counts.
    async fn counts(&self) -> Result<QueueCounts>;
    /// Dead-lettered messages, oldest first, after the one whose `cursor` is `after`.
    /// (SQS cannot page: it ignores `after`, and each read hides what it returned for
    /// a while, so successive reads walk on.) Fewer than `limit`: the walk is done.
    async fn dead_letters(&self, after: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>>;
    /// Puts a dead letter back into the queue, to be delivered afresh.
    async fn redrive(&self, letter: &DeadLetter) -> Result<()>;
    /// The embedded adapter itself, whose leases can start a job in their own
    /// transaction ([`DbQueue::receive_then`]); `None` for every other adapter.
    fn as_db_queue(&self) -> Option<&DbQueue> {
        None
    }
    /// The queue's visibility timeout.
    fn visibility_timeout(&self) -> Duration;
    /// Deliveries before a message is dead-lettered (the backstop).
    fn max_receives(&self) -> u32;
}

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
