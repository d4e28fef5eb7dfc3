//! The operations pages' server functions: the control plane's reads and changes, for
//! the web app. Each calls the same code as the REST routes (`crate::control::ops` and
//! `crate::control::reads`) after the same role check: reads for leads, operators and
//! admins; changes for operators and admins; analysts get 403. Checkbox fields arrive
//! as `Some("on")` when ticked.

use leptos::prelude::*;
use quarry_domain::control::{EnvironmentDetail, EnvironmentView, PromotionView, ReleaseView};
use serde::{Deserialize, Serialize};

/// One environment's card on the operations overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentCard {
    pub environment: EnvironmentView,
    /// Its newest release, whatever its outcome.
    pub last_release: Option<ReleaseView>,
    /// The upstream's artifact, when it runs one this environment does not (and it is
    /// not rejected): what a promotion would bring.
    pub promotable: Option<String>,
    /// The promotion into this environment awaiting approval or deploying, if any.
    pub open_promotion: Option<PromotionView>,
}

/// The operations overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationsData {
    /// Upstreams before the environments they feed (staging, then production).
    pub cards: Vec<EnvironmentCard>,
    /// The newest promotions.
    pub promotions: Vec<PromotionView>,
    /// Whether the caller may change anything (operators and admins).
    pub can_operate: bool,
}

/// An environment's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentData {
    pub detail: EnvironmentDetail,
    /// Newest first.
    pub releases: Vec<ReleaseView>,
    pub can_operate: bool,
    /// Admins may act once through a freeze (recorded).
    pub is_admin: bool,
    /// Whether this server is that environment's own (its fleet is in this database,
    /// so the page shows the workers by release).
    pub is_this_server: bool,
}

/// An environment's timeline over one range: job health from its metrics port, and
/// its deploys, promotions and rollbacks as markers on the same time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Where the series come from.
    pub origin: String,
    /// Why the series are empty, when the source could not be read.
    pub unavailable: Option<String>,
    pub from: i64,
    pub to: i64,
    /// Throughput, failure rate and p95 duration.
    pub graphs: Vec<super::server_fns::Graph>,
    /// The releases that started in the range, oldest first.
    pub markers: Vec<super::charts::Marker>,
}

/// A promotion's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionData {
    pub promotion: PromotionView,
    /// Whether the caller may approve or reject it now; if not, why not.
    pub decide: Result<(), String>,
    pub can_operate: bool,
    pub is_admin: bool,
    /// The release that deploys it, once approved.
    pub release: Option<ReleaseView>,
}

/// Why `who` (by name) may not decide on `p` now, or `Ok` if they may.
pub fn may_decide(p: &PromotionView, name: &str, can_operate: bool) -> Result<(), String> {
    if !can_operate {
        Err("Only operators and admins approve promotions.".to_owned())
    } else if !p.is_open() {
        Err(format!(
            "This promotion is {}: there is nothing left to decide.",
            p.status.replace('_', " ")
        ))
    } else if p.requested_by == name {
        Err("You requested this promotion, so someone else must approve it.".to_owned())
    } else {
        Ok(())
    }
}

/// Why the reference gate does not let `p` be approved yet, if it does not.
pub fn gate_blocks(p: &PromotionView) -> Option<String> {
    let g = &p.gate;
    if g.allows_approval() {
        return None;
    }
    Some(match g.status.as_str() {
        "blocked" => "A reference analysis gave a different result on the candidate: approval is \
                      blocked unless an admin overrides the gate with a reason."
            .to_owned(),
        "abandoned" => {
            "The reference analyses did not finish before the promotion ended.".to_owned()
        }
        _ => {
            let done = g
                .checks
                .iter()
                .filter(|c| !matches!(c.status.as_str(), "pending" | "running"))
                .count();
            format!(
                "The reference analyses are running on the candidate ({done} of {} done): \
                 approve once they pass.",
                g.checks.len()
            )
        }
    })
}

#[cfg(feature = "ssr")]
mod backend {
    use super::super::server_fns::backend::{caller, fail};
    use crate::control::ops::Actor;
    use crate::server::api::control::{reader, writer};
    use crate::server::error::AppError;
    use crate::server::state::Services;
    use leptos::prelude::*;
    use quarry_core::auth::Principal;
    use quarry_domain::Role;
    use std::sync::Arc;

