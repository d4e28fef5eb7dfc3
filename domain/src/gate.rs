//! Reference analyses and the promotion gate they make, as the REST API and the pages
//! show them, with the comparison of two results the gate rests on (computed by
//! `quarry_engine::results::compare`).

use crate::control::MarkView;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How far two floats may differ and still be equal: `|a - b| <= absolute +
/// relative * max(|a|, |b|)`. NaN equals NaN; infinities equal only themselves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    pub absolute: f64,
    pub relative: f64,
}

impl Default for Tolerance {
    /// 1e-9 relative and 1e-12 absolute: far below any analysis's meaning, far above
    /// the rounding of a different summation order.
    fn default() -> Self {
        Self {
            absolute: 1e-12,
            relative: 1e-9,
        }
    }
}

impl Tolerance {
    pub fn equal(&self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        (a - b).abs() <= self.absolute + self.relative * a.abs().max(b.abs())
    }
}

/// One row that differs: its position in canonical order and both sides (`None`
/// where one result has fewer rows).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowDiff {
    pub row: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub expected: Option<Vec<Value>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub actual: Option<Vec<Value>>,
}

/// The outcome of comparing a candidate's result with the expected one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub identical: bool,
    /// Why the shapes differ (columns, types), when they do; rows are then not compared.
    pub schema_difference: Option<String>,
    /// The expected result's columns, in the order of the row values.
    #[serde(default)]
    pub columns: Vec<String>,
    pub expected_rows: u64,
    pub actual_rows: u64,
    /// The rows that differ, counted over the whole result.
    pub differing_rows: u64,
    /// The first of them, in canonical order.
    pub first_differences: Vec<RowDiff>,
    /// The tolerance the floats were compared with.
    #[serde(default)]
    pub tolerance: Tolerance,
}

/// A pinned reference analysis.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceView {
    pub id: String,
    pub name: String,
    pub dataset_id: String,
    /// SHA-256 of the dataset's content as the pinned job read it.
    pub dataset_sha256: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub analysis: Value,
    /// SHA-256 of the pinned result (Parquet, as the job stored it).
    pub expected_hash: String,
    pub expected_rows: u64,
    /// The release the pinned result was computed on (production's, when pinned).
    pub pinned_release: String,
    /// The job it was pinned from.
    pub job_id: String,
    pub pinned_by: String,
    pub pinned_at: String,
    /// Who retired it, when; null while it gates promotions.
    pub retired: Option<MarkView>,
}

/// One reference analysis run on a promotion's candidate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheckView {
    pub reference_id: String,
    pub name: String,
    pub dataset_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub analysis: Value,
    /// The job that ran it on the candidate release, once submitted: here, or in
    /// `environment` when it ran there.
    pub job_id: Option<String>,
    /// The upstream environment it ran in, through that environment's API, when no
    /// worker of the candidate reads this server's queue (`[control.peers.<env>]`);
    /// absent: it ran here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `pending`, `running`, `passed`, `differed` or `failed`.
    pub status: String,
    pub expected_hash: String,
    pub actual_hash: Option<String>,
    /// How the results compared, once both exist.
    pub comparison: Option<Comparison>,
    /// Why the check could not give a result (its job failed, or timed out).
    pub error: Option<String>,
}

/// A promotion's gate: every pinned reference analysis run on the candidate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateView {
    /// `none` (nothing pinned when it was requested), `pending`, `running`, `passed`,
    /// `blocked` (a result differed or a check failed), `overridden`, or `abandoned`
    /// (the promotion ended before its checks did).
    pub status: String,
    /// The release the checks run on: the candidate's image.
    pub release: String,
    pub checks: Vec<GateCheckView>,
    /// The admin who let a blocked promotion through, when and why.
    #[serde(rename = "override")]
    pub override_: Option<MarkView>,
}

impl GateView {
    /// Whether the gate lets the promotion be approved.
    pub fn allows_approval(&self) -> bool {
        matches!(self.status.as_str(), "none" | "passed" | "overridden")
    }
}
