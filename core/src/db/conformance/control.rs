//! The control plane's records: artifacts registered once and rejected once,
//! environment freezes and holds, promotions moved on by compare-and-set only, and
//! releases linked to them.

use super::unique;
use crate::control::promotions::{self, NewPromotion, Status};
use crate::control::{artifacts, environments};
use crate::db::Db;
use crate::error::Error;
use crate::releases::{self, Link, NewRelease, Outcome};

/// A promotion of `artifact_id` from staging into production, as olga requests it.
fn new_promotion(artifact_id: &str) -> NewPromotion<'_> {
    NewPromotion {
        from_env: "staging",
        to_env: "production",
        artifact_id,
        requested_by: "olga",
        expires_in_ms: 60_000,
        diff_json: "[]",
        diff_hash: "h1",
    }
}

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
    let new = new_promotion(&artifact.id);
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

/// A promotion opens a gate with one pending check per active reference (`none`
/// without any); checks and the gate move on once each; only a blocked gate of an
/// open promotion can be overridden. Retires what it pinned.
pub async fn reference_gates_move_on_once(db: &Db) {
    use crate::control::references::{self, NewReference, check, gate};
    let artifact = artifacts::register(db, &image(), None, 7).await.unwrap();
    let new = new_promotion(&artifact.id);
    // Nothing pinned: nothing to check.
    let before: Vec<String> = references::list(db, false)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    for id in &before {
        references::retire(db, id, "test").await.unwrap();
    }
    let bare = promotions::create(db, &new).await.unwrap();
    assert_eq!(references::open_gate(db, &bare.id).await.unwrap(), 0);
    assert_eq!(
        references::gate_of(db, &bare.id).await.unwrap().0,
        gate::NONE
    );

    let id = uuid::Uuid::new_v4().to_string();
    let pinned = references::pin(
        db,
        &id,
        &NewReference {
            name: "mean by region",
            owner_id: "u1",
            dataset_id: "d1",
            dataset_sha256: "abc",
            analysis_json: r#"{"kind":"profile"}"#,
            expected_key: "references/x.parquet",
            expected_hash: "e1",
            expected_rows: 4,
            pinned_release: "v1",
            source_job_id: "j1",
            pinned_by: "olga",
        },
    )
    .await
    .unwrap();
    assert_eq!((pinned.expected_rows, pinned.retired.is_none()), (4, true));
    let p = promotions::create(db, &new).await.unwrap();
    assert_eq!(references::open_gate(db, &p.id).await.unwrap(), 1);
    assert_eq!(
        references::gate_of(db, &p.id).await.unwrap().0,
        gate::PENDING
    );
    assert!(
        references::open_gates(db)
            .await
            .unwrap()
            .iter()
            .any(|(g, _)| g == &p.id)
    );
    // The check runs upstream: its dataset's copy there is recorded before its job.
    assert!(
        references::check_uploaded(db, &p.id, &id, "staging", "ds-upstream")
            .await
            .unwrap()
    );
    let pending = &references::checks(db, &p.id).await.unwrap()[0];
    assert_eq!(
        (pending.peer.as_deref(), pending.peer_dataset_id.as_deref()),
        (Some("staging"), Some("ds-upstream"))
    );
    assert!(
        references::check_started(db, &p.id, &id, "job-1")
            .await
            .unwrap()
    );
    assert!(
        !references::check_uploaded(db, &p.id, &id, "staging", "ds-again")
            .await
            .unwrap(),
        "a running check uploads nothing more"
    );
    assert!(
        !references::check_started(db, &p.id, &id, "job-2")
            .await
            .unwrap(),
        "a check starts once"
    );
    assert!(
        references::move_gate(db, &p.id, gate::PENDING, gate::RUNNING)
            .await
            .unwrap()
    );
    assert!(
        !references::override_gate(db, &p.id, "admin", "why")
            .await
            .unwrap(),
        "a running gate is not overridden"
    );
    assert!(
        references::check_finished(db, &p.id, &id, check::DIFFERED, Some("a1"), "{}")
            .await
            .unwrap()
    );
    assert!(
        !references::check_finished(db, &p.id, &id, check::PASSED, Some("e1"), "{}")
            .await
            .unwrap(),
        "a check ends once"
    );
    let checks = references::checks(db, &p.id).await.unwrap();
    assert_eq!(checks.len(), 1);
    let joined = references::checks_with_references(db, &p.id).await.unwrap();
    assert_eq!(joined, vec![(checks[0].clone(), pinned.clone())]);
    assert_eq!(
        (
            checks[0].status.as_str(),
            checks[0].job_id.as_deref(),
            checks[0].actual_hash.as_deref()
        ),
        (check::DIFFERED, Some("job-1"), Some("a1"))
    );
    references::check_upload_gone(db, &p.id, &id).await.unwrap();
    let ended = &references::checks(db, &p.id).await.unwrap()[0];
    assert_eq!(
        (ended.peer.as_deref(), ended.peer_dataset_id.as_deref()),
        (Some("staging"), None),
        "the copy upstream is forgotten once deleted, where the check ran is not"
    );
    assert!(
        references::move_gate(db, &p.id, gate::RUNNING, gate::BLOCKED)
            .await
            .unwrap()
    );
    assert!(
        references::override_gate(db, &p.id, "admin", "intended")
            .await
            .unwrap()
    );
    let (g, mark) = references::gate_of(db, &p.id).await.unwrap();
    assert_eq!(g, gate::OVERRIDDEN);
    let mark = mark.expect("the override is recorded");
    assert_eq!(
        (mark.by.as_str(), mark.reason.as_str()),
        ("admin", "intended")
    );
    assert!(
        !references::override_gate(db, &p.id, "admin", "again")
            .await
            .unwrap()
    );

    // Retired, it is checked by no later promotion.
    let retired = references::retire(db, &id, "olga").await.unwrap();
    assert_eq!(retired.retired.map(|m| m.by).as_deref(), Some("olga"));
    assert!(references::retire(db, &id, "olga").await.is_err());
    let later = promotions::create(db, &new).await.unwrap();
    assert_eq!(references::open_gate(db, &later.id).await.unwrap(), 0);
    for p in [&bare, &p, &later] {
        promotions::transition(db, &p.id, Status::AwaitingApproval, Status::Cancelled, None)
            .await
            .unwrap();
    }
}
