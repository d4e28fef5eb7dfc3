//! The metrics port: time series for the engineering dashboards. The embedded adapter
//! keeps samples in the database; the cloud one sends them to CloudWatch.
//!
//! The process writes through the one port its configuration chooses; the System page
//! reads through [`MetricsSources`], which adds every stack environment's CloudWatch
//! series to the process's own.

use crate::aws::cloudwatch::CloudWatchMetrics;
use crate::clock::now_ms;
use crate::config::{AwsConfig, ENVIRONMENTS, MetricsConfig, MetricsKind};
use crate::db::Db;
use crate::error::{Error, Result};
use async_trait::async_trait;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// One named value at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub value: f64,
}

/// Where samples go, and where the dashboards read them back.
#[async_trait]
pub trait Metrics: Send + Sync + fmt::Debug {
    async fn record(&self, samples: &[Sample]) -> Result<()>;
    /// The samples of one series since `since_ms`, oldest first.
    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>>;

    /// Several series at once, in the order of `queries`, each combined within the
    /// adapter's [`Metrics::resolution`] by its statistic (CloudWatch reads them in
    /// one call). Adapters that keep every sample return them as they are.
    async fn series_many(
        &self,
        queries: &[(&str, Statistic)],
        since_ms: i64,
    ) -> Result<Vec<Vec<(i64, f64)>>> {
        let mut out = Vec::with_capacity(queries.len());
        for (name, _) in queries {
            out.push(self.series(name, since_ms).await?);
        }
        Ok(out)
    }

    /// The width of the periods the adapter's series come in; zero when it returns
    /// every sample. Graphs never bucket finer than this.
    fn resolution(&self) -> Duration {
        Duration::ZERO
    }
}

/// How the samples of one period combine when the adapter stores aggregates
/// (CloudWatch's statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    Average,
    /// Gauges: queue depth, workers.
    Maximum,
    /// Per-tick counts and amounts: jobs finished, worker-seconds.
    Sum,
}

/// The embedded adapter: rows in `metric_samples`.
#[derive(Debug, Clone)]
pub struct DbMetrics {
    db: Db,
    environment: String,
}

impl DbMetrics {
    pub fn new(db: Db, environment: &str) -> Self {
        Self {
            db,
            environment: environment.to_owned(),
        }
    }
}

