//! The operator control plane against one emulator holding both stacks: deploy to
//! staging, promote to production with an approval by someone else, roll back with a
//! hold, freeze, and a restart in the middle of a promotion. Images are checked with
//! the AWS CLI, not through Quarry.

use quarry_tests::aws::Moto;
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

pub(crate) const V1: &str = "registry.example/quarry@sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub(crate) const V2: &str = "registry.example/quarry@sha256:2222222222222222222222222222222222222222222222222222222222222222";
pub(crate) const WAIT: Duration = Duration::from_secs(240);

/// Both environments' files with the emulator's network imported.
pub(crate) async fn environments(moto: &Moto, dir: &Path) {
    let (vpc, public, private) = moto.vpc_with_subnets().await.unwrap();
    let imported = format!(
        "mode = \"import\"\nvpc_id = \"{vpc}\"\npublic_subnets = {public:?}\nprivate_subnets = {private:?}"
    );
    std::fs::create_dir_all(dir).unwrap();
    for (env, cidr) in [("staging", "10.40.0.0/16"), ("production", "10.41.0.0/16")] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../environments/{env}.toml")),
        )
        .unwrap();
        let text = text.replace(&format!("mode = \"create\"\ncidr = \"{cidr}\""), &imported);
        assert!(
            text.contains(&imported),
            "{env}.toml's network section moved"
        );
        std::fs::write(dir.join(format!("{env}.toml")), text).unwrap();
    }
}

pub(crate) async fn start(moto: &Moto, dir: &Path, extra: &[(&str, &str)]) -> Quarry {
    let mut vars: Vec<(String, String)> = moto.env();
    vars.push((
        "QUARRY_CONTROL__ENVIRONMENTS_DIR".into(),
        dir.display().to_string(),
    ));
    vars.push(("QUARRY_CONTROL__POLL_MS".into(), "200".into()));
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Quarry::start_with(&borrowed).await
}

pub(crate) async fn call(
    q: &Quarry,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = q
        .http
        .request(method.parse().unwrap(), q.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits until the environment's newest release has finished; returns it.
pub(crate) async fn settled(q: &Quarry, token: &str, env: &str) -> Value {
    eventually(WAIT, &format!("{env}'s release to finish"), || async {
        let (_, all) = call(
            q,
            token,
            "GET",
            &format!("/api/v1/environments/{env}/releases"),
            None,
        )
        .await;
        all.get(0)
            .filter(|r| r["outcome"] != "in_progress")
            .cloned()
    })
    .await
}

pub(crate) async fn promotion_done(q: &Quarry, token: &str, id: &str) -> Value {
    eventually(WAIT, "the promotion to finish", || async {
        let (_, p) = call(q, token, "GET", &format!("/api/v1/promotions/{id}"), None).await;
        (p["status"] != "deploying" && p["status"] != "awaiting_approval").then_some(p)
    })
    .await
}

/// The image production's worker task definition runs, read with the AWS CLI.
async fn worker_image(moto: &Moto, env: &str) -> String {
    let family = format!("quarry-{env}-worker");
    let td = moto
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            &family,
        ])
        .await
        .unwrap();
    td["taskDefinition"]["containerDefinitions"][0]["image"]
        .as_str()
        .unwrap_or_else(|| panic!("no image in {td}"))
        .to_owned()
}

