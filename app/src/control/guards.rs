//! The refusals the operations of [`super::ops`] share: a missing reason, a freeze (or
//! its override), a deployment under way, a hold, a promotion no longer awaiting
//! approval.

use super::ControlPlane;
use super::ops::Actor;
use quarry_core::control::environments;
use quarry_core::control::promotions::{self, Status};
use quarry_core::releases;
use quarry_core::{Error, Result};

/// The longest reason or comment recorded, in characters (the pages' text areas
/// stop there too).
pub const MAX_TEXT_CHARS: usize = 2000;

/// Refuses an empty reason: "say why you {what}", and one over [`MAX_TEXT_CHARS`].
pub(super) fn require_reason(reason: &str, what: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(Error::invalid(
            "bad_reason",
            format!("say why you {what}: send {{\"reason\": \"…\"}}"),
        ));
    }
    bounded_text(reason, "reason")
}

/// Refuses a reason or comment (`field`) over [`MAX_TEXT_CHARS`].
pub(super) fn bounded_text(text: &str, field: &str) -> Result<()> {
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(Error::invalid(
            "too_long",
            format!(
                "the {field} has {n} characters: at most {MAX_TEXT_CHARS} are recorded; shorten it"
            ),
        ));
    }
    Ok(())
}

/// Refuses while the environment is frozen, unless an admin overrides (recorded).
pub(super) async fn check_frozen(
    plane: &ControlPlane,
    env: &str,
    action: &str,
    who: &Actor,
    override_freeze: bool,
) -> Result<()> {
    let state = environments::get(&plane.db, env).await?;
    let Some(frozen) = state.frozen else {
        return Ok(());
    };
    if override_freeze && who.admin {
        environments::record_override(
            &plane.db,
            env,
            &format!("{action} while frozen"),
            &who.name,
            &frozen.reason,
        )
        .await?;
        return Ok(());
    }
    let how = if override_freeze {
        "only an admin may override a freeze"
    } else {
        "unfreeze it, or an admin may send {\"override\": true}"
    };
    Err(Error::Conflict(format!(
        "{env} is frozen by {} since {}: {} ({how})",
        frozen.by, frozen.at, frozen.reason
    )))
}

pub(super) async fn check_idle(plane: &ControlPlane, env: &str) -> Result<()> {
    if let Some(r) = releases::in_progress(&plane.db)
        .await?
        .into_iter()
        .find(|r| r.environment == env)
    {
        return Err(Error::Conflict(format!(
            "{env} is being deployed (release {}, by {}): wait for it to finish",
            r.id, r.deployed_by
        )));
    }
    Ok(())
}

pub(super) async fn refuse_held(plane: &ControlPlane, env: &str) -> Result<()> {
    if let Some(h) = environments::get(&plane.db, env).await?.hold {
        return Err(Error::Conflict(format!(
            "{env} is on hold since {} by {}: {} (lift it with DELETE \
             /api/v1/environments/{env}/hold {{\"reason\"}})",
            h.at, h.by, h.reason
        )));
    }
    Ok(())
}

pub(super) fn awaiting(p: &promotions::Promotion) -> Result<()> {
    if p.status == Status::AwaitingApproval.as_str() {
        return Ok(());
    }
    let when = p.finished_at.as_deref().unwrap_or(&p.expires_at);
    Err(Error::Conflict(format!(
        "promotion {} is {} (since {when}), not awaiting approval",
        p.id, p.status
    )))
}
