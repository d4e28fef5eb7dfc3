//! The configuration of the bounds on hostile input: uploads, analyses and sign-in
//! (README, "Limits").

use serde::Deserialize;

/// Bounds on what an upload may hold, checked before polars reads it (README,
/// "Limits"). Every default is generous for real data and small for an attack.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadsConfig {
    /// The largest upload, counted as it streams in.
    pub max_bytes: u64,
    /// The longest single line of a CSV or NDJSON file.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: u64,
    /// The most columns a dataset may have.
    #[serde(default = "default_max_columns")]
    pub max_columns: u32,
    /// The deepest nesting of arrays and objects in an NDJSON record.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: u32,
    /// The memory the inspection child process may use while it reads an upload.
    #[serde(default = "default_inspect_memory_mb")]
    pub inspect_memory_mb: u64,
    /// How long the inspection of one upload may take.
    #[serde(default = "default_inspect_timeout_secs")]
    pub inspect_timeout_secs: u64,
    /// How many uploads are inspected at once; others wait their turn.
    #[serde(default = "default_max_concurrent_inspections")]
    pub max_concurrent_inspections: u32,
}

fn default_max_line_bytes() -> u64 {
    8 * 1024 * 1024
}
fn default_max_columns() -> u32 {
    2_000
}
fn default_max_json_depth() -> u32 {
    64
}
fn default_inspect_memory_mb() -> u64 {
    1024
}
fn default_inspect_timeout_secs() -> u64 {
    600
}
fn default_max_concurrent_inspections() -> u32 {
    2
}

/// What an analysis may ask for (README, "Limits").
#[derive(Debug, Clone, Deserialize)]
pub struct AnalysesConfig {
    /// Whether the CPU-burning `spin` analysis is accepted (load tests and demos).
    pub allow_spin: bool,
    /// The longest a `spin` may run, in seconds.
    #[serde(default = "default_max_spin_secs")]
    pub max_spin_secs: u64,
    /// The longest one attempt of a job may run; a job over it fails, naming this key.
    #[serde(default = "default_max_runtime_secs")]
    pub max_runtime_secs: u64,
    /// Jobs one user may have running at once; further jobs wait in the queue.
    #[serde(default = "default_max_running_per_user")]
    pub max_running_per_user: u32,
    /// The most columns a `profile` covers.
    #[serde(default = "default_max_profile_columns")]
    pub max_profile_columns: u32,
    /// The most columns a `correlation` may name.
    #[serde(default = "default_max_correlation_columns")]
    pub max_correlation_columns: u32,
    /// Results of at most this many KiB of Parquet are kept in their job's row
    /// instead of the blob store (no file or `PUT` per job); 0 stores every result
    /// as a blob. At most [`MAX_INLINE_RESULT_KB`].
    #[serde(default = "default_inline_result_max_kb")]
    pub inline_result_max_kb: u64,
}

/// The largest `analyses.inline_result_max_kb`: a row is read whole with its job's
/// result, and larger results are better streamed from the blob store.
pub const MAX_INLINE_RESULT_KB: u64 = 1024;

impl AnalysesConfig {
    /// The largest result kept in its row, in bytes.
    pub fn inline_result_max_bytes(&self) -> usize {
        usize::try_from(self.inline_result_max_kb.min(MAX_INLINE_RESULT_KB) << 10).unwrap_or(0)
    }
}

fn default_max_spin_secs() -> u64 {
    600
}
fn default_max_runtime_secs() -> u64 {
    6 * 3600
}
fn default_max_running_per_user() -> u32 {
    4
}
fn default_max_profile_columns() -> u32 {
    500
}
fn default_max_correlation_columns() -> u32 {
    100
}
fn default_inline_result_max_kb() -> u64 {
    64
}

/// Sign-in throttling and password hashing bounds (README, "Limits").
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// Failed sign-ins allowed per client address within `failure_window_secs`.
    #[serde(default = "default_max_failures_per_address")]
    pub max_failures_per_address: u32,
    /// Failed sign-ins allowed per user name within `failure_window_secs`.
    #[serde(default = "default_max_failures_per_name")]
    pub max_failures_per_name: u32,
    /// The window failed sign-ins are counted in.
    #[serde(default = "default_failure_window_secs")]
    pub failure_window_secs: u64,
    /// Password hashes (argon2id, ~19 MiB each) computed at once.
    #[serde(default = "default_max_concurrent_hashes")]
    pub max_concurrent_hashes: u32,
    /// Event streams (`…/events`) one user may have open at once; more get 429.
    #[serde(default = "default_max_streams_per_user")]
    pub max_streams_per_user: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_failures_per_address: default_max_failures_per_address(),
            max_failures_per_name: default_max_failures_per_name(),
            failure_window_secs: default_failure_window_secs(),
            max_concurrent_hashes: default_max_concurrent_hashes(),
            max_streams_per_user: default_max_streams_per_user(),
        }
    }
}

fn default_max_failures_per_address() -> u32 {
    20
}
fn default_max_failures_per_name() -> u32 {
    10
}
fn default_failure_window_secs() -> u64 {
    300
}
fn default_max_streams_per_user() -> u32 {
    50
}
fn default_max_concurrent_hashes() -> u32 {
    4
}
