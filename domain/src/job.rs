//! Jobs: an analysis of a dataset, run by a worker.

use crate::dataset::ColumnInfo;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a job is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job status `{s}`: use queued, running, succeeded, failed or cancelled"
                )
            })
    }
}

/// A job as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub dataset_id: String,
    /// The analysis as submitted (checked against the dataset when it was).
    pub analysis: crate::Analysis,
    pub status: JobStatus,
    /// Attempts so far (1 on the first run). A worker that was stopped and handed
    /// the job back (SIGTERM, a shutdown) does not count.
    pub attempts: u32,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Whether the job gave up after its maximum attempts (the dead-letter state).
    pub dead_letter: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Where the result came from, once there is one: the release, the input's
    /// content hash, the analysis and the engine. `null` until the job succeeds.
    #[serde(default)]
    pub provenance: Option<Provenance>,
    /// The only release whose workers may run it (a re-run on a release, a
    /// promotion gate's check); `null`: any.
    #[serde(default)]
    pub required_release: Option<String>,
    /// The job this one re-runs on another release, if it is a re-run.
    #[serde(default)]
    pub rerun_of: Option<String>,
    /// The environment that ran it, through its API, when it is a re-run on a release
    /// that environment runs (`[control.peers.<env>]`); absent: it ran here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// Where a result came from: enough to tell whether two results were computed alike,
/// and to compute one again the same way. Recorded with the result, in the same
/// transaction, by the worker that computed it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The release of the worker that computed it: the image by digest in the cloud
    /// (set by the ECS task definition), the binary's build id (`build-<12 hex>`) on
    /// the embedded default.
    pub release: String,
    /// The container image it ran in, when it ran in one (the cloud); `null` on the
    /// embedded default.
    pub image: Option<String>,
    /// The worker and the attempt that computed it.
    pub worker: String,
    pub attempt: u32,
    /// The engine that computed it: `quarry-engine <version> (polars <version>)`.
    pub engine: String,
    /// The analysis as it ran.
    pub analysis: crate::Analysis,
    pub dataset: InputProvenance,
    /// RFC 3339, UTC: when the result was committed.
    pub computed_at: String,
}

/// The input of a result, by content.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputProvenance {
    pub id: String,
    /// The SHA-256 of the original file (lowercase hex): the content, not the name.
    /// `null` for datasets stored before content hashes were kept.
    pub sha256: Option<String>,
    /// The original's format.
    pub format: crate::DatasetFormat,
    /// What the analysis read: `typed_copy` (the Parquet copy made at ingest, with
    /// the types below) or `original` (a dataset stored before typed copies).
    pub read: String,
    /// How the original was read into the typed copy (separator, encoding, null
    /// markers, type overrides), as it was when the analysis ran.
    pub ingest: Option<crate::IngestOptions>,
    pub rows: u64,
}

/// One attempt of a job: the delivery a worker ran it under, and how it ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAttempt {
    /// The attempt number (1 for the first). A hand-back gives its number back, so the
    /// attempt after a hand-back has the same number.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// The release that worker runs: the artifact set by the ECS task definition, or
    /// the binary's build id on the embedded default (`build-<12 hex>`).
    pub release: Option<String>,
    pub started_at: String,
    /// `None` while it runs.
    pub ended_at: Option<String>,
    /// `succeeded`, `failed`, `cancelled`, `handed_back` (its worker shut down; the
    /// attempt did not count) or `lost` (the worker stopped without saying); `None`
    /// while it runs.
    pub outcome: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What kind of failure, when it failed or was lost: `data` (the input or the
    /// analysis: not the release's fault), `crash` (a panic, or the worker stopped
    /// without saying), `timeout`, `memory` or `internal`.
    #[serde(default)]
    pub failure: Option<String>,
}

/// Why an attempt failed. Only `data` is never a release's fault: the regression
/// watch counts the others against the release that ran the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The input or the analysis failed it (a type the data does not have, bad SQL at
    /// run time): the user's to fix.
    Data,
    /// The analysis panicked, or the worker died holding it.
    Crash,
    /// It ran past `analyses.max_runtime_secs`.
    Timeout,
    /// It went over `worker.memory_limit_mb`.
    Memory,
    /// Reading the data or writing the result failed.
    Internal,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Data => "data",
            FailureKind::Crash => "crash",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Internal => "internal",
        }
    }
}

/// A page of a job's result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultPage {
    pub columns: Vec<ColumnInfo>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<Object>>))]
    pub rows: Vec<Vec<serde_json::Value>>,
    pub offset: u64,
    pub limit: u64,
    pub total_rows: u64,
}

/// Queue counts, SQS style.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and leased by a worker.
    pub in_flight: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Workers by state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCounts {
    pub running: u64,
    pub starting: u64,
}

/// What the orchestrator decided on one tick.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: String,
    pub visible: u64,
    pub in_flight: u64,
    pub running: u64,
    pub starting: u64,
    pub launch: u64,
    pub reason: String,
}

