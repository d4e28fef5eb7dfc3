//! The worker fleet: the ECS cluster every Quarry task runs in, and the worker task
//! the orchestrator launches with `RunTask` (never a service: workers stop themselves
//! when the queue is empty).
//!
//! * `Cluster` (`AWS::ECS::Cluster`, named after the stack): Container Insights on,
//!   capacity providers `FARGATE` and `FARGATE_SPOT`, default strategy = the fleet's
//!   on-demand base and Spot share;
//! * the worker task (see [`super::fargate`]): `WorkerTaskDefinition`,
//!   `WorkerTaskRole`, `WorkerExecutionRole`, `WorkerLogGroup`, `WorkerSecurityGroup`
//!   (no ingress: workers only call out).
//!
//! The worker's task role may take, heartbeat and delete jobs of the job queue,
//! dead-letter to the dead-letter queue, read and write the bucket's objects, write its
//! own logs and publish metrics in the `Quarry` namespace; nothing else.

use super::fargate::{self, AppRefs, TaskIds, TaskSpec, add_security_group};
use super::{check_log_retention, check_range};
use crate::error::{PropError, StackError};
use crate::iam::{Statement, put_metrics_in};
use crate::intrinsic::{arn, get_att};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::{Value, json};

const CONSTRUCT: &str = "worker fleet";

/// The cluster's logical id.
pub const CLUSTER: &str = "Cluster";

/// Props of the worker fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFleetProps {
    /// The cluster's name (the stack's name). Default: `quarry`.
    pub cluster_name: String,
    /// The worker task definition's family. Default: `quarry-worker`.
    pub family: String,
    /// CPU units of one worker (`stack.worker.cpu`). Default: 1024.
    pub cpu: u32,
    /// MiB of one worker (`stack.worker.memory`), a Fargate size for `cpu`.
    /// Default: 4096.
    pub memory: u32,
    /// The share of the task's memory an analysis may use
    /// (`QUARRY_WORKER__MEMORY_LIMIT_MB`), in percent; the rest is for the runtime and
    /// polars' own buffers. Default: 85.
    pub memory_limit_percent: u32,
    /// The most workers the orchestrator runs at once (`fleet.max_workers`).
    /// Default: 4.
    pub max_workers: u32,
    /// Workers always on on-demand Fargate (`fleet.ecs.on_demand_base`). Default: 0.
    pub on_demand_base: u32,
    /// Percent of the workers beyond the base on Fargate Spot
    /// (`fleet.ecs.spot_share`). Default: 100.
    pub spot_share: u32,
    /// Seconds a worker has between SIGTERM (scale-in, Spot interruption) and SIGKILL
    /// to hand its job back; Fargate's maximum is 120. Default: 120.
    pub stop_timeout_secs: u32,
    /// Retention of the worker log group (`stack.log_retention_days`). Default: 30.
    pub log_retention_days: u32,
    /// What happens to the log group when it leaves the stack. Default: `Retain`.
    pub log_removal: DeletionPolicy,
}

impl Default for WorkerFleetProps {
    fn default() -> Self {
        Self {
            cluster_name: "quarry".to_owned(),
            family: "quarry-worker".to_owned(),
            cpu: 1024,
            memory: 4096,
            memory_limit_percent: 85,
            max_workers: 4,
            on_demand_base: 0,
            spot_share: 100,
            stop_timeout_secs: 120,
            log_retention_days: 30,
            log_removal: DeletionPolicy::Retain,
        }
    }
}

