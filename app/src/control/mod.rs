//! The operator control plane: environments (from `environments/*.toml`), immutable
//! artifacts, deploys, promotions with approval, rollbacks with holds, and freezes.
//!
//! The REST routes (`server::api::control`) and `quarry stack …` call the operations
//! here ([`ops`], and [`reads`] for the reads) and nothing else, so neither path can do
//! what the other cannot.
//! Records live in the database the process runs with (`quarry_core::control`,
//! `quarry_core::releases`); every transition that must happen once is a
//! compare-and-set there, and [`ControlPlane::resume`] finishes, at start-up, what a
//! stopped server left `deploying`, following the change set it had recorded instead
//! of making another.

pub mod deployer;
pub mod forward;
pub mod gate;
mod guards;
pub mod ops;
pub mod peer;
pub mod reads;
mod run;
#[cfg(test)]
mod tests;
pub mod views;
pub mod watch;

pub use deployer::Deployer;

use anyhow::Context as _;
use quarry_core::{Db, Error, Result};
use quarry_stacks::StackConfig;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, broadcast};

/// One stack environment of the control plane.
#[derive(Debug, Clone)]
pub struct EnvDef {
    pub name: String,
    /// Its `[stack]` (and `[control]`) parameters.
    pub config: StackConfig,
}

impl EnvDef {
    pub fn stack(&self) -> &str {
        &self.config.stack.name
    }
    pub fn upstream(&self) -> Option<&str> {
        self.config.control.upstream.as_deref()
    }
    pub fn approvals(&self) -> u32 {
        self.config.control.approvals
    }
    pub fn approval_expiry(&self) -> Duration {
        Duration::from_secs(u64::from(self.config.control.approval_expiry_hours) * 3600)
    }
}

/// Runs `pass` every `period`, and at once whenever `nudge` fires, until the process
/// ends; a pass that fails is logged (naming `what`) and the next one comes all the same.
pub fn every<F, Fut>(period: Duration, nudge: Arc<tokio::sync::Notify>, what: &'static str, pass: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = nudge.notified() => {}
            }
            if let Err(e) = pass().await {
                tracing::warn!(error = %e, "{what} could not move on");
            }
        }
    });
}

/// Reads the stack environments: from `dir` when given, else `./environments` when it
/// exists, else the files compiled into the binary. Upstreams must name another
/// environment.
pub fn load_environments(dir: Option<&Path>) -> anyhow::Result<Vec<EnvDef>> {
    let local = PathBuf::from("environments");
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| local.is_dir().then_some(local));
    let mut defs = Vec::new();
    for (name, _) in quarry_stacks::config::ENVIRONMENTS {
        let file = dir.as_ref().map(|d| d.join(format!("{name}.toml")));
        let config = match file.filter(|f| f.exists()) {
            Some(f) => StackConfig::from_file(name, &f)?,
            None => StackConfig::for_environment(name)?,
        };
        defs.push(EnvDef {
            name: name.to_owned(),
            config,
        });
    }
    for def in &defs {
        if let Some(up) = def.upstream() {
            anyhow::ensure!(
                up != def.name && defs.iter().any(|d| d.name == up),
                "environments/{}.toml: `control.upstream = \"{up}\"` is not another stack \
                 environment (use one of staging, production)",
                def.name
            );
        }
    }
    Ok(defs)
}

