//! Checking an analysis against a dataset's schema before it is enqueued, so a bad
//! request is a 4xx naming the bad column or op, and nothing is queued.

use super::sql;
use polars::prelude::*;
use quarry_domain::{Analysis, ColumnInfo};
use std::collections::HashSet;

/// The most bins a histogram may have.
pub const MAX_BINS: u32 = 10_000;

/// What an analysis may ask for: the `analyses.*` keys of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `analyses.allow_spin`.
    pub allow_spin: bool,
    /// `analyses.max_spin_secs`.
    pub max_spin_secs: u64,
    /// `analyses.max_profile_columns`.
    pub max_profile_columns: u32,
    /// `analyses.max_correlation_columns`.
    pub max_correlation_columns: u32,
}

impl Limits {
    /// The limits an environment's config sets.
    pub fn from_config(analyses: &quarry_core::config::AnalysesConfig) -> Self {
        Self {
            allow_spin: analyses.allow_spin,
            max_spin_secs: analyses.max_spin_secs,
            max_profile_columns: analyses.max_profile_columns,
            max_correlation_columns: analyses.max_correlation_columns,
        }
    }
}

/// Why an analysis was refused: a stable code and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

/// The polars type a type name stands for exactly, if it does (inverse of
/// `scan::type_name` for the flat types).
pub fn exact_dtype(name: &str) -> Option<DataType> {
    Some(match name {
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "string" => DataType::String,
        "null" => DataType::Null,
        _ => return None,
    })
}

/// The polars type for one of Quarry's type names, close enough to plan a query.
/// Temporal types use microseconds, the unit polars' SQL functions work in.
pub fn dtype_of(name: &str) -> DataType {
    if let Some(exact) = exact_dtype(name) {
        return exact;
    }
    match name {
        "date" => DataType::Date,
        "datetime" => DataType::Datetime(TimeUnit::Microseconds, None),
        "duration" => DataType::Duration(TimeUnit::Microseconds),
        "time" => DataType::Time,
        "binary" => DataType::Binary,
        _ => decimal_of(name).unwrap_or(DataType::String),
    }
}

/// `decimal` or polars' own `decimal[precision,scale]`.
fn decimal_of(name: &str) -> Option<DataType> {
    /// The precision and scale assumed when the name does not say.
    const DEFAULT: (usize, usize) = (38, 9);
    if name == "decimal" {
        return Some(DataType::Decimal(DEFAULT.0, DEFAULT.1));
    }
    let inner = name.strip_prefix("decimal[")?.strip_suffix(']')?;
    let (p, s) = inner.split_once(',')?;
    let (p, s): (usize, usize) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
    ((1..=38).contains(&p) && s <= p).then_some(DataType::Decimal(p, s))
}

fn is_numeric(type_name: &str) -> bool {
    quarry_domain::dataset::is_numeric_type(type_name) || type_name.starts_with("decimal[")
}

/// Whether values of this type are lists, structs or arrays rather than one value.
pub fn is_nested(type_name: &str) -> bool {
    matches!(type_name, "list" | "struct" | "object") || type_name.starts_with("array")
}

fn column<'a>(
    columns: &'a [ColumnInfo],
    name: &str,
    role: &str,
) -> Result<&'a ColumnInfo, Invalid> {
    columns.iter().find(|c| c.name == name).ok_or_else(|| {
        let known: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        invalid(
            "unknown_column",
            format!(
                "{role} `{name}` is not a column of the dataset; its columns are: {}",
                known.join(", ")
            ),
        )
    })
}

/// The first name that appears twice, if any.
fn repeated<'a>(names: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .find(|n| !seen.insert(n.as_str()))
        .map(String::as_str)
}

/// Checks `analysis` against the dataset's columns and the environment's limits.
pub fn validate(
    analysis: &Analysis,
    columns: &[ColumnInfo],
    limits: &Limits,
) -> Result<(), Invalid> {
    match analysis {
        Analysis::Profile => {
            let max = limits.max_profile_columns;
            if columns.len() > max as usize {
                return Err(invalid(
                    "too_many_columns",
                    format!(
                        "the dataset has {} columns; a profile covers at most {max} \
                         (analyses.max_profile_columns): profile the columns you need with a \
                         `sql` analysis (COUNT, MIN, MAX, AVG, ...) or an `aggregate`",
                        columns.len()
                    ),
                ));
            }
            Ok(())
        }
        Analysis::Aggregate {
            group_by,
            aggregations,
            order_by,
            limit,
        } => aggregate(columns, group_by, aggregations, order_by, *limit),
        Analysis::Sql { query } => sql::on_big_stack("checking the query", || {
            sql::check_on_this_thread(query)?;
            plan_sql(query, columns)
        })
        .and_then(|checked| checked)
        .map_err(|m| invalid("bad_sql", m)),
        Analysis::Histogram { column: name, bins } => {
            let c = column(columns, name, "histogram column")?;
            if !is_numeric(&c.r#type) || c.r#type == "bool" {
                return Err(invalid(
                    "bad_column",
                    format!(
                        "a histogram needs a numeric column, but `{name}` is {}",
                        c.r#type
                    ),
                ));
            }
            if *bins == 0 || *bins > MAX_BINS {
                return Err(invalid(
                    "bad_bins",
                    format!("bins must be between 1 and {MAX_BINS}"),
                ));
            }
            Ok(())
        }
        Analysis::Correlation { columns: names } => correlation(columns, names, limits),
        Analysis::Spin { seconds } => {
            if !limits.allow_spin {
                return Err(invalid(
                    "spin_disabled",
                    "the spin analysis is disabled in this environment (analyses.allow_spin)",
                ));
            }
            let max = limits.max_spin_secs;
            if !seconds.is_finite() || *seconds < 0.0 || *seconds > max as f64 {
                return Err(invalid(
                    "bad_seconds",
                    format!("seconds must be between 0 and {max} (analyses.max_spin_secs)"),
                ));
            }
            Ok(())
        }
    }
}

