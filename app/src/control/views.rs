//! What the control plane answers with: the JSON of the REST routes (and what the CLI
//! prints), documented for the OpenAPI document.

use quarry_core::control::Mark;
use quarry_core::control::artifacts::Artifact;
use quarry_core::control::promotions::{Approval, Promotion};
use quarry_core::releases::Release;
use quarry_stacks::cloudformation::{ResourceChange, StackEvent, StackResource};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Who set a freeze or a hold, when and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MarkView {
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
}

impl From<&Mark> for MarkView {
    fn from(m: &Mark) -> Self {
        Self {
            by: m.by.clone(),
            at: m.at.clone(),
            reason: m.reason.clone(),
        }
    }
}

/// One row of a change-set diff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiffRow {
    /// `Add`, `Modify` or `Remove`.
    pub action: String,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `True` (replaced), `False`, `Conditional`, or empty for additions and removals.
    pub replacement: String,
}

impl From<&ResourceChange> for DiffRow {
    fn from(c: &ResourceChange) -> Self {
        Self {
            action: c.action.clone(),
            logical_id: c.logical_id.clone(),
            resource_type: c.resource_type.clone(),
            replacement: c.replacement.clone(),
        }
    }
}

/// An environment of the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    pub logical_id: String,
    pub physical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub status: String,
}

impl From<&StackResource> for ResourceView {
    fn from(r: &StackResource) -> Self {
        Self {
            logical_id: r.logical_id.clone(),
            physical_id: r.physical_id.clone(),
            resource_type: r.resource_type.clone(),
            status: r.status.clone(),
        }
    }
}

/// A stack event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StackEventView {
    pub at: String,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

impl From<&StackEvent> for StackEventView {
    fn from(e: &StackEvent) -> Self {
        Self {
            at: e.at.clone(),
            logical_id: e.logical_id.clone(),
            resource_type: e.resource_type.clone(),
            status: e.status.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// An environment with its stack's details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverrideView {
    /// e.g. `deploy while frozen`, `lift_hold`, `unfreeze`.
    pub action: String,
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// A release of an environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

impl From<Release> for ReleaseView {
    fn from(r: Release) -> Self {
        Self {
            diff: r
                .diff_json
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default(),
            id: r.id,
            environment: r.environment,
            kind: r.kind,
            artifact: r.image,
            artifact_id: r.artifact_id,
            outcome: r.outcome,
            deployed_by: r.deployed_by,
            started_at: r.started_at,
            finished_at: r.finished_at,
            change_set_id: r.change_set_id,
            promotion_id: r.promotion_id,
            previous_release_id: r.previous_release_id,
            template_hash: r.template_hash,
            detail: r.detail,
        }
    }
}

/// An approval or rejection of a promotion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub by: String,
    pub at: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
}

impl From<Approval> for ApprovalView {
    fn from(a: Approval) -> Self {
        Self {
            by: a.by,
            at: a.at,
            decision: a.decision,
            comment: a.comment,
        }
    }
}

/// A promotion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
}

impl PromotionView {
    pub fn new(p: Promotion, artifact: &Artifact, approvals: Vec<Approval>) -> Self {
        Self {
            diff: serde_json::from_str(&p.diff_json).unwrap_or_default(),
            id: p.id,
            from: p.from_env,
            to: p.to_env,
            artifact: artifact.image.clone(),
            artifact_id: p.artifact_id,
            status: p.status,
            requested_by: p.requested_by,
            requested_at: p.requested_at,
            expires_at: p.expires_at,
            approvals: approvals.into_iter().map(Into::into).collect(),
            release_id: p.release_id,
            change_set_id: p.change_set_id,
            detail: p.detail,
            finished_at: p.finished_at,
        }
    }
}

/// An artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

impl From<Artifact> for ArtifactView {
    fn from(a: Artifact) -> Self {
        Self {
            rejected: a.rejected.as_ref().map(Into::into),
            id: a.id,
            image: a.image,
            repository: a.repository,
            digest: a.digest,
            commit: a.commit,
            schema_version: a.schema_version,
            created_at: a.created_at,
        }
    }
}
