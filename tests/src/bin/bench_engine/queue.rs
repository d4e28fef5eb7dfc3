//! The embedded queue's cycle (send + receive + delete) beside the three bare
//! statements it needs at least, on an empty queue and behind a 100,000-message
//! backlog.

use crate::report::{Figure, Goal, Report};
use anyhow::Context as _;
use quarry_core::Db;
use quarry_core::queue::{DbQueue, JobQueue};
use secrecy::SecretString;
use std::time::{Duration, Instant};

const CYCLES: usize = 2000;
const BACKLOG: i64 = 100_000;
const BODY: &str = "{\"v\":1,\"job_id\":\"x\"}";

pub async fn cycles(report: &mut Report) -> anyhow::Result<()> {
    println!("embedded queue:");
    for backlog in [0, BACKLOG] {
        let dir = tempfile::tempdir()?;
        let url = SecretString::from(format!(
            "sqlite://{}/bench.db?mode=rwc",
            dir.path().display()
        ));
        let db = Db::connect(&url).await?;
        let bare = bare_statements(&db, backlog).await?;
        let held = bare_on_one_connection(&db).await?;
        let queue = DbQueue::new(db.clone(), "bench", Duration::from_secs(30), 3);
        fill_queue(&db, backlog).await?;
        let started = Instant::now();
        for _ in 0..CYCLES {
            queue.send(BODY).await?;
            let d = queue.receive(Duration::ZERO).await?.context("message")?;
            queue.delete(&d.receipt).await?;
        }
        let cycles = CYCLES as f64 / started.elapsed().as_secs_f64();
        let behind = if backlog == 0 {
            String::new()
        } else {
            format!(", {backlog} messages waiting")
        };
        report.add(
            Figure::new(format!("queue cycle{behind}"), cycles, "/s").goal(Goal::AtLeast(13_000.0)),
        );
        report.add(
            Figure::new(
                format!("queue cycle vs bare statements{behind}"),
                cycles,
                "/s",
            )
            .against(
                "insert; update … returning by key; delete by key, same pragmas",
                bare,
            )
            .goal(Goal::RatioAtLeast(0.6)),
        );
        report.add(
            Figure::new(
                format!("the bare statements on one held connection{behind}"),
                held,
                "/s",
            )
            .against("through the pool, as above", bare),
        );
    }
    Ok(())
}

/// The three statements a cycle needs at least, by primary key, on a table holding
/// `backlog` rows: cycles per second.
async fn bare_statements(db: &Db, backlog: i64) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE bare3 (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    sqlx::query(
        "INSERT INTO bare3 (id, body, n) WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $1) \
         SELECT -i, $2, 0 FROM k WHERE i <= $1",
    )
    .bind(backlog)
    .bind(BODY)
    .execute(db.pool())
    .await?;
    let started = Instant::now();
    for i in 0..CYCLES {
        let i = i as i64;
        sqlx::query("INSERT INTO bare3 (id, body, n) VALUES ($1, $2, 0)")
            .bind(i)
            .bind(BODY)
            .execute(db.pool())
            .await?;
        let _: (String,) =
            sqlx::query_as("UPDATE bare3 SET n = n + 1 WHERE id = $1 RETURNING body")
                .bind(i)
                .fetch_one(db.pool())
                .await?;
        sqlx::query("DELETE FROM bare3 WHERE id = $1")
            .bind(i)
            .execute(db.pool())
            .await?;
    }
    Ok(CYCLES as f64 / started.elapsed().as_secs_f64())
}

/// The same statements on one connection taken from the pool once: what the pool's
/// acquire and release cost per statement.
async fn bare_on_one_connection(db: &Db) -> anyhow::Result<f64> {
    let mut conn = db.pool().acquire().await?;
    let started = Instant::now();
    for i in 0..CYCLES {
        let i = 1_000_000 + i as i64;
        sqlx::query("INSERT INTO bare3 (id, body, n) VALUES ($1, $2, 0)")
            .bind(i)
            .bind(BODY)
            .execute(&mut *conn)
            .await?;
        let _: (String,) =
            sqlx::query_as("UPDATE bare3 SET n = n + 1 WHERE id = $1 RETURNING body")
                .bind(i)
                .fetch_one(&mut *conn)
                .await?;
        sqlx::query("DELETE FROM bare3 WHERE id = $1")
            .bind(i)
            .execute(&mut *conn)
            .await?;
    }
    Ok(CYCLES as f64 / started.elapsed().as_secs_f64())
}

/// `backlog` messages waiting, sent long ago: each cycle sends one behind them and
/// receives the oldest, so the backlog stays the same size.
async fn fill_queue(db: &Db, backlog: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count) \
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $1) \
         SELECT 'backlog-' || i, 'bench', $2, i, i, 0 FROM k WHERE i <= $1",
    )
    .bind(backlog)
    .bind(BODY)
    .execute(db.pool())
    .await?;
    Ok(())
}
