//! Finding ISO dates and datetimes in text columns of formats without a date type
//! (NDJSON), the way polars' `try_parse_dates` does for CSV.

use polars::prelude::*;
use quarry_domain::IngestOptions;
use std::collections::BTreeMap;

/// Values sampled per column.
const SAMPLE: u32 = 1000;

fn digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DD`.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && digits(&b[..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..])
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|±HH[:]MM]`.
pub fn is_iso_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 16 || !is_iso_date(&s[..10]) || !matches!(b[10], b'T' | b' ') {
        return false;
    }
    let rest = &s[11..];
    let (clock, zone) = match rest.find(['Z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let zone_ok = match zone.as_bytes() {
        [] | [b'Z'] => true,
        [b'+' | b'-', z @ ..] => {
            let z: Vec<u8> = z.iter().copied().filter(|c| *c != b':').collect();
            z.len() == 4 && digits(&z)
        }
        _ => false,
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, "0"));
    let parts: Vec<&str> = hms.split(':').collect();
    zone_ok
        && digits(fraction.as_bytes())
        && matches!(parts.len(), 2 | 3)
        && parts.iter().all(|p| p.len() == 2 && digits(p.as_bytes()))
}

/// The text columns whose sampled values are all ISO dates (`date`) or all ISO
/// datetimes (`datetime`), leaving out those the caller typed.
pub fn detect(lf: LazyFrame, options: &IngestOptions) -> BTreeMap<String, String> {
    let mut lf = lf;
    let Ok(schema) = lf.collect_schema() else {
        return BTreeMap::new();
    };
    let text: Vec<PlSmallStr> = schema
        .iter()
        .filter(|(name, dtype)| {
            **dtype == DataType::String && !options.schema.contains_key(name.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if text.is_empty() {
        return BTreeMap::new();
    }
    let Ok(sample) = lf
        .select(text.iter().map(|n| col(n.clone())).collect::<Vec<_>>())
        .limit(SAMPLE)
        .collect()
    else {
        return BTreeMap::new();
    };
    let mut found = BTreeMap::new();
    for name in text {
        let Ok(values) = sample.column(name.as_str()).and_then(|c| c.str().cloned()) else {
            continue;
        };
        let present: Vec<&str> = values.iter().flatten().collect();
        if present.is_empty() {
            continue;
        }
        let kind = if present.iter().all(|v| is_iso_date(v)) {
            "date"
        } else if present.iter().all(|v| is_iso_datetime(v)) {
            "datetime"
        } else {
            continue;
        };
        found.insert(name.to_string(), kind.to_owned());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_shapes_are_recognised_and_near_misses_are_not() {
        for yes in [
            "2013-01-01T10:00:00Z",
            "2013-01-01 10:00",
            "2013-01-01T10:00:00.123+01:00",
            "2013-01-01T10:00:00-0500",
        ] {
            assert!(is_iso_datetime(yes), "{yes}");
        }
        for no in [
            "2013-01-01",
            "2013-01-01T10",
            "2013-01-01X10:00",
            "2013-01-01T10:00:00+1",
            "x013-01-01T10:00",
        ] {
            assert!(!is_iso_datetime(no), "{no}");
        }
        assert!(is_iso_date("2024-02-29"));
        assert!(!is_iso_date("2024-2-29") && !is_iso_date("20240229"));
    }
}
