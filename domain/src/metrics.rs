//! The metric names and namespace, the one definition the orchestrator (which records
//! them), the CloudWatch adapter, the system page's graphs and the stacks' alarms and
//! dashboards share.

/// The CloudWatch namespace every Quarry metric is published under (dimension
/// `Environment`).
pub const NAMESPACE: &str = "Quarry";

/// Jobs waiting in the queue (visible messages).
pub const QUEUE_VISIBLE: &str = "queue_visible";
/// Jobs leased by a worker (in-flight messages).
pub const QUEUE_IN_FLIGHT: &str = "queue_in_flight";
/// Dead-lettered messages.
pub const QUEUE_DEAD: &str = "queue_dead";
/// Age of the oldest job that has not finished.
pub const OLDEST_JOB_AGE_SECONDS: &str = "oldest_job_age_seconds";
/// Workers running.
pub const WORKERS_RUNNING: &str = "workers_running";
/// Workers launched and not yet running.
pub const WORKERS_STARTING: &str = "workers_starting";
/// Workers launched by one tick.
pub const WORKERS_LAUNCHED: &str = "workers_launched";
/// Jobs started since the last tick.
pub const JOBS_STARTED: &str = "jobs_started";
/// Jobs that succeeded since the last tick.
pub const JOBS_SUCCEEDED: &str = "jobs_succeeded";
/// Jobs that failed since the last tick.
pub const JOBS_FAILED: &str = "jobs_failed";
/// Mean run time of the jobs that finished since the last tick.
pub const JOB_DURATION_SECONDS: &str = "job_duration_seconds";
/// Median run time of those jobs.
pub const JOB_DURATION_P50_SECONDS: &str = "job_duration_p50_seconds";
/// 95th percentile run time of those jobs.
pub const JOB_DURATION_P95_SECONDS: &str = "job_duration_p95_seconds";
/// Worker time used since the last tick (what the fleet costs).
pub const WORKER_SECONDS: &str = "worker_seconds";
