//! Environment parameters: the `[stack]` section of `environments/<name>.toml`, plus the
//! few runtime keys the stack must agree with (`[queue]` and `[fleet]`).
//!
//! The same file configures the running tasks (`quarry_core::config`), so the queue's
//! visibility timeout and retries, and the fleet's size and Spot mix, are written once.
//! Every other runtime key is ignored here; unknown keys under `[stack]` are refused,
//! since a typo there would silently fall back to nothing.
//!
//! Parsing only checks shapes and types; [`StackConfig::validate`] (run by
//! [`crate::synth`]) checks values, construct by construct.

use crate::constructs::RemovalPolicy;
use crate::constructs::database::DatabaseProps;
use crate::constructs::network::NetworkProps;
use crate::error::{PropError, StackError, collect};
use serde::Deserialize;
use std::path::Path;

/// `environments/staging.toml`, compiled in.
pub const STAGING: &str = include_str!("../../environments/staging.toml");
/// `environments/production.toml`, compiled in.
pub const PRODUCTION: &str = include_str!("../../environments/production.toml");

/// The environments that have a stack, with their compiled-in files.
pub const ENVIRONMENTS: [(&str, &str); 2] = [
    (quarry_domain::environments::STAGING, STAGING),
    (quarry_domain::environments::PRODUCTION, PRODUCTION),
];

/// Everything the stack of one environment is synthesized from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// The environment's name (`staging`, `production`): `QUARRY_ENV` of the tasks and
    /// the `Environment` dimension of the metrics. `production` retains data.
    pub environment: String,
    /// The `[stack]` section.
    pub stack: StackSection,
    /// The runtime's `[fleet]` keys the stack uses.
    pub fleet: FleetSection,
    /// The runtime's `[queue]` keys the stack uses.
    pub queue: QueueSection,
    /// `[control]`: the environment's place in the control plane.
    pub control: ControlSection,
}

/// `[control]`: where an environment's artifacts come from and who must approve them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ControlSection {
    /// The environment whose successfully running artifact is promoted here; absent:
    /// artifacts are deployed here directly.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Approvals a promotion here needs, each by someone other than the requester.
    #[serde(default)]
    pub approvals: u32,
    /// Hours a promotion waits for its approvals before it expires.
    #[serde(default = "default_approval_expiry_hours")]
    pub approval_expiry_hours: u32,
    /// `[control.regression]`: the watch that rolls back a release whose jobs fail
    /// more than the previous release's.
    #[serde(default)]
    pub regression: RegressionSection,
    /// `[control.peers.<env>]`: the other environments whose APIs this environment's
    /// control plane calls (reference checks and re-runs run there). The stack gives
    /// the API task a secret per peer for the token (`PeerToken<Env>`).
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, PeerSection>,
}

/// `[control.peers.<env>]`: the runtime reads it; the stack only needs its name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct PeerSection {
    /// The peer's API root; empty = the `ApiUrl` output of its stack.
    #[serde(default)]
    pub url: String,
}

/// `[control.regression]`: after a deploy or a promotion, a release whose job attempts
/// fail (crashes, timeouts, memory and internal errors; never the data's fault) more
/// than the previous release's over the same kinds of job, by more than
/// `threshold_points` percentage points once `min_jobs` attempts have ended, within
/// `window_minutes` of the release, is rolled back to the last good release, its
/// artifact rejected and the environment held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_threshold_points")]
    pub threshold_points: u32,
    #[serde(default = "default_min_jobs")]
    pub min_jobs: u32,
    #[serde(default = "default_window_minutes")]
    pub window_minutes: u32,
}

impl Default for RegressionSection {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold_points: default_threshold_points(),
            min_jobs: default_min_jobs(),
            window_minutes: default_window_minutes(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_threshold_points() -> u32 {
    20
}

fn default_min_jobs() -> u32 {
    20
}

fn default_window_minutes() -> u32 {
    60
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            upstream: None,
            approvals: 0,
            approval_expiry_hours: default_approval_expiry_hours(),
            regression: RegressionSection::default(),
            peers: std::collections::BTreeMap::new(),
        }
    }
}

fn default_approval_expiry_hours() -> u32 {
    24
}

