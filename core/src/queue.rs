//! The job-queue port, with Amazon SQS semantics, and its embedded adapter.
//!
//! * `send` durably records a message; `receive` long-polls and leases one message for
//!   the queue's visibility timeout, counting the delivery;
//! * `change_visibility` extends (heartbeat) or ends (hand back) a lease;
//! * `delete` acknowledges; a message whose lease runs out is delivered again;
//! * a message received `max_attempts` times and not deleted is dead-lettered instead
//!   of being delivered once more.
//!
//! Leases are rows in the database, so they survive any process crash.
//! [`conformance`] holds the tests every adapter must pass.

pub mod conformance;

use crate::clock::now_ms;
use crate::db::Db;
use crate::error::{Error, Result};
use async_trait::async_trait;
use quarry_domain::QueueCounts;
use std::fmt;
use std::time::Duration;

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
}

/// A durable queue with leases.
#[async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug {
    /// Records a message; returns its id.
    async fn send(&self, body: &str) -> Result<String>;
    /// Waits up to `wait` for a message and leases it for the visibility timeout.
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>>;
    /// Sets the remaining lease of a delivery; `Error::Conflict` if the lease was lost.
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()>;
    /// Acknowledges a delivery: the message is gone. A stale receipt is not an error.
    async fn delete(&self, receipt: &str) -> Result<()>;
    /// Moves a delivered message to the dead letters now (e.g. it cannot be parsed).
    async fn dead_letter(&self, delivery: &Delivery) -> Result<()>;
    /// Approximate visible, in-flight and dead counts.
    async fn counts(&self) -> Result<QueueCounts>;
    /// Dead-lettered messages, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>>;
    /// The queue's visibility timeout.
    fn visibility_timeout(&self) -> Duration;
    /// Deliveries before a message is dead-lettered.
    fn max_attempts(&self) -> u32;
}

/// The embedded adapter: leases in the `queue_messages` table.
#[derive(Debug, Clone)]
pub struct DbQueue {
    db: Db,
    name: String,
    visibility: Duration,
    max_attempts: u32,
    poll: Duration,
}

impl DbQueue {
    pub fn new(db: Db, name: &str, visibility: Duration, max_attempts: u32) -> Self {
        Self {
            db,
            name: name.to_owned(),
            visibility,
            max_attempts,
            poll: Duration::from_millis(100),
        }
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
        .bind(i64::from(self.max_attempts))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn try_receive(&self) -> Result<Option<Delivery>> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE queue_messages SET dead_at = $1, receipt = NULL \
             WHERE queue = $2 AND dead_at IS NULL AND visible_at <= $1 AND receive_count >= $3",
        )
        .bind(now)
        .bind(&self.name)
        .bind(i64::from(self.max_attempts))
        .execute(&mut *tx)
        .await?;
        let receipt = uuid::Uuid::new_v4().to_string();
        let lease_end = now + duration_ms(self.visibility);
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = $1, receipt = $2 \
             WHERE id = (SELECT id FROM queue_messages WHERE queue = $3 AND dead_at IS NULL \
                         AND visible_at <= $4 ORDER BY sent_at, id LIMIT 1) \
             RETURNING id, body, receive_count, sent_at",
        )
        .bind(lease_end)
        .bind(&receipt)
        .bind(&self.name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(|(message_id, body, count, sent_at_ms)| Delivery {
            message_id,
            receipt,
            body,
            receive_count: u32::try_from(count).unwrap_or(u32::MAX),
            sent_at_ms,
        }))
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl JobQueue for DbQueue {
    async fn send(&self, body: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count) \
             VALUES ($1, $2, $3, $4, $4, 0)",
        )
        .bind(&id)
        .bind(&self.name)
        .bind(body)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(id)
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(delivery) = self.try_receive().await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.poll.min(deadline - now)).await;
        }
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let done = sqlx::query(
            "UPDATE queue_messages SET visible_at = $1 WHERE receipt = $2 AND dead_at IS NULL AND visible_at > $3",
        )
        .bind(now_ms() + duration_ms(visibility))
        .bind(receipt)
        .bind(now_ms() - 1)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Conflict(
                "the lease on this message was lost".to_owned(),
            ));
        }
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        sqlx::query("DELETE FROM queue_messages WHERE receipt = $1 AND dead_at IS NULL")
            .bind(receipt)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<()> {
        sqlx::query("UPDATE queue_messages SET dead_at = $1, receipt = NULL WHERE receipt = $2 AND dead_at IS NULL")
            .bind(now_ms())
            .bind(&delivery.receipt)
            .execute(self.db.pool())
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

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, body, receive_count FROM queue_messages \
             WHERE queue = $1 AND dead_at IS NOT NULL ORDER BY dead_at DESC, id LIMIT $2",
        )
        .bind(&self.name)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(message_id, body, count)| DeadLetter {
                message_id,
                body,
                receive_count: u32::try_from(count).unwrap_or(u32::MAX),
            })
            .collect())
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    async fn queue(visibility: Duration, max_attempts: u32) -> (tempfile::TempDir, DbQueue) {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
        let db = Db::connect(&url).await.unwrap();
        (dir, DbQueue::new(db, "jobs", visibility, max_attempts))
    }

    #[tokio::test]
    async fn db_queue_passes_the_conformance_suite() {
        let (_dir, q) = queue(conformance::VISIBILITY, conformance::MAX_ATTEMPTS).await;
        assert_eq!(q.visibility_timeout(), conformance::VISIBILITY);
        conformance::run_all(&q, conformance::Semantics::STRICT).await;
    }

    #[tokio::test]
    async fn leases_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
        let first = DbQueue::new(
            Db::connect(&url).await.unwrap(),
            "jobs",
            Duration::from_millis(600),
            3,
        );
        first.send("crash-me").await.unwrap();
        let leased = first.receive(Duration::ZERO).await.unwrap().unwrap();
        drop(first); // the "process" holding the lease is gone
        let second = DbQueue::new(
            Db::connect(&url).await.unwrap(),
            "jobs",
            Duration::from_millis(600),
            3,
        );
        assert_eq!(second.counts().await.unwrap().in_flight, 1);
        let again = second
            .receive(Duration::from_secs(3))
            .await
            .unwrap()
            .expect("redelivered");
        assert_eq!((again.body.as_str(), again.receive_count), ("crash-me", 2));
        assert_ne!(again.receipt, leased.receipt);
    }
}
