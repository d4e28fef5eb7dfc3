//! The `quarry` command line: one binary, every role a subcommand.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use quarry_app::server::{self, state::Services};
use quarry_core::auth::{create_user, ensure_admin, find_user, issue_token};
use quarry_core::aws::{
    self, cloudwatch::CloudWatchMetrics, ecs::EcsFleet, s3::S3BlobStore, sqs::SqsQueue,
};
use quarry_core::blob::{BlobStore, LocalBlobStore};
use quarry_core::clock::now_ms;
use quarry_core::config::{BlobStoreConfig, FleetKind, MetricsKind, QueueKind};
use quarry_core::fleet::{self, Fleet, ProcessFleet};
use quarry_core::lifecycle::Lifecycle;
use quarry_core::metrics::{DbMetrics, Metrics, MetricsSources};
use quarry_core::queue::{DbQueue, JobQueue, backstop_receives};
use quarry_core::{Config, Db};
use quarry_domain::Role;
use quarry_orchestrator::Orchestrator;
use quarry_worker::run::{Exit, Worker};
use secrecy::ExposeSecret as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Quarry: upload data, run heavy analyses, read the results.
#[derive(Debug, Parser)]
#[command(name = "quarry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the embedded default: the web server and the orchestrator in one process.
    Up,
    /// Start the web server (API, pages) only.
    Serve,
    /// Run a worker: take jobs from the queue until it stays empty.
    Worker,
    /// Run the orchestrator: launch workers as the queue grows.
    Orchestrator,
    /// Synthesize, check, preview, deploy and remove an environment's AWS stack.
    Stack {
        #[command(subcommand)]
        command: crate::stack::StackCommand,
    },
    /// Manage users and their API tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Replay a job trace (CSV: arrival,duration[,user] in seconds) in virtual time
    /// through Quarry's scaling policy and the usual alternatives on a model of ECS
    /// Fargate, and print a table per policy (README, "Scaling simulator").
    Sim {
        /// The trace file.
        trace: std::path::PathBuf,
        /// A TOML file overriding the model's parameters and prices (defaults: the
        /// `fargate.toml` shipped in the binary, printed by --print-config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The seed of the random draws (launch delays, Spot interruptions, scale-in).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the scaling simulator's default model (TOML) and exit.
    #[command(name = "sim-config")]
    SimConfig,
    /// Internal: read one upload described on stdin (the server's inspection child).
    #[command(hide = true)]
    InspectUpload,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print their API token. With --password-stdin they can also
    /// sign in to the web app with their name and that password.
    Add {
        name: String,
        /// analyst, lead, operator or admin.
        #[arg(long, default_value = "analyst")]
        role: Role,
        /// Read the user's web password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set or change a user's web password (read from the first line of stdin); their
    /// open sessions end.
    Password { name: String },
    /// Issue another API token for an existing user and print it.
    Token {
        name: String,
        /// Seconds until the token expires (default: never).
        #[arg(long)]
        expires_in: Option<u64>,
    },
}

/// Parses the command line and runs the chosen role.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    if let Command::InspectUpload = cli.command {
        // No runtime: the child only reads one file with polars.
        return quarry_engine::ingest::child::serve();
    }
    match cli.command {
        Command::Sim {
            trace,
            config,
            seed,
            json,
        } => return simulate(&trace, config.as_deref(), seed, json),
        Command::SimConfig => {
            print!("{}", quarry_orchestrator::sim::DEFAULT_CONFIG);
            return Ok(());
        }
        _ => {}
    }
    // A worker runs one job at a time, its analysis on a thread of its own: one
    // runtime thread is all its few awaits need, and spares the wake-ups of idle
    // runtime threads (the benchmark could not tell the difference on a noisy day).
    let runtime = if matches!(cli.command, Command::Worker) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(run(cli.command))
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("QUARRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[expect(
    clippy::print_stderr,
    reason = "the CLI tells its user what it printed on stdout"
)]
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up => up().await,
        Command::Serve => {
            let services = open_services(Config::load()?).await?;
            housekeeping(&services).await;
            serve_until_signal(services, |addr| {
                println!("Quarry is serving at http://{addr}")
            })
            .await
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    password_stdin,
                },
        } => {
            let config = Config::load()?;
            let db = Db::connect(&config.database_url()).await?;
            let password = if password_stdin {
                let password = read_password_line()?;
                quarry_core::sessions::validate_password(&password)?;
                Some(password)
            } else {
                None
            };
            let (user, token) = create_user(&db, &name, role).await?;
            if let Some(password) = password {
                quarry_core::sessions::set_password(&db, &user.id, &password).await?;
                eprintln!(
                    "`{}` can sign in to the web app with that password",
                    user.name
                );
            }
            eprintln!(
                "created {} `{}`; their API token (shown once):",
                user.role, user.name
            );
            println!("{}", token.expose_secret());
            Ok(())
        }
        Command::User {
            command: UserCommand::Token { name, expires_in },
        } => {
            let (db, user) = existing_user(&name).await?;
            let expires_at = expires_in
                .map(|s| now_ms() + i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
            let token = issue_token(&db, &user.id, "cli", expires_at).await?;
            eprintln!("new API token for `{}` (shown once):", user.name);
            println!("{}", token.expose_secret());
            Ok(())
        }
        Command::User {
            command: UserCommand::Password { name },
        } => {
            let (db, user) = existing_user(&name).await?;
            let password = read_password_line()?;
            quarry_core::sessions::set_password(&db, &user.id, &password).await?;
            eprintln!("password of `{}` set; their open sessions ended", user.name);
            Ok(())
        }
        Command::Worker => worker().await,
        Command::Orchestrator => {
            let services = open_services(Config::load()?).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            orchestrator(&services).await?.run(shutdown).await;
            Ok(())
        }
        Command::Stack { command } => Box::pin(crate::stack::run(command)).await,
        Command::InspectUpload => quarry_engine::ingest::child::serve(),
        // Run by `main` before a runtime starts.
        Command::Sim { .. } | Command::SimConfig => Ok(()),
    }
}

