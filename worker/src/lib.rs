//! The worker loop (`quarry worker`): takes jobs from the queue through the job
//! lifecycle and runs them on the engine (`quarry-engine`).

pub mod run;
mod threads;
