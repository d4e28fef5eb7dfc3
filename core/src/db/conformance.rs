//! The behaviour every database dialect must give the repositories, as runnable checks.
//! The same suite runs against SQLite and Postgres (see `core/tests/repositories.rs`),
//! so a query that only one dialect accepts, or decodes differently, fails here.
//!
//! Each check creates its own users, so the checks share one fresh database. These
//! panic on failure, like test assertions.

use crate::auth::{self, Principal};
use crate::clock::now_ms;
use crate::datasets::{self, NewDataset};
use crate::db::Db;
use crate::error::Error;
use crate::metrics::{DbMetrics, Metrics, Sample};
use crate::queue::{DbQueue, conformance as queue_conformance};
use crate::releases::{self, NewRelease, Outcome};
use crate::{decisions, fleet};
use quarry_domain::{ColumnInfo, DatasetFormat, Decision, Role};
use std::time::Duration;

mod control;
pub(crate) mod lifecycle;
mod receive;
mod results;
mod sign_in;
mod supersession;
pub use control::{
    artifacts_are_immutable_and_rejected_once, environments_freeze_and_hold,
    promotions_move_on_once, reference_gates_move_on_once,
};
pub use lifecycle::{
    a_fenced_lease_changes_nothing, activity_and_waiting, attempts_are_recorded_with_their_release,
    dead_workers_jobs_are_reconciled, failed_and_cancelled_jobs, hand_backs_are_not_attempts,
    job_changes_reach_their_followers, job_lifecycle_commits_a_result_once,
};
pub use receive::{commits_lease_the_next_job, receives_start_the_common_case};
pub use results::small_results_are_kept_in_their_row;
pub use sign_in::{passwords_and_sessions, sessions_opened_with_tokens, users_and_tokens};
pub use supersession::{
    forwarded_jobs_move_once, pinned_jobs_start_only_on_their_release,
    superseded_workers_start_no_job,
};

