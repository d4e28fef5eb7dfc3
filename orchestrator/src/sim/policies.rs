//! The policies the simulator compares: Quarry's own (the real [`decide`], with and
//! without pre-scaling) and the scaling people would otherwise configure, each as its
//! documentation describes it. The baselines run services that keep a desired count:
//! they replace a task that goes (a Spot interruption), and they scale in by stopping
//! tasks, whatever those are running.

use super::trace::Trace;
use super::world::{Action, View};
use super::{Baselines, Config};
use crate::policy::{Observation, decide};
use quarry_core::prescale::{Profile, hour_start};
use std::collections::VecDeque;

/// Monday 2026-01-05 00:00 UTC: where a trace's week begins, for the pre-scaler.
pub const TRACE_MONDAY: i64 = 1_767_571_200;

/// A scaling policy, asked every simulated second.
pub(super) trait Policy {
    fn act(&mut self, v: &View) -> Action;
}

/// Quarry's orchestrator: a tick every `tick_secs` and right after arrivals (its
/// nudge), each running the real [`decide`]; with a profile, pre-scaling too.
pub(super) struct Quarry<'a> {
    config: &'a Config,
    next_tick: u64,
    prescale: Option<PreScaler>,
}

/// The pre-scaler's state: the profile and the hour being counted.
struct PreScaler {
    profile: Profile,
    /// The median run time the history knew before the run (0 without history).
    median: f64,
    hour: i64,
    arrivals: u64,
    peak: u64,
}

/// What the pre-scaler knows when the run begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum History {
    /// Nothing: it learns as the trace goes (a new installation).
    Cold,
    /// The trace itself, a week earlier: what the orchestrator would have learned from
    /// its jobs table if the week before had been like this one.
    WeekBefore,
}

impl<'a> Quarry<'a> {
    /// Quarry's policy; with `history`, pre-scaling too.
    pub fn new(config: &'a Config, trace: &Trace, history: Option<History>) -> Self {
        const WEEK: i64 = 7 * 86_400;
        let alpha = config.prescale.alpha;
        let prescale = history.map(|h| {
            let (profile, median) = match h {
                History::Cold => (Profile::new(alpha), 0.0),
                History::WeekBefore => {
                    let jobs: Vec<(i64, Option<i64>)> = trace
                        .jobs
                        .iter()
                        .map(|j| {
                            let arrived = TRACE_MONDAY + j.arrival as i64 - WEEK;
                            (arrived, Some(arrived + j.duration as i64))
                        })
                        .collect();
                    let start = TRACE_MONDAY + trace.jobs.first().map_or(0, |j| j.arrival as i64);
                    let mut durations: Vec<u64> = trace.jobs.iter().map(|j| j.duration).collect();
                    let mid = durations.len() / 2;
                    let median = durations.select_nth_unstable(mid).1.to_owned() as f64;
                    (Profile::learn(alpha, &jobs, start - WEEK, start), median)
                }
            };
            PreScaler {
                profile,
                median,
                hour: i64::MIN,
                arrivals: 0,
                peak: 0,
            }
        });
        Self {
            config,
            next_tick: 0,
            prescale,
        }
    }
}

impl Policy for Quarry<'_> {
    fn act(&mut self, v: &View) -> Action {
        let now = TRACE_MONDAY + v.now as i64;
        if let Some(p) = &mut self.prescale {
            let hour = hour_start(now);
            if hour != p.hour {
                if p.hour != i64::MIN {
                    p.profile.observe(p.hour, p.arrivals, p.peak);
                }
                p.hour = hour;
                p.arrivals = 0;
                p.peak = 0;
            }
            p.arrivals += v.arrived;
            p.peak = p.peak.max(v.visible + v.in_flight);
        }
        if v.now < self.next_tick && v.arrived == 0 {
            return Action::default();
        }
        self.next_tick = v.now + self.config.fleet.tick_secs.max(1);
        let f = &self.config.fleet;
        let ps = &self.config.prescale;
        let ahead = self.prescale.as_ref().and_then(|p| {
            let median = if v.median_duration > 0.0 {
                v.median_duration
            } else {
                p.median
            };
            p.profile
                .ahead(now, ps.lead_secs, median, f.jobs_per_worker, ps.min_workers)
        });
        let plan = decide(Observation {
            visible: v.visible,
            in_flight: v.in_flight,
            running: v.ready,
            starting: v.starting,
            draining: 0,
            jobs_per_worker: f.jobs_per_worker,
            max_workers: f.max_workers,
            surge: 0,
            ahead: ahead.map_or(0, |a| a.workers),
        });
        Action {
            launch: plan.launch,
            stop: 0,
            patient_until: ahead.map(|a| (a.hour_start - TRACE_MONDAY) as u64 + ps.patience_secs),
        }
    }
}

/// What a target-tracking policy tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Metric {
    /// The service's average CPU: a busy task 100%, an idle one 0%.
    Cpu,
    /// Visible messages ÷ running tasks.
    BacklogPerTask,
}

/// Application Auto Scaling target tracking on an ECS service: one-minute datapoints,
/// scale-out after `scale_out_datapoints` over the target, scale-in after
/// `scale_in_datapoints` under 90% of it, to `ceil(capacity × metric ÷ target)`, with
/// cooldowns; scale-in stops random tasks.
pub(super) struct TargetTracking<'a> {
    b: &'a Baselines,
    max: u64,
    metric: Metric,
    target: f64,
    sum: f64,
    samples: u32,
    points: VecDeque<f64>,
    desired: u64,
    last_out: Option<u64>,
    last_in: Option<u64>,
}

