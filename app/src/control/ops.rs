//! The operations of the control plane, shared by the REST routes and the CLI. Each
//! records who did it and when, and refuses with the domain's errors: invalid input
//! (400), forbidden (403: self-approval), not found (404), conflict (409: frozen, held,
//! rejected, or not in the state asked for, with the reason in the message). The reads
//! are in [`super::reads`].

use super::guards::{
    awaiting, bounded_text, check_frozen, check_idle, refuse_held, require_reason,
};
use super::reads::{environment, promotion};
use super::views::{self, ArtifactView, DiffRow, EnvironmentView, PromotionView, ReleaseView};
use super::{ControlPlane, EnvDef};
use quarry_core::control::promotions::{self, NewPromotion, Status};
use quarry_core::control::{artifacts, environments};
use quarry_core::releases::{self, Link, NewRelease};
use quarry_core::{Error, Result};
use quarry_stacks::{policy, synth, template_hash};
use std::sync::Arc;

/// Who acts, and whether they may override a freeze (admins).
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub admin: bool,
}

pub(super) fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{e}"))
}

/// The environment's template JSON, refused when the policy check blocks it.
pub(super) fn template(env: &EnvDef) -> Result<String> {
    let template = synth(&env.config).map_err(|e| {
        Error::Conflict(format!(
            "environments/{}.toml does not synthesize: {e}",
            env.name
        ))
    })?;
    let report = policy::check_template(&template, &env.config);
    if report.blocks_deploy() {
        return Err(Error::Conflict(format!(
            "{}'s template fails the policy check; nothing deployed:\n{report}",
            env.name
        )));
    }
    Ok(template.to_json_string())
}

