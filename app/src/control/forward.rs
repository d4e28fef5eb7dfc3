//! Re-runs on another environment's release, run there: the server's part.
//!
//! `POST /api/v1/jobs/{id}/rerun {"release"}` on a release this server's workers do not
//! run, but an environment in `[control.peers]` does, records a job here that runs in
//! that environment (`quarry_core::jobs::forwarded`). The [`Forwarder`] then does what
//! an analyst there would, through its API ([`super::peer`]): it uploads the dataset's
//! original with the options it was read with here, submits the analysis, follows the
//! job (its progress shows here), and once it has succeeded on the release asked for,
//! downloads the result (Parquet) into this server's store and commits it with the
//! provenance the other environment recorded. The job's page then compares the two
//! results like any re-run's. The upload there is deleted when the job ends, whatever
//! the outcome. A cancellation here cancels the job there.

use super::ControlPlane;
use super::peer::{Peer, PeerError};
use quarry_core::blob::BlobStore;
use quarry_core::config::PeerConfig;
use quarry_core::jobs::{ResultMeta, StoredJob, forwarded};
use quarry_core::{Db, Error, Result, datasets};
use quarry_domain::Provenance;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest result brought back from another environment.
pub const MAX_RESULT_BYTES: u64 = 1 << 30;

/// Jobs looked at in one pass.
const BATCH: i64 = 100;

/// Jobs moved on at once in a pass (each may be uploading or downloading a file).
pub const AT_ONCE: usize = 4;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{e}"))
}

/// Drives the jobs that run in other environments.
#[derive(Clone)]
pub struct Forwarder {
    pub plane: Arc<ControlPlane>,
    pub blobs: Arc<dyn BlobStore>,
    pub peers: BTreeMap<String, PeerConfig>,
    pub http: reqwest::Client,
    /// How long a job may take there, from its submission here, before it fails
    /// (`analyses.max_runtime_secs` and as long again for its queue there).
    pub deadline: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Looks at the jobs every `every` (and whenever `nudge` fires) until the process
    /// ends.
    pub fn spawn(self, every: Duration, nudge: Arc<tokio::sync::Notify>) {
        super::every(
            every,
            nudge,
            "the jobs run in other environments",
            move || {
                let forwarder = self.clone();
                async move { forwarder.advance().await }
            },
        );
    }

    fn db(&self) -> &Db {
        &self.plane.db
    }

    /// Moves every such job on as far as it can now, [`AT_ONCE`] at a time (so one
    /// large upload does not hold the others up); one job's error is logged and does
    /// not stop the others.
    pub async fn advance(&self) -> Result<()> {
        use futures::StreamExt as _;
        let jobs = forwarded::open(self.db(), BATCH).await?;
        futures::stream::iter(jobs)
            .for_each_concurrent(AT_ONCE, |job| async move {
                if let Err(e) = self.advance_one(&job).await {
                    tracing::warn!(job_id = %job.view.id, error = %e, "a job run in another environment could not move on");
                }
            })
            .await;
        Ok(())
    }

    async fn advance_one(&self, job: &StoredJob) -> Result<()> {
        let id = job.view.id.as_str();
        let env = job.view.environment.clone().unwrap_or_default();
        let peer = match super::peer::resolve(&self.plane, &self.peers, &env, &self.http).await {
            Ok(peer) => peer,
            Err(e) => {
                // Unreachable as configured: nothing more can be done there.
                forwarded::ended(self.db(), id, "failed", Some(&e.to_string())).await?;
                if job.peer_dataset_id.is_some() {
                    tracing::warn!(job_id = %id, %env, error = %e, "a re-run's upload there cannot be deleted: it stays");
                    forwarded::upload_gone(self.db(), id).await?;
                }
                return Ok(());
            }
        };
        if job.view.status.is_terminal() {
            self.clean(job, &peer).await;
            return Ok(());
        }
        if job.cancel_requested {
            if let Some(there) = &job.peer_job_id {
                peer.cancel(there).await.ok();
            }
            forwarded::ended(self.db(), id, "cancelled", None).await?;
            self.clean(job, &peer).await;
            return Ok(());
        }
        let submitted_at = quarry_core::clock::parse_rfc3339(&job.view.created_at).unwrap_or(0);
        let late = quarry_core::clock::now_ms() - submitted_at
            > i64::try_from(self.deadline.as_millis()).unwrap_or(i64::MAX);
        let Some(dataset_there) = &job.peer_dataset_id else {
            return self.upload(job, &peer, late).await;
        };
        let Some(there) = &job.peer_job_id else {
            return self.submit(job, &peer, dataset_there, late).await;
        };
        self.follow(job, &peer, there, late).await
    }

    /// Fails the job with `why` and deletes what it left there.
    async fn fail(&self, job: &StoredJob, peer: &Peer, why: &str) -> Result<()> {
        let why = format!("in {}: {why}", peer.env);
        forwarded::ended(self.db(), &job.view.id, "failed", Some(&why)).await?;
        if let Some(there) = &job.peer_job_id {
            peer.cancel(there).await.ok();
        }
        self.clean(job, peer).await;
        Ok(())
    }

    /// What to do with an error: fail on one that will not change (or once `late`),
    /// else try again on the next pass.
    async fn failed_call(
        &self,
        job: &StoredJob,
        peer: &Peer,
        e: &PeerError,
        late: bool,
    ) -> Result<()> {
        if !e.transient || late {
            return self.fail(job, peer, &e.message).await;
        }
        tracing::warn!(job_id = %job.view.id, env = %peer.env, error = %e, "another environment did not answer: trying again");
        Ok(())
    }

