//! What the control plane answers with: the records of `quarry_domain::control` (the
//! JSON of the REST routes, of the pages' server functions and of what the CLI prints),
//! built here from the stored records and the stack driver's reports.

use quarry_core::control::Mark;
use quarry_core::control::artifacts::Artifact;
use quarry_core::control::promotions::{Approval, Promotion};
use quarry_core::releases::Release;
pub use quarry_domain::control::*;
use quarry_stacks::cloudformation::{ResourceChange, StackEvent, StackResource};

pub fn mark(m: &Mark) -> MarkView {
    MarkView {
        by: m.by.clone(),
        at: m.at.clone(),
        reason: m.reason.clone(),
    }
}

pub fn diff_row(c: &ResourceChange) -> DiffRow {
    DiffRow {
        action: c.action.clone(),
        logical_id: c.logical_id.clone(),
        resource_type: c.resource_type.clone(),
        replacement: c.replacement.clone(),
    }
}

pub fn resource(r: &StackResource) -> ResourceView {
    ResourceView {
        logical_id: r.logical_id.clone(),
        physical_id: r.physical_id.clone(),
        resource_type: r.resource_type.clone(),
        status: r.status.clone(),
    }
}

pub fn stack_event(e: &StackEvent) -> StackEventView {
    StackEventView {
        at: e.at.clone(),
        logical_id: e.logical_id.clone(),
        resource_type: e.resource_type.clone(),
        status: e.status.clone(),
        reason: e.reason.clone(),
    }
}

pub fn release(r: Release) -> ReleaseView {
    ReleaseView {
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

fn approval(a: Approval) -> ApprovalView {
    ApprovalView {
        by: a.by,
        at: a.at,
        decision: a.decision,
        comment: a.comment,
    }
}

pub fn promotion(
    p: Promotion,
    artifact: &Artifact,
    approvals: Vec<Approval>,
    gate: quarry_domain::gate::GateView,
) -> PromotionView {
    PromotionView {
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
        approvals: {
            let mut all: Vec<ApprovalView> = approvals.into_iter().map(approval).collect();
            if let Some(m) = &gate.override_ {
                all.push(ApprovalView {
                    by: m.by.clone(),
                    at: m.at.clone(),
                    decision: "override_gate".to_owned(),
                    comment: m.reason.clone(),
                });
                all.sort_by(|a, b| a.at.cmp(&b.at));
            }
            all
        },
        release_id: p.release_id,
        change_set_id: p.change_set_id,
        detail: p.detail,
        finished_at: p.finished_at,
        gate,
    }
}

pub fn artifact(a: Artifact) -> ArtifactView {
    ArtifactView {
        rejected: a.rejected.as_ref().map(mark),
        id: a.id,
        image: a.image,
        repository: a.repository,
        digest: a.digest,
        commit: a.commit,
        schema_version: a.schema_version,
        created_at: a.created_at,
    }
}
