//! The job lifecycle under real faults, against the real binary: a worker stopped
//! past its lease, SIGTERM hand-backs, a database locked for 15 s, and a server killed
//! with its workers.

use super::{RESULTS_AS_BLOBS, env, job, signal, submit_ok, upload_csv, wait_status, worker_pids};
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// The result blobs of a job (committed or not).
fn result_blobs(q: &Quarry, id: &str) -> Vec<String> {
    q.blob_files()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains("results") && p.contains(id))
        .collect()
}

fn alive(pid: u32) -> bool {
    // A stopped or running process; a zombie has exited.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// A worker stopped (SIGSTOP) past its lease loses the job to another worker; once it
/// runs again (SIGCONT) it can neither commit, requeue nor fail that job.
#[tokio::test]
async fn a_worker_stopped_past_its_lease_cannot_touch_the_job_another_now_runs() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_FLEET__MAX_WORKERS", "2"),
        RESULTS_AS_BLOBS,
    ]))
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 8})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let stopped = worker_pids(&q);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let first_worker = job(&q, &id).await;
    signal(stopped[0], "-STOP");

    // The lease runs out; another worker takes the job as its second attempt.
    let taken = eventually(
        Duration::from_secs(60),
        "another worker to take the job",
        || async {
            let j = job(&q, &id).await;
            (j["status"] == "running" && j["attempts"] == 2).then_some(j)
        },
    )
    .await;
    let others: Vec<u32> = worker_pids(&q)
        .into_iter()
        .filter(|p| *p != stopped[0])
        .collect();
    assert_eq!(others.len(), 1, "one other worker runs it: {others:?}");
    signal(stopped[0], "-CONT");

    // From now on the job only moves forward under the second attempt.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = job(&q, &id).await;
        seen.push((
            j["status"].as_str().unwrap_or("").to_owned(),
            j["attempts"].clone(),
        ));
        if j["status"] != "running" {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not finish: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(
        seen.iter()
            .all(|(s, a)| (s == "running" || s == "succeeded") && *a == json!(2)),
        "the stopped worker requeued or failed it: {seen:?}"
    );
    let blobs = result_blobs(&q, &id);
    assert_eq!(
        blobs.len(),
        1,
        "exactly one result, from the second attempt: {blobs:?}"
    );
    assert!(
        blobs[0].contains("attempt-2-"),
        "{blobs:?} (taken: {taken}, first: {first_worker})"
    );
    let page = super::result_page(&q, &id, "").await;
    assert_eq!(page["total_rows"], 1);
}

/// SIGTERM (a Spot interruption) hands a job back without using an attempt: with
/// `max_attempts = 1`, three interruptions still end in success.
#[tokio::test]
async fn three_sigterm_hand_backs_do_not_use_up_a_single_attempt() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_QUEUE__MAX_ATTEMPTS", "1"),
        ("QUARRY_WORKER__STOP_TIMEOUT_SECS", "1"),
    ]))
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 4})).await;
    let mut signalled = HashSet::new();
    for round in 1..=3 {
        let pid = eventually(
            Duration::from_secs(60),
            "a fresh worker running the job",
            || async {
                let j = job(&q, &id).await;
                assert_ne!(j["status"], "failed", "round {round}: {j}");
                if j["status"] != "running" {
                    return None;
                }
                worker_pids(&q).into_iter().find(|p| !signalled.contains(p))
            },
        )
        .await;
        signal(pid, "-TERM");
        signalled.insert(pid);
        eventually(
            Duration::from_secs(30),
            "the signalled worker to exit",
            || async { (!alive(pid)).then_some(()) },
        )
        .await;
        let j = job(&q, &id).await;
        assert!(j["attempts"].as_u64().unwrap() <= 1, "round {round}: {j}");
    }
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["dead_letter"], false);

    // Each delivery is on record: three hand-backs and the success, every one attempt 1,
    // each on its own worker, all of the same build.
    let attempts: Value = q.get_json(&format!("/api/v1/jobs/{id}/attempts")).await;
    let rows = attempts.as_array().expect("a list");
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["handed_back", "handed_back", "handed_back", "succeeded"],
        "{attempts}"
    );
    assert!(rows.iter().all(|a| a["attempt"] == 1), "{attempts}");
    let workers: HashSet<&str> = rows.iter().map(|a| a["worker"].as_str().unwrap()).collect();
    assert_eq!(workers.len(), 4, "a fresh worker each time: {attempts}");
    let release = rows[0]["release"].as_str().unwrap();
    assert!(
        release.starts_with("build-") && release.len() == 18,
        "the embedded default records the build id: {attempts}"
    );
    assert!(rows.iter().all(|a| a["release"] == release), "{attempts}");
}

