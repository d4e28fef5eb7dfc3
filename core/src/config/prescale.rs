//! `fleet.prescale`: workers launched ahead of the hours the job history says are busy.

use serde::Deserialize;

/// Pre-scaling from history ([`crate::prescale`]): off unless enabled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PreScaleConfig {
    pub enabled: bool,
    /// The weight of the newest week in the learned profile (0 < α ≤ 1).
    pub alpha: f64,
    /// How long before a busy hour its workers are launched (at least the launch time).
    pub lead_secs: u64,
    /// An hour whose expected peak is under this many jobs pre-scales nothing.
    pub min_workers: u64,
    /// Pre-scaled workers wait for work this long into the hour before their idle
    /// time counts.
    pub patience_secs: u64,
    /// The weeks of job history the profile learns from.
    pub history_weeks: u64,
}

impl Default for PreScaleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            alpha: 0.3,
            lead_secs: 60,
            min_workers: 3,
            patience_secs: 600,
            history_weeks: 8,
        }
    }
}
