//! Figures of a running server: job start latency, no-op throughput, the API under
//! load, open event streams, and the typed copy.

use crate::report::{Figure, Goal, Report};
use crate::{
    job, median_ms, parse_ms, percentile, read_p99, submit, upload, wait_done, wait_done_every,
};
use anyhow::Context as _;
use polars::prelude::*;
use quarry_tests::Quarry;
use quarry_tests::fixtures::mixed_csv;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LATENCY_JOBS: usize = 1000;
/// Mean gap between two arrivals of the latency run (exponentially distributed).
const MEAN_GAP_MS: f64 = 15.0;
const NOOP_JOBS: usize = 1000;
const SUBMITTERS: usize = 8;
const STREAMS: usize = 500;
/// Reads behind each p99 of the API-under-load figures.
const READS: usize = 2000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Enqueue -> start: from the submit's response to the worker's recorded start.
pub async fn latency(report: &mut Report, q: &Quarry, dataset: &str) -> anyhow::Result<()> {
    println!(
        "enqueue -> start, {LATENCY_JOBS} jobs at random intervals (mean {MEAN_GAP_MS} ms), warm workers:"
    );
    let mut gaps = quarry_tests::Rng(0x9E37_79B9_7F4A_7C15);
    let mut answered = Vec::with_capacity(LATENCY_JOBS);
    for _ in 0..LATENCY_JOBS {
        // Exponential gaps: arrivals at random moments (a Poisson process).
        let gap_ms = -MEAN_GAP_MS * (1.0 - gaps.between(0.0, 1.0)).ln();
        tokio::time::sleep(Duration::from_secs_f64(gap_ms / 1e3)).await;
        let id = submit(q, dataset, json!({"kind":"spin","seconds":0})).await?;
        answered.push((id, now_ms()));
    }
    let mut waits = Vec::with_capacity(LATENCY_JOBS);
    for (id, at) in &answered {
        let j = wait_done(q, id).await?;
        let started = parse_ms(j["started_at"].as_str().context("started_at")?)?;
        // A worker can start a job before its submitter has read the answer.
        waits.push((started - at).max(0) as f64);
    }
    waits.sort_by(f64::total_cmp);
    report.add(
        Figure::new("enqueue → start p50", percentile(&waits, 0.5), "ms").goal(Goal::AtMost(5.0)),
    );
    report.add(
        Figure::new("enqueue → start p99", percentile(&waits, 0.99), "ms").goal(Goal::AtMost(25.0)),
    );
    Ok(())
}

/// What one run of no-op jobs measured.
struct NoopRun {
    submitted_per_s: f64,
    completed_per_s: f64,
    /// CPU per job (ms) of the server, its workers and this benchmark's client.
    cpu_ms: (f64, f64, f64),
}

/// No-op jobs through the REST API, submitted by concurrent clients, on a fresh
/// server; beside it, the same on a second fresh server whose job-path writers take
/// the writers' turnstile (`QUARRY_SQLITE_TURNSTILE=on`), in the same run. Each server
/// runs twice, in the order default, turnstile, turnstile, default, so that neither
/// side gains from going first or last on a machine whose state drifts (the file
/// system's recently freed inodes, other tenants). Both are fresh: a server that
/// had just run the latency section's 1,000 jobs was measured slower here.
pub async fn throughput(report: &mut Report) -> anyhow::Result<()> {
    println!(
        "no-op jobs through the REST API, {SUBMITTERS} concurrent submitters, 2 workers of {SLOTS} slots each:"
    );
    let server = |turnstile: bool| async move {
        let mut vars = SERVER_VARS.to_vec();
        vars.push(("QUARRY_FLEET__JOBS_PER_WORKER", SLOTS_VAR));
        if turnstile {
            vars.push(("QUARRY_SQLITE_TURNSTILE", "on"));
        }
        let q = Quarry::start_with(&vars).await;
        let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
        crate::warm_up(&q, &dataset).await?;
        anyhow::Ok((q, dataset))
    };
    let (q, dataset) = server(false).await?;
    let (b, b_dataset) = server(true).await?;
    let first = noop_jobs(&q, &dataset).await?;
    println!(
        "the same on a server whose writers take the writers' turnstile (QUARRY_SQLITE_TURNSTILE=on), twice:"
    );
    let baseline = [
        noop_jobs(&b, &b_dataset).await?,
        noop_jobs(&b, &b_dataset).await?,
    ];
    drop(b);
    println!("the first server again:");
    let second = noop_jobs(&q, &dataset).await?;
    drop(q);
    let mean = |f: fn(&NoopRun) -> f64, runs: [&NoopRun; 2]| (f(runs[0]) + f(runs[1])) / 2.0;
    let ours = [&first, &second];
    let cpu = |f: fn(&(f64, f64, f64)) -> f64| (f(&first.cpu_ms) + f(&second.cpu_ms)) / 2.0;
    report.add(Figure::new(
        "CPU per no-op job: the server",
        cpu(|c| c.0),
        "ms",
    ));
    report.add(Figure::new(
        "CPU per no-op job: the workers",
        cpu(|c| c.1),
        "ms",
    ));
    report.add(Figure::new(
        "CPU per no-op job: the benchmark's own client",
        cpu(|c| c.2),
        "ms",
    ));
    report.add(Figure::new(
        "no-op jobs submitted (mean of 2 runs)",
        mean(|r| r.submitted_per_s, ours),
        "/s",
    ));
    report.add(
        Figure::new(
            "no-op jobs completed (mean of 2 runs)",
            mean(|r| r.completed_per_s, ours),
            "/s",
        )
        .against(
            "the same with the writers' turnstile on (mean of 2 runs between them)",
            mean(|r| r.completed_per_s, [&baseline[0], &baseline[1]]),
        )
        .goal(Goal::AtLeast(2000.0)),
    );
    Ok(())
}

