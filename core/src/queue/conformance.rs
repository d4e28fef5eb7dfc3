//! The behaviour every [`JobQueue`] adapter must have, as runnable checks. Adapters
//! call [`run_all`] from their tests with a queue configured with [`MAX_RECEIVES`] and
//! a short visibility timeout ([`VISIBILITY`] where the adapter allows fractions of a
//! second; SQS counts whole seconds). Each check leaves no live message behind and
//! measures dead letters as differences, so they run in sequence against one queue.
//!
//! These panic on failure, like test assertions.

use super::JobQueue;
use crate::error::Error;
use std::time::Duration;

/// The visibility timeout for adapters that allow fractions of a second.
pub const VISIBILITY: Duration = Duration::from_millis(1200);
/// The dead-letter limit (`max_receives`) the queue under test must have.
pub const MAX_RECEIVES: u32 = 2;

/// Where an adapter's documented semantics allow a difference.
#[derive(Debug, Clone, Copy)]
pub struct Semantics {
    /// Whether a receipt from an earlier delivery is refused once the message has been
    /// delivered again. SQS may still honour it (its docs leave it open and its
    /// emulator does), which is harmless here: a worker whose lease ran out stops
    /// heartbeating, and a job commits once whoever finishes it.
    pub refuses_stale_receipts: bool,
}

impl Semantics {
    /// Everything checked, as the embedded queue behaves.
    pub const STRICT: Semantics = Semantics {
        refuses_stale_receipts: true,
    };
}

/// Runs every check.
pub async fn run_all(q: &dyn JobQueue, semantics: Semantics) {
    assert!(
        q.visibility_timeout() <= std::time::Duration::from_secs(5),
        "configure the queue under test with a short visibility timeout"
    );
    assert_eq!(
        q.max_receives(),
        MAX_RECEIVES,
        "configure the queue with conformance::MAX_RECEIVES"
    );
    sent_message_is_received_once_and_deleted(q).await;
    expired_lease_redelivers_with_a_new_receipt(q, semantics).await;
    heartbeat_keeps_the_lease(q).await;
    hand_back_makes_the_message_visible_at_once(q).await;
    hand_back_does_not_count_the_delivery(q).await;
    message_is_dead_lettered_after_max_attempts(q).await;
    explicit_dead_letter_moves_the_message(q).await;
    long_poll_returns_a_message_sent_while_waiting(q).await;
}

async fn live(q: &dyn JobQueue) -> (u64, u64) {
    let c = q.counts().await.expect("counts");
    (c.visible, c.in_flight)
}

pub async fn sent_message_is_received_once_and_deleted(q: &dyn JobQueue) {
    let id = q.send("one").await.expect("send");
    assert_eq!(live(q).await, (1, 0));
    let d = q
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("a message");
    assert_eq!(
        (d.message_id.as_str(), d.body.as_str(), d.receive_count),
        (id.as_str(), "one", 1)
    );
    assert_eq!(live(q).await, (0, 1));
    assert!(
        q.receive(Duration::ZERO).await.expect("receive").is_none(),
        "leased: not delivered twice"
    );
    q.delete(&d.receipt).await.expect("delete");
    assert_eq!(live(q).await, (0, 0));
    q.delete(&d.receipt)
        .await
        .expect("deleting twice is harmless");
}

pub async fn expired_lease_redelivers_with_a_new_receipt(q: &dyn JobQueue, semantics: Semantics) {
    q.send("lost").await.expect("send");
    let first = q
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("a message");
    let second = q
        .receive(q.visibility_timeout() * 3)
        .await
        .expect("receive")
        .expect("redelivered after the lease");
    assert_eq!((second.body.as_str(), second.receive_count), ("lost", 2));
    assert_ne!(first.receipt, second.receipt);
    if semantics.refuses_stale_receipts {
        let stale = q
            .change_visibility(&first.receipt, q.visibility_timeout())
            .await;
        assert!(
            matches!(stale, Err(Error::Conflict(_))),
            "a stale receipt cannot extend: {stale:?}"
        );
    }
    q.delete(&second.receipt).await.expect("delete");
    assert_eq!(live(q).await, (0, 0));
}

