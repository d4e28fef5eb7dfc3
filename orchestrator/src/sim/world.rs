//! The simulated fleet, second by second: a FIFO queue of jobs, workers that start
//! after a launch delay, run one job at a time and (under Quarry's policy) exit after
//! `idle_timeout` without work, RunTask's throttle, Spot interruptions with their
//! notice, and everything the report counts.

use super::Config;
use super::trace::Trace;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

/// What a policy sees each second.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// Seconds since Monday 00:00 UTC of the trace's week.
    pub now: u64,
    /// Jobs waiting in the queue.
    pub visible: u64,
    /// Jobs running.
    pub in_flight: u64,
    /// Workers running (with or without a job), not counting those told to stop.
    pub ready: u64,
    /// Workers launched and not running yet, and launches waiting for RunTask.
    pub starting: u64,
    /// Jobs that arrived this second.
    pub arrived: u64,
    /// The median duration of the jobs finished so far (seconds; updated hourly).
    pub median_duration: f64,
}

/// A policy's answer for this second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    pub launch: u64,
    /// Workers to stop at random (scale-in): a job running on one is killed and goes
    /// back to the queue.
    pub stop: u64,
    /// Workers launched now wait for work until this second before their idle timeout
    /// counts (pre-scaled workers wait for the surge they were started for).
    pub patient_until: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub arrival: u64,
    pub duration: u64,
    /// Since when it waits in the queue, while it does.
    queued_since: Option<u64>,
    /// Seconds waited in the queue, over every attempt.
    pub waited: u64,
    pub finished: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting {
        ready_at: u64,
    },
    Idle {
        since: u64,
    },
    Busy {
        job: usize,
        ends_at: u64,
    },
    /// Told to stop (a Spot notice): finishes its job by `stop_at` or hands it back.
    Draining {
        job: usize,
        ends_at: u64,
        stop_at: u64,
    },
}

#[derive(Debug, Clone)]
struct Worker {
    launched: u64,
    patient_until: u64,
    spot: bool,
    notice_at: Option<u64>,
    state: State,
}

/// What a run counted.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub killed: u64,
    pub handed_back: u64,
    pub lost_work_secs: u64,
    pub busy_secs: u64,
    pub idle_secs: u64,
    pub starting_secs: u64,
    pub launched: u64,
    /// Billed task-seconds (a minute at least per task), on Spot and on-demand.
    pub billed_spot_secs: u64,
    pub billed_on_demand_secs: u64,
}

pub(super) struct World<'a> {
    config: &'a Config,
    pub jobs: Vec<Job>,
    next_arrival: usize,
    queue: VecDeque<usize>,
    workers: Vec<Worker>,
    /// Launches asked for and not yet through RunTask's throttle, and until when the
    /// latest of them is patient.
    pending: u64,
    pending_patience: u64,
    /// RunTask calls available (a token bucket).
    calls: f64,
    rng: StdRng,
    /// Whether idle workers exit by themselves (Quarry's workers); the baselines'
    /// services keep their tasks until they stop them.
    self_exit: bool,
    pub counts: Counts,
    /// Per second from the start: jobs visible, workers running.
    pub visible_series: Vec<u32>,
    pub ready_series: Vec<u32>,
    pub start: u64,
    median: f64,
}

impl<'a> World<'a> {
    pub fn new(config: &'a Config, trace: &Trace, seed: u64, self_exit: bool) -> Self {
        let jobs = trace
            .jobs
            .iter()
            .map(|j| Job {
                arrival: j.arrival,
                duration: j.duration,
                queued_since: None,
                waited: 0,
                finished: None,
            })
            .collect();
        Self {
            config,
            jobs,
            next_arrival: 0,
            queue: VecDeque::new(),
            workers: Vec::new(),
            pending: 0,
            pending_patience: 0,
            calls: config.launch.calls_burst as f64,
            rng: StdRng::seed_from_u64(seed),
            self_exit,
            counts: Counts::default(),
            visible_series: Vec::new(),
            ready_series: Vec::new(),
            start: trace.jobs.first().map_or(0, |j| j.arrival),
            median: 0.0,
        }
    }

    /// Workers running from the start (a fixed fleet), already warm.
    pub fn warm(&mut self, n: u64, now: u64) {
        for _ in 0..n {
            self.spawn(now, Some(now));
        }
    }

