//! `quarry stack` against CloudFormation on the AWS emulator: deploy staging, check
//! the resources really exist, change it through a reviewed diff, and destroy it.
//!
//! Emulator limits designed around: the network is imported (moto cannot delete a
//! VPC it created through CloudFormation), outputs of change-set stacks are read from
//! the stack's resources, and only stack-level events exist.

use quarry_tests::aws::Moto;
use quarry_tests::quarry_bin;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

/// The image deployed, by digest (the control plane refuses a tag alone).
const IMAGE: &str =
    "quarry@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Runs `quarry stack <args>` in `dir` (whose `environments/` holds the parameters).
async fn stack(moto: &Moto, dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(quarry_bin())
        .arg("stack")
        .args(args)
        .current_dir(dir)
        .envs(moto.env())
        .env("QUARRY_DATA_DIR", dir.join("data"))
        .env("QUARRY_LOG", "warn")
        .env("USER", "ops-test")
        .output()
        .await
        .expect("running quarry stack")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "quarry stack failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Staging's parameters with the emulator's VPC and subnets imported.
async fn staging_file(moto: &Moto, dir: &Path) -> String {
    let (vpc, public, private) = moto.vpc_with_subnets().await.unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments/staging.toml"),
    )
    .unwrap();
    let imported = format!(
        "mode = \"import\"\nvpc_id = \"{vpc}\"\npublic_subnets = {public:?}\nprivate_subnets = {private:?}"
    );
    let text = text.replace("mode = \"create\"\ncidr = \"10.40.0.0/16\"", &imported);
    assert!(
        text.contains(&imported),
        "staging.toml's network section moved"
    );
    std::fs::create_dir_all(dir.join("environments")).unwrap();
    std::fs::write(dir.join("environments/staging.toml"), &text).unwrap();
    text
}

fn table_ids(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('('))
        .filter_map(|l| l.split_whitespace().nth(1).map(ToOwned::to_owned))
        .collect()
}

async fn worker_task_definition(moto: &Moto) -> Value {
    moto.aws(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        "quarry-staging-worker",
    ])
    .await
    .unwrap()
}