/// The slots of each worker in the no-op runs (`fleet.jobs_per_worker`): a worker
/// whose slots' writes meet commits them together (see `quarry_core::db::statements`).
/// Measured on 2026-12-07: 1 slot 834/s, 4 slots 1,085/s and 980/s, 8 slots 946/s.
const SLOTS: usize = 4;
const SLOTS_VAR: &str = "4";

/// The variables of the benchmark's servers. One user submits everything: the
/// per-user limit of running jobs would measure the fairness rule, not the engine.
pub const SERVER_VARS: [(&str, &str); 4] = [
    ("QUARRY_FLEET__MAX_WORKERS", "2"),
    ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "300"),
    ("QUARRY_FLEET__TICK_SECS", "1"),
    ("QUARRY_ANALYSES__MAX_RUNNING_PER_USER", "1000000"),
];

async fn noop_jobs(q: &Quarry, dataset: &str) -> anyhow::Result<NoopRun> {
    let cpu_before = Cpu::read(q.pid())?;
    let started = Instant::now();
    let began_ms = now_ms();
    let per = NOOP_JOBS / SUBMITTERS;
    let submitters = (0..SUBMITTERS).map(|_| async move {
        let mut ids = Vec::with_capacity(per);
        for _ in 0..per {
            ids.push(submit(q, dataset, json!({"kind":"spin","seconds":0})).await?);
        }
        anyhow::Ok(ids)
    });
    let ids: Vec<String> = futures::future::try_join_all(submitters)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let submitted = started.elapsed();
    let mut done = Vec::with_capacity(ids.len());
    // The rate counts the server's recorded finish times, not these reads: read
    // seldom, so the reads take little of the CPU the engine runs on.
    for id in &ids {
        done.push(wait_done_every(q, id, Duration::from_millis(50)).await?);
    }
    // The waits above cost the server and this client a read per job too: counted.
    let cpu = Cpu::read(q.pid())?.since(&cpu_before);
    // Until the last job finished, as the server recorded it: reading the 1,000 jobs
    // back one by one afterwards is the benchmark's own time, not the engine's.
    let mut inside = 0.0;
    let mut last_finish = 0;
    for j in &done {
        let at = |k: &str| j[k].as_str().map(parse_ms).transpose();
        if let (Some(s), Some(f)) = (at("started_at")?, at("finished_at")?) {
            // Where the workers' time goes: inside a job (start to finish), or around jobs.
            inside += (f - s) as f64;
            last_finish = last_finish.max(f);
        }
    }
    let total =
        Duration::from_millis(u64::try_from(last_finish - began_ms).unwrap_or(0)).max(submitted);
    let worker_ms = 2.0 * SLOTS as f64 * total.as_secs_f64() * 1e3;
    let run = NoopRun {
        submitted_per_s: ids.len() as f64 / submitted.as_secs_f64(),
        completed_per_s: ids.len() as f64 / total.as_secs_f64(),
        cpu_ms: {
            let per_job = |secs: f64| secs * 1e3 / ids.len().max(1) as f64;
            (
                per_job(cpu.server),
                per_job(cpu.workers),
                per_job(cpu.client),
            )
        },
    };
    println!(
        "  {:.0} submitted/s, {:.0} completed/s; per job: {:.1} ms from its start to its finish; \
         the workers' slots spent {:.0}% of their time inside jobs",
        run.submitted_per_s,
        run.completed_per_s,
        inside / done.len().max(1) as f64,
        inside / worker_ms * 100.0
    );
    // What bounds the rate on this machine: at 2,000/s its 2 cores have 1 ms of CPU
    // per job for the server, the workers and this client together.
    let (server, workers, client) = run.cpu_ms;
    println!(
        "  CPU per job: server {server:.2} ms, workers {workers:.2} ms, this benchmark's client {client:.2} ms \
         (2,000/s on 2 cores leaves 1 ms for all three)"
    );
    Ok(run)
}

