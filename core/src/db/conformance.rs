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
use crate::jobs::{self, ResultMeta};
use crate::lifecycle::{Begin, Fenced, LEASE_SKEW, Lease, Lifecycle, Retry};
use crate::metrics::{DbMetrics, Metrics, Sample};
use crate::queue::{
    DbQueue, JobMessage, JobQueue, backstop_receives, conformance as queue_conformance,
};
use crate::releases::{self, NewRelease, Outcome};
use crate::{decisions, fleet};
use quarry_domain::{ColumnInfo, DatasetFormat, Decision, JobStatus, Role};
use std::sync::Arc;
use std::time::Duration;

mod control;
mod sign_in;
pub use control::{
    artifacts_are_immutable_and_rejected_once, environments_freeze_and_hold,
    promotions_move_on_once,
};
pub use sign_in::{passwords_and_sessions, sessions_opened_with_tokens, users_and_tokens};

/// Runs every check against `db`, a freshly migrated database.
pub async fn run_all(db: &Db) {
    users_and_tokens(db).await;
    passwords_and_sessions(db).await;
    sessions_opened_with_tokens(db).await;
    datasets_are_private_and_unique_per_owner(db).await;
    job_lifecycle_commits_a_result_once(db).await;
    a_fenced_lease_changes_nothing(db).await;
    hand_backs_are_not_attempts(db).await;
    failed_and_cancelled_jobs(db).await;
    dead_workers_jobs_are_reconciled(db).await;
    activity_and_waiting(db).await;
    worker_registry(db).await;
    metric_series_and_decisions(db).await;
    queue_table(db).await;
    releases_are_recorded_once(db).await;
    artifacts_are_immutable_and_rejected_once(db).await;
    environments_freeze_and_hold(db).await;
    promotions_move_on_once(db).await;
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

/// A lifecycle over a queue of its own, with short leases.
fn lifecycle(db: &Db, max_attempts: u32) -> (Lifecycle, Arc<DbQueue>) {
    let queue = Arc::new(DbQueue::new(
        db.clone(),
        &unique("jobs"),
        queue_conformance::VISIBILITY,
        backstop_receives(max_attempts),
    ));
    (
        Lifecycle::new(db.clone(), queue.clone(), max_attempts, 100),
        queue,
    )
}

async fn submitted(life: &Lifecycle, owner: &Principal) -> String {
    let dataset = new_dataset(owner, &unique("d"));
    datasets::insert(life.db(), &dataset)
        .await
        .expect("dataset");
    let id = uuid::Uuid::new_v4().to_string();
    let held = life
        .submit(&jobs::NewJob {
            id: &id,
            owner_id: &owner.user_id,
            dataset_id: &dataset.id,
            analysis_json: r#"{"kind":"profile"}"#,
        })
        .await
        .expect("submit");
    assert!(!held);
    id
}

/// The next delivery, begun as `worker`: its lease.
async fn leased(life: &Lifecycle, worker: &str) -> Lease {
    let d = life
        .queue()
        .receive(Duration::from_secs(5))
        .await
        .expect("receive")
        .expect("a delivery");
    match life.begin(d, worker).await.expect("begin") {
        Begin::Run(lease, _) => *lease,
        Begin::Skipped => panic!("the delivery was skipped"),
    }
}

async fn stored(db: &Db, id: &str) -> jobs::StoredJob {
    jobs::find(db, id).await.expect("find").expect("exists")
}

fn result_meta(key: &str) -> ResultMeta {
    ResultMeta {
        blob_key: key.to_owned(),
        rows: 2,
        bytes: 10,
        columns: vec![ColumnInfo {
            name: "n".into(),
            r#type: "float64".into(),
        }],
    }
}

pub async fn job_lifecycle_commits_a_result_once(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let id = submitted(&life, &ann).await;
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Queued);
    assert!(
        stored(db, &id).await.enqueued_at.is_some(),
        "sent with its row"
    );
    assert_eq!(queue.counts().await.expect("counts").visible, 1);
    assert!(
        jobs::queue_position(db, &id)
            .await
            .expect("position")
            .is_some()
    );

    let mut lease = leased(&life, "w-1").await;
    assert_eq!((lease.job_id.as_str(), lease.attempt), (id.as_str(), 1));
    life.heartbeat(&mut lease)
        .await
        .expect("beat")
        .expect("kept");
    life.progress(&lease, 0.25)
        .await
        .expect("progress")
        .expect("kept");
    let running = stored(db, &id).await;
    assert_eq!(
        (
            running.view.status,
            running.view.attempts,
            running.view.progress
        ),
        (JobStatus::Running, 1, 0.25)
    );
    assert_eq!(running.lease.as_deref(), Some(lease.receipt()));
    assert!(jobs::running_count(db).await.expect("running") >= 1);
    assert_eq!(jobs::queue_position(db, &id).await.expect("position"), None);

    life.commit(&lease, &result_meta("results/a"))
        .await
        .expect("commit")
        .expect("kept");
    assert_eq!(
        life.commit(&lease, &result_meta("results/b"))
            .await
            .expect("again"),
        Err(Fenced),
        "a second commit changes nothing"
    );
    let meta = jobs::result(db, &id)
        .await
        .expect("result")
        .expect("stored");
    assert_eq!((meta.blob_key.as_str(), meta.rows), ("results/a", 2));
    let done = stored(db, &id).await;
    assert_eq!(
        (done.view.status, done.view.progress),
        (JobStatus::Succeeded, 1.0)
    );
    let counts = queue.counts().await.expect("counts");
    assert_eq!(
        (counts.visible, counts.in_flight),
        (0, 0),
        "the message is gone"
    );

    // A duplicate message of the finished job is acknowledged and runs nothing.
    queue.send(&JobMessage::body(&id)).await.expect("send");
    let d = queue
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("dup");
    assert!(matches!(
        life.begin(d, "w-2").await.expect("begin"),
        Begin::Skipped
    ));
    assert_eq!(queue.counts().await.expect("counts").in_flight, 0);
}

