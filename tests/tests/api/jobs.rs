//! The job engine end to end: real `quarry up`, real worker processes.

use quarry_tests::fixtures::{CATEGORIES, expected_means, mixed_csv, sha256sum};
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

mod analyses;
mod faults;
mod limits;

/// Fast leases and idling so the tests run in seconds.
const FAST: [(&str, &str); 4] = [
    ("QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS", "3"),
    ("QUARRY_WORKER__HEARTBEAT_SECS", "1"),
    ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "3"),
    ("QUARRY_FLEET__TICK_SECS", "1"),
];

/// Every result a blob, for the tests that follow results through the blob store (by
/// default a small result is kept in its job's row).
pub(crate) const RESULTS_AS_BLOBS: (&str, &str) = ("QUARRY_ANALYSES__INLINE_RESULT_MAX_KB", "0");

pub(crate) fn env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    FAST.iter().copied().chain(extra.iter().copied()).collect()
}

pub(crate) async fn upload_csv(q: &Quarry, name: &str, csv: String) -> String {
    q.upload_csv(&q.admin_token, name, csv).await
}

pub(crate) async fn submit(q: &Quarry, dataset_id: &str, analysis: Value) -> reqwest::Response {
    q.http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .json(&json!({"dataset_id": dataset_id, "analysis": analysis}))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn submit_ok(q: &Quarry, dataset_id: &str, analysis: Value) -> String {
    let r = submit(q, dataset_id, analysis).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    job["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn job(q: &Quarry, id: &str) -> Value {
    q.get_json(&format!("/api/v1/jobs/{id}")).await
}

pub(crate) async fn wait_status(q: &Quarry, id: &str, status: &str, within: Duration) -> Value {
    eventually(within, &format!("job {id} to be {status}"), || async {
        let j = job(q, id).await;
        let finished =
            ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap());
        assert!(
            j["status"] == status || !finished,
            "job {id} finished {} instead of {status}: {j}",
            j["status"]
        );
        (j["status"] == status).then_some(j)
    })
    .await
}

async fn system(q: &Quarry) -> Value {
    q.get_json("/api/v1/system").await
}

/// PIDs of `quarry worker` processes whose parent is this `quarry up`.
fn worker_pids(q: &Quarry) -> Vec<u32> {
    quarry_tests::worker_pids_of(q.pid())
}

fn signal(pid: u32, sig: &str) {
    assert!(quarry_tests::signal(pid, sig), "kill {sig} {pid}");
}

pub(crate) async fn result_page(q: &Quarry, id: &str, query: &str) -> Value {
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result{query}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

/// The mean of `amount` per category, computed by folding over the CSV text.
#[tokio::test]
async fn aggregate_mean_by_category_matches_an_independent_fold() {
    let q = Quarry::start_with(&env(&[])).await;
    let csv = mixed_csv(300_000, 11);
    let expected = expected_means(&csv);
    assert_eq!(expected.len(), CATEGORIES.len());
    let digest = sha256sum(csv.as_bytes());
    let dataset = upload_csv(&q, "sales", csv).await;
    let analysis = json!({"kind": "aggregate", "group_by": ["category"],
           "aggregations": [{"column": "amount", "op": "mean"}, {"column": "amount", "op": "count"}],
           "order_by": ["category"]});
    let id = submit_ok(&q, &dataset, analysis.clone()).await;
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(120)).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["progress"], 1.0);
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());

    // Where the result came from: the release and worker of its (only) attempt, the
    // input by content, how it was read, the analysis as run and the engine.
    let provenance = &done["provenance"];
    let attempts: Value = q.get_json(&format!("/api/v1/jobs/{id}/attempts")).await;
    let attempt = &attempts[0];
    assert_eq!(attempt["outcome"], "succeeded", "{attempts}");
    assert_eq!(provenance["release"], attempt["release"], "{provenance}");
    assert_eq!(provenance["worker"], attempt["worker"], "{provenance}");
    assert_eq!(provenance["attempt"], 1);
    assert_eq!(
        provenance["image"],
        Value::Null,
        "no image on the embedded default"
    );
    assert_eq!(provenance["dataset"]["id"], dataset.as_str());
    assert_eq!(provenance["dataset"]["sha256"], digest, "{provenance}");
    assert_eq!(provenance["dataset"]["read"], "typed_copy");
    assert_eq!(provenance["dataset"]["format"], "csv");
    assert_eq!(provenance["dataset"]["rows"], 300_000);
    assert_eq!(
        provenance["dataset"]["ingest"]["delimiter"], ",",
        "{provenance}"
    );
    assert_eq!(
        provenance["analysis"], done["analysis"],
        "the analysis as it ran"
    );
    assert_eq!(provenance["analysis"]["group_by"], analysis["group_by"]);
    assert_eq!(provenance["computed_at"], done["finished_at"]);
    let engine = provenance["engine"].as_str().unwrap();
    assert!(
        engine.starts_with("quarry-engine ") && engine.contains("(polars 0."),
        "{engine}"
    );

    let page = result_page(&q, &id, "?limit=100").await;
    let names: Vec<&str> = page["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["category", "amount_mean", "amount_count"]);
    assert_eq!(page["total_rows"], expected.len());
    let got: BTreeMap<String, f64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, want) in &expected {
        let have = got[k];
        assert!(
            (have - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{k}: {have} vs {want}"
        );
    }

    let csv_download = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result?format=csv")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv_download.headers()["content-type"], "text/csv");
    let text = csv_download.text().await.unwrap();
    assert!(
        text.starts_with("category,amount_mean,amount_count\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), expected.len() + 1);
    let parquet = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result?format=parquet")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    let bytes = parquet.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
}

#[tokio::test]
async fn killed_worker_job_is_redelivered_and_committed_once() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_FLEET__MAX_WORKERS", "1"),
        RESULTS_AS_BLOBS,
    ]))
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 4})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let pids = worker_pids(&q);
    assert_eq!(pids.len(), 1, "{pids:?}");
    signal(pids[0], "-KILL");

    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(done["attempts"], 2, "{done}");
    let page = result_page(&q, &id, "").await;
    assert_eq!(page["total_rows"], 1);
    let results: Vec<_> = q
        .blob_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(results.len(), 1, "exactly one result blob: {results:?}");
}