pub async fn heartbeat_keeps_the_lease(q: &dyn JobQueue) {
    q.send("long").await.expect("send");
    let d = q
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("a message");
    for _ in 0..3 {
        tokio::time::sleep(q.visibility_timeout() / 2).await;
        q.change_visibility(&d.receipt, q.visibility_timeout())
            .await
            .expect("heartbeat");
    }
    assert!(
        q.receive(Duration::ZERO).await.expect("receive").is_none(),
        "1.5 leases later it is still ours"
    );
    q.delete(&d.receipt).await.expect("delete");
    assert_eq!(live(q).await, (0, 0));
}

pub async fn hand_back_makes_the_message_visible_at_once(q: &dyn JobQueue) {
    q.send("back").await.expect("send");
    let d = q
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("a message");
    q.change_visibility(&d.receipt, Duration::ZERO)
        .await
        .expect("hand back");
    let again = q
        .receive(Duration::from_millis(500))
        .await
        .expect("receive")
        .expect("visible again");
    assert_eq!(again.receive_count, 2);
    q.delete(&again.receipt).await.expect("delete");
}

/// A hand-back (a worker shutting down) is not a delivery that counts: handed back
/// more often than the dead-letter limit, the message is still delivered.
pub async fn hand_back_does_not_count_the_delivery(q: &dyn JobQueue) {
    let dead_before = q.counts().await.expect("counts").dead;
    q.send("interrupted").await.expect("send");
    for _ in 0..=MAX_RECEIVES {
        let d = q
            .receive(Duration::from_secs(3))
            .await
            .expect("receive")
            .expect("delivered again after a hand-back");
        assert_eq!((d.body.as_str(), d.receive_count), ("interrupted", 1));
        q.hand_back(&d).await.expect("hand back");
    }
    let d = q
        .receive(Duration::from_secs(3))
        .await
        .expect("receive")
        .expect("still delivered");
    q.delete(&d.receipt).await.expect("delete");
    let counts = q.counts().await.expect("counts");
    assert_eq!(
        (counts.visible, counts.in_flight, counts.dead),
        (0, 0, dead_before)
    );
}

pub async fn message_is_dead_lettered_after_max_attempts(q: &dyn JobQueue) {
    let dead_before = q.counts().await.expect("counts").dead;
    let id = q.send("poison").await.expect("send");
    for attempt in 1..=MAX_RECEIVES {
        let d = q
            .receive(Duration::from_secs(2))
            .await
            .expect("receive")
            .expect("delivered");
        assert_eq!(d.receive_count, attempt);
        q.change_visibility(&d.receipt, Duration::ZERO)
            .await
            .expect("hand back");
    }
    assert!(
        q.receive(Duration::from_millis(300))
            .await
            .expect("receive")
            .is_none(),
        "not delivered again"
    );
    let counts = q.counts().await.expect("counts");
    assert_eq!(
        (counts.visible, counts.in_flight, counts.dead),
        (0, 0, dead_before + 1)
    );
    let dead = q.dead_letters(None, 1000).await.expect("dead letters");
    let letter = dead
        .iter()
        .find(|l| l.message_id == id)
        .expect("listed as dead");
    assert_eq!(
        (letter.body.as_str(), letter.receive_count),
        ("poison", MAX_RECEIVES)
    );
    // Redriven, it is delivered afresh and is no longer dead.
    q.redrive(letter).await.expect("redrive");
    let again = q
        .receive(Duration::from_secs(3))
        .await
        .expect("receive")
        .expect("redriven");
    assert_eq!((again.body.as_str(), again.receive_count), ("poison", 1));
    q.delete(&again.receipt).await.expect("delete");
    assert_eq!(q.counts().await.expect("counts").dead, dead_before);
}

pub async fn explicit_dead_letter_moves_the_message(q: &dyn JobQueue) {
    let dead_before = q.counts().await.expect("counts").dead;
    q.send("unparseable").await.expect("send");
    let d = q
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("a message");
    q.dead_letter(&d).await.expect("dead letter");
    let counts = q.counts().await.expect("counts");
    assert_eq!(
        (counts.visible, counts.in_flight, counts.dead),
        (0, 0, dead_before + 1)
    );
}

pub async fn long_poll_returns_a_message_sent_while_waiting(q: &dyn JobQueue) {
    let (got, ()) = tokio::join!(q.receive(Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.send("late").await.expect("send");
    });
    let d = got.expect("receive").expect("the late message");
    assert_eq!(d.body, "late");
    q.delete(&d.receipt).await.expect("delete");
}