/// The image the environment's stack deploys, read with the AWS CLI. moto rebuilds an
/// updated task definition without its container definitions, so after an update the
/// stack's `ImageUri` parameter is what the emulator can show.
pub(crate) async fn stack_image(moto: &Moto, env: &str) -> String {
    let stack = format!("quarry-{env}");
    let out = moto
        .aws(&["cloudformation", "describe-stacks", "--stack-name", &stack])
        .await
        .unwrap();
    out["Stacks"][0]["Parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["ParameterKey"] == "ImageUri"))
        .and_then(|p| p["ParameterValue"].as_str())
        .unwrap_or_else(|| panic!("no ImageUri in {out}"))
        .to_owned()
}

pub(crate) async fn deploy_staging(q: &Quarry, token: &str, image: &str) {
    let (status, release) = call(
        q,
        token,
        "POST",
        "/api/v1/environments/staging/deploy",
        Some(json!({"artifact": image, "commit": "c0ffee"})),
    )
    .await;
    assert_eq!(status, 202, "{release}");
    assert_eq!(settled(q, token, "staging").await["outcome"], "succeeded");
}

/// Requests the promotion of staging into production; returns its id.
pub(crate) async fn request_promotion(q: &Quarry, requester: &str) -> String {
    let (status, p) = call(
        q,
        requester,
        "POST",
        "/api/v1/promotions",
        Some(json!({"from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["status"], "awaiting_approval");
    p["id"].as_str().unwrap().to_owned()
}

async fn promote(q: &Quarry, requester: &str, approver: &str) -> Value {
    let id = request_promotion(q, requester).await;
    let (status, own) = call(
        q,
        requester,
        "POST",
        &format!("/api/v1/promotions/{id}/approve"),
        Some(json!({"comment": "mine"})),
    )
    .await;
    assert_eq!(status, 403, "{own}");
    assert!(
        own.to_string().contains("someone other than the requester"),
        "{own}"
    );
    let (status, approved) = call(
        q,
        approver,
        "POST",
        &format!("/api/v1/promotions/{id}/approve"),
        Some(json!({"comment": "diff reviewed"})),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    let done = promotion_done(q, approver, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

#[tokio::test]
async fn staging_is_promoted_with_approval_rolled_back_held_and_frozen() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    environments(&moto, dir.path()).await;
    let q = start(&moto, dir.path(), &[]).await;
    let olga = q.add_user("olga", "operator").await;
    let otto = q.add_user("otto", "operator").await;
    let admin = q.admin_token.clone();

    let (status, refused) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/environments/staging/deploy",
        Some(json!({"artifact": "registry.example/quarry:1"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    // 1. v1 on staging, promoted with a second operator's approval.
    deploy_staging(&q, &olga, V1).await;
    let first = promote(&q, &olga, &otto).await;
    assert!(!first["diff"].as_array().unwrap().is_empty());
    assert_eq!(worker_image(&moto, "production").await, V1);

    // 2. v2 the same way: the history shows promotion rows with who, what and the diff.
    deploy_staging(&q, &olga, V2).await;
    promote(&q, &olga, &otto).await;
    assert_eq!(stack_image(&moto, "production").await, V2);
    let (_, history) = call(
        &q,
        &olga,
        "GET",
        "/api/v1/environments/production/releases",
        None,
    )
    .await;
    let history = history.as_array().unwrap().clone();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|r| r["kind"] == "promotion" && r["deployed_by"] == "otto")
    );
    assert_eq!(history[0]["artifact"], V2);
    assert_eq!(history[0]["outcome"], "succeeded");
    assert_eq!(history[1]["outcome"], "superseded");
    assert!(
        history[0]["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["logical_id"] == "WorkerTaskDefinition"),
        "{history:?}"
    );

    // 3. Roll production back, rejecting v2: v1 runs again, and production is held.
    let (status, rb) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/environments/production/rollback",
        Some(json!({"reason": "v2 breaks uploads", "reject_artifact": true})),
    )
    .await;
    assert_eq!(status, 202, "{rb}");
    let done = settled(&q, &olga, "production").await;
    assert_eq!(
        (done["kind"].as_str(), done["outcome"].as_str()),
        (Some("rollback"), Some("succeeded")),
        "{done}"
    );
    assert_eq!(stack_image(&moto, "production").await, V1);
    let (_, env) = call(&q, &olga, "GET", "/api/v1/environments/production", None).await;
    assert!(
        env["hold"]["reason"]
            .as_str()
            .unwrap()
            .contains("v2 breaks uploads"),
        "{env}"
    );
    assert_eq!(env["artifact"], V1);
    let (status, held) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/promotions",
        Some(json!({"from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(status, 409, "{held}");
    assert!(held.to_string().contains("hold"), "{held}");
    let (status, lifted) = call(
        &q,
        &olga,
        "DELETE",
        "/api/v1/environments/production/hold",
        Some(json!({"reason": "fix under way"})),
    )
    .await;
    assert_eq!(status, 200, "{lifted}");
    let (status, rejected) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/promotions",
        Some(json!({"from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(status, 409, "{rejected}");
    assert!(rejected.to_string().contains("rejected"), "{rejected}");
    let (_, artifacts) = call(&q, &olga, "GET", "/api/v1/artifacts", None).await;
    assert!(
        artifacts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["image"] == V2 && a["rejected"]["reason"] == "v2 breaks uploads")
    );

    // 4. A frozen environment refuses deploys, promotions and rollbacks, with the reason.
    for env in ["staging", "production"] {
        let (status, frozen) = call(
            &q,
            &olga,
            "POST",
            &format!("/api/v1/environments/{env}/freeze"),
            Some(json!({"reason": "quarter close"})),
        )
        .await;
        assert_eq!(status, 200, "{frozen}");
    }
    let refusals = [
        (
            "/api/v1/environments/staging/deploy",
            json!({"artifact": V1}),
        ),
        (
            "/api/v1/promotions",
            json!({"from": "staging", "to": "production"}),
        ),
        (
            "/api/v1/environments/production/rollback",
            json!({"reason": "again"}),
        ),
    ];
    for (path, body) in refusals {
        let (status, answer) = call(&q, &olga, "POST", path, Some(body)).await;
        assert_eq!(status, 409, "{path}: {answer}");
        assert!(
            answer.to_string().contains("quarter close"),
            "{path}: {answer}"
        );
    }
    let (status, overridden) = call(
        &q,
        &admin,
        "POST",
        "/api/v1/environments/staging/deploy",
        Some(json!({"artifact": V1, "override": true})),
    )
    .await;
    assert_eq!(status, 202, "{overridden}");
    settled(&q, &admin, "staging").await;
    let (_, staging) = call(&q, &olga, "GET", "/api/v1/environments/staging", None).await;
    assert!(
        staging["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["action"] == "deploy while frozen" && o["by"] == "admin"),
        "{staging}"
    );
    let (status, _) = call(
        &q,
        &olga,
        "DELETE",
        "/api/v1/environments/staging/freeze",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Reads: a lead sees the environments, an analyst does not.
    let lee = q.add_user("lee", "lead").await;
    let ana = q.add_user("ana", "analyst").await;
    assert_eq!(
        call(&q, &lee, "GET", "/api/v1/environments", None).await.0,
        200
    );
    assert_eq!(
        call(&q, &ana, "GET", "/api/v1/environments", None).await.0,
        403
    );
    assert_eq!(
        call(
            &q,
            &lee,
            "POST",
            "/api/v1/environments/production/freeze",
            Some(json!({"reason": "x"}))
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn a_restart_during_a_promotion_completes_it_once() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    environments(&moto, dir.path()).await;
    // Each change set waits before it is executed: the window to stop the server in.
    let q = start(
        &moto,
        dir.path(),
        &[("QUARRY_CONTROL__PAUSE_BEFORE_EXECUTE_MS", "3000")],
    )
    .await;
    let olga = q.add_user("olga", "operator").await;
    let otto = q.add_user("otto", "operator").await;
    deploy_staging(&q, &olga, V1).await;
    let (status, p) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/promotions",
        Some(json!({"from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (status, approved) = call(
        &q,
        &otto,
        "POST",
        &format!("/api/v1/promotions/{id}/approve"),
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "deploying");
    let change_set = approved["change_set_id"]
        .as_str()
        .expect("the change set is recorded")
        .to_owned();

    let q = q.crash_and_restart().await;
    let done = promotion_done(&q, &otto, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["change_set_id"], change_set.as_str());
    let (_, history) = call(
        &q,
        &otto,
        "GET",
        "/api/v1/environments/production/releases",
        None,
    )
    .await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1, "one release: {history:?}");
    assert_eq!(history[0]["change_set_id"], change_set.as_str());
    assert_eq!(history[0]["outcome"], "succeeded");
    assert_eq!(worker_image(&moto, "production").await, V1);
}

async fn submit_profile(q: &Quarry, token: &str, dataset: &str) -> String {
    let (status, job) = call(
        q,
        token,
        "POST",
        "/api/v1/jobs",
        Some(json!({"dataset_id": dataset, "analysis": {"kind": "profile"}})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn finished(q: &Quarry, token: &str, id: &str) -> Value {
    eventually(WAIT, "the job to finish", || async {
        let (_, job) = call(q, token, "GET", &format!("/api/v1/jobs/{id}"), None).await;
        (job["status"] == "succeeded" || job["status"] == "failed").then_some(job)
    })
    .await
}

#[tokio::test]
async fn a_release_whose_jobs_fail_is_rolled_back_by_itself_and_cannot_come_back() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    environments(&moto, dir.path()).await;
    // A watch that judges after 4 attempts and looks every 300 ms.
    let file = dir.path().join("staging.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.matches("\nmin_jobs = 20\n").count(),
        1,
        "staging.toml's [control.regression] moved"
    );
    let edited = text.replace("\nmin_jobs = 20\n", "\nmin_jobs = 4\n");
    std::fs::write(&file, edited).unwrap();
    let fast = [
        ("QUARRY_CONTROL__WATCH_MS", "300"),
        ("QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS", "3"),
        ("QUARRY_WORKER__HEARTBEAT_SECS", "1"),
        ("QUARRY_FLEET__TICK_SECS", "1"),
    ];
    let mut vars = fast.to_vec();
    vars.push(("QUARRY_WORKER__RELEASE", V1));
    let q = start(&moto, dir.path(), &vars).await;
    let olga = q.add_user("olga", "operator").await;
    let dataset = q.upload_csv(&olga, "tiny", "a\n1\n2\n".to_owned()).await;
    // v1 runs its jobs well.
    deploy_staging(&q, &olga, V1).await;
    for _ in 0..4 {
        let id = submit_profile(&q, &olga, &dataset).await;
        assert_eq!(finished(&q, &olga, &id).await["status"], "succeeded");
    }

    // v2 is deployed, and its workers (a build that fails every job) start.
    deploy_staging(&q, &olga, V2).await;
    let q = q
        .stop_and_restart_with(&[
            ("QUARRY_WORKER__RELEASE", V2),
            ("QUARRY_TEST_FAULT", "fail_every_job"),
        ])
        .await;
    let failing = submit_profile(&q, &olga, &dataset).await;
    let failed = finished(&q, &olga, &failing).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let (_, attempts) = call(
        &q,
        &olga,
        "GET",
        &format!("/api/v1/jobs/{failing}/attempts"),
        None,
    )
    .await;
    assert!(
        attempts
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["release"] == V2 && a["outcome"] == "failed" && a["failure"] == "internal"),
        "{attempts}"
    );
    let _more = [
        submit_profile(&q, &olga, &dataset).await,
        submit_profile(&q, &olga, &dataset).await,
    ];

    // Nobody acts: the watch rolls staging back to v1, holds it and rejects v2.
    let rollback = eventually(WAIT, "the regression watch's rollback", || async {
        let (_, all) = call(
            &q,
            &olga,
            "GET",
            "/api/v1/environments/staging/releases",
            None,
        )
        .await;
        all.get(0)
            .filter(|r| r["kind"] == "rollback" && r["outcome"] != "in_progress")
            .cloned()
    })
    .await;
    assert_eq!(rollback["outcome"], "succeeded", "{rollback}");
    assert_eq!(rollback["artifact"], V1);
    assert_eq!(rollback["deployed_by"], "regression-watch");
    assert_eq!(stack_image(&moto, "staging").await, V1);
    let (_, env) = call(&q, &olga, "GET", "/api/v1/environments/staging", None).await;
    let hold = env["hold"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        hold.contains("regression watch: 100% of release") && hold.contains("against 0% expected"),
        "the hold says why, with the numbers: {}",
        env["hold"]
    );
    // v2 is refused from now on: deploying it again, or promoting it.
    let (status, refused) = call(
        &q,
        &olga,
        "POST",
        "/api/v1/environments/staging/deploy",
        Some(json!({"artifact": V2, "commit": "c0ffee"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("rejected by regression-watch"),
        "{refused}"
    );
    let (_, artifacts) = call(&q, &olga, "GET", "/api/v1/artifacts", None).await;
    let v2 = artifacts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["image"] == V2)
        .cloned()
        .unwrap_or_default();
    assert!(!v2["rejected"].is_null(), "{artifacts}");
}
