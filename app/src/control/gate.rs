//! Reference analyses gate promotions.
//!
//! An operator pins a job that succeeded on the release production runs
//! ([`pin`]): its dataset, its analysis and a copy of its result. Every promotion
//! requested while references are pinned records one check per reference
//! (`references::open_gate`), and its approval is refused until the gate lets it
//! through. The [`GateRunner`] (in the server) then runs each check as a job only a
//! worker of the candidate release may start (`jobs.required_release`), compares
//! the candidate's result with the pinned one ([`quarry_engine::results::compare`]:
//! canonical row order, floats within [`Tolerance::default`]), and moves the gate to
//! `passed`, or to `blocked` with the first differing rows. An admin may override a
//! blocked gate with a recorded reason ([`override_gate`]).
//!
//! A check runs through the queue of the server that runs the control plane when a
//! worker of the candidate reads it (the embedded default, or the control plane run
//! from the upstream environment's own service). Otherwise, when the upstream
//! environment is a peer (`[control.peers.<env>]`), it runs there, where the candidate
//! runs, through that environment's API ([`super::peer`]): the reference's dataset is
//! uploaded there, the analysis submitted, the result downloaded and compared here. A
//! check the candidate does not finish within `control.gate_timeout_secs` fails the
//! gate.

mod upstream;

use super::ops::Actor;
use super::{ControlPlane, EnvDef};
use quarry_core::auth::{Credential, Principal};
use quarry_core::blob::{BlobStore, ContentHash};
use quarry_core::clock::now_ms;
use quarry_core::config::PeerConfig;
use quarry_core::control::references::{self, Check, NewReference, Reference, check, gate};
use quarry_core::control::{artifacts, environments, promotions};
use quarry_core::lifecycle::Lifecycle;
use quarry_core::{Error, Result, datasets, jobs, releases};
use quarry_domain::JobStatus;
use quarry_domain::control::MarkView;
use quarry_domain::gate::{Comparison, GateCheckView, GateView, ReferenceView, Tolerance};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Who the gate's checks are recorded as.
pub const GATE: &str = "promotion-gate";

/// How many differing rows a check keeps to show.
const KEEP_ROWS: usize = 5;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{e}"))
}

/// The environment promotions end in: one with an upstream that is nobody's
/// upstream (production).
fn final_environment(plane: &ControlPlane) -> Option<&EnvDef> {
    let envs = plane.environments();
    envs.iter()
        .find(|e| e.upstream().is_some() && !envs.iter().any(|o| o.upstream() == Some(&e.name)))
}

/// The image an environment runs successfully now, if any.
async fn running_image(plane: &ControlPlane, env: &str) -> Result<Option<String>> {
    let state = environments::get(&plane.db, env).await?;
    let Some(id) = state.current_release_id else {
        return Ok(None);
    };
    let r = releases::get(&plane.db, &id).await?;
    Ok(matches!(r.outcome.as_str(), "succeeded" | "no_changes").then_some(r.image))
}

pub fn reference_view(r: Reference) -> ReferenceView {
    ReferenceView {
        analysis: serde_json::from_str(&r.analysis_json).unwrap_or_default(),
        id: r.id,
        name: r.name,
        dataset_id: r.dataset_id,
        dataset_sha256: r.dataset_sha256,
        expected_hash: r.expected_hash,
        expected_rows: r.expected_rows,
        pinned_release: r.pinned_release,
        job_id: r.source_job_id,
        pinned_by: r.pinned_by,
        pinned_at: r.pinned_at,
        retired: r.retired.as_ref().map(super::views::mark),
    }
}

