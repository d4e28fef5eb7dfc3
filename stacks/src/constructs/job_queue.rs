//! The job queue and its dead-letter queue.
//!
//! Two `AWS::SQS::Queue`s, both encrypted with SQS-managed keys: `JobQueue`
//! (`<stack>-jobs`), whose `RedrivePolicy` moves a message received
//! [`quarry_domain::backstop_receives`]`(max_attempts)` times to `DeadLetterQueue`
//! (`<stack>-jobs-dlq`), which keeps it 14 days. That limit is a backstop above
//! `max_attempts`: the job row's attempt count decides when a job has failed, so a
//! Spot interruption's hand-back never uses one up. Workers read the dead-letter
//! queue's ARN back from the `RedrivePolicy`.

use super::check_range;
use crate::error::{PropError, StackError};
use crate::intrinsic::get_att;
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::json;

const CONSTRUCT: &str = "job queue";

/// The job queue's logical id.
pub const QUEUE: &str = "JobQueue";
/// The dead-letter queue's logical id.
pub const DEAD_LETTER_QUEUE: &str = "DeadLetterQueue";

const DAY_SECS: u32 = 24 * 3600;

/// Props of the job queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQueueProps {
    /// The queue's name; the dead-letter queue adds `-dlq`. Default: `quarry-jobs`.
    pub name: String,
    /// How long a received job stays invisible to other workers
    /// (`queue.visibility_timeout_secs`). SQS allows 0 to 43200; Quarry needs at least 2
    /// (workers heartbeat at half of it). Default: 120.
    pub visibility_timeout_secs: u32,
    /// Attempts before a job is dead-lettered (`queue.max_attempts`; the queue's
    /// `maxReceiveCount` is set above it), 1 to 997. Default: 3.
    pub max_attempts: u32,
    /// How long a job may wait in the queue, in days (SQS allows up to 14). Default: 4,
    /// SQS's own default.
    pub retention_days: u32,
    /// How long a dead letter is kept, in days; at least `retention_days`, since SQS
    /// keeps a message's original enqueue time when it moves it. Default: 14.
    pub dead_letter_retention_days: u32,
    /// What happens to both queues (and waiting jobs) when they leave the stack.
    /// Default: `Retain`.
    pub removal: DeletionPolicy,
}

impl Default for JobQueueProps {
    fn default() -> Self {
        Self {
            name: "quarry-jobs".to_owned(),
            visibility_timeout_secs: 120,
            max_attempts: 3,
            retention_days: 4,
            dead_letter_retention_days: 14,
            removal: DeletionPolicy::Retain,
        }
    }
}

impl JobQueueProps {
    /// Checks the SQS limits and that dead letters outlive waiting jobs.
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors: Vec<PropError> = [
            check_range(
                CONSTRUCT,
                "queue.visibility_timeout_secs",
                self.visibility_timeout_secs,
                "s",
                (2, 43_200),
                " (SQS's maximum is 12 hours; workers heartbeat at half of it)",
            ),
            check_range(
                CONSTRUCT,
                "queue.max_attempts",
                self.max_attempts,
                "",
                (1, 997),
                " (SQS's maxReceiveCount, at most 1000, is set 3 above it)",
            ),
            check_range(
                CONSTRUCT,
                "retention_days",
                self.retention_days,
                "days",
                (1, 14),
                " (SQS keeps messages at most 14 days)",
            ),
            check_range(
                CONSTRUCT,
                "dead_letter_retention_days",
                self.dead_letter_retention_days,
                "days",
                (1, 14),
                " (SQS keeps messages at most 14 days)",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if self.dead_letter_retention_days < self.retention_days {
            errors.push(PropError::new(
                CONSTRUCT,
                "dead_letter_retention_days",
                format!("{} days", self.dead_letter_retention_days),
                format!(
                    "is shorter than the job queue's {} days: a redriven job would expire \
                     early, use at least that",
                    self.retention_days
                ),
            ));
        }
        let name_ok = !self.name.is_empty()
            && self.name.len() + 4 <= 80
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            errors.push(PropError::new(
                CONSTRUCT,
                "name",
                format!("{:?}", self.name),
                "is not an SQS queue name: use 1 to 76 letters, digits, - or _",
            ));
        }
        errors
    }
}

/// Adds both queues.
pub fn add(template: &mut Template, props: &JobQueueProps) -> Result<(), StackError> {
    template.add_resource(
        DEAD_LETTER_QUEUE,
        Resource::new(
            "AWS::SQS::Queue",
            json!({
                "QueueName": format!("{}-dlq", props.name),
                "SqsManagedSseEnabled": true,
                "MessageRetentionPeriod": props.dead_letter_retention_days * DAY_SECS,
            }),
        )
        .removal(props.removal),
    )?;
    template.add_resource(
        QUEUE,
        Resource::new(
            "AWS::SQS::Queue",
            json!({
                "QueueName": props.name,
                "SqsManagedSseEnabled": true,
                "VisibilityTimeout": props.visibility_timeout_secs,
                "MessageRetentionPeriod": props.retention_days * DAY_SECS,
                "RedrivePolicy": {
                    "deadLetterTargetArn": get_att(DEAD_LETTER_QUEUE, "Arn"),
                    "maxReceiveCount": quarry_domain::backstop_receives(props.max_attempts),
                },
            }),
        )
        .removal(props.removal),
    )
}
