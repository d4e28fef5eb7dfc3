//! `cargo xtask chaos [--jobs N] [--cloud] [--seed S]`: N jobs (short aggregates and
//! 1–5 s spins, submitted in bursts) through a real `quarry up` while, at random,
//! workers are SIGKILLed, SIGTERMed and SIGSTOPped past their lease, and the server
//! itself is killed with SIGKILL and with SIGTERM and started again on the same data.
//!
//! Afterwards every job is checked against this program's own record (the id each
//! submit returned), and a table is printed. It exits non-zero on any lost job, any
//! double commit, or any failed job (every analysis here is valid, so a failure can
//! only come from a fault).
//!
//! `--cloud` runs the same against Postgres, moto's SQS and S3, and local worker
//! processes. Needs `QUARRY_BIN` (and for `--cloud` the emulator and Postgres, as
//! `cargo xtask test` provides them).

#![expect(
    clippy::print_stderr,
    reason = "a command-line program reporting its progress"
)]

use anyhow::{Context as _, bail};
use quarry_core::blob::{BlobStore, LocalBlobStore};
use quarry_tests::aws::Moto;
use quarry_tests::{Quarry, Rng, signal, worker_pids_of as workers_of};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The queue settings of the run: short leases so faults are noticed in seconds.
const VISIBILITY_SECS: u64 = 4;
/// Enough attempts that faults alone (a kill uses one; hand-backs do not) never use
/// them all up: a job failing here means the lifecycle lost track of one.
const MAX_ATTEMPTS: &str = "8";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillWorker,
    TermWorker,
    StopWorker,
    KillServer,
    TermServer,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillWorker => "SIGKILL a worker",
            Fault::TermWorker => "SIGTERM a worker",
            Fault::StopWorker => "SIGSTOP a worker past its lease",
            Fault::KillServer => "SIGKILL quarry up, restart",
            Fault::TermServer => "SIGTERM quarry up, restart",
        }
    }
}

struct Args {
    jobs: usize,
    cloud: bool,
    seed: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        jobs: 500,
        cloud: false,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64
            | 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jobs" => out.jobs = it.next().context("--jobs N")?.parse()?,
            "--seed" => out.seed = it.next().context("--seed S")?.parse::<u64>()? | 1,
            "--cloud" => out.cloud = true,
            other => bail!("unknown argument `{other}`: use --jobs N, --cloud, --seed S"),
        }
    }
    Ok(out)
}

/// Where the run keeps its data, for the checks at the end.
struct Backing {
    database_url: String,
    blobs: Box<dyn BlobStore>,
    _moto: Option<Moto>,
}