#[async_trait]
impl Metrics for DbMetrics {
    async fn record(&self, samples: &[Sample]) -> Result<()> {
        let at = now_ms();
        let mut tx = self.db.begin_write().await?;
        for s in samples {
            sqlx::query(
                "INSERT INTO metric_samples (name, environment, at, value) VALUES ($1, $2, $3, $4)",
            )
            .bind(s.name)
            .bind(&self.environment)
            .bind(at)
            .bind(s.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>> {
        Ok(sqlx::query_as(
            "SELECT at, value FROM metric_samples WHERE environment = $1 AND name = $2 AND at >= $3 ORDER BY at",
        )
        .bind(&self.environment)
        .bind(name)
        .bind(since_ms)
        .fetch_all(self.db.pool())
        .await?)
    }
}

/// The environment name of the running server's own metrics port on the System page.
pub const LOCAL: &str = "local";

/// A readable set of series: the running server's own port, or one stack environment's
/// CloudWatch series.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name the page and the server function use (`local`, `staging`…).
    pub name: String,
    /// Where the series come from, for the page: "database samples of `local`",
    /// "CloudWatch, eu-west-1".
    pub origin: String,
    pub metrics: Arc<dyn Metrics>,
}

/// One stack environment whose series can be read, with its adapter (and the region it
/// reads in) created on the first read.
#[derive(Debug)]
struct StackSource {
    name: String,
    /// `aws.region` of the environment's file; empty = the SDK's chain (`AWS_REGION`).
    region: String,
    reader: OnceCell<(Arc<dyn Metrics>, String)>,
}

/// The metrics the System page can show, keyed by environment name: `local` (the
/// running server's own port, whatever its adapter) first, then every stack
/// environment of `environments/*.toml` whose metrics go to CloudWatch, read with
/// `GetMetricData` for its `Environment` dimension in its region.
///
/// The CloudWatch adapters are created lazily, on the first read of each environment,
/// from the usual SDK chain ([`crate::aws::sdk_config`]), so a server that never shows
/// another environment never touches AWS; `AWS_ENDPOINT_URL` points them at an
/// emulator.
#[derive(Debug)]
pub struct MetricsSources {
    local: Source,
    stacks: Vec<StackSource>,
}

impl MetricsSources {
    /// The running server's port as `local`, and the compiled-in stack environments.
    pub fn new(local: Arc<dyn Metrics>, kind: MetricsKind, environment: &str) -> Self {
        let origin = match kind {
            MetricsKind::Database => format!("database samples of `{environment}`"),
            MetricsKind::Cloudwatch => format!("CloudWatch, this server's `{environment}`"),
        };
        Self {
            local: Source {
                name: LOCAL.to_owned(),
                origin,
                metrics: local,
            },
            stacks: stack_environments()
                .into_iter()
                .map(|(name, region)| StackSource {
                    name,
                    region,
                    reader: OnceCell::new(),
                })
                .collect(),
        }
    }

    /// Every environment name, `local` first.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.local.name.clone())
            .chain(self.stacks.iter().map(|s| s.name.clone()))
            .collect()
    }

    /// The source called `name`; unknown names are [`Error::NotFound`] with the names
    /// that exist.
    pub async fn get(&self, name: &str) -> Result<Source> {
        if name == self.local.name {
            return Ok(self.local.clone());
        }
        let Some(stack) = self.stacks.iter().find(|s| s.name == name) else {
            return Err(Error::NotFound(format!(
                "no environment `{name}`: use one of {}",
                self.names().join(", ")
            )));
        };
        let (metrics, region) = stack
            .reader
            .get_or_init(|| async {
                let sdk = crate::aws::sdk_config(&stack.region).await;
                let region = sdk
                    .region()
                    .map_or_else(|| "no region set".to_owned(), ToString::to_string);
                let metrics: Arc<dyn Metrics> = Arc::new(CloudWatchMetrics::new(&sdk, &stack.name));
                (metrics, region)
            })
            .await;
        Ok(Source {
            name: stack.name.clone(),
            origin: format!("CloudWatch, {region}"),
            metrics: metrics.clone(),
        })
    }
}

/// The stack environments compiled into the binary whose metrics go to CloudWatch,
/// with their `aws.region`, in the order of [`ENVIRONMENTS`].
fn stack_environments() -> Vec<(String, String)> {
    #[derive(Deserialize)]
    struct Part {
        #[serde(default)]
        metrics: MetricsConfig,
        #[serde(default)]
        aws: AwsConfig,
    }
    ENVIRONMENTS
        .iter()
        .filter_map(|(name, text)| {
            let part: Part = Figment::from(Toml::string(text)).extract().ok()?;
            (part.metrics.kind == MetricsKind::Cloudwatch)
                .then(|| ((*name).to_owned(), part.aws.region))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    #[async_trait]
    impl Metrics for Nothing {
        async fn record(&self, _: &[Sample]) -> Result<()> {
            Ok(())
        }
        async fn series(&self, _: &str, _: i64) -> Result<Vec<(i64, f64)>> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn sources_are_local_then_every_stack_environment() {
        let sources = MetricsSources::new(Arc::new(Nothing), MetricsKind::Database, "local");
        assert_eq!(sources.names(), ["local", "staging", "production"]);
        assert_eq!(
            sources.get("local").await.unwrap().origin,
            "database samples of `local`"
        );
        let Err(Error::NotFound(message)) = sources.get("qa").await else {
            panic!("an unknown environment is not found");
        };
        assert_eq!(
            message,
            "no environment `qa`: use one of local, staging, production"
        );
    }
}
