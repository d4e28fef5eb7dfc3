//! The regression watch: after a deploy or a promotion, compare how the new release's
//! job attempts fare with the previous release's, over the same kinds of job, and roll
//! back by itself when the new one fails beyond `[control.regression]
//! threshold_points` (after at least `min_jobs` attempts, within `window_minutes` of
//! the release): the rollback returns to the last good release, rejects the
//! regressed artifact (so no promotion brings it back) and holds the environment, with
//! the numbers in the reason.
//!
//! Only the release's own faults count: attempts that crashed (a panic, or a worker
//! that died), timed out, ran out of memory or hit an internal error. Bad input is
//! refused at submit and never runs; an attempt the data or the analysis failed
//! (`data`) counts on neither side, nor do hand-backs and cancellations.
//!
//! The watch reads the attempts in the database this control plane runs with, by the
//! release's image: the attempts of the environment this server runs as (production's
//! API service watching production, an embedded server's own workers). An environment
//! whose workers record elsewhere shows no attempts here, and is never rolled back for
//! want of data.

use super::ControlPlane;
use super::ops::{self, Actor};
use quarry_core::clock::{now_ms, parse_rfc3339};
use quarry_core::control::environments;
use quarry_core::{Result, jobs, releases};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Who the watch's rollbacks are recorded as.
pub const WATCH: &str = "regression-watch";

/// Attempts by analysis kind: (counted, failed through the release's fault).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub by_kind: BTreeMap<String, (u64, u64)>,
}

impl Health {
    /// From the attempts' (analysis kind, whether the release failed it).
    pub fn of(attempts: &[jobs::CountedAttempt]) -> Self {
        let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for a in attempts {
            let e = by_kind.entry(a.kind.clone()).or_default();
            e.0 += 1;
            e.1 += u64::from(a.failed);
        }
        Self { by_kind }
    }

    pub fn attempts(&self) -> u64 {
        self.by_kind.values().map(|v| v.0).sum()
    }

    pub fn failed(&self) -> u64 {
        self.by_kind.values().map(|v| v.1).sum()
    }

    /// Failed ÷ counted, 0 without attempts.
    pub fn rate(&self) -> f64 {
        match self.attempts() {
            0 => 0.0,
            n => self.failed() as f64 / n as f64,
        }
    }
}

/// A regression, with the numbers that show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// The new release's failure rate (0 to 1) over `attempts`.
    pub rate: f64,
    pub attempts: u64,
    pub failed: u64,
    /// The previous release's rate over the new release's mix of kinds (0 to 1).
    pub expected: f64,
    pub baseline_attempts: u64,
}

/// Whether `new` regressed from `old` by more than `threshold_points` percentage
/// points, judged once `new` has `min_jobs` attempts. The previous release's rate is
/// taken per kind and weighted by the new release's mix, so a release that happens to
/// run more of a fragile kind is not blamed for it; a kind the previous release never
/// ran is expected at its overall rate.
pub fn regressed(
    new: &Health,
    old: &Health,
    threshold_points: u32,
    min_jobs: u32,
) -> Option<Regression> {
    let attempts = new.attempts();
    if attempts == 0 || attempts < u64::from(min_jobs) {
        return None;
    }
    let overall = old.rate();
    let expected = new
        .by_kind
        .iter()
        .map(|(kind, (n, _))| {
            let r = match old.by_kind.get(kind) {
                Some((m, f)) if *m > 0 => *f as f64 / *m as f64,
                _ => overall,
            };
            *n as f64 * r
        })
        .sum::<f64>()
        / attempts as f64;
    let rate = new.rate();
    ((rate - expected) * 100.0 > f64::from(threshold_points)).then_some(Regression {
        rate,
        attempts,
        failed: new.failed(),
        expected,
        baseline_attempts: old.attempts(),
    })
}

impl Regression {
    /// The rollback's reason.
    pub fn reason(&self, release: &str, previous: &str, threshold_points: u32) -> String {
        format!(
            "regression watch: {:.0}% of release {release}'s attempts failed ({} of {}) \
             against {:.0}% expected from release {previous} ({} attempts), more than the \
             {threshold_points} points allowed ([control.regression] threshold_points)",
            self.rate * 100.0,
            self.failed,
            self.attempts,
            self.expected * 100.0,
            self.baseline_attempts
        )
    }
}

