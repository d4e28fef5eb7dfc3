//! Reference analyses gate promotions, against moto holding both stacks. A result
//! computed on production's release is pinned; a candidate whose engine perturbs
//! every float (`QUARRY_TEST_FAULT=perturb_floats`, a debug build's switch) is blocked
//! with the first differing rows, which only an admin can override with a reason; an
//! unchanged candidate passes; a candidate no worker here runs fails its check at
//! once, saying so. The expected rows are checked against means computed here,
//! without polars. With `[control.peers.staging]`, a check whose candidate no worker
//! here runs runs in staging's own Quarry, through its API, where the candidate runs.

use super::control::{
    V1, V2, WAIT, call, deploy_staging, environments, finished, promotion_done, request_promotion,
    stack_image, start,
};
use quarry_tests::aws::Moto;
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const V4: &str = "registry.example/quarry@sha256:4444444444444444444444444444444444444444444444444444444444444444";
const V3: &str = "registry.example/quarry@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// Amounts by category, and the CSV holding them.
pub(crate) fn dataset() -> (BTreeMap<String, f64>, String) {
    let mut csv = String::from("category,amount\n");
    let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for i in 0..60_u32 {
        let category = ["north", "south", "east", "west"][(i % 4) as usize];
        let amount = f64::from(i * 37 % 101) + f64::from(i % 7) / 8.0;
        csv.push_str(&format!("{category},{amount}\n"));
        let e = sums.entry(category.to_owned()).or_default();
        e.0 += amount;
        e.1 += 1;
    }
    let means = sums
        .into_iter()
        .map(|(k, (sum, n))| (k, sum / f64::from(n)))
        .collect();
    (means, csv)
}