#[tokio::test]
async fn a_job_that_always_fails_is_failed_after_exactly_max_attempts() {
    let q = Quarry::start_with(&env(&[("QUARRY_QUEUE__MAX_ATTEMPTS", "3")])).await;
    let dataset = upload_csv(&q, "d", "word\nhello\nworld\n".into()).await;
    // Valid SQL that fails at run time on this data: a strict cast of text to a number.
    let id = submit_ok(
        &q,
        &dataset,
        json!({"kind": "sql", "query": "SELECT CAST(word AS INTEGER) AS n FROM data"}),
    )
    .await;
    let failed = wait_status(&q, &id, "failed", Duration::from_secs(60)).await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["dead_letter"], true);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.to_lowercase().contains("cast") || error.to_lowercase().contains("conversion"),
        "{error}"
    );
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let listed: Vec<Value> = q.get_json("/api/v1/jobs?status=failed").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(system(&q).await["queue"]["dead"], 1);
}

#[tokio::test]
async fn twenty_spin_jobs_never_exceed_max_workers_and_the_fleet_drains() {
    let q = Quarry::start_with(&env(&[("QUARRY_FLEET__MAX_WORKERS", "4")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 0.5})).await);
    }
    let mut most = 0;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pids = worker_pids(&q);
        most = most.max(pids.len());
        seen.extend(pids);
        let reported = system(&q).await;
        let fleet = reported["workers"]["running"].as_u64().unwrap()
            + reported["workers"]["starting"].as_u64().unwrap();
        assert!(fleet <= 4, "fleet {fleet}: {reported}");
        let mut done = 0;
        for id in &ids {
            if job(&q, id).await["status"] == "succeeded" {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{done}/20 done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most <= 4, "at most 4 workers ever ran, saw {most}");
    assert!(seen.len() >= 2, "the orchestrator scaled out: {seen:?}");
    for id in &ids {
        assert_eq!(
            job(&q, id).await["attempts"],
            1,
            "no job was interrupted by scaling"
        );
    }
    // idle_timeout (3 s) + a tick (1 s), with slack for a loaded machine.
    let drained = Instant::now();
    eventually(Duration::from_secs(10), "every worker to exit", || async {
        worker_pids(&q).is_empty().then_some(())
    })
    .await;
    assert!(drained.elapsed() <= Duration::from_secs(10));
    let after = system(&q).await;
    assert_eq!(after["workers"]["running"], 0, "{after}");
    assert_eq!(after["queue"]["visible"], 0);
    assert!(after["last_decision"]["reason"].is_string());
}

