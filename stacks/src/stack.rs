//! The top construct level: one stack per environment, composed from the constructs
//! with props taken from the environment file.
//!
//! Order of composition (each construct only refers to logical ids that exist once
//! the template is complete, which [`crate::resource::Template::check_references`]
//! verifies): network, data bucket, job queue, database, worker fleet (cluster and
//! worker task), API service, orchestrator, observability, then the outputs.

use crate::config::StackConfig;
use crate::constructs::api_service::{self, ApiServiceProps};
use crate::constructs::data_bucket::{self, DataBucketProps};
use crate::constructs::database::{self, DatabaseProps};
use crate::constructs::fargate::AppRefs;
use crate::constructs::job_queue::{self, JobQueueProps};
use crate::constructs::network::{self, NetworkProps};
use crate::constructs::observability::{self, ObservabilityProps};
use crate::constructs::orchestrator::{self, OrchestratorProps};
use crate::constructs::worker_fleet::{self, WorkerFleetProps};
use crate::constructs::{RemovalPolicy, check_log_retention};
use crate::error::{PropError, StackError};
use crate::intrinsic::{get_att, ref_, sub};
use crate::resource::{Output, Parameter, Template};

/// The parameter naming the container image every task runs.
pub const IMAGE_PARAMETER: &str = "ImageUri";

/// Every construct's props for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackProps {
    /// The stack's name.
    pub name: String,
    /// The environment's name.
    pub environment: String,
    /// Whether this is production.
    pub production: bool,
    /// What happens to data when it leaves the stack.
    pub removal: RemovalPolicy,
    /// Log retention shared by every log group, validated once.
    pub log_retention_days: u32,
    /// The network.
    pub network: NetworkProps,
    /// The data bucket.
    pub bucket: DataBucketProps,
    /// The job queue and dead-letter queue.
    pub queue: JobQueueProps,
    /// The database.
    pub database: DatabaseProps,
    /// The cluster and workers.
    pub worker: WorkerFleetProps,
    /// The API service.
    pub api: ApiServiceProps,
    /// The orchestrator.
    pub orchestrator: OrchestratorProps,
    /// Alarms and dashboard.
    pub observability: ObservabilityProps,
}

impl StackProps {
    /// Maps the environment file's keys to the constructs' props; every prop the file
    /// does not set keeps its construct's documented default.
    pub fn from_config(config: &StackConfig) -> Self {
        let s = &config.stack;
        let name = s.name.clone();
        let removal = config.removal_policy();
        let deletion = removal.deletion_policy();
        let family = |role: &str| format!("{name}-{role}");
        Self {
            name: name.clone(),
            environment: config.environment.clone(),
            production: config.is_production(),
            removal,
            log_retention_days: s.log_retention_days,
            network: s.network.clone(),
            bucket: DataBucketProps {
                results_expire_days: s.results_expire_days,
                removal: deletion,
                ..DataBucketProps::default()
            },
            queue: JobQueueProps {
                name: format!("{name}-jobs"),
                visibility_timeout_secs: config.queue.visibility_timeout_secs,
                max_attempts: config.queue.max_attempts,
                removal: deletion,
                ..JobQueueProps::default()
            },
            database: s.database.clone(),
            worker: WorkerFleetProps {
                cluster_name: name.clone(),
                family: family("worker"),
                cpu: s.worker.cpu,
                memory: s.worker.memory,
                max_workers: config.fleet.max_workers,
                on_demand_base: config.fleet.ecs.on_demand_base,
                spot_share: config.fleet.ecs.spot_share,
                log_retention_days: s.log_retention_days,
                log_removal: deletion,
                ..WorkerFleetProps::default()
            },
            api: ApiServiceProps {
                family: family("api"),
                cpu: s.api.cpu,
                memory: s.api.memory,
                desired_count: s.api.desired_count,
                certificate_arn: s.api.certificate_arn.clone(),
                log_retention_days: s.log_retention_days,
                log_removal: deletion,
                peers: config.control.peers.keys().cloned().collect(),
                ..ApiServiceProps::default()
            },
            orchestrator: OrchestratorProps {
                family: family("orchestrator"),
                cpu: s.orchestrator.cpu,
                memory: s.orchestrator.memory,
                max_workers: config.fleet.max_workers,
                on_demand_base: config.fleet.ecs.on_demand_base,
                spot_share: config.fleet.ecs.spot_share,
                log_retention_days: s.log_retention_days,
                log_removal: deletion,
            },
            observability: ObservabilityProps {
                name: name.clone(),
                environment: config.environment.clone(),
                oldest_job_age_secs: s.alarms.oldest_job_age_secs,
                dlq_threshold: s.alarms.dlq_threshold,
                failure_rate_percent: s.alarms.failure_rate_percent,
                failure_rate_min_jobs: s.alarms.failure_rate_min_jobs,
                rollback_monitoring_minutes: s.rollback.monitoring_minutes,
            },
        }
    }