/// A change-set name CloudFormation accepts, unique enough.
pub(super) fn change_set_name(action: &str) -> String {
    format!(
        "quarry-{action}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub(super) fn diff_json(rows: &[DiffRow]) -> String {
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".to_owned())
}

/// Starts a release of `artifact` on `env` and drives it in the background.
async fn start_release(
    plane: &Arc<ControlPlane>,
    env: &EnvDef,
    artifact: &artifacts::Artifact,
    who: &Actor,
    kind: &str,
    promotion_id: Option<&str>,
    change_set: Option<(&str, &str)>,
) -> Result<String> {
    let json = template(env)?;
    let state = environments::get(&plane.db, &env.name).await?;
    let id = releases::start_linked(
        &plane.db,
        &NewRelease {
            environment: &env.name,
            stack: env.stack(),
            image: &artifact.image,
            template_hash: &template_hash(&json),
            deployed_by: &who.name,
        },
        &Link {
            artifact_id: Some(&artifact.id),
            kind: Some(kind),
            promotion_id,
            previous_release_id: state.current_release_id.as_deref(),
        },
    )
    .await?;
    if let Some((cs, diff)) = change_set {
        releases::set_change_set(&plane.db, &id, cs, diff).await?;
    }
    if let Some(p) = promotion_id {
        promotions::set_release(&plane.db, p, &id, change_set.map(|c| c.0)).await?;
    }
    plane.announce(
        &env.name,
        "release",
        serde_json::to_value(views::release(releases::get(&plane.db, &id).await?))
            .unwrap_or_default(),
    );
    Ok(id)
}

/// Deploys an artifact (by digest) to an environment without an upstream; the
/// artifact is registered on first use. Returns the release, running.
pub async fn deploy(
    plane: &Arc<ControlPlane>,
    env: &str,
    image: &str,
    commit: Option<&str>,
    who: &Actor,
    override_freeze: bool,
) -> Result<ReleaseView> {
    let def = plane.env(env)?.clone();
    artifacts::parse_reference(image)?;
    if let Some(up) = def.upstream() {
        return Err(Error::Conflict(format!(
            "{env} takes promotions from {up}, not deploys: POST /api/v1/promotions \
             {{\"from\": \"{up}\", \"to\": \"{env}\"}}"
        )));
    }
    check_frozen(plane, env, "deploy", who, override_freeze).await?;
    check_idle(plane, env).await?;
    let artifact =
        artifacts::register(&plane.db, image, commit, artifacts::schema_version()).await?;
    if let Some(e) = artifacts::refused(&artifact) {
        return Err(e);
    }
    let id = start_release(plane, &def, &artifact, who, "deploy", None, None).await?;
    plane.spawn_drive(id.clone());
    Ok(views::release(releases::get(&plane.db, &id).await?))
}

/// The artifact an environment runs successfully now.
async fn running_artifact(plane: &ControlPlane, env: &str) -> Result<artifacts::Artifact> {
    let state = environments::get(&plane.db, env).await?;
    let release = match &state.current_release_id {
        Some(id) => Some(releases::get(&plane.db, id).await?),
        None => None,
    };
    let artifact_id = release
        .as_ref()
        .filter(|r| matches!(r.outcome.as_str(), "succeeded" | "no_changes"))
        .and_then(|r| r.artifact_id.clone())
        .ok_or_else(|| {
            Error::Conflict(format!(
                "{env} runs no artifact successfully yet: deploy one there first"
            ))
        })?;
    artifacts::get(&plane.db, &artifact_id).await
}

/// The diff rows of deploying `artifact` to `env`, and the change set that has them.
async fn preview(
    plane: &ControlPlane,
    env: &EnvDef,
    artifact: &artifacts::Artifact,
) -> Result<(Vec<DiffRow>, String)> {
    let json = template(env)?;
    let deployer = plane.deployer(env).await;
    let preview = deployer
        .preview(&json, &artifact.image, &change_set_name("promote"))
        .await
        .map_err(internal)?;
    let rows: Vec<DiffRow> = preview.rows.iter().map(views::diff_row).collect();
    let id = if preview.change_set.changes.is_empty() && rows.is_empty() {
        String::new()
    } else {
        preview.change_set.id
    };
    Ok((rows, id))
}

/// Requests the promotion of what runs on `from` into `to`, with the diff rows the
/// approver will see.
pub async fn request_promotion(
    plane: &Arc<ControlPlane>,
    from: &str,
    to: &str,
    who: &Actor,
    override_freeze: bool,
) -> Result<PromotionView> {
    let target = plane.env(to)?.clone();
    plane.env(from)?;
    if target.upstream() != Some(from) {
        return Err(Error::invalid(
            "bad_promotion",
            match target.upstream() {
                Some(up) => format!("{to} is promoted to from {up}, not from {from}"),
                None => format!("{to} has no upstream: deploy to it instead"),
            },
        ));
    }
    check_frozen(plane, to, "promotion", who, override_freeze).await?;
    refuse_held(plane, to).await?;
    let artifact = running_artifact(plane, from).await?;
    if let Some(e) = artifacts::refused(&artifact) {
        return Err(e);
    }
    // The change set stays: approving an unchanged diff executes exactly this one.
    let (rows, cs) = preview(plane, &target, &artifact).await?;
    let diff = diff_json(&rows);
    let expiry = i64::try_from(target.approval_expiry().as_millis()).unwrap_or(i64::MAX);
    let p = promotions::create(
        &plane.db,
        &NewPromotion {
            from_env: from,
            to_env: to,
            artifact_id: &artifact.id,
            requested_by: &who.name,
            expires_in_ms: expiry,
            diff_json: &diff,
            diff_hash: &template_hash(&diff),
        },
    )
    .await?;
    if !cs.is_empty() {
        promotions::set_change_set(&plane.db, &p.id, &cs).await?;
    }
    if quarry_core::control::references::open_gate(&plane.db, &p.id).await? > 0 {
        plane.gate_nudge.notify_one();
    }
    let view = promotion(plane, &p.id).await?;
    plane.announce(
        to,
        "promotion",
        serde_json::to_value(&view).unwrap_or_default(),
    );
    Ok(view)
}

/// Approves a promotion. The requester cannot; the diff is computed again first, and
/// if it changed the new rows are stored and the promotion waits for approval again.
/// Once approved by as many as the target needs, it deploys in the background.
pub async fn approve(
    plane: &Arc<ControlPlane>,
    id: &str,
    who: &Actor,
    comment: &str,
    override_freeze: bool,
) -> Result<PromotionView> {
    bounded_text(comment, "comment")?;
    promotions::expire_due(&plane.db).await?;
    let p = promotions::get(&plane.db, id).await?;
    awaiting(&p)?;
    if p.requested_by == who.name {
        return Err(Error::Forbidden(format!(
            "you requested promotion {id}: someone other than the requester must approve it"
        )));
    }
    let target = plane.env(&p.to_env)?.clone();
    check_frozen(plane, &p.to_env, "promotion", who, override_freeze).await?;
    refuse_held(plane, &p.to_env).await?;
    super::gate::check_gate(plane, id).await?;
    let artifact = artifacts::get(&plane.db, &p.artifact_id).await?;
    if let Some(e) = artifacts::refused(&artifact) {
        return Err(e);
    }
    check_idle(plane, &p.to_env).await?;
    // The diff again, from the deployed template (no change set is made for it).
    let json = template(&target)?;
    let deployer = plane.deployer(&target).await;
    let rows: Vec<DiffRow> = deployer
        .rows(&json, &artifact.image)
        .await
        .map_err(internal)?
        .iter()
        .map(views::diff_row)
        .collect();
    let diff = diff_json(&rows);
    let hash = template_hash(&diff);
    if hash != p.diff_hash {
        promotions::replace_diff(&plane.db, id, &diff, &hash).await?;
        return Err(Error::Conflict(format!(
            "{}'s change set differs from the one promotion {id} was requested with: the new \
             rows are stored; review them (GET /api/v1/promotions/{id}) and approve again",
            p.to_env
        )));
    }
    promotions::add_approval(&plane.db, id, &who.name, "approve", comment).await?;
    let approvers: std::collections::BTreeSet<String> = promotions::approvals(&plane.db, id)
        .await?
        .into_iter()
        .filter(|a| a.decision == "approve" && a.by != p.requested_by)
        .map(|a| a.by)
        .collect();
    let needed = usize::try_from(target.approvals().max(1)).unwrap_or(1);
    if approvers.len() < needed {
        return promotion(plane, id).await;
    }
    // The request's change set, while CloudFormation can still execute it; else a new
    // one (with the same rows, just checked).
    let cs = match p.change_set_id.as_deref() {
        Some(cs) if !cs.is_empty() => {
            match deployer.change_set_state(cs).await.map_err(internal)? {
                Some((_, execution)) if execution == "AVAILABLE" => cs.to_owned(),
                _ => preview(plane, &target, &artifact).await?.1,
            }
        }
        _ if rows.is_empty() => String::new(),
        _ => preview(plane, &target, &artifact).await?.1,
    };
    if !promotions::transition(
        &plane.db,
        id,
        Status::AwaitingApproval,
        Status::Deploying,
        None,
    )
    .await?
    {
        let now = promotions::get(&plane.db, id).await?;
        return Err(Error::Conflict(format!(
            "promotion {id} is already {}",
            now.status
        )));
    }
    let change_set = (!cs.is_empty()).then_some((cs.as_str(), diff.as_str()));
    let release = start_release(
        plane,
        &target,
        &artifact,
        who,
        "promotion",
        Some(id),
        change_set,
    )
    .await?;
    let view = promotion(plane, id).await?;
    plane.announce(
        &p.to_env,
        "promotion",
        serde_json::to_value(&view).unwrap_or_default(),
    );
    plane.spawn_drive(release);
    Ok(view)
}

/// Rejects a promotion awaiting approval.
pub async fn reject(
    plane: &ControlPlane,
    id: &str,
    who: &Actor,
    comment: &str,
) -> Result<PromotionView> {
    end(plane, id, who, comment, Status::Rejected).await
}

/// Cancels a promotion awaiting approval.
pub async fn cancel(plane: &ControlPlane, id: &str, who: &Actor) -> Result<PromotionView> {
    end(plane, id, who, "", Status::Cancelled).await
}

async fn end(
    plane: &ControlPlane,
    id: &str,
    who: &Actor,
    comment: &str,
    to: Status,
) -> Result<PromotionView> {
    bounded_text(comment, "comment")?;
    promotions::expire_due(&plane.db).await?;
    let p = promotions::get(&plane.db, id).await?;
    awaiting(&p)?;
    let detail = format!("{} by {}", to.as_str(), who.name);
    if !promotions::transition(&plane.db, id, Status::AwaitingApproval, to, Some(&detail)).await? {
        return Err(Error::Conflict(format!(
            "promotion {id} moved on meanwhile: look again"
        )));
    }
    if to == Status::Rejected {
        promotions::add_approval(&plane.db, id, &who.name, "reject", comment).await?;
    }
    let view = promotion(plane, id).await?;
    plane.announce(
        &p.to_env,
        "promotion",
        serde_json::to_value(&view).unwrap_or_default(),
    );
    Ok(view)
}

/// Returns an environment to its last good release (or release `to`), as a release
/// of kind `rollback`, and puts a hold on it; optionally rejects the artifact it ran.
pub async fn rollback(
    plane: &Arc<ControlPlane>,
    env: &str,
    to: Option<&str>,
    reject_artifact: bool,
    reason: &str,
    who: &Actor,
    override_freeze: bool,
) -> Result<ReleaseView> {
    let def = plane.env(env)?.clone();
    require_reason(reason, "roll back")?;
    check_frozen(plane, env, "rollback", who, override_freeze).await?;
    check_idle(plane, env).await?;
    let state = environments::get(&plane.db, env).await?;
    let current = match &state.current_release_id {
        Some(id) => releases::get(&plane.db, id).await?,
        None => {
            return Err(Error::Conflict(format!(
                "{env} has no release to roll back from"
            )));
        }
    };
    let current_artifact = current.artifact_id.clone().unwrap_or_default();
    let target = match to {
        Some(id) => {
            let r = releases::get(&plane.db, id).await?;
            if r.environment != env || r.artifact_id.is_none() {
                return Err(Error::invalid(
                    "bad_release",
                    format!("release {id} is not a control-plane release of {env}"),
                ));
            }
            if !matches!(
                r.outcome.as_str(),
                "succeeded" | "superseded" | "rolled_back"
            ) {
                return Err(Error::Conflict(format!(
                    "release {id} ended {}: roll back only to a release that ran",
                    r.outcome
                )));
            }
            r
        }
        None => releases::last_good_other_than(&plane.db, env, &current_artifact)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!("{env} has no earlier good release to return to"))
            })?,
    };
    let artifact =
        artifacts::get(&plane.db, target.artifact_id.as_deref().unwrap_or_default()).await?;
    if let Some(e) = artifacts::refused(&artifact) {
        return Err(e);
    }
    if reject_artifact && !current_artifact.is_empty() && current_artifact != artifact.id {
        match artifacts::reject(&plane.db, &current_artifact, &who.name, reason).await {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let id = start_release(plane, &def, &artifact, who, "rollback", None, None).await?;
    environments::hold(
        &plane.db,
        env,
        &who.name,
        &format!(
            "rolled back to release {} ({}): {reason}",
            target.id, artifact.image
        ),
    )
    .await?;
    plane.spawn_drive(id.clone());
    Ok(views::release(releases::get(&plane.db, &id).await?))
}

/// The changes of an environment's freeze and hold that are not a release.
#[derive(Clone, Copy)]
enum EnvChange {
    Freeze,
    Unfreeze,
    LiftHold,
}

/// Freezes, unfreezes or lifts the hold of `env` (a reason required but to unfreeze),
/// and returns the environment after.
async fn change_env(
    plane: &ControlPlane,
    env: &str,
    reason: &str,
    who: &Actor,
    change: EnvChange,
) -> Result<EnvironmentView> {
    plane.env(env)?;
    let db = &plane.db;
    match change {
        EnvChange::Freeze => {
            require_reason(reason, "freeze")?;
            environments::freeze(db, env, &who.name, reason).await?;
        }
        EnvChange::Unfreeze => {
            bounded_text(reason, "reason")?;
            environments::unfreeze(db, env, &who.name, reason).await?;
        }
        EnvChange::LiftHold => {
            require_reason(reason, "lift the hold")?;
            environments::lift_hold(db, env, &who.name, reason).await?;
        }
    }
    environment(plane, env).await
}

pub async fn freeze(
    plane: &ControlPlane,
    env: &str,
    reason: &str,
    who: &Actor,
) -> Result<EnvironmentView> {
    change_env(plane, env, reason, who, EnvChange::Freeze).await
}

pub async fn unfreeze(
    plane: &ControlPlane,
    env: &str,
    reason: &str,
    who: &Actor,
) -> Result<EnvironmentView> {
    change_env(plane, env, reason, who, EnvChange::Unfreeze).await
}

pub async fn lift_hold(
    plane: &ControlPlane,
    env: &str,
    reason: &str,
    who: &Actor,
) -> Result<EnvironmentView> {
    change_env(plane, env, reason, who, EnvChange::LiftHold).await
}

pub async fn reject_artifact(
    plane: &ControlPlane,
    id: &str,
    reason: &str,
    who: &Actor,
) -> Result<ArtifactView> {
    require_reason(reason, "reject it")?;
    Ok(views::artifact(
        artifacts::reject(&plane.db, id, &who.name, reason).await?,
    ))
}
