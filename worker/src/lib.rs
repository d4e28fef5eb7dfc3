//! Quarry's analysis engine (polars, lazy and streaming) and the worker loop.

pub mod analysis;
pub mod ingest;
pub mod limits;
pub mod results;
pub mod run;
pub mod scan;