    /// The caller, if they may read the control plane.
    pub async fn reading() -> Result<(Arc<Services>, Principal), ServerFnError> {
        let (services, who) = caller().await?;
        reader(&who).map_err(fail)?;
        Ok((services, who))
    }

    /// The caller as an actor, if they may change the control plane.
    pub async fn acting() -> Result<(Arc<Services>, Actor), ServerFnError> {
        let (services, who) = caller().await?;
        let actor = writer(&who).map_err(fail)?;
        Ok((services, actor))
    }

    pub fn operates(who: &Principal) -> bool {
        matches!(who.role, Role::Operator | Role::Admin)
    }

    pub fn failed<E: Into<AppError>>(e: E) -> ServerFnError {
        fail(e)
    }
}

#[cfg(feature = "ssr")]
fn ticked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty() && v != "false")
}

/// The operations overview: every environment's card and the newest promotions.
#[server(endpoint = "operations")]
pub async fn operations() -> Result<OperationsData, ServerFnError> {
    use crate::control::reads;
    let (services, who) = backend::reading().await?;
    let plane = &services.control;
    let envs = reads::list_environments(plane)
        .await
        .map_err(backend::failed)?;
    let promotions = reads::list_promotions(plane, None)
        .await
        .map_err(backend::failed)?;
    let artifacts = reads::list_artifacts(plane)
        .await
        .map_err(backend::failed)?;
    let mut cards = Vec::new();
    for env in &envs {
        let last_release = reads::releases(plane, &env.name)
            .await
            .map_err(backend::failed)?
            .into_iter()
            .next();
        let upstream = env
            .upstream
            .as_deref()
            .and_then(|u| envs.iter().find(|e| e.name == u));
        let promotable = upstream
            .and_then(|u| u.artifact.clone())
            .filter(|a| env.artifact.as_ref() != Some(a))
            .filter(|a| {
                !artifacts
                    .iter()
                    .any(|x| &x.image == a && x.rejected.is_some())
            });
        let open_promotion = promotions
            .iter()
            .find(|p| p.to == env.name && !p.is_finished())
            .cloned();
        cards.push(EnvironmentCard {
            environment: env.clone(),
            last_release,
            promotable,
            open_promotion,
        });
    }
    Ok(OperationsData {
        cards,
        promotions: promotions.into_iter().take(20).collect(),
        can_operate: backend::operates(&who),
    })
}

/// An environment's page: its stack, its guards and its release history.
#[server(endpoint = "environment_page")]
pub async fn environment_page(name: String) -> Result<EnvironmentData, ServerFnError> {
    use crate::control::reads;
    let (services, who) = backend::reading().await?;
    let plane = &services.control;
    let detail = reads::environment_detail(plane, &name)
        .await
        .map_err(backend::failed)?;
    let releases = reads::releases(plane, &name)
        .await
        .map_err(backend::failed)?;
    Ok(EnvironmentData {
        detail,
        releases,
        can_operate: backend::operates(&who),
        is_admin: who.role == quarry_domain::Role::Admin,
        is_this_server: name == services.config.environment,
    })
}

/// An environment's timeline over the last `minutes` (15 to 1440).
#[server(endpoint = "environment_timeline")]
pub async fn environment_timeline(name: String, minutes: u32) -> Result<Timeline, ServerFnError> {
    let (services, _) = backend::reading().await?;
    crate::server::timeline::environment_timeline(&services, &name, minutes)
        .await
        .map_err(backend::failed)
}

/// A promotion's page: its diff, approvals and, once approved, its release.
#[server(endpoint = "promotion_page")]
pub async fn promotion_page(id: String) -> Result<PromotionData, ServerFnError> {
    use crate::control::reads;
    let (services, who) = backend::reading().await?;
    let plane = &services.control;
    let promotion = reads::promotion(plane, &id)
        .await
        .map_err(backend::failed)?;
    let release = match &promotion.release_id {
        Some(r) => reads::releases(plane, &promotion.to)
            .await
            .map_err(backend::failed)?
            .into_iter()
            .find(|x| &x.id == r),
        None => None,
    };
    let can_operate = backend::operates(&who);
    Ok(PromotionData {
        decide: may_decide(&promotion, &who.name, can_operate),
        promotion,
        can_operate,
        is_admin: who.role == quarry_domain::Role::Admin,
        release,
    })
}