/// `quarry sim`: the scaling simulator over one trace.
fn simulate(
    trace: &std::path::Path,
    config: Option<&std::path::Path>,
    seed: u64,
    json: bool,
) -> anyhow::Result<()> {
    use quarry_orchestrator::sim;
    let overrides = config
        .map(|path| {
            let size = std::fs::metadata(path)
                .with_context(|| format!("{}", path.display()))?
                .len();
            anyhow::ensure!(
                size <= 1 << 20,
                "{}: {size} bytes; a simulator config has at most 1 MiB",
                path.display()
            );
            std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))
        })
        .transpose()?;
    let config = sim::Config::load(overrides.as_deref()).map_err(anyhow::Error::msg)?;
    let trace = sim::Trace::read(trace)?;
    let outcomes = sim::run(&trace, &config, seed);
    if json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        println!(
            "{} jobs, {:.1} job-hours of work; max_workers {}, launch {}–{} s, idle timeout {} s, seed {seed}\n",
            trace.jobs.len(),
            trace.work_secs() as f64 / 3_600.0,
            config.fleet.max_workers,
            config.launch.delay_min_secs,
            config.launch.delay_max_secs,
            config.fleet.idle_timeout_secs,
        );
        print!("{}", sim::table(&outcomes, &config));
    }
    Ok(())
}