/// `control.environments_dir`, if set.
pub fn config_dir(config: &quarry_core::Config) -> Option<PathBuf> {
    let dir = &config.control.environments_dir;
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// A change the control plane announces to `GET /api/v1/environments/{env}/events`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlEvent {
    pub environment: String,
    /// `stack`, `release` or `promotion`.
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// Builds the deployer of an environment (the real one, or a test's).
pub type DeployerFactory = Arc<dyn Fn(&EnvDef) -> Arc<dyn Deployer> + Send + Sync>;

/// The control plane of this process.
pub struct ControlPlane {
    pub db: Db,
    envs: Vec<EnvDef>,
    factory: DeployerFactory,
    deployers: BTreeMap<String, OnceCell<Arc<dyn Deployer>>>,
    events: broadcast::Sender<ControlEvent>,
    /// Releases being driven by this process, so a resume never drives one twice.
    running: Mutex<HashSet<String>>,
    /// Environments whose stack could not be read last time, with why.
    unreachable: Mutex<BTreeMap<String, String>>,
    pause_before_execute: Duration,
    /// Fired when a promotion opens a reference gate: the server's gate runner looks
    /// at once instead of at its next poll.
    pub gate_nudge: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field(
                "environments",
                &self.envs.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// The control plane over `envs`, driving stacks with `factory`'s deployers.
    pub fn new(
        db: Db,
        envs: Vec<EnvDef>,
        factory: DeployerFactory,
        pause_before_execute: Duration,
    ) -> Arc<Self> {
        let deployers = envs
            .iter()
            .map(|e| (e.name.clone(), OnceCell::new()))
            .collect();
        Arc::new(Self {
            db,
            envs,
            factory,
            deployers,
            events: broadcast::channel(256).0,
            running: Mutex::new(HashSet::new()),
            unreachable: Mutex::new(BTreeMap::new()),
            pause_before_execute,
            gate_nudge: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The control plane of a configuration: its environments' files and the SDK's
    /// usual credential chain (`AWS_ENDPOINT_URL` points it at an emulator).
    pub fn from_config(db: Db, config: &quarry_core::Config) -> anyhow::Result<Arc<Self>> {
        let envs = load_environments(config_dir(config).as_deref())
            .context("the control plane's environments")?;
        Ok(Self::with_environments(db, config, envs))
    }

    /// [`ControlPlane::from_config`] over the given environments.
    pub fn with_environments(db: Db, config: &quarry_core::Config, envs: Vec<EnvDef>) -> Arc<Self> {
        let c = &config.control;
        let region = config.aws.region.clone();
        let poll = Duration::from_millis(c.poll_ms.max(10));
        let sdk: Arc<OnceCell<aws_config_handle::Sdk>> = Arc::new(OnceCell::new());
        let factory: DeployerFactory = Arc::new(move |def: &EnvDef| {
            Arc::new(aws_config_handle::Lazy {
                sdk: sdk.clone(),
                region: region.clone(),
                stack: def.stack().to_owned(),
                rollback: quarry_stacks::stack::StackProps::from_config(&def.config)
                    .rollback_triggers(),
                poll,
                inner: OnceCell::new(),
            }) as Arc<dyn Deployer>
        });
        Self::new(
            db,
            envs,
            factory,
            Duration::from_millis(c.pause_before_execute_ms),
        )
    }

    pub fn environments(&self) -> &[EnvDef] {
        &self.envs
    }

    /// The environment called `name`, or a 404 naming the ones there are.
    pub fn env(&self, name: &str) -> Result<&EnvDef> {
        self.envs.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.envs.iter().map(|e| e.name.as_str()).collect();
            Error::NotFound(format!(
                "no environment `{name}`: the control plane has {}",
                names.join(", ")
            ))
        })
    }

    /// The deployer of an environment.
    pub async fn deployer(&self, env: &EnvDef) -> Arc<dyn Deployer> {
        match self.deployers.get(&env.name) {
            Some(cell) => cell
                .get_or_init(|| async { (self.factory)(env) })
                .await
                .clone(),
            None => (self.factory)(env),
        }
    }

    /// Remembers whether an environment's stack could be read, and logs only when that
    /// changes: once when it becomes unreachable (with the short reason), once when it
    /// answers again, not on every page load.
    pub(crate) fn note_stack_reach(&self, env: &str, reason: Option<&str>) {
        let mut seen = self.unreachable.lock().unwrap_or_else(|e| e.into_inner());
        match reason {
            Some(reason) => {
                if seen.get(env).map(String::as_str) != Some(reason) {
                    tracing::warn!(environment = %env, reason, "cannot read the stack; its status is `unknown`");
                    seen.insert(env.to_owned(), reason.to_owned());
                }
            }
            None => {
                if seen.remove(env).is_some() {
                    tracing::info!(environment = %env, "the stack answers again");
                }
            }
        }
    }

    /// Live changes, for the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<ControlEvent> {
        self.events.subscribe()
    }

    fn announce(&self, environment: &str, kind: &'static str, data: serde_json::Value) {
        // Nobody listening is fine.
        let _ = self.events.send(ControlEvent {
            environment: environment.to_owned(),
            kind,
            data,
        });
    }

    /// Finishes every release a stopped process left running: follows its recorded
    /// change set to the end (executing it if it never was), then records the outcome
    /// and moves its promotion on. Returns how many it resumed.
    pub async fn resume(self: &Arc<Self>) -> Result<usize> {
        let left = quarry_core::releases::in_progress(&self.db).await?;
        let mut resumed = 0;
        for release in left {
            if self.env(&release.environment).is_err() {
                continue;
            }
            tracing::info!(release_id = %release.id, environment = %release.environment, "resuming a deployment");
            self.drive(release.id.clone()).await;
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Drives a release in the background (once per process).
    pub fn spawn_drive(self: &Arc<Self>, release_id: String) {
        let plane = self.clone();
        tokio::spawn(async move { plane.drive(release_id).await });
    }

    /// Drives a release to its end, unless this process already drives it.
    pub async fn drive(self: &Arc<Self>, release_id: String) {
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(release_id.clone()) {
                return;
            }
        }
        if let Err(e) = run::drive(self, &release_id).await {
            tracing::error!(release_id = %release_id, error = format!("{e:#}"), "driving a release failed");
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&release_id);
    }
}

/// The SDK configuration, loaded on first use (not at every start of a server that
/// never deploys).
mod aws_config_handle {
    use super::deployer::{CfnDeployer, Deployer, OnEvent};
    use async_trait::async_trait;
    use quarry_stacks::cloudformation::{
        self, CfnError, Preview, ResourceChange, StackEvent, StackResource, StackStatus,
    };
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::OnceCell;

    pub type Sdk = quarry_core::aws::SdkConfig;

    #[derive(Debug)]
    pub struct Lazy {
        pub sdk: Arc<OnceCell<Sdk>>,
        pub region: String,
        pub stack: String,
        /// Passed with every update (CloudFormation's own rollback on alarms).
        pub rollback: cloudformation::RollbackTriggers,
        pub poll: Duration,
        pub inner: OnceCell<CfnDeployer>,
    }

    impl Lazy {
        async fn get(&self) -> &CfnDeployer {
            self.inner
                .get_or_init(|| async {
                    let sdk = self
                        .sdk
                        .get_or_init(|| quarry_core::aws::sdk_config(&self.region))
                        .await;
                    let mut d = cloudformation::Deployer::new(sdk, &self.stack);
                    d.poll = self.poll;
                    d.rollback = Some(self.rollback.clone());
                    CfnDeployer(d)
                })
                .await
        }
    }

    #[async_trait]
    impl Deployer for Lazy {
        async fn preview(&self, t: &str, i: &str, n: &str) -> Result<Preview, CfnError> {
            self.get().await.preview(t, i, n).await
        }
        async fn rows(&self, t: &str, i: &str) -> Result<Vec<ResourceChange>, CfnError> {
            self.get().await.rows(t, i).await
        }
        async fn delete_change_set(&self, id: &str) -> Result<(), CfnError> {
            self.get().await.delete_change_set(id).await
        }
        async fn execute(&self, id: &str, on_event: OnEvent<'_>) -> Result<String, CfnError> {
            self.get().await.execute(id, on_event).await
        }
        async fn change_set_state(&self, id: &str) -> Result<Option<(String, String)>, CfnError> {
            self.get().await.change_set_state(id).await
        }
        async fn follow(&self, on_event: OnEvent<'_>) -> Result<String, CfnError> {
            self.get().await.follow(on_event).await
        }
        async fn failures(&self) -> Result<Vec<StackEvent>, CfnError> {
            self.get().await.failures().await
        }
        async fn status(&self) -> Result<Option<StackStatus>, CfnError> {
            self.get().await.status().await
        }
        async fn resources(&self) -> Result<Vec<StackResource>, CfnError> {
            self.get().await.resources().await
        }
        async fn outputs(&self) -> Result<BTreeMap<String, String>, CfnError> {
            self.get().await.outputs().await
        }
        async fn recent_events(&self, limit: usize) -> Result<Vec<StackEvent>, CfnError> {
            self.get().await.recent_events(limit).await
        }
        async fn drift(&self) -> Result<String, CfnError> {
            self.get().await.drift().await
        }
    }
}
