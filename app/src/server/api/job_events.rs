//! `GET /api/v1/jobs/{id}/events`: a job's changes, pushed.
//!
//! A stream follows its job through the server's [`JobWatch`]: it reads the job again
//! only when the watcher says it changed, so an open stream on a quiet job costs no
//! database work. A queued job's place in line moves when other jobs do; its stream
//! refreshes the wait at most every [`QUEUE_REFRESH`]. A credential change in this
//! server (a revoked token, an ended session) makes every stream check its own at
//! once; every [`CHECK_EVERY`], and when its credential expires, each stream also
//! checks its credential and that its job still exists, which covers changes made
//! outside this server.
//!
//! [`JobWatch`]: quarry_core::watch::JobWatch

use crate::server::auth::Auth;
use crate::server::error::ApiResult;
use crate::server::extract::Path;
use crate::server::state::{AppState, Services};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use quarry_core::auth::Principal;
use quarry_core::watch::Following;
use quarry_domain::{ErrorBody, JobEvent, JobStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two refreshes of a queued job's wait.
pub const QUEUE_REFRESH: Duration = Duration::from_secs(3);

/// How often a stream checks its credential and its job by itself.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

/// One server-sent event of `GET /api/v1/jobs/{id}/events`, as the OpenAPI document
/// describes the stream's items.
#[derive(Debug, utoipa::ToSchema)]
pub struct JobEventMessage {
    /// Always `job`.
    #[schema(pattern = "^job$")]
    pub event: String,
    /// A [`JobEvent`] as JSON text.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// A job's changes as server-sent events: an `event: job` with a [`JobEvent`] now and
/// on every change, until the job has finished or the caller's credential ends
/// (revoked, expired, signed out). The browser follows a job with this instead of
/// polling.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "A stream of `job` events, each carrying a JobEvent as JSON",
            content_type = "text/event-stream", body = JobEventMessage),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
        (status = 429, description = "Too many streams of yours open (auth.max_streams_per_user)", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let services = state.services.clone();
    let slot = services.streams.take(&who.user_id)?;
    // Follow first, then read: a change between the two still wakes the stream.
    let following = services.watch.follow(&id);
    let first = super::jobs::job_event(&services, &who, &id).await?;
    // The first check comes no later than the credential's end.
    let mut next_check = Instant::now() + CHECK_EVERY;
    if let Ok(Some(ends)) = quarry_core::auth::ends_at(&services.db, &who).await {
        let left = u64::try_from(ends - quarry_core::clock::now_ms()).unwrap_or(0);
        next_check = next_check.min(Instant::now() + Duration::from_millis(left + 10));
    }
    let follower = Follower {
        services: services.clone(),
        who,
        id,
        following,
        last: None,
        queued: false,
        queue_due: None,
        next_check,
        _slot: slot,
    };
    let stream = futures::stream::unfold(
        (follower, Some(first), false),
        |(mut f, first, done)| async move {
            if done {
                return None;
            }
            let event = match first {
                Some(e) => f.emit(&e),
                None => f.next().await,
            };
            let event = event?;
            let finished = event.0;
            Some((
                Ok::<_, std::convert::Infallible>(event.1),
                (f, None, finished),
            ))
        },
    );
    let stream =
        futures::StreamExt::take_until(stream, services.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One stream's state.
struct Follower {
    services: Arc<Services>,
    who: Principal,
    id: String,
    following: Following,
    /// The last event sent, as JSON: an unchanged re-read sends nothing.
    last: Option<String>,
    queued: bool,
    /// When the queued job's wait is refreshed, after other jobs moved.
    queue_due: Option<Instant>,
    next_check: Instant,
    /// Its place among its user's open streams, given back when the stream ends.
    _slot: crate::server::streams::Slot,
}

/// Why a stream reads its job again.
enum Wake {
    Job,
    Queue,
    Credentials,
    Check,
    Gone,
}

impl Follower {
    /// The event to send for `event`, with whether the job has finished; `None` if it
    /// is the same as the last one sent.
    fn emit(&mut self, event: &JobEvent) -> Option<(bool, Event)> {
        let json = serde_json::to_string(event).unwrap_or_default();
        if self.last.as_deref() == Some(json.as_str()) {
            return None;
        }
        self.queued = event.job.status == JobStatus::Queued;
        let finished = event.job.status.is_terminal();
        let sse = Event::default().event("job").data(json.clone());
        self.last = Some(json);
        Some((finished, sse))
    }

    /// Waits for the next change worth sending; `None` ends the stream.
    async fn next(&mut self) -> Option<(bool, Event)> {
        loop {
            let wake = tokio::select! {
                r = self.following.job.changed() => if r.is_ok() { Wake::Job } else { Wake::Gone },
                r = self.following.credentials.changed() => if r.is_ok() { Wake::Credentials } else { Wake::Gone },
                r = self.following.queue_moved.changed(), if self.queued && self.queue_due.is_none() => {
                    if r.is_err() {
                        Wake::Gone
                    } else {
                        self.queue_due = Some(Instant::now() + QUEUE_REFRESH);
                        continue;
                    }
                }
                () = sleep_until(self.queue_due) => Wake::Queue,
                () = tokio::time::sleep_until(self.next_check) => Wake::Check,
            };
            match wake {
                Wake::Gone => return None,
                Wake::Credentials | Wake::Check => {
                    // A revoked or expired credential ends the stream it opened.
                    if let Err(e) =
                        quarry_core::auth::still_valid(&self.services.db, &self.who).await
                    {
                        tracing::info!(job_id = %self.id, reason = %e, "event stream ended");
                        return None;
                    }
                    if matches!(wake, Wake::Credentials) {
                        continue;
                    }
                    self.next_check = Instant::now() + CHECK_EVERY;
                    // The job may have been deleted with its dataset (SQLite does not
                    // say so).
                    match quarry_core::jobs::find(&self.services.db, &self.id).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return None,
                        Err(e) => {
                            tracing::warn!(job_id = %self.id, error = %e, "event stream: checking the job failed");
                            continue;
                        }
                    }
                }
                Wake::Job | Wake::Queue => {}
            }
            self.queue_due = None;
            let Ok(event) = super::jobs::job_event(&self.services, &self.who, &self.id).await
            else {
                // The job was deleted with its dataset: end the stream.
                return None;
            };
            if let Some(sent) = self.emit(&event) {
                return Some(sent);
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
