//! The orchestrator: `quarry orchestrator` as an always-on Fargate service of one task,
//! which watches the queue and launches workers with `RunTask` (it never stops them).
//!
//! * the orchestrator task (see [`super::fargate`], logical ids `Orchestrator…`), with
//!   `OrchestratorSecurityGroup` (no ingress);
//! * `OrchestratorService` (`AWS::ECS::Service`): one task, replaced stop-first
//!   (`MaximumPercent` 100) so that two orchestrators never scale the fleet at once.
//!
//! Its task role may run the worker task definition in the cluster and nothing else,
//! tag the tasks it starts, list and describe the cluster's tasks, pass exactly the
//! worker's two roles to ECS, read both queues' counts, read (receive and re-hide) the
//! dead letters to fail their jobs, publish metrics in the `Quarry` namespace and write
//! its own logs. Its environment names the fleet: cluster, task definition, subnets,
//! security group, Spot share and on-demand base, and the largest fleet.

use super::check_log_retention;
use super::fargate::{self, AppRefs, TaskIds, TaskSpec, add_security_group};
use super::worker_fleet::task_arns;
use crate::error::{PropError, StackError};
use crate::iam::{Statement, put_metrics_in};
use crate::intrinsic::{get_att, join, ref_};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::json;

const CONSTRUCT: &str = "orchestrator";

/// The service's logical id.
pub const SERVICE: &str = "OrchestratorService";

/// Props of the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestratorProps {
    /// The task definition's family. Default: `quarry-orchestrator`.
    pub family: String,
    /// CPU units (`stack.orchestrator.cpu`). Default: 256.
    pub cpu: u32,
    /// MiB (`stack.orchestrator.memory`). Default: 512.
    pub memory: u32,
    /// The most workers it runs at once (`fleet.max_workers`). Default: 4.
    pub max_workers: u32,
    /// Workers always on on-demand Fargate (`fleet.ecs.on_demand_base`). Default: 0.
    pub on_demand_base: u32,
    /// Percent of the workers beyond the base on Spot (`fleet.ecs.spot_share`).
    /// Default: 100.
    pub spot_share: u32,
    /// Retention of its log group (`stack.log_retention_days`). Default: 30.
    pub log_retention_days: u32,
    /// What happens to the log group when it leaves the stack. Default: `Retain`.
    pub log_removal: DeletionPolicy,
}

impl Default for OrchestratorProps {
    fn default() -> Self {
        Self {
            family: "quarry-orchestrator".to_owned(),
            cpu: 256,
            memory: 512,
            max_workers: 4,
            on_demand_base: 0,
            spot_share: 100,
            log_retention_days: 30,
            log_removal: DeletionPolicy::Retain,
        }
    }
}

impl OrchestratorProps {
    /// Checks the Fargate size and the log retention (the fleet's numbers are checked
    /// by the worker fleet, which owns them).
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors =
            fargate::check_size(CONSTRUCT, "stack.orchestrator", self.cpu, self.memory);
        errors.extend(check_log_retention(
            CONSTRUCT,
            "stack.log_retention_days",
            self.log_retention_days,
        ));
        errors
    }
}

/// Adds the orchestrator's task and service. `worker` are the worker task's ids.
pub fn add(
    template: &mut Template,
    props: &OrchestratorProps,
    app: &AppRefs,
    worker: &TaskIds,
) -> Result<TaskIds, StackError> {
    let cluster_arn = get_att(&app.cluster, "Arn");
    let in_cluster = json!({ "ArnEquals": { "ecs:cluster": cluster_arn } });
    let queues = vec![
        get_att(&app.job_queue, "Arn"),
        get_att(&app.dead_letter_queue, "Arn"),
    ];
    let fleet_env = [
        (
            "QUARRY_FLEET__MAX_WORKERS",
            json!(props.max_workers.to_string()),
        ),
        ("QUARRY_FLEET__ECS__CLUSTER", ref_(&app.cluster)),
        (
            "QUARRY_FLEET__ECS__TASK_DEFINITION",
            ref_(&worker.task_definition),
        ),
        (
            "QUARRY_FLEET__ECS__SUBNETS",
            join(",", app.task_subnets.clone()),
        ),
        (
            "QUARRY_FLEET__ECS__SECURITY_GROUPS",
            ref_(&worker.security_group),
        ),
        ("QUARRY_FLEET__ECS__ASSIGN_PUBLIC_IP", json!("false")),
        (
            "QUARRY_FLEET__ECS__ON_DEMAND_BASE",
            json!(props.on_demand_base.to_string()),
        ),
        (
            "QUARRY_FLEET__ECS__SPOT_SHARE",
            json!(props.spot_share.to_string()),
        ),
    ];
    let spec = TaskSpec {
        name: "Orchestrator".to_owned(),
        container: "orchestrator".to_owned(),
        command: "orchestrator".to_owned(),
        family: props.family.clone(),
        cpu: props.cpu,
        memory: props.memory,
        log_retention_days: props.log_retention_days,
        log_removal: props.log_removal,
        environment: fleet_env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        port: None,
        stop_timeout_secs: None,
        secrets: Vec::new(),
        statements: vec![
            Statement::allow(
                "RunWorkers",
                &["ecs:RunTask"],
                vec![ref_(&worker.task_definition)],
            )
            .when(in_cluster.clone()),
            // RunTask tags the workers it starts, which needs TagResource on them.
            Statement::allow("TagWorkers", &["ecs:TagResource"], vec![task_arns()])
                .when(json!({ "StringEquals": { "ecs:CreateAction": "RunTask" } })),
            Statement::allow("ListWorkers", &["ecs:ListTasks"], vec![json!("*")])
                .when(in_cluster.clone()),
            Statement::allow("DescribeWorkers", &["ecs:DescribeTasks"], vec![task_arns()])
                .when(in_cluster),
            Statement::allow(
                "PassWorkerRoles",
                &["iam:PassRole"],
                vec![
                    get_att(&worker.task_role, "Arn"),
                    get_att(&worker.execution_role, "Arn"),
                ],
            )
            .when(json!({ "StringEquals": { "iam:PassedToService": "ecs-tasks.amazonaws.com" } })),
            Statement::allow(
                "CountJobs",
                &["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                queues,
            ),
            Statement::allow(
                "ReadDeadLetters",
                &["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"],
                vec![get_att(&app.dead_letter_queue, "Arn")],
            ),
            put_metrics_in(crate::METRICS_NAMESPACE),
        ],
    };
    let ids = fargate::add_task(template, app, &spec)?;
    add_security_group(
        template,
        &ids.security_group,
        "Quarry orchestrator: no inbound traffic, all outbound",
        &app.vpc,
        Vec::new(),
    )?;
    template.add_resource(
        SERVICE,
        Resource::new(
            "AWS::ECS::Service",
            json!({
                "Cluster": ref_(&app.cluster),
                "LaunchType": "FARGATE",
                "TaskDefinition": ref_(&ids.task_definition),
                "DesiredCount": 1,
                "NetworkConfiguration": fargate::network_configuration(app, &ids.security_group),
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 0,
                    "MaximumPercent": 100,
                    "DeploymentCircuitBreaker": { "Enable": true, "Rollback": true },
                },
            }),
        )
        // Tasks need their subnets' routes to pull the image.
        .depends_on_all(&app.task_subnets_ready),
    )?;
    Ok(ids)
}
