//! One environment's timeline: its deploys, promotions and rollbacks as markers on the
//! same time axis as its job health (throughput, failure rate, p95 duration) from the
//! environment's metrics port, so an operator sees at a glance whether a release
//! changed how jobs fare.
//!
//! The environment this server runs as reads this server's own metrics (the database
//! samples on the embedded default, CloudWatch in the cloud); every other stack
//! environment reads its CloudWatch series. A source that cannot be read leaves the
//! series empty with a message, the markers still show.

use super::error::ApiResult;
use super::graphs::{Combine, READ_TIMEOUT, bucket, bucket_width, unreadable};
use super::state::Services;
use crate::control::reads;
use crate::ui::charts::{Marker, Series};
use crate::ui::control_fns::Timeline;
use crate::ui::server_fns::Graph;
use quarry_core::clock::{now_ms, parse_rfc3339};
use quarry_domain::control::ReleaseView;
use quarry_domain::metrics as metric;

/// The releases of the range as markers.
pub fn markers(releases: &[ReleaseView], from: i64, to: i64) -> Vec<Marker> {
    let mut markers: Vec<Marker> = releases
        .iter()
        .filter_map(|r| {
            let at = parse_rfc3339(&r.started_at)?;
            (from..=to).contains(&at).then(|| Marker {
                at,
                kind: r.kind.clone(),
                label: format!(
                    "{} {} · {} by {}",
                    r.kind,
                    crate::ui::operations::short_image(&r.artifact),
                    r.outcome.replace('_', " "),
                    r.deployed_by
                ),
            })
        })
        .collect();
    markers.sort_by_key(|m| m.at);
    markers
}

/// Failed jobs as a share of the finished, per bucket; buckets where nothing
/// finished have no point.
pub fn failure_rate(succeeded: &[(i64, f64)], failed: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut times: Vec<i64> = succeeded.iter().chain(failed).map(|p| p.0).collect();
    times.sort_unstable();
    times.dedup();
    let at = |line: &[(i64, f64)], t: i64| line.iter().find(|p| p.0 == t).map_or(0.0, |p| p.1);
    times
        .into_iter()
        .filter_map(|t| {
            let (ok, bad) = (at(succeeded, t), at(failed, t));
            (ok + bad > 0.0).then(|| (t, 100.0 * bad / (ok + bad)))
        })
        .collect()
}

/// The timeline of the stack environment `name` over the last `minutes` (clamped to
/// 15 minutes..1 day). An unknown environment is not found.
pub async fn environment_timeline(
    services: &Services,
    name: &str,
    minutes: u32,
) -> ApiResult<Timeline> {
    let releases = reads::releases(&services.control, name).await?;
    // This server's own environment reads its own metrics port.
    let source_name = if name == services.config.environment {
        quarry_core::metrics::LOCAL
    } else {
        name
    };
    let source = services.metrics_sources.get(source_name).await?;
    let minutes = minutes.clamp(15, 1440);
    let to = now_ms();
    let width = bucket_width(minutes, source.metrics.resolution());
    let from = (to - i64::from(minutes) * 60_000) / width * width;
    let wanted = [
        (metric::JOBS_SUCCEEDED, Combine::PerMinute),
        (metric::JOBS_FAILED, Combine::PerMinute),
        (metric::JOB_DURATION_P95_SECONDS, Combine::Max),
    ];
    let asked: Vec<_> = wanted.iter().map(|(m, c)| (*m, c.statistic())).collect();
    let read = tokio::time::timeout(READ_TIMEOUT, source.metrics.series_many(&asked, from));
    let (samples, failure) = match read.await {
        Ok(Ok(samples)) => (samples, None),
        Ok(Err(e)) => {
            tracing::warn!(environment = %name, origin = %source.origin,
                error = %format!("{e:#}"), "reading the timeline failed");
            (Vec::new(), Some("could not be read"))
        }
        Err(_) => (Vec::new(), Some("did not answer in time")),
    };
    let mut lines = wanted
        .iter()
        .zip(samples.into_iter().chain(std::iter::repeat_with(Vec::new)));
    let mut next = || {
        lines
            .next()
            .map(|((_, combine), line)| bucket(&line, from, width, *combine))
            .unwrap_or_default()
    };
    let (succeeded, failed, p95) = (next(), next(), next());
    let series = |name: &str, points: Vec<(i64, f64)>| Series {
        name: name.to_owned(),
        points,
    };
    let graphs = vec![
        Graph {
            title: "Throughput".to_owned(),
            unit: "jobs per minute".to_owned(),
            series: vec![
                series("succeeded", succeeded.clone()),
                series("failed", failed.clone()),
            ],
        },
        Graph {
            title: "Failure rate".to_owned(),
            unit: "% of finished jobs".to_owned(),
            series: vec![series("failed", failure_rate(&succeeded, &failed))],
        },
        Graph {
            title: "Job duration".to_owned(),
            unit: "seconds".to_owned(),
            series: vec![series("p95", p95)],
        },
    ];
    Ok(Timeline {
        unavailable: failure.map(|what| unreadable(name, &source.origin, what)),
        origin: source.origin,
        from,
        to,
        graphs,
        markers: markers(&releases, from, to),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_rate_is_failed_over_finished_per_bucket() {
        let succeeded = [(0, 3.0), (60_000, 0.0), (120_000, 1.0)];
        let failed = [(0, 1.0), (180_000, 2.0)];
        assert_eq!(
            failure_rate(&succeeded, &failed),
            vec![(0, 25.0), (120_000, 0.0), (180_000, 100.0)],
            "a bucket where nothing finished has no point"
        );
    }
}
