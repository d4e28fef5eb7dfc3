//! Jobs through the lifecycle on a real database: a result committed once, a fenced
//! lease that changes nothing, hand-backs that are not attempts, failures, cancels,
//! and the reconciler's repairs (expired leases, unsent messages).

use super::{new_dataset, unique, user};
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::datasets;
use crate::db::Db;
use crate::error::Error;
use crate::jobs::{self, ResultMeta};
use crate::lifecycle::{Begin, Fenced, LEASE_SKEW, Lease, Lifecycle, Retry};
use crate::queue::{
    DbQueue, JobMessage, JobQueue, backstop_receives, conformance as queue_conformance,
};
use quarry_domain::{
    Analysis, ColumnInfo, DatasetFormat, FailureKind, InputProvenance, JobStatus, Provenance, Role,
};
use std::sync::Arc;
use std::time::Duration;

/// A lifecycle over a queue of its own, with short leases.
pub(super) fn lifecycle(db: &Db, max_attempts: u32) -> (Lifecycle, Arc<DbQueue>) {
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

pub(super) async fn submitted(life: &Lifecycle, owner: &Principal) -> String {
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
            required_release: None,
            rerun_of: None,
        })
        .await
        .expect("submit");
    assert!(!held);
    id
}

/// The next delivery, begun as `worker`: its lease.
pub(super) async fn leased(life: &Lifecycle, worker: &str) -> Lease {
    let d = life
        .queue()
        .receive(Duration::from_secs(5))
        .await
        .expect("receive")
        .expect("a delivery");
    match life.begin(d, worker).await.expect("begin") {
        Begin::Run(lease, _) => *lease,
        other => panic!("the delivery was not begun: {other:?}"),
    }
}

pub(super) async fn stored(db: &Db, id: &str) -> jobs::StoredJob {
    jobs::find(db, id).await.expect("find").expect("exists")
}

/// On SQLite, checks that the job's last write gave it a change number above
/// `before` and the highest in the table (what event streams follow, see
/// `crate::watch`), and answers it; Postgres notifies instead and keeps 0.
async fn changed_after(db: &Db, id: &str, before: i64) -> i64 {
    if db.dialect() != crate::db::Dialect::Sqlite {
        return before;
    }
    let (own, max): (i64, i64) = sqlx::query_as(
        "SELECT changed_seq, (SELECT MAX(changed_seq) FROM jobs) FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .expect("change number");
    assert!(
        own > before && own == max,
        "{id}: change {own} after {before}, max {max}"
    );
    own
}

/// What a test worker says of the result it commits.
pub fn provenance(lease: &Lease) -> Provenance {
    provenance_of(lease.attempt)
}

/// What a test worker says of the result of its attempt `attempt`.
pub fn provenance_of(attempt: u32) -> Provenance {
    Provenance {
        release: "build-test".into(),
        image: None,
        worker: "conformance".into(),
        attempt,
        engine: "none".into(),
        analysis: Analysis::Spin { seconds: 0.0 },
        dataset: InputProvenance {
            id: "d".into(),
            sha256: None,
            format: DatasetFormat::Csv,
            read: "original".into(),
            ingest: None,
            rows: 2,
        },
        computed_at: String::new(),
    }
}

pub(super) fn result_meta(key: &str) -> ResultMeta {
    ResultMeta {
        blob_key: key.to_owned(),
        rows: 2,
        bytes: 10,
        columns: vec![ColumnInfo {
            name: "n".into(),
            r#type: "float64".into(),
        }],
        inline: None,
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
    let change = changed_after(db, &id, 0).await;
    assert!(
        jobs::queue_position(db, &id)
            .await
            .expect("position")
            .is_some()
    );

    let mut lease = leased(&life, "w-1").await;
    assert_eq!((lease.job_id.as_str(), lease.attempt), (id.as_str(), 1));
    let change = changed_after(db, &id, change).await;
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

    life.commit(&lease, &result_meta("results/a"), &provenance(&lease))
        .await
        .expect("commit")
        .expect("kept");
    changed_after(db, &id, change).await;
    assert_eq!(
        life.commit(&lease, &result_meta("results/b"), &provenance(&lease))
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
    // The provenance is the first commit's, stamped with the commit's time.
    let recorded = done.view.provenance.expect("provenance with the result");
    assert_eq!(
        (recorded.release.as_str(), recorded.attempt),
        ("build-test", 1)
    );
    assert_eq!(Some(recorded.computed_at), done.view.finished_at);
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
        life.commit(&stale, &result_meta("results/stale"), &provenance(&stale))
            .await
            .expect("commit"),
        Err(Fenced)
    );
    assert_eq!(
        life.fail(&stale, "stale", FailureKind::Data, Retry::IfAttemptsLeft)
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
    life.commit(&fresh, &result_meta("results/fresh"), &provenance(&fresh))
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
    life.commit(&lease, &result_meta("results/x"), &provenance(&lease))
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

/// Every attempt is recorded with its worker's release and how it ended, whatever
/// path ended it.
pub async fn attempts_are_recorded_with_their_release(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let (life, _queue) = lifecycle(db, 3);
    let (w1, w2) = (unique("w-v1"), unique("w-v2"));
    for (w, release) in [(&w1, "v1"), (&w2, "v2")] {
        crate::fleet::set_state(db, w, "running", None)
            .await
            .expect("register");
        crate::fleet::set_release(db, w, release)
            .await
            .expect("release");
    }
    let id = submitted(&life, &ann).await;
    assert!(jobs::attempts(db, &id).await.expect("attempts").is_empty());
    let first = leased(&life, &w1).await;
    let running = jobs::attempts(db, &id).await.expect("attempts");
    assert_eq!(running.len(), 1);
    assert_eq!(
        (
            running[0].outcome.as_deref(),
            running[0].ended_at.as_deref()
        ),
        (None, None),
        "an attempt in progress has no end"
    );
    life.fail(&first, "bad luck", FailureKind::Data, Retry::IfAttemptsLeft)
        .await
        .expect("fail")
        .expect("kept");
    let second = leased(&life, &w2).await;
    life.hand_back(&second)
        .await
        .expect("hand back")
        .expect("kept");
    let third = leased(&life, &w2).await;
    life.commit(
        &third,
        &result_meta("results/attempts"),
        &provenance(&third),
    )
    .await
    .expect("commit")
    .expect("kept");
    let attempts = jobs::attempts(db, &id).await.expect("attempts");
    let seen: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.worker.as_deref() == Some(w1.as_str()),
                a.release.as_deref(),
                a.outcome.as_deref(),
                a.error.as_deref(),
                a.failure.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                1,
                true,
                Some("v1"),
                Some("failed"),
                Some("bad luck"),
                Some("data")
            ),
            (2, false, Some("v2"), Some("handed_back"), None, None),
            (2, false, Some("v2"), Some("succeeded"), None, None),
        ],
        "{attempts:?}"
    );
    assert!(attempts.iter().all(|a| a.ended_at.is_some()));
    // What the regression watch counts: not the data's failure, nor the hand-back.
    assert_eq!(
        jobs::counted_attempts(db, "v1", 0, i64::MAX)
            .await
            .expect("v1"),
        []
    );
    assert_eq!(
        jobs::counted_attempts(db, "v2", 0, i64::MAX)
            .await
            .expect("v2"),
        [jobs::CountedAttempt {
            kind: "profile".into(),
            failed: false
        }]
    );
}

pub async fn failed_and_cancelled_jobs(db: &Db) {
    let ann = user(db, Role::Analyst).await;
    let lead = user(db, Role::Lead).await;
    let (life, queue) = lifecycle(db, 2);
    let id = submitted(&life, &ann).await;
    let first = leased(&life, "w-1").await;
    let last = life
        .fail(
            &first,
            "first try failed",
            FailureKind::Data,
            Retry::IfAttemptsLeft,
        )
        .await
        .expect("fail");
    assert_eq!(last, Ok(false));
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Queued);
    let second = leased(&life, "w-1").await;
    assert_eq!(second.attempt, 2);
    let last = life
        .fail(&second, "gave up", FailureKind::Data, Retry::IfAttemptsLeft)
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
        life.fail(&lease, "too slow", FailureKind::Timeout, Retry::Never)
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
    // Both attempts are on record as lost: their worker never said how they ended.
    let attempts = jobs::attempts(db, &id).await.expect("attempts");
    let seen: Vec<(u32, Option<&str>, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_deref(), a.failure.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some("lost"), Some("crash")),
            (2, Some("lost"), Some("crash"))
        ],
        "a worker that dies holding a job is a crash: {attempts:?}"
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
        life.commit(&lease, &result_meta(&key), &provenance(&lease))
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

