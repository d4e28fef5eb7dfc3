//! The gate's checks that run in the upstream environment, through its API
//! ([`crate::control::peer`]), when no worker of the candidate reads this server's
//! queue: upload the reference's dataset there, submit the analysis, follow the job,
//! download the result and compare it here, delete the upload there.

use super::{GateRunner, internal};
use crate::control::peer::{Peer, PeerError};
use quarry_core::clock::{now_ms, parse_rfc3339};
use quarry_core::control::promotions;
use quarry_core::control::references::{self, Check};
use quarry_core::{Result, datasets};
use std::time::Duration;

impl GateRunner {
    pub(super) async fn peer(&self, env: &str) -> Result<Peer> {
        crate::control::peer::resolve(&self.plane, &self.peers, env, &self.http).await
    }

    /// Runs a pending check in the upstream environment `peer`: uploads the
    /// reference's dataset there (once), then submits the analysis. Whether the check
    /// ended (it fails on an answer that will not change, or when the peer stayed
    /// unreachable past `timeout`).
    pub(super) async fn submit_upstream(
        &self,
        p: &promotions::Promotion,
        c: &Check,
        peer: &Peer,
    ) -> Result<bool> {
        let db = &self.plane.db;
        let promotion = p.id.as_str();
        let r = references::get(db, &c.reference_id).await?;
        let give_up = |e: &PeerError| {
            !e.transient
                || parse_rfc3339(&p.requested_at).is_some_and(|at| now_ms() - at > ms(self.timeout))
        };
        let dataset_id = match &c.peer_dataset_id {
            Some(id) => id.clone(),
            None => {
                let Some(d) = datasets::find(db, &r.dataset_id).await? else {
                    return self
                        .fail(promotion, &r.id, "the reference's dataset was deleted")
                        .await;
                };
                let name = format!("reference-check-{}", short(promotion));
                let uploaded = match peer.upload_dataset(&*self.blobs, &d, &name).await {
                    Ok(v) => v,
                    Err(e) if give_up(&e) => {
                        let why = format!("the reference's dataset could not be uploaded: {e}");
                        return self.fail(promotion, &r.id, &why).await;
                    }
                    Err(e) => {
                        tracing::warn!(promotion_id = %promotion, env = %peer.env, error = %e, "a reference check could not reach its environment: trying again");
                        return Ok(false);
                    }
                };
                let Some(id) = uploaded["id"].as_str().map(str::to_owned) else {
                    return self
                        .fail(
                            promotion,
                            &r.id,
                            &format!("{}'s upload answer has no id", peer.env),
                        )
                        .await;
                };
                if !references::check_uploaded(db, promotion, &r.id, &peer.env, &id).await? {
                    peer.delete_dataset(&id).await.ok();
                    return Ok(true);
                }
                if uploaded["sha256"].as_str() != Some(r.dataset_sha256.as_str()) {
                    let why = format!(
                        "{} read the reference's dataset as content {}, not the {} it was \
                         pinned with",
                        peer.env,
                        uploaded["sha256"].as_str().unwrap_or("of no hash"),
                        r.dataset_sha256
                    );
                    let c = Check {
                        peer: Some(peer.env.clone()),
                        peer_dataset_id: Some(id),
                        ..c.clone()
                    };
                    return self.fail_upstream(promotion, &c, peer, &why).await;
                }
                id
            }
        };
        let analysis: serde_json::Value =
            serde_json::from_str(&r.analysis_json).map_err(internal)?;
        match peer.submit(&dataset_id, &analysis).await {
            Ok(job) => {
                let Some(job_id) = job["id"].as_str() else {
                    let why = format!("{}'s answer to the analysis has no job id", peer.env);
                    return self.fail_upstream(promotion, c, peer, &why).await;
                };
                references::check_started(db, promotion, &r.id, job_id).await?;
                tracing::info!(promotion_id = %promotion, reference_id = %r.id, %job_id, env = %peer.env, "a reference check was submitted upstream, where the candidate runs");
                Ok(false)
            }
            Err(e) if give_up(&e) => {
                let why = format!("{} did not take the reference analysis: {e}", peer.env);
                let c = Check {
                    peer_dataset_id: Some(dataset_id),
                    ..c.clone()
                };
                self.fail_upstream(promotion, &c, peer, &why).await
            }
            Err(e) => {
                tracing::warn!(promotion_id = %promotion, env = %peer.env, error = %e, "a reference check could not reach its environment: trying again");
                Ok(false)
            }
        }
    }