/// Submits the mean amount by region of `data` and waits for it; returns the job's id
/// and the job as it finished.
pub(crate) async fn mean_by_region(q: &Quarry, token: &str, data: &str) -> (String, Value) {
    let analysis = json!({"kind": "aggregate", "group_by": ["category"],
        "aggregations": [{"column": "amount", "op": "mean"}]});
    let (status, job) = call(
        q,
        token,
        "POST",
        "/api/v1/jobs",
        Some(json!({"dataset_id": data, "analysis": analysis})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job = finished(q, token, &id).await;
    (id, job)
}

/// Checks differing rows in canonical order (by category): the expected mean as
/// computed here, the actual one scaled by 1 + 1e-6.
pub(crate) fn perturbed_rows(rows: &[Value], means: &BTreeMap<String, f64>) {
    for (d, (category, mean)) in rows.iter().zip(means) {
        assert_eq!(d["expected"][0], category.as_str(), "{d}");
        assert_eq!(d["actual"][0], category.as_str(), "{d}");
        let (expected, actual) = (
            d["expected"][1].as_f64().unwrap(),
            d["actual"][1].as_f64().unwrap(),
        );
        assert!(close(expected, *mean), "{category}: {expected} vs {mean}");
        assert!(close(actual, mean * (1.0 + 1e-6)), "{category}: {actual}");
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Waits for the promotion's gate to decide; returns the promotion.
async fn decided(q: &Quarry, token: &str, id: &str) -> Value {
    eventually(WAIT, "the reference gate to decide", || async {
        let (_, p) = call(q, token, "GET", &format!("/api/v1/promotions/{id}"), None).await;
        matches!(p["gate"]["status"].as_str(), Some("passed" | "blocked")).then_some(p)
    })
    .await
}

async fn approve(q: &Quarry, token: &str, id: &str) -> (u16, Value) {
    call(
        q,
        token,
        "POST",
        &format!("/api/v1/promotions/{id}/approve"),
        Some(json!({"comment": "gate read"})),
    )
    .await
}

/// Deploys v1 to staging and promotes it, before anything is pinned: its gate has
/// nothing to check.
async fn production_runs_v1(q: &Quarry, (requester, approver): (&str, &str)) {
    deploy_staging(q, requester, V1).await;
    let first = request_promotion(q, requester).await;
    let (status, p) = approve(q, approver, &first).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["gate"]["status"], "none", "{p}");
    assert_eq!(
        promotion_done(q, approver, &first).await["status"],
        "succeeded"
    );
}

/// Requests a promotion of staging's `image` whose gate must pass, approves it and
/// waits until production runs it; returns its one check.
async fn passes_and_is_promoted(
    q: &Quarry,
    moto: &Moto,
    (requester, approver): (&str, &str),
    image: &str,
) -> Value {
    let id = request_promotion(q, requester).await;
    let p = decided(q, requester, &id).await;
    assert_eq!(p["gate"]["status"], "passed", "{p}");
    let check = p["gate"]["checks"][0].clone();
    assert_eq!(check["status"], "passed", "{check}");
    assert_eq!(check["comparison"]["identical"], true);
    assert_eq!(check["comparison"]["differing_rows"], 0);
    let (status, p) = approve(q, approver, &id).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        promotion_done(q, approver, &id).await["status"],
        "succeeded"
    );
    assert_eq!(stack_image(moto, "production").await, image);
    check
}

/// Requests a promotion whose gate must block on a check that failed; returns the
/// promotion's id and the check.
async fn blocked_by_a_failed_check(q: &Quarry, requester: &str) -> (String, Value) {
    let id = request_promotion(q, requester).await;
    let p = decided(q, requester, &id).await;
    assert_eq!(p["gate"]["status"], "blocked", "{p}");
    let check = p["gate"]["checks"][0].clone();
    assert_eq!(check["status"], "failed", "{check}");
    (id, check)
}

#[tokio::test]
async fn a_candidate_that_changes_a_result_is_blocked_and_an_unchanged_one_passes() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    environments(&moto, dir.path()).await;
    let fast = [
        ("QUARRY_CONTROL__GATE_POLL_MS", "200"),
        ("QUARRY_CONTROL__GATE_NO_WORKER_SECS", "1"),
        ("QUARRY_WORKER__RELEASE", V1),
    ];
    let q = start(&moto, dir.path(), &fast).await;
    let olga = q.add_user("olga", "operator").await;
    let otto = q.add_user("otto", "operator").await;
    let ana = q.add_user("ana", "analyst").await;
    let admin = q.admin_token.clone();
    let (means, csv) = dataset();
    let data = q.upload_csv(&olga, "regional", csv).await;

    // Production runs v1, promoted before anything was pinned: its gate had nothing
    // to check.
    production_runs_v1(&q, (&olga, &otto)).await;

    // Olga pins the mean amount by region, computed on production's release.
    let (job_id, job) = mean_by_region(&q, &olga, &data).await;
    assert_eq!(job["provenance"]["release"], V1, "{job}");
    let pin = json!({"job_id": job_id, "name": "mean amount by region"});
    let (status, refused) = call(&q, &ana, "POST", "/api/v1/references", Some(pin.clone())).await;
    assert_eq!(status, 403, "analysts do not pin: {refused}");
    let (status, unknown) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/references",
        Some(json!({"job_id": "no-such-job"})),
    )
    .await;
    assert_eq!(status, 404, "{unknown}");
    let (status, reference) = call(&q, &olga, "POST", "/api/v1/references", Some(pin)).await;
    assert_eq!(status, 201, "{reference}");
    assert_eq!(reference["pinned_release"], V1);
    assert_eq!(reference["expected_rows"], means.len());
    assert_eq!(
        reference["dataset_sha256"],
        job["provenance"]["dataset"]["sha256"]
    );
    let (_, listed) = call(&q, &otto, "GET", "/api/v1/references", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // v2's engine perturbs every float: its promotion is blocked.
    deploy_staging(&q, &olga, V2).await;
    let q = q
        .stop_and_restart_with(&[
            ("QUARRY_WORKER__RELEASE", V2),
            ("QUARRY_TEST_FAULT", "perturb_floats"),
        ])
        .await;
    let blocked = request_promotion(&q, &olga).await;
    let p = decided(&q, &olga, &blocked).await;
    assert_eq!(p["gate"]["status"], "blocked", "{p}");
    assert_eq!(p["gate"]["release"], V2);
    let check = &p["gate"]["checks"][0];
    assert_eq!(check["status"], "differed", "{check}");
    assert_eq!(check["name"], "mean amount by region");
    let cmp = &check["comparison"];
    assert_eq!(cmp["identical"], false);
    assert_eq!(cmp["columns"], json!(["category", "amount_mean"]));
    assert_eq!(cmp["differing_rows"], means.len(), "{cmp}");
    assert_ne!(check["actual_hash"], check["expected_hash"]);
    // The first differing rows, side by side, in canonical order (by category).
    let rows = cmp["first_differences"].as_array().unwrap();
    assert_eq!(rows.len(), means.len().min(5));
    perturbed_rows(rows, &means);
    // The check ran as a job on a v2 worker.
    let check_job = check["job_id"].as_str().unwrap();
    let (_, attempts) = call(
        &q,
        &olga,
        "GET",
        &format!("/api/v1/jobs/{check_job}/attempts"),
        None,
    )
    .await;
    assert_eq!(attempts[0]["release"], V2, "{attempts}");

    // Nobody approves it; an operator cannot override, an admin can with a reason.
    let (status, refused) = approve(&q, &otto, &blocked).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("blocked by its reference gate"),
        "{refused}"
    );
    let path = format!("/api/v1/promotions/{blocked}/override-gate");
    let reason = json!({"reason": "the change in rounding is intended"});
    let (status, refused) = call(&q, &otto, "POST", &path, Some(reason.clone())).await;
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = call(&q, &admin, "POST", &path, Some(json!({"reason": " "}))).await;
    assert_eq!(status, 400, "{refused}");
    // Reasons and comments are bounded (2,000 characters), before anything is recorded.
    let long = "x".repeat(2001);
    let (status, refused) = call(&q, &admin, "POST", &path, Some(json!({"reason": long}))).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("at most 2000"), "{refused}");
    let (status, refused) = call(
        &q,
        &otto,
        "POST",
        &format!("/api/v1/promotions/{blocked}/reject"),
        Some(json!({"comment": long})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (status, p) = call(&q, &admin, "POST", &path, Some(reason.clone())).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["gate"]["status"], "overridden");
    assert_eq!(p["gate"]["override"]["by"], "admin");
    assert_eq!(
        p["gate"]["override"]["reason"],
        "the change in rounding is intended"
    );
    assert!(
        p["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["decision"] == "override_gate" && a["by"] == "admin"),
        "{p}"
    );
    let (status, again) = call(&q, &admin, "POST", &path, Some(reason)).await;
    assert_eq!(status, 409, "only a blocked gate is overridden: {again}");
    // Overridden, it is rejected all the same (production stays on v1).
    let (status, p) = call(
        &q,
        &otto,
        "POST",
        &format!("/api/v1/promotions/{blocked}/reject"),
        Some(json!({"comment": "not this one"})),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(stack_image(&moto, "production").await, V1);

    // v3 computes what v1 did: its gate passes, and it is promoted.
    deploy_staging(&q, &olga, V3).await;
    let q = q
        .stop_and_restart_with(&[("QUARRY_WORKER__RELEASE", V3), ("QUARRY_TEST_FAULT", "")])
        .await;
    let check = passes_and_is_promoted(&q, &moto, (&olga, &otto), V3).await;
    assert!(check.get("environment").is_none(), "it ran here: {check}");

    // v4 on staging while this server's workers still run v3: nothing here will run
    // its check, and the gate says so within seconds instead of timing out.
    deploy_staging(&q, &olga, V4).await;
    let (orphan, check) = blocked_by_a_failed_check(&q, &olga).await;
    let error = check["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "no worker of the candidate release {V4} runs here"
        )) && error.contains(&format!("this fleet runs {V3}"))
            && error.contains("[control.peers.staging]"),
        "{error}"
    );
    let check_job = check["job_id"].as_str().unwrap();
    let (_, job) = call(&q, &olga, "GET", &format!("/api/v1/jobs/{check_job}"), None).await;
    assert_eq!(job["status"], "cancelled", "its job goes too: {job}");
    let (status, p) = call(
        &q,
        &olga,
        "POST",
        &format!("/api/v1/promotions/{orphan}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{p}");
    // A promotion cancelled while its gate is open: its gate is abandoned, its check
    // ends and the check's job does not linger.
    let dropped = request_promotion(&q, &olga).await;
    let (status, p) = call(
        &q,
        &olga,
        "POST",
        &format!("/api/v1/promotions/{dropped}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let p = eventually(WAIT, "the gate to be abandoned", || async {
        let (_, p) = call(
            &q,
            &olga,
            "GET",
            &format!("/api/v1/promotions/{dropped}"),
            None,
        )
        .await;
        (p["gate"]["checks"][0]["status"] == "failed").then_some(p)
    })
    .await;
    assert_eq!(p["gate"]["status"], "abandoned", "{p}");
    let error = p["gate"]["checks"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("abandoned: the promotion was cancelled"),
        "{error}"
    );
    if let Some(job) = p["gate"]["checks"][0]["job_id"].as_str() {
        let (_, job) = call(&q, &olga, "GET", &format!("/api/v1/jobs/{job}"), None).await;
        assert_eq!(job["status"], "cancelled", "{job}");
    }

    // Retired, the reference checks no later promotion.
    let reference_id = reference["id"].as_str().unwrap();
    let (status, retired) = call(
        &q,
        &olga,
        "DELETE",
        &format!("/api/v1/references/{reference_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!(retired["retired"]["by"], "olga");
    let (_, active) = call(&q, &olga, "GET", "/api/v1/references", None).await;
    assert_eq!(active, json!([]));
}

/// Staging's own Quarry, on `release` (its workers' engine perturbed with `fault`),
/// and the token of the user production's control plane acts as there.
async fn staging_service(release: &str, fault: &str) -> (Quarry, String) {
    let staging = Quarry::start_with(&[
        ("QUARRY_WORKER__RELEASE", release),
        ("QUARRY_TEST_FAULT", fault),
    ])
    .await;
    let token = staging.add_user("gatekeeper", "analyst").await;
    (staging, token)
}

/// What a check upstream left in staging: the datasets of the user it ran as.
pub(crate) async fn left_upstream(staging: &Quarry, token: &str) -> Value {
    let (status, datasets) = call(staging, token, "GET", "/api/v1/datasets", None).await;
    assert_eq!(status, 200, "{datasets}");
    datasets
}

/// Moto holding both stacks; staging's own Quarry on v2, whose engine perturbs every
/// float; and production's control plane, its own workers on v1, with staging as its
/// peer (`[control.peers.staging]`).
pub(crate) struct Peered {
    pub moto: Moto,
    /// The environments' files.
    pub dir: tempfile::TempDir,
    pub staging: Quarry,
    /// The token production's control plane acts with in staging.
    pub peer_token: String,
    pub q: Quarry,
}

pub(crate) async fn peered() -> Peered {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    environments(&moto, dir.path()).await;
    let (staging, peer_token) = staging_service(V2, "perturb_floats").await;
    let q = start(
        &moto,
        dir.path(),
        &[
            ("QUARRY_CONTROL__GATE_POLL_MS", "200"),
            ("QUARRY_CONTROL__GATE_NO_WORKER_SECS", "1"),
            ("QUARRY_WORKER__RELEASE", V1),
            ("QUARRY_CONTROL__PEERS__STAGING__URL", &staging.base),
            ("QUARRY_CONTROL__PEERS__STAGING__TOKEN", &peer_token),
        ],
    )
    .await;
    Peered {
        moto,
        dir,
        staging,
        peer_token,
        q,
    }
}

#[tokio::test]
async fn a_check_runs_upstream_where_the_candidate_runs() {
    let Peered {
        moto,
        dir: _dir,
        staging,
        peer_token,
        q,
    } = peered().await;
    let olga = q.add_user("olga", "operator").await;
    let otto = q.add_user("otto", "operator").await;
    let (means, csv) = dataset();
    // An Excel-style file: `;` between fields, a decimal comma and a byte-order mark.
    // Staging must read it as production did, from the options recorded here.
    let excel = format!("\u{feff}{}", csv.replace(',', ";").replace('.', ","));
    let data = q.upload_csv(&olga, "regional", excel).await;
    production_runs_v1(&q, (&olga, &otto)).await;
    let (job_id, job) = mean_by_region(&q, &olga, &data).await;
    assert_eq!(job["provenance"]["release"], V1, "{job}");
    let pin = json!({"job_id": job_id, "name": "mean amount by region"});
    let (status, reference) = call(&q, &olga, "POST", "/api/v1/references", Some(pin)).await;
    assert_eq!(status, 201, "{reference}");

    // v2 on staging: no worker here runs it, so its check runs in staging, and is
    // blocked with the rows staging's engine computed.
    deploy_staging(&q, &olga, V2).await;
    let blocked = request_promotion(&q, &olga).await;
    let p = decided(&q, &olga, &blocked).await;
    assert_eq!(p["gate"]["status"], "blocked", "{p}");
    let check = &p["gate"]["checks"][0];
    assert_eq!(check["status"], "differed", "{check}");
    assert_eq!(check["environment"], "staging", "{check}");
    assert!(check["job_id"].is_string(), "{check}");
    let cmp = &check["comparison"];
    assert_eq!(cmp["differing_rows"], means.len(), "{cmp}");
    perturbed_rows(cmp["first_differences"].as_array().unwrap(), &means);
    // The copy of the dataset it uploaded there is gone, with the check's job.
    eventually(
        WAIT,
        "the check's dataset to be deleted upstream",
        || async { (left_upstream(&staging, &peer_token).await == json!([])).then_some(()) },
    )
    .await;
    let (status, _) = call(
        &staging,
        &peer_token,
        "GET",
        &format!("/api/v1/jobs/{}", check["job_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let reject = json!({"comment": "a result changed"});
    let path = format!("/api/v1/promotions/{blocked}/reject");
    assert_eq!(call(&q, &otto, "POST", &path, Some(reject)).await.0, 200);

    // Staging's service now runs v3, whose engine computes what v1 did: it passes
    // there and is promoted.
    drop(staging);
    let (staging, peer_token) = staging_service(V3, "").await;
    deploy_staging(&q, &olga, V3).await;
    let q = q
        .stop_and_restart_with(&[
            ("QUARRY_CONTROL__PEERS__STAGING__URL", &staging.base),
            ("QUARRY_CONTROL__PEERS__STAGING__TOKEN", &peer_token),
        ])
        .await;
    let check = passes_and_is_promoted(&q, &moto, (&olga, &otto), V3).await;
    assert_eq!(check["environment"], "staging", "{check}");

    // v4 in staging's stack while staging's service still runs v3: the check ran
    // there on v3, which is not the candidate, and the gate says so.
    deploy_staging(&q, &olga, V4).await;
    let (_, check) = blocked_by_a_failed_check(&q, &olga).await;
    let error = check["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "staging ran it on release {V3}, not on the candidate {V4}"
        )),
        "{error}"
    );
    eventually(
        WAIT,
        "the failed check's dataset to be deleted upstream",
        || async { (left_upstream(&staging, &peer_token).await == json!([])).then_some(()) },
    )
    .await;
}
