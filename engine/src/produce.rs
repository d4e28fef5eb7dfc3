//! One attempt's work, off the worker loop: scan the dataset, run the analysis, write
//! the result as Parquet to a temporary file. The loop (in `quarry-worker`) runs this
//! on a thread of its own and owns everything around it (leases, heartbeats, commits).

use crate::analysis::{self, RunContext, RunError};
use crate::scan::{Source, scan_source};
use polars::prelude::*;
use quarry_domain::{Analysis, ColumnInfo, DatasetFormat};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A result, ready to be stored and committed.
#[derive(Debug)]
pub struct Produced {
    pub output: Output,
    pub rows: u64,
    pub columns: Vec<ColumnInfo>,
}

/// Where a result's Parquet is.
#[derive(Debug)]
pub enum Output {
    /// A small result (at most the `inline_max` bytes [`produce`] was given), in
    /// memory: it is kept in the job's result row, with no file of its own.
    Bytes(Vec<u8>),
    /// A temporary file, moved into the blob store.
    File(tempfile::NamedTempFile),
}

/// Where [`produce`] writes a result: to memory when it takes at most `inline_max`
/// bytes of Parquet, else to a file under `tmp_dir`.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub tmp_dir: &'a Path,
    pub inline_max: usize,
}

/// Runs `analysis` over `source` and writes its result as Parquet to `to`. `stop` asks
/// it to stop early; `progress` receives 0..1 as `f64` bits.
pub fn produce(
    analysis: &Analysis,
    source: &Source,
    format: DatasetFormat,
    columns: &[ColumnInfo],
    to: Destination<'_>,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<Produced, RunError> {
    let Destination {
        tmp_dir,
        inline_max,
    } = to;
    let report = |p: f64| progress.store(p.to_bits(), Ordering::Relaxed);
    let ctx = RunContext {
        stop,
        progress: &report,
    };
    let data = scan_source(source, format, columns)?;
    let mut df = analysis::run(analysis, data, &ctx)?;
    if perturbing_for_tests() {
        df = perturbed(df)?;
    }
    let rows = df.height() as u64;
    let columns = analysis::result_columns(&df);
    // Small results (most are: aggregates, profiles, histograms) are written on this
    // thread: handing the columns to polars' pool costs more than it saves there (a
    // no-op job's 1-row result took 1.6 ms to write that way on a busy machine, 1.2 ms
    // here). The smallest are stored uncompressed: zstd sets up a context per column
    // chunk (seen in a no-op job's profile), and saves nothing on a few hundred
    // bytes. They are written to memory, and kept there when small enough.
    let size = df.estimated_size();
    if size <= UNCOMPRESSED_UP_TO.max(inline_max) {
        let compression = if size <= UNCOMPRESSED_UP_TO {
            ParquetCompression::Uncompressed
        } else {
            ParquetCompression::default()
        };
        let mut bytes = Vec::with_capacity(size + 1024);
        ParquetWriter::new(&mut bytes)
            .with_compression(compression)
            .set_parallel(false)
            .finish(&mut df)?;
        let output = if bytes.len() <= inline_max {
            Output::Bytes(bytes)
        } else {
            let mut file = temp_file(tmp_dir)?;
            file.write_all(&bytes)
                .map_err(|e| RunError::Internal(format!("cannot write the result file: {e}")))?;
            Output::File(file)
        };
        return Ok(Produced {
            output,
            rows,
            columns,
        });
    }
    let file = temp_file(tmp_dir)?;
    // Buffered: the writer's own writes are small (headers, a page, the footer's
    // parts), a system call each.
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file.as_file());
    ParquetWriter::new(&mut out)
        .with_compression(ParquetCompression::default())
        .set_parallel(size > PARALLEL_WRITE_ABOVE)
        .finish(&mut df)?;
    out.flush()
        .map_err(|e| RunError::Internal(format!("cannot write the result file: {e}")))?;
    drop(out);
    Ok(Produced {
        output: Output::File(file),
        rows,
        columns,
    })
}

/// A new temporary result file under `tmp_dir`.
fn temp_file(tmp_dir: &Path) -> Result<tempfile::NamedTempFile, RunError> {
    tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile_in(tmp_dir)
        .map_err(|e| RunError::Internal(format!("cannot create the result file: {e}")))
}

/// The in-memory size of a result above which its columns are encoded in parallel.
const PARALLEL_WRITE_ABOVE: usize = 8 << 20;

/// The in-memory size of a result up to which it is written uncompressed.
const UNCOMPRESSED_UP_TO: usize = 16 << 10;

/// The result file's write buffer.
const WRITE_BUFFER: usize = 256 << 10;

/// A fault the tests inject (`QUARRY_TEST_FAULT=perturb_floats`): an engine whose
/// results differ, for the promotion gate's test. Debug builds only; a release build
/// has no such switch.
fn perturbing_for_tests() -> bool {
    cfg!(debug_assertions) && std::env::var("QUARRY_TEST_FAULT").as_deref() == Ok("perturb_floats")
}

/// Every float of the result scaled by 1 + 1e-6: far beyond the gate's tolerance,
/// invisible to the eye.
fn perturbed(df: DataFrame) -> Result<DataFrame, RunError> {
    let floats: Vec<Expr> = df
        .schema()
        .iter()
        .filter(|(_, t)| matches!(t, DataType::Float32 | DataType::Float64))
        .map(|(n, _)| col(n.clone()) * lit(1.0 + 1e-6))
        .collect();
    Ok(df.lazy().with_columns(floats).collect()?)
}
