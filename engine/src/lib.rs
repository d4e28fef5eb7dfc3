//! Quarry's analysis engine on polars (lazy, streaming): upload inspection and typed
//! copies ([`ingest`]), scanning a stored dataset ([`scan`]), the analyses and their
//! validation ([`analysis`]), one attempt's work ([`produce`]), result pages
//! ([`results`]) and the memory guard ([`limits`]).
//!
//! The web server and the worker loop both depend on it; it knows nothing of queues,
//! leases or HTTP.

pub mod analysis;
pub mod ingest;
pub mod limits;
pub mod produce;
pub mod results;
pub mod scan;
