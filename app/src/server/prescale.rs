//! The pre-scaler's learned profile for `GET /api/v1/system` and the system page:
//! learned from the job history by the same code the orchestrator runs
//! ([`quarry_core::prescale::learn_from_jobs`]), shared with an in-process
//! orchestrator and relearned once an hour.

use super::state::Services;
use quarry_core::clock::{now_ms, rfc3339};
use quarry_core::prescale::{Learned, learn_from_jobs, weekday_hour};
use quarry_domain::{PreScaling, ProfileHour};

/// How long a learned profile is shown before it is learned again.
const RELEARN_MS: i64 = 3_600_000;

/// The pre-scaler's settings and the profile, learning it first if it is missing or
/// an hour old.
pub async fn view(s: &Services) -> quarry_core::Result<PreScaling> {
    let c = &s.config.fleet.prescale;
    let now = now_ms();
    let mut learned = s.learned.lock().await;
    let l: &Learned = match &mut *learned {
        Some(l) if now - l.at_ms < RELEARN_MS => l,
        slot => slot.insert(learn_from_jobs(&s.db, c, now).await?),
    };
    // Any Monday 00:00 UTC: 1970-01-05.
    const MONDAY: i64 = 4 * 86_400;
    let hours = l
        .profile
        .week()
        .into_iter()
        .enumerate()
        .filter(|(_, e)| e.arrivals > 0.0 || e.peak > 0.0)
        .map(|(i, e)| {
            let (weekday, hour) = weekday_hour(MONDAY + i as i64 * 3_600);
            ProfileHour {
                weekday: weekday as u8,
                hour: hour as u8,
                arrivals: round(e.arrivals),
                peak: round(e.peak),
            }
        })
        .collect();
    Ok(PreScaling {
        enabled: c.enabled,
        lead_secs: c.lead_secs,
        min_workers: c.min_workers,
        patience_secs: c.patience_secs,
        history_weeks: c.history_weeks,
        learned_at: rfc3339(l.at_ms),
        jobs: l.jobs as u64,
        median_secs: round(l.median_secs),
        hours,
    })
}

/// Two decimals are all a reader needs.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
