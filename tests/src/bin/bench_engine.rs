//! `cargo xtask bench engine`: the job engine's speed, each figure beside a baseline
//! measured in the same run (the machine is shared and noisy, so ratios matter more
//! than absolute numbers).
//!
//! 1. Queue primitive: send + receive + delete cycles on the embedded queue, beside a
//!    bare SQLite insert loop on the same kind of database.
//! 2. Enqueue -> start latency with warm workers (p50, p99), from the job records.
//! 3. No-op jobs per second through the whole engine (API -> queue -> workers).
//! 4. The 300k-row aggregate end to end, beside polars running the same query in-process
//!    over the CSV text.
//! 5. Store once, columnar: the upload's one-time cost (streaming the original and
//!    writing its typed Parquet copy) beside the bytes alone, and the same aggregate
//!    over the typed copy beside re-parsing the CSV, as every job did before.
//! 6. The API under load: `GET /api/v1/jobs/{id}` p99 while the workers spin on every
//!    core, beside the same server idle, with workers at the server's priority and at
//!    `worker.nice = 10` (the default).

use anyhow::Context as _;
use polars::prelude::*;
use quarry_core::Db;
use quarry_core::queue::{DbQueue, JobQueue};
use quarry_tests::Quarry;
use quarry_tests::fixtures::mixed_csv;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CYCLES: usize = 2000;
const LATENCY_JOBS: usize = 60;
const NOOP_JOBS: usize = 200;
const ROWS: usize = 300_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("Quarry engine benchmark (dev profile, dependencies at opt-level 2)\n");
    queue_vs_sqlite().await?;
    let q = Quarry::start_with(&[
        ("QUARRY_FLEET__MAX_WORKERS", "2"),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "120"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
    ])
    .await;
    let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
    warm_up(&q, &dataset).await?;
    latency(&q, &dataset).await?;
    throughput(&q, &dataset).await?;
    aggregate(&q).await?;
    typed_copy(&q).await?;
    drop(q);
    println!("API under load: GET /api/v1/jobs/{{id}} p99, 2 spinning workers on 2 cores:");
    for nice in ["0", "10", "19"] {
        let (idle, loaded) = api_under_load(nice).await?;
        println!(
            "  workers at nice {nice:>2}: idle {idle:>6.2} ms, loaded {loaded:>6.2} ms, ratio {:>5.2} (goal <= 2)",
            loaded / idle
        );
    }
    Ok(())
}

/// The p99 of `n` sequential reads of a job, in ms.
async fn read_p99(q: &Quarry, id: &str, n: usize) -> anyhow::Result<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        job(q, id).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(percentile(&ms, 0.99))
}

