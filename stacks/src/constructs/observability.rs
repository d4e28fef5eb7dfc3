//! Observability: three alarms and one dashboard.
//!
//! * `DeadLetterAlarm`: the dead-letter queue holds `dlq_threshold` letters or more
//!   (SQS's `ApproximateNumberOfMessagesVisible`, 5-minute maximum);
//! * `JobFailureRateAlarm`: more than `failure_rate_percent` of the jobs that finished
//!   in 5 minutes failed, when at least `failure_rate_min_jobs` finished (metric math
//!   over the orchestrator's `jobs_failed` and `jobs_succeeded`);
//! * `OldestJobAgeAlarm`: the oldest waiting job has waited more than
//!   `oldest_job_age_secs` for three minutes in a row (the orchestrator's
//!   `oldest_job_age_seconds` metric; missing data keeps the alarm's state);
//! * `Dashboard`: the orchestrator's metrics (namespace `Quarry`, dimension
//!   `Environment`): queue depth, oldest job, fleet size, throughput, durations and
//!   worker time, the body a deterministic JSON string.
//!
//! The alarms have no actions yet: subscribe to them in the console or add a topic.
//! The dead-letter and failure-rate alarms are also the stack's CloudFormation rollback
//! triggers ([`rollback_alarm_names`]): an update during which either fires is rolled
//! back by CloudFormation itself.

use super::check_range;
use crate::error::{PropError, StackError};
use crate::intrinsic::{get_att, sub};
use crate::resource::{Resource, Template, to_compact_json};
use quarry_domain::metrics as metric;
use serde_json::{Value, json};

const CONSTRUCT: &str = "observability";

/// Props of the alarms and dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservabilityProps {
    /// Prefix of the alarm names and the dashboard's name (the stack's name).
    /// Default: `quarry`.
    pub name: String,
    /// The `Environment` dimension of Quarry's metrics. Default: `staging`.
    pub environment: String,
    /// Alarm when the oldest waiting job is older than this
    /// (`stack.alarms.oldest_job_age_secs`), 60 to 86400. Default: 900.
    pub oldest_job_age_secs: u32,
    /// Alarm when the dead-letter queue holds this many letters
    /// (`stack.alarms.dlq_threshold`), at least 1. Default: 1.
    pub dlq_threshold: u32,
    /// Alarm when more than this percent of the finished jobs failed
    /// (`stack.alarms.failure_rate_percent`), 1 to 100. Default: 20.
    pub failure_rate_percent: u32,
    /// …over at least this many finished jobs in 5 minutes
    /// (`stack.alarms.failure_rate_min_jobs`), at least 1. Default: 5.
    pub failure_rate_min_jobs: u32,
    /// How long CloudFormation watches the rollback triggers after an update's last
    /// resource (`stack.rollback.monitoring_minutes`), 0 to 180. Default: 10.
    pub rollback_monitoring_minutes: u32,
}

/// The names of the alarms the stack's updates pass to CloudFormation as rollback
/// triggers: the dead letters and the job failure rate.
pub fn rollback_alarm_names(name: &str) -> Vec<String> {
    vec![
        format!("{name}-dead-letters"),
        format!("{name}-job-failure-rate"),
    ]
}

impl Default for ObservabilityProps {
    fn default() -> Self {
        Self {
            name: "quarry".to_owned(),
            environment: "staging".to_owned(),
            oldest_job_age_secs: 900,
            dlq_threshold: 1,
            failure_rate_percent: 20,
            failure_rate_min_jobs: 5,
            rollback_monitoring_minutes: 10,
        }
    }
}