impl<'a> TargetTracking<'a> {
    pub fn new(config: &'a Config, metric: Metric) -> Self {
        let b = &config.baselines;
        Self {
            b,
            max: config.fleet.max_workers,
            metric,
            target: match metric {
                Metric::Cpu => b.cpu_target_percent,
                Metric::BacklogPerTask => b.backlog_per_task_target,
            },
            sum: 0.0,
            samples: 0,
            points: VecDeque::new(),
            desired: b.min_tasks,
            last_out: None,
            last_in: None,
        }
    }

    /// Tasks the service starts with (its minimum, warm).
    pub fn initial(&self) -> u64 {
        self.desired
    }
}

impl Policy for TargetTracking<'_> {
    fn act(&mut self, v: &View) -> Action {
        let ready = v.ready.max(1) as f64;
        self.sum += match self.metric {
            Metric::Cpu => v.in_flight as f64 / ready * 100.0,
            Metric::BacklogPerTask => v.visible as f64 / ready,
        };
        self.samples += 1;
        let mut action = replace(self.desired, v);
        if self.samples < 60 {
            return action;
        }
        let point = self.sum / f64::from(self.samples);
        self.sum = 0.0;
        self.samples = 0;
        self.points.push_back(point);
        let keep = self.b.scale_out_datapoints.max(self.b.scale_in_datapoints) as usize;
        while self.points.len() > keep {
            self.points.pop_front();
        }
        // The last `n` datapoints all pass `test`.
        let last_all = |n: u64, test: &dyn Fn(f64) -> bool| {
            self.points.len() as u64 >= n
                && self.points.iter().rev().take(n as usize).all(|&x| test(x))
        };
        let target = self.target;
        let scale_out = last_all(self.b.scale_out_datapoints, &|x| x > target);
        let scale_in = last_all(self.b.scale_in_datapoints, &|x| x < 0.9 * target);
        let wanted = ((self.desired.max(1) as f64) * point / self.target).ceil() as u64;
        let wanted = wanted.clamp(self.b.min_tasks, self.max);
        let cooled = |last: Option<u64>, secs: u64| last.is_none_or(|l| v.now - l >= secs);
        if scale_out
            && cooled(self.last_out, self.b.scale_out_cooldown_secs)
            && wanted > self.desired
        {
            action.launch += wanted - self.desired;
            self.desired = wanted;
            self.last_out = Some(v.now);
        } else if scale_in
            && cooled(self.last_in, self.b.scale_in_cooldown_secs)
            && cooled(self.last_out, self.b.scale_out_cooldown_secs)
            && wanted < self.desired
        {
            action.stop += self.desired - wanted;
            self.desired = wanted;
            self.last_in = Some(v.now);
        }
        action
    }
}

/// A service replaces tasks that went (Spot interruptions): launches up to `desired`.
fn replace(desired: u64, v: &View) -> Action {
    Action {
        launch: desired.saturating_sub(v.ready + v.starting),
        ..Action::default()
    }
}

/// KEDA's SQS scaler driving a HorizontalPodAutoscaler: activation from zero at each
/// polling interval, then every HPA sync `ceil((visible + in flight) ÷ queue_length)`
/// replicas, growing by at most max(double, +4) per sync, shrinking to the highest
/// recommendation of the stabilization window (stopping random replicas), and to zero
/// after the cooldown with an empty queue.
pub(super) struct Keda<'a> {
    b: &'a Baselines,
    max: u64,
    desired: u64,
    recommendations: VecDeque<(u64, u64)>,
    last_active: u64,
}

impl<'a> Keda<'a> {
    pub fn new(config: &'a Config) -> Self {
        Self {
            b: &config.baselines,
            max: config.fleet.max_workers,
            desired: 0,
            recommendations: VecDeque::new(),
            last_active: 0,
        }
    }
}

impl Policy for Keda<'_> {
    fn act(&mut self, v: &View) -> Action {
        let b = self.b;
        let mut action = replace(self.desired, v);
        let length = v.visible + v.in_flight;
        if v.now.is_multiple_of(b.keda_polling_secs.max(1)) {
            if length > 0 {
                self.last_active = v.now;
                if self.desired == 0 {
                    self.desired = 1;
                    action.launch += 1;
                    return action;
                }
            } else if self.desired > 0 && v.now - self.last_active >= b.keda_cooldown_secs {
                action.stop += self.desired;
                self.desired = 0;
                self.recommendations.clear();
                return action;
            }
        }
        if self.desired == 0 || !v.now.is_multiple_of(b.hpa_sync_secs.max(1)) {
            return action;
        }
        let recommended = length
            .div_ceil(b.keda_queue_length.max(1))
            .clamp(1, self.max);
        self.recommendations.push_back((v.now, recommended));
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| v.now - t > b.hpa_stabilization_secs)
        {
            self.recommendations.pop_front();
        }
        if recommended > self.desired {
            let step = (self.desired * 2).max(self.desired + 4);
            let new = recommended.min(step).min(self.max);
            action.launch += new - self.desired;
            self.desired = new;
        } else {
            let stable = self
                .recommendations
                .iter()
                .map(|&(_, r)| r)
                .max()
                .unwrap_or(recommended);
            if stable < self.desired {
                action.stop += self.desired - stable;
                self.desired = stable;
            }
        }
        action
    }
}

/// A fixed fleet: `n` tasks from the start, replaced when they go.
pub(super) struct Fixed {
    pub n: u64,
}

impl Policy for Fixed {
    fn act(&mut self, v: &View) -> Action {
        replace(self.n, v)
    }
}
