//! The reads of the control plane, shared by the REST routes, the pages and the CLI:
//! environments (list and detail, with their stacks' state), releases, promotions and
//! artifacts. Nothing here changes a record (expired promotions are marked so first).

use super::ControlPlane;
use super::views::{
    self, ArtifactView, EnvironmentDetail, EnvironmentView, OverrideView, PromotionView,
    ReleaseView, ResourceView, StackEventView,
};
use quarry_core::Result;
use quarry_core::control::promotions::{self, Status};
use quarry_core::control::{artifacts, environments};
use quarry_core::releases;

/// An environment's summary.
pub async fn environment(plane: &ControlPlane, env: &str) -> Result<EnvironmentView> {
    let def = plane.env(env)?.clone();
    let state = environments::get(&plane.db, env).await?;
    let release = match &state.current_release_id {
        Some(id) => Some(releases::get(&plane.db, id).await?),
        None => None,
    };
    let deployer = plane.deployer(&def).await;
    let read = tokio::time::timeout(STACK_READ_TIMEOUT, deployer.status()).await;
    let (status, status_reason) = match read {
        Ok(Ok(Some(s))) => (s.status, None),
        Ok(Ok(None)) => ("not_deployed".to_owned(), None),
        Ok(Err(e)) => ("unknown".to_owned(), Some(short_reason(&e.to_string()))),
        Err(_) => (
            "unknown".to_owned(),
            Some(format!(
                "CloudFormation did not answer within {} s",
                STACK_READ_TIMEOUT.as_secs()
            )),
        ),
    };
    plane.note_stack_reach(env, status_reason.as_deref());
    Ok(EnvironmentView {
        name: def.name.clone(),
        stack: def.stack().to_owned(),
        upstream: def.upstream().map(ToOwned::to_owned),
        status,
        status_reason,
        artifact: release.as_ref().map(|r| r.image.clone()),
        release_id: state.current_release_id.clone(),
        frozen: state.frozen.as_ref().map(views::mark),
        hold: state.hold.as_ref().map(views::mark),
        approvals_required: def.approvals(),
    })
}

pub async fn list_environments(plane: &ControlPlane) -> Result<Vec<EnvironmentView>> {
    // Each environment's stack is asked at once, so an unreachable account costs one
    // time-out, not one per environment.
    futures::future::try_join_all(
        plane
            .environments()
            .iter()
            .map(|def| environment(plane, &def.name)),
    )
    .await
}

/// How long a page or API read waits for CloudFormation before it reports the stack's
/// status as `unknown`.
pub const STACK_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The first sentence of an SDK failure, without the debug dump of its causes, and at
/// most 200 characters.
pub(crate) fn short_reason(text: &str) -> String {
    let head = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let head = head
        .split(" (")
        .next()
        .unwrap_or(&head)
        .split(" Attempted:")
        .next()
        .unwrap_or(&head)
        .trim();
    if head.chars().count() <= 200 {
        head.to_owned()
    } else {
        let cut: String = head.chars().take(199).collect();
        format!("{cut}…")
    }
}

/// An environment with its stack's resources, outputs, alarms, events and drift. The
/// stack is asked for each at once, and for no longer than [`DETAIL_READ_TIMEOUT`]: past
/// it, or when a read fails, the page still answers, with what could not be read left
/// empty and the reason in `status_reason` (drift not told in time is `unknown`).
pub async fn environment_detail(plane: &ControlPlane, env: &str) -> Result<EnvironmentDetail> {
    let mut view = environment(plane, env).await?;
    let def = plane.env(env)?.clone();
    let deployer = plane.deployer(&def).await;
    let deployed = view.status != "not_deployed" && view.status != "unknown";
    let mut stack = StackDetail::default();
    if deployed {
        let (resources, outputs, events, drift) = futures::join!(
            within(deployer.resources()),
            within(deployer.outputs()),
            within(deployer.recent_events(50)),
            within(deployer.drift()),
        );
        let mut failed = Vec::new();
        if let Some(r) = settle("resources", resources, &mut failed) {
            stack.resources = r.iter().map(views::resource).collect();
        }
        if let Some(o) = settle("outputs", outputs, &mut failed) {
            stack.outputs = o;
        }
        if let Some(e) = settle("events", events, &mut failed) {
            stack.events = e.iter().map(views::stack_event).collect();
        }
        // Drift that cannot be told in time is `unknown`, not a fault of the page.
        stack.drift = drift.and_then(Result::ok);
        if !failed.is_empty() {
            view.status_reason = Some(format!("could not read the stack's {}", failed.join(", ")));
        }
    }
    let alarms = stack
        .resources
        .iter()
        .filter(|r| r.resource_type == "AWS::CloudWatch::Alarm")
        .cloned()
        .collect();
    Ok(EnvironmentDetail {
        environment: view,
        resources: stack.resources,
        outputs: stack.outputs,
        alarms,
        recent_events: stack.events,
        drift: stack.drift.unwrap_or_else(|| "unknown".to_owned()),
        overrides: environments::overrides(&plane.db, env)
            .await?
            .into_iter()
            .map(|o| OverrideView {
                action: o.action,
                by: o.by,
                at: o.at,
                reason: o.reason,
            })
            .collect(),
    })
}

