//! The system page's graphs for one environment, bucketed for the chosen time range:
//! `local` reads the server's own metrics port (the database on the embedded default;
//! CloudWatch in the cloud), every stack environment its CloudWatch series (see
//! [`quarry_core::metrics::MetricsSources`]). The graphs are the same for all.
//!
//! A source that cannot be read (CloudWatch unreachable, no credentials, a timeout)
//! is not an error of the page: the graphs come back empty with a message saying
//! what to check, and the detail goes to the log.

use super::error::ApiResult;
use super::state::Services;
use crate::ui::charts::Series;
use crate::ui::server_fns::{Graph, SystemCharts};
use quarry_core::clock::now_ms;
use quarry_core::metrics::Statistic;
use quarry_domain::metrics as metric;
use std::time::Duration;

/// How long one environment's series may take to read before the page gives up on it.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the samples of one series combine within a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Combine {
    /// Gauges: the highest value in the bucket.
    Max,
    /// Counts per tick, shown per minute.
    PerMinute,
    /// Amounts per tick, summed.
    Sum,
}

impl Combine {
    /// The statistic an aggregating adapter (CloudWatch) combines a period with, so
    /// that its periods combine again in buckets to the same values as raw samples.
    pub(crate) fn statistic(self) -> Statistic {
        match self {
            Combine::Max => Statistic::Maximum,
            Combine::PerMinute | Combine::Sum => Statistic::Sum,
        }
    }
}

/// One line of a graph: its name, the metric it reads, how samples combine.
type Line = (&'static str, &'static str, Combine);

/// The graphs: (title, unit, lines).
const GRAPHS: &[(&str, &str, &[Line])] = &[
    (
        "Queue depth",
        "jobs",
        &[
            ("waiting", metric::QUEUE_VISIBLE, Combine::Max),
            ("in flight", metric::QUEUE_IN_FLIGHT, Combine::Max),
            ("dead", metric::QUEUE_DEAD, Combine::Max),
        ],
    ),
    (
        "Oldest queued job",
        "seconds",
        &[("age", metric::OLDEST_JOB_AGE_SECONDS, Combine::Max)],
    ),
    (
        "Workers",
        "workers",
        &[
            ("running", metric::WORKERS_RUNNING, Combine::Max),
            ("starting", metric::WORKERS_STARTING, Combine::Max),
        ],
    ),
    (
        "Jobs finished",
        "per minute",
        &[
            ("succeeded", metric::JOBS_SUCCEEDED, Combine::PerMinute),
            ("failed", metric::JOBS_FAILED, Combine::PerMinute),
        ],
    ),
    (
        "Job duration",
        "seconds",
        &[
            ("p50", metric::JOB_DURATION_P50_SECONDS, Combine::Max),
            ("p95", metric::JOB_DURATION_P95_SECONDS, Combine::Max),
        ],
    ),
    (
        "Worker time used",
        "worker-seconds",
        &[("used", metric::WORKER_SECONDS, Combine::Sum)],
    ),
];

/// The bucket width for a range: about 30 to 100 points per line.
fn bucket_ms(minutes: u32) -> i64 {
    match minutes {
        0..=15 => 30_000,
        16..=60 => 60_000,
        _ => 15 * 60_000,
    }
}

/// The bucket width for a range from a source whose series come in periods of
/// `resolution`: never finer than those, or a period's count would read as a count
/// per half minute.
pub(crate) fn bucket_width(minutes: u32, resolution: Duration) -> i64 {
    let resolution = i64::try_from(resolution.as_millis()).unwrap_or(i64::MAX);
    bucket_ms(minutes).max(resolution)
}

/// Groups samples into buckets of `width` ms from `from`, combining as asked. Points
/// sit at the bucket's start; empty buckets have no point.
pub(crate) fn bucket(
    samples: &[(i64, f64)],
    from: i64,
    width: i64,
    combine: Combine,
) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for &(at, value) in samples {
        if at < from || !value.is_finite() {
            continue;
        }
        let start = from + (at - from) / width * width;
        match out.last_mut() {
            Some((t, v)) if *t == start => match combine {
                Combine::Max => *v = v.max(value),
                Combine::PerMinute | Combine::Sum => *v += value,
            },
            _ => out.push((start, value)),
        }
    }
    if combine == Combine::PerMinute {
        let minutes = width as f64 / 60_000.0;
        for (_, v) in &mut out {
            *v /= minutes;
        }
    }
    out
}

