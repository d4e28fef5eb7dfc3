//! The web server: REST API, form endpoints, server-rendered Leptos pages and the
//! static site (WASM bundle, styles).

pub mod api;
pub mod auth;
pub mod error;
pub mod extract;
pub mod graphs;
pub mod ingest_child;
pub mod prescale;
pub mod state;
pub mod streams;
pub mod timeline;
pub mod uploads;
pub mod web;

use crate::ui::{App, shell};
use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use quarry_core::Config;
use state::{AppState, Services};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The directory holding `pkg/` (the WASM bundle) and the styles.
pub fn site_root(config: &Config) -> PathBuf {
    if !config.site_root.is_empty() {
        return PathBuf::from(&config.site_root);
    }
    // Next to the binary: <target>/<profile>/quarry -> <target>/site
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(|p| p.parent())
                .map(|p| p.join("site"))
        })
        .unwrap_or_else(|| PathBuf::from("site"))
}

fn leptos_options(config: &Config, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("quarry")
        .site_root(site_root(config).to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Builds the whole HTTP application.
pub fn app(services: Arc<Services>, addr: SocketAddr) -> Router {
    let leptos_options = leptos_options(&services.config, addr);
    let state = AppState {
        leptos_options: leptos_options.clone(),
        services: services.clone(),
    };
    let routes = generate_route_list(App);
    let request_id = HeaderName::from_static("x-request-id");
    // Pages, forms and server functions authenticate with the session cookie, so they
    // sit behind the CSRF guard; the REST API takes bearer tokens and does not need it.
    // Bodies are at most 1 MiB: server functions read theirs themselves, so
    // `limit_body` bounds them; the forms' extractors honour `DefaultBodyLimit`, which
    // the upload form (`/datasets/upload`) lifts for itself.
    let pages = Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            {
                let services = services.clone();
                move || provide_context(services.clone())
            },
            move || shell(leptos_options.clone()),
        )
        .layer(axum::middleware::from_fn(error::limit_body))
        .merge(web::router())
        .layer(DefaultBodyLimit::max(error::BODY_LIMIT))
        .layer(axum::middleware::from_fn(auth::same_origin_only));
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/api/v1", api::router())
        .merge(pages)
        // Unknown paths render the app's "not found" page, which asks who is signed
        // in: it needs the services like every other page.
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(
            {
                let services = services.clone();
                move || provide_context(services.clone())
            },
            shell,
        ))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serves until `shutdown` is cancelled; calls `on_bound` with the bound address
/// (useful with port 0).
pub async fn serve(
    services: Arc<Services>,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listen = services.config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("listening on {listen} (set QUARRY_LISTEN to use another address)")
        })?;
    let addr = listener.local_addr()?;
    on_bound(addr);
    let site = site_root(&services.config);
    if !site.join("pkg").join("quarry.js").exists() {
        tracing::warn!(site = %site.display(), "no web bundle here: pages will not hydrate (build with `cargo xtask build`)");
    }
    // One watcher feeds every event stream of this server with the jobs that changed.
    tokio::spawn({
        let (watch, db, stop) = (
            services.watch.clone(),
            services.db.clone(),
            services.shutdown.clone(),
        );
        async move { watch.run(db, stop).await }
    });
    // Connection info gives handlers the client's address (sign-in throttling).
    let streams = services.shutdown.clone();
    let grace = Duration::from_secs(services.config.worker.stop_timeout_secs);
    let app = app(services, addr).into_make_service_with_connect_info::<SocketAddr>();
    let serving = axum::serve(listener, app).with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Event streams end, so open browsers do not hold the shutdown up.
            streams.cancel();
        }
    });
    // Requests still running after the grace are cut off: the process exits in time.
    tokio::select! {
        served = serving => served.context("serving HTTP"),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "requests still open after stop_timeout_secs: exiting anyway");
            Ok(())
        }
    }
}
