//! The analyses, on polars' lazy API and streaming engine.

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
    /// It was told to stop.
    #[error("stopped")]
    Stopped,
}

impl From<PolarsError> for RunError {
    fn from(e: PolarsError) -> Self {
        RunError::Failed(validate::first_lines(&e.to_string()))
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
        Analysis::Profile => profile(data, ctx)?,
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

fn is_numeric(dtype: &DataType) -> bool {
    dtype.is_primitive_numeric() || dtype.is_bool()
}

const QUANTILES: [(f64, &str); 5] = [
    (0.05, "q05"),
    (0.25, "q25"),
    (0.5, "q50"),
    (0.75, "q75"),
    (0.95, "q95"),
];
const TOP_VALUES: u32 = 5;

/// One row per column: type, count, nulls, distinct, min, max, mean, std, quantiles
/// (numbers) and top values (strings).
fn profile(mut data: LazyFrame, ctx: &RunContext<'_>) -> Result<DataFrame, RunError> {
    let schema = data.collect_schema()?;
    let mut exprs = Vec::new();
    for (name, dtype) in schema.iter() {
        let n = name.as_str();
        let c = || col(n);
        exprs.push(
            c().count()
                .cast(DataType::Int64)
                .alias(format!("{n}\u{1f}count")),
        );
        exprs.push(
            c().null_count()
                .cast(DataType::Int64)
                .alias(format!("{n}\u{1f}nulls")),
        );
        exprs.push(
            c().n_unique()
                .cast(DataType::Int64)
                .alias(format!("{n}\u{1f}distinct")),
        );
        exprs.push(
            c().min()
                .cast(DataType::String)
                .alias(format!("{n}\u{1f}min")),
        );
        exprs.push(
            c().max()
                .cast(DataType::String)
                .alias(format!("{n}\u{1f}max")),
        );
        if is_numeric(dtype) {
            let f = || col(n).cast(DataType::Float64);
            exprs.push(f().mean().alias(format!("{n}\u{1f}mean")));
            exprs.push(f().std(1).alias(format!("{n}\u{1f}std")));
            for (q, label) in QUANTILES {
                exprs.push(
                    f().quantile(lit(q), QuantileMethod::Linear)
                        .alias(format!("{n}\u{1f}{label}")),
                );
            }
        }
    }
    let stats = collect(data.clone().select(exprs))?;
    (ctx.progress)(0.5);
    let total = schema.len().max(1) as f64;

    let mut out_name = Vec::new();
    let mut out_type = Vec::new();
    let mut ints: [Vec<Option<i64>>; 3] = Default::default();
    let mut texts: [Vec<Option<String>>; 2] = Default::default();
    let mut floats: [Vec<Option<f64>>; 7] = Default::default();
    let mut top = Vec::new();
    for (i, (name, dtype)) in schema.iter().enumerate() {
        if ctx.stop.load(Ordering::Relaxed) {
            return Err(RunError::Stopped);
        }
        let n = name.as_str();
        let get = |stat: &str| {
            stats
                .column(&format!("{n}\u{1f}{stat}"))
                .ok()
                .and_then(|c| c.get(0).ok())
                .map(|v| v.into_static())
        };
        out_name.push(n.to_owned());
        out_type.push(crate::scan::type_name(dtype));
        for (slot, stat) in ints.iter_mut().zip(["count", "nulls", "distinct"]) {
            slot.push(get(stat).and_then(|v| v.extract::<i64>()));
        }
        for (slot, stat) in texts.iter_mut().zip(["min", "max"]) {
            slot.push(get(stat).and_then(|v| v.get_str().map(str::to_owned)));
        }
        let float_stats = ["mean", "std", "q05", "q25", "q50", "q75", "q95"];
        for (slot, stat) in floats.iter_mut().zip(float_stats) {
            slot.push(get(stat).and_then(|v| v.extract::<f64>()));
        }
        top.push(if dtype.is_string() {
            Some(top_values(data.clone(), n)?)
        } else {
            None
        });
        (ctx.progress)(0.5 + 0.5 * (i + 1) as f64 / total);
    }
    let [count, nulls, distinct] = ints;
    let [min, max] = texts;
    let [mean, std, q05, q25, q50, q75, q95] = floats;
    Ok(DataFrame::new_infer_height(vec![
        Column::new("column".into(), out_name),
        Column::new("type".into(), out_type),
        Column::new("count".into(), count),
        Column::new("nulls".into(), nulls),
        Column::new("distinct".into(), distinct),
        Column::new("min".into(), min),
        Column::new("max".into(), max),
        Column::new("mean".into(), mean),
        Column::new("std".into(), std),
        Column::new("q05".into(), q05),
        Column::new("q25".into(), q25),
        Column::new("q50".into(), q50),
        Column::new("q75".into(), q75),
        Column::new("q95".into(), q95),
        Column::new("top_values".into(), top),
    ])?)
}

/// `value (count), value (count), ...` for the most frequent non-null values.
fn top_values(data: LazyFrame, name: &str) -> Result<String, RunError> {
    let counts = collect(
        data.filter(col(name).is_not_null())
            .group_by([col(name)])
            .agg([len().alias("__n")])
            .sort(
                [PlSmallStr::from("__n"), PlSmallStr::from(name)],
                SortMultipleOptions::default().with_order_descending_multi([true, false]),
            )
            .limit(TOP_VALUES),
    )?;
    let values = counts.column(name)?.cast(&DataType::String)?;
    let ns = counts.column("__n")?.cast(&DataType::Int64)?;
    let (values, ns) = (values.str()?, ns.i64()?);
    Ok((0..counts.height())
        .map(|i| {
            format!(
                "{} ({})",
                values.get(i).unwrap_or(""),
                ns.get(i).unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(", "))
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