/// Runs every check against `db`, a freshly migrated database.
pub async fn run_all(db: &Db) {
    users_and_tokens(db).await;
    passwords_and_sessions(db).await;
    sessions_opened_with_tokens(db).await;
    datasets_are_private_and_unique_per_owner(db).await;
    job_lifecycle_commits_a_result_once(db).await;
    receives_start_the_common_case(db).await;
    commits_lease_the_next_job(db).await;
    small_results_are_kept_in_their_row(db).await;
    a_fenced_lease_changes_nothing(db).await;
    hand_backs_are_not_attempts(db).await;
    attempts_are_recorded_with_their_release(db).await;
    failed_and_cancelled_jobs(db).await;
    dead_workers_jobs_are_reconciled(db).await;
    job_changes_reach_their_followers(db).await;
    activity_and_waiting(db).await;
    worker_registry(db).await;
    metric_series_and_decisions(db).await;
    queue_table(db).await;
    releases_are_recorded_once(db).await;
    artifacts_are_immutable_and_rejected_once(db).await;
    environments_freeze_and_hold(db).await;
    promotions_move_on_once(db).await;
    reference_gates_move_on_once(db).await;
    superseded_workers_start_no_job(db).await;
    pinned_jobs_start_only_on_their_release(db).await;
    forwarded_jobs_move_once(db).await;
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn user(db: &Db, role: Role) -> Principal {
    let (user, _) = auth::create_user(db, &unique("user"), role)
        .await
        .expect("create user");
    Principal {
        user_id: user.id,
        name: user.name,
        role,
        credential: auth::Credential::Internal,
    }
}

fn new_dataset(owner: &Principal, name: &str) -> NewDataset {
    let id = uuid::Uuid::new_v4().to_string();
    NewDataset {
        blob_key: format!("datasets/{id}.csv"),
        id: id.clone(),
        owner_id: owner.user_id.clone(),
        name: name.to_owned(),
        format: DatasetFormat::Csv,
        rows: 3_000_000_000, // beyond 32 bits: BIGINT on Postgres
        bytes: 7,
        sha256: "ab".repeat(32),
        columns: vec![ColumnInfo {
            name: "x".into(),
            r#type: "int64".into(),
        }],
        typed: datasets::TypedCopy {
            parquet_key: format!("datasets/{name}-{}.typed.parquet", owner.user_id),
            stored_bytes: 5_000_000_000,
            ingest: quarry_domain::IngestOptions {
                delimiter: Some(';'),
                ..Default::default()
            },
        },
    }
}

pub async fn datasets_are_private_and_unique_per_owner(db: &Db) {
    let (ann, bob, ops) = (
        user(db, Role::Analyst).await,
        user(db, Role::Analyst).await,
        user(db, Role::Operator).await,
    );
    let first = new_dataset(&ann, "sales");
    datasets::insert(db, &first).await.expect("insert");
    assert!(
        datasets::name_taken(db, &ann.user_id, "sales")
            .await
            .expect("taken")
    );
    assert!(matches!(
        datasets::insert(db, &new_dataset(&ann, "sales")).await,
        Err(Error::Conflict(_))
    ));
    datasets::insert(db, &new_dataset(&bob, "sales"))
        .await
        .expect("another owner may reuse the name");

    let got = datasets::get(db, &ann, &first.id)
        .await
        .expect("owner reads");
    assert_eq!(
        (
            got.view.rows,
            got.view.owner.as_str(),
            got.view.columns.len()
        ),
        (3_000_000_000, ann.name.as_str(), 1)
    );
    assert!(matches!(
        datasets::get(db, &bob, &first.id).await,
        Err(Error::NotFound(_))
    ));
    datasets::get(db, &ops, &first.id)
        .await
        .expect("operators read everyone's");
    assert_eq!(datasets::list(db, &ann).await.expect("list").len(), 1);
    assert!(datasets::list(db, &ops).await.expect("list").len() >= 2);
    assert_eq!(
        datasets::names(db).await.expect("names").get(&first.id),
        Some(&"sales".to_owned())
    );
    assert_eq!(got.view.stored_bytes, Some(5_000_000_000));
    assert_eq!(got.scan_target().1, DatasetFormat::Parquet);
    assert_eq!(
        got.view.ingest.as_ref().and_then(|i| i.delimiter),
        Some(';')
    );

    // A re-type replaces the typed copy and hands back the old key.
    let retyped = datasets::TypedCopy {
        parquet_key: format!("datasets/{}.typed-2.parquet", first.id),
        stored_bytes: 9,
        ingest: quarry_domain::IngestOptions::default(),
    };
    let columns = [ColumnInfo {
        name: "x".into(),
        r#type: "float64".into(),
    }];
    let old = datasets::replace_typed(db, &first.id, 4, &columns, &retyped)
        .await
        .expect("replace typed copy");
    assert_eq!(old, Some(first.typed.parquet_key.clone()));
    let got = datasets::get(db, &ann, &first.id).await.expect("re-read");
    assert_eq!(
        (got.view.rows, got.view.columns[0].r#type.as_str()),
        (4, "float64")
    );
    assert_eq!(
        got.parquet_key.as_deref(),
        Some(retyped.parquet_key.as_str())
    );
    let keys = datasets::referenced_blob_keys(db).await.expect("keys");
    assert!(keys.contains(&first.blob_key) && keys.contains(&retyped.parquet_key));
    assert!(!keys.contains(&first.typed.parquet_key));

    // Workbooks are a format of their own.
    let mut workbook = new_dataset(&ann, "book");
    workbook.format = DatasetFormat::Xlsx;
    datasets::insert(db, &workbook).await.expect("insert xlsx");
    let got = datasets::get(db, &ann, &workbook.id).await.expect("xlsx");
    assert_eq!(got.view.format, DatasetFormat::Xlsx);
    datasets::delete(db, &workbook.id).await.expect("delete");

    datasets::delete(db, &first.id).await.expect("delete");
    assert!(datasets::find(db, &first.id).await.expect("find").is_none());
}

pub async fn worker_registry(db: &Db) {
    let stale = Duration::from_secs(60);
    let before = fleet::registry_counts(db, stale).await.expect("counts");
    let id = unique("w");
    fleet::set_state(db, &id, "starting", None)
        .await
        .expect("starting");
    fleet::set_state(db, &id, "running", Some("pid 1"))
        .await
        .expect("running");
    fleet::heartbeat(db, &id).await.expect("heartbeat");
    let during = fleet::registry_counts(db, stale).await.expect("counts");
    assert_eq!(
        (during.running, during.starting),
        (before.running + 1, before.starting)
    );
    fleet::set_state(db, &id, "exited", None)
        .await
        .expect("exited");
    assert_eq!(
        fleet::registry_counts(db, stale).await.expect("counts"),
        before
    );

    // A worker that stops renewing its row stops counting, and is marked exited.
    let lost = unique("w");
    fleet::set_state(db, &lost, "running", Some("pid 2"))
        .await
        .expect("running");
    sqlx::query("UPDATE workers SET last_seen_at = last_seen_at - 120000 WHERE id = $1")
        .bind(&lost)
        .execute(db.pool())
        .await
        .expect("age the row");
    assert_eq!(
        fleet::registry_counts(db, stale).await.expect("counts"),
        before,
        "not counted"
    );
    assert!(fleet::expire(db, stale).await.expect("expire") >= 1);
    let (state,): (String,) = sqlx::query_as("SELECT state FROM workers WHERE id = $1")
        .bind(&lost)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert_eq!(state, "exited");
    // Alive after all (its heartbeats had failed for a while): it counts again.
    fleet::heartbeat(db, &lost).await.expect("heartbeat");
    let back = fleet::registry_counts(db, stale).await.expect("counts");
    assert_eq!(back.running, before.running + 1);
    fleet::set_state(db, &lost, "exited", None)
        .await
        .expect("exited");
}

pub async fn metric_series_and_decisions(db: &Db) {
    let metrics = DbMetrics::new(db.clone(), &unique("env"));
    let since = now_ms() - 1;
    metrics
        .record(&[
            Sample {
                name: "queue_visible",
                value: 3.0,
            },
            Sample {
                name: "job_duration_seconds",
                value: 0.125,
            },
        ])
        .await
        .expect("record");
    let series = metrics
        .series("job_duration_seconds", since)
        .await
        .expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].1, 0.125);

    for launch in 1..=3 {
        decisions::record(
            db,
            now_ms(),
            &Decision {
                at: String::new(),
                visible: 5,
                in_flight: 1,
                running: 1,
                starting: 0,
                launch,
                reason: format!("decision {launch}"),
            },
            2,
        )
        .await
        .expect("record decision");
    }
    let latest = decisions::latest(db).await.expect("latest").expect("one");
    assert_eq!((latest.launch, latest.reason.as_str()), (3, "decision 3"));
}