#[tokio::test]
async fn staging_deploys_changes_through_a_diff_and_is_destroyed() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = staging_file(&moto, dir.path()).await;

    let check = stack(&moto, dir.path(), &["check", "staging"]).await;
    assert!(ok(&check).contains("0 violation(s)"));

    let deployed = stack(&moto, dir.path(), &["deploy", "staging", "--image", IMAGE]).await;
    let table = ok(&deployed);
    assert!(
        table.lines().skip(1).all(|l| l.starts_with("Add")),
        "{table}"
    );
    let progress = String::from_utf8_lossy(&deployed.stderr);
    assert!(progress.contains("CREATE_COMPLETE"), "{progress}");

    // The resources exist, checked with the AWS CLI rather than CloudFormation.
    let outputs: Value =
        serde_json::from_str(&ok(&stack(&moto, dir.path(), &["outputs", "staging"]).await))
            .unwrap();
    for queue in ["JobQueue", "DeadLetterQueue"] {
        let url = outputs[queue].as_str().expect(queue);
        let attrs = moto
            .aws(&[
                "sqs",
                "get-queue-attributes",
                "--queue-url",
                url,
                "--attribute-names",
                "All",
            ])
            .await
            .unwrap();
        assert_eq!(
            attrs["Attributes"]["SqsManagedSseEnabled"], "true",
            "{queue}"
        );
    }
    let job_queue = moto
        .aws(&[
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            outputs["JobQueue"].as_str().unwrap(),
            "--attribute-names",
            "RedrivePolicy",
        ])
        .await
        .unwrap();
    assert!(
        job_queue["Attributes"]["RedrivePolicy"]
            .as_str()
            .unwrap()
            .contains("quarry-staging-jobs-dlq")
    );
    let bucket = outputs["DataBucket"].as_str().unwrap();
    moto.aws(&["s3api", "head-bucket", "--bucket", bucket])
        .await
        .unwrap();
    let clusters = moto
        .aws(&[
            "ecs",
            "describe-clusters",
            "--clusters",
            outputs["Cluster"].as_str().unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(clusters["clusters"][0]["status"], "ACTIVE");
    let before = worker_task_definition(&moto).await;
    assert_eq!(before["taskDefinition"]["memory"], "4096");
    for family in ["quarry-staging-api", "quarry-staging-orchestrator"] {
        moto.aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            family,
        ])
        .await
        .unwrap();
    }

    // More workers, each with more memory: the diff lists exactly what changes.
    let edited = text
        .replacen("max_workers = 10", "max_workers = 20", 1)
        .replace(
            "[stack.worker]\ncpu = 1024\nmemory = 4096",
            "[stack.worker]\ncpu = 1024\nmemory = 8192",
        );
    assert_ne!(edited, text);
    std::fs::write(dir.path().join("environments/staging.toml"), &edited).unwrap();
    let diff = ok(&stack(&moto, dir.path(), &["diff", "staging"]).await);
    assert_eq!(
        table_ids(&diff),
        BTreeSet::from(
            [
                // The task definitions are replaced (new revisions)…
                "WorkerTaskDefinition",
                "OrchestratorTaskDefinition",
                // …so the service runs the new one, and the orchestrator's role may
                // RunTask only the new worker revision.
                "OrchestratorService",
                "OrchestratorTaskRole",
            ]
            .map(String::from)
        ),
        "{diff}"
    );
    assert!(diff.contains("WorkerTaskDefinition") && diff.contains("yes (replaced)"));

    ok(&stack(&moto, dir.path(), &["deploy", "staging", "--image", IMAGE]).await);
    let after = worker_task_definition(&moto).await;
    assert_eq!(after["taskDefinition"]["memory"], "8192");
    // moto keeps no container environment from CloudFormation, so the new fleet size
    // is read from the template CloudFormation now holds.
    let deployed = moto
        .aws(&[
            "cloudformation",
            "get-template",
            "--stack-name",
            "quarry-staging",
        ])
        .await
        .unwrap();
    let body = match &deployed["TemplateBody"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    let environment = &body["Resources"]["OrchestratorTaskDefinition"]["Properties"]["ContainerDefinitions"]
        [0]["Environment"];
    assert!(
        environment
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["Name"] == "QUARRY_FLEET__MAX_WORKERS" && v["Value"] == "20"),
        "{environment}"
    );
    let again = ok(&stack(&moto, dir.path(), &["diff", "staging"]).await);
    assert_eq!(again.trim(), "no changes");

    let releases = ok(&stack(&moto, dir.path(), &["releases", "staging"]).await);
    let lines: Vec<&str> = releases.lines().collect();
    assert_eq!(lines.len(), 2, "{releases}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(IMAGE) && l.contains("by ops-test")),
        "{releases}"
    );
    // Newest first: the second release replaced the first.
    assert!(
        lines[0].contains("succeeded") && lines[1].contains("superseded"),
        "{releases}"
    );

    // Destroy asks for the stack's name.
    let refused = stack(
        &moto,
        dir.path(),
        &["destroy", "staging", "--confirm", "staging"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing deleted"));
    ok(&stack(
        &moto,
        dir.path(),
        &["destroy", "staging", "--confirm", "quarry-staging"],
    )
    .await);
    let status = ok(&stack(&moto, dir.path(), &["status", "staging"]).await);
    assert!(status.contains("not deployed"), "{status}");
    let queues = moto.aws(&["sqs", "list-queues"]).await.unwrap();
    assert!(
        !queues.to_string().contains("quarry-staging-jobs"),
        "the queues went with the stack: {queues}"
    );
}

#[tokio::test]
async fn production_is_not_destroyed_without_force() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = stack(
        &moto,
        dir.path(),
        &["destroy", "production", "--confirm", "quarry-production"],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --force"));
}

#[tokio::test]
async fn synth_is_deterministic_and_written_where_asked() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let printed = ok(&stack(&moto, dir.path(), &["synth", "staging"]).await);
    let file = dir.path().join("staging.json");
    ok(&stack(
        &moto,
        dir.path(),
        &["synth", "staging", "--out", file.to_str().unwrap()],
    )
    .await);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    let template: Value = serde_json::from_str(&printed).unwrap();
    assert!(template["Resources"]["WorkerTaskDefinition"].is_object());
}
