//! Bad props fail synthesis with a message naming the construct, the key, the value and
//! what is allowed.

use crate::helpers::{edited_staging, staging_error};
use quarry_stacks::config::{PRODUCTION, STAGING};
use quarry_stacks::constructs::network::{NetworkMode, NetworkProps};
use quarry_stacks::{StackConfig, StackError, synth};

#[test]
fn a_worker_memory_fargate_does_not_offer_for_its_cpu_is_refused() {
    let message = staging_error("cpu = 1024\nmemory = 4096", "cpu = 1024\nmemory = 3000");
    assert_eq!(
        message,
        "worker fleet: `stack.worker.memory` = 3000 MiB is not a Fargate size for 1024 CPU \
         units: use 2048 to 8192 in steps of 1024"
    );
}

#[test]
fn a_cpu_fargate_does_not_offer_is_refused_with_the_choices() {
    let message = staging_error("cpu = 256\nmemory = 512", "cpu = 300\nmemory = 512");
    assert!(
        message.starts_with("orchestrator: `stack.orchestrator.cpu` = 300 CPU units"),
        "{message}"
    );
    assert!(
        message.contains("use one of 256, 512, 1024, 2048, 4096, 8192, 16384"),
        "{message}"
    );
}

#[test]
fn a_fleet_of_zero_workers_is_refused() {
    let message = staging_error("max_workers = 10", "max_workers = 0");
    assert!(
        message.contains("worker fleet: `fleet.max_workers` = 0 is out of range: use 1 to 1000"),
        "{message}"
    );
}

#[test]
fn a_spot_share_over_100_percent_is_refused() {
    let message = staging_error("spot_share = 100", "spot_share = 150");
    assert!(
        message.contains("`fleet.ecs.spot_share` = 150 % is out of range: use 0 to 100"),
        "{message}"
    );
}

#[test]
fn a_log_retention_cloudwatch_does_not_offer_is_refused_once() {
    let message = staging_error("log_retention_days = 14", "log_retention_days = 10");
    assert!(
        message.starts_with(
            "logs: `stack.log_retention_days` = 10 days is not a CloudWatch Logs retention: \
             use one of 1, 3, 5, 7, 14, 30"
        ),
        "{message}"
    );
    // Shared by three log groups, reported once.
    assert_eq!(
        message.matches("log_retention_days").count(),
        1,
        "{message}"
    );
}

#[test]
fn import_mode_without_subnets_is_refused() {
    let message = staging_error(
        "mode = \"create\"\ncidr = \"10.40.0.0/16\"",
        "mode = \"import\"\nvpc_id = \"vpc-0123456789abcdef0\"",
    );
    assert!(message.starts_with("2 invalid props:"), "{message}");
    assert!(
        message.contains(
            "network: `stack.network.public_subnets` = [] must list at least two subnets in \
             different availability zones for the load balancer"
        ),
        "{message}"
    );
    assert!(
        message.contains("`stack.network.private_subnets` = []"),
        "{message}"
    );
}

#[test]
fn import_mode_refuses_ids_that_are_not_aws_ids() {
    let props = NetworkProps {
        mode: NetworkMode::Import,
        cidr: None,
        vpc_id: Some("my-vpc".to_owned()),
        public_subnets: vec!["subnet-0aaaaaaaaaaaaaaa1".into(), "public-b".into()],
        private_subnets: vec![
            "subnet-0aaaaaaaaaaaaaaa1".into(),
            "subnet-0bbbbbbbbbbbbbbb2".into(),
        ],
    };
    let messages: Vec<String> = props.validate().iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`stack.network.vpc_id` = \"my-vpc\" is not a VPC id")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"public-b\" is not a subnet id")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("appears twice")),
        "{messages:?}"
    );
}

#[test]
fn bad_cidrs_are_refused_with_what_to_write() {
    for (cidr, expected) in [
        ("10.40.0.0/33", "has a /33 prefix: use /16 to /24"),
        ("10.40.0.0/8", "has a /8 prefix: use /16 to /24"),
        (
            "10.40.1.0/16",
            "has host bits set: the block starts at 10.40.0.0/16",
        ),
        ("ten.forty", "is not an IPv4 block: write it as a.b.c.d/n"),
    ] {
        let message = staging_error("cidr = \"10.40.0.0/16\"", &format!("cidr = \"{cidr}\""));
        assert!(
            message.starts_with(&format!(
                "network: `stack.network.cidr` = \"{cidr}\" {expected}"
            )),
            "{message}"
        );
    }
}

#[test]
fn every_bad_prop_is_reported_at_once() {
    let config = edited_staging("dlq_threshold = 1", "dlq_threshold = 0").unwrap();
    let mut config = config;
    config.stack.database.engine_version = "sixteen".to_owned();
    config.stack.database.instance_class = "t4g.micro".to_owned();
    config.stack.api.certificate_arn = Some("my-cert".to_owned());
    config.queue.max_attempts = 0;
    let Err(StackError::InvalidProps(errors)) = synth(&config) else {
        panic!("synthesis should fail on invalid props");
    };
    let props: Vec<&str> = errors.iter().map(|e| e.prop.as_str()).collect();
    for key in [
        "stack.alarms.dlq_threshold",
        "stack.database.engine_version",
        "stack.database.instance_class",
        "stack.api.certificate_arn",
        "queue.max_attempts",
    ] {
        assert!(props.contains(&key), "{key} missing from {props:?}");
    }
}

#[test]
fn production_must_keep_database_backups() {
    let text = PRODUCTION.replacen("backup_retention_days = 14", "backup_retention_days = 0", 1);
    let config = StackConfig::from_toml("production", &text).unwrap();
    let message = synth(&config).unwrap_err().to_string();
    assert!(
        message.contains(
            "database: `stack.database.backup_retention_days` = 0 days is out of range: use 1 \
             to 35 (production keeps backups)"
        ),
        "{message}"
    );
}

#[test]
fn a_typo_under_stack_is_refused_naming_the_key() {
    let message = edited_staging("cpu = 1024\nmemory = 4096", "cpus = 1024\nmemory = 4096")
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("environment `staging`: "), "{message}");
    assert!(message.contains("unknown field `cpus`"), "{message}");
}

#[test]
fn an_environment_without_a_stack_or_with_another_name_is_refused() {
    let message = StackConfig::from_toml(
        "local",
        "[fleet]\nmax_workers = 1\n[queue]\nvisibility_timeout_secs = 60\nmax_attempts = 3\n",
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("has no [stack] section"), "{message}");
    let message = StackConfig::from_toml("production", STAGING)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("the file says `environment = \"staging\"`"),
        "{message}"
    );
    let message = StackConfig::for_environment("local")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "environment `local`: has no stack: use staging or production"
    );
}

#[test]
fn a_bad_stack_name_is_refused() {
    let message = staging_error("name = \"quarry-staging\"", "name = \"quarry_staging\"");
    assert!(
        message.starts_with("stack: `stack.name` = \"quarry_staging\" is not a stack name"),
        "{message}"
    );
}

#[test]
fn rollback_monitoring_past_cloudformations_limit_is_refused() {
    let message = staging_error("monitoring_minutes = 5", "monitoring_minutes = 181");
    assert!(
        message.contains("`stack.rollback.monitoring_minutes` = 181 min")
            && message.contains("0 to 180"),
        "{message}"
    );
    let message = staging_error("failure_rate_percent = 20", "failure_rate_percent = 0");
    assert!(
        message.contains("`stack.alarms.failure_rate_percent` = 0 %"),
        "{message}"
    );
}
