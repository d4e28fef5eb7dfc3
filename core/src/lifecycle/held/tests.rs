//! Held jobs on both dialects: SQLite always, Postgres on `QUARRY_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`, as `core/tests` uses).

use super::*;
use crate::auth::{self, Principal};
use crate::datasets::{self, NewDataset, TypedCopy};
use crate::db::conformance::lifecycle::provenance;
use crate::jobs::{self, NewJob, ResultMeta};
use crate::lifecycle::{Begin, Lifecycle};
use crate::queue::{DbQueue, JobMessage, JobQueue};
use quarry_domain::{ColumnInfo, DatasetFormat, Role};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

async fn owner(db: &Db) -> (Principal, String) {
    let name = format!("u-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (user, _) = auth::create_user(db, &name, Role::Analyst).await.unwrap();
    let dataset = uuid::Uuid::new_v4().to_string();
    datasets::insert(
        db,
        &NewDataset {
            id: dataset.clone(),
            owner_id: user.id.clone(),
            name: name.clone(),
            format: DatasetFormat::Csv,
            blob_key: format!("datasets/{dataset}.csv"),
            rows: 1,
            bytes: 1,
            sha256: "cd".repeat(32),
            columns: vec![ColumnInfo {
                name: "x".into(),
                r#type: "int64".into(),
            }],
            typed: TypedCopy {
                parquet_key: format!("datasets/{dataset}.parquet"),
                stored_bytes: 1,
                ingest: Default::default(),
            },
        },
    )
    .await
    .unwrap();
    let who = Principal {
        user_id: user.id,
        name: user.name,
        role: Role::Analyst,
        credential: auth::Credential::Internal,
    };
    (who, dataset)
}

async fn submit_as(
    db: &Db,
    q: &DbQueue,
    who: &Principal,
    dataset: &str,
    max: u32,
) -> (String, bool) {
    let id = uuid::Uuid::new_v4().to_string();
    let new = NewJob {
        id: &id,
        owner_id: &who.user_id,
        dataset_id: dataset,
        analysis_json: r#"{"kind":"profile"}"#,
        required_release: None,
        rerun_of: None,
    };
    let held = submit(db, q, &new, max, now_ms()).await.unwrap();
    (id, held)
}

/// Receives the next message and returns the job id it names.
async fn deliver(q: &DbQueue) -> (String, crate::queue::Delivery) {
    let d = q
        .receive(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("a message");
    (JobMessage::parse(&d.body).unwrap().job_id, d)
}

fn meta(id: &str) -> ResultMeta {
    ResultMeta {
        blob_key: format!("results/{id}"),
        rows: 1,
        bytes: 1,
        columns: vec![],
        inline: None,
    }
}

async fn held_jobs_wait_for_their_owner(db: &Db) {
    let q = DbQueue::new(
        db.clone(),
        &format!("held-{}", uuid::Uuid::new_v4()),
        Duration::from_secs(30),
        3,
    );
    let (ann, data) = owner(db).await;
    let (first, held) = submit_as(db, &q, &ann, &data, 1).await;
    assert!(!held, "under the limit: sent");
    let (second, held) = submit_as(db, &q, &ann, &data, 1).await;
    assert!(held, "at the limit: held");
    let (third, held) = submit_as(db, &q, &ann, &data, 1).await;
    assert!(held);
    assert_eq!(
        q.counts().await.unwrap().visible,
        1,
        "held jobs are not in the queue"
    );
    assert_eq!(active_count(db, &ann.user_id).await.unwrap(), 1);
    assert_eq!(
        jobs::find(db, &second).await.unwrap().unwrap().held,
        Some(1)
    );
    assert_eq!(jobs::queue_position(db, &first).await.unwrap(), Some(1));
    // Held jobs come after released ones, oldest first (jobs created in the same
    // millisecond are ordered by id): that is the order they are released in.
    let (second, third) = match jobs::queue_position(db, &second).await.unwrap() {
        Some(2) => (second, third),
        _ => (third, second),
    };
    assert_eq!(jobs::queue_position(db, &second).await.unwrap(), Some(2));
    assert_eq!(jobs::queue_position(db, &third).await.unwrap(), Some(3));
    assert_eq!(sweep_held(db, &q).await.unwrap(), 0, "still at the limit");

    // Another owner is not held by ann's jobs.
    let (bob, bobs_data) = owner(db).await;
    let (_, held) = submit_as(db, &q, &bob, &bobs_data, 1).await;
    assert!(!held);

    // The first job runs and finishes: the oldest held job is released, only it.
    let (id, d) = deliver(&q).await;
    assert_eq!(id, first);
    let life = Lifecycle::new(db.clone(), Arc::new(q.clone()), 3, 1);
    let Begin::Run(lease, _) = life.begin(d, "w1").await.unwrap() else {
        panic!("the first job runs");
    };
    life.commit(&lease, &meta(&id), &provenance(&lease))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        release_after(db, &q, &first).await.unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(jobs::find(db, &second).await.unwrap().unwrap().held, None);
    assert_eq!(jobs::find(db, &third).await.unwrap().unwrap().held, Some(1));
    let mut sent = Vec::new();
    while let Some(d) = q.receive(Duration::ZERO).await.unwrap() {
        sent.push(JobMessage::parse(&d.body).unwrap().job_id);
    }
    assert!(sent.contains(&second) && !sent.contains(&third), "{sent:?}");

    // Cancelling the released job frees the slot; the sweep releases the last one.
    jobs::request_cancel(db, &ann, &second).await.unwrap();
    assert_eq!(sweep_held(db, &q).await.unwrap(), 1);
    assert_eq!(jobs::find(db, &third).await.unwrap().unwrap().held, None);
    assert_eq!(sweep_held(db, &q).await.unwrap(), 0);
}

async fn concurrent_submits_never_pass_the_limit(db: &Db) {
    let q = DbQueue::new(
        db.clone(),
        &format!("held-{}", uuid::Uuid::new_v4()),
        Duration::from_secs(30),
        3,
    );
    let (ann, data) = owner(db).await;
    let submits = (0..6).map(|_| submit_as(db, &q, &ann, &data, 2));
    let results = futures::future::join_all(submits).await;
    let sent = results.iter().filter(|(_, held)| !held).count();
    assert_eq!(sent, 2, "{results:?}");
    assert_eq!(q.counts().await.unwrap().visible, 2);
    assert_eq!(active_count(db, &ann.user_id).await.unwrap(), 2);
}

#[tokio::test]
async fn held_jobs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = Db::connect(&url).await.unwrap();
    held_jobs_wait_for_their_owner(&db).await;
    concurrent_submits_never_pass_the_limit(&db).await;
}

#[tokio::test]
async fn held_jobs_on_postgres() {
    let admin = std::env::var("QUARRY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let url = crate::db::create_scratch_postgres(&admin).await.unwrap();
    let db = Db::connect(&SecretString::from(url)).await.unwrap();
    held_jobs_wait_for_their_owner(&db).await;
    concurrent_submits_never_pass_the_limit(&db).await;
}

/// The submit's count of the owner's active jobs reads only the index of active jobs
/// (`jobs_owner_active`, migration 0022), and its check for older held jobs only the
/// owner's held ones in that index: an index over the owner's whole history would make
/// every submit walk it (seen as 0.5–0.7 ms per submit after 3,000 jobs). SQLite's
/// plan of the insert itself, on the migrated schema.
#[tokio::test]
async fn a_submit_reads_only_the_owners_active_and_held_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = Db::connect(&url).await.unwrap();
    let c = rusqlite::Connection::open(db.sqlite_path().unwrap()).unwrap();
    for sent_within in [true, false] {
        let sql = format!(
            "EXPLAIN QUERY PLAN {}",
            insert_sql(Dialect::Sqlite, sent_within)
        );
        let mut plan = c.prepare(&sql).unwrap();
        let mut rows = plan.raw_query();
        let mut reads = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let detail: String = row.get(3).unwrap();
            if detail.contains(" jobs ") || detail.ends_with(" jobs") {
                reads.push(detail);
            }
        }
        assert!(
            reads.iter().any(|r| r
                .contains("COVERING INDEX jobs_owner_active (owner_id=? AND held=? AND status=?)")),
            "the active count goes through jobs_owner_active: {reads:?}"
        );
        assert!(
            reads
                .iter()
                .any(|r| r.contains("COVERING INDEX jobs_owner_active (owner_id=? AND held>?)")),
            "the check for older held jobs reads the owner's held ones only: {reads:?}"
        );
        // The rest: the next change number, the last entry of its index.
        let elsewhere: Vec<&String> = reads
            .iter()
            .filter(|r| {
                !r.contains("COVERING INDEX jobs_owner_active (owner_id=?")
                    && !r.ends_with("COVERING INDEX jobs_changed")
            })
            .collect();
        assert!(
            elsewhere.is_empty(),
            "no other read of jobs: {elsewhere:?} in {reads:?}"
        );
    }
}
