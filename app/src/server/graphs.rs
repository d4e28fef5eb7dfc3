//! The system page's graphs, read from the metrics port (the database on the embedded
//! default; CloudWatch in the cloud) and bucketed for the chosen time range.

use super::error::ApiResult;
use super::state::Services;
use crate::ui::charts::Series;
use crate::ui::server_fns::{Graph, SystemCharts};
use quarry_core::clock::now_ms;

/// How the samples of one series combine within a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Combine {
    /// Gauges: the highest value in the bucket.
    Max,
    /// Counts per tick, shown per minute.
    PerMinute,
    /// Amounts per tick, summed.
    Sum,
}

/// One line of a graph: its name, the metric it reads, how samples combine.
type Line = (&'static str, &'static str, Combine);

/// The graphs: (title, unit, lines).
const GRAPHS: &[(&str, &str, &[Line])] = &[
    (
        "Queue depth",
        "jobs",
        &[
            ("waiting", "queue_visible", Combine::Max),
            ("in flight", "queue_in_flight", Combine::Max),
            ("dead", "queue_dead", Combine::Max),
        ],
    ),
    (
        "Oldest queued job",
        "seconds",
        &[("age", "oldest_job_age_seconds", Combine::Max)],
    ),
    (
        "Workers",
        "workers",
        &[
            ("running", "workers_running", Combine::Max),
            ("starting", "workers_starting", Combine::Max),
        ],
    ),
    (
        "Jobs finished",
        "per minute",
        &[
            ("succeeded", "jobs_succeeded", Combine::PerMinute),
            ("failed", "jobs_failed", Combine::PerMinute),
        ],
    ),
    (
        "Job duration",
        "seconds",
        &[
            ("p50", "job_duration_p50_seconds", Combine::Max),
            ("p95", "job_duration_p95_seconds", Combine::Max),
        ],
    ),
    (
        "Worker time used",
        "worker-seconds",
        &[("used", "worker_seconds", Combine::Sum)],
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

/// Groups samples into buckets of `width` ms from `from`, combining as asked. Points
/// sit at the bucket's start; empty buckets have no point.
fn bucket(samples: &[(i64, f64)], from: i64, width: i64, combine: Combine) -> Vec<(i64, f64)> {
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

/// The system page's graphs over the last `minutes` (clamped to 15 minutes..1 day).
pub async fn system_graphs(services: &Services, minutes: u32) -> ApiResult<SystemCharts> {
    let minutes = minutes.clamp(15, 1440);
    let to = now_ms();
    let width = bucket_ms(minutes);
    let from = (to - i64::from(minutes) * 60_000) / width * width;
    let mut graphs = Vec::with_capacity(GRAPHS.len());
    for (title, unit, lines) in GRAPHS {
        let mut series = Vec::with_capacity(lines.len());
        for (name, metric, combine) in *lines {
            let samples = services.metrics.series(metric, from).await?;
            series.push(Series {
                name: (*name).to_owned(),
                points: bucket(&samples, from, width, *combine),
            });
        }
        graphs.push(Graph {
            title: (*title).to_owned(),
            unit: (*unit).to_owned(),
            series,
        });
    }
    Ok(SystemCharts {
        environment: services.config.environment.clone(),
        from,
        to,
        graphs,
    })
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
    fn ranges_get_30_to_100_points() {
        for minutes in [15, 60, 1440] {
            let points = i64::from(minutes) * 60_000 / bucket_ms(minutes);
            assert!((30..=100).contains(&points), "{minutes}: {points}");
        }
    }
}
