use super::*;

fn config(extra: &str) -> Config {
    Config::load(Some(extra)).expect("config")
}

/// No Spot interruptions: the figures follow from the launch delay alone.
const CALM: &str = "[spot]\ninterruptions_per_hour = 0.0\n";

fn by_name<'a>(outcomes: &'a [Outcome], prefix: &str) -> &'a Outcome {
    outcomes
        .iter()
        .find(|o| o.policy.starts_with(prefix))
        .unwrap_or_else(|| panic!("no policy {prefix}"))
}

#[test]
fn one_job_waits_for_one_launch_and_its_worker_exits_idle() {
    let c = config(CALM);
    let trace = Trace::parse("100,600\n").unwrap();
    let all = run(&trace, &c, 7);
    let q = by_name(&all, "quarry");
    assert_eq!(q.killed, 0);
    assert_eq!(q.launched, 1, "one job, one worker");
    assert!(
        (31..=46).contains(&q.p50_wait_secs),
        "the wait is the decision's second and the launch delay: {}",
        q.p50_wait_secs
    );
    assert_eq!(q.busy_secs, 600);
    assert_eq!(
        q.idle_secs, c.fleet.idle_timeout_secs,
        "idle until it exits by itself"
    );
    // Billed from RunTask to exit: starting + busy + idle, at on-demand (the base).
    let billed = q.starting_secs + q.busy_secs + q.idle_secs;
    let per_second = (4.0 * 0.04048 + 16.0 * 0.004445) / 3600.0;
    assert!((q.cost_on_demand - billed as f64 * per_second).abs() < 1e-9);
    assert_eq!(
        q.cost_on_demand, q.cost_with_spot,
        "within the on-demand base"
    );
}

#[test]
fn a_fixed_fleet_starts_jobs_at_once_and_bills_every_second_it_runs() {
    let c = config(&format!("{CALM}[baselines]\nfixed_workers = \"2\"\n"));
    let trace = Trace::parse("0,100\n0,100\n10,50\n").unwrap();
    let all = run(&trace, &c, 1);
    let f = by_name(&all, "fixed");
    assert_eq!(f.policy, "fixed fleet of 2");
    // Two start at 0; the third waits for one of them (at 100).
    let mut waits = f.waits.clone();
    waits.sort_unstable();
    assert_eq!(waits, vec![0, 0, 90]);
    assert_eq!(f.busy_secs, 250);
    // Done at 150, billed to 150 + idle_timeout on both workers.
    let end = 150 + c.fleet.idle_timeout_secs;
    assert_eq!(f.busy_secs + f.idle_secs, 2 * (end + 1), "{f:?}");
    let per_second = (4.0 * 0.04048 + 16.0 * 0.004445) / 3600.0;
    assert!((f.cost_on_demand - 2.0 * (end + 1) as f64 * per_second).abs() < 1e-9);
}

#[test]
fn quarry_never_kills_a_job_and_the_scale_in_baselines_do() {
    // Waves of jobs of mixed lengths: scaling in after each wave stops busy tasks.
    let mut lines = String::new();
    let mut rng = 17u64;
    for wave in 0..12u64 {
        for i in 0..15u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let duration = 60 + (rng >> 33) % 1_140;
            lines.push_str(&format!("{},{duration}\n", wave * 2_400 + i * 7));
        }
    }
    let trace = Trace::parse(&lines).unwrap();
    let all = run(&trace, &config(CALM), 3);
    for o in &all {
        assert_eq!(o.unfinished, 0, "{}", o.policy);
        assert_eq!(
            o.busy_secs,
            trace.work_secs() + o.lost_work_secs,
            "busy time is the work and the work redone: {}",
            o.policy
        );
        if o.policy.starts_with("quarry") || o.policy.starts_with("fixed") {
            assert_eq!(o.killed, 0, "{}", o.policy);
        }
    }
    let killed: u64 = all
        .iter()
        .filter(|o| !o.policy.starts_with("quarry") && !o.policy.starts_with("fixed"))
        .map(|o| o.killed)
        .sum();
    assert!(
        killed > 0,
        "the baselines that stop tasks killed none: {all:#?}"
    );
}