impl ObservabilityProps {
    /// Checks the thresholds.
    pub fn validate(&self) -> Vec<PropError> {
        [
            check_range(
                CONSTRUCT,
                "stack.alarms.oldest_job_age_secs",
                self.oldest_job_age_secs,
                "s",
                (60, 86_400),
                " (the orchestrator samples once per tick)",
            ),
            check_range(
                CONSTRUCT,
                "stack.alarms.dlq_threshold",
                self.dlq_threshold,
                "letters",
                (1, 100_000),
                "",
            ),
            check_range(
                CONSTRUCT,
                "stack.alarms.failure_rate_percent",
                self.failure_rate_percent,
                "%",
                (1, 100),
                "",
            ),
            check_range(
                CONSTRUCT,
                "stack.rollback.monitoring_minutes",
                self.rollback_monitoring_minutes,
                "min",
                (0, 180),
                " (CloudFormation's limit)",
            ),
            check_range(
                CONSTRUCT,
                "stack.alarms.failure_rate_min_jobs",
                self.failure_rate_min_jobs,
                "jobs",
                (1, 100_000),
                "",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The dashboard's graphs: title, statistic, metric names.
const GRAPHS: [(&str, &str, &[&str]); 6] = [
    (
        "Queue depth",
        "Maximum",
        &[
            metric::QUEUE_VISIBLE,
            metric::QUEUE_IN_FLIGHT,
            metric::QUEUE_DEAD,
        ],
    ),
    (
        "Oldest waiting job (s)",
        "Maximum",
        &[metric::OLDEST_JOB_AGE_SECONDS],
    ),
    (
        "Workers",
        "Maximum",
        &[metric::WORKERS_RUNNING, metric::WORKERS_STARTING],
    ),
    (
        "Jobs finished",
        "Sum",
        &[metric::JOBS_SUCCEEDED, metric::JOBS_FAILED],
    ),
    (
        "Job duration (s)",
        "Average",
        &[
            metric::JOB_DURATION_P50_SECONDS,
            metric::JOB_DURATION_P95_SECONDS,
        ],
    ),
    ("Worker time (s)", "Sum", &[metric::WORKER_SECONDS]),
];

/// The dashboard's body: two graphs per row; the region comes from `Fn::Sub`.
pub fn dashboard_body(environment: &str) -> String {
    let widgets: Vec<Value> = GRAPHS
        .iter()
        .enumerate()
        .map(|(i, (title, stat, metrics))| {
            let metrics: Vec<Value> = metrics
                .iter()
                .map(|m| json!([crate::METRICS_NAMESPACE, m, "Environment", environment]))
                .collect();
            json!({
                "type": "metric",
                "x": (i % 2) * 12,
                "y": (i / 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "view": "timeSeries",
                    "stacked": false,
                    "region": "${AWS::Region}",
                    "stat": stat,
                    "period": 60,
                    "metrics": metrics,
                },
            })
        })
        .collect();
    to_compact_json(&json!({ "widgets": widgets }))
}

/// Adds the alarms and the dashboard. `dead_letter_queue` is the queue's logical id.
pub fn add(
    template: &mut Template,
    props: &ObservabilityProps,
    dead_letter_queue: &str,
) -> Result<(), StackError> {
    template.add_resource(
        "DeadLetterAlarm",
        Resource::new(
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmName": format!("{}-dead-letters", props.name),
                "AlarmDescription": format!(
                    "Quarry {}: {} or more jobs in the dead-letter queue; they failed every \
                     attempt (see the jobs page)",
                    props.environment, props.dlq_threshold
                ),
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{
                    "Name": "QueueName",
                    "Value": get_att(dead_letter_queue, "QueueName"),
                }],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": props.dlq_threshold - 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            }),
        ),
    )?;
    let jobs = |id: &str, name: &str| {
        json!({
            "Id": id,
            "ReturnData": false,
            "MetricStat": {
                "Metric": {
                    "Namespace": crate::METRICS_NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [{ "Name": "Environment", "Value": props.environment }],
                },
                "Period": 300,
                "Stat": "Sum",
            },
        })
    };
    template.add_resource(
        "JobFailureRateAlarm",
        Resource::new(
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmName": format!("{}-job-failure-rate", props.name),
                "AlarmDescription": format!(
                    "Quarry {}: more than {}% of the jobs that finished in 5 minutes failed \
                     (at least {} finished); a release that breaks jobs rolls back",
                    props.environment, props.failure_rate_percent, props.failure_rate_min_jobs
                ),
                "Metrics": [
                    jobs("failed", metric::JOBS_FAILED),
                    jobs("succeeded", metric::JOBS_SUCCEEDED),
                    {
                        "Id": "rate",
                        "Label": "Failed jobs (%)",
                        "ReturnData": true,
                        "Expression": format!(
                            "IF(failed + succeeded >= {}, 100 * failed / (failed + succeeded), 0)",
                            props.failure_rate_min_jobs
                        ),
                    },
                ],
                "EvaluationPeriods": 1,
                "Threshold": props.failure_rate_percent,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            }),
        ),
    )?;
    template.add_resource(
        "OldestJobAgeAlarm",
        Resource::new(
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmName": format!("{}-oldest-job-age", props.name),
                "AlarmDescription": format!(
                    "Quarry {}: a job has waited more than {} s; the fleet is too small, \
                     at its maximum or not starting",
                    props.environment, props.oldest_job_age_secs
                ),
                "Namespace": crate::METRICS_NAMESPACE,
                "MetricName": metric::OLDEST_JOB_AGE_SECONDS,
                "Dimensions": [{ "Name": "Environment", "Value": props.environment }],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 3,
                "DatapointsToAlarm": 3,
                "Threshold": props.oldest_job_age_secs,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "missing",
            }),
        ),
    )?;
    template.add_resource(
        "Dashboard",
        Resource::new(
            "AWS::CloudWatch::Dashboard",
            json!({
                "DashboardName": props.name,
                "DashboardBody": sub(&dashboard_body(&props.environment)),
            }),
        ),
    )
}
