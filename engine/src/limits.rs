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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
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

/// One guard's watch, as the sampler sees it.
struct Watch {
    limit_bytes: u64,
    on_exceeded: Arc<AtomicBool>,
    state: Arc<GuardState>,
}

/// The guards watching now. One sampler thread serves them all and waits while there
/// are none. A thread per analysis, which read `/proc/self/status` at once and every
/// 20 ms until it noticed its guard dropped, kept about ten of them alive while
/// no-op jobs ran a few milliseconds each.
static WATCHES: Mutex<Vec<Watch>> = Mutex::new(Vec::new());
static WATCHING: Condvar = Condvar::new();

fn watches() -> MutexGuard<'static, Vec<Watch>> {
    WATCHES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this platform reports resident memory (asked once).
fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| resident_anon_bytes().is_some())
}

/// Starts the sampler on first use; whether it runs.
fn sampler() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("memory-guard".to_owned())
            .spawn(sample_forever);
        if let Err(e) = &spawned {
            tracing::warn!(error = %e, "could not start the memory guard");
        }
        spawned.is_ok()
    })
}

fn sample_forever() {
    loop {
        {
            let mut w = watches();
            while w.is_empty() {
                w = WATCHING.wait(w).unwrap_or_else(PoisonError::into_inner);
            }
        }
        let now = resident_anon_bytes();
        watches().retain(|watch| {
            if watch.state.done.load(Ordering::Relaxed) {
                return false;
            }
            let Some(now) = now else { return true };
            watch.state.peak.fetch_max(now, Ordering::Relaxed);
            if now > watch.limit_bytes {
                watch.state.exceeded.store(true, Ordering::Relaxed);
                watch.on_exceeded.store(true, Ordering::Relaxed);
                return false;
            }
            true
        });
        std::thread::sleep(SAMPLE_EVERY);
    }
}

impl MemoryGuard {
    /// Starts watching. When resident memory passes `limit_bytes`, `on_exceeded` is
    /// set (the analysis's stop flag) and [`MemoryGuard::exceeded`] turns true.
    /// Without `/proc` (not Linux) the guard only logs that it cannot watch.
    pub fn start(limit_bytes: u64, on_exceeded: Arc<AtomicBool>) -> Self {
        let state = Arc::new(GuardState::default());
        if !supported() {
            tracing::warn!(
                "this platform does not report resident memory: worker.memory_limit_mb is not enforced"
            );
            return Self { state };
        }
        if sampler() {
            watches().push(Watch {
                limit_bytes,
                on_exceeded,
                state: state.clone(),
            });
            WATCHING.notify_one();
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

    /// Threads of this process named `name`.
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn one_thread_watches_every_guard_and_each_trips_on_its_own_limit() {
        if resident_anon_bytes().is_none() {
            return; // not Linux: nothing to measure
        }
        let (low, high) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let guards: Vec<MemoryGuard> = (0..4)
            .map(|_| MemoryGuard::start(u64::MAX, high.clone()))
            .chain([MemoryGuard::start(1, low.clone())])
            .collect();
        assert!(
            wait_for(|| guards[4].exceeded()),
            "1 byte is passed at once"
        );
        assert!(low.load(Ordering::Relaxed));
        std::thread::sleep(SAMPLE_EVERY * 3);
        assert!(
            guards[..4]
                .iter()
                .all(|g| !g.exceeded() && g.peak_bytes() > 0),
            "the others sample and stay under theirs"
        );
        assert!(!high.load(Ordering::Relaxed));
        assert_eq!(threads_named("memory-guard"), 1, "one sampler for all");
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
