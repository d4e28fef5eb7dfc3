//! The analyses, on polars' lazy API and streaming engine.
//!
//! Errors: an analysis that fails on its data (a bad cast, a missing value) is
//! [`RunError::Failed`], and its message is what the user sees. polars I/O and
//! object-store failures are the worker's trouble, not the user's:
//! [`RunError::Internal`] carries the detail for the log, and the user only sees
//! [`INTERNAL_MESSAGE`].

mod profile;
pub mod sql;
pub mod validate;

use polars::prelude::*;
use quarry_domain::{AggOp, Analysis, ColumnInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a running analysis reports and is stopped.
pub struct RunContext<'a> {
    /// Set when the job was cancelled or the worker must stop.
    pub stop: &'a AtomicBool,
    /// Called with 0.0..=1.0 as work completes.
    pub progress: &'a (dyn Fn(f64) + Sync),
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext").finish_non_exhaustive()
    }
}

/// Why an analysis did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The analysis failed on this data; the message is for the user.
    #[error("{0}")]
    Failed(String),
    /// Reading the dataset or writing the result failed (I/O, object store): the
    /// detail is for the log only, and the attempt is worth retrying.
    #[error("{0}")]
    Internal(String),
    /// It was told to stop.
    #[error("stopped")]
    Stopped,
}

/// What the user sees of an internal failure.
pub const INTERNAL_MESSAGE: &str = "the worker could not read the dataset; it will retry";

impl From<PolarsError> for RunError {
    fn from(e: PolarsError) -> Self {
        if is_internal(&e) {
            RunError::Internal(e.to_string())
        } else {
            RunError::Failed(validate::first_lines(&e.to_string()))
        }
    }
}

/// Whether a polars error is an I/O or object-store failure, however it is wrapped.
pub fn is_internal(e: &PolarsError) -> bool {
    let mut e = e;
    loop {
        match e {
            PolarsError::IO { .. } => return true,
            PolarsError::Context { error, .. } | PolarsError::ExprContext { error, .. } => {
                e = error;
            }
            other => return other.to_string().contains("object-store error"),
        }
    }
}