#[tokio::test]
async fn sigterm_hands_a_busy_workers_job_back_to_another_worker() {
    let q = Quarry::start_with(&env(&[("QUARRY_WORKER__STOP_TIMEOUT_SECS", "1")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 5})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let first = worker_pids(&q);
    assert_eq!(first.len(), 1);
    signal(first[0], "-TERM");
    let done = wait_status(&q, &id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(done["attempts"], 1, "a hand-back is not an attempt: {done}");
    assert!(
        !worker_pids(&q).contains(&first[0]),
        "the signalled worker exited"
    );
}

#[tokio::test]
async fn a_worker_runs_jobs_per_worker_jobs_at_once_and_hands_them_all_back_on_sigterm() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_FLEET__MAX_WORKERS", "1"),
        ("QUARRY_FLEET__JOBS_PER_WORKER", "3"),
        ("QUARRY_WORKER__STOP_TIMEOUT_SECS", "1"),
    ]))
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 4})).await);
    }
    // All three run at once, in the fleet's one worker.
    let running = eventually(
        Duration::from_secs(60),
        "three jobs running at once",
        || async {
            let mut running = Vec::new();
            for id in &ids {
                let j = job(&q, id).await;
                if j["status"] == "running" {
                    running.push(j);
                }
            }
            (running.len() == 3).then_some(running)
        },
    )
    .await;
    let pids = worker_pids(&q);
    assert_eq!(pids.len(), 1, "one worker holds all three: {pids:?}");
    let attempts: Value = q
        .get_json(&format!("/api/v1/jobs/{}/attempts", ids[0]))
        .await;
    let holder = attempts[0]["worker"].clone();
    assert!(holder.is_string(), "{attempts}");
    for j in &running {
        let id = j["id"].as_str().unwrap();
        let attempts: Value = q.get_json(&format!("/api/v1/jobs/{id}/attempts")).await;
        assert_eq!(attempts[0]["worker"], holder, "{attempts}");
    }
    let fleet = system(&q).await;
    let listed = &fleet["releases"][0]["workers"][0]["job_ids"];
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        listed, expected,
        "the system page lists the worker's three jobs: {fleet}"
    );

    // A SIGTERM past stop_timeout hands every slot's job back without using an
    // attempt; the next worker runs them to the end.
    signal(pids[0], "-TERM");
    for id in &ids {
        let done = wait_status(&q, id, "succeeded", Duration::from_secs(90)).await;
        assert_eq!(done["attempts"], 1, "a hand-back is not an attempt: {done}");
    }
    assert!(
        !worker_pids(&q).contains(&pids[0]),
        "the signalled worker exited"
    );
}

