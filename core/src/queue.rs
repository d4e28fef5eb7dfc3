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

use crate::db::statements::Step;
use crate::error::Result;
use async_trait::async_trait;
use quarry_domain::QueueCounts;
use serde::{Deserialize, Serialize};
use std::fmt;
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

mod db;
pub use db::{AfterThen, DbQueue, Then, wake_receivers};
