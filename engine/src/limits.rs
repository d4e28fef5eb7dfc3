//! The worker's memory limit (`worker.memory_limit_mb`).
//!
//! A [`MemoryGuard`] samples the worker's anonymous resident memory (heap, thread
//! stacks, polars buffers; not the mapped program or dataset files, which the kernel
//! can drop) every few milliseconds while an analysis runs. If the analysis goes over
//! the limit, the guard asks it to stop and the worker fails that attempt with a
//! message naming the limit, then exits so the memory is given back. Retries see
//! the same limit, so a job that cannot fit ends dead-lettered with that message
//! instead of pushing the machine into the kernel's OOM killer.
//!
//! A resident-memory guard rather than `RLIMIT_DATA`/`RLIMIT_AS`: those limit address
//! space, which thread stacks and allocator arenas reserve far beyond what is used,
//! so they fail on machines with many cores long before memory is short.
//! Streaming keeps profile, aggregate and SQL under the limit on datasets larger
//! than it. In the cloud the ECS task's memory is the hard limit behind this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the guard samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The anonymous resident memory of this process, in bytes (`RssAnon`), if the
/// platform reports it.
pub fn resident_anon_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Watches this process's memory while one analysis runs; stops when dropped.
#[derive(Debug)]
pub struct MemoryGuard {
    state: Arc<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    done: AtomicBool,
    exceeded: AtomicBool,
    peak: AtomicU64,
}

impl MemoryGuard {
    /// Starts watching. When resident memory passes `limit_bytes`, `on_exceeded` is
    /// set (the analysis's stop flag) and [`MemoryGuard::exceeded`] turns true.
    /// Without `/proc` (not Linux) the guard only logs that it cannot watch.
    pub fn start(limit_bytes: u64, on_exceeded: Arc<AtomicBool>) -> Self {
        let state = Arc::new(GuardState::default());
        if resident_anon_bytes().is_none() {
            tracing::warn!(
                "this platform does not report resident memory: worker.memory_limit_mb is not enforced"
            );
            return Self { state };
        }
        let watched = state.clone();
        let spawned = std::thread::Builder::new()
            .name("memory-guard".to_owned())
            .spawn(move || {
                while !watched.done.load(Ordering::Relaxed) {
                    if let Some(now) = resident_anon_bytes() {
                        watched.peak.fetch_max(now, Ordering::Relaxed);
                        if now > limit_bytes {
                            watched.exceeded.store(true, Ordering::Relaxed);
                            on_exceeded.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the memory guard");
        }
        Self { state }
    }

    /// True once the limit was passed.
    pub fn exceeded(&self) -> bool {
        self.state.exceeded.load(Ordering::Relaxed)
    }

    /// The highest resident memory seen so far, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.state.peak.load(Ordering::Relaxed)
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Relaxed);
    }
}

/// The message a job gets when its analysis needed more than the limit.
pub fn exceeded_message(limit_mb: u64) -> String {
    format!(
        "the analysis needed more than the worker's memory limit of {limit_mb} MB. \
         Reduce what it keeps (group into fewer rows, select fewer columns, add a LIMIT), \
         or ask an operator to raise worker.memory_limit_mb"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn the_guard_trips_when_memory_grows_past_the_limit_and_not_before() {
        let Some(base) = resident_anon_bytes() else {
            return; // not Linux: nothing to measure
        };
        let limit = base + 64 * 1024 * 1024;
        let stop = Arc::new(AtomicBool::new(false));
        let guard = MemoryGuard::start(limit, stop.clone());
        std::thread::sleep(SAMPLE_EVERY * 5);
        assert!(!guard.exceeded(), "nothing was allocated yet");
        assert!(guard.peak_bytes() >= base / 2, "the guard samples");

        // Touch every page so the memory is really resident.
        let big = vec![1_u8; 128 * 1024 * 1024];
        assert!(
            wait_for(|| guard.exceeded()),
            "128 MB over a 64 MB margin trips the guard (peak {})",
            guard.peak_bytes()
        );
        assert!(
            stop.load(Ordering::Relaxed),
            "the analysis is asked to stop"
        );
        assert!(guard.peak_bytes() > limit);
        drop(big);
    }

    #[test]
    fn the_message_names_the_limit_and_the_way_out() {
        let m = exceeded_message(192);
        assert!(
            m.contains("192 MB") && m.contains("worker.memory_limit_mb"),
            "{m}"
        );
    }
}
