//! Reading committed results (Parquet) back: JSON pages bounded in rows and cells,
//! sorted pages from a cache of sorted copies ([`sorted`]), and CSV downloads written
//! in chunks as they are read.

pub mod compare;
pub mod sorted;

use polars::prelude::*;
use quarry_domain::ResultPage;
use serde_json::Value;
use std::fs::File;
use std::path::Path;

/// The most rows a page holds.
pub const MAX_PAGE: u64 = 10_000;

/// The most cells (rows × columns) a page holds, so a wide result cannot make one
/// page huge.
pub const MAX_CELLS: u64 = 100_000;

/// Rows per CSV chunk of a download.
pub const CSV_CHUNK_ROWS: usize = 8_192;

/// The rows a page of a result `width` columns wide holds when `requested` rows are
/// asked for: at least one, at most [`MAX_PAGE`] rows and at most [`MAX_CELLS`] cells
/// (but always one row, however wide).
pub fn page_limit(requested: u64, width: usize) -> u64 {
    let by_cells = (MAX_CELLS / width.max(1) as u64).max(1);
    requested.clamp(1, MAX_PAGE.min(by_cells))
}

/// One page of a result: rows `offset..offset+limit`, the limit cut by [`page_limit`].
pub fn page(path: &Path, offset: u64, limit: u64) -> PolarsResult<ResultPage> {
    page_of(File::open(path)?, offset, limit)
}