fn collect(lf: LazyFrame) -> Result<DataFrame, RunError> {
    Ok(lf.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

/// Runs `analysis` over `data`.
pub fn run(
    analysis: &Analysis,
    data: LazyFrame,
    ctx: &RunContext<'_>,
) -> Result<DataFrame, RunError> {
    let out = match analysis {
        Analysis::Profile => profile::profile(data, ctx)?,
        Analysis::Aggregate {
            group_by,
            aggregations,
            order_by,
            limit,
        } => {
            let aggs: Vec<Expr> = aggregations
                .iter()
                .map(|a| agg_expr(&a.column, a.op).alias(a.output_name()))
                .collect();
            let mut lf = if group_by.is_empty() {
                data.select(aggs)
            } else {
                data.group_by(group_by.iter().map(|g| col(g.as_str())).collect::<Vec<_>>())
                    .agg(aggs)
            };
            if order_by.is_empty() && !group_by.is_empty() {
                lf = lf.sort(
                    group_by
                        .iter()
                        .map(|g| PlSmallStr::from(g.as_str()))
                        .collect::<Vec<_>>(),
                    SortMultipleOptions::default(),
                );
            } else if !order_by.is_empty() {
                let (names, desc): (Vec<PlSmallStr>, Vec<bool>) = order_by
                    .iter()
                    .map(|k| k.resolve())
                    .map(|(n, d)| (PlSmallStr::from(n), d))
                    .unzip();
                lf = lf.sort(
                    names,
                    SortMultipleOptions::default()
                        .with_order_descending_multi(desc)
                        .with_nulls_last(true),
                );
            }
            if let Some(n) = limit {
                lf = lf.limit(*n as IdxSize);
            }
            collect(lf)?
        }
        Analysis::Sql { query } => {
            sql::check(query).map_err(RunError::Failed)?;
            let mut sql_ctx = polars::sql::SQLContext::new();
            sql_ctx.register(sql::TABLE, data);
            collect(sql_ctx.execute(query)?)?
        }
        Analysis::Histogram { column, bins } => histogram(data, column, *bins)?,
        Analysis::Correlation { columns } => correlation(data, columns)?,
        Analysis::Spin { seconds } => spin(*seconds, ctx)?,
    };
    (ctx.progress)(1.0);
    Ok(out)
}

fn agg_expr(column: &str, op: AggOp) -> Expr {
    let c = col(column);
    let f = || col(column).cast(DataType::Float64);
    match op {
        AggOp::Count => c.count(),
        AggOp::Sum => c.sum(),
        AggOp::Mean => f().mean(),
        AggOp::Min => c.min(),
        AggOp::Max => c.max(),
        AggOp::Median => f().median(),
        AggOp::Std => f().std(1),
        AggOp::NUnique => c.n_unique(),
    }
}

/// Equal-width bins between the column's min and max; empty bins are listed too.
fn histogram(data: LazyFrame, column: &str, bins: u32) -> Result<DataFrame, RunError> {
    let f = || col(column).cast(DataType::Float64);
    let bounds = collect(
        data.clone()
            .select([f().min().alias("lo"), f().max().alias("hi")]),
    )?;
    let lo = bounds.column("lo")?.get(0)?.extract::<f64>();
    let hi = bounds.column("hi")?.get(0)?.extract::<f64>();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(DataFrame::new_infer_height(vec![
            Column::new("bin".into(), Vec::<i64>::new()),
            Column::new("lower".into(), Vec::<f64>::new()),
            Column::new("upper".into(), Vec::<f64>::new()),
            Column::new("count".into(), Vec::<i64>::new()),
        ])?);
    };
    let width = if hi > lo {
        (hi - lo) / f64::from(bins)
    } else {
        1.0
    };
    let counted = collect(
        data.filter(f().is_not_null().and(f().is_not_nan()))
            .select([((f() - lit(lo)) / lit(width))
                .floor()
                .clip(lit(0.0), lit(f64::from(bins - 1)))
                .cast(DataType::Int64)
                .alias("bin")])
            .group_by([col("bin")])
            .agg([len().cast(DataType::Int64).alias("count")]),
    )?;
    let mut counts = vec![0_i64; bins as usize];
    let (b, c) = (
        counted.column("bin")?.i64()?,
        counted.column("count")?.i64()?,
    );
    for i in 0..counted.height() {
        if let (Some(bin), Some(n)) = (b.get(i), c.get(i))
            && let Some(slot) = usize::try_from(bin).ok().and_then(|k| counts.get_mut(k))
        {
            *slot += n;
        }
    }
    let idx: Vec<i64> = (0..i64::from(bins)).collect();
    let lower: Vec<f64> = idx.iter().map(|&k| lo + width * k as f64).collect();
    let upper: Vec<f64> = idx
        .iter()
        .map(|&k| {
            if k + 1 == i64::from(bins) {
                hi.max(lo + width * (k + 1) as f64)
            } else {
                lo + width * (k + 1) as f64
            }
        })
        .collect();
    Ok(DataFrame::new_infer_height(vec![
        Column::new("bin".into(), idx),
        Column::new("lower".into(), lower),
        Column::new("upper".into(), upper),
        Column::new("count".into(), counts),
    ])?)
}

/// The Pearson correlation matrix: a `column` column, then one column per input.
fn correlation(data: LazyFrame, columns: &[String]) -> Result<DataFrame, RunError> {
    let f = |c: &str| col(c).cast(DataType::Float64);
    let mut exprs = Vec::new();
    for a in columns {
        for b in columns {
            exprs.push(pearson_corr(f(a), f(b)).alias(format!("{a}\u{1f}{b}")));
        }
    }
    let pairs = collect(data.select(exprs))?;
    let mut out = vec![Column::new("column".into(), columns.to_vec())];
    for b in columns {
        let values: Vec<Option<f64>> = columns
            .iter()
            .map(|a| {
                pairs
                    .column(&format!("{a}\u{1f}{b}"))
                    .ok()
                    .and_then(|c| c.get(0).ok())
                    .and_then(|v| v.extract::<f64>())
            })
            .collect();
        out.push(Column::new(b.as_str().into(), values));
    }
    Ok(DataFrame::new_infer_height(out)?)
}

/// Burns one core for `seconds`, reporting progress and honouring stop requests.
fn spin(seconds: f64, ctx: &RunContext<'_>) -> Result<DataFrame, RunError> {
    let total = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut iterations: u64 = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut last_report = Instant::now();
    while started.elapsed() < total {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        iterations += 1;
        if ctx.stop.load(Ordering::Relaxed) {
            return Err(RunError::Stopped);
        }
        if last_report.elapsed() > Duration::from_millis(250) {
            (ctx.progress)((started.elapsed().as_secs_f64() / seconds).min(0.99));
            last_report = Instant::now();
        }
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("seconds".into(), [seconds]),
        Column::new(
            "iterations".into(),
            [i64::try_from(iterations).unwrap_or(i64::MAX)],
        ),
        Column::new("checksum".into(), [(x % 1_000_000) as i64]),
    ])?)
}

/// The API's view of a result's columns.
pub fn result_columns(df: &DataFrame) -> Vec<ColumnInfo> {
    crate::scan::columns(df.schema())
}

#[cfg(test)]
mod tests;
