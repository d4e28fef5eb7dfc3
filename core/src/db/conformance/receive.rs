//! A worker's receive on the embedded queue: the job starts in the lease's own
//! transaction where it can, and comes back as a delivery for `begin` where it cannot.

use super::lifecycle::{lifecycle, provenance, result_meta, stored, submitted};
use super::{unique, user};
use crate::db::Db;
use crate::lifecycle::{Begin, Received};
use crate::queue::{JobMessage, JobQueue};
use quarry_domain::{JobStatus, Role};
use std::time::Duration;

/// A receive starts a queued job in the lease's own transaction where the statements
/// run on the process's own SQLite connection, and hands the delivery on otherwise
/// (the pool, or a message whose job cannot start now) for `begin`; either way the
/// job runs under that delivery's receipt, once.
pub async fn receives_start_the_common_case(db: &Db) {
    let owner = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let one_transaction = matches!(
        db.statements().expect("statements"),
        crate::db::statements::Statements::Local(_)
    );
    let id = submitted(&life, &owner).await;
    let received = life
        .receive(Duration::from_secs(5), "w-r")
        .await
        .expect("receive")
        .expect("a delivery");
    let lease = match received {
        Received::Started(lease, job) => {
            assert!(one_transaction, "started on the pool");
            assert_eq!(job.view.status, JobStatus::Running);
            assert_eq!(job.lease.as_deref(), Some(lease.receipt()));
            *lease
        }
        Received::Delivered(d) => {
            assert!(
                !one_transaction,
                "a queued job on SQLite did not start with its lease"
            );
            match life.begin(d, "w-r").await.expect("begin") {
                Begin::Run(lease, _) => *lease,
                other => panic!("the delivery was not begun: {other:?}"),
            }
        }
    };
    assert_eq!((lease.job_id.as_str(), lease.attempt), (id.as_str(), 1));
    let job = stored(db, &id).await;
    assert_eq!(job.view.status, JobStatus::Running);
    assert_eq!(job.view.attempts, 1);
    assert_eq!(job.lease.as_deref(), Some(lease.receipt()));
    assert_eq!(job.worker_id.as_deref(), Some("w-r"));
    let until = job.lease_until.expect("a lease end");
    assert!(
        (until - lease.until_ms).abs() <= 1_000,
        "{until} vs {}",
        lease.until_ms
    );
    // The delivery is in flight: nothing more to receive.
    let none = life.receive(Duration::ZERO, "w-2").await.expect("receive");
    assert!(none.is_none(), "{none:?}");
    // A message whose job cannot start (it does not exist) comes as a delivery, and
    // `begin` acknowledges it.
    queue
        .send(&JobMessage::body("no-such-job"))
        .await
        .expect("send");
    match life
        .receive(Duration::from_secs(5), "w-2")
        .await
        .expect("receive")
    {
        Some(Received::Delivered(d)) => {
            assert!(matches!(
                life.begin(d, "w-2").await.expect("begin"),
                Begin::Skipped
            ));
        }
        other => panic!("a message without its job: {other:?}"),
    }
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.visible, counts.in_flight), (0, 1), "{counts:?}");
    life.commit(&lease, &result_meta(&unique("r")), &provenance(&lease))
        .await
        .expect("commit")
        .expect("the lease holds");
    assert_eq!(stored(db, &id).await.view.status, JobStatus::Succeeded);
}

/// A worker's commit leases its next job in the commit's own transaction where the
/// statements run on the process's own SQLite connection (and answers nothing
/// elsewhere, where the worker receives as usual); a fenced commit changes nothing
/// and leases nothing.
pub async fn commits_lease_the_next_job(db: &Db) {
    let owner = user(db, Role::Analyst).await;
    let (life, queue) = lifecycle(db, 3);
    let one_transaction = matches!(
        db.statements().expect("statements"),
        crate::db::statements::Statements::Local(_)
    );
    let first = submitted(&life, &owner).await;
    let lease = super::lifecycle::leased(&life, "w-n").await;
    assert_eq!(lease.job_id, first);
    let second = submitted(&life, &owner).await;

    // A stale lease (another receipt for the same job) is fenced: nothing changes.
    let stale = crate::lifecycle::Lease {
        delivery: crate::queue::Delivery {
            receipt: format!("{}x", lease.receipt()),
            ..lease.delivery.clone()
        },
        ..lease.clone()
    };
    let fenced = life
        .commit_then_receive(
            &stale,
            &result_meta(&unique("r")),
            &provenance(&stale),
            Some("w-n"),
        )
        .await
        .expect("commit");
    assert!(fenced.is_err(), "a stale lease committed");
    assert_eq!(stored(db, &first).await.view.status, JobStatus::Running);
    assert_eq!(stored(db, &second).await.view.status, JobStatus::Queued);
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.visible, counts.in_flight), (1, 1), "{counts:?}");

    let next = life
        .commit_then_receive(
            &lease,
            &result_meta(&unique("r")),
            &provenance(&lease),
            Some("w-n"),
        )
        .await
        .expect("commit")
        .expect("the lease holds");
    assert_eq!(stored(db, &first).await.view.status, JobStatus::Succeeded);
    let next_lease = match next {
        Some(Received::Started(next_lease, job)) => {
            assert!(one_transaction, "leased with the commit on the pool");
            assert_eq!(job.view.id, second);
            *next_lease
        }
        None => {
            assert!(!one_transaction, "nothing leased with the commit on SQLite");
            super::lifecycle::leased(&life, "w-n").await
        }
        Some(other) => panic!("the next job did not start: {other:?}"),
    };
    assert_eq!(
        (next_lease.job_id.as_str(), next_lease.attempt),
        (second.as_str(), 1)
    );
    let job = stored(db, &second).await;
    assert_eq!(job.view.status, JobStatus::Running);
    assert_eq!(job.lease.as_deref(), Some(next_lease.receipt()));
    assert_eq!(job.worker_id.as_deref(), Some("w-n"));
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.visible, counts.in_flight), (0, 1), "{counts:?}");

    // With nothing left to lease the commit still commits, and answers no delivery.
    let last = life
        .commit_then_receive(
            &next_lease,
            &result_meta(&unique("r")),
            &provenance(&next_lease),
            Some("w-n"),
        )
        .await
        .expect("commit")
        .expect("the lease holds");
    assert!(last.is_none(), "{last:?}");
    assert_eq!(stored(db, &second).await.view.status, JobStatus::Succeeded);
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.visible, counts.in_flight), (0, 0), "{counts:?}");
}
