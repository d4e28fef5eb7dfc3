//! Typed configuration, one file per environment.
//!
//! `environments/<name>.toml` is compiled into the binary (one binary serves every
//! environment, like one container image), then overridden by `QUARRY_*` environment
//! variables (`__` separates nested keys: `QUARRY_FLEET__MAX_WORKERS=8`). The
//! environment is chosen by `QUARRY_ENV` (default `local`); `QUARRY_CONFIG` may name an
//! extra TOML file merged between the two. [`Config::validate`] runs at startup and
//! names the offending key.

mod control;
mod limits;
mod prescale;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use quarry_domain::environments;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOCAL: &str = include_str!("../../environments/local.toml");
const STAGING: &str = include_str!("../../environments/staging.toml");
const PRODUCTION: &str = include_str!("../../environments/production.toml");

/// The environment names Quarry knows, with their compiled-in configuration.
pub const ENVIRONMENTS: [(&str, &str); 3] = [
    (environments::LOCAL, LOCAL),
    (environments::STAGING, STAGING),
    (environments::PRODUCTION, PRODUCTION),
];

/// Variables with the `QUARRY_` prefix that are not configuration keys.
const NOT_CONFIG: [&str; 5] = ["env", "config", "token", "worker_id", "log"];

/// A configuration error: the message names the key and what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Quarry's whole configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub environment: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where the built web assets are; empty means `<dir of the quarry binary>/../site`.
    #[serde(default)]
    pub site_root: String,
    pub database: DatabaseConfig,
    pub blob_store: BlobStoreConfig,
    pub queue: QueueConfig,
    pub fleet: FleetConfig,
    pub worker: WorkerConfig,
    pub uploads: UploadsConfig,
    pub analyses: AnalysesConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub control: ControlConfig,
}

/// Where the dashboards' samples go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsKind {
    /// Rows in the database (embedded).
    #[default]
    Database,
    /// CloudWatch, namespace `Quarry`, dimension `Environment`.
    Cloudwatch,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricsConfig {
    #[serde(default)]
    pub kind: MetricsKind,
}

/// Settings shared by the AWS adapters. Credentials never live here: they come from
/// the environment, a profile or the ECS task role.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AwsConfig {
    /// The region; empty = the SDK's usual chain (`AWS_REGION`, profile).
    #[serde(default)]
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`; empty means `sqlite://<data_dir>/quarry.db`.
    /// Secret: it may carry a password.
    #[serde(default = "empty_secret")]
    pub url: SecretString,
    /// The password, kept apart from the URL so the stack can hand it over from
    /// Secrets Manager (`QUARRY_DATABASE__PASSWORD`) while the URL stays plain config.
    /// When set it is put into the URL's user info.
    #[serde(default = "empty_secret")]
    pub password: SecretString,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BlobStoreConfig {
    /// A directory; empty `path` means `<data_dir>/blobs`.
    Local {
        #[serde(default)]
        path: String,
    },
    S3 {
        bucket: String,
        /// Address the bucket in the path (`endpoint/bucket/key`), as emulators need.
        #[serde(default)]
        path_style: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    Database,
    Sqs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    pub kind: QueueKind,
    /// How long a received job stays invisible before another worker may take it.
    pub visibility_timeout_secs: u64,
    /// Deliveries before a job is dead-lettered.
    pub max_attempts: u32,
    /// The SQS queue URL (cloud only).
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetKind {
    Process,
    Ecs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FleetConfig {
    pub kind: FleetKind,
    pub max_workers: u32,
    pub jobs_per_worker: u32,
    pub tick_secs: u64,
    /// While workers of a superseded release drain after a deploy, the fleet may go
    /// over `max_workers` by up to this many (never by more than are draining).
    #[serde(default)]
    pub surge: u32,
    /// The ECS fleet's settings (`kind = "ecs"`); names come from the stack.
    #[serde(default)]
    pub ecs: EcsConfig,
    /// Workers launched ahead of the hours the job history says are busy.
    #[serde(default)]
    pub prescale: PreScaleConfig,
}

/// Where and how the ECS fleet runs workers. The stack hands the names to the
/// orchestrator's task as `QUARRY_FLEET__ECS__*` variables.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EcsConfig {
    #[serde(default)]
    pub cluster: String,
    /// The worker task definition (family, family:revision or ARN).
    #[serde(default)]
    pub task_definition: String,
    /// Subnets of the workers (a list, or one comma-separated string).
    #[serde(default, deserialize_with = "string_or_list")]
    pub subnets: Vec<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    /// Workers that always run on on-demand Fargate before any goes to Spot.
    #[serde(default)]
    pub on_demand_base: u32,
    /// Percent of the workers beyond the base that run on Fargate Spot (0..=100).
    #[serde(default = "all_spot")]
    pub spot_share: u32,
}

fn all_spot() -> u32 {
    100
}

impl EcsConfig {
    /// What the ECS fleet cannot start without, named by key.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (key, missing) in [
            ("fleet.ecs.cluster", self.cluster.is_empty()),
            ("fleet.ecs.task_definition", self.task_definition.is_empty()),
            ("fleet.ecs.subnets", self.subnets.is_empty()),
            ("fleet.ecs.security_groups", self.security_groups.is_empty()),
        ] {
            if missing {
                return Err(ConfigError(format!(
                    "`{key}` must be set for the ECS fleet (the stack sets QUARRY_{})",
                    key.to_uppercase().replace('.', "__")
                )));
            }
        }
        Ok(())
    }
}