/// One page of an open Parquet file; only the row groups the page touches are read.
pub(crate) fn page_of(file: File, offset: u64, limit: u64) -> PolarsResult<ResultPage> {
    let mut reader = ParquetReader::new(file);
    let total_rows = reader.num_rows()? as u64;
    let limit = page_limit(limit, reader.schema()?.len());
    let start = offset.min(total_rows);
    let df = reader
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

/// Writes the whole result as CSV: the header, then at most `chunk_rows` rows at a
/// time, each chunk handed to `emit` as soon as it is written. One Parquet row group
/// is read at a time, so memory is bounded by a row group, not by the result. Stops
/// early, without error, as soon as `emit` returns `false` (the client went away).
pub fn csv_chunks(
    path: &Path,
    chunk_rows: usize,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> PolarsResult<()> {
    let chunk_rows = chunk_rows.max(1);
    let metadata = ParquetReader::new(File::open(path)?)
        .get_metadata()?
        .clone();
    let groups: Vec<usize> = metadata.row_groups.iter().map(|g| g.num_rows()).collect();
    let mut header = true;
    let mut start = 0;
    for rows in groups {
        let mut reader = ParquetReader::new(File::open(path)?);
        reader.set_metadata(metadata.clone());
        let df = reader.with_slice(Some((start, rows))).finish()?;
        start += rows;
        let mut at = 0;
        while at < df.height() {
            let mut chunk = df.slice(at as i64, chunk_rows);
            at += chunk.height();
            if !emit(write_csv(&mut chunk, header)?) {
                return Ok(());
            }
            header = false;
        }
    }
    if header {
        // No rows at all: the header alone.
        let mut empty = ParquetReader::new(File::open(path)?)
            .with_slice(Some((0, 0)))
            .finish()?;
        emit(write_csv(&mut empty, true)?);
    }
    Ok(())
}

fn write_csv(df: &mut DataFrame, header: bool) -> PolarsResult<Vec<u8>> {
    let mut out = Vec::new();
    CsvWriter::new(&mut out).include_header(header).finish(df)?;
    Ok(out)
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
pub(crate) mod tests {
    use super::*;

    /// Writes `df` as Parquet with row groups of `group_rows` rows.
    pub(crate) fn write(path: &Path, df: &mut DataFrame, group_rows: usize) {
        ParquetWriter::new(File::create(path).unwrap())
            .with_row_group_size(Some(group_rows))
            .finish(df)
            .unwrap();
    }

    /// The CSV text and the number of rows of each chunk.
    fn csv_of(path: &Path, chunk_rows: usize) -> (String, Vec<usize>) {
        let mut text = Vec::new();
        let mut chunks = Vec::new();
        csv_chunks(path, chunk_rows, |c| {
            text.extend_from_slice(&c);
            chunks.push(c.iter().filter(|b| **b == b'\n').count());
            true
        })
        .unwrap();
        (String::from_utf8(text).unwrap(), chunks)
    }

    #[test]
    fn pages_slice_rows_and_report_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let mut df = df!("k" => ["a", "b", "c"], "v" => [1.5, f64::NAN, 3.0], "n" => [Some(1i64), None, Some(3)]).unwrap();
        write(&path, &mut df, 2);
        let p = page(&path, 1, 5).unwrap();
        assert_eq!(
            (p.offset, p.limit, p.total_rows, p.rows.len()),
            (1, 5, 3, 2)
        );
        assert_eq!(p.rows[0], vec![Value::from("b"), Value::Null, Value::Null]);
        assert_eq!(
            p.rows[1],
            vec![Value::from("c"), Value::from(3.0), Value::from(3)]
        );
        assert_eq!(p.columns[2].r#type, "int64");
        assert!(page(&path, 10, 5).unwrap().rows.is_empty());
        assert_eq!(page(&path, 0, 0).unwrap().limit, 1, "at least one row");
    }

    #[test]
    fn the_page_limit_is_bounded_by_rows_and_by_cells() {
        assert_eq!(page_limit(100, 3), 100);
        assert_eq!(page_limit(1_000_000, 3), MAX_PAGE);
        assert_eq!(page_limit(10_000, 40), 2_500);
        assert_eq!(page_limit(10_000, 0), MAX_PAGE);
        assert_eq!(page_limit(10, 1_000_000), 1, "one row however wide");
        assert_eq!(page_limit(0, 2), 1);
    }

    #[test]
    fn a_wide_result_pages_at_most_max_cells_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.parquet");
        let width = 250;
        let columns: Vec<Column> = (0..width)
            .map(|c| Column::new(format!("c{c}").into(), vec![c as i64; 1_000]))
            .collect();
        let mut df = DataFrame::new(1_000, columns).unwrap();
        write(&path, &mut df, 300);
        let p = page(&path, 0, 10_000).unwrap();
        assert_eq!(p.limit, MAX_CELLS / width as u64);
        assert_eq!(p.rows.len(), 400);
        assert!(p.rows.len() as u64 * width as u64 <= MAX_CELLS);
        // The page crosses row groups.
        let p = page(&path, 250, 100).unwrap();
        assert_eq!((p.rows.len(), p.offset), (100, 250));
    }

    #[test]
    fn csv_chunks_concatenate_to_the_whole_csv_with_one_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let n = 1_000;
        let mut df = df!(
            "id" => (0..n).collect::<Vec<i64>>(),
            "name" => (0..n).map(|i| format!("n,{i}")).collect::<Vec<_>>(),
            "x" => (0..n).map(|i| if i % 7 == 0 { None } else { Some(i as f64 + 0.5) }).collect::<Vec<_>>(),
        )
        .unwrap();
        write(&path, &mut df, 300);
        let (text, chunks) = csv_of(&path, 128);
        let mut expected = String::from("id,name,x\n");
        for i in 0..n {
            let x = if i % 7 == 0 {
                String::new()
            } else {
                format!("{}", i as f64 + 0.5)
            };
            expected.push_str(&format!("{i},\"n,{i}\",{x}\n"));
        }
        assert_eq!(text, expected);
        // Chunks of at most 128 rows (the first has the header too), at least one per
        // row group.
        assert!(chunks.len() > 1_000 / 128, "{chunks:?}");
        assert!(
            chunks[0] <= 129 && chunks[1..].iter().all(|n| *n <= 128),
            "{chunks:?}"
        );
    }

    #[test]
    fn csv_of_an_empty_result_is_its_header_and_a_refusing_sink_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.parquet");
        let mut df = df!("a" => Vec::<i64>::new(), "b" => Vec::<String>::new()).unwrap();
        write(&path, &mut df, 10);
        assert_eq!(csv_of(&path, 10).0, "a,b\n");

        let path = dir.path().join("r.parquet");
        let mut df = df!("a" => (0..100i64).collect::<Vec<_>>()).unwrap();
        write(&path, &mut df, 10);
        let mut calls = 0;
        csv_chunks(&path, 5, |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
        assert_eq!(calls, 3, "no chunk is written after the sink refuses one");
    }
}