fn aggregate(
    columns: &[ColumnInfo],
    group_by: &[String],
    aggregations: &[quarry_domain::Aggregation],
    order_by: &[quarry_domain::OrderKey],
    limit: Option<u32>,
) -> Result<(), Invalid> {
    if aggregations.is_empty() {
        return Err(invalid(
            "no_aggregations",
            "give at least one aggregation: {\"column\",\"op\"}",
        ));
    }
    for g in group_by {
        let c = column(columns, g, "group_by column")?;
        if is_nested(&c.r#type) {
            return Err(invalid(
                "bad_column",
                format!("cannot group by `{g}`: it is a {} column", c.r#type),
            ));
        }
    }
    if let Some(twice) = repeated(group_by) {
        return Err(invalid(
            "duplicate_column",
            format!("group_by names `{twice}` twice: name each key once"),
        ));
    }
    let mut outputs: HashSet<String> = group_by.iter().cloned().collect();
    for agg in aggregations {
        let c = column(columns, &agg.column, "aggregation column")?;
        if agg.op.numeric_only() && !is_numeric(&c.r#type) {
            return Err(invalid(
                "bad_op",
                format!(
                    "`{}` of `{}` needs a numeric column, but `{}` is {}; use count, min, max or n_unique",
                    agg.op.as_str(),
                    agg.column,
                    agg.column,
                    c.r#type
                ),
            ));
        }
        if is_nested(&c.r#type) && agg.op != quarry_domain::AggOp::Count {
            return Err(invalid(
                "bad_op",
                format!(
                    "`{}` is a {} column: only `count` works on it; flatten it with a `sql` \
                     analysis first",
                    agg.column, c.r#type
                ),
            ));
        }
        let name = agg.output_name();
        if name.is_empty() {
            return Err(invalid("bad_alias", "an \"alias\" cannot be empty"));
        }
        if !outputs.insert(name) {
            return Err(invalid(
                "duplicate_output",
                format!(
                    "two outputs are named `{}`: give one an \"alias\"",
                    agg.output_name()
                ),
            ));
        }
    }
    for key in order_by {
        let (name, _) = key.resolve();
        if !outputs.contains(name) {
            let mut known: Vec<&str> = outputs.iter().map(String::as_str).collect();
            known.sort_unstable();
            return Err(invalid(
                "unknown_column",
                format!(
                    "order_by `{name}` is not an output column; outputs are: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    if limit == Some(0) {
        return Err(invalid("bad_limit", "limit must be at least 1"));
    }
    Ok(())
}

fn correlation(columns: &[ColumnInfo], names: &[String], limits: &Limits) -> Result<(), Invalid> {
    if names.len() < 2 {
        return Err(invalid(
            "bad_columns",
            "a correlation needs at least two columns",
        ));
    }
    let max = limits.max_correlation_columns;
    if names.len() > max as usize {
        return Err(invalid(
            "too_many_columns",
            format!(
                "a correlation covers at most {max} columns (analyses.max_correlation_columns); \
                 {} were named",
                names.len()
            ),
        ));
    }
    if let Some(twice) = repeated(names) {
        return Err(invalid(
            "duplicate_column",
            format!("the correlation names `{twice}` twice: name each column once"),
        ));
    }
    for name in names {
        let c = column(columns, name, "correlation column")?;
        if !is_numeric(&c.r#type) {
            return Err(invalid(
                "bad_column",
                format!(
                    "a correlation needs numeric columns, but `{name}` is {}",
                    c.r#type
                ),
            ));
        }
    }
    Ok(())
}

/// Plans the query against an empty frame with the dataset's schema, which resolves
/// every column and function without reading data. Run it only on a query that
/// passed [`sql::check`], on a thread from [`sql::on_big_stack`].
fn plan_sql(query: &str, columns: &[ColumnInfo]) -> Result<(), String> {
    let empty: Vec<Column> = columns
        .iter()
        .map(|c| Column::full_null(c.name.as_str().into(), 0, &dtype_of(&c.r#type)))
        .collect();
    let frame = DataFrame::new_infer_height(empty).map_err(|e| e.to_string())?;
    let mut ctx = polars::sql::SQLContext::new();
    ctx.register(sql::TABLE, frame.lazy());
    let mut planned = ctx
        .execute(query)
        .map_err(|e| first_lines(&e.to_string()))?;
    planned
        .collect_schema()
        .map_err(|e| first_lines(&e.to_string()))?;
    Ok(())
}

/// The first lines of a polars error, without its long hints.
pub fn first_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