/// Pins job `job_id`'s analysis and result as a reference. The job must have
/// succeeded on the release production runs now, so the expected result is
/// production's.
pub async fn pin(
    plane: &ControlPlane,
    blobs: &dyn BlobStore,
    job_id: &str,
    name: &str,
    who: &Actor,
) -> Result<ReferenceView> {
    let job = jobs::find(&plane.db, job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job with id `{job_id}`")))?;
    if job.view.status != JobStatus::Succeeded {
        return Err(Error::Conflict(format!(
            "job `{job_id}` is {}: pin a job that succeeded",
            job.view.status
        )));
    }
    let provenance = job.view.provenance.clone().ok_or_else(|| {
        Error::Conflict(format!(
            "job `{job_id}` has no provenance (it ran before results recorded theirs): run \
             the analysis again and pin that job"
        ))
    })?;
    let Some(dataset_sha256) = provenance.dataset.sha256.clone() else {
        return Err(Error::Conflict(format!(
            "job `{job_id}`'s dataset has no content hash (it was uploaded before datasets \
             recorded theirs): upload it again, run the analysis and pin that job"
        )));
    };
    let production = final_environment(plane).ok_or_else(|| {
        Error::Conflict("no environment ends the promotion chain: nothing to pin for".into())
    })?;
    let Some(image) = running_image(plane, &production.name).await? else {
        return Err(Error::Conflict(format!(
            "{} runs no release yet: a reference is pinned from the release {} runs",
            production.name, production.name
        )));
    };
    if provenance.release != image {
        return Err(Error::Conflict(format!(
            "job `{job_id}` was computed on release {}, and {} runs {image}: run the analysis \
             on {image} and pin that job",
            provenance.release, production.name
        )));
    }
    let name = name.trim();
    let name = if name.is_empty() {
        job.view.analysis.kind().to_owned()
    } else if name.chars().count() > 100 {
        return Err(Error::invalid(
            "bad_name",
            "a reference's name is at most 100 characters",
        ));
    } else {
        name.to_owned()
    };
    let result = jobs::result(&plane.db, job_id)
        .await?
        .ok_or_else(|| internal(format!("succeeded job {job_id} has no result row")))?;
    // Every check reads the pinned result and the candidate's whole.
    quarry_engine::results::compare::comparable(result.bytes, result.rows, result.columns.len())
        .map_err(|why| Error::Conflict(format!("job `{job_id}` cannot be a reference: {why}")))?;
    // A copy of the result: the job's own may be deleted with it.
    let id = uuid::Uuid::new_v4().to_string();
    let key = format!("references/{id}.parquet");
    let file = result.local_file(blobs).await?;
    let path = file.path().to_owned();
    let hash = tokio::task::spawn_blocking(move || ContentHash::of_file(&path))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    blobs.put_file(&key, file.path()).await?;
    let analysis_json = serde_json::to_string(&job.view.analysis).map_err(internal)?;
    let r = references::pin(
        &plane.db,
        &id,
        &NewReference {
            name: &name,
            owner_id: &job.owner_id,
            dataset_id: &job.view.dataset_id,
            dataset_sha256: &dataset_sha256,
            analysis_json: &analysis_json,
            expected_key: &key,
            expected_hash: &hash,
            expected_rows: result.rows,
            pinned_release: &image,
            source_job_id: job_id,
            pinned_by: &who.name,
        },
    )
    .await;
    match r {
        Ok(r) => Ok(reference_view(r)),
        Err(e) => {
            blobs.delete(&key).await.ok();
            Err(e)
        }
    }
}

/// The pinned references.
pub async fn list(plane: &ControlPlane, with_retired: bool) -> Result<Vec<ReferenceView>> {
    Ok(references::list(&plane.db, with_retired)
        .await?
        .into_iter()
        .map(reference_view)
        .collect())
}

/// Retires a reference: promotions requested later do not check it.
pub async fn retire(plane: &ControlPlane, id: &str, who: &Actor) -> Result<ReferenceView> {
    Ok(reference_view(
        references::retire(&plane.db, id, &who.name).await?,
    ))
}

/// Lets a blocked promotion be approved: admins only, with a reason, recorded on the
/// promotion (its history shows it among the decisions, as `override_gate`).
pub async fn override_gate(
    plane: &ControlPlane,
    id: &str,
    reason: &str,
    who: &Actor,
) -> Result<()> {
    if !who.admin {
        return Err(Error::Forbidden(
            "only an admin can let a promotion past a blocked reference gate".into(),
        ));
    }
    super::guards::require_reason(reason, "override the gate")?;
    let p = promotions::get(&plane.db, id).await?;
    super::guards::awaiting(&p)?;
    if !references::override_gate(&plane.db, id, &who.name, reason.trim()).await? {
        let (status, _) = references::gate_of(&plane.db, id).await?;
        return Err(Error::Conflict(format!(
            "promotion {id}'s reference gate is {status}: only a blocked gate can be overridden"
        )));
    }
    Ok(())
}

/// Refuses the approval of a promotion its gate does not let through.
pub async fn check_gate(plane: &ControlPlane, id: &str) -> Result<()> {
    let (status, _) = references::gate_of(&plane.db, id).await?;
    match status.as_str() {
        gate::NONE | gate::PASSED | gate::OVERRIDDEN => Ok(()),
        gate::BLOCKED => Err(Error::Conflict(format!(
            "promotion {id} is blocked by its reference gate: a reference analysis gave a \
             different result on the candidate (GET /api/v1/promotions/{id} shows which and \
             the first differing rows); an admin may override it with a reason \
             (POST /api/v1/promotions/{id}/override-gate)"
        ))),
        _ => {
            let checks = references::checks(&plane.db, id).await?;
            let done = checks
                .iter()
                .filter(|c| !matches!(c.status.as_str(), check::PENDING | check::RUNNING))
                .count();
            Err(Error::Conflict(format!(
                "promotion {id}'s reference analyses are still running on the candidate ({done} \
                 of {} done): approve once they pass",
                checks.len()
            )))
        }
    }
}

/// The gate of a promotion as shown. An ended promotion's checks that never finished
/// show as `abandoned`.
pub async fn view(
    plane: &ControlPlane,
    p: &promotions::Promotion,
    release: &str,
) -> Result<GateView> {
    let (mut status, overridden) = references::gate_of(&plane.db, &p.id).await?;
    // Until the runner has marked it, an ended promotion's unfinished gate shows as
    // what it will be.
    let open = p.status == promotions::Status::AwaitingApproval.as_str();
    if !open && matches!(status.as_str(), gate::PENDING | gate::RUNNING) {
        gate::ABANDONED.clone_into(&mut status);
    }
    let checks = references::checks_with_references(&plane.db, &p.id)
        .await?
        .into_iter()
        .map(|(c, r)| check_view(c, r))
        .collect();
    Ok(GateView {
        status,
        release: release.to_owned(),
        checks,
        override_: overridden.as_ref().map(|m| MarkView {
            by: m.by.clone(),
            at: m.at.clone(),
            reason: m.reason.clone(),
        }),
    })
}

fn check_view(c: Check, r: Reference) -> GateCheckView {
    let detail: Option<serde_json::Value> = c
        .detail_json
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok());
    let comparison = detail
        .as_ref()
        .and_then(|d| d.get("comparison"))
        .and_then(|v| serde_json::from_value::<Comparison>(v.clone()).ok());
    let error = detail
        .as_ref()
        .and_then(|d| d.get("error"))
        .and_then(|v| v.as_str().map(str::to_owned));
    GateCheckView {
        analysis: serde_json::from_str(&r.analysis_json).unwrap_or_default(),
        reference_id: r.id,
        name: r.name,
        dataset_id: r.dataset_id,
        job_id: c.job_id,
        status: c.status,
        expected_hash: r.expected_hash,
        actual_hash: c.actual_hash,
        comparison,
        error,
        environment: c.peer,
    }
}

