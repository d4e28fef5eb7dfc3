//! Releases and supersession: once a new release is declared current, workers of the
//! old one finish what they hold and start nothing more.

use super::lifecycle::{leased, lifecycle, provenance, result_meta, stored, submitted};
use super::{unique, user};
use crate::Db;
use crate::jobs;
use crate::lifecycle::Begin;
use crate::queue::JobQueue;
use quarry_domain::{JobStatus, Role};
use std::time::Duration;

/// After a new release is declared current, workers of the old one start nothing (the
/// delivery goes straight back), the new release's workers do, and the old workers
/// show as draining. Leaves no current release behind.
pub async fn superseded_workers_start_no_job(db: &Db) {
    use crate::fleet;
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let (old, new) = (unique("w-old"), unique("w-new"));
    let (r1, r2) = (unique("release-1"), unique("release-2"));
    // Only this check's workers are live (earlier checks left theirs running).
    sqlx::query("UPDATE workers SET state = 'exited'")
        .execute(db.pool())
        .await
        .expect("retire");
    for (w, release) in [(&old, &r1), (&new, &r2)] {
        fleet::set_state(db, w, "running", None)
            .await
            .expect("register");
        fleet::set_release(db, w, release).await.expect("release");
    }
    assert_eq!(
        fleet::declare_release(db, &r1).await.expect("declare"),
        None
    );
    let stale = Duration::from_secs(60);
    assert_eq!(
        fleet::draining(db, stale).await.expect("draining"),
        1,
        "r2's worker"
    );

    // r1 is current: its worker runs a job.
    let before = submitted(&life, &ann).await;
    let lease = leased(&life, &old).await;
    assert_eq!(lease.job_id, before);

    // A deploy makes r2 current; r1's worker still finishes what it holds.
    assert_eq!(
        fleet::declare_release(db, &r2).await.expect("declare"),
        Some(r1.clone())
    );
    let current = fleet::current_release(db)
        .await
        .expect("current")
        .expect("declared");
    assert_eq!(
        (current.release.as_str(), current.previous.as_deref()),
        (r2.as_str(), Some(r1.as_str()))
    );
    assert_eq!(
        fleet::declare_release(db, &r2).await.expect("again"),
        None,
        "declaring the current release again changes nothing"
    );
    assert_eq!(
        fleet::current_release(db)
            .await
            .expect("current")
            .map(|c| c.since_ms),
        Some(current.since_ms)
    );
    assert_eq!(
        fleet::superseded_by(db, &r1).await.expect("superseded"),
        Some(r2.clone())
    );
    assert_eq!(fleet::superseded_by(db, &r2).await.expect("current"), None);
    assert_eq!(
        fleet::draining(db, stale).await.expect("draining"),
        1,
        "r1's worker"
    );
    let groups = fleet::by_release(db, stale).await.expect("by release");
    let group = |r: &str| {
        groups
            .iter()
            .find(|g| g.release.as_deref() == Some(r))
            .cloned()
    };
    let draining = group(&r1).expect("r1 has a worker");
    assert!(!draining.current);
    assert!(
        draining
            .workers
            .iter()
            .any(|w| w.id == old && w.job_id.as_deref() == Some(before.as_str())),
        "the old worker, with the job it finishes: {groups:?}"
    );
    assert!(group(&r2).expect("r2 has a worker").current);
    life.commit(&lease, &result_meta("results/before"), &provenance(&lease))
        .await
        .expect("commit")
        .expect("the old worker's commit is kept");

    // A job after the switch: r1's worker gives its delivery back untouched.
    let after = submitted(&life, &ann).await;
    let d = queue
        .receive(Duration::from_secs(1))
        .await
        .expect("receive")
        .expect("a delivery");
    match life.begin(d, &old).await.expect("begin") {
        Begin::Superseded(by) => assert_eq!(by, r2),
        other => panic!("a superseded worker began a job: {other:?}"),
    }
    let job = stored(db, &after).await;
    assert_eq!((job.view.status, job.view.attempts), (JobStatus::Queued, 0));
    assert!(
        jobs::attempts(db, &after)
            .await
            .expect("attempts")
            .is_empty()
    );
    assert_eq!(
        queue.counts().await.expect("counts").visible,
        1,
        "visible again at once"
    );
    let lease = leased(&life, &new).await;
    assert_eq!(lease.job_id, after, "r2's worker takes it");
    life.commit(&lease, &result_meta("results/after"), &provenance(&lease))
        .await
        .expect("commit")
        .expect("kept");

    sqlx::query("DELETE FROM current_release")
        .execute(db.pool())
        .await
        .expect("clean up");
    for w in [&old, &new] {
        fleet::set_state(db, w, "exited", None).await.expect("exit");
    }
}

