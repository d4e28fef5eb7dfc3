//! The embedded queue's own tests; the behaviour every adapter shares is in
//! [`crate::queue::conformance`].

use super::*;
use crate::queue::{JobMessage, conformance};
use secrecy::SecretString;

async fn queue(visibility: Duration, max_attempts: u32) -> (tempfile::TempDir, DbQueue) {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = Db::connect(&url).await.unwrap();
    (dir, DbQueue::new(db, "jobs", visibility, max_attempts))
}

#[test]
fn job_messages_carry_a_version_and_refuse_what_they_cannot_use() {
    let body = JobMessage::body("j-1");
    assert_eq!(body, r#"{"v":1,"job_id":"j-1"}"#);
    assert_eq!(JobMessage::parse(&body), Ok(JobMessage::new("j-1")));
    // Messages from before versions, and with fields added later, still read.
    assert_eq!(JobMessage::parse(r#"{"job_id":"j-2"}"#).map(|m| m.v), Ok(1));
    assert!(JobMessage::parse(r#"{"v":1,"job_id":"j-3","priority":2}"#).is_ok());
    for (bad, says) in [
        ("not json", "not a job message"),
        (r#"{"v":2,"job_id":"j"}"#, "newer"),
        (r#"{"v":1,"job_id":""}"#, "without a job id"),
        (r#"{"id":"j"}"#, "not a job message"),
    ] {
        let e = JobMessage::parse(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[tokio::test]
async fn db_queue_passes_the_conformance_suite() {
    let (_dir, q) = queue(conformance::VISIBILITY, conformance::MAX_RECEIVES).await;
    assert_eq!(q.visibility_timeout(), conformance::VISIBILITY);
    conformance::run_all(&q, conformance::Semantics::STRICT).await;
}

#[tokio::test]
async fn a_delete_in_a_transaction_happens_only_if_it_commits() {
    use crate::db::statements::Step;
    let (_dir, q) = queue(Duration::from_secs(30), 3).await;
    q.send("m").await.unwrap();
    let d = q.receive(Duration::ZERO).await.unwrap().unwrap();
    let s = q.db.statements().unwrap();
    // A guard after the delete that fails rolls the delete back with it.
    let guard = Step::new(
        "UPDATE queue_messages SET body = body WHERE seq = -1",
        vec![],
    )
    .must_change();
    let delete = q
        .delete_step(&d.receipt)
        .expect("the queue is in the database");
    let refused = s.transaction(&[delete.clone(), guard]).await.unwrap();
    assert!(refused.is_none());
    assert_eq!(
        q.counts().await.unwrap().in_flight,
        1,
        "rolled back: still leased"
    );
    let done = s.transaction(&[delete]).await.unwrap().unwrap();
    assert_eq!(done[0].changed, 1);
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.visible, counts.in_flight),
        (0, 0),
        "committed: gone"
    );
}

#[tokio::test]
async fn a_wake_up_cuts_an_empty_poll_short() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = Db::connect(&url).await.unwrap();
    let mut q = DbQueue::new(db, "jobs", Duration::from_secs(30), 3);
    // Polls so rare that only a wake-up can explain a fast delivery.
    q.poll = Duration::from_secs(30);
    let receiving = tokio::spawn({
        let q = q.clone();
        async move { q.receive(Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.send("m").await.unwrap();
    let sent = std::time::Instant::now();
    wake_receivers();
    let got = tokio::time::timeout(Duration::from_secs(5), receiving)
        .await
        .expect("woken, not left to its 30 s poll")
        .unwrap()
        .unwrap();
    assert_eq!(got.map(|d| d.body).as_deref(), Some("m"));
    assert!(sent.elapsed() < Duration::from_secs(5));
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

#[tokio::test]
async fn a_statement_waits_out_another_processs_write_lock_without_holding_the_thread() {
    // A single-threaded runtime: a statement that waited inside SQLite would stop the
    // ticker below as well.
    let (_dir, q) = queue(Duration::from_secs(30), 3).await;
    q.send("first").await.unwrap();
    let mut other = q.db.begin_write().await.unwrap();
    sqlx::query("UPDATE queue_messages SET body = body")
        .execute(&mut *other)
        .await
        .unwrap();
    let sending = tokio::spawn({
        let q = q.clone();
        async move { q.send("second").await }
    });
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = std::sync::Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sending.is_finished(), "the write lock is held elsewhere");
    let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ticked >= 20, "the runtime kept running: {ticked} ticks");
    other.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .expect("sent once the lock was free")
        .unwrap()
        .unwrap();
    ticker.abort();
    assert_eq!(q.counts().await.unwrap().visible, 2);
}

#[tokio::test]
async fn a_receipt_names_its_row_and_its_lease_and_nothing_else_does() {
    let (_dir, q) = queue(Duration::from_secs(30), 3).await;
    q.send("m").await.unwrap();
    let d = q.receive(Duration::ZERO).await.unwrap().unwrap();
    let (seq, token) = d.receipt.split_once('.').expect("<seq>.<token>");
    assert!(
        seq.parse::<i64>().is_ok() && token.len() == 32,
        "{}",
        d.receipt
    );
    // The row's key with another lease's token, a token alone, the form receipts
    // had before keys (a UUID) and nonsense all name nothing.
    let forged = [
        format!("{seq}.{}", "0".repeat(32)),
        token.to_owned(),
        uuid::Uuid::new_v4().to_string(),
        format!("x.{token}"),
    ];
    for receipt in &forged {
        q.delete(receipt).await.unwrap();
        assert!(matches!(
            q.change_visibility(receipt, Duration::from_secs(60)).await,
            Err(Error::Conflict(_))
        ));
    }
    assert_eq!(q.counts().await.unwrap().in_flight, 1, "still leased");
    q.change_visibility(&d.receipt, Duration::from_secs(60))
        .await
        .unwrap();
    q.delete(&d.receipt).await.unwrap();
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_while_the_queue_writes() {
    let (dir, q) = queue(Duration::from_secs(30), 3).await;
    let writes = 6 * crate::db::statements::CHECKPOINT_EVERY;
    for _ in 0..writes / 3 {
        q.send("m").await.unwrap();
        let d = q.receive(Duration::ZERO).await.unwrap().unwrap();
        q.delete(&d.receipt).await.unwrap();
    }
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(q.db.pool())
        .await
        .unwrap();
    let wal = std::fs::metadata(dir.path().join("q.db-wal"))
        .unwrap()
        .len();
    // Every write appends at least one page; unchecked, the log would hold them all.
    let unchecked = writes * u64::try_from(page).unwrap();
    assert!(
        wal < unchecked / 2,
        "the log is {wal} bytes after {writes} writes of {page}-byte pages"
    );
}

#[tokio::test]
async fn messages_from_before_integer_keys_keep_their_order_leases_and_dead_letters() {
    use sqlx::Connection as _;
    // The database as the release before migration 0020 left it.
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("migrations");
    std::fs::create_dir(&earlier).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0020" {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}/q.db?mode=rwc", dir.path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let later = now_ms() + 600_000;
    for (id, body, sent, visible, count, receipt, dead) in [
        ("m-2", "second", 2, 2, 0, None, None),
        ("m-1", "first", 1, 1, 0, None, None),
        (
            "m-3",
            "leased",
            3,
            later,
            1,
            Some("0b9d7a6e-old-receipt"),
            None,
        ),
        ("m-4", "dead", 4, 4, 3, None, Some(5)),
    ] {
        sqlx::query(
            "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count, \
             receipt, dead_at) VALUES ($1, 'jobs', $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(body)
        .bind(sent)
        .bind(visible)
        .bind(count)
        .bind(receipt)
        .bind(dead)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let db = Db::connect(&SecretString::from(url)).await.unwrap();
    let q = DbQueue::new(db, "jobs", Duration::from_secs(30), 3);
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.visible, counts.in_flight, counts.dead), (2, 1, 1));
    for (id, body) in [("m-1", "first"), ("m-2", "second")] {
        let d = q.receive(Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((d.message_id.as_str(), d.body.as_str()), (id, body));
        q.delete(&d.receipt).await.unwrap();
    }
    // A receipt handed out before the keys names no row: its message stays leased
    // until the lease runs out, then it is delivered again.
    q.delete("0b9d7a6e-old-receipt").await.unwrap();
    assert_eq!(q.counts().await.unwrap().in_flight, 1);
    let letters = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| l.body.as_str()).collect::<Vec<_>>(),
        ["dead"]
    );
    q.redrive(&letters[0]).await.unwrap();
    let again = q.receive(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.receive_count), ("m-4", 1));
}

#[tokio::test]
async fn what_runs_in_a_leases_transaction_commits_or_fails_with_it() {
    let (_dir, q) = queue(Duration::from_secs(30), 5).await;
    let mark = |c: &rusqlite::Connection, body: &str| {
        c.execute(
            "UPDATE queue_messages SET body = body || '+' WHERE body = ?1",
            [body],
        )
    };
    // It fails: neither the lease nor its change happened.
    q.send("a").await.unwrap();
    let failing: &Then<'_, ()> = &|c, d| {
        mark(c, &d.body)?;
        Err(rusqlite::Error::QueryReturnedNoRows)
    };
    assert!(q.receive_then(Duration::ZERO, failing).await.is_err());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (1, 0), "{counts:?}");
    // It answers a value: the lease and its change commit together, and the value
    // comes back with the delivery (the first receive did not count).
    let marking: &Then<'_, usize> = &|c, d| mark(c, &d.body).map(Some);
    let (d, done) = q
        .receive_then(Duration::ZERO, marking)
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!((d.body.as_str(), d.receive_count, done), ("a", 1, Some(1)));
    // It answers nothing (its guarded change found no row): the lease commits, so
    // the message is in flight.
    q.send("b").await.unwrap();
    let declining: &Then<'_, ()> = &|c, _| mark(c, "no such body").map(|_| None);
    let (d, done) = q
        .receive_then(Duration::ZERO, declining)
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!((d.body.as_str(), done), ("b", None));
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (0, 2), "{counts:?}");
    let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM queue_messages ORDER BY seq")
        .fetch_all(q.db.pool())
        .await
        .unwrap();
    let bodies: Vec<&str> = bodies.iter().map(|(b,)| b.as_str()).collect();
    assert_eq!(bodies, ["a+", "b"]);
}