/// A list given either as a TOML list or as one comma-separated string (environment
/// variables).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ToOwned::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerConfig {
    /// A worker exits after the queue has been empty this long.
    pub idle_timeout_secs: u64,
    /// On SIGTERM a running job may finish if it can within this time.
    pub stop_timeout_secs: u64,
    pub heartbeat_secs: u64,
    /// The memory an analysis may use; polars streams beyond it, and an analysis
    /// that needs more fails with a message naming this limit.
    pub memory_limit_mb: u64,
    /// Threads polars may use in one worker; 0 = one per CPU.
    #[serde(default)]
    pub threads: u32,
    /// The niceness embedded workers run at (0 to 19), so that analyses yield the
    /// cores to the web server; 0 runs them at the server's priority. The ECS fleet
    /// ignores it (its workers have their own machines).
    #[serde(default = "default_nice")]
    pub nice: u32,
    /// The Linux scheduling policy of embedded workers (`chrt(1)`): `normal` (the
    /// default) shares the cores by niceness; `batch` never preempts on wake-up;
    /// `idle` runs analyses only on CPU time nothing else wants, which on the 2-vCPU
    /// machines measured here made the server's tail latency worse, not better (see
    /// the README's benchmarks).
    #[serde(default)]
    pub scheduler: WorkerScheduler,
    /// The release this worker runs, recorded with every attempt it makes. The ECS task
    /// definition sets it to the image by digest; unset (the embedded default), it is
    /// the binary's build id ([`build_id`]), which `quarry up` hands its workers.
    #[serde(default)]
    pub release: Option<String>,
    /// The container image this worker runs in, recorded in the provenance of every
    /// result it computes; the ECS task definition sets it. Unset on the embedded
    /// default, which runs no image.
    #[serde(default)]
    pub image: Option<String>,
    /// Set by the orchestrator on a worker it launches ahead of an expected surge
    /// (`QUARRY_WORKER__PATIENT_UNTIL_MS`, Unix ms): until then the worker waits for
    /// work without its idle time counting.
    #[serde(default)]
    pub patient_until_ms: Option<i64>,
}

/// This binary's build id: `build-` and 12 hex digits of a hash of the version, the
/// commit it was built from (`QUARRY_GIT_COMMIT` at build time, when set) and the
/// executable's size and modification time. A rebuilt binary gets a new id; reading
/// the file's metadata costs nothing, where hashing a debug build (hundreds of MB)
/// would delay every start.
pub fn build_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let file = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}|{modified}", m.len())
            })
            .unwrap_or_default();
        let text = format!(
            "{}|{}|{file}",
            env!("CARGO_PKG_VERSION"),
            option_env!("QUARRY_GIT_COMMIT").unwrap_or("")
        );
        let digest = crate::blob::ContentHash::of(text.as_bytes());
        format!("build-{}", &digest[..12])
    })
    .clone()
}