impl WorkerFleetProps {
    /// Checks the Fargate size, the fleet's bounds and the log retention.
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors = fargate::check_size(CONSTRUCT, "stack.worker", self.cpu, self.memory);
        errors.extend(
            [
                check_range(
                    CONSTRUCT,
                    "fleet.max_workers",
                    self.max_workers,
                    "",
                    (1, 1000),
                    " (a fleet of zero workers never runs a job)",
                ),
                check_range(
                    CONSTRUCT,
                    "fleet.ecs.spot_share",
                    self.spot_share,
                    "%",
                    (0, 100),
                    " (a percentage)",
                ),
                check_range(
                    CONSTRUCT,
                    "memory_limit_percent",
                    self.memory_limit_percent,
                    "%",
                    (10, 95),
                    "",
                ),
                check_range(
                    CONSTRUCT,
                    "stop_timeout_secs",
                    self.stop_timeout_secs,
                    "s",
                    (2, 120),
                    " (Fargate's limit)",
                ),
                check_log_retention(
                    CONSTRUCT,
                    "stack.log_retention_days",
                    self.log_retention_days,
                ),
            ]
            .into_iter()
            .flatten(),
        );
        if self.on_demand_base > self.max_workers {
            errors.push(PropError::new(
                CONSTRUCT,
                "fleet.ecs.on_demand_base",
                self.on_demand_base,
                format!(
                    "is more than fleet.max_workers ({}): use 0 to {}",
                    self.max_workers, self.max_workers
                ),
            ));
        }
        errors
    }

    /// The memory an analysis may use, MiB.
    pub fn memory_limit_mb(&self) -> u32 {
        self.memory * self.memory_limit_percent / 100
    }
}

/// Adds the cluster and the worker task; returns the worker's ids.
pub fn add(
    template: &mut Template,
    props: &WorkerFleetProps,
    app: &AppRefs,
) -> Result<TaskIds, StackError> {
    template.add_resource(
        CLUSTER,
        Resource::new(
            "AWS::ECS::Cluster",
            json!({
                "ClusterName": props.cluster_name,
                "ClusterSettings": [{ "Name": "containerInsights", "Value": "enabled" }],
                "CapacityProviders": ["FARGATE", "FARGATE_SPOT"],
                "DefaultCapacityProviderStrategy": [
                    {
                        "CapacityProvider": "FARGATE",
                        "Base": props.on_demand_base,
                        "Weight": 100 - props.spot_share.min(100),
                    },
                    { "CapacityProvider": "FARGATE_SPOT", "Weight": props.spot_share.min(100) },
                ],
            }),
        ),
    )?;

    let queue = get_att(&app.job_queue, "Arn");
    let dead_letters = get_att(&app.dead_letter_queue, "Arn");
    let spec = TaskSpec {
        name: "Worker".to_owned(),
        container: "worker".to_owned(),
        command: "worker".to_owned(),
        family: props.family.clone(),
        cpu: props.cpu,
        memory: props.memory,
        log_retention_days: props.log_retention_days,
        log_removal: props.log_removal,
        environment: vec![(
            "QUARRY_WORKER__MEMORY_LIMIT_MB".to_owned(),
            json!(props.memory_limit_mb().to_string()),
        )],
        port: None,
        stop_timeout_secs: Some(props.stop_timeout_secs),
        secrets: Vec::new(),
        statements: vec![
            Statement::allow(
                "TakeJobs",
                &[
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                vec![queue],
            ),
            // GetQueueUrl: the queue adapter finds the dead-letter queue's URL from the
            // RedrivePolicy's ARN.
            Statement::allow(
                "DeadLetterJobs",
                &[
                    "sqs:SendMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                vec![dead_letters],
            ),
            app.bucket_objects("ReadWriteData"),
            Statement::allow(
                "ListData",
                &["s3:ListBucket"],
                vec![get_att(&app.bucket, "Arn")],
            ),
            put_metrics_in(crate::METRICS_NAMESPACE),
        ],
    };
    let ids = fargate::add_task(template, app, &spec)?;
    add_security_group(
        template,
        &ids.security_group,
        "Quarry workers: no inbound traffic, all outbound",
        &app.vpc,
        Vec::new(),
    )?;
    Ok(ids)
}

/// The ARN pattern of the cluster's tasks, for policies.
pub fn task_arns() -> Value {
    arn("ecs", &format!("task/${{{CLUSTER}}}/*"))
}