/// A worker whose lease passed to another delivery changes nothing: not the
/// progress, not the outcome, not the queue.
pub async fn a_fenced_lease_changes_nothing(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let (life, _queue) = lifecycle(db, 3);
    let id = submitted(&life, &ann).await;
    let mut stale = leased(&life, "w-stopped").await;
    // The stopped worker's lease runs out; the message goes to another worker.
    tokio::time::sleep(queue_conformance::VISIBILITY + Duration::from_millis(200)).await;
    let fresh = leased(&life, "w-fresh").await;
    assert_eq!(fresh.attempt, 2);
    assert_eq!(life.heartbeat(&mut stale).await.expect("beat"), Err(Fenced));
    assert_eq!(
        life.progress(&stale, 0.9).await.expect("progress"),
        Err(Fenced)
    );
    assert_eq!(
        life.cancel_requested(&stale).await.expect("cancel"),
        Err(Fenced)
    );
    assert_eq!(
        life.commit(&stale, &result_meta("results/stale"))
            .await
            .expect("commit"),
        Err(Fenced)
    );
    assert_eq!(
        life.fail(&stale, "stale", Retry::IfAttemptsLeft)
            .await
            .expect("fail"),
        Err(Fenced)
    );
    assert_eq!(
        life.hand_back(&stale).await.expect("hand back"),
        Err(Fenced)
    );
    let job = stored(db, &id).await;
    assert_eq!(
        (
            job.view.status,
            job.lease.as_deref(),
            job.worker_id.as_deref()
        ),
        (JobStatus::Running, Some(fresh.receipt()), Some("w-fresh"))
    );
    life.commit(&fresh, &result_meta("results/fresh"))
        .await
        .expect("commit")
        .expect("kept");
    let meta = jobs::result(db, &id)
        .await
        .expect("result")
        .expect("stored");
    assert_eq!(meta.blob_key, "results/fresh");
}

/// Hand-backs (a worker shutting down) do not use up attempts.
pub async fn hand_backs_are_not_attempts(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 1);
    let id = submitted(&life, &ann).await;
    for _ in 0..5 {
        let lease = leased(&life, "w-interrupted").await;
        assert_eq!(lease.attempt, 1);
        life.hand_back(&lease)
            .await
            .expect("hand back")
            .expect("kept");
        let job = stored(db, &id).await;
        assert_eq!((job.view.status, job.view.attempts), (JobStatus::Queued, 0));
    }
    let lease = leased(&life, "w-last").await;
    life.commit(&lease, &result_meta("results/x"))
        .await
        .expect("commit")
        .expect("kept");
    let done = stored(db, &id).await;
    assert_eq!(
        (done.view.status, done.view.attempts),
        (JobStatus::Succeeded, 1)
    );
    assert_eq!(queue.counts().await.expect("counts").dead, 0);
}