    /// Follows a check running upstream: once its job there has succeeded on the
    /// candidate, downloads the result and compares it here. Whether it ended.
    pub(super) async fn finish_upstream(
        &self,
        promotion: &str,
        c: &Check,
        image: &str,
        peer: &Peer,
    ) -> Result<bool> {
        let Some(job_id) = c.job_id.as_deref() else {
            return self
                .fail_upstream(promotion, c, peer, "it was never submitted")
                .await;
        };
        let env = &peer.env;
        let waited = now_ms() - c.started_at.unwrap_or_else(now_ms);
        let late = waited > ms(self.timeout);
        let timed_out = || {
            format!(
                "{env} did not finish it within {} s (control.gate_timeout_secs)",
                self.timeout.as_secs()
            )
        };
        let job = match peer.job(job_id).await {
            Ok(job) => job,
            Err(e) if !e.transient => {
                let why = format!("its job in {env} cannot be read: {e}");
                return self.fail_upstream(promotion, c, peer, &why).await;
            }
            Err(e) if late => {
                let why = format!("{}; the last try: {e}", timed_out());
                return self.fail_upstream(promotion, c, peer, &why).await;
            }
            Err(e) => {
                tracing::warn!(promotion_id = %promotion, %env, error = %e, "a reference check's environment did not answer: trying again");
                return Ok(false);
            }
        };
        match job["status"].as_str() {
            Some("succeeded") => {}
            Some(status @ ("failed" | "cancelled")) => {
                let why = format!(
                    "the candidate in {env} {status} it: {}",
                    job["error"].as_str().unwrap_or("no reason given")
                );
                return self.fail_upstream(promotion, c, peer, &why).await;
            }
            _ if late => {
                peer.cancel(job_id).await.ok();
                return self.fail_upstream(promotion, c, peer, &timed_out()).await;
            }
            _ => return Ok(false),
        }
        let ran_on = job["provenance"]["release"]
            .as_str()
            .unwrap_or("an unknown release");
        if ran_on != image {
            let why = format!(
                "{env} ran it on release {ran_on}, not on the candidate {image}: {env} runs \
                 another release now; request the promotion again"
            );
            return self.fail_upstream(promotion, c, peer, &why).await;
        }
        let file = tempfile::NamedTempFile::new().map_err(internal)?;
        let max = quarry_engine::results::compare::MAX_COMPARED_BYTES;
        match peer.download_result(job_id, file.path(), max).await {
            Ok(_) => {}
            Err(e) if e.transient && !late => {
                tracing::warn!(promotion_id = %promotion, %env, error = %e, "a reference check's result could not be downloaded: trying again");
                return Ok(false);
            }
            Err(e) => {
                let why = format!("the candidate's result: {e}");
                return self.fail_upstream(promotion, c, peer, &why).await;
            }
        }
        let path = file.path().to_owned();
        let bytes = file.as_file().metadata().map_err(internal)?.len();
        let shape = tokio::task::spawn_blocking(move || {
            quarry_engine::results::page(&path, 0, 0).map(|p| (p.total_rows, p.columns.len()))
        })
        .await
        .map_err(internal)?;
        let bounded = match shape {
            Ok((rows, columns)) => {
                quarry_engine::results::compare::comparable(bytes, rows, columns)
            }
            Err(e) => Err(format!("{env} sent a result that is not Parquet: {e}")),
        };
        if let Err(why) = bounded {
            let why = format!("the candidate's result: {why}");
            return self.fail_upstream(promotion, c, peer, &why).await;
        }
        let ended = self
            .compare(promotion, &c.reference_id, file.path())
            .await?;
        self.clean_upstream(promotion, c, peer).await;
        Ok(ended)
    }

    /// Fails a check that ran upstream, and deletes what it left there.
    pub(super) async fn fail_upstream(
        &self,
        promotion: &str,
        c: &Check,
        peer: &Peer,
        why: &str,
    ) -> Result<bool> {
        let ended = self.fail(promotion, &c.reference_id, why).await?;
        self.clean_upstream(promotion, c, peer).await;
        Ok(ended)
    }

    /// Deletes the copy of the dataset a check uploaded upstream (its job's result
    /// goes with it). A failure is logged: the copy stays there, named after the check.
    async fn clean_upstream(&self, promotion: &str, c: &Check, peer: &Peer) {
        let Some(id) = c.peer_dataset_id.as_deref() else {
            return;
        };
        match peer.delete_dataset(id).await {
            Ok(()) => {
                if let Err(e) =
                    references::check_upload_gone(&self.plane.db, promotion, &c.reference_id).await
                {
                    tracing::warn!(promotion_id = %promotion, error = %e, "could not record a deleted check dataset");
                }
            }
            Err(e) => {
                tracing::warn!(promotion_id = %promotion, env = %peer.env, dataset_id = id, error = %e, "could not delete a reference check's dataset upstream");
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The first 8 characters of an id, for names.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