/// Start-up housekeeping of a server: the database file is owner-only, and what a
/// crash left behind goes (blobs without a row, stale temporary files). A failure is
/// logged, never fatal.
async fn housekeeping(services: &Services) {
    // Deployments a stopped server left running are followed to their end.
    let control = services.control.clone();
    tokio::spawn(async move {
        if let Err(e) = control.resume().await {
            tracing::warn!(error = %e, "resuming the control plane's deployments failed");
        }
    });
    // Releases whose jobs regress are rolled back.
    services.control.spawn_watch(Duration::from_millis(
        services.config.control.watch_ms.max(100),
    ));
    // Promotions' reference analyses run on their candidates.
    quarry_app::control::gate::GateRunner {
        plane: services.control.clone(),
        lifecycle: services.lifecycle.clone(),
        blobs: services.blobs.clone(),
        wake: [services.wake_workers.clone(), services.nudge.clone()],
        timeout: Duration::from_secs(services.config.control.gate_timeout_secs.max(1)),
        no_worker_grace: Duration::from_secs(services.config.control.gate_no_worker_secs),
        stale: quarry_core::fleet::stale_after(services.config.heartbeat()),
        peers: services.config.control.peers.clone(),
        http: quarry_app::control::peer::client(),
    }
    .spawn(
        Duration::from_millis(services.config.control.gate_poll_ms.max(50)),
        services.control.gate_nudge.clone(),
    );
    // Re-runs on another environment's release run there.
    quarry_app::control::forward::Forwarder {
        plane: services.control.clone(),
        blobs: services.blobs.clone(),
        peers: services.config.control.peers.clone(),
        http: quarry_app::control::peer::client(),
        deadline: Duration::from_secs(services.config.analyses.max_runtime_secs.saturating_mul(2)),
    }
    .spawn(
        Duration::from_millis(services.config.control.gate_poll_ms.max(50)),
        Arc::new(tokio::sync::Notify::new()),
    );
    let config = &services.config;
    #[cfg(unix)]
    if config.database.url.expose_secret().is_empty() {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let file = config.data_dir.join(format!("quarry.db{suffix}"));
            if file.exists()
                && let Err(e) =
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(file = %file.display(), error = %e, "could not restrict the database file");
            }
        }
    }
    // On one machine only this server writes uploads, so none is in progress now;
    // elsewhere another API task may be mid-upload.
    let embedded = matches!(config.blob_store, BlobStoreConfig::Local { .. });
    let grace = quarry_core::sweep::Grace {
        datasets: if embedded {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        results: Duration::from_secs(3600),
        // Only the control plane's pin writes them: on one machine, none is under way.
        references: if embedded {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
    };
    match quarry_core::sweep::orphaned_blobs(&services.db, services.blobs.as_ref(), grace).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            removed = n,
            "removed files left without a row by an earlier crash"
        ),
        Err(e) => tracing::warn!(error = %e, "the start-up sweep of orphaned files failed"),
    }
    let tmp = config.tmp_dir();
    let stale = quarry_core::sweep::stale_temp_files(&tmp, Duration::from_secs(3600));
    if stale > 0 {
        tracing::info!(removed = stale, "removed stale temporary files");
    }
}

/// Whether any adapter the configuration selects is an AWS one.
fn uses_aws(config: &Config) -> bool {
    matches!(config.blob_store, BlobStoreConfig::S3 { .. })
        || config.queue.kind == QueueKind::Sqs
        || config.metrics.kind == MetricsKind::Cloudwatch
        || config.fleet.kind == FleetKind::Ecs
}

/// Connects the database, blob store, queue and metrics the configuration selects:
/// the embedded adapters or the AWS ones, behind the same ports.
pub async fn open_services(config: Config) -> anyhow::Result<Arc<Services>> {
    let db = Db::connect(&config.database_url()).await?;
    let sdk = if uses_aws(&config) {
        Some(aws::sdk_config(&config.aws.region).await)
    } else {
        None
    };
    let aws_sdk = || sdk.as_ref().context("AWS configuration");
    let blobs: Arc<dyn BlobStore> = match &config.blob_store {
        BlobStoreConfig::Local { .. } => {
            let dir = config.blob_dir().context("local blob store directory")?;
            Arc::new(LocalBlobStore::open(&dir)?)
        }
        BlobStoreConfig::S3 { bucket, path_style } => Arc::new(S3BlobStore::new(
            aws_sdk()?,
            bucket,
            *path_style,
            &config.tmp_dir(),
        )),
    };
    let queue: Arc<dyn JobQueue> = match config.queue.kind {
        QueueKind::Database => Arc::new(DbQueue::new(
            db.clone(),
            JOB_QUEUE,
            config.visibility_timeout(),
            backstop_receives(config.queue.max_attempts),
        )),
        QueueKind::Sqs => {
            anyhow::ensure!(
                !config.queue.url.is_empty(),
                "configuration: `queue.url` must be the SQS queue URL (the stack sets QUARRY_QUEUE__URL)"
            );
            let queue =
                SqsQueue::open(aws_sdk()?, &config.queue.url, config.visibility_timeout()).await?;
            if queue.max_receives() <= config.queue.max_attempts {
                tracing::warn!(
                    max_receive_count = queue.max_receives(),
                    max_attempts = config.queue.max_attempts,
                    "the SQS RedrivePolicy's maxReceiveCount is not above queue.max_attempts: \
                     messages may be dead-lettered before their job's attempts are used up \
                     (the reconciler redrives them)"
                );
            }
            Arc::new(queue)
        }
    };
    let metrics: Arc<dyn Metrics> = match config.metrics.kind {
        MetricsKind::Database => Arc::new(DbMetrics::new(db.clone(), &config.environment)),
        MetricsKind::Cloudwatch => {
            Arc::new(CloudWatchMetrics::new(aws_sdk()?, &config.environment))
        }
    };
    let inspections = Arc::new(tokio::sync::Semaphore::new(
        config.uploads.max_concurrent_inspections as usize,
    ));
    let metrics_sources =
        MetricsSources::new(metrics.clone(), config.metrics.kind, &config.environment);
    let control = quarry_app::control::ControlPlane::from_config(db.clone(), &config)?;
    let lifecycle = Lifecycle::new(
        db.clone(),
        queue.clone(),
        config.queue.max_attempts,
        config.analyses.max_running_per_user,
    );
    let config_streams = config.auth.max_streams_per_user;
    Ok(Arc::new(Services {
        control,
        config,
        db,
        blobs,
        queue,
        lifecycle,
        shutdown: CancellationToken::new(),
        metrics,
        metrics_sources,
        nudge: Arc::new(Notify::new()),
        wake_workers: Arc::new(Notify::new()),
        streams: quarry_app::server::streams::StreamSlots::new(config_streams),
        watch: quarry_core::watch::JobWatch::new(),
        inspections,
        learned: Arc::default(),
    }))
}