impl ControlPlane {
    /// Runs the watch every `every` until the process ends.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) {
        let plane = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let names: Vec<String> = plane
                    .environments()
                    .iter()
                    .map(|e| e.name.clone())
                    .collect();
                for env in names {
                    if let Err(e) = plane.watch(&env).await {
                        tracing::warn!(environment = %env, error = %e, "the regression watch could not check");
                    }
                }
            }
        });
    }

    /// Checks `env`'s current release once; rolls it back on a regression. Returns
    /// the rollback's release id when it rolled back.
    pub async fn watch(self: &Arc<Self>, env: &str) -> Result<Option<String>> {
        let def = self.env(env)?.clone();
        let cfg = def.config.control.regression;
        if !cfg.enabled {
            return Ok(None);
        }
        let state = environments::get(&self.db, env).await?;
        let Some(current_id) = state.current_release_id else {
            return Ok(None);
        };
        let current = releases::get(&self.db, &current_id).await?;
        if current.kind == "rollback" || current.outcome != "succeeded" {
            return Ok(None);
        }
        let Some(previous_id) = current.previous_release_id.clone() else {
            return Ok(None);
        };
        let previous = releases::get(&self.db, &previous_id).await?;
        if previous.image == current.image {
            return Ok(None);
        }
        let (Some(since), now) = (parse_rfc3339(&current.started_at), now_ms()) else {
            return Ok(None);
        };
        let window = i64::from(cfg.window_minutes) * 60_000;
        if now > since + window {
            return Ok(None);
        }
        let new = Health::of(&jobs::counted_attempts(&self.db, &current.image, since, now).await?);
        // The previous release over the same length of time before this one.
        let before = parse_rfc3339(&previous.started_at).unwrap_or(since - window);
        let old = Health::of(
            &jobs::counted_attempts(&self.db, &previous.image, before.max(since - window), since)
                .await?,
        );
        let Some(regression) = regressed(&new, &old, cfg.threshold_points, cfg.min_jobs) else {
            return Ok(None);
        };
        let reason = regression.reason(&current.image, &previous.image, cfg.threshold_points);
        tracing::warn!(environment = %env, release = %current.id, %reason, "rolling back a regressed release");
        let who = Actor {
            name: WATCH.to_owned(),
            admin: false,
        };
        match ops::rollback(self, env, None, true, &reason, &who, false).await {
            Ok(release) => Ok(Some(release.id)),
            // Frozen, already changing, or nothing to return to: said in the log, and
            // tried again next time.
            Err(e @ quarry_core::Error::Conflict(_)) => {
                tracing::warn!(environment = %env, error = %e, "the regression watch could not roll back");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(kinds: &[(&str, u64, u64)]) -> Health {
        Health {
            by_kind: kinds
                .iter()
                .map(|(k, n, f)| ((*k).to_owned(), (*n, *f)))
                .collect(),
        }
    }

    #[test]
    fn a_release_failing_far_more_than_its_predecessor_regressed() {
        let old = health(&[("aggregate", 100, 2)]);
        let new = health(&[("aggregate", 10, 10)]);
        let r = regressed(&new, &old, 20, 5).expect("a regression");
        assert_eq!((r.attempts, r.failed, r.baseline_attempts), (10, 10, 100));
        assert!((r.rate - 1.0).abs() < 1e-12 && (r.expected - 0.02).abs() < 1e-12);
        let reason = r.reason("v2", "v1", 20);
        assert!(
            reason.contains("100% of release v2's attempts failed (10 of 10)"),
            "{reason}"
        );
        assert!(
            reason.contains("against 2% expected from release v1 (100 attempts)"),
            "{reason}"
        );
    }

    #[test]
    fn too_few_attempts_or_a_small_rise_is_not_a_regression() {
        let old = health(&[("aggregate", 100, 10)]);
        assert_eq!(
            regressed(&health(&[("aggregate", 4, 4)]), &old, 20, 5),
            None
        );
        assert_eq!(
            regressed(&health(&[("aggregate", 10, 3)]), &old, 20, 5),
            None,
            "30% against 10% is 20 points, not more"
        );
        assert!(regressed(&health(&[("aggregate", 10, 4)]), &old, 20, 5).is_some());
    }

    #[test]
    fn the_previous_rate_is_weighted_by_the_new_mix_of_kinds() {
        // The old release failed half its SQL jobs and no aggregate.
        let old = health(&[("sql", 10, 5), ("aggregate", 90, 0)]);
        // The new one runs mostly SQL and fails as often as the old one did at SQL.
        let new = health(&[("sql", 18, 9), ("aggregate", 2, 0)]);
        assert_eq!(regressed(&new, &old, 20, 5), None, "same health, other mix");
        // A kind the old release never ran is expected at its overall rate (5%).
        let new = health(&[("histogram", 10, 1)]);
        assert_eq!(regressed(&new, &old, 20, 5), None);
        let r = regressed(&health(&[("histogram", 10, 4)]), &old, 20, 5).expect("regressed");
        assert!((r.expected - 0.05).abs() < 1e-12, "{r:?}");
    }
}
