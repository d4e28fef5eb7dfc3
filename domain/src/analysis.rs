//! Analyses: what a job computes. The JSON form is the public contract of
//! `POST /api/v1/jobs` (`{"kind": "...", ...}`).

use serde::{Deserialize, Serialize};

/// One analysis request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Analysis {
    /// Per column: type, count, nulls, distinct, min, max, mean, std, quantiles, top values.
    Profile,
    /// Group by columns and aggregate, e.g. the mean of `amount` per `category`.
    Aggregate {
        #[serde(default)]
        group_by: Vec<String>,
        aggregations: Vec<Aggregation>,
        /// Output columns to sort by; `-name` or `{"column","descending":true}` sorts descending.
        #[serde(default)]
        order_by: Vec<OrderKey>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A SQL `SELECT` over the dataset, which is the table `data`.
    Sql { query: String },
    /// Equal-width bins of one numeric column.
    Histogram { column: String, bins: u32 },
    /// Pearson correlation matrix of numeric columns.
    Correlation { columns: Vec<String> },
    /// Burns CPU for `seconds` (load tests and demos; only where enabled).
    Spin { seconds: f64 },
}

impl Analysis {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Analysis::Profile => "profile",
            Analysis::Aggregate { .. } => "aggregate",
            Analysis::Sql { .. } => "sql",
            Analysis::Histogram { .. } => "histogram",
            Analysis::Correlation { .. } => "correlation",
            Analysis::Spin { .. } => "spin",
        }
    }
}

/// `{"column": "amount", "op": "mean"}`; the output column is `amount_mean`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    pub column: String,
    pub op: AggOp,
    /// The output column's name; defaults to `<column>_<op>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Aggregation {
    pub fn output_name(&self) -> String {
        self.alias
            .clone()
            .unwrap_or_else(|| format!("{}_{}", self.column, self.op.as_str()))
    }
}

/// Aggregation operators.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    Median,
    Std,
    NUnique,
}

impl AggOp {
    pub const ALL: [AggOp; 8] = [
        AggOp::Count,
        AggOp::Sum,
        AggOp::Mean,
        AggOp::Min,
        AggOp::Max,
        AggOp::Median,
        AggOp::Std,
        AggOp::NUnique,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AggOp::Count => "count",
            AggOp::Sum => "sum",
            AggOp::Mean => "mean",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Median => "median",
            AggOp::Std => "std",
            AggOp::NUnique => "n_unique",
        }
    }

    /// Whether the op needs a numeric column.
    pub fn numeric_only(self) -> bool {
        matches!(self, AggOp::Sum | AggOp::Mean | AggOp::Median | AggOp::Std)
    }
}

/// A sort key: `"name"`, `"-name"` (descending) or `{"column","descending"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrderKey {
    Name(String),
    Full {
        column: String,
        #[serde(default)]
        descending: bool,
    },
}

impl OrderKey {
    /// The column and whether it sorts descending.
    pub fn resolve(&self) -> (&str, bool) {
        match self {
            OrderKey::Name(n) => match n.strip_prefix('-') {
                Some(rest) => (rest, true),
                None => (n.as_str(), false),
            },
            OrderKey::Full { column, descending } => (column.as_str(), *descending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn analyses_parse_from_their_public_json() {
        let a: Analysis = serde_json::from_value(json!({
            "kind": "aggregate", "group_by": ["category"],
            "aggregations": [{"column": "amount", "op": "mean"}, {"column": "id", "op": "n_unique"}],
            "order_by": ["-amount_mean", {"column": "category"}], "limit": 3
        }))
        .unwrap();
        let Analysis::Aggregate {
            aggregations,
            order_by,
            limit,
            ..
        } = &a
        else {
            panic!("{a:?}")
        };
        assert_eq!(aggregations[0].output_name(), "amount_mean");
        assert_eq!(aggregations[1].op, AggOp::NUnique);
        assert_eq!(order_by[0].resolve(), ("amount_mean", true));
        assert_eq!(order_by[1].resolve(), ("category", false));
        assert_eq!(*limit, Some(3));
        assert_eq!(
            serde_json::from_value::<Analysis>(json!({"kind": "profile"})).unwrap(),
            Analysis::Profile
        );
    }

    #[test]
    fn unknown_kinds_ops_and_fields_are_refused() {
        assert!(serde_json::from_value::<Analysis>(json!({"kind": "pivot"})).is_err());
        let bad_op = json!({"kind": "aggregate", "aggregations": [{"column": "a", "op": "avg"}]});
        assert!(serde_json::from_value::<Analysis>(bad_op).is_err());
        assert!(
            serde_json::from_value::<Analysis>(json!({"kind": "sql", "query": "x", "q": 1}))
                .is_err()
        );
    }
}
