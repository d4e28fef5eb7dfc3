//! The scaling simulator (`quarry sim TRACE.csv`): replays a job trace in virtual time,
//! second by second, through Quarry's real policy ([`crate::policy::decide`], and the
//! pre-scaler of [`quarry_core::prescale`]) and through the scaling policies people would
//! otherwise use, on a model of ECS Fargate ([`world`]: launch delay, RunTask's throttle,
//! idle timeout, Spot interruptions with their notice), and reports per policy the jobs
//! killed by scale-in, the queue wait, idle ÷ busy worker time, the cost at Fargate's
//! prices and the time from a spike to full capacity.
//!
//! The run is deterministic for a seed: every policy sees the same trace, and the
//! random draws (launch delays, which task a scale-in stops, Spot interruptions) come
//! from a generator seeded per policy.

mod policies;
pub mod trace;
mod world;

use policies::{Fixed, History, Keda, Metric, Policy, Quarry, TargetTracking};
use serde::{Deserialize, Serialize};
pub use trace::{Trace, TraceError};
use world::World;

/// The model's parameters (`fargate.toml`, overridable by a file).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub fleet: Fleet,
    pub launch: Launch,
    pub spot: Spot,
    pub task: Task,
    pub prices: Prices,
    pub prescale: PreScale,
    pub baselines: Baselines,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Fleet {
    pub max_workers: u64,
    pub jobs_per_worker: u64,
    pub tick_secs: u64,
    pub idle_timeout_secs: u64,
    pub stop_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Launch {
    pub delay_min_secs: u64,
    pub delay_max_secs: u64,
    pub tasks_per_call: u64,
    pub calls_per_sec: f64,
    pub calls_burst: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Spot {
    pub on_demand_base: u64,
    pub spot_share: u64,
    pub interruptions_per_hour: f64,
    pub notice_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub vcpu: f64,
    pub memory_gb: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Prices {
    pub date: String,
    pub region: String,
    pub on_demand_vcpu_hour: f64,
    pub on_demand_gb_hour: f64,
    pub spot_vcpu_hour: f64,
    pub spot_gb_hour: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreScale {
    pub alpha: f64,
    pub lead_secs: i64,
    pub min_workers: u64,
    pub patience_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Baselines {
    pub cpu_target_percent: f64,
    pub backlog_per_task_target: f64,
    pub scale_out_datapoints: u64,
    pub scale_in_datapoints: u64,
    pub scale_out_cooldown_secs: u64,
    pub scale_in_cooldown_secs: u64,
    pub min_tasks: u64,
    pub keda_queue_length: u64,
    pub keda_polling_secs: u64,
    pub hpa_sync_secs: u64,
    pub hpa_stabilization_secs: u64,
    pub keda_cooldown_secs: u64,
    pub fixed_workers: String,
}

/// The model shipped with Quarry.
pub const DEFAULT_CONFIG: &str = include_str!("fargate.toml");

impl Config {
    /// The shipped model, with `overrides` (a TOML file's text) on top.
    pub fn load(overrides: Option<&str>) -> Result<Self, String> {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let mut f = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(text) = overrides {
            f = f.merge(Toml::string(text));
        }
        let c: Self = f.extract().map_err(|e| format!("simulator config: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.fleet.max_workers >= 1 && self.fleet.max_workers <= 10_000,
                "fleet.max_workers is 1 to 10000",
            ),
            (
                self.fleet.jobs_per_worker == 1,
                "fleet.jobs_per_worker: the simulator models one job per worker",
            ),
            (
                self.launch.delay_min_secs <= self.launch.delay_max_secs,
                "launch.delay_min_secs is at most launch.delay_max_secs",
            ),
            (
                self.launch.delay_max_secs <= 3_600,
                "launch.delay_max_secs is at most 3600",
            ),
            (
                self.launch.tasks_per_call >= 1,
                "launch.tasks_per_call is at least 1",
            ),
            (
                self.launch.calls_per_sec > 0.0 && self.launch.calls_burst >= 1,
                "launch.calls_per_sec is above 0 and calls_burst at least 1",
            ),
            (
                self.spot.spot_share <= 100,
                "spot.spot_share is a percent (0 to 100)",
            ),
            (
                (0.0..=60.0).contains(&self.spot.interruptions_per_hour),
                "spot.interruptions_per_hour is 0 to 60",
            ),
            (
                self.prescale.alpha > 0.0 && self.prescale.alpha <= 1.0,
                "prescale.alpha is above 0 and at most 1",
            ),
            (
                self.baselines.cpu_target_percent > 0.0
                    && self.baselines.backlog_per_task_target > 0.0,
                "baseline targets are above 0",
            ),
            (
                self.fixed_workers().is_ok(),
                "baselines.fixed_workers is \"mean\" or a number of workers",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("simulator config: {what}")),
            None => Ok(()),
        }
    }

    /// The fixed fleet's size: `None` for the trace's mean concurrency.
    fn fixed_workers(&self) -> Result<Option<u64>, ()> {
        match self.baselines.fixed_workers.as_str() {
            "mean" => Ok(None),
            n => n.parse().map(Some).map_err(|_| ()),
        }
    }

    /// A task-second at on-demand and at Spot prices.
    fn second_prices(&self) -> (f64, f64) {
        let (p, t) = (&self.prices, &self.task);
        (
            (t.vcpu * p.on_demand_vcpu_hour + t.memory_gb * p.on_demand_gb_hour) / 3_600.0,
            (t.vcpu * p.spot_vcpu_hour + t.memory_gb * p.spot_gb_hour) / 3_600.0,
        )
    }
}

/// One policy's figures over a trace.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub policy: String,
    /// Running jobs killed when the policy stopped their task.
    pub killed: u64,
    /// Jobs not finished when the simulation gave up (a week after the last arrival).
    pub unfinished: u64,
    /// Jobs handed back by a worker under a Spot notice (not finished in time).
    pub handed_back: u64,
    /// Work done by killed or handed-back attempts, redone.
    pub lost_work_secs: u64,
    pub p50_wait_secs: u64,
    pub p95_wait_secs: u64,
    /// p95 wait of the jobs that arrived in a spike (see [`spike_minutes`]), if the
    /// trace has any.
    pub p95_spike_wait_secs: Option<u64>,
    pub busy_secs: u64,
    pub idle_secs: u64,
    pub starting_secs: u64,
    pub launched: u64,
    /// Dollars at the configured prices: every task on-demand, and with Spot as configured.
    pub cost_on_demand: f64,
    pub cost_with_spot: f64,
    /// Seconds from each spike ([`spike_minutes`]) until no job waited or the fleet
    /// was at max_workers, counted from the end of the spike's first minute: the
    /// median and the longest.
    pub spike_to_capacity_secs: Option<(u64, u64)>,
    /// Each job's wait, in trace order.
    #[serde(skip)]
    pub waits: Vec<u64>,
    #[serde(skip)]
    pub arrivals: Vec<u64>,
}

impl Outcome {
    /// Idle worker-seconds ÷ busy worker-seconds (a worker running without a job).
    pub fn idle_over_busy(&self) -> f64 {
        self.idle_secs as f64 / self.busy_secs.max(1) as f64
    }

    /// The same with the seconds workers spent starting counted as idle.
    pub fn idle_and_starting_over_busy(&self) -> f64 {
        (self.idle_secs + self.starting_secs) as f64 / self.busy_secs.max(1) as f64
    }
}

/// The policies, in the report's order.
pub const POLICIES: [&str; 7] = [
    "quarry",
    "quarry + pre-scaling",
    "quarry + pre-scaling, cold start",
    "ECS target tracking, CPU",
    "KEDA, SQS queue length",
    "target tracking, backlog per task",
    "fixed fleet",
];

/// Replays `trace` through every policy.
pub fn run(trace: &Trace, config: &Config, seed: u64) -> Vec<Outcome> {
    POLICIES
        .iter()
        .enumerate()
        .map(|(i, name)| run_one(trace, config, seed.wrapping_add(i as u64), name))
        .collect()
}

fn run_one(trace: &Trace, config: &Config, seed: u64, name: &str) -> Outcome {
    let quarry = name.starts_with("quarry");
    let mut world = World::new(config, trace, seed, quarry);
    let start = world.start;
    let mut label = name.to_owned();
    let mut policy: Box<dyn Policy + '_> = match name {
        "quarry" => Box::new(Quarry::new(config, trace, None)),
        "quarry + pre-scaling" => Box::new(Quarry::new(config, trace, Some(History::WeekBefore))),
        "quarry + pre-scaling, cold start" => {
            Box::new(Quarry::new(config, trace, Some(History::Cold)))
        }
        "ECS target tracking, CPU" | "target tracking, backlog per task" => {
            let metric = if name.contains("CPU") {
                Metric::Cpu
            } else {
                Metric::BacklogPerTask
            };
            let p = TargetTracking::new(config, metric);
            world.warm(p.initial(), start);
            label = match metric {
                Metric::Cpu => format!("{name} {}%", config.baselines.cpu_target_percent),
                Metric::BacklogPerTask => {
                    format!("{name} {}", config.baselines.backlog_per_task_target)
                }
            };
            Box::new(p)
        }
        "KEDA, SQS queue length" => {
            label = format!("{name} {}", config.baselines.keda_queue_length);
            Box::new(Keda::new(config))
        }
        _ => {
            let span = trace.jobs.last().map_or(0, |j| j.arrival + j.duration) - start;
            let n = config.fixed_workers().ok().flatten().unwrap_or_else(|| {
                trace
                    .work_secs()
                    .div_ceil(span.max(1))
                    .clamp(1, config.fleet.max_workers)
            });
            world.warm(n, start);
            label = format!("{name} of {n}");
            Box::new(Fixed { n })
        }
    };
    // A model that never lets jobs finish (Spot interruptions far more often than jobs
    // last) stops a week after the last arrival, with those jobs unfinished.
    let give_up = trace.jobs.last().map_or(start, |j| j.arrival) + 7 * 86_400;
    let mut t = start;
    loop {
        let view = world.step(t);
        if world.done() || t >= give_up {
            break;
        }
        let action = policy.act(&view);
        world.act(action, t);
        t += 1;
    }
    // Quarry's idle workers exit by themselves; every fleet is billed until then.
    let horizon = t + config.fleet.idle_timeout_secs;
    while t < horizon {
        t += 1;
        world.step(t);
    }
    world.finish(t);
    outcome(label, trace, config, &world)
}

fn outcome(policy: String, trace: &Trace, config: &Config, world: &World<'_>) -> Outcome {
    let waits: Vec<u64> = world.jobs.iter().map(|j| j.waited).collect();
    let arrivals: Vec<u64> = world.jobs.iter().map(|j| j.arrival).collect();
    let spikes = spike_minutes(trace);
    let in_spike: Vec<u64> = waits
        .iter()
        .zip(&arrivals)
        .filter(|(_, a)| {
            spikes
                .iter()
                .any(|&(from, to)| (from..to).contains(&(**a / 60)))
        })
        .map(|(w, _)| *w)
        .collect();
    let c = &world.counts;
    let (on_demand, spot) = config.second_prices();
    let billed = c.billed_on_demand_secs + c.billed_spot_secs;
    Outcome {
        policy,
        killed: c.killed,
        unfinished: world.unfinished(),
        handed_back: c.handed_back,
        lost_work_secs: c.lost_work_secs,
        p50_wait_secs: quantile(&waits, 0.50),
        p95_wait_secs: quantile(&waits, 0.95),
        p95_spike_wait_secs: (!in_spike.is_empty()).then(|| quantile(&in_spike, 0.95)),
        busy_secs: c.busy_secs,
        idle_secs: c.idle_secs,
        starting_secs: c.starting_secs,
        launched: c.launched,
        cost_on_demand: billed as f64 * on_demand,
        cost_with_spot: c.billed_on_demand_secs as f64 * on_demand
            + c.billed_spot_secs as f64 * spot,
        spike_to_capacity_secs: spikes_to_capacity(trace, config, world),
        waits,
        arrivals,
    }
}

/// The nearest-rank quantile `q` of `values`.
pub fn quantile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The trace's spikes, as runs of minutes `[from, to)` (arrival ÷ 60): a minute with at
/// least 5 arrivals and 3× the mean per minute of the half hour before it.
pub fn spike_minutes(trace: &Trace) -> Vec<(u64, u64)> {
    let (Some(first), Some(last)) = (trace.jobs.first(), trace.jobs.last()) else {
        return Vec::new();
    };
    let start = first.arrival / 60;
    let mut per_minute = vec![0u64; (last.arrival / 60 - start + 1) as usize];
    for j in &trace.jobs {
        per_minute[(j.arrival / 60 - start) as usize] += 1;
    }
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (m, &n) in per_minute.iter().enumerate() {
        let before = &per_minute[m.saturating_sub(30)..m];
        let rate = before.iter().sum::<u64>() as f64 / before.len().max(1) as f64;
        if n >= 5 && n as f64 >= 3.0 * rate {
            let minute = start + m as u64;
            match runs.last_mut() {
                Some(run) if run.1 == minute => run.1 = minute + 1,
                _ => runs.push((minute, minute + 1)),
            }
        }
    }
    runs
}

/// The median and longest time from the end of each spike's first minute until no job
/// waited or the fleet ran max_workers.
fn spikes_to_capacity(trace: &Trace, config: &Config, world: &World<'_>) -> Option<(u64, u64)> {
    let times: Vec<u64> = spike_minutes(trace)
        .into_iter()
        .filter_map(|(from, _)| {
            let from = ((from + 1) * 60).checked_sub(world.start)? as usize;
            (from..world.visible_series.len())
                .find(|&s| {
                    world.visible_series[s] == 0
                        || u64::from(world.ready_series[s]) >= config.fleet.max_workers
                })
                .map(|s| (s - from) as u64)
        })
        .collect();
    if times.is_empty() {
        return None;
    }
    Some((quantile(&times, 0.5), *times.iter().max()?))
}

/// The report as a Markdown table, with the model's prices and their date.
pub fn table(outcomes: &[Outcome], config: &Config) -> String {
    let mut out = String::from(
        "| policy | killed by scale-in | handed back (Spot) | p50 wait | p95 wait | p95 wait, spikes | idle ÷ busy | (idle + starting) ÷ busy | cost, on-demand | cost, with Spot | spike → full capacity (median, max) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} | {} s | {} s | {} | {:.1}% | {:.1}% | ${:.2} | ${:.2} | {} |\n",
            o.policy,
            o.killed,
            o.handed_back,
            o.p50_wait_secs,
            o.p95_wait_secs,
            o.p95_spike_wait_secs
                .map_or("–".into(), |w| format!("{w} s")),
            100.0 * o.idle_over_busy(),
            100.0 * o.idle_and_starting_over_busy(),
            o.cost_on_demand,
            o.cost_with_spot,
            o.spike_to_capacity_secs
                .map_or("–".into(), |(m, x)| format!("{m} s, {x} s")),
        ));
    }
    for o in outcomes.iter().filter(|o| o.unfinished > 0) {
        out.push_str(&format!(
            "\n**{}: {} jobs never finished** (the run stopped a week after the last arrival; their waits are left out).\n",
            o.policy, o.unfinished
        ));
    }
    let p = &config.prices;
    out.push_str(&format!(
        "\nPrices: Fargate {} on {}, {} vCPU and {} GB per task: on-demand ${}/vCPU-h and ${}/GB-h, Spot ${}/vCPU-h and ${}/GB-h; per second, a minute at least.\n",
        p.region, p.date, config.task.vcpu, config.task.memory_gb,
        p.on_demand_vcpu_hour, p.on_demand_gb_hour, p.spot_vcpu_hour, p.spot_gb_hour
    ));
    out
}

#[cfg(test)]
mod tests;