/// The name of the job queue in the embedded queue table.
const JOB_QUEUE: &str = "jobs";

async fn orchestrator(services: &Services) -> anyhow::Result<Orchestrator> {
    let fleet: Arc<dyn Fleet> = match services.config.fleet.kind {
        FleetKind::Process => Arc::new(
            ProcessFleet::new(services.db.clone(), services.config.heartbeat())
                .await?
                .with_env(services.config.worker.process_env())
                .with_nice(services.config.worker.nice)
                .with_scheduler(services.config.worker.scheduler),
        ),
        FleetKind::Ecs => {
            let ecs = services.config.fleet.ecs.clone();
            ecs.check()?;
            let sdk = aws::sdk_config(&services.config.aws.region).await;
            Arc::new(EcsFleet::new(&sdk, ecs, &services.config.environment))
        }
    };
    let config = &services.config;
    Ok(Orchestrator {
        db: services.db.clone(),
        lifecycle: services.lifecycle.clone(),
        fleet,
        metrics: services.metrics.clone(),
        jobs_per_worker: u64::from(config.fleet.jobs_per_worker),
        max_workers: u64::from(config.fleet.max_workers),
        tick: Duration::from_secs(config.fleet.tick_secs),
        surge: u64::from(config.fleet.surge),
        release: config.worker.release(),
        stale: fleet::stale_after(config.heartbeat()),
        nudge: services.nudge.clone(),
        prescale: config.fleet.prescale.clone(),
        learned: services.learned.clone(),
    })
}

/// The database of the configured environment, and the user called `name` in it.
async fn existing_user(name: &str) -> anyhow::Result<(Db, quarry_core::auth::User)> {
    let config = Config::load()?;
    let db = Db::connect(&config.database_url()).await?;
    let user = find_user(&db, name)
        .await?
        .with_context(|| format!("no user named `{name}`"))?;
    Ok((db, user))
}

/// The first line of stdin, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}

