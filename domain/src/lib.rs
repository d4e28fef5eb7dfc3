//! Quarry's shared vocabulary.
//!
//! Everything here is plain data with serde: it is used by the server, the worker and
//! the browser (WASM) build alike, so this crate must never depend on I/O, polars,
//! sqlx or the AWS SDKs.

pub mod analysis;
pub mod control;
pub mod dataset;
pub mod environments;
pub mod error;
pub mod gate;
pub mod job;
pub mod metrics;
pub mod role;

pub use analysis::{AggOp, Aggregation, Analysis, OrderKey};
pub use dataset::{ColumnInfo, Dataset, DatasetFormat, Encoding, IngestOptions};
pub use error::{ErrorBody, ErrorDetail};
pub use job::{
    Decision, FailureKind, FleetCounts, FleetWorker, InputProvenance, Job, JobAttempt, JobEvent,
    JobStatus, PreScaling, ProfileHour, Provenance, QueueCounts, ReleaseFleet, ResultPage,
    SystemStatus, Waiting, backstop_receives,
};
pub use role::Role;
