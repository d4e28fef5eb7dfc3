//! The threads analyses run on, kept between jobs.
//!
//! An analysis runs off the worker's runtime, on a thread with a big reserved stack
//! (polars plans SQL and expressions recursively). Starting one per job, with the
//! memory guard's, took 0.3 ms of a no-op job's 9 ms when that was timed; so a thread
//! that has finished its analysis waits here for the next one. A thread goes back to
//! the idle list only once its analysis has returned, so one that would not stop
//! (the worker then exits) is never given another job.

use std::sync::mpsc::{self, SendError, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What a thread does with its outcome once it is idle again.
type Deliver = Box<dyn FnOnce() + Send>;

/// One piece of work: it runs, then hands back how to deliver its outcome.
type Task = Box<dyn FnOnce() -> Deliver + Send>;

/// The stack each thread reserves (only touched pages are used).
const STACK: usize = quarry_engine::analysis::sql::BIG_STACK;

static IDLE: Mutex<Vec<Sender<Task>>> = Mutex::new(Vec::new());

fn idle() -> MutexGuard<'static, Vec<Sender<Task>>> {
    IDLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on an idle analysis thread, or a new one, and sends what it returns
/// to `done` (nothing, if the receiver has gone). The thread is idle again before
/// `done` hears, so the caller's next job finds it. `work` must not panic (the
/// worker catches an analysis's panic inside it); if it does, that thread ends.
pub fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    done: tokio::sync::oneshot::Sender<T>,
) -> std::io::Result<()> {
    let mut task: Task = Box::new(move || {
        let outcome = work();
        Box::new(move || {
            let _ = done.send(outcome);
        })
    });
    while let Some(thread) = idle().pop() {
        match thread.send(task) {
            Ok(()) => return Ok(()),
            // That thread has ended (a panic): a new one will do.
            Err(SendError(back)) => task = back,
        }
    }
    let (tx, rx) = mpsc::channel::<Task>();
    tx.send(task).ok();
    std::thread::Builder::new()
        .name("analysis".to_owned())
        .stack_size(STACK)
        .spawn(move || {
            while let Ok(task) = rx.recv() {
                let deliver = task();
                idle().push(tx.clone());
                deliver();
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;

    async fn on_a_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        run(work, tx).expect("a thread");
        rx.await.expect("an outcome")
    }

    fn here() -> ThreadId {
        std::thread::current().id()
    }

    // One test, as the idle list is the process's: tests in parallel would share it.
    #[tokio::test]
    async fn a_finished_thread_takes_the_next_job_and_a_busy_one_does_not() {
        let first = on_a_thread(here).await;
        assert_ne!(first, here(), "off the caller's thread");
        assert_eq!(on_a_thread(here).await, first, "the idle thread is reused");

        // A job still running holds its thread: the next one gets another.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (tx, busy) = tokio::sync::oneshot::channel();
        run(
            move || {
                hold.recv().ok();
                here()
            },
            tx,
        )
        .expect("a thread");
        let meanwhile = on_a_thread(here).await;
        release.send(()).expect("the held job waits");
        let held = busy.await.expect("an outcome");
        assert_ne!(meanwhile, held, "a busy thread is not given a second job");
        assert!([meanwhile, held].contains(&first));

        // The outcome is the work's own.
        assert_eq!(on_a_thread(|| 6 * 7).await, 42);
    }
}
