//! The operator control plane's records as the REST API, the pages and the CLI show
//! them: environments, releases, promotions, artifacts and the diff rows of a change
//! set. The server builds them (`quarry_app::control::views`); the browser reads them
//! from server functions and from `GET /api/v1/environments/{env}/events`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who set a freeze or a hold, when and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MarkView {
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
}

/// One row of a change-set diff.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiffRow {
    /// `Add`, `Modify` or `Remove`.
    pub action: String,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `True` (replaced), `False`, `Conditional`, or empty for additions and removals.
    pub replacement: String,
}

/// An environment of the control plane.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvironmentView {
    pub name: String,
    /// Its CloudFormation stack.
    pub stack: String,
    /// Where its artifacts are promoted from; null: deployed to directly.
    pub upstream: Option<String>,
    /// The stack's status (`CREATE_COMPLETE`, `UPDATE_IN_PROGRESS`, …),
    /// `not_deployed`, or `unknown` when CloudFormation cannot be asked.
    pub status: String,
    /// Why the status is `unknown` (no credentials, no answer in time, …); null otherwise.
    pub status_reason: Option<String>,
    /// The image (by digest) of the current release.
    pub artifact: Option<String>,
    /// The current release.
    pub release_id: Option<String>,
    pub frozen: Option<MarkView>,
    pub hold: Option<MarkView>,
    /// Approvals a promotion here needs.
    pub approvals_required: u32,
}

/// A stack resource.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceView {
    pub logical_id: String,
    pub physical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub status: String,
}

/// A stack event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StackEventView {
    pub at: String,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

/// An environment with its stack's details.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvironmentDetail {
    #[serde(flatten)]
    pub environment: EnvironmentView,
    pub resources: Vec<ResourceView>,
    pub outputs: BTreeMap<String, String>,
    /// The stack's CloudWatch alarms.
    pub alarms: Vec<ResourceView>,
    /// Newest first.
    pub recent_events: Vec<StackEventView>,
    /// `in_sync`, `drifted`, `unknown` or `unsupported` (the endpoint cannot tell).
    pub drift: String,
    /// Overrides and lifted guards, newest first.
    pub overrides: Vec<OverrideView>,
}

/// An admin's override of a freeze, or a lifted hold or freeze.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverrideView {
    /// e.g. `deploy while frozen`, `lift_hold`, `unfreeze`.
    pub action: String,
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// A release of an environment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseView {
    pub id: String,
    pub environment: String,
    /// `deploy`, `promotion` or `rollback`.
    pub kind: String,
    /// The image deployed.
    pub artifact: String,
    pub artifact_id: Option<String>,
    /// `in_progress`, `succeeded`, `failed`, `no_changes`, `rolled_back`, `superseded`.
    pub outcome: String,
    pub deployed_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub change_set_id: Option<String>,
    pub promotion_id: Option<String>,
    pub previous_release_id: Option<String>,
    pub template_hash: String,
    /// The diff rows deployed.
    pub diff: Vec<DiffRow>,
    /// Why it failed: the failing resources and their reasons.
    pub detail: Option<String>,
}

/// An approval or rejection of a promotion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalView {
    pub by: String,
    pub at: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
}

/// A promotion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromotionView {
    pub id: String,
    pub from: String,
    pub to: String,
    /// The image (by digest) promoted.
    pub artifact: String,
    pub artifact_id: String,
    /// `awaiting_approval`, `deploying`, `succeeded`, `failed`, `rejected`,
    /// `cancelled` or `expired`.
    pub status: String,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    /// The change-set rows the approver sees.
    pub diff: Vec<DiffRow>,
    pub approvals: Vec<ApprovalView>,
    pub release_id: Option<String>,
    pub change_set_id: Option<String>,
    /// What happened: a failure's resources and reasons, a changed diff.
    pub detail: Option<String>,
    pub finished_at: Option<String>,
    /// The reference analyses run on the candidate before approval can be given.
    #[serde(default)]
    pub gate: crate::gate::GateView,
}

/// An artifact.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactView {
    pub id: String,
    /// `repository@sha256:<digest>`.
    pub image: String,
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub commit: Option<String>,
    pub schema_version: i64,
    pub created_at: String,
    /// Who rejected it, when and why; null if it is not rejected.
    pub rejected: Option<MarkView>,
}

impl PromotionView {
    /// Whether the promotion can still be approved, rejected or cancelled.
    pub fn is_open(&self) -> bool {
        self.status == "awaiting_approval"
    }

    /// Whether the promotion will not change any more.
    pub fn is_finished(&self) -> bool {
        !matches!(self.status.as_str(), "awaiting_approval" | "deploying")
    }
}