/// Holds SQLite's write lock for `hold` in a connection of its own.
async fn lock_database(q: &Quarry, hold: Duration) {
    use sqlx::Connection as _;
    let path = q.data_dir.path().join("quarry.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    tokio::time::sleep(hold).await;
    sqlx::query("ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("release it");
}

/// A transient database outage (SQLite's write lock held for 15 s, as a long
/// migration or an RDS failover would) is waited out: the job succeeds on its first
/// attempt.
#[tokio::test]
async fn a_database_locked_for_15_seconds_does_not_cost_the_running_job_an_attempt() {
    let q = Quarry::start_with(&[
        ("QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS", "40"),
        ("QUARRY_WORKER__HEARTBEAT_SECS", "2"),
        ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "5"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
        RESULTS_AS_BLOBS,
    ])
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 20})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    lock_database(&q, Duration::from_secs(15)).await;
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(90)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(result_blobs(&q, &id).len(), 1);
}

/// The measured failure: `quarry up` killed with `kill -9` together with its worker.
/// The restarted server does not count the dead worker (its row stops renewing),
/// launches another, and the job finishes; nothing stays `running`.
#[tokio::test]
async fn a_server_killed_with_its_worker_restarts_and_the_job_still_finishes() {
    let q = Quarry::start_with(&env(&[("QUARRY_FLEET__MAX_WORKERS", "1")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 3})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let pids = worker_pids(&q);
    assert_eq!(pids.len(), 1, "{pids:?}");
    signal(pids[0], "-KILL");
    let q = q.crash_and_restart().await;
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(90)).await;
    assert_eq!(done["attempts"], 2, "{done}");
    let system: Value = q.get_json("/api/v1/system").await;
    assert!(
        system["workers"]["running"].as_u64().unwrap() <= 1,
        "{system}"
    );
}

/// A server killed alone: its worker notices (its stdin pipe closes), hands the job
/// back and exits, and the restarted server's worker finishes it without using an
/// attempt. A graceful stop hands back too, and is not held up by an open event
/// stream.
#[tokio::test]
async fn workers_follow_their_server_down_and_a_stop_is_bounded() {
    let q = Quarry::start_with(&env(&[("QUARRY_WORKER__STOP_TIMEOUT_SECS", "1")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 6})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let orphan = worker_pids(&q);
    assert_eq!(orphan.len(), 1);
    let q = q.crash_and_restart().await;
    eventually(
        Duration::from_secs(15),
        "the orphaned worker to exit",
        || async { (!alive(orphan[0])).then_some(()) },
    )
    .await;
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(90)).await;
    assert_eq!(
        done["attempts"], 1,
        "the hand-back was not an attempt: {done}"
    );

    // A graceful stop while a job runs and a browser follows its events.
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 30})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let children = worker_pids(&q);
    let stream = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/events")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let started = std::time::Instant::now();
    let status = q.stop().await.expect("the server stops");
    assert!(status.success(), "{status:?}");
    // stop_timeout (1 s) for requests and again for the workers, with slack.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(stream);
    for pid in children {
        eventually(
            Duration::from_secs(5),
            "the server's workers to exit",
            || async { (!alive(pid)).then_some(()) },
        )
        .await;
    }
}
