//! Re-running a job on another release and comparing the results, on the embedded
//! default: a result computed on r1 is re-run once r2's workers run (a build whose
//! engine perturbs every float) and differs, with its rows checked against means
//! computed without polars; re-run on an unchanged r3 it is identical. A release the
//! workers do not run is refused, naming the one they do. A release that staging runs,
//! with staging in `[control.peers]`, is run in staging and its result brought back.

use super::control::{V1, V2, WAIT, call, deploy_staging, finished};
use super::gate::{Peered, dataset, left_upstream, mean_by_region, peered, perturbed_rows};
use quarry_tests::{Quarry, eventually};
use serde_json::json;

#[tokio::test]
async fn a_job_rerun_on_another_release_is_compared_with_the_original() {
    let q = Quarry::start_with(&[("QUARRY_WORKER__RELEASE", "r1")]).await;
    let ana = q.add_user("ana", "analyst").await;
    let bob = q.add_user("bob", "analyst").await;
    let (means, csv) = dataset();
    let data = q.upload_csv(&ana, "regional", csv).await;
    let (original, job) = mean_by_region(&q, &ana, &data).await;
    assert_eq!(job["provenance"]["release"], "r1");
    let rerun_path = format!("/api/v1/jobs/{original}/rerun");

    // Only the release the workers run now takes re-runs.
    let (status, refused) = call(
        &q,
        &ana,
        "POST",
        &rerun_path,
        Some(json!({"release": "r2"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("run release r1, not r2"),
        "{refused}"
    );
    let (status, refused) = call(&q, &bob, "POST", &rerun_path, Some(json!({}))).await;
    assert_eq!(status, 404, "someone else's job: {refused}");
    let (status, refused) =
        call(&q, &ana, "POST", &rerun_path, Some(json!({"relase": "r1"}))).await;
    assert_eq!(status, 400, "a misspelt field: {refused}");

    // r2's workers perturb every float: the re-run differs, row by row.
    let q = q
        .stop_and_restart_with(&[
            ("QUARRY_WORKER__RELEASE", "r2"),
            ("QUARRY_TEST_FAULT", "perturb_floats"),
        ])
        .await;
    let (status, rerun) = call(
        &q,
        &ana,
        "POST",
        &rerun_path,
        Some(json!({"release": "r2"})),
    )
    .await;
    assert_eq!(status, 202, "{rerun}");
    assert_eq!(rerun["rerun_of"], original.as_str());
    assert_eq!(rerun["required_release"], "r2");
    let rerun_id = rerun["id"].as_str().unwrap().to_owned();
    let done = finished(&q, &ana, &rerun_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["provenance"]["release"], "r2");
    let compare = format!("/api/v1/jobs/{original}/compare?with={rerun_id}");
    let (status, cmp) = call(&q, &ana, "GET", &compare, None).await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["identical"], false);
    assert_eq!(cmp["differing_rows"], means.len());
    let rows = cmp["first_differences"].as_array().unwrap();
    assert_eq!(rows.len(), means.len());
    perturbed_rows(rows, &means);
    let (status, none) = call(&q, &bob, "GET", &compare, None).await;
    assert_eq!(status, 404, "{none}");
    let (status, bad) = call(
        &q,
        &ana,
        "GET",
        &format!("/api/v1/jobs/{original}/compare"),
        None,
    )
    .await;
    assert_eq!(status, 400, "no `with`: {bad}");

    // r3 computes what r1 did: identical.
    let q = q
        .stop_and_restart_with(&[("QUARRY_WORKER__RELEASE", "r3"), ("QUARRY_TEST_FAULT", "")])
        .await;
    let (status, again) = call(&q, &ana, "POST", &rerun_path, None).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["required_release"], "r3");
    let again_id = again["id"].as_str().unwrap().to_owned();
    assert_eq!(
        finished(&q, &ana, &again_id).await["provenance"]["release"],
        "r3"
    );
    let (_, cmp) = call(
        &q,
        &ana,
        "GET",
        &format!("/api/v1/jobs/{original}/compare?with={again_id}"),
        None,
    )
    .await;
    assert_eq!(cmp["identical"], true, "{cmp}");
    assert_eq!(cmp["differing_rows"], 0);
    assert_eq!(cmp["actual_rows"], means.len());
}

#[tokio::test]
async fn a_rerun_on_the_release_staging_runs_runs_in_staging() {
    // Staging's own Quarry runs v2, whose engine perturbs every float; this server's
    // workers run v1, and staging is its peer.
    let Peered {
        moto: _moto,
        dir: _dir,
        staging,
        peer_token,
        q,
    } = peered().await;
    let olga = q.add_user("olga", "operator").await;
    let ana = q.add_user("ana", "analyst").await;
    let (means, csv) = dataset();
    let data = q.upload_csv(&ana, "regional", csv).await;
    let (original, job) = mean_by_region(&q, &ana, &data).await;
    assert_eq!(job["provenance"]["release"], V1, "{job}");
    let rerun_path = format!("/api/v1/jobs/{original}/rerun");
    // Before staging runs v2, nobody does.
    let (status, refused) = call(&q, &ana, "POST", &rerun_path, Some(json!({"release": V2}))).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("no environment runs it now"),
        "{refused}"
    );

    // Staging runs v2: the re-run goes there, and its result comes back.
    deploy_staging(&q, &olga, V2).await;
    let (status, rerun) = call(&q, &ana, "POST", &rerun_path, Some(json!({"release": V2}))).await;
    assert_eq!(status, 202, "{rerun}");
    assert_eq!(rerun["environment"], "staging", "{rerun}");
    assert_eq!(rerun["required_release"], V2);
    assert_eq!(rerun["rerun_of"], original.as_str());
    let rerun_id = rerun["id"].as_str().unwrap().to_owned();
    let done = finished(&q, &ana, &rerun_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["environment"], "staging");
    assert_eq!(done["provenance"]["release"], V2, "{done}");
    assert_eq!(done["provenance"]["dataset"]["id"], data.as_str());
    assert_eq!(
        done["provenance"]["dataset"]["sha256"],
        job["provenance"]["dataset"]["sha256"]
    );
    let (status, page) = call(
        &q,
        &ana,
        "GET",
        &format!("/api/v1/jobs/{rerun_id}/result"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_rows"], means.len(), "{page}");
    let compare = format!("/api/v1/jobs/{original}/compare?with={rerun_id}");
    let (status, cmp) = call(&q, &ana, "GET", &compare, None).await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["differing_rows"], means.len(), "{cmp}");
    perturbed_rows(cmp["first_differences"].as_array().unwrap(), &means);
    eventually(
        WAIT,
        "the re-run's dataset to be deleted in staging",
        || async { (left_upstream(&staging, &peer_token).await == json!([])).then_some(()) },
    )
    .await;

    // A long job re-run there and cancelled here: it ends there too, whether it was
    // still on its way or running (then the cancellation is passed on).
    let (status, spin) = call(
        &q,
        &ana,
        "POST",
        "/api/v1/jobs",
        Some(json!({"dataset_id": data, "analysis": {"kind": "spin", "seconds": 120}})),
    )
    .await;
    assert_eq!(status, 202, "{spin}");
    let spin_id = spin["id"].as_str().unwrap();
    let (status, second) = call(
        &q,
        &ana,
        "POST",
        &format!("/api/v1/jobs/{spin_id}/rerun"),
        Some(json!({"release": V2})),
    )
    .await;
    assert_eq!(status, 202, "{second}");
    let second_id = second["id"].as_str().unwrap();
    eventually(WAIT, "the long re-run to run in staging", || async {
        let (_, j) = call(&q, &ana, "GET", &format!("/api/v1/jobs/{second_id}"), None).await;
        (j["status"] == "running").then_some(())
    })
    .await;
    for id in [second_id, spin_id] {
        let (status, c) = call(&q, &ana, "POST", &format!("/api/v1/jobs/{id}/cancel"), None).await;
        assert_eq!(status, 200, "{c}");
    }
    eventually(WAIT, "the re-run to be cancelled", || async {
        let (_, j) = call(&q, &ana, "GET", &format!("/api/v1/jobs/{second_id}"), None).await;
        (j["status"] == "cancelled").then_some(())
    })
    .await;
    // Nothing of it stays in staging.
    eventually(
        WAIT,
        "nothing of the cancelled re-run in staging",
        || async { (left_upstream(&staging, &peer_token).await == json!([])).then_some(()) },
    )
    .await;
    let (_, after) = call(&q, &ana, "GET", &format!("/api/v1/jobs/{second_id}"), None).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(after["environment"], "staging");
}
