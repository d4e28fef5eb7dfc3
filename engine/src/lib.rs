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

/// The engine that computes results, as their provenance records it:
/// `quarry-engine <version> (polars <version>)`.
pub fn version() -> String {
    format!(
        "quarry-engine {} (polars {})",
        env!("CARGO_PKG_VERSION"),
        polars::VERSION
    )
}