fn default_nice() -> u32 {
    10
}

/// `worker.scheduler`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScheduler {
    /// `SCHED_OTHER`, the server's own policy.
    #[default]
    Normal,
    /// `SCHED_BATCH`: no wake-up preemption of the server.
    Batch,
    /// `SCHED_IDLE`: only CPU time nothing else wants.
    Idle,
}

impl WorkerScheduler {
    /// `chrt`'s option for it, `None` for the default policy.
    pub fn chrt_flag(self) -> Option<&'static str> {
        match self {
            Self::Normal => None,
            Self::Batch => Some("--batch"),
            Self::Idle => Some("--idle"),
        }
    }
}

impl WorkerConfig {
    /// The release this worker records: `worker.release`, or the build id.
    pub fn release(&self) -> String {
        self.release
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(build_id)
    }

    /// The environment of the processes this binary launches (worker children, the
    /// upload inspector): polars' thread count, few malloc arenas so freed memory goes
    /// back to the system instead of lingering per thread, and this release. ECS tasks
    /// get their environment from the task definition instead.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("MALLOC_ARENA_MAX".to_owned(), "2".to_owned()),
            ("QUARRY_WORKER__RELEASE".to_owned(), self.release()),
        ];
        if self.threads > 0 {
            env.push(("POLARS_MAX_THREADS".to_owned(), self.threads.to_string()));
        }
        env
    }
}

pub use control::{ControlConfig, PeerConfig};
pub use limits::{AnalysesConfig, AuthConfig, UploadsConfig};
pub use prescale::PreScaleConfig;

impl Config {
    /// Loads the environment named by `QUARRY_ENV` (default `local`) with overrides.
    pub fn load() -> Result<Self, ConfigError> {
        let name = std::env::var("QUARRY_ENV").unwrap_or_else(|_| environments::LOCAL.to_owned());
        let extra = std::env::var_os("QUARRY_CONFIG").map(PathBuf::from);
        Self::load_from(&name, extra.as_deref(), Some(Env::prefixed("QUARRY_")))
    }

