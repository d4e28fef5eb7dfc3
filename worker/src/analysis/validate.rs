//! Checking an analysis against a dataset's schema before it is enqueued, so a bad
//! request is a 4xx naming the bad column or op, and nothing is queued.

use super::sql;
use polars::prelude::*;
use quarry_domain::{Analysis, ColumnInfo};
use std::collections::HashSet;

/// The most bins a histogram may have.
pub const MAX_BINS: u32 = 10_000;
/// The longest a `spin` may run.
pub const MAX_SPIN_SECONDS: f64 = 3600.0;

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
pub fn dtype_of(name: &str) -> DataType {
    exact_dtype(name).unwrap_or(match name {
        "date" => DataType::Date,
        "binary" => DataType::Binary,
        _ => DataType::String,
    })
}

fn is_numeric(type_name: &str) -> bool {
    quarry_domain::dataset::is_numeric_type(type_name)
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

/// Checks `analysis` against the dataset's columns.
pub fn validate(
    analysis: &Analysis,
    columns: &[ColumnInfo],
    allow_spin: bool,
) -> Result<(), Invalid> {
    match analysis {
        Analysis::Profile => Ok(()),
        Analysis::Aggregate {
            group_by,
            aggregations,
            order_by,
            limit,
        } => {
            if aggregations.is_empty() {
                return Err(invalid(
                    "no_aggregations",
                    "give at least one aggregation: {\"column\",\"op\"}",
                ));
            }
            for g in group_by {
                column(columns, g, "group_by column")?;
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
                if !outputs.insert(agg.output_name()) {
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
                    let mut known: Vec<&String> = outputs.iter().collect();
                    known.sort();
                    return Err(invalid(
                        "unknown_column",
                        format!(
                            "order_by `{name}` is not an output column; outputs are: {}",
                            known
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if *limit == Some(0) {
                return Err(invalid("bad_limit", "limit must be at least 1"));
            }
            Ok(())
        }
        Analysis::Sql { query } => {
            sql::check(query).map_err(|m| invalid("bad_sql", m))?;
            plan_sql(query, columns).map_err(|m| invalid("bad_sql", m))
        }
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
        Analysis::Correlation { columns: names } => {
            if names.len() < 2 {
                return Err(invalid(
                    "bad_columns",
                    "a correlation needs at least two columns",
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
        Analysis::Spin { seconds } => {
            if !allow_spin {
                return Err(invalid(
                    "spin_disabled",
                    "the spin analysis is disabled in this environment (analyses.allow_spin)",
                ));
            }
            if !seconds.is_finite() || *seconds < 0.0 || *seconds > MAX_SPIN_SECONDS {
                return Err(invalid(
                    "bad_seconds",
                    format!("seconds must be between 0 and {MAX_SPIN_SECONDS}"),
                ));
            }
            Ok(())
        }
    }
}

/// Plans the query against an empty frame with the dataset's schema, which resolves
/// every column and function without reading data.
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
mod tests {
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<ColumnInfo> {
        [
            ("category", "string"),
            ("amount", "float64"),
            ("id", "int64"),
        ]
        .iter()
        .map(|(n, t)| ColumnInfo {
            name: (*n).into(),
            r#type: (*t).into(),
        })
        .collect()
    }

    fn check(v: serde_json::Value) -> Result<(), Invalid> {
        validate(&serde_json::from_value(v).unwrap(), &cols(), false)
    }

    #[test]
    fn good_requests_pass() {
        check(json!({"kind":"aggregate","group_by":["category"],"aggregations":[{"column":"amount","op":"mean"}],"order_by":["-amount_mean"]})).unwrap();
        check(json!({"kind":"sql","query":"SELECT category, AVG(amount) AS m FROM data GROUP BY category"})).unwrap();
        check(json!({"kind":"histogram","column":"amount","bins":10})).unwrap();
        check(json!({"kind":"correlation","columns":["amount","id"]})).unwrap();
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let e = check(json!({"kind":"aggregate","group_by":["cat"],"aggregations":[{"column":"amount","op":"mean"}]})).unwrap_err();
        assert_eq!(e.code, "unknown_column");
        assert!(
            e.message.contains("`cat`") && e.message.contains("category"),
            "{e:?}"
        );
        let e =
            check(json!({"kind":"aggregate","aggregations":[{"column":"category","op":"mean"}]}))
                .unwrap_err();
        assert_eq!(e.code, "bad_op");
        let e = check(json!({"kind":"sql","query":"SELECT nope FROM data"})).unwrap_err();
        assert_eq!(e.code, "bad_sql");
        assert!(e.message.contains("nope"), "{e:?}");
        let e = check(json!({"kind":"sql","query":"SELECT * FROM read_csv('/etc/passwd')"}))
            .unwrap_err();
        assert!(e.message.contains("table functions"), "{e:?}");
        let e = check(json!({"kind":"spin","seconds":1})).unwrap_err();
        assert_eq!(e.code, "spin_disabled");
        let e = check(json!({"kind":"histogram","column":"category","bins":3})).unwrap_err();
        assert_eq!(e.code, "bad_column");
    }
}
