//! The metrics port on Amazon CloudWatch: samples go out with `PutMetricData` under the
//! namespace `Quarry` with the dimension `Environment`, and the system page reads them
//! back with `GetMetricData`: one-minute statistics (maximum of gauges, sum of per-tick
//! counts), every series of the page in one call.

use super::internal;
use crate::error::Result;
use crate::metrics::{Metrics, Sample, Statistic};
use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use std::time::{Duration, SystemTime};

/// The namespace every Quarry metric is published under.
pub use quarry_domain::metrics::NAMESPACE;
/// The dimension that separates environments.
pub const ENVIRONMENT_DIMENSION: &str = "Environment";
/// The period the series are read back at.
pub const PERIOD: Duration = Duration::from_secs(60);
/// `PutMetricData` accepts at most this many values per call.
const MAX_PER_CALL: usize = 1000;
/// `GetMetricData` accepts at most this many queries per call.
const MAX_QUERIES_PER_CALL: usize = 500;

/// Publishes to and reads from CloudWatch for one environment.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: Client,
    environment: String,
}

impl CloudWatchMetrics {
    pub fn new(sdk: &aws_config::SdkConfig, environment: &str) -> Self {
        Self {
            client: Client::new(sdk),
            environment: environment.to_owned(),
        }
    }

    /// The one-minute `stat` of `name` in this environment, as query `id`.
    fn query(&self, id: &str, name: &str, stat: Statistic) -> MetricDataQuery {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(NAMESPACE)
                            .metric_name(name)
                            .dimensions(self.dimension())
                            .build(),
                    )
                    .period(i32::try_from(PERIOD.as_secs()).unwrap_or(60))
                    .stat(match stat {
                        Statistic::Average => "Average",
                        Statistic::Maximum => "Maximum",
                        Statistic::Sum => "Sum",
                    })
                    .build(),
            )
            .return_data(true)
            .build()
    }

    fn dimension(&self) -> Dimension {
        Dimension::builder()
            .name(ENVIRONMENT_DIMENSION)
            .value(&self.environment)
            .build()
    }
}

/// The CloudWatch unit of a Quarry sample, from its name.
fn unit(name: &str) -> StandardUnit {
    if name.ends_with("_seconds") {
        StandardUnit::Seconds
    } else {
        StandardUnit::Count
    }
}

#[async_trait]
impl Metrics for CloudWatchMetrics {
    async fn record(&self, samples: &[Sample]) -> Result<()> {
        let now = DateTime::from(SystemTime::now());
        for batch in samples.chunks(MAX_PER_CALL) {
            let data: Vec<MetricDatum> = batch
                .iter()
                .map(|s| {
                    MetricDatum::builder()
                        .metric_name(s.name)
                        .dimensions(self.dimension())
                        .timestamp(now)
                        .value(s.value)
                        .unit(unit(s.name))
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(NAMESPACE)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| internal("publishing metrics to CloudWatch", e))?;
        }
        Ok(())
    }

    /// One-minute averages.
    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>> {
        let mut all = self
            .series_many(&[(name, Statistic::Average)], since_ms)
            .await?;
        Ok(all.pop().unwrap_or_default())
    }

    fn resolution(&self) -> Duration {
        PERIOD
    }

    async fn series_many(
        &self,
        names: &[(&str, Statistic)],
        since_ms: i64,
    ) -> Result<Vec<Vec<(i64, f64)>>> {
        let start = DateTime::from_millis(since_ms);
        let end = DateTime::from(SystemTime::now() + PERIOD);
        let mut out = vec![Vec::new(); names.len()];
        for (chunk, batch) in names.chunks(MAX_QUERIES_PER_CALL).enumerate() {
            let first = chunk * MAX_QUERIES_PER_CALL;
            let queries: Vec<MetricDataQuery> = batch
                .iter()
                .enumerate()
                .map(|(i, (name, stat))| self.query(&format!("m{}", first + i), name, *stat))
                .collect();
            let mut next: Option<String> = None;
            loop {
                let page = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries.clone()))
                    .start_time(start)
                    .end_time(end)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| internal("reading metrics from CloudWatch", e))?;
                for result in page.metric_data_results() {
                    let Some(points) = result
                        .id()
                        .and_then(|id| id.strip_prefix('m'))
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| out.get_mut(i))
                    else {
                        continue;
                    };
                    for (at, value) in result.timestamps().iter().zip(result.values()) {
                        if let Ok(ms) = at.to_millis() {
                            points.push((ms, *value));
                        }
                    }
                }
                match page.next_token {
                    Some(token) if !token.is_empty() => next = Some(token),
                    _ => break,
                }
            }
        }
        for points in &mut out {
            points.sort_by_key(|(at, _)| *at);
        }
        Ok(out)
    }
}