    /// Every job finished.
    pub fn done(&self) -> bool {
        self.next_arrival == self.jobs.len()
            && self.queue.is_empty()
            && self
                .workers
                .iter()
                .all(|w| !matches!(w.state, State::Busy { .. } | State::Draining { .. }))
    }

    /// Moves the world through second `t`: launches through the throttle, arrivals,
    /// workers starting, finishing, draining and exiting, jobs handed out; then counts
    /// the second. Answers what a policy sees.
    pub fn step(&mut self, t: u64) -> View {
        let l = &self.config.launch;
        self.calls = (self.calls + l.calls_per_sec).min(l.calls_burst as f64);
        self.run_tasks(t);
        let mut arrived = 0;
        while let Some(j) = self.jobs.get_mut(self.next_arrival) {
            if j.arrival > t {
                break;
            }
            j.queued_since = Some(t);
            self.queue.push_back(self.next_arrival);
            self.next_arrival += 1;
            arrived += 1;
        }
        // A stopped Fargate task gets SIGKILL at the end of the notice.
        let stop_timeout = self
            .config
            .fleet
            .stop_timeout_secs
            .min(self.config.spot.notice_secs);
        let mut back = Vec::new();
        let jobs = &mut self.jobs;
        let counts = &mut self.counts;
        let mut exits = Vec::new();
        for (i, w) in self.workers.iter_mut().enumerate() {
            w.state = match w.state {
                State::Starting { ready_at } if ready_at <= t => State::Idle { since: t },
                State::Busy { job, ends_at } | State::Draining { job, ends_at, .. }
                    if ends_at <= t =>
                {
                    jobs[job].finished = Some(ends_at);
                    if matches!(w.state, State::Draining { .. }) {
                        exits.push(i);
                    }
                    State::Idle { since: t }
                }
                State::Draining {
                    job,
                    ends_at,
                    stop_at,
                } if stop_at <= t => {
                    counts.handed_back += 1;
                    counts.lost_work_secs += jobs[job].duration - (ends_at - t);
                    back.push(job);
                    exits.push(i);
                    State::Idle { since: t }
                }
                s => s,
            };
            if w.notice_at.is_some_and(|n| n <= t) {
                w.notice_at = None;
                match w.state {
                    State::Busy { job, ends_at } => {
                        w.state = State::Draining {
                            job,
                            ends_at,
                            stop_at: t + stop_timeout,
                        }
                    }
                    State::Draining { .. } => {}
                    _ => exits.push(i),
                }
            }
        }
        for job in back {
            self.requeue(job, t);
        }
        self.exit(&mut exits, t);
        // Idle workers take the oldest jobs.
        for w in &mut self.workers {
            if let State::Idle { .. } = w.state {
                let Some(job) = self.queue.pop_front() else {
                    break;
                };
                let j = &mut self.jobs[job];
                j.waited += t - j.queued_since.take().unwrap_or(t);
                w.state = State::Busy {
                    job,
                    ends_at: t + j.duration,
                };
            }
        }
        if self.self_exit {
            let idle = self.config.fleet.idle_timeout_secs;
            let mut exits: Vec<usize> = (0..self.workers.len())
                .filter(|&i| {
                    let w = &self.workers[i];
                    matches!(w.state, State::Idle { since } if t - since >= idle)
                        && t >= w.patient_until
                })
                .collect();
            self.exit(&mut exits, t);
        }
        if t.is_multiple_of(3_600) {
            let mut d: Vec<u64> = self
                .jobs
                .iter()
                .filter(|j| j.finished.is_some())
                .map(|j| j.duration)
                .collect();
            if !d.is_empty() {
                let mid = d.len() / 2;
                self.median = *d.select_nth_unstable(mid).1 as f64;
            }
        }
        let mut view = View {
            now: t,
            median_duration: self.median,
            visible: self.queue.len() as u64,
            starting: self.pending,
            arrived,
            ..View::default()
        };
        for w in &self.workers {
            match w.state {
                State::Starting { .. } => {
                    self.counts.starting_secs += 1;
                    view.starting += 1;
                }
                State::Idle { .. } => {
                    self.counts.idle_secs += 1;
                    view.ready += 1;
                }
                State::Busy { .. } => {
                    self.counts.busy_secs += 1;
                    view.ready += 1;
                    view.in_flight += 1;
                }
                State::Draining { .. } => {
                    self.counts.busy_secs += 1;
                    view.in_flight += 1;
                }
            }
        }
        self.visible_series.push(view.visible as u32);
        self.ready_series.push(view.ready as u32);
        view
    }