    fn load_from(name: &str, extra: Option<&Path>, env: Option<Env>) -> Result<Self, ConfigError> {
        let (_, base) = ENVIRONMENTS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| {
                ConfigError(format!(
                    "QUARRY_ENV=`{name}` is unknown: use local, staging or production"
                ))
            })?;
        let mut figment = Figment::new().merge(Toml::string(base));
        if let Some(path) = extra {
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Some(env) = env {
            figment = figment.merge(
                env.split("__")
                    .filter(|k| !NOT_CONFIG.contains(&k.as_str())),
            );
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError(figment_message(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("`{key}` {why}")));
        if !ENVIRONMENTS.iter().any(|(n, _)| *n == self.environment) {
            return fail("environment", "must be local, staging or production");
        }
        if self.data_dir.as_os_str().is_empty() {
            return fail("data_dir", "must not be empty");
        }
        if self.fleet.max_workers == 0 {
            return fail("fleet.max_workers", "must be at least 1");
        }
        if self.fleet.jobs_per_worker == 0 {
            return fail("fleet.jobs_per_worker", "must be at least 1");
        }
        if self.fleet.tick_secs == 0 {
            return fail("fleet.tick_secs", "must be at least 1");
        }
        let p = &self.fleet.prescale;
        if !(p.alpha > 0.0 && p.alpha <= 1.0) {
            return fail("fleet.prescale.alpha", "must be above 0 and at most 1");
        }
        if p.lead_secs > 3_600 || p.patience_secs > 3_600 {
            return fail(
                "fleet.prescale.lead_secs",
                "and fleet.prescale.patience_secs must be at most 3600 (an hour)",
            );
        }
        if !(1..=52).contains(&p.history_weeks) {
            return fail("fleet.prescale.history_weeks", "must be 1 to 52");
        }
        if self.worker.nice > 19 {
            return fail(
                "worker.nice",
                "must be 0 to 19 (the niceness of embedded workers)",
            );
        }
        if self.queue.max_attempts == 0 {
            return fail("queue.max_attempts", "must be at least 1");
        }
        if self.queue.visibility_timeout_secs < 2 {
            return fail("queue.visibility_timeout_secs", "must be at least 2");
        }
        if self.worker.heartbeat_secs == 0
            || self.worker.heartbeat_secs * 2 > self.queue.visibility_timeout_secs
        {
            return fail(
                "worker.heartbeat_secs",
                "must be at least 1 and at most half of queue.visibility_timeout_secs, \
                 or a running job would lose its lease",
            );
        }
        if self.worker.memory_limit_mb < 64 {
            return fail("worker.memory_limit_mb", "must be at least 64");
        }
        if self.uploads.max_bytes == 0 {
            return fail("uploads.max_bytes", "must be at least 1");
        }
        for (key, value) in [
            ("uploads.max_line_bytes", self.uploads.max_line_bytes),
            ("uploads.max_columns", u64::from(self.uploads.max_columns)),
            (
                "uploads.max_json_depth",
                u64::from(self.uploads.max_json_depth),
            ),
            (
                "uploads.inspect_timeout_secs",
                self.uploads.inspect_timeout_secs,
            ),
            (
                "uploads.max_concurrent_inspections",
                u64::from(self.uploads.max_concurrent_inspections),
            ),
            ("analyses.max_runtime_secs", self.analyses.max_runtime_secs),
            (
                "analyses.max_running_per_user",
                u64::from(self.analyses.max_running_per_user),
            ),
            (
                "analyses.max_profile_columns",
                u64::from(self.analyses.max_profile_columns),
            ),
            (
                "analyses.max_correlation_columns",
                u64::from(self.analyses.max_correlation_columns),
            ),
            ("auth.failure_window_secs", self.auth.failure_window_secs),
            (
                "auth.max_concurrent_hashes",
                u64::from(self.auth.max_concurrent_hashes),
            ),
        ] {
            if value == 0 {
                return fail(key, "must be at least 1");
            }
        }
        if self.uploads.inspect_memory_mb < 64 {
            return fail("uploads.inspect_memory_mb", "must be at least 64");
        }
        if let BlobStoreConfig::S3 { bucket, .. } = &self.blob_store
            && bucket.is_empty()
        {
            return fail("blob_store.bucket", "must name the S3 bucket");
        }
        if self.analyses.inline_result_max_kb > limits::MAX_INLINE_RESULT_KB {
            return fail(
                "analyses.inline_result_max_kb",
                &format!(
                    "is at most {}: larger results belong in the blob store",
                    limits::MAX_INLINE_RESULT_KB
                ),
            );
        }
        if self.fleet.ecs.spot_share > 100 {
            return fail("fleet.ecs.spot_share", "is a percentage: 0 to 100");
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data directory, with
    /// `database.password` put in when given.
    pub fn database_url(&self) -> SecretString {
        let url = self.database.url.expose_secret();
        if url.is_empty() {
            let path = self.data_dir.join("quarry.db");
            return SecretString::from(format!("sqlite://{}?mode=rwc", path.display()));
        }
        let password = self.database.password.expose_secret();
        match url.split_once("://") {
            Some((scheme, rest)) if !password.is_empty() => {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
                let user = user.split(':').next().unwrap_or("");
                SecretString::from(format!(
                    "{scheme}://{user}:{}@{host}{path}",
                    percent_encode(password)
                ))
            }
            _ => self.database.url.clone(),
        }
    }

    /// The directory of the local blob store.
    pub fn blob_dir(&self) -> Option<PathBuf> {
        match &self.blob_store {
            BlobStoreConfig::Local { path } if path.is_empty() => Some(self.data_dir.join("blobs")),
            BlobStoreConfig::Local { path } => Some(PathBuf::from(path)),
            BlobStoreConfig::S3 { .. } => None,
        }
    }

    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.queue.visibility_timeout_secs)
    }

    /// Where processes keep temporary files (downloads, results before they are
    /// stored, scratch for the S3 store); swept of stale entries at start-up.
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// How often a worker renews its lease and its registry row.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.worker.heartbeat_secs)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for user info.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Turns figment's error into one line naming the key, without leaking values.
fn figment_message(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        String::from("(top level)")
    } else {
        e.path.join(".")
    };
    format!("`{key}`: {}", e.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_environment_loads_and_validates() {
        for (name, _) in ENVIRONMENTS {
            let config = Config::load_from(name, None, None).unwrap();
            assert_eq!(config.environment, name);
        }
    }

    #[test]
    fn local_selects_the_embedded_adapters() {
        let config = Config::load_from("local", None, None).unwrap();
        assert!(matches!(config.blob_store, BlobStoreConfig::Local { .. }));
        assert_eq!(config.queue.kind, QueueKind::Database);
        assert_eq!(config.fleet.kind, FleetKind::Process);
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert!(
            config
                .database_url()
                .expose_secret()
                .starts_with("sqlite://")
        );
    }

    #[test]
    fn a_bad_value_in_an_extra_file_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(&file, "[fleet]\nmax_workers = 0\n").unwrap();
        let err = Config::load_from("local", Some(&file), None).unwrap_err();
        assert!(err.to_string().contains("fleet.max_workers"), "{err}");

        std::fs::write(&file, "listen = \"not an address\"\n").unwrap();
        let err = Config::load_from("local", Some(&file), None).unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn staging_and_production_select_the_aws_adapters() {
        for name in ["staging", "production"] {
            let config = Config::load_from(name, None, None).unwrap();
            assert!(matches!(config.blob_store, BlobStoreConfig::S3 { .. }));
            assert_eq!(config.queue.kind, QueueKind::Sqs);
            assert_eq!(config.fleet.kind, FleetKind::Ecs);
            assert_eq!(config.metrics.kind, MetricsKind::Cloudwatch);
            assert_eq!(config.fleet.ecs.spot_share, 100);
            // The names come from the stack; without them the fleet says which key.
            let err = config.fleet.ecs.check().unwrap_err();
            assert!(
                err.to_string().contains("QUARRY_FLEET__ECS__CLUSTER"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_separate_database_password_goes_into_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"postgres://quarry@db.internal:5432/quarry\"\n\
             password = \"p@ss/w:rd\"\n",
        )
        .unwrap();
        let config = Config::load_from("staging", Some(&file), None).unwrap();
        assert_eq!(
            config.database_url().expose_secret(),
            "postgres://quarry:p%40ss%2Fw%3Ard@db.internal:5432/quarry"
        );
    }

    #[test]
    fn ecs_lists_accept_comma_separated_strings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(
            &file,
            "[fleet.ecs]\ncluster = \"c\"\ntask_definition = \"t\"\n\
             subnets = \"subnet-a, subnet-b\"\nsecurity_groups = [\"sg-1\"]\n",
        )
        .unwrap();
        let config = Config::load_from("staging", Some(&file), None).unwrap();
        assert_eq!(config.fleet.ecs.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(config.fleet.ecs.security_groups, ["sg-1"]);
        config.fleet.ecs.check().unwrap();

        std::fs::write(&file, "[fleet.ecs]\nspot_share = 150\n").unwrap();
        let err = Config::load_from("staging", Some(&file), None).unwrap_err();
        assert!(err.to_string().contains("fleet.ecs.spot_share"), "{err}");
    }

    #[test]
    fn an_unknown_environment_is_refused_with_the_choices() {
        let err = Config::load_from("qa", None, None).unwrap_err();
        assert!(
            err.to_string().contains("local, staging or production"),
            "{err}"
        );
    }
}
