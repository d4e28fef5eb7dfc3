//! Reading committed results (Parquet) back: JSON pages and CSV downloads.

use polars::prelude::*;
use quarry_domain::ResultPage;
use serde_json::Value;
use std::path::Path;

/// The largest page the API serves.
pub const MAX_PAGE: u64 = 10_000;

/// One page of a result: rows `offset..offset+limit`.
pub fn page(path: &Path, offset: u64, limit: u64) -> PolarsResult<ResultPage> {
    let limit = limit.min(MAX_PAGE);
    let mut reader = ParquetReader::new(std::fs::File::open(path)?);
    let total_rows = reader.num_rows()? as u64;
    let start = offset.min(total_rows);
    let df = ParquetReader::new(std::fs::File::open(path)?)
        .with_slice(Some((start as usize, limit as usize)))
        .finish()?;
    to_page(&df, start, limit, total_rows)
}

fn to_page(df: &DataFrame, offset: u64, limit: u64, total_rows: u64) -> PolarsResult<ResultPage> {
    let columns = crate::scan::columns(df.schema());
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut row = Vec::with_capacity(df.width());
        for column in df.columns() {
            row.push(json(&column.get(i)?));
        }
        rows.push(row);
    }
    Ok(ResultPage {
        columns,
        rows,
        offset,
        limit,
        total_rows,
    })
}

/// A page of the result sorted by one of its columns (nulls last). Callers check the
/// column against the result's recorded columns first.
pub fn sorted_page(
    path: &Path,
    offset: u64,
    limit: u64,
    by: &str,
    descending: bool,
) -> PolarsResult<ResultPage> {
    let limit = limit.min(MAX_PAGE);
    let lf = crate::scan::scan(path, quarry_domain::DatasetFormat::Parquet, None)?;
    let total_rows = ParquetReader::new(std::fs::File::open(path)?).num_rows()? as u64;
    let start = offset.min(total_rows);
    let df = lf
        .sort(
            [by],
            SortMultipleOptions::default()
                .with_order_descending(descending)
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .slice(start as i64, limit as IdxSize)
        .collect()?;
    to_page(&df, start, limit, total_rows)
}

/// The first `n` rows of a dataset, for its schema preview.
pub fn preview(
    path: &Path,
    format: quarry_domain::DatasetFormat,
    columns: &[quarry_domain::ColumnInfo],
    n: u64,
) -> PolarsResult<ResultPage> {
    let df = crate::scan::scan_dataset(path, format, columns)?
        .limit(n as IdxSize)
        .collect()?;
    let height = df.height() as u64;
    to_page(&df, 0, n, height)
}

/// Writes the whole result as CSV.
pub fn to_csv(path: &Path, out: &Path) -> PolarsResult<()> {
    let mut df = ParquetReader::new(std::fs::File::open(path)?).finish()?;
    CsvWriter::new(std::fs::File::create(out)?)
        .include_header(true)
        .finish(&mut df)
}

/// A cell as JSON: numbers stay numbers (NaN and infinities become null), text stays
/// text, anything else is its display form.
pub fn json(value: &AnyValue<'_>) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::UInt64(v) => Value::from(*v),
        AnyValue::Int8(_)
        | AnyValue::Int16(_)
        | AnyValue::Int32(_)
        | AnyValue::Int64(_)
        | AnyValue::UInt8(_)
        | AnyValue::UInt16(_)
        | AnyValue::UInt32(_) => value.extract::<i64>().map_or(Value::Null, Value::from),
        AnyValue::Float32(_) | AnyValue::Float64(_) => value
            .extract::<f64>()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        other => Value::String(
            other
                .get_str()
                .map_or_else(|| other.str_value().into_owned(), str::to_owned),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_slice_rows_and_report_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let mut df = df!("k" => ["a", "b", "c"], "v" => [1.5, f64::NAN, 3.0], "n" => [Some(1i64), None, Some(3)]).unwrap();
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        let p = page(&path, 1, 5).unwrap();
        assert_eq!((p.offset, p.total_rows, p.rows.len()), (1, 3, 2));
        assert_eq!(p.rows[0], vec![Value::from("b"), Value::Null, Value::Null]);
        assert_eq!(
            p.rows[1],
            vec![Value::from("c"), Value::from(3.0), Value::from(3)]
        );
        assert_eq!(p.columns[2].r#type, "int64");
        assert!(page(&path, 10, 5).unwrap().rows.is_empty());
        let csv = dir.path().join("r.csv");
        to_csv(&path, &csv).unwrap();
        assert!(
            std::fs::read_to_string(csv)
                .unwrap()
                .starts_with("k,v,n\na,1.5,1\n")
        );
    }
}