/// A job that requires a release (a promotion gate's check) is started only by a
/// worker of that release: another release's worker defers its delivery without
/// counting an attempt, and takes unpinned jobs as before.
pub async fn pinned_jobs_start_only_on_their_release(db: &Db) {
    use crate::fleet;
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let (other, wanted) = (unique("w-other"), unique("w-wanted"));
    let (r1, r2) = (unique("release-a"), unique("release-b"));
    for (w, release) in [(&other, &r1), (&wanted, &r2)] {
        fleet::set_state(db, w, "running", None)
            .await
            .expect("register");
        fleet::set_release(db, w, release).await.expect("release");
    }
    let dataset = super::new_dataset(&ann, &unique("d"));
    crate::datasets::insert(db, &dataset)
        .await
        .expect("dataset");
    let id = uuid::Uuid::new_v4().to_string();
    life.submit(&jobs::NewJob {
        id: &id,
        owner_id: &ann.user_id,
        dataset_id: &dataset.id,
        analysis_json: r#"{"kind":"profile"}"#,
        required_release: Some(&r2),
        rerun_of: None,
    })
    .await
    .expect("submit");
    let d = queue
        .receive(Duration::from_secs(1))
        .await
        .expect("receive")
        .expect("a delivery");
    assert!(
        matches!(life.begin(d, &other).await.expect("begin"), Begin::Skipped),
        "a worker of another release began a pinned job"
    );
    let job = stored(db, &id).await;
    assert_eq!((job.view.status, job.view.attempts), (JobStatus::Queued, 0));
    assert_eq!(job.view.required_release.as_deref(), Some(r2.as_str()));
    assert!(
        queue
            .receive(Duration::from_millis(50))
            .await
            .expect("receive")
            .is_none(),
        "the deferred delivery stays hidden for a while"
    );
    // Offered again: the pinned release's worker takes it.
    tokio::time::sleep(crate::lifecycle::OTHER_RELEASE_DEFER + Duration::from_millis(300)).await;
    let lease = leased(&life, &wanted).await;
    assert_eq!((lease.job_id.as_str(), lease.attempt), (id.as_str(), 1));
    let attempts = jobs::attempts(db, &id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].release.as_deref(), Some(r2.as_str()));
    life.commit(&lease, &result_meta("results/pinned"), &provenance(&lease))
        .await
        .expect("commit")
        .expect("kept");
    // An unpinned job: any release's worker runs it.
    let free = submitted(&life, &ann).await;
    let lease = leased(&life, &other).await;
    assert_eq!(lease.job_id, free);
    life.commit(&lease, &result_meta("results/free"), &provenance(&lease))
        .await
        .expect("commit")
        .expect("kept");
    for w in [&other, &wanted] {
        fleet::set_state(db, w, "exited", None).await.expect("exit");
    }
}

