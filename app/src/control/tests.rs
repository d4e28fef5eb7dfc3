//! The control plane with a stack that cannot be updated: the one failure an emulator
//! cannot produce. Everything else is tested against moto (`tests/tests/api/control.rs`).

use super::deployer::{Deployer, OnEvent};
use super::ops::{self, Actor};
use super::reads;
use super::{ControlPlane, DeployerFactory, load_environments};
use async_trait::async_trait;
use quarry_core::Error;
use quarry_stacks::cloudformation::{
    CfnError, ChangeSet, Preview, ResourceChange, StackEvent, StackResource, StackStatus,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stack that deploys (or, with `fail`, rolls every update back).
#[derive(Debug, Default)]
struct FakeStack {
    fail: bool,
    status: Mutex<Option<String>>,
    change_sets: Mutex<u32>,
}

fn failed_event() -> StackEvent {
    StackEvent {
        at: "2025-01-01T00:00:00Z".into(),
        logical_id: "WorkerTaskDefinition".into(),
        resource_type: "AWS::ECS::TaskDefinition".into(),
        status: "UPDATE_FAILED".into(),
        reason: "Resource handler returned message: invalid image".into(),
    }
}

#[async_trait]
impl Deployer for FakeStack {
    async fn preview(&self, _: &str, _: &str, _: &str) -> Result<Preview, CfnError> {
        let n = {
            let mut n = self.change_sets.lock().unwrap();
            *n += 1;
            *n
        };
        let change = ResourceChange {
            action: "Modify".into(),
            logical_id: "WorkerTaskDefinition".into(),
            resource_type: "AWS::ECS::TaskDefinition".into(),
            replacement: "True".into(),
        };
        Ok(Preview {
            change_set: ChangeSet {
                id: format!("cs-{n}"),
                creates_stack: false,
                changes: vec![change.clone()],
            },
            rows: vec![change],
            unchanged_listed: 0,
        })
    }
    async fn rows(&self, t: &str, i: &str) -> Result<Vec<ResourceChange>, CfnError> {
        let mut preview = self.preview(t, i, "").await?;
        *self.change_sets.lock().unwrap() -= 1;
        Ok(std::mem::take(&mut preview.rows))
    }
    async fn delete_change_set(&self, _: &str) -> Result<(), CfnError> {
        Ok(())
    }
    async fn execute(&self, _: &str, on_event: OnEvent<'_>) -> Result<String, CfnError> {
        let status = if self.fail {
            on_event(&failed_event());
            "UPDATE_ROLLBACK_COMPLETE"
        } else {
            "UPDATE_COMPLETE"
        };
        *self.status.lock().unwrap() = Some(status.to_owned());
        Ok(status.to_owned())
    }
    async fn change_set_state(&self, _: &str) -> Result<Option<(String, String)>, CfnError> {
        Ok(Some(("CREATE_COMPLETE".into(), "AVAILABLE".into())))
    }
    async fn follow(&self, _: OnEvent<'_>) -> Result<String, CfnError> {
        Ok(self.status.lock().unwrap().clone().unwrap_or_default())
    }
    async fn failures(&self) -> Result<Vec<StackEvent>, CfnError> {
        Ok(if self.fail {
            vec![failed_event()]
        } else {
            Vec::new()
        })
    }
    async fn status(&self) -> Result<Option<StackStatus>, CfnError> {
        Ok(self
            .status
            .lock()
            .unwrap()
            .clone()
            .map(|status| StackStatus {
                name: "fake".into(),
                id: String::new(),
                status,
                reason: String::new(),
                image: None,
            }))
    }
    async fn resources(&self) -> Result<Vec<StackResource>, CfnError> {
        Ok(Vec::new())
    }
    async fn outputs(&self) -> Result<BTreeMap<String, String>, CfnError> {
        Ok(BTreeMap::new())
    }
    async fn recent_events(&self, _: usize) -> Result<Vec<StackEvent>, CfnError> {
        Ok(Vec::new())
    }
    async fn drift(&self) -> Result<String, CfnError> {
        Ok("unsupported".into())
    }
}

async fn plane(dir: &tempfile::TempDir) -> Arc<ControlPlane> {
    let url =
        secrecy::SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = quarry_core::Db::connect(&url).await.unwrap();
    let staging: Arc<dyn Deployer> = Arc::new(FakeStack::default());
    let production: Arc<dyn Deployer> = Arc::new(FakeStack {
        fail: true,
        ..Default::default()
    });
    let factory: DeployerFactory = Arc::new(move |def| {
        if def.name == "production" {
            production.clone()
        } else {
            staging.clone()
        }
    });
    ControlPlane::new(
        db,
        load_environments(None).unwrap(),
        factory,
        Duration::ZERO,
    )
}

fn actor(name: &str) -> Actor {
    Actor {
        name: name.to_owned(),
        admin: false,
    }
}

async fn settled(plane: &ControlPlane, env: &str) {
    for _ in 0..200 {
        let all = reads::releases(plane, env).await.unwrap();
        if all.iter().all(|r| r.outcome != "in_progress") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{env}'s release did not finish");
}

const V1: &str = "registry.example/quarry@sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[tokio::test]
async fn a_failed_promotion_records_resources_and_reasons_and_keeps_the_current_release() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&dir).await;
    assert!(matches!(
        ops::deploy(
            &plane,
            "staging",
            "registry.example/quarry:1",
            None,
            &actor("olga"),
            false
        )
        .await,
        Err(Error::Invalid { .. })
    ));
    ops::deploy(&plane, "staging", V1, Some("abc"), &actor("olga"), false)
        .await
        .unwrap();
    settled(&plane, "staging").await;
    let promotion = ops::request_promotion(&plane, "staging", "production", &actor("olga"), false)
        .await
        .unwrap();
    assert_eq!(promotion.status, "awaiting_approval");
    assert_eq!(promotion.diff.len(), 1);
    assert!(matches!(
        ops::approve(&plane, &promotion.id, &actor("olga"), "mine", false).await,
        Err(Error::Forbidden(m)) if m.contains("someone other than the requester")
    ));
    let approved = ops::approve(&plane, &promotion.id, &actor("otto"), "ok", false)
        .await
        .unwrap();
    assert_eq!(approved.status, "deploying");
    let mut failed = reads::promotion(&plane, &promotion.id).await.unwrap();
    for _ in 0..200 {
        if failed.status != "deploying" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        failed = reads::promotion(&plane, &promotion.id).await.unwrap();
    }
    assert_eq!(failed.status, "failed");
    let detail = failed.detail.unwrap();
    assert!(
        detail.contains("WorkerTaskDefinition") && detail.contains("invalid image"),
        "{detail}"
    );
    let production = reads::environment(&plane, "production").await.unwrap();
    assert_eq!(
        production.release_id, None,
        "the current release is unchanged"
    );
    let history = reads::releases(&plane, "production").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].kind.as_str(), history[0].outcome.as_str()),
        ("promotion", "failed")
    );
}