    async fn upload(&self, job: &StoredJob, peer: &Peer, late: bool) -> Result<()> {
        let Some(d) = datasets::find(self.db(), &job.view.dataset_id).await? else {
            return self.fail(job, peer, "the dataset was deleted here").await;
        };
        let uploaded = match peer.upload_dataset(&*self.blobs, &d, "rerun").await {
            Ok(v) => v,
            Err(e) => return self.failed_call(job, peer, &e, late).await,
        };
        let Some(there) = uploaded["id"].as_str() else {
            return self.fail(job, peer, "its upload answer has no id").await;
        };
        if !forwarded::uploaded(self.db(), &job.view.id, there).await? {
            peer.delete_dataset(there).await.ok();
            return Ok(());
        }
        if d.view.sha256.is_some() && uploaded["sha256"].as_str() != d.view.sha256.as_deref() {
            let job = StoredJob {
                peer_dataset_id: Some(there.to_owned()),
                ..job.clone()
            };
            return self
                .fail(
                    &job,
                    peer,
                    "the dataset was stored there with another content",
                )
                .await;
        }
        Ok(())
    }

    async fn submit(
        &self,
        job: &StoredJob,
        peer: &Peer,
        dataset_there: &str,
        late: bool,
    ) -> Result<()> {
        let analysis = serde_json::to_value(&job.view.analysis).map_err(internal)?;
        match peer.submit(dataset_there, &analysis).await {
            Ok(there) => {
                let Some(there) = there["id"].as_str() else {
                    return self.fail(job, peer, "its answer has no job id").await;
                };
                if !forwarded::submitted(self.db(), &job.view.id, there).await? {
                    peer.cancel(there).await.ok();
                    return Ok(());
                }
                tracing::info!(job_id = %job.view.id, env = %peer.env, peer_job_id = there, "a re-run was submitted in the environment that runs its release");
                Ok(())
            }
            Err(e) => self.failed_call(job, peer, &e, late).await,
        }
    }

    async fn follow(&self, job: &StoredJob, peer: &Peer, there: &str, late: bool) -> Result<()> {
        let id = job.view.id.as_str();
        let theirs = match peer.job(there).await {
            Ok(v) => v,
            Err(e) => return self.failed_call(job, peer, &e, late).await,
        };
        match theirs["status"].as_str() {
            Some("succeeded") => {}
            Some(status @ ("failed" | "cancelled")) => {
                let why = format!(
                    "the job {status} there: {}",
                    theirs["error"].as_str().unwrap_or("no reason given")
                );
                return self.fail(job, peer, &why).await;
            }
            _ if late => {
                let why = format!("it did not finish within {} s", self.deadline.as_secs());
                return self.fail(job, peer, &why).await;
            }
            Some("running") => {
                let progress = theirs["progress"].as_f64().unwrap_or(0.0);
                return forwarded::running(self.db(), id, progress).await;
            }
            _ => return Ok(()),
        }
        let provenance: Provenance = match serde_json::from_value(theirs["provenance"].clone()) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("its result has no provenance this server reads: {e}");
                return self.fail(job, peer, &why).await;
            }
        };
        let wanted = job.view.required_release.as_deref().unwrap_or_default();
        if provenance.release != wanted {
            let why = format!(
                "it ran on release {}, not on {wanted}: {} runs another release now; re-run \
                 the job again",
                provenance.release, peer.env
            );
            return self.fail(job, peer, &why).await;
        }
        let file = tempfile::NamedTempFile::new().map_err(internal)?;
        if let Err(e) = peer
            .download_result(there, file.path(), MAX_RESULT_BYTES)
            .await
        {
            return self.failed_call(job, peer, &e, late).await;
        }
        let path = file.path().to_owned();
        let page = tokio::task::spawn_blocking(move || quarry_engine::results::page(&path, 0, 0))
            .await
            .map_err(internal)?;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let why = format!("it sent a result that is not Parquet: {e}");
                return self.fail(job, peer, &why).await;
            }
        };
        let key = format!("results/{id}/{}.parquet", peer.env);
        let bytes = self.blobs.put_file(&key, file.path()).await?;
        let result = ResultMeta {
            blob_key: key.clone(),
            rows: page.total_rows,
            bytes,
            columns: page.columns,
            inline: None,
        };
        // The input is this server's dataset, read from the same content.
        let provenance = Provenance {
            dataset: quarry_domain::InputProvenance {
                id: job.view.dataset_id.clone(),
                ..provenance.dataset
            },
            ..provenance
        };
        let json = serde_json::to_string(&provenance).map_err(internal)?;
        if forwarded::succeeded(self.db(), id, &result, &json).await? {
            tracing::info!(job_id = %id, env = %peer.env, rows = result.rows, "a re-run's result came back from the environment that ran it");
        } else {
            self.blobs.delete(&key).await.ok();
        }
        self.clean(job, peer).await;
        Ok(())
    }

    /// Deletes the copy of the dataset there (and with it the job there and its result).
    async fn clean(&self, job: &StoredJob, peer: &Peer) {
        let Some(there) = job.peer_dataset_id.as_deref() else {
            return;
        };
        match peer.delete_dataset(there).await {
            Ok(()) => {
                if let Err(e) = forwarded::upload_gone(self.db(), &job.view.id).await {
                    tracing::warn!(job_id = %job.view.id, error = %e, "could not record a deleted upload");
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %job.view.id, env = %peer.env, error = %e, "could not delete a re-run's dataset there: trying again");
            }
        }
    }
}
