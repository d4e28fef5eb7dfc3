//! Comparing two results the way a promotion gate must: the same columns with the
//! same types, and the same rows in canonical order, floats equal within a tolerance
//! rather than bitwise (two engines may sum in another order). The comparison says
//! where results differ: the first differing rows, side by side.
//!
//! Canonical order sorts by every column, non-float columns first (in their order),
//! then the float columns, nulls last. Rows whose non-float values are equal and
//! whose floats differ only within the tolerance therefore sort alike.

use super::json;
use polars::prelude::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;

pub use quarry_domain::gate::{Comparison, RowDiff, Tolerance};

/// The largest result compared: both are read whole into memory, in the server.
pub const MAX_COMPARED_BYTES: u64 = 64 << 20;
/// The most cells (rows × columns) of a result compared.
pub const MAX_COMPARED_CELLS: u64 = 5_000_000;

/// Refuses a result too large to compare (stored `bytes`, `rows` × `columns`), saying
/// which bound it passes.
pub fn comparable(bytes: u64, rows: u64, columns: usize) -> Result<(), String> {
    let cells = rows.saturating_mul(columns.max(1) as u64);
    if bytes > MAX_COMPARED_BYTES {
        return Err(format!(
            "the result is {bytes} bytes, over the {MAX_COMPARED_BYTES} a comparison reads: \
             compare a smaller result (aggregate or filter first)"
        ));
    }
    if cells > MAX_COMPARED_CELLS {
        return Err(format!(
            "the result has {cells} cells ({rows} rows × {columns} columns), over the \
             {MAX_COMPARED_CELLS} a comparison reads: compare a smaller result (aggregate or \
             filter first)"
        ));
    }
    Ok(())
}

/// Compares two result files (Parquet), keeping the first `keep` differing rows.
pub fn compare_files(
    expected: &Path,
    actual: &Path,
    tolerance: Tolerance,
    keep: usize,
) -> PolarsResult<Comparison> {
    let read = |p: &Path| ParquetReader::new(File::open(p)?).finish();
    compare(&read(expected)?, &read(actual)?, tolerance, keep)
}

fn is_float(dtype: &DataType) -> bool {
    matches!(dtype, DataType::Float32 | DataType::Float64)
}

/// The frame in canonical order.
fn canonical(df: &DataFrame) -> PolarsResult<DataFrame> {
    if df.width() == 0 || df.height() < 2 {
        return Ok(df.clone());
    }
    let schema = df.schema();
    let mut by: Vec<PlSmallStr> = schema
        .iter()
        .filter(|(_, t)| !is_float(t))
        .map(|(n, _)| n.clone())
        .collect();
    by.extend(
        schema
            .iter()
            .filter(|(_, t)| is_float(t))
            .map(|(n, _)| n.clone()),
    );
    df.sort(
        by,
        SortMultipleOptions::default()
            .with_nulls_last(true)
            .with_maintain_order(true),
    )
}

fn cells_equal(a: &AnyValue<'_>, b: &AnyValue<'_>, tolerance: Tolerance) -> bool {
    match (a, b) {
        (
            AnyValue::Float32(_) | AnyValue::Float64(_),
            AnyValue::Float32(_) | AnyValue::Float64(_),
        ) => match (a.extract::<f64>(), b.extract::<f64>()) {
            (Some(x), Some(y)) => tolerance.equal(x, y),
            _ => false,
        },
        _ => a == b,
    }
}