pub async fn queue_table(db: &Db) {
    let queue = DbQueue::new(
        db.clone(),
        &unique("q"),
        queue_conformance::VISIBILITY,
        queue_conformance::MAX_RECEIVES,
    );
    queue_conformance::run_all(&queue, queue_conformance::Semantics::STRICT).await;
}

pub async fn releases_are_recorded_once(db: &Db) {
    let environment = unique("env");
    let new = NewRelease {
        environment: &environment,
        stack: "quarry-test",
        image: "registry/quarry:1",
        template_hash: "abc",
        deployed_by: "ops",
    };
    let first = releases::start(db, &new).await.expect("start");
    releases::finish(db, &first, Outcome::Succeeded, Some("cs-1"), None)
        .await
        .expect("finish");
    assert!(matches!(
        releases::finish(db, &first, Outcome::Failed, None, None).await,
        Err(Error::Conflict(_))
    ));
    let second = releases::start(
        db,
        &NewRelease {
            image: "registry/quarry:2",
            ..new
        },
    )
    .await
    .expect("start");
    let listed = releases::list(db, &environment, 10).await.expect("list");
    assert_eq!(listed.len(), 2);
    let find = |id: &str| listed.iter().find(|r| r.id == id).expect("listed");
    assert_eq!(find(&second).outcome, "in_progress");
    let done = find(&first);
    assert_eq!(
        (
            done.outcome.as_str(),
            done.change_set_id.as_deref(),
            done.image.as_str()
        ),
        ("succeeded", Some("cs-1"), "registry/quarry:1")
    );
    assert!(done.finished_at.is_some());
}
