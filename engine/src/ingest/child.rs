//! The inspection child process (`quarry inspect-upload`, hidden): the server hands
//! it one upload on stdin and reads one [`Reply`] from stdout. Whatever polars does
//! with a hostile file (run out of memory, overflow its stack) happens here, where
//! a resident-memory guard and the server's deadline bound it, not in the server.

use super::{Ingested, Limits, Refusal, ingest};
use crate::limits::MemoryGuard;
use quarry_domain::{DatasetFormat, IngestOptions};
use serde::{Deserialize, Serialize};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The exit code of a child that went over its memory limit.
pub const EXIT_OVER_MEMORY: i32 = 3;

/// One upload to read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub input: PathBuf,
    pub format: DatasetFormat,
    pub options: IngestOptions,
    pub limits: Limits,
    /// A directory for temporary files; the server removes it afterwards.
    pub scratch: PathBuf,
    /// Where the typed Parquet copy goes.
    pub output: PathBuf,
    pub memory_limit_mb: u64,
}

/// What became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reply {
    Ingested(Ingested),
    Refused {
        kind: Refusal,
        message: String,
    },
    /// Not the file's fault; the detail is for the server's log.
    Failed {
        detail: String,
    },
}

/// The message for an upload whose reading needed more than the limit.
pub fn over_memory_message(limit_mb: u64) -> String {
    format!(
        "reading the file needed more than {limit_mb} MB of memory (uploads.inspect_memory_mb): \
         upload it as Parquet, or split it"
    )
}

fn reply(r: &Reply) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Reads one request from stdin, ingests it, writes the reply to stdout.
pub fn serve() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().take(1 << 20).read_to_string(&mut input)?;
    let request: Request = serde_json::from_str(&input)?;
    let exceeded = Arc::new(AtomicBool::new(false));
    let _guard = MemoryGuard::start(
        request.memory_limit_mb.saturating_mul(1024 * 1024),
        exceeded.clone(),
    );
    {
        let (exceeded, limit) = (exceeded.clone(), request.memory_limit_mb);
        std::thread::Builder::new()
            .name("memory-exit".to_owned())
            .spawn(move || {
                while !exceeded.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                reply(&Reply::Refused {
                    kind: Refusal::TooLarge,
                    message: over_memory_message(limit),
                });
                std::process::exit(EXIT_OVER_MEMORY);
            })?;
    }
    let outcome = ingest(
        &request.input,
        request.format,
        &request.options,
        &request.limits,
        &request.scratch,
        &request.output,
    );
    reply(&match outcome {
        Ok(ingested) => Reply::Ingested(ingested),
        Err(super::IngestError::Refused { kind, message }) => Reply::Refused { kind, message },
        Err(super::IngestError::Unparsable(message)) => Reply::Refused {
            kind: Refusal::Malformed,
            message,
        },
        Err(super::IngestError::Internal(e)) => Reply::Failed {
            detail: format!("{e:#}"),
        },
    });
    Ok(())
}
