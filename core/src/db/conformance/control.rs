//! The control plane's records: artifacts registered once and rejected once,
//! environment freezes and holds, promotions moved on by compare-and-set only, and
//! releases linked to them.

use super::unique;
use crate::control::promotions::{self, NewPromotion, Status};
use crate::control::{artifacts, environments};
use crate::db::Db;
use crate::error::Error;
use crate::releases::{self, Link, NewRelease, Outcome};

fn image() -> String {
    format!(
        "registry.example/{}@sha256:{}",
        unique("quarry"),
        "ab".repeat(32)
    )
}

pub async fn artifacts_are_immutable_and_rejected_once(db: &Db) {
    assert!(matches!(
        artifacts::register(db, "registry.example/quarry:1", None, 7).await,
        Err(Error::Invalid { .. })
    ));
    let image = image();
    let first = artifacts::register(db, &image, Some("abc123"), 7)
        .await
        .expect("register");
    let again = artifacts::register(db, &image, Some("other"), 8)
        .await
        .expect("register again");
    assert_eq!(first, again, "registering twice gives the same artifact");
    assert_eq!(first.commit.as_deref(), Some("abc123"));
    assert_eq!(first.digest, format!("sha256:{}", "ab".repeat(32)));
    let rejected = artifacts::reject(db, &first.id, "ops", "broke production")
        .await
        .expect("reject");
    assert_eq!(
        rejected.rejected.as_ref().unwrap().reason,
        "broke production"
    );
    assert!(matches!(
        artifacts::reject(db, &first.id, "ops2", "again").await,
        Err(Error::Conflict(m)) if m.contains("broke production")
    ));
    assert!(
        artifacts::list(db, 1000)
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == first.id)
    );
}

pub async fn environments_freeze_and_hold(db: &Db) {
    let env = unique("env");
    let state = environments::get(db, &env).await.expect("get");
    assert!(state.frozen.is_none() && state.hold.is_none());
    environments::freeze(db, &env, "ops", "release train")
        .await
        .expect("freeze");
    assert!(matches!(
        environments::freeze(db, &env, "ops2", "again").await,
        Err(Error::Conflict(m)) if m.contains("release train")
    ));
    environments::unfreeze(db, &env, "ops", "train left")
        .await
        .expect("unfreeze");
    assert!(matches!(
        environments::unfreeze(db, &env, "ops", "x").await,
        Err(Error::Conflict(_))
    ));
    environments::hold(db, &env, "ops", "rolled back")
        .await
        .unwrap();
    assert_eq!(
        environments::get(db, &env)
            .await
            .unwrap()
            .hold
            .unwrap()
            .reason,
        "rolled back"
    );
    environments::lift_hold(db, &env, "ops", "fixed")
        .await
        .unwrap();
    assert!(environments::get(db, &env).await.unwrap().hold.is_none());
    environments::set_current(db, &env, "r-1").await.unwrap();
    let state = environments::get(db, &env).await.unwrap();
    assert_eq!(state.current_release_id.as_deref(), Some("r-1"));
    let log = environments::overrides(db, &env).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|o| o.action.as_str()).collect();
    assert_eq!(actions.len(), 2);
    assert!(actions.contains(&"unfreeze") && actions.contains(&"lift_hold"));
}

pub async fn promotions_move_on_once(db: &Db) {
    let artifact = artifacts::register(db, &image(), None, 7).await.unwrap();
    let new = NewPromotion {
        from_env: "staging",
        to_env: "production",
        artifact_id: &artifact.id,
        requested_by: "olga",
        expires_in_ms: 60_000,
        diff_json: "[]",
        diff_hash: "h1",
    };
    let p = promotions::create(db, &new).await.expect("create");
    assert_eq!(p.status, "awaiting_approval");
    assert!(
        promotions::replace_diff(db, &p.id, "[{}]", "h2")
            .await
            .unwrap()
    );
    promotions::add_approval(db, &p.id, "otto", "approve", "looks right")
        .await
        .unwrap();
    assert!(
        promotions::transition(db, &p.id, Status::AwaitingApproval, Status::Deploying, None)
            .await
            .unwrap()
    );
    // A second approver (or a restarted server) cannot start it again.
    assert!(
        !promotions::transition(db, &p.id, Status::AwaitingApproval, Status::Deploying, None)
            .await
            .unwrap()
    );
    assert!(
        !promotions::replace_diff(db, &p.id, "[]", "h3")
            .await
            .unwrap()
    );
    let release = releases::start_linked(
        db,
        &NewRelease {
            environment: "production",
            stack: "quarry-production",
            image: &artifact.image,
            template_hash: "t",
            deployed_by: "otto",
        },
        &Link {
            artifact_id: Some(&artifact.id),
            kind: Some("promotion"),
            promotion_id: Some(&p.id),
            previous_release_id: None,
        },
    )
    .await
    .unwrap();
    assert!(
        releases::set_change_set(db, &release, "cs-1", "[]")
            .await
            .unwrap()
    );
    assert!(
        !releases::set_change_set(db, &release, "cs-2", "[]")
            .await
            .unwrap()
    );
    promotions::set_release(db, &p.id, &release, Some("cs-1"))
        .await
        .unwrap();
    assert!(
        releases::in_progress(db)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == release)
    );
    releases::finish(db, &release, Outcome::Succeeded, None, None)
        .await
        .unwrap();
    let done = releases::get(db, &release).await.unwrap();
    assert_eq!(
        (
            done.kind.as_str(),
            done.change_set_id.as_deref(),
            done.promotion_id.as_deref()
        ),
        ("promotion", Some("cs-1"), Some(p.id.as_str()))
    );
    assert!(
        releases::relabel(db, &release, Outcome::Succeeded, Outcome::Superseded)
            .await
            .unwrap()
    );
    assert!(
        releases::relabel(db, &release, Outcome::Superseded, Outcome::RolledBack)
            .await
            .unwrap()
    );
    assert!(
        promotions::transition(
            db,
            &p.id,
            Status::Deploying,
            Status::Succeeded,
            Some("done")
        )
        .await
        .unwrap()
    );
    let p = promotions::get(db, &p.id).await.unwrap();
    assert_eq!(
        (p.status.as_str(), p.diff_hash.as_str()),
        ("succeeded", "h2")
    );
    assert!(p.finished_at.is_some());
    assert_eq!(
        promotions::approvals(db, &p.id).await.unwrap()[0].by,
        "otto"
    );

    let stale = promotions::create(
        db,
        &NewPromotion {
            expires_in_ms: -1,
            ..new
        },
    )
    .await
    .unwrap();
    assert!(promotions::expire_due(db).await.unwrap() >= 1);
    assert_eq!(
        promotions::get(db, &stale.id).await.unwrap().status,
        "expired"
    );
    let expired = promotions::list(db, Some(Status::Expired), 1000)
        .await
        .unwrap();
    assert!(expired.iter().any(|x| x.id == stale.id));
}