/// The job watch (`crate::watch`) on this dialect: a job's insert and status changes
/// wake its followers and move the queue; a heartbeat wakes the job's followers only.
pub async fn job_changes_reach_their_followers(db: &Db) {
    use crate::watch::JobWatch;
    use tokio_util::sync::CancellationToken;
    let within = Duration::from_secs(10);
    let (life, _queue) = lifecycle(db, 3);
    let owner = user(db, Role::Analyst).await;
    let hub = JobWatch::new();
    let stop = CancellationToken::new();
    let feeding = tokio::spawn({
        let (hub, db, stop) = (hub.clone(), db.clone(), stop.clone());
        async move { hub.run(db, stop).await }
    });
    // Somebody follows from the start, so the watcher is looking.
    let mut bystander = hub.follow("no-such-job");
    tokio::time::sleep(Duration::from_millis(500)).await;
    bystander.queue_moved.mark_unchanged();
    let id = submitted(&life, &owner).await;
    tokio::time::timeout(within, bystander.queue_moved.changed())
        .await
        .expect("a new job moves the queue")
        .unwrap();
    let mut follower = hub.follow(&id);
    let mut lease = leased(&life, "w-watch").await;
    tokio::time::timeout(within, follower.job.changed())
        .await
        .expect("its start wakes the job's follower")
        .unwrap();
    tokio::time::timeout(within, bystander.queue_moved.changed())
        .await
        .expect("a start moves the queue")
        .unwrap();
    // (Connecting a listener wakes every follower once: start counting from here.)
    bystander.queue_moved.mark_unchanged();
    bystander.job.mark_unchanged();
    follower.job.mark_unchanged();
    life.heartbeat(&mut lease)
        .await
        .expect("heartbeat")
        .expect("the lease holds");
    tokio::time::timeout(within, follower.job.changed())
        .await
        .expect("a heartbeat wakes the job's follower")
        .unwrap();
    assert!(
        !bystander.queue_moved.has_changed().unwrap(),
        "a heartbeat moves nothing in the queue"
    );
    assert!(
        !bystander.job.has_changed().unwrap(),
        "nobody else's follower wakes"
    );
    drop((follower, bystander));
    stop.cancel();
    feeding.await.unwrap();
}
