//! The metrics port on Amazon CloudWatch: samples go out with `PutMetricData` under the
//! namespace `Quarry` with the dimension `Environment`, and the system page reads them
//! back with `GetMetricData` (one-minute averages).

use super::internal;
use crate::error::Result;
use crate::metrics::{Metrics, Sample};
use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use std::time::{Duration, SystemTime};

/// The namespace every Quarry metric is published under.
pub const NAMESPACE: &str = "Quarry";
/// The dimension that separates environments.
pub const ENVIRONMENT_DIMENSION: &str = "Environment";
/// The period the series are read back at.
pub const PERIOD: Duration = Duration::from_secs(60);
/// `PutMetricData` accepts at most this many values per call.
const MAX_PER_CALL: usize = 1000;

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

    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>> {
        let query = MetricDataQuery::builder()
            .id("m0")
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
                    .stat("Average")
                    .build(),
            )
            .return_data(true)
            .build();
        let start = DateTime::from_millis(since_ms);
        let end = DateTime::from(SystemTime::now() + PERIOD);
        let mut points = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(start)
                .end_time(end)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| internal("reading metrics from CloudWatch", e))?;
            for result in out.metric_data_results() {
                for (at, value) in result.timestamps().iter().zip(result.values()) {
                    if let Ok(ms) = at.to_millis() {
                        points.push((ms, *value));
                    }
                }
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        points.sort_by_key(|(at, _)| *at);
        Ok(points)
    }
}