pub async fn failed_and_cancelled_jobs(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let lead = user(db, Role::Lead).await;
    let (life, queue) = lifecycle(db, 2);
    let id = submitted(&life, &ann).await;
    let first = leased(&life, "w-1").await;
    let last = life
        .fail(&first, "first try failed", Retry::IfAttemptsLeft)
        .await
        .expect("fail");
    assert_eq!(last, Ok(false));
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Queued);
    let second = leased(&life, "w-1").await;
    assert_eq!(second.attempt, 2);
    let last = life
        .fail(&second, "gave up", Retry::IfAttemptsLeft)
        .await
        .expect("fail");
    assert_eq!(last, Ok(true));
    let failed = stored(db, &id).await;
    assert_eq!(
        (
            failed.view.status,
            failed.view.dead_letter,
            failed.view.error.as_deref()
        ),
        (JobStatus::Failed, true, Some("gave up"))
    );
    assert_eq!(queue.counts().await.expect("counts").dead, 1);

    // A failure that every attempt would repeat: failed at once, not dead-lettered.
    let id = submitted(&life, &ann).await;
    let lease = leased(&life, "w-1").await;
    assert_eq!(
        life.fail(&lease, "too slow", Retry::Never)
            .await
            .expect("fail"),
        Ok(true)
    );
    let failed = stored(db, &id).await;
    assert_eq!(
        (failed.view.status, failed.view.dead_letter),
        (JobStatus::Failed, false)
    );

    // Cancelled while queued: at once; while running: by its worker.
    let other = submitted(&life, &ann).await;
    assert!(matches!(
        life.cancel(&lead, &other).await,
        Err(Error::Forbidden(_))
    ));
    let cancelled = life.cancel(&ann, &other).await.expect("cancel");
    assert_eq!(cancelled.view.status, JobStatus::Cancelled);
    assert!(matches!(
        life.cancel(&ann, &other).await,
        Err(Error::Conflict(_))
    ));
    let d = queue
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("its message");
    assert!(matches!(
        life.begin(d, "w-1").await.expect("begin"),
        Begin::Skipped
    ));

    let running = submitted(&life, &ann).await;
    let lease = leased(&life, "w-1").await;
    life.cancel(&ann, &running).await.expect("cancel");
    assert_eq!(life.cancel_requested(&lease).await.expect("flag"), Ok(true));
    life.cancelled(&lease)
        .await
        .expect("cancelled")
        .expect("kept");
    assert_eq!(stored(db, &running).await.view.status, JobStatus::Cancelled);
}

/// A job whose worker died: redelivered while attempts remain, then failed as a dead
/// letter; the reconciler puts a running job with no live lease back in the queue.
pub async fn dead_workers_jobs_are_reconciled(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 2);
    let id = submitted(&life, &ann).await;
    let _killed = leased(&life, "w-killed").await;
    tokio::time::sleep(queue_conformance::VISIBILITY + LEASE_SKEW + Duration::from_millis(300))
        .await;
    let done = life.reconcile().await.expect("reconcile");
    assert!(done.requeued >= 1, "{done:?}");
    let job = stored(db, &id).await;
    assert_eq!(
        (job.view.status, job.view.attempts, job.lease),
        (JobStatus::Queued, 1, None)
    );
    let _killed_again = leased(&life, "w-killed").await;
    tokio::time::sleep(queue_conformance::VISIBILITY + Duration::from_millis(200)).await;
    let d = queue
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("again");
    assert!(matches!(
        life.begin(d, "w-3").await.expect("begin"),
        Begin::Skipped
    ));
    let failed = stored(db, &id).await;
    assert_eq!(
        (failed.view.status, failed.view.dead_letter),
        (JobStatus::Failed, true)
    );
    assert!(
        failed
            .view
            .error
            .as_deref()
            .is_some_and(|e| e.contains("gave up after 2 attempts"))
    );

    // A released job whose message never went out is sent by the reconciler.
    let lost = submitted(&life, &ann).await;
    let d = queue
        .receive(Duration::from_secs(2))
        .await
        .expect("receive")
        .expect("message");
    queue.delete(&d.receipt).await.expect("delete");
    sqlx::query(
        "UPDATE jobs SET enqueued_at = NULL, created_at = created_at - 60000 WHERE id = $1",
    )
    .bind(&lost)
    .execute(db.pool())
    .await
    .expect("forget the send");
    assert_eq!(life.reconcile().await.expect("reconcile").resent, 1);
    assert_eq!(leased(&life, "w-4").await.job_id, lost);
}

pub async fn activity_and_waiting(db: &Db) {
    let since = now_ms() - 1;
    let ann = user(db, Role::Analyst).await;
    let (life, _queue) = lifecycle(db, 3);
    let (a, b) = (submitted(&life, &ann).await, submitted(&life, &ann).await);
    let (pa, pb) = (
        jobs::queue_position(db, &a)
            .await
            .expect("a")
            .expect("queued"),
        jobs::queue_position(db, &b)
            .await
            .expect("b")
            .expect("queued"),
    );
    // Jobs created in the same millisecond are ordered by id.
    assert_eq!(
        pa.abs_diff(pb),
        1,
        "two waiting jobs hold consecutive places"
    );
    for _ in 0..2 {
        let lease = leased(&life, "w-1").await;
        let key = format!("results/{}", lease.job_id);
        life.commit(&lease, &result_meta(&key))
            .await
            .expect("commit")
            .expect("kept");
    }
    let activity = jobs::activity_since(db, since).await.expect("activity");
    assert!(
        activity.started >= 2 && activity.succeeded >= 2,
        "{activity:?}"
    );
    assert!(activity.mean_duration_secs.is_some_and(|m| m >= 0.0));
    assert!(activity.p95_duration_secs >= activity.p50_duration_secs);
    assert!(
        jobs::recent_median_secs(db, 10)
            .await
            .expect("median")
            .is_some()
    );
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