/// Runs the gates' checks: the server's part of the gate, with the queue and the
/// blob store the checks need.
#[derive(Clone)]
pub struct GateRunner {
    pub plane: Arc<ControlPlane>,
    pub lifecycle: Lifecycle,
    pub blobs: Arc<dyn BlobStore>,
    /// Wake the workers and the orchestrator when checks are queued (as a submit
    /// through the API does).
    pub wake: [Arc<tokio::sync::Notify>; 2],
    pub timeout: Duration,
    /// How long a check may wait for a worker of its release when the fleet here
    /// runs another one and no worker of the candidate is alive: then it fails at
    /// once instead of at `timeout` (nothing here will ever run it).
    pub no_worker_grace: Duration,
    /// When a worker's registry row counts as gone.
    pub stale: Duration,
    /// The other environments' APIs (`[control.peers]`): a check whose candidate no
    /// worker here runs runs in its upstream environment, when that is one of them.
    pub peers: BTreeMap<String, PeerConfig>,
    /// The client of those calls.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for GateRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateRunner")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GateRunner {
    /// Looks at the open gates every `every` (and whenever `nudge` fires) until the
    /// process ends.
    pub fn spawn(self, every: Duration, nudge: Arc<tokio::sync::Notify>) {
        super::every(every, nudge, "the promotion gate", move || {
            let runner = self.clone();
            async move { runner.advance().await }
        });
    }