/// Waits until every job in `ids` runs.
async fn until_running(q: &Quarry, ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut running = 0;
        for id in ids {
            if job(q, id).await?["status"] == "running" {
                running += 1;
            }
        }
        if running == ids.len() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the spins did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The median time of `runs` uploads of `csv`, in ms.
async fn upload_ms(q: &Quarry, csv: &[u8], runs: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        let r = q
            .http
            .post(q.url(&format!("/api/v1/datasets?name=upload-{}-{i}", now_ms())))
            .bearer_auth(&q.admin_token)
            .header("content-type", "text/csv")
            .body(csv.to_vec())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "upload: {}", r.text().await?);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// A job read's p99 and a 30 MB upload, idle and while 2 workers spin on the 2 cores,
/// with the workers under `scheduler` (`worker.scheduler`; the goals hold for the
/// default) at the default `worker.nice`.
pub async fn under_load(
    report: &mut Report,
    big_csv: &std::path::Path,
    scheduler: &str,
) -> anyhow::Result<()> {
    let default = scheduler == "normal";
    println!(
        "the API under load (2 workers spinning on the 2 cores, worker.scheduler = {scheduler}):"
    );
    let csv = std::fs::read(big_csv)?;
    let q = Quarry::start_with(&[
        ("QUARRY_FLEET__MAX_WORKERS", "2"),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "120"),
        ("QUARRY_WORKER__SCHEDULER", scheduler),
        ("QUARRY_FLEET__TICK_SECS", "1"),
    ])
    .await;
    let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
    let probe = submit(&q, &dataset, json!({"kind":"spin","seconds":0.1})).await?;
    wait_done(&q, &probe).await?;
    read_p99(&q, &probe, 100).await?; // warm
    let idle = read_p99(&q, &probe, READS).await?;
    let idle_upload = upload_ms(&q, &csv, 3).await?;
    let spins = [
        submit(&q, &dataset, json!({"kind":"spin","seconds":90})).await?,
        submit(&q, &dataset, json!({"kind":"spin","seconds":90})).await?,
    ];
    until_running(&q, &spins).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = read_p99(&q, &probe, READS).await?;
    let loaded_upload = upload_ms(&q, &csv, 3).await?;
    let read = Figure::new(
        format!("`GET /api/v1/jobs/{{id}}` p99 under load, workers `{scheduler}`"),
        loaded,
        "ms",
    )
    .against("the same server idle", idle);
    let upload = Figure::new(
        format!(
            "uploading {:.0} MB of CSV under load (median of 3), workers `{scheduler}`",
            csv.len() as f64 / 1e6
        ),
        loaded_upload,
        "ms",
    )
    .against("the same upload idle", idle_upload);
    if default {
        report.add(read.goal(Goal::RatioAtMost(2.0)));
        report.add(upload.goal(Goal::RatioAtMost(1.5)));
    } else {
        report.add(read);
        report.add(upload);
    }
    Ok(())
}

/// A job read's p99 while two processes outside Quarry burn both cores at
/// `SCHED_IDLE` and write nothing: what CPU saturation alone costs on this machine,
/// the floor for the figure above.
pub async fn under_hogs(report: &mut Report) -> anyhow::Result<()> {
    let q = Quarry::start_with(&[("QUARRY_FLEET__TICK_SECS", "1")]).await;
    let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
    let probe = submit(&q, &dataset, json!({"kind":"spin","seconds":0.1})).await?;
    wait_done(&q, &probe).await?;
    read_p99(&q, &probe, 100).await?; // warm
    let idle = read_p99(&q, &probe, READS).await?;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        hogs.push(
            std::process::Command::new("chrt")
                .args(["--idle", "0", "sh", "-c", "while :; do :; done"])
                .spawn()?,
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = read_p99(&q, &probe, READS).await;
    for mut h in hogs {
        let _ = h.kill();
        let _ = h.wait();
    }
    report.add(
        Figure::new(
            "`GET /api/v1/jobs/{id}` p99, 2 `SCHED_IDLE` busy loops outside Quarry",
            loaded?,
            "ms",
        )
        .against("the same server idle", idle),
    );
    Ok(())
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("a stat line")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds used by the server, by each of its children (the workers) and by this
/// process.
struct Cpu {
    server: f64,
    client: f64,
    children: std::collections::HashMap<u32, f64>,
}

/// What the server, its workers and this process used between two [`Cpu`] readings.
struct CpuUsed {
    server: f64,
    workers: f64,
    client: f64,
}

impl Cpu {
    fn read(server: u32) -> anyhow::Result<Self> {
        let mut children = std::collections::HashMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may end while the walk goes on: skip it.
            if parent(pid).is_ok_and(|p| p == server)
                && let Ok(secs) = cpu_secs(pid)
            {
                children.insert(pid, secs);
            }
        }
        Ok(Self {
            server: cpu_secs(server)?,
            client: cpu_secs(std::process::id())?,
            children,
        })
    }

    /// What was used between `before` and this reading (a child that exited meanwhile
    /// is not counted after its exit).
    fn since(&self, before: &Self) -> CpuUsed {
        let workers = self
            .children
            .iter()
            .map(|(pid, secs)| secs - before.children.get(pid).copied().unwrap_or(0.0))
            .sum();
        CpuUsed {
            server: self.server - before.server,
            workers,
            client: self.client - before.client,
        }
    }
}

/// A process's parent.
fn parent(pid: u32) -> anyhow::Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("a stat line")?.1;
    Ok(after
        .split_whitespace()
        .nth(1)
        .context("a stat line's parent")?
        .parse()?)
}

