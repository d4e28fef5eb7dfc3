//! Deploys drain: workers of a superseded release finish what they hold, take no new
//! job and exit, on the emulator's SQS and ECS with local workers for the tasks.

use super::Cloud;
use quarry_tests::eventually;
use quarry_tests::fixtures::mixed_csv;
use serde_json::{Value, json};
use std::time::Duration;

/// An image reference by digest, as the stacks deploy it.
fn image(digit: char) -> String {
    format!(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/quarry@sha256:{}",
        digit.to_string().repeat(64)
    )
}

#[tokio::test]
async fn a_deploy_drains_the_old_workers_and_kills_no_job() {
    let cloud = Cloud::start().await;
    let q = &cloud.quarry;
    let dataset = q.upload_csv(&cloud.token, "tiny", mixed_csv(100, 3)).await;
    let (v1, v2) = (image('1'), image('2'));
    // Workers that would idle for minutes: one that exits sooner was superseded.
    let spawn = |args: &[&str], release: &str| {
        q.spawn_with(
            args,
            &[
                // What the task definition of that release sets.
                ("QUARRY_WORKER__RELEASE", release),
                ("QUARRY_WORKER__IMAGE", release),
                ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "600"),
            ],
        )
    };
    let system = || cloud.get("/api/v1/system");
    let workers_of = |system: &Value, release: &str| -> Vec<Value> {
        system["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["release"] == release)
            .map_or_else(Vec::new, |g| g["workers"].as_array().unwrap().clone())
    };

    // Release v1 runs: its orchestrator declares it current, two of its workers take
    // long jobs, and a third waits idle on the queue.
    let orchestrator_v1 = spawn(&["orchestrator"], &v1);
    eventually(Duration::from_secs(30), "v1 to be current", || async {
        (system().await["current_release"] == v1.as_str()).then_some(())
    })
    .await;
    let mut old_workers = vec![spawn(&["worker"], &v1), spawn(&["worker"], &v1)];
    let mut old_jobs = Vec::new();
    for _ in 0..2 {
        old_jobs.push(
            cloud
                .submit(&dataset, json!({"kind": "spin", "seconds": 8}))
                .await,
        );
    }
    for id in &old_jobs {
        cloud.wait_job(id, "running", Duration::from_secs(60)).await;
    }
    old_workers.push(spawn(&["worker"], &v1));
    eventually(
        Duration::from_secs(30),
        "the idle v1 worker to register",
        || async { (workers_of(&system().await, &v1).len() == 3).then_some(()) },
    )
    .await;

    // Deploy v2: the stack update replaces the orchestrator with one of the new image.
    drop(orchestrator_v1);
    let _orchestrator_v2 = spawn(&["orchestrator"], &v2);
    eventually(Duration::from_secs(30), "v2 to be current", || async {
        (system().await["current_release"] == v2.as_str()).then_some(())
    })
    .await;

    // The drain is on the system page: v1's workers, no longer current, with their jobs.
    let now = system().await;
    let old = now["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["release"] == v1.as_str())
        .unwrap_or_else(|| panic!("v1 still has workers: {now}"));
    assert_eq!(old["current"], false, "{now}");
    let mut held: Vec<&str> = old["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["job_id"].as_str())
        .collect();
    held.sort_unstable();
    let mut expected: Vec<&str> = old_jobs.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(held, expected, "each old job on its v1 worker: {now}");

    // Jobs submitted after the deploy wait for v2: the v1 workers finish what they
    // hold, take none of these, and exit long before their idle timeout.
    let mut new_jobs = Vec::new();
    for _ in 0..3 {
        new_jobs.push(
            cloud
                .submit(&dataset, json!({"kind": "spin", "seconds": 1}))
                .await,
        );
    }
    for id in &old_jobs {
        let done = cloud
            .wait_job(id, "succeeded", Duration::from_secs(90))
            .await;
        assert_eq!(done["attempts"], 1, "{done}");
        let attempts = cloud.get(&format!("/api/v1/jobs/{id}/attempts")).await;
        let rows = attempts.as_array().unwrap();
        assert_eq!(
            rows.len(),
            1,
            "finished on its first attempt, never handed back: {attempts}"
        );
        assert_eq!(rows[0]["release"], v1.as_str(), "{attempts}");
        assert_eq!(rows[0]["outcome"], "succeeded", "{attempts}");
        assert_eq!(done["provenance"]["release"], v1.as_str(), "{done}");
    }
    for (n, worker) in old_workers.iter_mut().enumerate() {
        let status = tokio::time::timeout(Duration::from_secs(60), worker.wait())
            .await
            .unwrap_or_else(|_| panic!("v1 worker {n} still runs a minute after the deploy"))
            .unwrap();
        assert!(status.success(), "v1 worker {n}: {status}");
    }
    for id in &new_jobs {
        let job = cloud.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job["status"], "queued", "no v1 worker took it: {job}");
        assert_eq!(job["attempts"], 0, "{job}");
    }
    assert!(
        workers_of(&system().await, &v1).is_empty(),
        "the drain is over"
    );

    // The tasks v2's orchestrator launched (started here) run them.
    let _new_workers = [spawn(&["worker"], &v2), spawn(&["worker"], &v2)];
    for id in &new_jobs {
        let done = cloud
            .wait_job(id, "succeeded", Duration::from_secs(90))
            .await;
        let attempts = cloud.get(&format!("/api/v1/jobs/{id}/attempts")).await;
        assert!(
            attempts
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["release"] == v2.as_str()),
            "{attempts}"
        );
        assert_eq!(done["provenance"]["release"], v2.as_str(), "{done}");
        assert_eq!(done["provenance"]["image"], v2.as_str(), "{done}");
    }
}
