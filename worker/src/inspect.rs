//! Reading an uploaded file's schema and row count, which also proves it parses.

use crate::scan::{INFER_ROWS, columns, scan};
use polars::prelude::*;
use quarry_domain::{ColumnInfo, DatasetFormat};
use std::path::Path;

/// What an upload holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub columns: Vec<ColumnInfo>,
    pub rows: u64,
}

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file is not valid in its format; the message says where and why.
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

const ROWS: &str = "__quarry_rows__";

/// Parses the whole file with the streaming engine (so any size works in bounded
/// memory) and returns its columns and row count. Types are guessed from the first
/// [`INFER_ROWS`] rows; if a later row contradicts them, the whole file is used.
pub fn inspect(path: &Path, format: DatasetFormat) -> Result<Inspection, InspectError> {
    match inspect_with(path, format, Some(INFER_ROWS)) {
        Err(InspectError::Malformed(_)) if format != DatasetFormat::Parquet => {
            inspect_with(path, format, None)
        }
        other => other,
    }
}

fn inspect_with(
    path: &Path,
    format: DatasetFormat,
    infer_rows: Option<usize>,
) -> Result<Inspection, InspectError> {
    let mut lf = scan(path, format, infer_rows).map_err(malformed)?;
    let schema = lf.collect_schema().map_err(malformed)?;
    if schema.is_empty() {
        return Err(InspectError::Malformed(
            "the file has no columns".to_owned(),
        ));
    }
    // Counting rows alone takes a fast path that does not parse fields; asking for the
    // null counts too makes polars parse (and so validate) every value.
    let df = lf
        .select([len().alias(ROWS), col("*").null_count()])
        .collect_with_engine(Engine::Streaming)
        .map_err(malformed)?
        .unwrap_single();
    let rows = df
        .column(ROWS)
        .and_then(|c| c.get(0).map(|v| v.extract::<u64>()))
        .map_err(|e| {
            InspectError::Internal(anyhow::Error::new(e).context("reading the row count"))
        })?
        .unwrap_or(0);
    Ok(Inspection {
        columns: columns(&schema),
        rows,
    })
}

fn malformed(e: PolarsError) -> InspectError {
    let text = e.to_string();
    // Polars appends long hints; the first lines say what is wrong.
    let first: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    InspectError::Malformed(first.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents).unwrap();
        f
    }

    #[test]
    fn csv_types_and_row_count_are_read() {
        let f = file(b"id,name,score,ok\n1,a,1.5,true\n2,,2.5,false\n3,c,,true\n");
        let got = inspect(f.path(), DatasetFormat::Csv).unwrap();
        assert_eq!(got.rows, 3);
        let types: Vec<(&str, &str)> = got
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.r#type.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("id", "int64"),
                ("name", "string"),
                ("score", "float64"),
                ("ok", "bool")
            ]
        );
    }

    #[test]
    fn a_type_change_after_the_inference_window_still_loads() {
        let mut csv = String::from("x\n");
        for i in 0..(INFER_ROWS + 5) {
            csv.push_str(&format!("{i}\n"));
        }
        csv.push_str("2.5\n");
        let got = inspect(file(csv.as_bytes()).path(), DatasetFormat::Csv).unwrap();
        assert_eq!(got.rows as usize, INFER_ROWS + 6);
        assert_eq!(got.columns[0].r#type, "float64");
    }

    #[test]
    fn ragged_csv_and_bad_json_and_fake_parquet_are_malformed() {
        let ragged = file(b"a,b\n1,2\n3,4,5,6\n");
        assert!(matches!(
            inspect(ragged.path(), DatasetFormat::Csv),
            Err(InspectError::Malformed(_))
        ));
        let json = file(b"{\"a\":1}\n{\"a\":\n");
        assert!(matches!(
            inspect(json.path(), DatasetFormat::Ndjson),
            Err(InspectError::Malformed(_))
        ));
        let fake = file(b"a,b\n1,2\n");
        assert!(matches!(
            inspect(fake.path(), DatasetFormat::Parquet),
            Err(InspectError::Malformed(_))
        ));
    }

    #[test]
    fn ndjson_is_read() {
        let f = file(b"{\"k\":\"x\",\"v\":1}\n{\"k\":\"y\",\"v\":2.5}\n");
        let got = inspect(f.path(), DatasetFormat::Ndjson).unwrap();
        assert_eq!(got.rows, 2);
        assert_eq!(got.columns[1].r#type, "float64");
    }
}
