//! Driving one release to its end: create and record its change set (unless one is
//! recorded already), execute it (unless CloudFormation says it ran), follow the stack
//! until it settles, then record the outcome once. The same code starts a release and
//! resumes one after a restart, so a restart never makes a second change set for it.

use super::ControlPlane;
use super::ops::{change_set_name, diff_json, template};
use super::views::{self, DiffRow};
use quarry_core::control::environments;
use quarry_core::control::promotions::{self, Status};
use quarry_core::releases::{self, Outcome};
use std::sync::Arc;

fn succeeded(status: &str) -> bool {
    status.ends_with("_COMPLETE") && !status.contains("ROLLBACK") && !status.contains("DELETE")
}

pub(super) async fn drive(plane: &Arc<ControlPlane>, release_id: &str) -> anyhow::Result<()> {
    let release = releases::get(&plane.db, release_id).await?;
    if release.outcome != Outcome::InProgress.as_str() {
        return Ok(());
    }
    let env = plane.env(&release.environment)?.clone();
    let deployer = plane.deployer(&env).await;
    let on_event = {
        let plane = plane.clone();
        let name = env.name.clone();
        move |e: &quarry_stacks::cloudformation::StackEvent| {
            plane.announce(
                &name,
                "stack",
                serde_json::to_value(views::stack_event(e)).unwrap_or_default(),
            );
        }
    };
    let result: anyhow::Result<(Outcome, Option<String>)> = async {
        let change_set = match &release.change_set_id {
            Some(cs) => cs.clone(),
            None => {
                let json = template(&env)?;
                let preview = deployer
                    .preview(&json, &release.image, &change_set_name(&release.kind))
                    .await?;
                let rows: Vec<DiffRow> = preview.rows.iter().map(views::diff_row).collect();
                // Emulators list no changes for a new parameter value alone: our rows
                // (from the templates and parameters) decide too.
                if preview.change_set.id.is_empty()
                    || (preview.change_set.changes.is_empty() && rows.is_empty())
                {
                    return Ok((Outcome::NoChanges, None));
                }
                let cs = preview.change_set.id.clone();
                if !releases::set_change_set(&plane.db, &release.id, &cs, &diff_json(&rows)).await?
                {
                    anyhow::bail!("release {} got a change set from elsewhere", release.id);
                }
                if let Some(p) = &release.promotion_id {
                    promotions::set_release(&plane.db, p, &release.id, Some(&cs)).await?;
                }
                cs
            }
        };
        if change_set.is_empty() {
            return Ok((Outcome::NoChanges, None));
        }
        if !plane.pause_before_execute.is_zero() {
            tokio::time::sleep(plane.pause_before_execute).await;
        }
        let status = if release.change_set_id.is_none() {
            // Made just now by this process: nobody executed it yet.
            deployer.execute(&change_set, &on_event).await?
        } else {
            // Recorded before a restart: execute it only if it never was.
            let stack_busy = deployer
                .status()
                .await?
                .is_some_and(|s| s.status.ends_with("_IN_PROGRESS"));
            match deployer.change_set_state(&change_set).await? {
                Some((_, execution)) if execution == "AVAILABLE" && !stack_busy => {
                    deployer.execute(&change_set, &on_event).await?
                }
                Some(_) => deployer.follow(&on_event).await?,
                // CloudFormation cannot say: try it; one already executed is refused.
                None => match deployer.execute(&change_set, &on_event).await {
                    Ok(status) => status,
                    Err(_) => deployer.follow(&on_event).await?,
                },
            }
        };
        if succeeded(&status) {
            return Ok((Outcome::Succeeded, None));
        }
        let mut detail = format!("the deployment ended in {status}");
        for f in deployer.failures().await.unwrap_or_default() {
            detail.push_str(&format!(
                "\n{} ({}): {} {}",
                f.logical_id, f.resource_type, f.status, f.reason
            ));
        }
        Ok((Outcome::Failed, Some(detail)))
    }
    .await;
    let (outcome, detail) = match result {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(release_id = %release.id, error = format!("{e:#}"), "a deployment failed");
            (
                Outcome::Failed,
                Some(format!("the deployment failed: {e:#}")),
            )
        }
    };
    finish(plane, &release, outcome, detail.as_deref()).await
}

/// Records the outcome of a release, and what follows from it: the environment's
/// current release, the previous release's label, the promotion's state.
async fn finish(
    plane: &Arc<ControlPlane>,
    release: &releases::Release,
    outcome: Outcome,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    releases::finish(&plane.db, &release.id, outcome, None, detail).await?;
    let good = matches!(outcome, Outcome::Succeeded | Outcome::NoChanges);
    if good {
        if let Some(previous) = &release.previous_release_id
            && previous != &release.id
        {
            let label = if release.kind == "rollback" {
                Outcome::RolledBack
            } else {
                Outcome::Superseded
            };
            releases::relabel(&plane.db, previous, Outcome::Succeeded, label).await?;
            releases::relabel(&plane.db, previous, Outcome::NoChanges, label).await?;
        }
        environments::set_current(&plane.db, &release.environment, &release.id).await?;
    }
    let done = releases::get(&plane.db, &release.id).await?;
    plane.announce(
        &release.environment,
        "release",
        serde_json::to_value(views::release(done)).unwrap_or_default(),
    );
    if let Some(p) = &release.promotion_id {
        let to = if good {
            Status::Succeeded
        } else {
            Status::Failed
        };
        promotions::transition(&plane.db, p, Status::Deploying, to, detail).await?;
        let view = super::reads::promotion(plane, p).await?;
        plane.announce(
            &release.environment,
            "promotion",
            serde_json::to_value(view).unwrap_or_default(),
        );
    }
    tracing::info!(release_id = %release.id, environment = %release.environment, outcome = outcome.as_str(), "release finished");
    Ok(())
}