async fn worker() -> anyhow::Result<()> {
    let config = Config::load()?;
    let services = open_services(config).await?;
    let id = std::env::var("QUARRY_WORKER_ID")
        .unwrap_or_else(|_| format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    fleet::set_state(
        &services.db,
        &id,
        "running",
        Some(&format!("pid {}", std::process::id())),
    )
    .await?;
    fleet::set_release(&services.db, &id, &services.config.worker.release()).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let stop_now = CancellationToken::new();
    if std::env::var_os(fleet::PARENT_PIPE_ENV).is_some() {
        cancel_when_parent_goes(stop_now.clone(), shutdown.clone());
    }
    let worker = Worker {
        id: id.clone(),
        config: services.config.clone(),
        db: services.db.clone(),
        lifecycle: services.lifecycle.clone(),
        blobs: services.blobs.clone(),
        stop_now,
    };
    let exit = worker.run(shutdown).await;
    let why = match &exit {
        Ok(Exit::Idle) => "the queue stayed empty",
        Ok(Exit::Shutdown) => "shut down",
        Ok(Exit::Abandoned) => "an analysis would not stop",
        Ok(Exit::Superseded) => "superseded by a new release",
        Err(_) => "failed",
    };
    let detail = format!("pid {}; exited: {why}", std::process::id());
    if let Err(e) = fleet::set_state(&services.db, &id, "exited", Some(&detail)).await {
        tracing::warn!(worker_id = %id, error = %e, "could not record the exit (the row expires)");
    }
    match exit? {
        // An analysis thread that would not stop must not keep the process alive.
        Exit::Abandoned => std::process::exit(0),
        Exit::Idle | Exit::Shutdown | Exit::Superseded => Ok(()),
    }
}

/// Cancels `now` and `token` once stdin reaches its end: the process that launched
/// this worker closed its pipe, or died (the kernel closes it then, even after SIGKILL).
/// Bytes before that are wake-ups: a job may be waiting, poll the queue now.
/// Read on a thread of its own: a blocking read needs no runtime support.
fn cancel_when_parent_goes(now: CancellationToken, token: CancellationToken) {
    let watch = std::thread::Builder::new()
        .name("parent-pipe".to_owned())
        .spawn(move || {
            use std::io::Read as _;
            let mut stdin = std::io::stdin();
            let mut buf = [0_u8; 64];
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {
                quarry_core::queue::wake_receivers();
            }
            tracing::info!("the launching process went away: handing back and shutting down");
            now.cancel();
            token.cancel();
        });
    if let Err(e) = watch {
        tracing::warn!(error = %e, "cannot watch the launching process");
    }
}

async fn up() -> anyhow::Result<()> {
    let config = Config::load()?;
    quarry_core::blob::private_dir(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let services = open_services(config).await?;
    housekeeping(&services).await;
    let token_path = ensure_admin(&services.db, &services.config.data_dir).await?;
    let shown = token_path.canonicalize().unwrap_or(token_path);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let orchestrator = orchestrator(&services).await?;
    // This server's release is current before it answers anything: a re-run asked for
    // on it right after a restart must not meet the previous release (the orchestrator
    // declares it again when it starts, and retries if this fails).
    match quarry_core::fleet::declare_release(&services.db, &orchestrator.release).await {
        Ok(Some(old)) => {
            tracing::info!(release = %orchestrator.release, superseded = %old, "a new release: workers of the old one drain");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not declare the current release yet"),
    }
    let fleet = orchestrator.fleet.clone();
    // Enqueues wake the idle children at once; a burst coalesces into few wake-ups.
    let waking = tokio::spawn({
        let (fleet, wake) = (fleet.clone(), services.wake_workers.clone());
        async move {
            loop {
                wake.notified().await;
                fleet.wake();
            }
        }
    });
    // One deadline for the whole stop: requests, then the workers, share the grace.
    let stopping = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            std::time::Instant::now()
        }
    });
    let orchestrating = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { orchestrator.run(shutdown).await }
    });
    let grace = Duration::from_secs(services.config.worker.stop_timeout_secs);
    let served = server::serve(services, shutdown.clone(), move |addr| {
        println!("Quarry is up at http://{addr}");
        println!("Admin API token: {}", shown.display());
    })
    .await;
    shutdown.cancel();
    waking.abort();
    orchestrating.await.ok();
    // The children hand their jobs back; any that would not is killed when the grace
    // left after serving runs out.
    let began = stopping.await.unwrap_or_else(|_| std::time::Instant::now());
    fleet.shutdown(grace.saturating_sub(began.elapsed())).await;
    served
}

async fn serve_until_signal(
    services: Arc<Services>,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    server::serve(services, shutdown, on_bound).await
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    let (lock_waits, lock_waited) = quarry_core::db::statements::lock_waits();
    tracing::info!(
        lock_waits,
        lock_waited_ms = lock_waited.as_millis() as u64,
        "shutting down"
    );
    token.cancel();
}