/// Idle and loaded p99 of a job read on a server whose workers run at `nice`.
async fn api_under_load(nice: &str) -> anyhow::Result<(f64, f64)> {
    let q = Quarry::start_with(&[
        ("QUARRY_FLEET__MAX_WORKERS", "2"),
        ("QUARRY_WORKER__NICE", nice),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "60"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
    ])
    .await;
    let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
    let probe = submit(&q, &dataset, json!({"kind":"spin","seconds":0.1})).await?;
    wait_done(&q, &probe).await?;
    read_p99(&q, &probe, 100).await?; // warm
    let idle = read_p99(&q, &probe, 500).await?;
    let spins = [
        submit(&q, &dataset, json!({"kind":"spin","seconds":60})).await?,
        submit(&q, &dataset, json!({"kind":"spin","seconds":60})).await?,
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut running = 0;
        for id in &spins {
            if job(&q, id).await?["status"] == "running" {
                running += 1;
            }
        }
        if running == spins.len() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the spins did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = read_p99(&q, &probe, 500).await?;
    Ok((idle, loaded))
}

/// The median of `runs` timings of `f`.
fn median_ms(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

async fn typed_copy(q: &Quarry) -> anyhow::Result<()> {
    const BIG: usize = 1_000_000;
    let csv = mixed_csv(BIG, 13);
    let dir = tempfile::tempdir()?;
    let csv_path = dir.path().join("sales.csv");
    std::fs::write(&csv_path, &csv)?;
    let bytes = csv.len();

    let started = Instant::now();
    let dataset = upload(q, "sales-1m", csv.clone()).await?;
    let upload_ms = started.elapsed().as_secs_f64() * 1e3;
    // The bytes alone: the same body written to a file in this process.
    let started = Instant::now();
    std::fs::write(dir.path().join("copy.csv"), &csv)?;
    let body_ms = started.elapsed().as_secs_f64() * 1e3;
    // Where the typed copy is, as the worker sees it.
    let typed = q
        .blob_files()
        .into_iter()
        .find(|p| {
            let p = p.to_string_lossy();
            p.contains(&dataset) && p.contains(".typed-")
        })
        .context("the typed copy of the upload")?;
    let query = |lf: LazyFrame| -> anyhow::Result<()> {
        let df = lf
            .group_by([col("category")])
            .agg([col("amount").mean().alias("amount_mean")])
            .collect_with_engine(Engine::Streaming)?
            .unwrap_single();
        anyhow::ensure!(df.height() == 7, "{} groups", df.height());
        Ok(())
    };
    let over_csv = median_ms(5, || {
        query(
            LazyCsvReader::new(PlRefPath::try_from_path(&csv_path)?)
                .with_has_header(true)
                .finish()?,
        )
    })?;
    let over_parquet = median_ms(5, || {
        query(LazyFrame::scan_parquet(
            PlRefPath::try_from_path(&typed)?,
            ScanArgsParquet::default(),
        )?)
    })?;
    println!(
        "store once, columnar ({BIG} rows, {:.0} MB of CSV):",
        bytes as f64 / 1e6
    );
    println!("  upload with its typed copy (once):        {upload_ms:>8.1} ms");
    println!("  the same bytes written to a file (baseline): {body_ms:>5.1} ms");
    println!(
        "  aggregate over the CSV text (median of 5): {over_csv:>7.1} ms\n  \
         over the typed Parquet copy:               {over_parquet:>7.1} ms\n  \
         ratio typed / CSV:                         {:>7.2}",
        over_parquet / over_csv
    );
    Ok(())
}

async fn queue_vs_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = SecretString::from(format!(
        "sqlite://{}/bench.db?mode=rwc",
        dir.path().display()
    ));
    let db = Db::connect(&url).await?;
    sqlx::query("CREATE TABLE bare (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(db.pool())
        .await?;
    let started = Instant::now();
    for i in 0..CYCLES {
        sqlx::query("INSERT INTO bare (id, body) VALUES ($1, $2)")
            .bind(i as i64)
            .bind("{\"job_id\":\"x\"}")
            .execute(db.pool())
            .await?;
    }
    let bare = CYCLES as f64 / started.elapsed().as_secs_f64();

    // The same three statements a queue cycle needs at least, by primary key, with the
    // same pragmas: insert; update … returning; delete.
    sqlx::query(
        "CREATE TABLE bare3 (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    let started = Instant::now();
    for i in 0..CYCLES {
        sqlx::query("INSERT INTO bare3 (id, body, n) VALUES ($1, $2, 0)")
            .bind(i as i64)
            .bind("{\"job_id\":\"x\"}")
            .execute(db.pool())
            .await?;
        let _: (String,) =
            sqlx::query_as("UPDATE bare3 SET n = n + 1 WHERE id = $1 RETURNING body")
                .bind(i as i64)
                .fetch_one(db.pool())
                .await?;
        sqlx::query("DELETE FROM bare3 WHERE id = $1")
            .bind(i as i64)
            .execute(db.pool())
            .await?;
    }
    let bare3 = CYCLES as f64 / started.elapsed().as_secs_f64();

    let queue = DbQueue::new(db.clone(), "bench", Duration::from_secs(30), 3);
    let started = Instant::now();
    for _ in 0..CYCLES {
        queue.send("{\"job_id\":\"x\"}").await?;
        let d = queue.receive(Duration::ZERO).await?.context("message")?;
        queue.delete(&d.receipt).await?;
    }
    let cycles = CYCLES as f64 / started.elapsed().as_secs_f64();
    println!("queue cycle (send+receive+delete): {cycles:>9.0}/s");
    println!("bare SQLite insert (baseline):      {bare:>9.0}/s");
    println!("bare insert+update+delete (baseline): {bare3:>7.0}/s");
    println!("ratio queue cycle / bare insert:    {:>9.2}", cycles / bare);
    println!(
        "ratio queue cycle / bare 3 statements: {:>6.2}\n",
        cycles / bare3
    );
    Ok(())
}

async fn upload(q: &Quarry, name: &str, csv: String) -> anyhow::Result<String> {
    let r = q
        .http
        .post(q.url(&format!("/api/v1/datasets?name={name}")))
        .bearer_auth(&q.admin_token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "upload: {}", r.text().await?);
    Ok(r.json::<Value>().await?["id"]
        .as_str()
        .context("id")?
        .to_owned())
}

async fn submit(q: &Quarry, dataset: &str, analysis: Value) -> anyhow::Result<String> {
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .json(&json!({"dataset_id": dataset, "analysis": analysis}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 202, "submit: {}", r.text().await?);
    Ok(r.json::<Value>().await?["id"]
        .as_str()
        .context("id")?
        .to_owned())
}

async fn job(q: &Quarry, id: &str) -> anyhow::Result<Value> {
    Ok(q.http
        .get(q.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await?
        .json()
        .await?)
}

async fn wait_done(q: &Quarry, id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = job(q, id).await?;
        match j["status"].as_str() {
            Some("succeeded") => return Ok(j),
            Some("failed" | "cancelled") => anyhow::bail!("job {id} ended as {j}"),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn warm_up(q: &Quarry, dataset: &str) -> anyhow::Result<()> {
    let ids = [
        submit(q, dataset, json!({"kind":"spin","seconds":0.5})).await?,
        submit(q, dataset, json!({"kind":"spin","seconds":0.5})).await?,
    ];
    for id in ids {
        wait_done(q, &id).await?;
    }
    Ok(())
}

fn parse_ms(rfc3339: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn latency(q: &Quarry, dataset: &str) -> anyhow::Result<()> {
    let mut waits = Vec::new();
    for _ in 0..LATENCY_JOBS {
        let id = submit(q, dataset, json!({"kind":"spin","seconds":0})).await?;
        let j = wait_done(q, &id).await?;
        let created = parse_ms(j["created_at"].as_str().context("created_at")?)?;
        let started = parse_ms(j["started_at"].as_str().context("started_at")?)?;
        waits.push((started - created) as f64);
    }
    waits.sort_by(f64::total_cmp);
    println!("enqueue -> start, warm workers ({LATENCY_JOBS} jobs, one at a time):");
    println!(
        "  p50 {:>7.1} ms   p99 {:>7.1} ms\n",
        percentile(&waits, 0.5),
        percentile(&waits, 0.99)
    );
    Ok(())
}

async fn throughput(q: &Quarry, dataset: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..NOOP_JOBS {
        ids.push(submit(q, dataset, json!({"kind":"spin","seconds":0})).await?);
    }
    let submitted = started.elapsed();
    for id in &ids {
        wait_done(q, id).await?;
    }
    let total = started.elapsed();
    println!("no-op jobs through API + queue + 2 workers ({NOOP_JOBS} jobs):");
    println!(
        "  submitted at {:>7.0} jobs/s, completed at {:>7.1} jobs/s\n",
        NOOP_JOBS as f64 / submitted.as_secs_f64(),
        NOOP_JOBS as f64 / total.as_secs_f64()
    );
    Ok(())
}

async fn aggregate(q: &Quarry) -> anyhow::Result<()> {
    let csv = mixed_csv(ROWS, 11);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sales.csv");
    std::fs::write(&path, &csv)?;
    let dataset = upload(q, "sales", csv).await?;

    let started = Instant::now();
    let id = submit(
        q,
        &dataset,
        json!({"kind":"aggregate","group_by":["category"],"aggregations":[{"column":"amount","op":"mean"}]}),
    )
    .await?;
    wait_done(q, &id).await?;
    let engine = started.elapsed();

    let started = Instant::now();
    let df = LazyCsvReader::new(PlRefPath::try_from_path(&path)?)
        .with_has_header(true)
        .finish()?
        .group_by([col("category")])
        .agg([col("amount").mean().alias("amount_mean")])
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single();
    let in_process = started.elapsed();
    anyhow::ensure!(df.height() == 7, "baseline produced {} groups", df.height());
    println!("aggregate mean(amount) by category over {ROWS} rows:");
    println!(
        "  through the engine (submit -> succeeded): {:>8.1} ms",
        engine.as_secs_f64() * 1e3
    );
    println!(
        "  polars in-process (baseline):             {:>8.1} ms",
        in_process.as_secs_f64() * 1e3
    );
    println!(
        "  ratio engine / in-process:                {:>8.2}",
        engine.as_secs_f64() / in_process.as_secs_f64()
    );
    Ok(())
}