/// The server's CPU use over `over`, as a percentage of one core.
async fn cpu_percent(pid: u32, over: Duration) -> anyhow::Result<f64> {
    let before = cpu_secs(pid)?;
    tokio::time::sleep(over).await;
    Ok((cpu_secs(pid)? - before) / over.as_secs_f64() * 100.0)
}

/// 500 open event streams on queued jobs: the idle server's CPU with them, beside the
/// same server with none.
pub async fn streams(report: &mut Report) -> anyhow::Result<()> {
    println!("{STREAMS} open event streams on queued jobs:");
    // One user opens them all: above the per-user bound of the default.
    let per_user = (STREAMS + 10).to_string();
    let q = Quarry::start_with(&[
        ("QUARRY_AUTH__MAX_STREAMS_PER_USER", per_user.as_str()),
        ("QUARRY_FLEET__MAX_WORKERS", "1"),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "120"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
    ])
    .await;
    let dataset = upload(&q, "tiny", "a\n1\n".to_owned()).await?;
    // One long job holds the one worker; the rest wait behind it.
    let blocker = submit(&q, &dataset, json!({"kind":"spin","seconds":120})).await?;
    until_running(&q, std::slice::from_ref(&blocker)).await?;
    let mut queued = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        queued.push(submit(&q, &dataset, json!({"kind":"spin","seconds":1})).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let measure = Duration::from_secs(10);
    let without = cpu_percent(q.pid(), measure).await?;
    let mut open = Vec::with_capacity(STREAMS);
    for id in &queued {
        let mut r = q
            .http
            .get(q.url(&format!("/api/v1/jobs/{id}/events")))
            .bearer_auth(&q.admin_token)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "stream: {}", r.status());
        let first = r.chunk().await?.context("the opening event")?;
        anyhow::ensure!(String::from_utf8_lossy(&first).contains("event: job"));
        open.push(r);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with = cpu_percent(q.pid(), measure).await?;
    report.add(Figure::new(
        "idle server CPU, no streams open",
        without,
        "% of a core",
    ));
    report.add(
        Figure::new(
            format!("what {STREAMS} open streams on queued jobs add"),
            (with - without).max(0.0),
            "% of a core",
        )
        .goal(Goal::AtMost(5.0)),
    );
    drop(open);
    Ok(())
}

/// The typed copy's one-time cost at upload, and an aggregate over it beside the same
/// aggregate re-parsing the CSV, as every job did before typed copies.
pub async fn typed_copy(report: &mut Report, q: &Quarry) -> anyhow::Result<()> {
    const BIG: usize = 1_000_000;
    println!("store once, columnar ({BIG} rows):");
    let csv = mixed_csv(BIG, 13);
    let dir = tempfile::tempdir()?;
    let csv_path = dir.path().join("sales.csv");
    std::fs::write(&csv_path, &csv)?;
    let mb = csv.len() as f64 / 1e6;

    let started = Instant::now();
    let dataset = upload(q, "sales-1m", csv.clone()).await?;
    let upload_ms = started.elapsed().as_secs_f64() * 1e3;
    // The bytes alone: the same body written to a file in this process.
    let started = Instant::now();
    std::fs::write(dir.path().join("copy.csv"), &csv)?;
    let body_ms = started.elapsed().as_secs_f64() * 1e3;
    let typed = crate::flights::typed_copy_of(q, &dataset)?;
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
    report.add(
        Figure::new(
            format!("uploading {mb:.0} MB: stream, check, write the typed copy (once)"),
            upload_ms,
            "ms",
        )
        .against("the same bytes written to a file", body_ms),
    );
    report.add(
        Figure::new(
            "aggregate over the typed copy, in-process, median of 5",
            over_parquet,
            "ms",
        )
        .against("over the CSV text, as before typed copies", over_csv),
    );
    Ok(())
}
