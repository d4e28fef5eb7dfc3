//! Pre-scaling from history: how many jobs arrive in each hour of the week and how many
//! are in the system at once at its peak, learned as exponentially weighted profiles,
//! and how many workers to have ready before an hour it expects to be busy.
//!
//! Launching a Fargate task takes 30–45 s, a daily surge takes the fleet by surprise
//! every morning, and the scaling policy only sees a queue once it has grown. The
//! profile keeps, for every (weekday, hour) of the week, that hour's arrivals and its
//! peak (jobs queued or running at once), folded in week after week
//! (`expected = α · this week + (1 − α) · before`), and the same by hour of day over
//! every day, which answers for a weekday not seen yet (a surge seen on Monday at 09:00
//! is expected on Tuesday at 09:00 too).
//!
//! Within `lead` seconds before an hour begins, the workers wanted for it are the jobs
//! it will run at once: the expected arrivals × the median job duration ÷ 3600 (Little's
//! law, right when arrivals spread over the hour), or the expected peak when that is
//! higher (a surge comes within minutes, which the hourly count cannot show), divided by
//! `jobs_per_worker`. An hour whose peak is under `min_workers` pre-scales nothing: the
//! queue's own scaling serves it. Times are Unix seconds in UTC; Monday 00:00 begins the
//! week.

use crate::Db;
use crate::config::PreScaleConfig;
use crate::error::Result;

/// The most jobs the profile learns from (the newest, within the history weeks).
pub const HISTORY_LIMIT: u32 = 200_000;

/// A profile learned from the jobs table, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub at_ms: i64,
    pub profile: Profile,
    /// The median run time of the last 1,000 jobs that succeeded (0 without any).
    pub median_secs: f64,
    /// Jobs it learned from.
    pub jobs: usize,
}

/// Learns the profile at `now_ms` from the jobs created in the last
/// `history_weeks` (at most [`HISTORY_LIMIT`] of them, the newest).
pub async fn learn_from_jobs(db: &Db, config: &PreScaleConfig, now_ms: i64) -> Result<Learned> {
    let weeks = i64::try_from(config.history_weeks).unwrap_or(52);
    let from_ms = now_ms - weeks * 7 * 86_400_000;
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT created_at, finished_at FROM jobs WHERE created_at >= $1 \
         ORDER BY created_at DESC LIMIT $2",
    )
    .bind(from_ms)
    .bind(i64::from(HISTORY_LIMIT))
    .fetch_all(db.pool())
    .await?;
    let secs: Vec<(i64, Option<i64>)> = rows
        .iter()
        .map(|&(created, finished)| (created / 1000, finished.map(|f| f / 1000)))
        .collect();
    let profile = Profile::learn(config.alpha, &secs, from_ms / 1000, now_ms / 1000);
    let median_secs = crate::jobs::recent_median_secs(db, 1000)
        .await?
        .unwrap_or(0.0);
    Ok(Learned {
        at_ms: now_ms,
        profile,
        median_secs,
        jobs: rows.len(),
    })
}

/// Hours in a week.
pub const WEEK_HOURS: usize = 7 * 24;

/// The learned arrivals and peaks per hour of the week.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    alpha: f64,
    /// Expected arrivals and peak in each (weekday, hour), Monday 00:00 first; `None`
    /// until seen.
    by_week_hour: Vec<Option<Expected>>,
    /// The same by hour of the day over every day.
    by_day_hour: [Option<Expected>; 24],
}

/// What an hour is expected to bring.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Expected {
    /// Jobs arriving in the hour.
    pub arrivals: f64,
    /// The most jobs queued or running at once during the hour.
    pub peak: f64,
}

/// A pre-scaling decision: how many workers to have ready for the hour beginning at
/// `hour_start`, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ahead {
    pub workers: u64,
    pub hour_start: i64,
    pub expected: Expected,
    pub median_duration_secs: f64,
}

impl Ahead {
    /// The decision in words, for the system page's last decision.
    pub fn explain(&self) -> String {
        let (weekday, hour) = weekday_hour(self.hour_start);
        format!(
            "{:.1} jobs expected {} {hour:02}:00–{:02}:00 UTC (median {:.0} s), {:.1} at once at the peak: {} workers ready ahead",
            self.expected.arrivals,
            WEEKDAYS[weekday],
            (hour + 1) % 24,
            self.median_duration_secs,
            self.expected.peak,
            self.workers
        )
    }
}

/// Monday first, as the profile's slots.
pub const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The weekday (Monday = 0) and hour of `unix` seconds, in UTC.
pub fn weekday_hour(unix: i64) -> (usize, usize) {
    let days = unix.div_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 3).rem_euclid(7) as usize;
    let hour = (unix.rem_euclid(86_400) / 3_600) as usize;
    (weekday, hour)
}

/// The start of the hour holding `unix`.
pub fn hour_start(unix: i64) -> i64 {
    unix - unix.rem_euclid(3_600)
}