async fn start(cloud: bool) -> anyhow::Result<(Quarry, Backing)> {
    let mut vars: Vec<(String, String)> = [
        (
            "QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS",
            VISIBILITY_SECS.to_string().as_str(),
        ),
        ("QUARRY_QUEUE__MAX_ATTEMPTS", MAX_ATTEMPTS),
        ("QUARRY_WORKER__HEARTBEAT_SECS", "1"),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "5"),
        ("QUARRY_WORKER__STOP_TIMEOUT_SECS", "2"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
        ("QUARRY_FLEET__MAX_WORKERS", "4"),
        ("QUARRY_ANALYSES__MAX_RUNNING_PER_USER", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // The faults make every process complain; the table says what matters
    // (`QUARRY_CHAOS_LOG=warn` shows the processes' own account).
    let log = std::env::var("QUARRY_CHAOS_LOG").unwrap_or_else(|_| "error".to_owned());
    vars.push(("QUARRY_LOG".to_owned(), log));
    let mut moto = None;
    let mut cloud_backing = None;
    if cloud {
        let m = Moto::start().await;
        let sdk = m.sdk().await;
        let name = format!("chaos-{}", std::process::id());
        let max: u32 = MAX_ATTEMPTS.parse()?;
        let queue = quarry_core::aws::sqs::SqsQueue::create(
            &sdk,
            &name,
            Duration::from_secs(VISIBILITY_SECS),
            quarry_core::queue::backstop_receives(max),
        )
        .await?;
        m.aws(&["s3api", "create-bucket", "--bucket", &name])
            .await?;
        let admin = std::env::var("QUARRY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let database = quarry_core::db::create_scratch_postgres(&admin).await?;
        vars.extend(m.env());
        for (k, v) in [
            ("QUARRY_DATABASE__URL", database.as_str()),
            ("QUARRY_BLOB_STORE__KIND", "s3"),
            ("QUARRY_BLOB_STORE__BUCKET", name.as_str()),
            ("QUARRY_BLOB_STORE__PATH_STYLE", "true"),
            ("QUARRY_QUEUE__KIND", "sqs"),
            ("QUARRY_QUEUE__URL", queue.url()),
        ] {
            vars.push((k.to_owned(), v.to_owned()));
        }
        let scratch = std::env::temp_dir().join(format!("quarry-chaos-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let store = quarry_core::aws::s3::S3BlobStore::new(&sdk, &name, true, &scratch);
        cloud_backing = Some((database, store));
        moto = Some(m);
    }
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let q = Quarry::start_with(&borrowed).await;
    let backing = match cloud_backing {
        Some((database_url, store)) => Backing {
            database_url,
            blobs: Box::new(store),
            _moto: moto,
        },
        None => Backing {
            database_url: format!("sqlite://{}", q.data_dir.path().join("quarry.db").display()),
            blobs: Box::new(LocalBlobStore::open(&q.data_dir.path().join("blobs"))?),
            _moto: None,
        },
    };
    Ok((q, backing))
}

/// Submits one job, retrying while the server is down (a restart); the job's id.
async fn submit(q: &Quarry, analysis: &Value, dataset: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sent = q
            .http
            .post(q.url("/api/v1/jobs"))
            .bearer_auth(&q.admin_token)
            .json(&json!({"dataset_id": dataset, "analysis": analysis}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 202 => {
                let job: Value = r.json().await?;
                return job["id"]
                    .as_str()
                    .map(ToOwned::to_owned)
                    .context("a job id");
            }
            Ok(r) if r.status().is_client_error() => {
                bail!("the submit was refused: {} {}", r.status(), r.text().await?);
            }
            _ if Instant::now() > deadline => bail!("the server did not take a job for 120 s"),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The status of every job this run recorded, read through the API.
async fn statuses(q: &Quarry, ids: &[String]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let listed: Result<Vec<Value>, _> = async {
        q.http
            .get(q.url("/api/v1/jobs?limit=1000"))
            .bearer_auth(&q.admin_token)
            .send()
            .await?
            .json::<Vec<Value>>()
            .await
    }
    .await;
    for j in listed.unwrap_or_default() {
        if let Some(id) = j["id"].as_str() {
            out.insert(id.to_owned(), j.clone());
        }
    }
    for id in ids {
        if !out.contains_key(id)
            && let Ok(r) = q
                .http
                .get(q.url(&format!("/api/v1/jobs/{id}")))
                .bearer_auth(&q.admin_token)
                .send()
                .await
            && let Ok(j) = r.json::<Value>().await
        {
            out.insert(id.clone(), j);
        }
    }
    out
}

fn terminal(j: &Value) -> bool {
    matches!(
        j["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let started = Instant::now();
    eprintln!(
        "chaos: {} jobs on the {} default, seed {}",
        args.jobs,
        if args.cloud {
            "cloud (Postgres, SQS, S3)"
        } else {
            "embedded"
        },
        args.seed
    );
    let mut rng = Rng(args.seed);
    let (mut q, backing) = start(args.cloud).await?;
    let mut csv = String::from("category,amount\n");
    for i in 0..2000 {
        csv.push_str(&format!("c{},{}\n", i % 7, i % 101));
    }
    let dataset = q.upload_csv(&q.admin_token, "chaos", csv).await;

    let mut ids: Vec<String> = Vec::new();
    let mut faults: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    let mut next_burst = Instant::now();
    let mut last_restart = Instant::now();
    let mut stopped: Vec<(u32, Instant)> = Vec::new();
    // Both server faults happen in every run, a third and two thirds of the way in;
    // the rest is random.
    let mut forced = vec![
        (2 * args.jobs / 3, Fault::TermServer),
        (args.jobs / 3, Fault::KillServer),
    ];
    let mut seen: HashMap<String, Value>;
    let pool = connect(&backing.database_url).await?;
    let mut spared: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut last_check = Instant::now();
    let mut deadline = None;
    // Bursts of submits, and faults all along, until every job has finished.
    loop {
        let now = Instant::now();
        stopped.retain(|(pid, until)| {
            if now >= *until {
                let _ = signal(*pid, "-CONT");
                false
            } else {
                true
            }
        });
        if ids.len() < args.jobs && now >= next_burst {
            let burst = (5 + rng.below(30) as usize).min(args.jobs - ids.len());
            for _ in 0..burst {
                let analysis = if rng.below(2) == 0 {
                    json!({"kind": "aggregate", "group_by": ["category"],
                           "aggregations": [{"column": "amount", "op": "sum"}]})
                } else {
                    json!({"kind": "spin", "seconds": (rng.between(1.0, 5.0) * 10.0).round() / 10.0})
                };
                ids.push(submit(&q, &analysis, &dataset).await?);
            }
            next_burst = Instant::now() + Duration::from_secs_f64(rng.between(0.5, 4.0));
            eprintln!("chaos: {} submitted, {:.0?}", ids.len(), started.elapsed());
        }
        if now >= next_fault {
            let due = forced.last().is_some_and(|(at, _)| ids.len() >= *at)
                && last_restart.elapsed() >= Duration::from_secs(5);
            let fault = if due {
                forced.pop().map_or(Fault::KillWorker, |(_, f)| f)
            } else {
                match rng.below(10) {
                    0..=3 => Fault::KillWorker,
                    4..=5 => Fault::TermWorker,
                    6..=7 => Fault::StopWorker,
                    8 if last_restart.elapsed() >= Duration::from_secs(20) => Fault::KillServer,
                    9 if last_restart.elapsed() >= Duration::from_secs(20) => Fault::TermServer,
                    _ => Fault::KillWorker,
                }
            };
            let workers = workers_of(q.pid());
            let mut target =
                (!workers.is_empty()).then(|| workers[rng.below(workers.len() as u64) as usize]);
            // A kill or a stop costs the job it hits an attempt (a SIGTERM does not):
            // spare a job near its last one, so that only a lost track can fail a job.
            if let (Fault::KillWorker | Fault::StopWorker, Some(pid)) = (fault, target)
                && attempts_of_job_on(&pool, pid).await >= MAX_ATTEMPTS.parse::<u32>()? - 2
            {
                *spared.entry(fault).or_default() += 1;
                target = None;
            }
            let done = match (fault, target) {
                (Fault::KillWorker, Some(pid)) => {
                    let _ = signal(pid, "-KILL");
                    true
                }
                (Fault::TermWorker, Some(pid)) => {
                    let _ = signal(pid, "-TERM");
                    true
                }
                (Fault::StopWorker, Some(pid)) => {
                    let _ = signal(pid, "-STOP");
                    stopped.push((
                        pid,
                        Instant::now() + Duration::from_secs(VISIBILITY_SECS + 3),
                    ));
                    true
                }
                (Fault::KillServer, _) => {
                    q = q.crash_and_restart().await;
                    last_restart = Instant::now();
                    true
                }
                (Fault::TermServer, _) => {
                    q = q.stop_and_restart().await;
                    last_restart = Instant::now();
                    true
                }
                _ => false,
            };
            if done {
                *faults.entry(fault).or_default() += 1;
            }
            next_fault = Instant::now() + Duration::from_secs_f64(rng.between(1.0, 3.0));
        }
        if ids.len() == args.jobs && last_check.elapsed() >= Duration::from_secs(2) {
            let until = *deadline.get_or_insert_with(|| {
                Instant::now() + Duration::from_secs(180 + args.jobs as u64)
            });
            seen = statuses(&q, &ids).await;
            last_check = Instant::now();
            if ids.iter().all(|id| seen.get(id).is_some_and(terminal)) || Instant::now() > until {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (pid, _) in stopped.drain(..) {
        let _ = signal(pid, "-CONT");
    }
    let wall = started.elapsed();
    report(&args, &ids, &seen, &faults, &spared, &backing, wall).await
}

async fn connect(url: &str) -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::AnyPool::connect(url).await?)
}

/// The attempts so far of the job the worker with this pid runs (0 if none).
async fn attempts_of_job_on(pool: &sqlx::AnyPool, pid: u32) -> u32 {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT j.attempts FROM jobs j JOIN workers w ON w.id = j.worker_id \
         WHERE j.status = 'running' AND w.detail = $1",
    )
    .bind(format!("pid {pid}"))
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    row.map_or(0, |(n,)| u32::try_from(n).unwrap_or(0))
}

async fn report(
    args: &Args,
    ids: &[String],
    seen: &HashMap<String, Value>,
    faults: &BTreeMap<Fault, u32>,
    spared: &BTreeMap<Fault, u32>,
    backing: &Backing,
    wall: Duration,
) -> anyhow::Result<()> {
    let pool = connect(&backing.database_url).await?;
    let mut succeeded = 0;
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut lost: Vec<(String, String)> = Vec::new();
    let mut double: Vec<String> = Vec::new();
    let mut attempts: BTreeMap<u64, u32> = BTreeMap::new();
    let results = backing.blobs.list("results/").await?;
    let mut objects: HashMap<&str, usize> = HashMap::new();
    for b in &results {
        if let Some(job) = b
            .key
            .strip_prefix("results/")
            .and_then(|k| k.split(['.', '/']).next())
        {
            *objects.entry(job).or_default() += 1;
        }
    }
    let mut orphans = 0;
    for id in ids {
        let Some(j) = seen.get(id) else {
            lost.push((id.clone(), "never seen".to_owned()));
            continue;
        };
        *attempts
            .entry(j["attempts"].as_u64().unwrap_or(0))
            .or_default() += 1;
        match j["status"].as_str() {
            Some("succeeded") => {
                succeeded += 1;
                // The committed result must be the one of the attempt that held the
                // lease last: its attempt number and worker are in the key.
                let row: Option<(String, i64, Option<String>)> = sqlx::query_as(
                    "SELECT r.blob_key, j.attempts, j.worker_id FROM job_results r \
                     JOIN jobs j ON j.id = r.job_id WHERE r.job_id = $1",
                )
                .bind(id)
                .fetch_optional(&pool)
                .await?;
                match row {
                    Some((key, n, Some(worker)))
                        if key == format!("results/{id}.attempt-{n}-{worker}.parquet") => {}
                    other => double.push(format!("{id}: {other:?}")),
                }
                orphans += objects
                    .get(id.as_str())
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(1);
            }
            Some("failed") => {
                failed.push((id.clone(), j["error"].as_str().unwrap_or("").to_owned()))
            }
            Some(status) if status != "cancelled" => lost.push((id.clone(), status.to_owned())),
            _ => {}
        }
    }
    let fault_total: u32 = faults.values().sum();
    println!();
    println!(
        "| chaos run ({}, {} jobs, seed {}) | |",
        if args.cloud {
            "--cloud: Postgres, moto SQS and S3, local workers"
        } else {
            "embedded: SQLite, database queue, child workers"
        },
        args.jobs,
        args.seed
    );
    println!("|---|---:|");
    println!("| jobs submitted | {} |", ids.len());
    println!("| succeeded | {succeeded} |");
    println!("| failed | {} |", failed.len());
    println!("| lost (never finished) | {} |", lost.len());
    println!(
        "| committed more than once, or by a fenced attempt | {} |",
        double.len()
    );
    println!("| result objects left by killed attempts (swept at start-up) | {orphans} |");
    for (n, count) in &attempts {
        println!(
            "| jobs with {n} attempt{} | {count} |",
            if *n == 1 { "" } else { "s" }
        );
    }
    for (fault, n) in faults {
        println!("| fault: {} | {n} |", fault.name());
    }
    println!("| faults in all | {fault_total} |");
    for (fault, n) in spared {
        println!(
            "| spared (the job hit was at attempt {} of {MAX_ATTEMPTS}): {} | {n} |",
            MAX_ATTEMPTS.parse::<u32>().unwrap_or(0) - 2,
            fault.name()
        );
    }
    println!("| wall time | {:.0} s |", wall.as_secs_f64());
    for (id, reason) in &failed {
        println!("failed {id}: {reason}");
    }
    for (id, status) in &lost {
        println!("lost {id}: {status}");
    }
    for d in &double {
        println!("double commit {d}");
    }
    if !failed.is_empty() || !lost.is_empty() || !double.is_empty() {
        bail!(
            "{} failed, {} lost, {} double commits",
            failed.len(),
            lost.len(),
            double.len()
        );
    }
    Ok(())
}