/// The `data:` payloads of a server-sent event stream, read until the server ends it.
pub(crate) async fn sse_events(q: &Quarry, path: &str) -> Vec<Value> {
    let r = q
        .http
        .get(q.url(path))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("the stream ends once the job has finished")
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_queued_job_says_why_it_waits_and_its_events_follow_it_to_the_end() {
    let q = Quarry::start_with(&env(&[("QUARRY_FLEET__MAX_WORKERS", "1")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    // One finished job gives the estimate a median duration (about a second).
    let first = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 1})).await;
    wait_status(&q, &first, "succeeded", Duration::from_secs(60)).await;

    // With the only worker busy, the next job waits first in line.
    let busy = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 3})).await;
    wait_status(&q, &busy, "running", Duration::from_secs(30)).await;
    let waiting = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 1})).await;
    let events = sse_events(&q, &format!("/api/v1/jobs/{waiting}/events")).await;

    let opening = &events[0];
    assert_eq!(opening["job"]["status"], "queued", "{opening}");
    assert!(
        opening["job"]["provenance"].is_null(),
        "no result, no provenance: {opening}"
    );
    let w = &opening["waiting"];
    assert_eq!(w["position"], 1, "first in line: {w}");
    assert_eq!(w["max_workers"], 1);
    assert!(w["workers_running"].as_u64().unwrap() + w["workers_starting"].as_u64().unwrap() <= 1);
    let estimate = w["estimated_start_secs"]
        .as_u64()
        .expect("an estimate once a job has finished");
    assert!(
        (1..=5).contains(&estimate),
        "one median duration: {estimate}"
    );

    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["job"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"succeeded"), "{statuses:?}");
    assert!(
        statuses.contains(&"running"),
        "the start was sent too: {statuses:?}"
    );
    assert!(
        events
            .iter()
            .skip(1)
            .all(|e| e["waiting"].is_null() || e["job"]["status"] == "queued"),
        "only a queued job carries `waiting`"
    );
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_within_seconds() {
    let q = Quarry::start_with(&env(&[])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 60})).await;
    wait_status(&q, &id, "running", Duration::from_secs(30)).await;
    let asked = Instant::now();
    let r = q
        .http
        .post(q.url(&format!("/api/v1/jobs/{id}/cancel")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_status(&q, &id, "cancelled", Duration::from_secs(10)).await;
    assert!(asked.elapsed() < Duration::from_secs(10));
    let again = q
        .http
        .post(q.url(&format!("/api/v1/jobs/{id}/cancel")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn bad_job_requests_get_a_helpful_4xx_and_nothing_is_enqueued() {
    let q = Quarry::start_with(&env(&[])).await;
    let dataset = upload_csv(&q, "d", "category,amount\na,1.5\nb,2\n".into()).await;
    let cases = [
        (
            json!({"dataset_id": "nope", "analysis": {"kind": "profile"}}),
            404,
            "not_found",
            "nope",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "aggregate", "group_by": ["colour"], "aggregations": [{"column": "amount", "op": "mean"}]}}),
            400,
            "unknown_column",
            "colour",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "aggregate", "aggregations": [{"column": "amount", "op": "average"}]}}),
            400,
            "bad_analysis",
            "average",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "aggregate", "aggregations": [{"column": "category", "op": "mean"}]}}),
            400,
            "bad_op",
            "numeric",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "sql", "query": "SELECT * FROM read_csv('/etc/passwd')"}}),
            400,
            "bad_sql",
            "table functions",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "sql", "query": "SELEC * FROM data"}}),
            400,
            "bad_sql",
            "syntax",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "sql", "query": "SELECT missing FROM data"}}),
            400,
            "bad_sql",
            "missing",
        ),
        // Checked on the request's own thread (profile, histogram and spin are).
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "histogram", "column": "category", "bins": 4}}),
            400,
            "bad_column",
            "numeric",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "histogram", "column": "amount", "bins": 0}}),
            400,
            "bad_bins",
            "between 1 and",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "histogram", "column": "colour", "bins": 4}}),
            400,
            "unknown_column",
            "colour",
        ),
        (
            json!({"dataset_id": dataset, "analysis": {"kind": "pivot"}}),
            400,
            "bad_analysis",
            "pivot",
        ),
        (json!({"dataset_id": dataset}), 400, "bad_json", "analysis"),
    ];
    for (body, status, code, mention) in cases {
        let r = q
            .http
            .post(q.url("/api/v1/jobs"))
            .bearer_auth(&q.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body} -> {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(mention),
            "{err} should mention {mention}"
        );
    }
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let jobs: Vec<Value> = q.get_json("/api/v1/jobs").await;
    assert!(jobs.is_empty(), "{jobs:?}");
    let s = system(&q).await;
    assert_eq!(
        (
            s["queue"]["visible"].as_u64(),
            s["queue"]["in_flight"].as_u64()
        ),
        (Some(0), Some(0))
    );
}
