//! The synthesized templates: pinned by snapshots, deterministic, clean for cfn-lint,
//! and wired the way the runtime expects.

use crate::helpers::{cfn_lint, config, edited_staging, template_json, template_value};
use quarry_stacks::{synth, template_hash};
use serde_json::Value;

#[test]
fn staging_template_matches_its_snapshot() {
    insta::assert_snapshot!("staging", template_json("staging"));
}

#[test]
fn production_template_matches_its_snapshot() {
    insta::assert_snapshot!("production", template_json("production"));
}

#[test]
fn synthesizing_twice_gives_byte_identical_templates() {
    for environment in ["staging", "production"] {
        let first = template_json(environment);
        let second = template_json(environment);
        assert_eq!(first, second, "{environment}");
        assert_eq!(template_hash(&first), template_hash(&second));
        assert!(first.ends_with("}\n"));
    }
}

#[test]
fn templates_fit_cloudformations_inline_limit_when_sent_compact() {
    // Deploy sends the template inline (TemplateBody), compact: at most 51,200 bytes.
    for environment in ["staging", "production"] {
        let compact = serde_json::to_string(&template_value(environment)).unwrap();
        assert!(
            compact.len() < 51_200,
            "{environment}: {} bytes",
            compact.len()
        );
    }
}

#[test]
fn template_hash_is_the_sha256_of_the_json() {
    assert_eq!(
        template_hash(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_ne!(
        template_hash(&template_json("staging")),
        template_hash(&template_json("production"))
    );
}

fn assert_lint_clean(name: &str, json: &str) {
    let (passed, said) = cfn_lint(name, json);
    assert!(
        passed,
        "cfn-lint found problems in the {name} template:\n{said}"
    );
}

#[test]
fn staging_template_passes_cfn_lint() {
    assert_lint_clean("staging", &template_json("staging"));
}

#[test]
fn production_template_passes_cfn_lint() {
    assert_lint_clean("production", &template_json("production"));
}

#[test]
fn imported_network_and_https_variant_passes_cfn_lint() {
    let mut config = edited_staging(
        "mode = \"create\"\ncidr = \"10.40.0.0/16\"",
        "mode = \"import\"\nvpc_id = \"vpc-0123456789abcdef0\"\n\
         public_subnets = [\"subnet-0aaaaaaaaaaaaaaa1\", \"subnet-0aaaaaaaaaaaaaaa2\"]\n\
         private_subnets = [\"subnet-0bbbbbbbbbbbbbbb1\", \"subnet-0bbbbbbbbbbbbbbb2\"]",
    )
    .unwrap();
    config.stack.api.certificate_arn = Some(
        "arn:aws:acm:us-east-1:123456789012:certificate/0f8c1a6e-1111-2222-3333-444455556666"
            .to_owned(),
    );
    let template = synth(&config).unwrap();
    let value = template.to_value();
    let resources = value["Resources"].as_object().unwrap();
    assert!(!resources.contains_key("Vpc"));
    assert!(!resources.contains_key("NatGateway"));
    assert_eq!(
        value["Resources"]["LoadBalancer"]["Properties"]["Subnets"][0],
        "subnet-0aaaaaaaaaaaaaaa1"
    );
    assert_eq!(
        value["Resources"]["HttpListener"]["Properties"]["DefaultActions"][0]["Type"],
        "redirect"
    );
    assert!(resources.contains_key("HttpsListener"));
    assert_eq!(
        value["Resources"]["ApiService"]["DependsOn"][0],
        "HttpsListener"
    );
    assert_lint_clean("staging-import-https", &template.to_json_string());
}

/// The container definition of a task definition.
fn container(template: &Value, task_definition: &str) -> Value {
    template["Resources"][task_definition]["Properties"]["ContainerDefinitions"][0].clone()
}

fn env_var(container: &Value, name: &str) -> Value {
    container["Environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Name"] == name)
        .unwrap_or_else(|| panic!("{name} is not set"))["Value"]
        .clone()
}

#[test]
fn every_task_is_pointed_at_the_stacks_queue_bucket_and_database() {
    let t = template_value("staging");
    for (task, name, command) in [
        ("WorkerTaskDefinition", "worker", "worker"),
        ("ApiTaskDefinition", "api", "serve"),
        ("OrchestratorTaskDefinition", "orchestrator", "orchestrator"),
    ] {
        let c = container(&t, task);
        assert_eq!(c["Name"], name);
        assert_eq!(c["Command"], serde_json::json!([command]));
        assert_eq!(c["Image"], serde_json::json!({"Ref": "ImageUri"}));
        assert_eq!(env_var(&c, "QUARRY_ENV"), "staging");
        assert_eq!(
            env_var(&c, "QUARRY_QUEUE__URL"),
            serde_json::json!({"Ref": "JobQueue"})
        );
        assert_eq!(
            env_var(&c, "QUARRY_BLOB_STORE__BUCKET"),
            serde_json::json!({"Ref": "DataBucket"})
        );
        assert_eq!(
            env_var(&c, "QUARRY_DATABASE__URL"),
            serde_json::json!({"Fn::Sub": [
                "postgres://quarry@${Host}:${Port}/quarry?sslmode=require",
                {
                    "Host": {"Fn::GetAtt": ["Database", "Endpoint.Address"]},
                    "Port": {"Fn::GetAtt": ["Database", "Endpoint.Port"]},
                },
            ]})
        );
        assert_eq!(
            c["Secrets"],
            serde_json::json!([{
                "Name": "QUARRY_DATABASE__PASSWORD",
                "ValueFrom": {"Fn::Sub": "${DatabaseSecret}:password::"},
            }])
        );
    }
    let worker = container(&t, "WorkerTaskDefinition");
    assert_eq!(env_var(&worker, "QUARRY_WORKER__MEMORY_LIMIT_MB"), "3481");
    assert_eq!(worker["Memory"], 4096);
    let api = container(&t, "ApiTaskDefinition");
    assert_eq!(env_var(&api, "QUARRY_LISTEN"), "0.0.0.0:3000");
}

#[test]
fn the_orchestrator_gets_the_fleet_from_the_environment_file() {
    let t = template_value("production");
    let c = container(&t, "OrchestratorTaskDefinition");
    let fleet = config("production").fleet;
    assert_eq!(
        env_var(&c, "QUARRY_FLEET__MAX_WORKERS"),
        fleet.max_workers.to_string()
    );
    assert_eq!(
        env_var(&c, "QUARRY_FLEET__ECS__ON_DEMAND_BASE"),
        fleet.ecs.on_demand_base.to_string()
    );
    assert_eq!(
        env_var(&c, "QUARRY_FLEET__ECS__SPOT_SHARE"),
        fleet.ecs.spot_share.to_string()
    );
    assert_eq!(
        env_var(&c, "QUARRY_FLEET__ECS__TASK_DEFINITION"),
        serde_json::json!({"Ref": "WorkerTaskDefinition"})
    );
    assert_eq!(
        env_var(&c, "QUARRY_FLEET__ECS__SUBNETS"),
        serde_json::json!({"Fn::Join": [",", [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]]})
    );
    // A backstop above queue.max_attempts (3): the job row's count decides.
    assert_eq!(
        t["Resources"]["JobQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"],
        quarry_domain::backstop_receives(3)
    );
    assert_eq!(quarry_domain::backstop_receives(3), 6);
}

#[test]
fn production_retains_data_and_staging_deletes_it() {
    let stateful = [
        "DataBucket",
        "Database",
        "DatabaseSecret",
        "JobQueue",
        "DeadLetterQueue",
        "WorkerLogGroup",
        "ApiLogGroup",
        "OrchestratorLogGroup",
    ];
    for (environment, policy) in [("production", "Retain"), ("staging", "Delete")] {
        let t = template_value(environment);
        for id in stateful {
            for attribute in ["DeletionPolicy", "UpdateReplacePolicy"] {
                assert_eq!(
                    t["Resources"][id][attribute], policy,
                    "{environment} {id} {attribute}"
                );
            }
        }
    }
    let production = template_value("production");
    assert_eq!(
        production["Resources"]["Database"]["Properties"]["DeletionProtection"],
        true
    );
    assert_eq!(
        production["Resources"]["Database"]["Properties"]["MultiAZ"],
        true
    );
    let staging = template_value("staging");
    assert_eq!(
        staging["Resources"]["Database"]["Properties"]["DeletionProtection"],
        false
    );
}

#[test]
fn the_dashboard_graphs_every_orchestrator_metric_of_its_environment() {
    let t = template_value("production");
    let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    let metrics: Vec<String> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().unwrap().clone())
        .map(|m| {
            assert_eq!(m[0], "Quarry");
            assert_eq!(m[2], "Environment");
            assert_eq!(m[3], "production");
            m[1].as_str().unwrap().to_owned()
        })
        .collect();
    for name in [
        "queue_visible",
        "queue_in_flight",
        "queue_dead",
        "oldest_job_age_seconds",
        "workers_running",
        "workers_starting",
        "jobs_succeeded",
        "jobs_failed",
        "job_duration_p50_seconds",
        "job_duration_p95_seconds",
        "worker_seconds",
    ] {
        assert!(metrics.iter().any(|m| m == name), "{name} is not graphed");
    }
}