impl Profile {
    /// An empty profile; `alpha` (0 < α ≤ 1) is the weight of the newest week.
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha: alpha.clamp(0.01, 1.0),
            by_week_hour: vec![None; WEEK_HOURS],
            by_day_hour: [None; 24],
        }
    }

    /// Folds in one finished hour: `arrivals` jobs came in the hour beginning at
    /// `hour_start` (Unix seconds), and at most `peak` were queued or running at once.
    pub fn observe(&mut self, hour_start: i64, arrivals: u64, peak: u64) {
        let (weekday, hour) = weekday_hour(hour_start);
        let a = self.alpha;
        let (n, p) = (arrivals as f64, peak as f64);
        let fold = |old: Option<Expected>| {
            Some(old.map_or(
                Expected {
                    arrivals: n,
                    peak: p,
                },
                |o| Expected {
                    arrivals: a * n + (1.0 - a) * o.arrivals,
                    peak: a * p + (1.0 - a) * o.peak,
                },
            ))
        };
        let slot = weekday * 24 + hour;
        self.by_week_hour[slot] = fold(self.by_week_hour[slot]);
        self.by_day_hour[hour] = fold(self.by_day_hour[hour]);
    }

    /// The profile of the jobs `jobs` (each arrival and, once it ended, its end; Unix
    /// seconds, any order) over the whole hours from `from` up to `to`: what the
    /// orchestrator learns from the jobs table.
    pub fn learn(alpha: f64, jobs: &[(i64, Option<i64>)], from: i64, to: i64) -> Self {
        let mut profile = Self::new(alpha);
        // From the first job on: the empty weeks before a new installation's first job
        // say nothing about the weeks after it.
        let earliest = jobs.iter().map(|&(arrived, _)| arrived).min().unwrap_or(to);
        let first = hour_start(from.max(earliest));
        let hours = ((to - first) / 3_600).max(0) as usize;
        let mut arrivals = vec![0u64; hours];
        let mut peaks = vec![0u64; hours];
        // Jobs in the system over time: +1 at each arrival, -1 at each end.
        let mut events: Vec<(i64, i64)> = Vec::with_capacity(jobs.len() * 2);
        for &(arrived, ended) in jobs {
            events.push((arrived, 1));
            if let Some(e) = ended {
                events.push((e.max(arrived), -1));
            }
            if arrived >= first
                && let Some(c) = arrivals.get_mut(((arrived - first) / 3_600) as usize)
            {
                *c += 1;
            }
        }
        // Ends before arrivals at the same second.
        events.sort_unstable();
        let mut level: i64 = 0;
        let mut events = events.into_iter().peekable();
        for (h, peak) in peaks.iter_mut().enumerate() {
            let start = first + h as i64 * 3_600;
            while let Some(&(t, d)) = events.peek() {
                if t > start {
                    break;
                }
                level += d;
                events.next();
            }
            let mut top = level;
            while let Some(&(t, d)) = events.peek() {
                if t >= start + 3_600 {
                    break;
                }
                level += d;
                top = top.max(level);
                events.next();
            }
            *peak = top.max(0) as u64;
        }
        for h in 0..hours {
            profile.observe(first + h as i64 * 3_600, arrivals[h], peaks[h]);
        }
        profile
    }

    /// What the hour beginning at `hour_start` is expected to bring.
    pub fn expected(&self, hour_start: i64) -> Expected {
        let (weekday, hour) = weekday_hour(hour_start);
        self.by_week_hour[weekday * 24 + hour]
            .or(self.by_day_hour[hour])
            .unwrap_or_default()
    }

    /// Every hour of the week with what it expects, Monday 00:00 first (for the
    /// system page).
    pub fn week(&self) -> Vec<Expected> {
        // Any Monday 00:00 UTC: 1970-01-05.
        const MONDAY: i64 = 4 * 86_400;
        (0..WEEK_HOURS as i64)
            .map(|h| self.expected(MONDAY + h * 3_600))
            .collect()
    }

    /// The workers to have ready at `now`: non-zero only within `lead_secs` before an
    /// hour that expects at least `min_workers` at its peak.
    pub fn ahead(
        &self,
        now: i64,
        lead_secs: i64,
        median_duration_secs: f64,
        jobs_per_worker: u64,
        min_workers: u64,
    ) -> Option<Ahead> {
        let next = hour_start(now) + 3_600;
        if next - now > lead_secs.max(0) {
            return None;
        }
        let expected = self.expected(next);
        let little =
            (expected.arrivals * median_duration_secs.max(0.0) / 3_600.0).min(expected.arrivals);
        let at_once = little.max(expected.peak);
        let workers = (at_once / jobs_per_worker.max(1) as f64).round() as u64;
        (expected.peak.round() as u64 >= min_workers.max(1) && workers > 0).then_some(Ahead {
            workers,
            hour_start: next,
            expected,
            median_duration_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-01-05 00:00 UTC.
    const MONDAY: i64 = 1_767_571_200;

    #[test]
    fn weekdays_and_hours_are_read_in_utc_with_monday_first() {
        assert_eq!(weekday_hour(MONDAY), (0, 0));
        assert_eq!(weekday_hour(MONDAY + 9 * 3_600 + 59), (0, 9));
        assert_eq!(weekday_hour(MONDAY + 6 * 86_400 + 23 * 3_600), (6, 23));
        assert_eq!(weekday_hour(MONDAY + 7 * 86_400), (0, 0));
        assert_eq!(weekday_hour(0), (3, 0), "1970-01-01 was a Thursday");
    }

    #[test]
    fn the_profile_weighs_the_newest_week_by_alpha() {
        let nine = MONDAY + 9 * 3_600;
        let mut p = Profile::new(0.5);
        p.observe(nine, 40, 30);
        assert_eq!(
            p.expected(nine),
            Expected {
                arrivals: 40.0,
                peak: 30.0
            }
        );
        p.observe(nine + 7 * 86_400, 20, 10);
        assert_eq!(
            p.expected(nine),
            Expected {
                arrivals: 30.0,
                peak: 20.0
            },
            "0.5 × this week + 0.5 × before"
        );
        assert_eq!(
            p.expected(nine + 3_600),
            Expected::default(),
            "an hour never seen"
        );
    }

    #[test]
    fn a_weekday_not_seen_yet_expects_what_the_same_hour_brought_on_other_days() {
        let mut p = Profile::new(0.3);
        p.observe(MONDAY + 9 * 3_600, 60, 40);
        let tuesday_nine = MONDAY + 86_400 + 9 * 3_600;
        assert_eq!(p.expected(tuesday_nine).arrivals, 60.0);
        p.observe(tuesday_nine, 30, 20);
        assert_eq!(
            p.expected(tuesday_nine).arrivals,
            30.0,
            "Tuesday's own history first"
        );
    }

    #[test]
    fn learning_from_jobs_counts_each_hour_and_its_peak() {
        // 30 jobs from 09:00, one a minute, each 10 minutes long: 10 at once at most
        // (from 09:09); one job from 07:30 running until 09:05 is in the 08:00 hour and
        // the start of the 09:00 hour (6 at once at 09:04).
        let mut jobs: Vec<(i64, Option<i64>)> = (0..30)
            .map(|i| {
                let t = MONDAY + 9 * 3_600 + i * 60;
                (t, Some(t + 600))
            })
            .collect();
        jobs.push((MONDAY + 7 * 3_600 + 1_800, Some(MONDAY + 9 * 3_600 + 300)));
        jobs.push((MONDAY + 10 * 3_600 + 5, None));
        let p = Profile::learn(0.3, &jobs, MONDAY - 8 * 7 * 86_400, MONDAY + 86_400);
        assert_eq!(
            p.expected(MONDAY + 9 * 3_600),
            Expected {
                arrivals: 30.0,
                peak: 10.0
            },
            "the weeks before the first job do not count"
        );
        assert_eq!(
            p.expected(MONDAY + 8 * 3_600),
            Expected {
                arrivals: 0.0,
                peak: 1.0
            }
        );
        assert_eq!(
            p.expected(MONDAY + 7 * 3_600),
            Expected {
                arrivals: 1.0,
                peak: 1.0
            }
        );
        // A job still running holds its place to the end of the window.
        assert_eq!(p.expected(MONDAY + 23 * 3_600).peak, 1.0);
        let week = p.week();
        assert_eq!(week.len(), WEEK_HOURS);
        assert_eq!(week[9].arrivals, 30.0);
    }

    #[test]
    fn workers_are_wanted_only_within_the_lead_before_a_busy_hour() {
        let mut p = Profile::new(0.3);
        // 60 jobs of a median 10 minutes spread over the hour: 10 at once.
        p.observe(MONDAY + 9 * 3_600, 60, 10);
        let before = MONDAY + 9 * 3_600 - 50;
        let ahead = p.ahead(before, 60, 600.0, 1, 3).expect("within the lead");
        assert_eq!(ahead.workers, 10);
        assert!(
            ahead.explain().contains("Mon 09:00–10:00"),
            "{}",
            ahead.explain()
        );
        assert_eq!(p.ahead(before, 2, 600.0, 1, 3), None, "too early");
        assert_eq!(p.ahead(before, 60, 600.0, 4, 3).map(|a| a.workers), Some(3));
        // A surge within minutes: its peak, not the hour's average, says how many.
        p.observe(MONDAY + 10 * 3_600, 40, 35);
        assert_eq!(
            p.ahead(MONDAY + 10 * 3_600 - 30, 60, 600.0, 1, 3)
                .map(|a| a.workers),
            Some(35)
        );
        // A quiet hour is left to the queue's own scaling.
        p.observe(MONDAY + 13 * 3_600, 4, 2);
        assert_eq!(p.ahead(MONDAY + 13 * 3_600 - 30, 60, 600.0, 1, 3), None);
    }
}