/// `GET /api/v1/system`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    pub environment: String,
    pub queue: QueueCounts,
    pub workers: FleetCounts,
    pub max_workers: u64,
    pub jobs_per_worker: u64,
    pub last_decision: Option<Decision>,
    /// The release the fleet runs now (declared by the orchestrator when it started);
    /// `null` before any did.
    #[serde(default)]
    pub current_release: Option<String>,
    /// The live workers by release, the current one first: after a deploy, the
    /// workers of the old release drain (each finishes its job and exits).
    #[serde(default)]
    pub releases: Vec<ReleaseFleet>,
    /// Pre-scaling from the job history: whether it is on, and the profile it learned.
    #[serde(default)]
    pub pre_scaling: Option<PreScaling>,
}

/// The pre-scaler (`fleet.prescale`) and the hourly profile it learned from the job
/// history: the orchestrator launches workers `lead_secs` before an hour whose expected
/// peak is at least `min_workers`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreScaling {
    pub enabled: bool,
    pub lead_secs: u64,
    pub min_workers: u64,
    pub patience_secs: u64,
    pub history_weeks: u64,
    /// When the profile was learned (RFC 3339); relearned hourly.
    pub learned_at: String,
    /// Jobs it learned from.
    pub jobs: u64,
    /// The median run time of recent successful jobs, in seconds.
    pub median_secs: f64,
    /// The hours of the week that expect any job (others expect none), Monday first.
    pub hours: Vec<ProfileHour>,
}

/// What one hour of the week is expected to bring.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileHour {
    /// 0 = Monday … 6 = Sunday (UTC).
    pub weekday: u8,
    /// 0 to 23 (UTC).
    pub hour: u8,
    /// Jobs expected to arrive in the hour.
    pub arrivals: f64,
    /// Jobs expected queued or running at once at the hour's peak.
    pub peak: f64,
}

/// The live workers of one release.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFleet {
    /// The release (`null`: workers still starting, which have not said yet).
    pub release: Option<String>,
    /// Whether it is the current release; workers of any other are draining.
    pub current: bool,
    pub workers: Vec<FleetWorker>,
}

/// A live worker and the job it runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetWorker {
    pub id: String,
    /// `starting` or `running`.
    pub state: String,
    /// The job it runs now, if any (the one it started last).
    pub job_id: Option<String>,
    /// Every job it runs now, the first started first (up to `jobs_per_worker`).
    #[serde(default)]
    pub job_ids: Vec<String>,
}

/// Why a queued job is waiting, and roughly for how long.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// 1 = next to start.
    pub position: u64,
    pub workers_running: u64,
    pub workers_starting: u64,
    pub max_workers: u64,
    /// A rough estimate: jobs ahead, spread over the fleet, times the median duration
    /// of recent jobs. `None` until some job has finished.
    pub estimated_start_secs: Option<u64>,
    /// Why it waits, when that is not just the queue: e.g. "you have 4 jobs running;
    /// analyses.max_running_per_user is 4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One message of `GET /api/v1/jobs/{id}/events` (server-sent events, `event: job`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job: Job,
    /// Present while the job is queued.
    pub waiting: Option<Waiting>,
}

impl Waiting {
    /// Estimates the wait of the job at `position`, given the fleet and the median
    /// duration of recent jobs. Workers that are starting take the first jobs; after
    /// that, every `capacity` jobs ahead cost one median duration.
    pub fn estimate(
        position: u64,
        busy: u64,
        capacity: u64,
        median_secs: Option<f64>,
    ) -> Option<u64> {
        let median = median_secs?;
        let capacity = capacity.max(1);
        let free = capacity.saturating_sub(busy);
        if position <= free {
            return Some(0);
        }
        let waves = (position - free).div_ceil(capacity);
        Some((waves as f64 * median).ceil() as u64)
    }
}

/// The queue's own dead-letter limit (SQS `maxReceiveCount`) for jobs tried at most
/// `max_attempts` times. It sits above `max_attempts`, so the job row's attempt count
/// decides when a job has failed for good, with room for deliveries that never
/// started an attempt (a worker killed between receiving and starting, a duplicate
/// deferred). One rule for the embedded queue and the stacks.
pub fn backstop_receives(max_attempts: u32) -> u32 {
    max_attempts.saturating_add(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_estimate_counts_waves_of_the_fleet() {
        assert_eq!(
            Waiting::estimate(3, 0, 4, Some(10.0)),
            Some(0),
            "free slots"
        );
        assert_eq!(Waiting::estimate(1, 4, 4, Some(10.0)), Some(10), "one wave");
        assert_eq!(
            Waiting::estimate(5, 4, 4, Some(10.0)),
            Some(20),
            "two waves"
        );
        assert_eq!(Waiting::estimate(2, 3, 4, Some(7.5)), Some(8));
        assert_eq!(
            Waiting::estimate(9, 4, 4, None),
            None,
            "nothing measured yet"
        );
        assert_eq!(
            Waiting::estimate(1, 0, 0, Some(1.0)),
            Some(0),
            "capacity floor"
        );
    }
}
