//! Running an upload's inspection in a child process (`quarry inspect-upload`) with
//! a memory limit (`uploads.inspect_memory_mb`), a deadline
//! (`uploads.inspect_timeout_secs`) and a bound on how many run at once
//! (`uploads.max_concurrent_inspections`). A file that makes polars misbehave costs
//! the child, never the server.

use super::error::{ApiResult, AppError};
use super::state::Services;
use quarry_core::Error;
use quarry_domain::{DatasetFormat, IngestOptions};
use quarry_engine::ingest::child::{EXIT_OVER_MEMORY, Reply, Request, over_memory_message};
use quarry_engine::ingest::{Ingested, Limits, Refusal};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long an upload may wait for an inspection slot before it is turned away.
const QUEUE_WAIT: Duration = Duration::from_secs(120);

/// The error a refusal becomes over HTTP.
pub fn refusal(kind: Refusal, message: String) -> AppError {
    match kind {
        Refusal::BadOption => AppError::invalid("bad_option", message),
        Refusal::TooLarge => AppError::Core(Error::TooLarge(message)),
        Refusal::Unsupported => AppError::UnsupportedMediaType(message),
        Refusal::Malformed => AppError::invalid("malformed_file", message),
    }
}

/// Reads `input` in a child process and writes its typed Parquet copy to `output`.
pub async fn ingest(
    services: &Services,
    input: &Path,
    format: DatasetFormat,
    options: &IngestOptions,
    scratch: &Path,
    output: &Path,
) -> ApiResult<Ingested> {
    let uploads = &services.config.uploads;
    let _permit = tokio::time::timeout(QUEUE_WAIT, services.inspections.acquire())
        .await
        .map_err(|_| {
            AppError::Rejected(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "the server is busy reading other uploads: try again in a minute".to_owned(),
            )
        })?
        .map_err(|e| anyhow::anyhow!("inspection semaphore: {e}"))?;
    let request = Request {
        input: input.to_owned(),
        format,
        options: options.clone(),
        limits: Limits::from_config(uploads),
        scratch: scratch.to_owned(),
        output: output.to_owned(),
        memory_limit_mb: uploads.inspect_memory_mb,
    };
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("locating quarry: {e}"))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("inspect-upload")
        .envs(services.config.worker.process_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the inspection child: {e}"))?;
    let json = serde_json::to_vec(&request).map_err(anyhow::Error::from)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("child stdin"))?;
    stdin
        .write_all(&json)
        .await
        .map_err(|e| anyhow::anyhow!("writing to the inspection child: {e}"))?;
    drop(stdin);
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("child stdout"))?;
    let deadline = Duration::from_secs(uploads.inspect_timeout_secs);
    let finished = tokio::time::timeout(deadline, async {
        let mut out = Vec::new();
        (&mut stdout).take(4 << 20).read_to_end(&mut out).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    })
    .await;
    let (status, out) = match finished {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(anyhow::anyhow!("waiting for the inspection child: {e}").into()),
        Err(_) => {
            let _ = child.kill().await;
            return Err(AppError::Core(Error::TooLarge(format!(
                "reading the file took longer than {} s (uploads.inspect_timeout_secs): upload \
                 it as Parquet, or split it",
                uploads.inspect_timeout_secs
            ))));
        }
    };
    let reply: Option<Reply> = out
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|line| serde_json::from_slice(line).ok());
    match reply {
        Some(Reply::Ingested(ingested)) if status.success() => Ok(ingested),
        Some(Reply::Refused { kind, message }) => Err(refusal(kind, message)),
        Some(Reply::Failed { detail }) => {
            Err(anyhow::anyhow!("inspecting the upload failed: {detail}").into())
        }
        _ if status.code() == Some(EXIT_OVER_MEMORY) => Err(AppError::Core(Error::TooLarge(
            over_memory_message(uploads.inspect_memory_mb),
        ))),
        _ => {
            use std::os::unix::process::ExitStatusExt as _;
            tracing::warn!(?status, signal = ?status.signal(), "the inspection child died");
            Err(AppError::invalid(
                "malformed_file",
                format!(
                    "the file could not be read: the reader stopped on it ({status}). Check \
                     that it is a valid {} file",
                    format.as_str().to_uppercase()
                ),
            ))
        }
    }
}