/// Compares two results; see the module's documentation.
pub fn compare(
    expected: &DataFrame,
    actual: &DataFrame,
    tolerance: Tolerance,
    keep: usize,
) -> PolarsResult<Comparison> {
    let (expected_rows, actual_rows) = (expected.height() as u64, actual.height() as u64);
    let shape = |df: &DataFrame| -> Vec<(String, String)> {
        df.schema()
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    };
    let (want, have) = (shape(expected), shape(actual));
    if want != have {
        return Ok(Comparison {
            identical: false,
            columns: want.iter().map(|(n, _)| n.clone()).collect(),
            tolerance,
            schema_difference: Some(format!(
                "expected columns {want:?}, the candidate gave {have:?}"
            )),
            expected_rows,
            actual_rows,
            differing_rows: expected_rows.max(actual_rows),
            first_differences: Vec::new(),
        });
    }
    let (e, a) = (canonical(expected)?, canonical(actual)?);
    let row_json = |df: &DataFrame, i: usize| -> PolarsResult<Vec<Value>> {
        Ok(df.get_row(i)?.0.iter().map(json).collect())
    };
    let mut differing_rows = 0_u64;
    let mut first_differences = Vec::new();
    for i in 0..e.height().max(a.height()) {
        let same = i < e.height()
            && i < a.height()
            && e.get_row(i)?
                .0
                .iter()
                .zip(a.get_row(i)?.0.iter())
                .all(|(x, y)| cells_equal(x, y, tolerance));
        if same {
            continue;
        }
        differing_rows += 1;
        if first_differences.len() < keep {
            first_differences.push(RowDiff {
                row: i as u64,
                expected: (i < e.height()).then(|| row_json(&e, i)).transpose()?,
                actual: (i < a.height()).then(|| row_json(&a, i)).transpose()?,
            });
        }
    }
    Ok(Comparison {
        identical: differing_rows == 0,
        columns: want.into_iter().map(|(n, _)| n).collect(),
        tolerance,
        schema_difference: None,
        expected_rows,
        actual_rows,
        differing_rows,
        first_differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_past_either_bound_are_not_compared() {
        assert!(comparable(1 << 20, 1000, 3).is_ok());
        let big = comparable(MAX_COMPARED_BYTES + 1, 10, 1).unwrap_err();
        assert!(big.contains("bytes"), "{big}");
        let wide = comparable(1 << 20, 2_000_000, 3).unwrap_err();
        assert!(wide.contains("6000000 cells"), "{wide}");
        assert!(
            comparable(1 << 20, MAX_COMPARED_CELLS, 0).is_ok(),
            "no columns counts as one"
        );
    }

    fn frame(keys: &[&str], means: &[f64], counts: &[i64]) -> DataFrame {
        df!("category" => keys, "amount_mean" => means, "amount_count" => counts).unwrap()
    }

    #[test]
    fn the_same_rows_in_another_order_with_rounding_noise_are_identical() {
        let expected = frame(&["a", "b", "c"], &[0.1 + 0.2, 2.5, f64::NAN], &[3, 4, 5]);
        // Another summation order: 0.3 instead of 0.1 + 0.2 (they differ in the last bit).
        assert_ne!(0.3_f64.to_bits(), (0.1_f64 + 0.2).to_bits());
        let actual = frame(&["c", "a", "b"], &[f64::NAN, 0.3, 2.5], &[5, 3, 4]);
        let c = compare(&expected, &actual, Tolerance::default(), 5).unwrap();
        assert!(c.identical, "{c:?}");
        assert_eq!(
            (c.expected_rows, c.actual_rows, c.differing_rows),
            (3, 3, 0)
        );
    }

    #[test]
    fn a_perturbed_aggregate_is_a_difference_shown_side_by_side() {
        let expected = frame(&["a", "b", "c"], &[1.0, 2.0, 3.0], &[3, 4, 5]);
        let actual = frame(
            &["a", "b", "c"],
            &[1.0, 2.0 * (1.0 + 1e-6), 3.0],
            &[3, 4, 5],
        );
        let c = compare(&expected, &actual, Tolerance::default(), 5).unwrap();
        assert!(!c.identical);
        assert_eq!(c.differing_rows, 1);
        let d = &c.first_differences[0];
        assert_eq!(d.row, 1);
        assert_eq!(d.expected.as_ref().unwrap()[1], serde_json::json!(2.0));
        assert_eq!(d.actual.as_ref().unwrap()[1], serde_json::json!(2.000002));
        // A looser tolerance accepts it.
        let loose = Tolerance {
            absolute: 0.0,
            relative: 1e-5,
        };
        assert!(compare(&expected, &actual, loose, 5).unwrap().identical);
    }

    #[test]
    fn missing_rows_columns_and_types_are_differences() {
        let expected = frame(&["a", "b", "c"], &[1.0, 2.0, 3.0], &[3, 4, 5]);
        let shorter = frame(&["a", "b"], &[1.0, 2.0], &[3, 4]);
        let c = compare(&expected, &shorter, Tolerance::default(), 1).unwrap();
        assert_eq!((c.differing_rows, c.first_differences.len()), (1, 1));
        assert_eq!(c.first_differences[0].actual, None, "{c:?}");
        let retyped = df!("category" => ["a", "b", "c"], "amount_mean" => [1.0, 2.0, 3.0],
            "amount_count" => [3.0, 4.0, 5.0])
        .unwrap();
        let c = compare(&expected, &retyped, Tolerance::default(), 5).unwrap();
        assert!(!c.identical);
        assert!(c.schema_difference.unwrap().contains("amount_count"));
    }

    #[test]
    fn files_compare_like_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (e, a) = (dir.path().join("e.parquet"), dir.path().join("a.parquet"));
        super::super::tests::write(&e, &mut frame(&["x", "y"], &[1.0, 2.0], &[1, 2]), 1);
        super::super::tests::write(&a, &mut frame(&["y", "x"], &[2.0, 1.5], &[2, 1]), 1);
        let c = compare_files(&e, &a, Tolerance::default(), 5).unwrap();
        assert_eq!(c.differing_rows, 1);
        assert_eq!(c.first_differences[0].expected.as_ref().unwrap()[0], "x");
    }

    #[test]
    fn tolerance_treats_nan_and_infinities_strictly() {
        let t = Tolerance::default();
        assert!(t.equal(f64::NAN, f64::NAN));
        assert!(!t.equal(f64::NAN, 0.0));
        assert!(t.equal(f64::INFINITY, f64::INFINITY));
        assert!(!t.equal(f64::INFINITY, f64::NEG_INFINITY));
        assert!(t.equal(1e300, 1e300 * (1.0 + 1e-12)));
        assert!(!t.equal(1.0, 1.0 + 1e-6));
    }
}
