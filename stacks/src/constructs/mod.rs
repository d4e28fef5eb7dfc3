//! The middle construct level: each construct is a `Props` struct with documented
//! defaults, a `validate()` that names the bad key and what is allowed, and an `add`
//! function that puts its resources into a [`Template`](crate::resource::Template)
//! under stable logical ids and returns the ids other constructs wire to.
//!
//! Constructs never read the environment file themselves: [`crate::stack`] maps the
//! file's keys to props, so each construct can be built and tested on its own.

pub mod api_service;
pub mod data_bucket;
pub mod database;
pub mod fargate;
pub mod job_queue;
pub mod network;
pub mod observability;
pub mod orchestrator;
pub mod worker_fleet;

use crate::error::PropError;
use crate::resource::DeletionPolicy;

/// The values CloudWatch Logs accepts for `RetentionInDays`.
pub const LOG_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// What happens to stateful resources (data) when they leave the stack or are
/// replaced; chosen per environment (see [`crate::config::StackConfig::removal_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalPolicy {
    /// Keep the data (production): `DeletionPolicy` and `UpdateReplacePolicy` `Retain`.
    Retain,
    /// Delete the data with the stack (staging): `Delete`.
    Delete,
}

impl RemovalPolicy {
    /// The CloudFormation policy for stateful resources.
    pub fn deletion_policy(self) -> DeletionPolicy {
        match self {
            Self::Retain => DeletionPolicy::Retain,
            Self::Delete => DeletionPolicy::Delete,
        }
    }
}

/// Checks a log retention against the values CloudWatch Logs accepts.
pub fn check_log_retention(construct: &'static str, key: &str, days: u32) -> Option<PropError> {
    (!LOG_RETENTION_DAYS.contains(&days)).then(|| {
        let allowed: Vec<String> = LOG_RETENTION_DAYS.iter().map(u32::to_string).collect();
        PropError::new(
            construct,
            key,
            format!("{days} days"),
            format!(
                "is not a CloudWatch Logs retention: use one of {}",
                allowed.join(", ")
            ),
        )
    })
}

/// Checks that `value` lies in `min..=max`.
pub fn check_range(
    construct: &'static str,
    key: &str,
    value: u32,
    unit: &str,
    (min, max): (u32, u32),
    why: &str,
) -> Option<PropError> {
    (value < min || value > max).then(|| {
        let shown = if unit.is_empty() {
            value.to_string()
        } else {
            format!("{value} {unit}")
        };
        PropError::new(
            construct,
            key,
            shown,
            format!("is out of range: use {min} to {max}{why}"),
        )
    })
}
