//! What every request handler shares.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use quarry_core::blob::BlobStore;
use quarry_core::lifecycle::Lifecycle;
use quarry_core::metrics::{Metrics, MetricsSources};
use quarry_core::queue::JobQueue;
use quarry_core::{Config, Db};
use std::sync::Arc;
use tokio::sync::Notify;

/// The process-wide services behind the web server.
#[derive(Debug)]
pub struct Services {
    pub config: Config,
    pub db: Db,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn JobQueue>,
    /// Every job state change, with its queue call (submit, cancel, reconcile).
    pub lifecycle: Lifecycle,
    /// Cancelled when the server stops: ends the event streams, so a shutdown never
    /// waits on a connected browser.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Time series for the system page (written by the orchestrator).
    pub metrics: Arc<dyn Metrics>,
    /// What the system page can read: `metrics` as `local`, and every stack
    /// environment's CloudWatch series.
    pub metrics_sources: MetricsSources,
    /// Wakes an in-process orchestrator right after an enqueue.
    pub nudge: Arc<Notify>,
    /// Wakes this server's idle worker children right after an enqueue
    /// (`Fleet::wake`), so a job starts in milliseconds, not at the next poll.
    pub wake_workers: Arc<Notify>,
    /// Job changes pushed to the event streams (fed by `server::serve`).
    pub watch: quarry_core::watch::JobWatch,
    /// Permits for upload inspections (`uploads.max_concurrent_inspections`): each
    /// runs a child process with its own memory limit.
    pub inspections: Arc<tokio::sync::Semaphore>,
    /// Each user's open event streams, bounded by `auth.max_streams_per_user`.
    pub streams: Arc<super::streams::StreamSlots>,
    /// The operator control plane (environments, promotions, rollbacks).
    pub control: Arc<crate::control::ControlPlane>,
    /// The pre-scaling profile learned from the job history (relearned hourly), shared
    /// with an in-process orchestrator.
    pub learned: Arc<tokio::sync::Mutex<Option<quarry_core::prescale::Learned>>>,
}

impl Services {
    /// The live workers (the registry's rows renewed within their heartbeats): what
    /// `/api/v1/system` and the wait estimate show.
    pub async fn fleet_counts(&self) -> quarry_core::Result<quarry_domain::FleetCounts> {
        let stale = quarry_core::fleet::stale_after(self.config.heartbeat());
        quarry_core::fleet::registry_counts(&self.db, stale).await
    }
}

/// Axum state: Leptos' options beside the shared services.
#[derive(Debug, Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Arc<Services>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
