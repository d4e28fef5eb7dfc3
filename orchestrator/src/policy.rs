//! The scaling policy: pure, so every case is a unit test.
//!
//! Workers needed = ceil((visible + in flight) / jobs_per_worker), capped at
//! `max_workers`. Launch the difference from the workers already running or starting.
//! The policy never returns a negative: scaling down is each worker's own decision
//! (it exits when the queue stays empty), so no running job is ever killed.
//!
//! After a deploy, workers of the superseded release drain: each finishes the job it
//! holds and exits. They still count against `max_workers`, and the jobs they hold need
//! no new worker; `surge` lets the fleet go over `max_workers` by up to that many while
//! workers drain (never by more than are draining), so a deploy does not stall the queue
//! behind long jobs of the old release.
//!
//! Ahead of an hour the learned profile expects to be busy ([`quarry_core::prescale`]), the
//! policy also wants `ahead` workers (never more than `max_workers`): launching takes
//! minutes on Fargate, so they are started before the jobs come. Workers launched early
//! are ordinary workers: if the jobs do not come they exit idle like any other.

/// What the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub visible: u64,
    pub in_flight: u64,
    pub running: u64,
    pub starting: u64,
    /// Of the running, the workers of a superseded release (each holds at most one job).
    pub draining: u64,
    pub jobs_per_worker: u64,
    pub max_workers: u64,
    /// How far over `max_workers` the fleet may go while workers drain.
    pub surge: u64,
    /// Workers the pre-scaler wants ready for the hour about to begin (0 outside the
    /// lead time before an hour it expects to be busy, and when pre-scaling is off).
    pub ahead: u64,
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
    let draining = o.draining.min(o.running);
    let current = o.running + o.starting - draining;
    // The jobs the draining workers hold finish there.
    let work = o.visible + o.in_flight - draining.min(o.in_flight);
    let cap = o.max_workers + o.surge.min(draining);
    let room = cap.saturating_sub(current + draining);
    let for_work = work.div_ceil(per_worker).min(o.max_workers);
    let wanted = for_work.max(o.ahead.min(o.max_workers));
    let launch = wanted.saturating_sub(current).min(room);
    let ahead_note = if wanted > for_work {
        format!("; pre-scaling: {wanted} workers wanted ahead of an expected surge")
    } else {
        String::new()
    };
    let have = current + draining;
    let draining_note = if draining == 0 {
        String::new()
    } else {
        format!(
            " ({draining} of an earlier release draining; surge {})",
            o.surge
        )
    };
    let reason = if work == 0 && launch > 0 {
        format!(
            "queue empty{ahead_note}; {current} running or starting{draining_note}: launch {launch}"
        )
    } else if work == 0 {
        format!(
            "queue empty: nothing to launch (idle workers exit by themselves){ahead_note}{draining_note}"
        )
    } else if launch == 0 && have >= cap {
        format!(
            "{work} jobs; fleet at max_workers ({}){ahead_note}{draining_note}",
            o.max_workers
        )
    } else if launch == 0 {
        format!(
            "{work} jobs; {current} workers are enough at {per_worker} per worker{ahead_note}{draining_note}"
        )
    } else {
        format!(
            "{work} jobs need {for_work} workers{ahead_note}; {current} running or starting{draining_note}: launch {launch}"
        )
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
            ..Observation::default()
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
    fn ahead_of_an_expected_surge_workers_are_launched_before_the_jobs_come() {
        let o = Observation {
            ahead: 3,
            ..obs(0, 0, 0, 0)
        };
        let plan = decide(o);
        assert_eq!(plan.launch, 3);
        assert!(plan.reason.contains("pre-scaling"), "{}", plan.reason);
        assert_eq!(
            decide(Observation {
                ahead: 3,
                ..obs(0, 0, 2, 1)
            })
            .launch,
            0,
            "workers already running or starting count"
        );
        assert_eq!(
            decide(Observation {
                ahead: 9,
                ..obs(0, 0, 0, 0)
            })
            .launch,
            4,
            "never above max_workers"
        );
        assert_eq!(
            decide(Observation {
                ahead: 1,
                ..obs(3, 0, 0, 0)
            })
            .launch,
            3,
            "the queue wants more than the profile: the queue decides"
        );
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
            ..Observation::default()
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

    #[test]
    fn draining_workers_count_against_max_workers_and_surge_adds_room() {
        // Two old workers finish their jobs; three jobs wait for the new release.
        let o = Observation {
            visible: 3,
            in_flight: 2,
            running: 2,
            draining: 2,
            ..obs(0, 0, 0, 0)
        };
        let plan = decide(o);
        assert_eq!(plan.launch, 2, "4 workers at most, 2 of them draining");
        assert!(
            plan.reason.contains("2 of an earlier release draining"),
            "{}",
            plan.reason
        );
        assert_eq!(decide(Observation { surge: 1, ..o }).launch, 3);
        assert_eq!(
            decide(Observation { surge: 5, ..o }).launch,
            3,
            "only the queued jobs need new workers"
        );
        let one_draining = Observation {
            visible: 6,
            in_flight: 1,
            running: 1,
            draining: 1,
            surge: 5,
            ..obs(0, 0, 0, 0)
        };
        assert_eq!(
            decide(one_draining).launch,
            4,
            "surge never adds more than are draining"
        );
    }

    #[test]
    fn with_workers_draining_the_fleet_stays_within_max_workers_plus_surge() {
        for visible in 0..8 {
            for running in 0..6 {
                for draining in 0..=running {
                    for surge in 0..3 {
                        let o = Observation {
                            visible,
                            in_flight: draining,
                            running,
                            draining,
                            surge,
                            ..obs(0, 0, 0, 0)
                        };
                        let plan = decide(o);
                        let after = running + plan.launch;
                        assert!(
                            plan.launch == 0 || after <= o.max_workers + surge.min(draining),
                            "{o:?} -> {plan:?}"
                        );
                        // With a surge for every draining worker, the queue gets new workers
                        // as if none were draining.
                        if running == draining && surge >= draining {
                            assert!(
                                plan.launch >= visible.min(o.max_workers),
                                "{o:?} -> {plan:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