    /// Moves every open gate on as far as it can now. One gate's failure (a missing
    /// result file, say) is logged and does not hold the others up.
    pub async fn advance(&self) -> Result<()> {
        for (id, status) in references::open_gates(&self.plane.db).await? {
            if let Err(e) = self.advance_one(&id, &status).await {
                tracing::warn!(promotion_id = %id, error = %e, "a reference gate could not move on");
            }
        }
        Ok(())
    }

    async fn advance_one(&self, id: &str, status: &str) -> Result<()> {
        let db = &self.plane.db;
        let p = promotions::get(db, id).await?;
        if p.status != promotions::Status::AwaitingApproval.as_str() {
            return self.abandon(&p, status).await;
        }
        let image = artifacts::get(db, &p.artifact_id).await?.image;
        let mut open = 0;
        for c in references::checks(db, id).await? {
            let ended = match (c.status.as_str(), &c.peer) {
                (check::PENDING, None) => self.submit(&p, &c, &image).await?,
                (check::PENDING | check::RUNNING, Some(env)) => match self.peer(env).await {
                    Ok(peer) if c.status == check::PENDING => {
                        self.submit_upstream(&p, &c, &peer).await?
                    }
                    Ok(peer) => self.finish_upstream(id, &c, &image, &peer).await?,
                    Err(e) => self.fail(id, &c.reference_id, &e.to_string()).await?,
                },
                (check::RUNNING, None) => self.finish(&p, &c, &image).await?,
                _ => true,
            };
            open += usize::from(!ended);
        }
        if status == gate::PENDING {
            references::move_gate(db, id, gate::PENDING, gate::RUNNING).await?;
            for w in &self.wake {
                w.notify_one();
            }
        }
        if open > 0 {
            return Ok(());
        }
        let passed = references::checks(db, id)
            .await?
            .iter()
            .all(|c| c.status == check::PASSED);
        let to = if passed { gate::PASSED } else { gate::BLOCKED };
        if references::move_gate(db, id, gate::RUNNING, to).await? {
            tracing::info!(promotion_id = %id, gate = to, "the reference gate decided");
            self.announce(&p).await;
        }
        Ok(())
    }

    /// A promotion that ended (rejected, cancelled, expired) while its checks ran:
    /// their jobs are cancelled, the checks end, and the gate becomes `abandoned`.
    async fn abandon(&self, p: &promotions::Promotion, status: &str) -> Result<()> {
        let db = &self.plane.db;
        let why = format!(
            "abandoned: the promotion was {} before the check ended",
            p.status
        );
        for c in references::checks(db, &p.id).await? {
            if !matches!(c.status.as_str(), check::PENDING | check::RUNNING) {
                continue;
            }
            if let Some(env) = &c.peer {
                if let Ok(peer) = self.peer(env).await {
                    if let Some(job_id) = c.job_id.as_deref() {
                        peer.cancel(job_id).await.ok();
                    }
                    self.fail_upstream(&p.id, &c, &peer, &why).await?;
                    continue;
                }
            } else if let Some(job_id) = c.job_id.as_deref()
                && let Some(job) = jobs::find(db, job_id).await?
                && !job.view.status.is_terminal()
            {
                self.cancel_check_job(&job, job_id).await;
            }
            self.fail(&p.id, &c.reference_id, &why).await?;
        }
        if references::move_gate(db, &p.id, status, gate::ABANDONED).await? {
            self.announce(p).await;
        }
        Ok(())
    }