/// The system page's graphs of `environment` (`local` when `None`) over the last
/// `minutes` (clamped to 15 minutes..1 day). An unknown environment is not found.
#[tracing::instrument(skip_all, fields(environment))]
pub async fn system_graphs(
    services: &Services,
    minutes: u32,
    environment: Option<&str>,
) -> ApiResult<SystemCharts> {
    let sources = &services.metrics_sources;
    let environment = environment
        .filter(|e| !e.is_empty())
        .unwrap_or(quarry_core::metrics::LOCAL);
    tracing::Span::current().record("environment", environment);
    let source = sources.get(environment).await?;
    let minutes = minutes.clamp(15, 1440);
    let to = now_ms();
    let width = bucket_width(minutes, source.metrics.resolution());
    let from = (to - i64::from(minutes) * 60_000) / width * width;
    let metrics: Vec<(&str, Statistic)> = GRAPHS
        .iter()
        .flat_map(|(_, _, lines)| lines.iter().map(|(_, metric, c)| (*metric, c.statistic())))
        .collect();
    let read = tokio::time::timeout(READ_TIMEOUT, source.metrics.series_many(&metrics, from));
    let (samples, failure) = match read.await {
        Ok(Ok(samples)) => (samples, None),
        Ok(Err(e)) => {
            tracing::warn!(environment = %source.name, origin = %source.origin,
                error = %format!("{e:#}"), "reading the system graphs failed");
            (Vec::new(), Some("could not be read"))
        }
        Err(_) => {
            tracing::warn!(environment = %source.name, origin = %source.origin,
                timeout_secs = READ_TIMEOUT.as_secs(), "reading the system graphs timed out");
            (Vec::new(), Some("did not answer in time"))
        }
    };
    let unavailable = failure.map(|what| unreadable(&source.name, &source.origin, what));
    let mut samples = samples.into_iter();
    let mut graphs = Vec::with_capacity(GRAPHS.len());
    for (title, unit, lines) in GRAPHS {
        let mut series = Vec::with_capacity(lines.len());
        for (name, _, combine) in *lines {
            let line = samples.next().unwrap_or_default();
            series.push(Series {
                name: (*name).to_owned(),
                points: bucket(&line, from, width, *combine),
            });
        }
        graphs.push(Graph {
            title: (*title).to_owned(),
            unit: (*unit).to_owned(),
            series,
        });
    }
    Ok(SystemCharts {
        environment: source.name,
        environments: sources.names(),
        origin: source.origin,
        unavailable,
        from,
        to,
        graphs,
    })
}

/// The page's message when a source cannot be read: what failed and what to check.
pub(crate) fn unreadable(environment: &str, origin: &str, what: &str) -> String {
    let check = if origin.starts_with("CloudWatch") {
        "check this server's AWS credentials and region (or AWS_ENDPOINT_URL), and that \
         it may call cloudwatch:GetMetricData"
    } else {
        "see the server's log"
    };
    format!("The metrics of `{environment}` ({origin}) {what}: {check}. The graphs are empty.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_combine_by_kind() {
        let samples = [
            (1_000, 2.0),
            (20_000, 5.0),
            (61_000, 1.0),
            (62_000, 3.0),
            (500, 9.0),
        ];
        assert_eq!(
            bucket(&samples, 1_000, 60_000, Combine::Max),
            vec![(1_000, 5.0), (61_000, 3.0)],
            "the sample before `from` is left out"
        );
        assert_eq!(
            bucket(&samples, 1_000, 60_000, Combine::Sum),
            vec![(1_000, 7.0), (61_000, 4.0)]
        );
        assert_eq!(
            bucket(&samples, 1_000, 30_000, Combine::PerMinute),
            vec![(1_000, 14.0), (61_000, 8.0)],
            "7 in half a minute is 14 a minute"
        );
    }

    #[test]
    fn one_minute_periods_are_never_split_into_half_minutes() {
        let cloudwatch = Duration::from_secs(60);
        assert_eq!(bucket_width(15, Duration::ZERO), 30_000);
        assert_eq!(bucket_width(15, cloudwatch), 60_000);
        assert_eq!(bucket_width(1440, cloudwatch), 15 * 60_000);
        // A one-minute sum of 6 jobs is 6 a minute, not 12.
        let width = bucket_width(15, cloudwatch);
        assert_eq!(
            bucket(&[(60_000, 6.0)], 0, width, Combine::PerMinute),
            vec![(60_000, 6.0)]
        );
    }

    #[test]
    fn ranges_get_30_to_100_points() {
        for minutes in [15, 60, 1440] {
            let points = i64::from(minutes) * 60_000 / bucket_ms(minutes);
            assert!((30..=100).contains(&points), "{minutes}: {points}");
        }
    }
}