    /// The alarms every update of the stack passes to CloudFormation as rollback
    /// triggers, and how long it watches them.
    pub fn rollback_triggers(&self) -> crate::cloudformation::RollbackTriggers {
        crate::cloudformation::RollbackTriggers {
            alarm_names: crate::constructs::observability::rollback_alarm_names(&self.name),
            monitoring_minutes: self.observability.rollback_monitoring_minutes,
        }
    }

    /// Every construct's validation, each problem reported once (the shared log
    /// retention is checked here rather than by each task).
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors = self.network.validate();
        errors.extend(self.bucket.validate());
        errors.extend(self.queue.validate());
        errors.extend(self.database.validate(self.production));
        let retention = |e: &PropError| e.prop == "stack.log_retention_days";
        errors.extend(self.worker.validate().into_iter().filter(|e| !retention(e)));
        errors.extend(self.api.validate().into_iter().filter(|e| !retention(e)));
        errors.extend(
            self.orchestrator
                .validate()
                .into_iter()
                .filter(|e| !retention(e)),
        );
        errors.extend(check_log_retention(
            "logs",
            "stack.log_retention_days",
            self.log_retention_days,
        ));
        errors.extend(self.observability.validate());
        errors
    }

    /// Builds the template; the props must be valid (see [`StackProps::validate`]).
    pub fn build(&self) -> Result<Template, StackError> {
        let mut t = Template::new(&format!(
            "Quarry {} environment ({}): API behind a load balancer, SQS job queue, \
             Fargate workers and orchestrator, Postgres, S3. Synthesized by quarry-stacks \
             from environments/{}.toml; do not edit by hand.",
            self.environment, self.name, self.environment
        ));
        t.add_parameter(
            IMAGE_PARAMETER,
            Parameter {
                type_name: "String".to_owned(),
                description: "The quarry container image every task runs (API, worker, \
                              orchestrator), e.g. <account>.dkr.ecr.<region>.amazonaws.com/\
                              quarry:<git sha>"
                    .to_owned(),
                min_length: Some(1),
            },
        )?;

        let net = network::add(&mut t, &self.name, &self.network)?;
        data_bucket::add(&mut t, &self.bucket)?;
        job_queue::add(&mut t, &self.queue)?;
        let deletion = self.removal.deletion_policy();
        database::add(
            &mut t,
            &self.database,
            self.production,
            deletion,
            &net.vpc,
            &net.private_subnets,
            &[
                "ApiSecurityGroup",
                "WorkerSecurityGroup",
                "OrchestratorSecurityGroup",
            ],
        )?;
        let app = AppRefs {
            environment: self.environment.clone(),
            job_queue: job_queue::QUEUE.to_owned(),
            dead_letter_queue: job_queue::DEAD_LETTER_QUEUE.to_owned(),
            bucket: data_bucket::BUCKET.to_owned(),
            database: database::DATABASE.to_owned(),
            database_secret: database::SECRET.to_owned(),
            cluster: worker_fleet::CLUSTER.to_owned(),
            image_parameter: IMAGE_PARAMETER.to_owned(),
            task_subnets: net.private_subnets.clone(),
            task_subnets_ready: net.private_ready.clone(),
            vpc: net.vpc.clone(),
        };
        let worker = worker_fleet::add(&mut t, &self.worker, &app)?;
        api_service::add(
            &mut t,
            &self.api,
            &app,
            &net.public_subnets,
            &net.public_ready,
        )?;
        orchestrator::add(&mut t, &self.orchestrator, &app, &worker)?;
        observability::add(&mut t, &self.observability, job_queue::DEAD_LETTER_QUEUE)?;

        let scheme = if self.api.certificate_arn.is_some() {
            "https"
        } else {
            "http"
        };
        let lb = api_service::LOAD_BALANCER;
        for (id, description, value) in [
            (
                "ApiUrl",
                "Where the API and web app answer",
                sub(&format!("{scheme}://${{{lb}.DNSName}}")),
            ),
            (
                "LoadBalancerDnsName",
                "The load balancer's DNS name (point a CNAME here)",
                get_att(lb, "DNSName"),
            ),
            ("JobQueueUrl", "The job queue's URL", ref_(job_queue::QUEUE)),
            (
                "DeadLetterQueueUrl",
                "The dead-letter queue's URL",
                ref_(job_queue::DEAD_LETTER_QUEUE),
            ),
            (
                "DataBucketName",
                "The data bucket's name",
                ref_(data_bucket::BUCKET),
            ),
            (
                "ClusterName",
                "The ECS cluster's name",
                ref_(worker_fleet::CLUSTER),
            ),
            (
                "WorkerTaskDefinitionArn",
                "The worker task definition (with its revision)",
                ref_(&worker.task_definition),
            ),
            (
                "ApiServiceName",
                "The API's ECS service",
                get_att(api_service::SERVICE, "Name"),
            ),
            (
                "DatabaseEndpoint",
                "The Postgres endpoint's host name",
                get_att(database::DATABASE, "Endpoint.Address"),
            ),
            (
                "DatabaseSecretArn",
                "The secret holding the database password",
                ref_(database::SECRET),
            ),
        ] {
            t.add_output(id, Output::new(description, value))?;
        }
        t.check_references()?;
        Ok(t)
    }
}