    /// Applies a policy's action at `t`.
    pub fn act(&mut self, a: Action, t: u64) {
        self.pending += a.launch;
        if a.launch > 0 {
            self.pending_patience = a.patient_until.unwrap_or(0);
        }
        // Scale-in stops launches not yet made first, then tasks at random (not those
        // already told to stop).
        let mut stop = a.stop;
        let unlaunched = stop.min(self.pending);
        self.pending -= unlaunched;
        stop -= unlaunched;
        for _ in 0..stop {
            let candidates: Vec<usize> = (0..self.workers.len())
                .filter(|&i| !matches!(self.workers[i].state, State::Draining { .. }))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let i = candidates[self.rng.random_range(0..candidates.len())];
            if let State::Busy { job, ends_at } = self.workers[i].state {
                // Killed after this second's work.
                self.counts.killed += 1;
                self.counts.lost_work_secs += self.jobs[job].duration - (ends_at - t) + 1;
                self.requeue(job, t);
            }
            self.exit(&mut vec![i], t + 1);
        }
        self.run_tasks(t + 1);
    }

    /// RunTask calls for the launches waiting, as the throttle allows; the tasks
    /// start at `t` (the second after a decision made at the end of a second).
    fn run_tasks(&mut self, t: u64) {
        let per_call = self.config.launch.tasks_per_call.max(1);
        while self.pending > 0 && self.calls >= 1.0 {
            self.calls -= 1.0;
            let n = self.pending.min(per_call);
            self.pending -= n;
            for _ in 0..n {
                self.spawn(t, None);
            }
        }
    }

    /// Jobs not finished.
    pub fn unfinished(&self) -> u64 {
        self.jobs.iter().filter(|j| j.finished.is_none()).count() as u64
    }

    /// Stops accounting after second `t`: every worker still alive is billed to its end.
    pub fn finish(&mut self, t: u64) {
        let t = t + 1;
        let mut all: Vec<usize> = (0..self.workers.len()).collect();
        self.exit(&mut all, t);
    }

    fn requeue(&mut self, job: usize, t: u64) {
        self.jobs[job].queued_since = Some(t);
        self.queue.push_front(job);
    }

    /// Removes workers `idx` (any order) at `t`, billing each.
    fn exit(&mut self, idx: &mut Vec<usize>, t: u64) {
        idx.sort_unstable();
        idx.dedup();
        for &i in idx.iter().rev() {
            let w = self.workers.swap_remove(i);
            let billed = (t - w.launched).max(60);
            if w.spot {
                self.counts.billed_spot_secs += billed;
            } else {
                self.counts.billed_on_demand_secs += billed;
            }
        }
        idx.clear();
    }

    /// A new task at `t`: running at `ready` (warm) or after the launch delay; on
    /// on-demand up to the base, then on Spot by `spot_share`.
    fn spawn(&mut self, t: u64, ready: Option<u64>) {
        let c = self.config;
        let on_demand = self.workers.iter().filter(|w| !w.spot).count() as u64;
        let spot = on_demand >= c.spot.on_demand_base
            && self.rng.random_range(0..100) < c.spot.spot_share.min(100);
        let ready_at = ready.unwrap_or_else(|| {
            t + self.rng.random_range(
                c.launch.delay_min_secs..=c.launch.delay_max_secs.max(c.launch.delay_min_secs),
            )
        });
        let notice_at = (spot && c.spot.interruptions_per_hour > 0.0).then(|| {
            // Exponential time to the interruption notice.
            let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
            t + (-u.ln() / c.spot.interruptions_per_hour * 3_600.0) as u64
        });
        self.counts.launched += 1;
        self.workers.push(Worker {
            launched: t,
            patient_until: if ready.is_some() {
                0
            } else {
                self.pending_patience
            },
            spot,
            notice_at,
            state: match ready {
                Some(_) => State::Idle { since: t },
                None => State::Starting { ready_at },
            },
        });
    }
}
