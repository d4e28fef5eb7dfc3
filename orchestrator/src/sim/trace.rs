//! A job trace: `arrival,duration[,user]` per line, in seconds (decimals allowed), the
//! arrival counted from Monday 00:00 UTC of the trace's week (so the pre-scaler sees
//! weekdays and hours). A header line is optional; `#` starts a comment line.
//!
//! A trace is input like any other: its size, its job count, its span and each
//! duration are bounded before the simulation starts, and a bad line is refused with
//! its number and what to fix.

use std::fmt;

/// The largest trace file read.
pub const MAX_BYTES: u64 = 64 << 20;
/// The most jobs in one trace.
pub const MAX_JOBS: usize = 1_000_000;
/// The latest arrival: 28 days after the trace's start.
pub const MAX_SPAN_SECS: f64 = 28.0 * 86_400.0;
/// The longest job: one day.
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// One job of a trace, in whole seconds (durations at least one second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceJob {
    pub arrival: u64,
    pub duration: u64,
    pub user: Option<String>,
}

/// The jobs of a trace, by arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub jobs: Vec<TraceJob>,
}

/// Why a trace was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError(pub String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// Reads a trace file, refusing one over [`MAX_BYTES`] before reading it.
    pub fn read(path: &std::path::Path) -> Result<Self, TraceError> {
        let size = std::fs::metadata(path)
            .map_err(|e| TraceError(format!("{}: {e}", path.display())))?
            .len();
        if size > MAX_BYTES {
            return Err(TraceError(format!(
                "{}: {size} bytes; a trace may have at most {MAX_BYTES} bytes",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| TraceError(format!("{}: {e} (a trace is UTF-8 text)", path.display())))?;
        Self::parse(&text)
    }

    /// Parses a trace's text.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut jobs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_start_matches('\u{feff}').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if jobs.is_empty() && fields[0].parse::<f64>().is_err() && fields[0].contains("arrival")
            {
                continue; // the header
            }
            if !(2..=3).contains(&fields.len()) {
                return Err(TraceError(format!(
                    "line {n}: {} fields; a trace line is arrival,duration[,user] in seconds",
                    fields.len()
                )));
            }
            let number = |what: &str, s: &str, max: f64| -> Result<f64, TraceError> {
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
                    _ => Err(TraceError(format!(
                        "line {n}: {what} {s:?} is not a number of seconds from 0 to {max}"
                    ))),
                }
            };
            let arrival = number("arrival", fields[0], MAX_SPAN_SECS)?;
            let duration = number("duration", fields[1], MAX_DURATION_SECS)?;
            let user = fields
                .get(2)
                .filter(|u| !u.is_empty())
                .map(|u| (*u).to_owned());
            if jobs.len() == MAX_JOBS {
                return Err(TraceError(format!(
                    "line {n}: a trace may have at most {MAX_JOBS} jobs"
                )));
            }
            jobs.push(TraceJob {
                arrival: arrival.round() as u64,
                duration: (duration.round() as u64).max(1),
                user,
            });
        }
        if jobs.is_empty() {
            return Err(TraceError(
                "the trace has no jobs; each line is arrival,duration[,user] in seconds".into(),
            ));
        }
        jobs.sort_by_key(|j| j.arrival);
        Ok(Self { jobs })
    }

    /// Job-seconds of work in the trace.
    pub fn work_secs(&self) -> u64 {
        self.jobs.iter().map(|j| j.duration).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_reads_with_or_without_header_users_and_comments() {
        let t = Trace::parse("\u{feff}arrival,duration,user\n# a comment\n10,60,ana\n2.4,0.2\n\n")
            .unwrap();
        assert_eq!(
            t.jobs,
            vec![
                TraceJob {
                    arrival: 2,
                    duration: 1,
                    user: None
                },
                TraceJob {
                    arrival: 10,
                    duration: 60,
                    user: Some("ana".into())
                },
            ],
            "sorted by arrival, durations at least a second"
        );
        assert_eq!(t.work_secs(), 61);
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_and_what_to_fix() {
        for (text, says) in [
            ("1,2\nx,3\n", "line 2: arrival \"x\""),
            ("1\n", "line 1: 1 fields"),
            ("1,-5\n", "line 1: duration \"-5\""),
            ("1,NaN\n", "duration \"NaN\""),
            ("99999999,5\n", "arrival \"99999999\""),
            (
                "1,100000\n",
                "duration \"100000\" is not a number of seconds from 0 to 86400",
            ),
            ("arrival,duration\n", "no jobs"),
        ] {
            let e = Trace::parse(text).unwrap_err();
            assert!(e.0.contains(says), "{text:?}: {e}");
        }
    }
}
