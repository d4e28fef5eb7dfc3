//! Quarry's server-side core: configuration, the database, and the ports (blob store,
//! job queue, fleet, metrics) with their embedded adapters.
//!
//! Neither the web stack nor polars lives here, so the worker and the orchestrator
//! depend on this crate alone.

pub mod auth;
pub mod aws;
pub mod blob;
pub mod clock;
pub mod config;
pub mod control;
pub mod datasets;
pub mod db;
pub mod decisions;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod prescale;
pub mod queue;
pub mod releases;
pub mod sessions;
pub mod sweep;
pub mod throttle;
pub mod watch;

pub use config::Config;
pub use db::Db;
pub use error::{Error, Result};