/// `[stack]`: sizes and policies of the environment's infrastructure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackSection {
    /// The CloudFormation stack's name; also names the cluster, queues, log groups,
    /// task families, alarms and dashboard. Letters, digits and `-`, at most 32.
    pub name: String,
    /// `retain` or `delete`: what happens to data (bucket, database, secret, queues,
    /// logs) when it leaves the stack. Absent: `retain` in production, else `delete`.
    #[serde(default)]
    pub removal_policy: Option<RemovalPolicy>,
    /// Days every log group keeps its logs (a CloudWatch Logs retention value).
    pub log_retention_days: u32,
    /// Days after which results (`results/…` in the bucket) expire.
    pub results_expire_days: u32,
    /// `[stack.network]`.
    pub network: NetworkProps,
    /// `[stack.api]`.
    pub api: ApiSection,
    /// `[stack.worker]`.
    pub worker: TaskSection,
    /// `[stack.orchestrator]`.
    pub orchestrator: TaskSection,
    /// `[stack.database]`.
    pub database: DatabaseProps,
    /// `[stack.alarms]`.
    pub alarms: AlarmsSection,
    /// `[stack.rollback]`: CloudFormation's own guard on every update.
    #[serde(default)]
    pub rollback: RollbackSection,
    /// `[[stack.suppress]]`: policy findings accepted, each with its reason.
    #[serde(default)]
    pub suppress: Vec<Suppression>,
}

/// A Fargate task's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// CPU units (1024 = one vCPU).
    pub cpu: u32,
    /// MiB.
    pub memory: u32,
}

/// `[stack.api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// CPU units of one API task.
    pub cpu: u32,
    /// MiB of one API task.
    pub memory: u32,
    /// API tasks kept running.
    pub desired_count: u32,
    /// An ACM certificate ARN to serve HTTPS on 443; absent = HTTP on 80 only.
    #[serde(default)]
    pub certificate_arn: Option<String>,
}

/// `[stack.alarms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsSection {
    /// Alarm when the oldest waiting job is older than this many seconds.
    pub oldest_job_age_secs: u32,
    /// Alarm when the dead-letter queue holds this many letters.
    pub dlq_threshold: u32,
    /// Alarm when more than this percent of the jobs that finished in 5 minutes failed…
    #[serde(default = "default_failure_rate_percent")]
    pub failure_rate_percent: u32,
    /// …and at least this many finished (fewer say nothing about a release).
    #[serde(default = "default_failure_rate_min_jobs")]
    pub failure_rate_min_jobs: u32,
}

fn default_failure_rate_percent() -> u32 {
    20
}

fn default_failure_rate_min_jobs() -> u32 {
    5
}

/// `[stack.rollback]`: the alarms CloudFormation watches during and after each stack
/// update (the dead-letter and job-failure-rate alarms), rolling the update back if
/// one fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackSection {
    /// How long CloudFormation keeps watching after the update's last resource, in
    /// minutes (0 to 180; 0 = only while the resources update).
    pub monitoring_minutes: u32,
}

impl Default for RollbackSection {
    fn default() -> Self {
        Self {
            monitoring_minutes: 10,
        }
    }
}

/// `[[stack.suppress]]`: one accepted policy finding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// The rule's id, e.g. `no-iam-star` (see [`crate::policy::Rule`]).
    pub rule: String,
    /// The logical id of the resource, e.g. `ApiTaskRole`.
    pub resource: String,
    /// Why the finding is acceptable; required and shown in every report.
    #[serde(default)]
    pub reason: String,
}

/// The runtime's `[fleet]` keys the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct FleetSection {
    /// The most workers the orchestrator runs at once.
    pub max_workers: u32,
    /// `[fleet.ecs]`.
    #[serde(default)]
    pub ecs: FleetEcsSection,
}

/// The runtime's `[fleet.ecs]` keys the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct FleetEcsSection {
    /// Workers always on on-demand Fargate. Absent: 0 (as in the runtime).
    #[serde(default)]
    pub on_demand_base: u32,
    /// Percent of the workers beyond the base on Fargate Spot. Absent: 100.
    #[serde(default = "all_spot")]
    pub spot_share: u32,
}

impl Default for FleetEcsSection {
    fn default() -> Self {
        Self {
            on_demand_base: 0,
            spot_share: all_spot(),
        }
    }
}

fn all_spot() -> u32 {
    100
}

/// The runtime's `[queue]` keys the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QueueSection {
    /// Seconds a received job stays invisible (the SQS queue's `VisibilityTimeout`).
    pub visibility_timeout_secs: u32,
    /// Deliveries before a job is dead-lettered (`maxReceiveCount`).
    pub max_attempts: u32,
}

/// The file's shape, other sections ignored.
#[derive(Deserialize)]
struct EnvFile {
    #[serde(default)]
    environment: Option<String>,
    stack: Option<StackSection>,
    fleet: FleetSection,
    queue: QueueSection,
    #[serde(default)]
    control: ControlSection,
}