/// Requests the promotion of what runs on `from` into `to`; returns its id.
#[server(endpoint = "request_promotion")]
pub async fn request_promotion(
    from: String,
    to: String,
    override_freeze: Option<String>,
) -> Result<String, ServerFnError> {
    let (services, actor) = backend::acting().await?;
    let p = crate::control::ops::request_promotion(
        &services.control,
        &from,
        &to,
        &actor,
        ticked(&override_freeze),
    )
    .await
    .map_err(backend::failed)?;
    Ok(p.id)
}

/// Approves (`decision` = `approve`) or rejects (`reject`) a promotion, with a comment.
#[server(endpoint = "decide_promotion")]
pub async fn decide_promotion(
    id: String,
    decision: String,
    comment: String,
    override_freeze: Option<String>,
) -> Result<PromotionView, ServerFnError> {
    use crate::control::ops;
    let (services, actor) = backend::acting().await?;
    let plane = &services.control;
    match decision.as_str() {
        "approve" => ops::approve(plane, &id, &actor, &comment, ticked(&override_freeze)).await,
        "reject" => ops::reject(plane, &id, &actor, &comment).await,
        other => Err(quarry_core::Error::invalid(
            "bad_decision",
            format!("unknown decision `{other}`: use approve or reject"),
        )),
    }
    .map_err(backend::failed)
}

/// Lets a promotion its reference gate blocked be approved (admins, with a reason).
#[server(endpoint = "override_gate")]
pub async fn override_gate(id: String, reason: String) -> Result<PromotionView, ServerFnError> {
    let (services, actor) = backend::acting().await?;
    let plane = &services.control;
    crate::control::gate::override_gate(plane, &id, &reason, &actor)
        .await
        .map_err(backend::failed)?;
    crate::control::reads::promotion(plane, &id)
        .await
        .map_err(backend::failed)
}

/// Cancels a promotion awaiting approval.
#[server(endpoint = "cancel_promotion")]
pub async fn cancel_promotion(id: String) -> Result<PromotionView, ServerFnError> {
    let (services, actor) = backend::acting().await?;
    crate::control::ops::cancel(&services.control, &id, &actor)
        .await
        .map_err(backend::failed)
}

/// Freezes an environment, with a reason.
#[server(endpoint = "freeze_environment")]
pub async fn freeze_environment(name: String, reason: String) -> Result<(), ServerFnError> {
    let (services, actor) = backend::acting().await?;
    crate::control::ops::freeze(&services.control, &name, &reason, &actor)
        .await
        .map_err(backend::failed)?;
    Ok(())
}

/// Ends a freeze (the reason, if any, is recorded).
#[server(endpoint = "unfreeze_environment")]
pub async fn unfreeze_environment(name: String, reason: String) -> Result<(), ServerFnError> {
    let (services, actor) = backend::acting().await?;
    crate::control::ops::unfreeze(&services.control, &name, &reason, &actor)
        .await
        .map_err(backend::failed)?;
    Ok(())
}

/// Lifts the hold a rollback set, with a reason.
#[server(endpoint = "lift_hold")]
pub async fn lift_hold(name: String, reason: String) -> Result<(), ServerFnError> {
    let (services, actor) = backend::acting().await?;
    crate::control::ops::lift_hold(&services.control, &name, &reason, &actor)
        .await
        .map_err(backend::failed)?;
    Ok(())
}

/// Returns an environment to its last good release (or release `to`) and holds it;
/// returns the rollback release.
#[server(endpoint = "rollback_environment")]
pub async fn rollback_environment(
    name: String,
    to: Option<String>,
    reason: String,
    reject_artifact: Option<String>,
    override_freeze: Option<String>,
) -> Result<ReleaseView, ServerFnError> {
    let (services, actor) = backend::acting().await?;
    crate::control::ops::rollback(
        &services.control,
        &name,
        to.as_deref().filter(|t| !t.is_empty()),
        ticked(&reject_artifact),
        &reason,
        &actor,
        ticked(&override_freeze),
    )
    .await
    .map_err(backend::failed)
}
