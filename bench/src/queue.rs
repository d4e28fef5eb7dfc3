//! The embedded queue's cycle (send + receive + delete) beside the three bare
//! statements it needs at least, on an empty queue and behind a 100,000-message
//! backlog: on a SQLite connection in this thread (the bare loop the goal is set
//! against), and through sqlx's pool (what the queue ran on before it had a
//! connection of its own).

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
        let pooled = bare_statements(&db, backlog).await?;
        let bare = bare_on_a_sqlite_connection(&db)?;
        let queue = DbQueue::new(db.clone(), "bench", Duration::from_secs(30), 3);
        fill_queue(&db, backlog).await?;
        let started = Instant::now();
        for _ in 0..CYCLES {
            queue.send(BODY).await?;
            let d = queue.receive(Duration::ZERO).await?.context("message")?;
            queue.delete(&d.receipt).await?;
        }
        let cycles = CYCLES as f64 / started.elapsed().as_secs_f64();
        let statements = the_queue_statements_bare(&db)?;
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
                "insert; update … returning by key; delete by key, same pragmas, \
                 on one SQLite connection",
                bare,
            )
            .goal(Goal::RatioAtLeast(0.6)),
        );
        report.add(
            Figure::new(
                format!("the bare statements through sqlx's pool{behind}"),
                pooled,
                "/s",
            )
            .against("on one SQLite connection, as above", bare),
        );
        report.add(
            Figure::new(
                format!("the queue's own three statements, bare on one connection{behind}"),
                statements,
                "/s",
            )
            .against("the bare statements, as above", bare),
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

/// The same statements on a SQLite connection of their own, in this thread, with the
/// pool's pragmas and cached statements: SQLite's own cost, the bound a
/// queue on SQLite can approach.
fn bare_on_a_sqlite_connection(db: &Db) -> anyhow::Result<f64> {
    let path = db.sqlite_path().context("a SQLite file")?;
    let conn = rusqlite::Connection::open(path)?;
    bare_pragmas(&conn)?;
    let started = Instant::now();
    for i in 0..CYCLES {
        let i = 1_000_000 + i as i64;
        conn.prepare_cached("INSERT INTO bare3 (id, body, n) VALUES ($1, $2, 0)")?
            .execute(rusqlite::params![i, BODY])?;
        let _: String = conn
            .prepare_cached("UPDATE bare3 SET n = n + 1 WHERE id = $1 RETURNING body")?
            .query_row([i], |row| row.get(0))?;
        conn.prepare_cached("DELETE FROM bare3 WHERE id = $1")?
            .execute([i])?;
    }
    Ok(CYCLES as f64 / started.elapsed().as_secs_f64())
}

/// The three statements of a queue cycle as the queue writes them (its table and
/// indexes, its lease), bare on a connection like the one above: what SQLite's work
/// for a cycle costs without the queue's code around it.
fn the_queue_statements_bare(db: &Db) -> anyhow::Result<f64> {
    const TOKEN: &str = "0f3c2b6a5d4e4f1a9b8c7d6e5f4a3b2c";
    let conn = rusqlite::Connection::open(db.sqlite_path().context("a SQLite file")?)?;
    bare_pragmas(&conn)?;
    let started = Instant::now();
    for i in 0..CYCLES {
        let now = 4_000_000_000_000 + i as i64;
        conn.prepare_cached(
            "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count) \
             VALUES ($1, $2, $3, $4, $4, 0)",
        )?
        .execute(rusqlite::params!["bare-message", "bench", BODY, now])?;
        let seq: i64 = conn
            .prepare_cached(
                "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = $1, \
                 receipt = $2 WHERE seq = (SELECT seq FROM queue_messages WHERE queue = $3 \
                 AND dead_at IS NULL AND visible_at <= $4 AND receive_count < $5 \
                 ORDER BY sent_at, seq LIMIT 1) AND dead_at IS NULL AND visible_at <= $4 \
                 RETURNING seq, id, body, receive_count, sent_at",
            )?
            .query_row(
                rusqlite::params![now + 30_000, TOKEN, "bench", now, 3],
                |row| row.get(0),
            )?;
        conn.prepare_cached(
            "DELETE FROM queue_messages WHERE seq = $1 AND receipt = $2 AND dead_at IS NULL",
        )?
        .execute(rusqlite::params![seq, TOKEN])?;
    }
    Ok(CYCLES as f64 / started.elapsed().as_secs_f64())
}

/// The pragmas of the database's pool connections: SQLite's own checkpoints (every
/// 1,000 pages of log), as the queue's connection checkpoints every 1,000 writes.
fn bare_pragmas(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
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