impl StackConfig {
    /// The compiled-in configuration of `environment` (`staging` or `production`).
    pub fn for_environment(environment: &str) -> Result<Self, StackError> {
        let (_, text) = ENVIRONMENTS
            .iter()
            .find(|(name, _)| *name == environment)
            .ok_or_else(|| StackError::Config {
                environment: environment.to_owned(),
                message: "has no stack: use staging or production".to_owned(),
            })?;
        Self::from_toml(environment, text)
    }

    /// Parses an environment file's text (e.g. an edited copy of `staging.toml`).
    /// Checks shapes and types only; see [`StackConfig::validate`].
    pub fn from_toml(environment: &str, text: &str) -> Result<Self, StackError> {
        let fail = |message: String| StackError::Config {
            environment: environment.to_owned(),
            message,
        };
        let name_ok = !environment.is_empty()
            && environment.len() <= 32
            && environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(fail(
                "is not an environment name: use 1 to 32 lowercase letters, digits or -".to_owned(),
            ));
        }
        let file: EnvFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        if let Some(named) = file.environment.as_deref()
            && named != environment
        {
            return Err(fail(format!(
                "the file says `environment = \"{named}\"`: synthesize it as {named}, or fix \
                 the key"
            )));
        }
        let stack = file
            .stack
            .ok_or_else(|| fail("has no [stack] section: it is not deployed to AWS".to_owned()))?;
        Ok(Self {
            environment: environment.to_owned(),
            stack,
            fleet: file.fleet,
            queue: file.queue,
            control: file.control,
        })
    }

    /// Reads and parses an environment file.
    pub fn from_file(environment: &str, path: &Path) -> Result<Self, StackError> {
        let text = std::fs::read_to_string(path).map_err(|e| StackError::Config {
            environment: environment.to_owned(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_toml(environment, &text)
    }

    /// Whether this is production, where data is retained and deletion-protected.
    pub fn is_production(&self) -> bool {
        self.environment == quarry_domain::environments::PRODUCTION
    }

    /// The removal policy of stateful resources: `stack.removal_policy`, or by default
    /// `retain` in production and `delete` elsewhere.
    pub fn removal_policy(&self) -> RemovalPolicy {
        self.stack
            .removal_policy
            .unwrap_or(if self.is_production() {
                RemovalPolicy::Retain
            } else {
                RemovalPolicy::Delete
            })
    }

    /// Checks every value: the stack's name, the suppressions, then each construct's
    /// props. Collects every problem.
    pub fn validate(&self) -> Result<(), StackError> {
        let mut errors = self.validate_own();
        errors.extend(crate::stack::StackProps::from_config(self).validate());
        collect(errors)
    }

    fn validate_own(&self) -> Vec<PropError> {
        let mut errors = Vec::new();
        let name = &self.stack.name;
        let name_ok = name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok {
            errors.push(PropError::new(
                "stack",
                "stack.name",
                format!("{name:?}"),
                "is not a stack name: use a letter then up to 31 letters, digits or - \
                 (it also names the cluster, queues and log groups)",
            ));
        }
        errors.extend(suppression_errors(&self.stack.suppress));
        errors
    }
}

/// The problems of the `[[stack.suppress]]` entries: a missing reason, a missing rule
/// or resource, an unknown rule.
pub fn suppression_errors(suppressions: &[Suppression]) -> Vec<PropError> {
    let mut errors = Vec::new();
    for (i, s) in suppressions.iter().enumerate() {
        let key = |k: &str| format!("stack.suppress[{i}].{k}");
        if s.reason.trim().is_empty() {
            errors.push(PropError::new(
                "policy suppressions",
                key("reason"),
                format!("{:?}", s.reason),
                format!(
                    "is empty: say why rule `{}` does not apply to `{}`",
                    s.rule, s.resource
                ),
            ));
        }
        if crate::policy::Rule::from_id(&s.rule).is_none() {
            let ids: Vec<&str> = crate::policy::Rule::ALL.iter().map(|r| r.id()).collect();
            errors.push(PropError::new(
                "policy suppressions",
                key("rule"),
                format!("{:?}", s.rule),
                format!("is not a policy rule: use one of {}", ids.join(", ")),
            ));
        }
        if s.resource.trim().is_empty() {
            errors.push(PropError::new(
                "policy suppressions",
                key("resource"),
                format!("{:?}", s.resource),
                "is empty: name the logical id of the resource",
            ));
        }
    }
    errors
}