/// How long an environment's page waits for its stack's resources, events and drift.
pub const DETAIL_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A stack read of an environment's page, given at most [`DETAIL_READ_TIMEOUT`]; `None`
/// past it.
async fn within<T>(
    read: impl Future<Output = Result<T, quarry_stacks::cloudformation::CfnError>>,
) -> Option<Result<T, quarry_stacks::cloudformation::CfnError>> {
    tokio::time::timeout(DETAIL_READ_TIMEOUT, read).await.ok()
}

/// What a read gave, or `None` with the reason added to `failed`.
fn settle<T>(
    what: &str,
    read: Option<Result<T, quarry_stacks::cloudformation::CfnError>>,
    failed: &mut Vec<String>,
) -> Option<T> {
    match read {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            failed.push(format!("{what} ({})", short_reason(&e.to_string())));
            None
        }
        None => {
            failed.push(format!(
                "{what} (no answer within {} s)",
                DETAIL_READ_TIMEOUT.as_secs()
            ));
            None
        }
    }
}

/// What the stack itself says about an environment.
#[derive(Default)]
struct StackDetail {
    resources: Vec<ResourceView>,
    outputs: std::collections::BTreeMap<String, String>,
    events: Vec<StackEventView>,
    drift: Option<String>,
}

/// An environment's releases, newest first.
pub async fn releases(plane: &ControlPlane, env: &str) -> Result<Vec<ReleaseView>> {
    plane.env(env)?;
    Ok(releases::list(&plane.db, env, 200)
        .await?
        .into_iter()
        .map(views::release)
        .collect())
}

/// A promotion with its artifact and approvals (expired ones marked so first).
pub async fn promotion(plane: &ControlPlane, id: &str) -> Result<PromotionView> {
    promotions::expire_due(&plane.db).await?;
    let p = promotions::get(&plane.db, id).await?;
    let artifact = artifacts::get(&plane.db, &p.artifact_id).await?;
    let approvals = promotions::approvals(&plane.db, id).await?;
    let gate = super::gate::view(plane, &p, &artifact.image).await?;
    Ok(views::promotion(p, &artifact, approvals, gate))
}

/// Promotions, newest first.
pub async fn list_promotions(
    plane: &ControlPlane,
    status: Option<&str>,
) -> Result<Vec<PromotionView>> {
    promotions::expire_due(&plane.db).await?;
    let status = status
        .filter(|s| !s.is_empty())
        .map(Status::parse)
        .transpose()?;
    let mut out = Vec::new();
    for p in promotions::list(&plane.db, status, 200).await? {
        let artifact = artifacts::get(&plane.db, &p.artifact_id).await?;
        let approvals = promotions::approvals(&plane.db, &p.id).await?;
        let gate = super::gate::view(plane, &p, &artifact.image).await?;
        out.push(views::promotion(p, &artifact, approvals, gate));
    }
    Ok(out)
}

pub async fn list_artifacts(plane: &ControlPlane) -> Result<Vec<ArtifactView>> {
    Ok(artifacts::list(&plane.db, 500)
        .await?
        .into_iter()
        .map(views::artifact)
        .collect())
}

#[cfg(test)]
mod short_reason_tests {
    use super::short_reason;

    #[test]
    fn an_sdk_failure_is_cut_to_its_first_sentence() {
        let text = "CloudFormation DescribeStacks: dispatch failure: other: no credentials found in chain. Attempted:\n  Environment: not enabled (DispatchFailure(DispatchFailure { source: … }))";
        assert_eq!(
            short_reason(text),
            "CloudFormation DescribeStacks: dispatch failure: other: no credentials found in chain."
        );
        assert_eq!(short_reason(&"x".repeat(500)).chars().count(), 200);
    }
}
