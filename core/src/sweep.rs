//! The start-up sweep: blobs that a crash left without a database row (an upload cut
//! off between storing its file and recording it, a result written by a worker that
//! died before committing, a reference's copy of a result stored before the reference
//! was recorded) and stale temporary files are removed.

use crate::blob::BlobStore;
use crate::clock::now_ms;
use crate::datasets::referenced_blob_keys;
use crate::{Db, Result};
use std::path::Path;
use std::time::Duration;

/// How old an unreferenced blob must be before the sweep removes it. Uploads and
/// commits in progress elsewhere (another API task, a worker) finish well within it.
#[derive(Debug, Clone, Copy)]
pub struct Grace {
    pub datasets: Duration,
    pub results: Duration,
    pub references: Duration,
}

/// Removes the unreferenced blobs under `datasets/`, `results/` and `references/`
/// older than their grace; returns how many went.
pub async fn orphaned_blobs(db: &Db, blobs: &dyn BlobStore, grace: Grace) -> Result<usize> {
    let referenced = referenced_blob_keys(db).await?;
    let now = now_ms();
    let mut removed = 0;
    for (prefix, grace) in [
        ("datasets/", grace.datasets),
        ("results/", grace.results),
        ("references/", grace.references),
    ] {
        let cutoff = now - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        for blob in blobs.list(prefix).await? {
            if blob.modified_ms <= cutoff && !referenced.contains(&blob.key) {
                blobs.delete(&blob.key).await?;
                tracing::warn!(blob_key = %blob.key, "removed a file left without a row by an earlier crash");
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes entries of a temporary directory older than `age` (files that a killed
/// process could not remove itself).
pub fn stale_temp_files(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if !old {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}