    async fn announce(&self, p: &promotions::Promotion) {
        if let Ok(view) = super::reads::promotion(&self.plane, &p.id).await {
            self.plane.announce(
                &p.to_env,
                "promotion",
                serde_json::to_value(&view).unwrap_or_default(),
            );
        }
    }

    /// Queues one check's job on the candidate release, here or (when no worker here
    /// runs it and the upstream environment is a peer) there, or fails the check when
    /// its dataset is gone or changed; whether the check ended.
    async fn submit(&self, p: &promotions::Promotion, c: &Check, image: &str) -> Result<bool> {
        let db = &self.plane.db;
        let promotion = p.id.as_str();
        let r = references::get(db, &c.reference_id).await?;
        let dataset = datasets::find(db, &r.dataset_id).await?;
        let problem = match &dataset {
            None => Some(format!(
                "the reference's dataset {} was deleted: retire the reference or pin another",
                r.dataset_id
            )),
            Some(d) if d.view.sha256.as_deref() != Some(r.dataset_sha256.as_str()) => {
                Some(format!(
                    "the reference's dataset {} no longer has the content it was pinned with",
                    r.dataset_id
                ))
            }
            Some(_) => None,
        };
        if let Some(error) = problem {
            let detail = serde_json::json!({ "error": error }).to_string();
            references::check_finished(db, promotion, &r.id, check::FAILED, None, &detail).await?;
            return Ok(true);
        }
        if !self.runs_here(image).await? && self.peers.contains_key(&p.from_env) {
            return match self.peer(&p.from_env).await {
                Ok(peer) => self.submit_upstream(p, c, &peer).await,
                Err(e) => self.fail(promotion, &r.id, &e.to_string()).await,
            };
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        self.lifecycle
            .submit(&jobs::NewJob {
                id: &job_id,
                owner_id: &r.owner_id,
                dataset_id: &r.dataset_id,
                analysis_json: &r.analysis_json,
                required_release: Some(image),
                rerun_of: None,
            })
            .await?;
        references::check_started(db, promotion, &r.id, &job_id).await?;
        tracing::info!(promotion_id = %promotion, reference_id = %r.id, %job_id, release = image, "a reference check was queued on the candidate");
        Ok(false)
    }

    /// Ends a running check if its job has ended (or timed out); whether it ended.
    async fn finish(&self, p: &promotions::Promotion, c: &Check, image: &str) -> Result<bool> {
        let db = &self.plane.db;
        let promotion = p.id.as_str();
        let Some(job_id) = c.job_id.as_deref() else {
            return self
                .fail(promotion, &c.reference_id, "it was never queued")
                .await;
        };
        let Some(job) = jobs::find(db, job_id).await? else {
            return self
                .fail(promotion, &c.reference_id, "its job was deleted")
                .await;
        };
        match job.view.status {
            JobStatus::Succeeded => {}
            JobStatus::Failed | JobStatus::Cancelled => {
                let why = format!(
                    "the candidate {} it: {}",
                    if job.view.status == JobStatus::Failed {
                        "failed"
                    } else {
                        "cancelled"
                    },
                    job.view.error.as_deref().unwrap_or("no reason given")
                );
                return self.fail(promotion, &c.reference_id, &why).await;
            }
            _ => {
                let since = c.started_at.unwrap_or_else(now_ms);
                let waited = now_ms() - since;
                let limit = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
                let grace = i64::try_from(self.no_worker_grace.as_millis()).unwrap_or(i64::MAX);
                if job.view.status == JobStatus::Queued
                    && waited > grace
                    && let Some(why) = self.nobody_runs(image, &p.from_env).await?
                {
                    self.cancel_check_job(&job, job_id).await;
                    return self.fail(promotion, &c.reference_id, &why).await;
                }
                if waited <= limit {
                    return Ok(false);
                }
                self.cancel_check_job(&job, job_id).await;
                let why = format!(
                    "no worker of release {image} finished it within {} s \
                     (control.gate_timeout_secs): is the candidate's fleet reading this queue?",
                    self.timeout.as_secs()
                );
                return self.fail(promotion, &c.reference_id, &why).await;
            }
        }
        let result = jobs::result(db, job_id)
            .await?
            .ok_or_else(|| internal(format!("succeeded job {job_id} has no result row")))?;
        if let Err(why) = quarry_engine::results::compare::comparable(
            result.bytes,
            result.rows,
            result.columns.len(),
        ) {
            return self
                .fail(
                    promotion,
                    &c.reference_id,
                    &format!("the candidate's result: {why}"),
                )
                .await;
        }
        let actual = result.local_file(self.blobs.as_ref()).await?;
        self.compare(promotion, &c.reference_id, actual.path())
            .await
    }

    /// Compares the candidate's result (Parquet at `actual`) with the pinned one and
    /// ends the check: `passed` or `differed`.
    async fn compare(&self, promotion: &str, reference: &str, actual: &Path) -> Result<bool> {
        let db = &self.plane.db;
        let r = references::get(db, reference).await?;
        let expected = self.blobs.local_file(&r.expected_key).await?;
        let (e, a) = (expected.path().to_owned(), actual.to_owned());
        let (hash, comparison) = tokio::task::spawn_blocking(move || {
            let hash = ContentHash::of_file(&a).map_err(internal)?;
            let comparison = quarry_engine::results::compare::compare_files(
                &e,
                &a,
                Tolerance::default(),
                KEEP_ROWS,
            )
            .map_err(internal)?;
            Ok::<_, Error>((hash, comparison))
        })
        .await
        .map_err(internal)??;
        let status = if comparison.identical {
            check::PASSED
        } else {
            check::DIFFERED
        };
        let detail = serde_json::json!({ "comparison": comparison }).to_string();
        references::check_finished(db, promotion, &r.id, status, Some(&hash), &detail).await?;
        tracing::info!(promotion_id = %promotion, reference_id = %r.id, status, differing_rows = comparison.differing_rows, "a reference check finished");
        Ok(true)
    }

    /// Why no worker here will run a job pinned to `image`, if none will: the fleet
    /// runs another release and no live worker runs this one.
    async fn nobody_runs(&self, image: &str, upstream: &str) -> Result<Option<String>> {
        if self.runs_here(image).await? {
            return Ok(None);
        }
        let current = quarry_core::fleet::current_release(&self.plane.db)
            .await?
            .map(|c| c.release);
        Ok(Some(format!(
            "no worker of the candidate release {image} runs here (this fleet runs {}): \
             the check needs the candidate's workers on this server's queue, or \
             [control.peers.{upstream}] (the API of {upstream}, where the candidate runs) \
             so that it runs there",
            current.as_deref().unwrap_or("no declared release")
        )))
    }

    /// Whether a worker here runs `image`: the fleet's current release, or a live
    /// worker of it.
    async fn runs_here(&self, image: &str) -> Result<bool> {
        let db = &self.plane.db;
        let current = quarry_core::fleet::current_release(db)
            .await?
            .map(|c| c.release);
        Ok(current.as_deref() == Some(image)
            || quarry_core::fleet::live_workers_of(db, image, self.stale).await? > 0)
    }

    /// Cancels the job of a check that ends without it.
    async fn cancel_check_job(&self, job: &jobs::StoredJob, job_id: &str) {
        let owner = Principal {
            user_id: job.owner_id.clone(),
            name: GATE.to_owned(),
            role: quarry_domain::Role::Operator,
            credential: Credential::Internal,
        };
        if let Err(e) = self.lifecycle.cancel(&owner, job_id).await {
            tracing::warn!(%job_id, error = %e, "could not cancel a reference check's job");
        }
    }

    async fn fail(&self, promotion: &str, reference: &str, why: &str) -> Result<bool> {
        let detail = serde_json::json!({ "error": why }).to_string();
        references::check_finished(
            &self.plane.db,
            promotion,
            reference,
            check::FAILED,
            None,
            &detail,
        )
        .await?;
        Ok(true)
    }
}