#[test]
fn a_spot_notice_hands_the_job_back_and_it_still_finishes() {
    let c = config(
        "[spot]\ninterruptions_per_hour = 1.0\non_demand_base = 0\n[fleet]\nmax_workers = 5\n",
    );
    let trace = Trace::parse("0,1800\n0,1800\n60,1800\n").unwrap();
    let mut handed_back = 0;
    for seed in 0..10 {
        let q = by_name(&run(&trace, &c, seed), "quarry").clone();
        assert_eq!(q.unfinished, 0);
        assert_eq!(q.killed, 0, "a hand-back is not a kill");
        assert_eq!(q.busy_secs, 3 * 1_800 + q.lost_work_secs, "{q:?}");
        assert!(q.cost_with_spot < q.cost_on_demand, "every task on Spot");
        handed_back += q.handed_back;
    }
    assert!(handed_back > 0, "no Spot notice came in 10 runs");
}

#[test]
fn a_model_where_no_job_can_finish_stops_and_says_so() {
    let c = config("[spot]\ninterruptions_per_hour = 60.0\non_demand_base = 0\n");
    let q = by_name(&run(&Trace::parse("0,80000\n").unwrap(), &c, 1), "quarry").clone();
    assert_eq!(q.unfinished, 1, "{q:?}");
    let all = run(&Trace::parse("0,80000\n").unwrap(), &c, 1);
    assert!(
        table(&all, &c).contains("quarry: 1 jobs never finished"),
        "the table says so"
    );
}

#[test]
fn the_run_is_the_same_for_the_same_seed() {
    let trace = Trace::parse("0,300\n5,300\n600,120\n").unwrap();
    let c = config("");
    let a = run(&trace, &c, 5);
    let b = run(&trace, &c, 5);
    assert_eq!(table(&a, &c), table(&b, &c));
}

#[test]
fn the_quantiles_are_nearest_rank() {
    assert_eq!(quantile(&[5, 1, 3, 2, 4], 0.5), 3);
    assert_eq!(quantile(&(1..=100).collect::<Vec<_>>(), 0.95), 95);
    assert_eq!(quantile(&[], 0.95), 0);
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    for (text, says) in [
        ("[fleet]\nmax_workers = 0\n", "fleet.max_workers"),
        ("[launch]\ndelay_min_secs = 90\n", "launch.delay_min_secs"),
        (
            "[baselines]\nfixed_workers = \"many\"\n",
            "baselines.fixed_workers",
        ),
        ("[spot]\nspot_share = 101\n", "spot.spot_share"),
        ("[fleet]\nmax_workers = \"x\"\n", "max_workers"),
    ] {
        let e = Config::load(Some(text)).unwrap_err();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

/// The shipped traces, against the goals the README states.
fn shipped(name: &str) -> Trace {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sim")
        .join(name);
    Trace::read(&path).unwrap()
}

#[test]
fn on_the_bursty_workday_quarry_kills_nothing_idles_little_and_waits_least() {
    let c = config("");
    let all = run(&shipped("bursty-workday.csv"), &c, 1);
    let q = by_name(&all, "quarry");
    assert_eq!(q.killed, 0);
    assert!(
        q.idle_over_busy() <= 0.05,
        "idle ÷ busy {}",
        q.idle_over_busy()
    );
    let baselines = &all[3..];
    for b in baselines.iter().filter(|b| !b.policy.starts_with("fixed")) {
        assert!(b.killed > 0, "{} killed no job", b.policy);
    }
    let best = baselines.iter().map(|b| b.p95_wait_secs).min().unwrap();
    assert!(
        q.p95_wait_secs <= best,
        "p95 wait {} s against the best baseline's {best} s\n{}",
        q.p95_wait_secs,
        table(&all, &c)
    );
}

#[test]
fn on_the_weekly_trace_pre_scaling_halves_the_p95_wait_at_the_morning_surge() {
    let c = config("");
    let all = run(&shipped("weekly-surge.csv"), &c, 1);
    let without = by_name(&all, "quarry").p95_spike_wait_secs.unwrap();
    let with = all[1].p95_spike_wait_secs.unwrap();
    assert_eq!(all[1].policy, "quarry + pre-scaling");
    assert!(
        2 * with <= without,
        "p95 wait of the jobs in the surges: {with} s with pre-scaling, {without} s without\n{}",
        table(&all, &c)
    );
}

#[test]
fn the_flat_trace_runs_through_every_policy() {
    let c = config("");
    let trace = shipped("flat.csv");
    let all = run(&trace, &c, 1);
    for o in &all {
        assert_eq!(o.waits.len(), trace.jobs.len(), "{}", o.policy);
        assert!(o.busy_secs >= trace.work_secs(), "{}", o.policy);
    }
}
