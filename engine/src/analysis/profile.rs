//! The `profile` analysis: one row of statistics per column.

use super::{RunContext, RunError, collect};
use polars::prelude::*;
use std::sync::atomic::Ordering;

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

/// Whether a column holds one plain value per row. Lists, structs, arrays and
/// objects only get `count` and `nulls`: min, max and distinct of a nested value are
/// not defined (polars refuses them), and are left empty.
fn is_flat(dtype: &DataType) -> bool {
    !dtype.is_nested() && !dtype.is_object()
}

/// One row per column: type, count, nulls, distinct, min, max, mean, std, quantiles
/// (numbers) and top values (strings).
pub(super) fn profile(mut data: LazyFrame, ctx: &RunContext<'_>) -> Result<DataFrame, RunError> {
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
        if !is_flat(dtype) {
            continue;
        }
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
