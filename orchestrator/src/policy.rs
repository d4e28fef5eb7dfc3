//! The scaling policy: pure, so every case is a unit test.
//!
//! Workers needed = ceil((visible + in flight) / jobs_per_worker), capped at
//! `max_workers`. Launch the difference from the workers already running or starting.
//! The policy never returns a negative: scaling down is each worker's own decision
//! (it exits when the queue stays empty), so no running job is ever killed.

/// What the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub visible: u64,
    pub in_flight: u64,
    pub running: u64,
    pub starting: u64,
    pub jobs_per_worker: u64,
    pub max_workers: u64,
}

/// What to do, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub launch: u64,
    pub reason: String,
}

/// Decides how many workers to launch.
pub fn decide(o: Observation) -> Plan {
    let per_worker = o.jobs_per_worker.max(1);
    let work = o.visible + o.in_flight;
    let wanted = work.div_ceil(per_worker).min(o.max_workers);
    let have = o.running + o.starting;
    let launch = wanted.saturating_sub(have);
    let reason = if work == 0 {
        "queue empty: nothing to launch (idle workers exit by themselves)".to_owned()
    } else if launch == 0 && have >= o.max_workers {
        format!("{work} jobs; fleet at max_workers ({})", o.max_workers)
    } else if launch == 0 {
        format!("{work} jobs; {have} workers are enough at {per_worker} per worker")
    } else {
        format!("{work} jobs need {wanted} workers; {have} running or starting: launch {launch}")
    };
    Plan { launch, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(visible: u64, in_flight: u64, running: u64, starting: u64) -> Observation {
        Observation {
            visible,
            in_flight,
            running,
            starting,
            jobs_per_worker: 1,
            max_workers: 4,
        }
    }

    #[test]
    fn an_empty_queue_launches_nothing_and_never_asks_to_stop_anyone() {
        assert_eq!(decide(obs(0, 0, 0, 0)).launch, 0);
        assert_eq!(
            decide(obs(0, 0, 3, 1)).launch,
            0,
            "idle workers are left alone"
        );
    }

    #[test]
    fn launches_one_worker_per_job_up_to_max_workers() {
        assert_eq!(decide(obs(1, 0, 0, 0)).launch, 1);
        assert_eq!(decide(obs(3, 0, 0, 0)).launch, 3);
        assert_eq!(decide(obs(20, 0, 0, 0)).launch, 4);
        let at_max = decide(obs(20, 4, 4, 0));
        assert_eq!(at_max.launch, 0);
        assert!(at_max.reason.contains("max_workers"), "{}", at_max.reason);
    }

    #[test]
    fn counts_workers_already_starting_and_jobs_in_flight() {
        assert_eq!(decide(obs(2, 1, 1, 1)).launch, 1);
        assert_eq!(decide(obs(0, 2, 2, 0)).launch, 0);
        assert_eq!(decide(obs(5, 0, 1, 3)).launch, 0, "never above max_workers");
    }

    #[test]
    fn jobs_per_worker_divides_rounding_up() {
        let o = Observation {
            visible: 5,
            in_flight: 0,
            running: 0,
            starting: 0,
            jobs_per_worker: 2,
            max_workers: 10,
        };
        assert_eq!(decide(o).launch, 3);
        let o = Observation {
            jobs_per_worker: 0,
            ..o
        };
        assert_eq!(decide(o).launch, 5, "a zero is treated as one");
    }

    #[test]
    fn the_decision_never_exceeds_max_workers_for_any_input() {
        for visible in 0..12 {
            for in_flight in 0..6 {
                for running in 0..6 {
                    for starting in 0..3 {
                        let o = obs(visible, in_flight, running, starting);
                        let plan = decide(o);
                        let after = running + starting + plan.launch;
                        assert!(
                            plan.launch == 0 || after <= o.max_workers,
                            "{o:?} -> {plan:?}"
                        );
                        assert!(
                            after >= (visible + in_flight).min(o.max_workers),
                            "{o:?} -> {plan:?}"
                        );
                    }
                }
            }
        }
    }
}