#[test]
fn updates_pass_the_dead_letter_and_failure_rate_alarms_as_rollback_triggers() {
    use quarry_stacks::cloudformation::rollback_configuration;
    use quarry_stacks::stack::StackProps;
    for (environment, minutes) in [("staging", 5), ("production", 15)] {
        let template = template_value(environment);
        let alarm = |logical_id: &str| template["Resources"][logical_id]["Properties"].clone();
        let triggers = StackProps::from_config(&config(environment)).rollback_triggers();
        assert_eq!(
            triggers.alarm_names,
            [
                alarm("DeadLetterAlarm")["AlarmName"].as_str().unwrap(),
                alarm("JobFailureRateAlarm")["AlarmName"].as_str().unwrap(),
            ],
            "{environment}: the triggers are the template's own alarms"
        );
        assert_eq!(
            triggers.monitoring_minutes, minutes,
            "{environment}: from the file"
        );

        // The failure rate: failed ÷ finished over 5 minutes, once enough finished.
        let rate = alarm("JobFailureRateAlarm");
        assert_eq!(rate["Threshold"], 20, "{environment}");
        let metrics = rate["Metrics"].as_array().unwrap();
        let returned: Vec<&Value> = metrics.iter().filter(|m| m["ReturnData"] == true).collect();
        assert_eq!(returned.len(), 1, "one series is compared: {rate}");
        assert_eq!(
            returned[0]["Expression"],
            "IF(failed + succeeded >= 5, 100 * failed / (failed + succeeded), 0)"
        );
        for (id, name) in [("failed", "jobs_failed"), ("succeeded", "jobs_succeeded")] {
            let m = metrics.iter().find(|m| m["Id"] == id).unwrap();
            assert_eq!(m["MetricStat"]["Metric"]["MetricName"], name);
            assert_eq!(
                m["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
                environment
            );
            assert_eq!(m["MetricStat"]["Stat"], "Sum");
        }

        // An update names them by ARN in the stack's own partition, region and account.
        let stack = format!(
            "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/quarry-{environment}/0a1b"
        );
        let config = rollback_configuration(&stack, &triggers).expect("an update's triggers");
        assert_eq!(config.monitoring_time_in_minutes(), Some(minutes as i32));
        let arns: Vec<&str> = config
            .rollback_triggers()
            .iter()
            .map(|t| t.arn().unwrap())
            .collect();
        let expected: Vec<String> = triggers
            .alarm_names
            .iter()
            .map(|n| format!("arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:{n}"))
            .collect();
        assert_eq!(arns, expected);
        assert!(
            config
                .rollback_triggers()
                .iter()
                .all(|t| t.r#type() == Some("AWS::CloudWatch::Alarm"))
        );
        assert!(
            rollback_configuration("", &triggers).is_none(),
            "a stack being created has no alarms to watch yet"
        );
    }
}