/// A job run in another environment (a re-run on a release a peer runs) has no
/// message and no lease here: the reconciler leaves it alone, each step of the
/// forwarder happens once, a cancellation wins over a late result, and a result is
/// recorded once.
pub async fn forwarded_jobs_move_once(db: &Db) {
    use crate::jobs::forwarded;
    let ann = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let dataset = super::new_dataset(&ann, &unique("d"));
    crate::datasets::insert(db, &dataset)
        .await
        .expect("dataset");
    let forward = |id: String| {
        let (owner, data) = (ann.user_id.clone(), dataset.id.clone());
        async move {
            forwarded::insert(
                db,
                &jobs::NewJob {
                    id: &id,
                    owner_id: &owner,
                    dataset_id: &data,
                    analysis_json: r#"{"kind":"profile"}"#,
                    required_release: Some("release-elsewhere"),
                    rerun_of: None,
                },
                "staging",
            )
            .await
            .expect("insert");
            id
        }
    };
    let id = forward(uuid::Uuid::new_v4().to_string()).await;
    let job = stored(db, &id).await;
    assert_eq!(job.view.environment.as_deref(), Some("staging"));
    assert_eq!(job.view.status, JobStatus::Queued);
    assert_eq!(forwarded::open_of(db, &ann.user_id).await.expect("open"), 1);
    // Nothing here runs it: the reconciler sends no message for it.
    life.reconcile().await.expect("reconcile");
    assert!(
        queue
            .receive(Duration::from_millis(50))
            .await
            .expect("receive")
            .is_none(),
        "a job run elsewhere got a message here"
    );
    assert!(forwarded::uploaded(db, &id, "ds-there").await.expect("up"));
    assert!(!forwarded::uploaded(db, &id, "ds-again").await.expect("up"));
    assert!(
        forwarded::submitted(db, &id, "job-there")
            .await
            .expect("sub")
    );
    assert!(
        !forwarded::submitted(db, &id, "job-again")
            .await
            .expect("sub")
    );
    forwarded::running(db, &id, 0.5).await.expect("running");
    let job = stored(db, &id).await;
    assert_eq!(
        (
            job.view.status,
            job.view.progress,
            job.peer_job_id.as_deref()
        ),
        (JobStatus::Running, 0.5, Some("job-there"))
    );
    // Running here without a lease: the reconciler does not take it back.
    life.reconcile().await.expect("reconcile");
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Running);
    let meta = result_meta("results/forwarded");
    let provenance = serde_json::to_string(&super::lifecycle::provenance_of(1)).expect("json");
    assert!(
        forwarded::succeeded(db, &id, &meta, &provenance)
            .await
            .expect("succeeded")
    );
    assert!(
        !forwarded::succeeded(db, &id, &meta, &provenance)
            .await
            .expect("succeeded"),
        "a result is recorded once"
    );
    assert!(
        !forwarded::ended(db, &id, "failed", Some("late"))
            .await
            .expect("end")
    );
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Succeeded);
    assert_eq!(
        jobs::result(db, &id)
            .await
            .expect("result")
            .map(|r| r.blob_key),
        Some("results/forwarded".to_owned())
    );
    // Ended, it stays open for the forwarder until its upload there is gone.
    let open = |want: &str| {
        let want = want.to_owned();
        async move {
            forwarded::open(db, 1000)
                .await
                .expect("open")
                .iter()
                .any(|j| j.view.id == want)
        }
    };
    assert!(open(&id).await);
    forwarded::upload_gone(db, &id).await.expect("gone");
    assert!(!open(&id).await);

    // Cancelled before its result comes back: the result is refused.
    let late = forward(uuid::Uuid::new_v4().to_string()).await;
    forwarded::submitted(db, &late, "job-late")
        .await
        .expect("sub");
    forwarded::running(db, &late, 0.1).await.expect("running");
    jobs::request_cancel(db, &ann, &late).await.expect("cancel");
    assert!(
        !forwarded::succeeded(db, &late, &meta, &provenance)
            .await
            .expect("succeeded"),
        "a cancelled job took a result"
    );
    assert!(
        forwarded::ended(db, &late, "cancelled", None)
            .await
            .expect("end")
    );
    assert_eq!(stored(db, &late).await.view.status, JobStatus::Cancelled);
}
