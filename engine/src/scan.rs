//! Opening a stored dataset as a polars `LazyFrame`.

use crate::analysis::validate::exact_dtype;
use polars::prelude::*;
use quarry_domain::{ColumnInfo, DatasetFormat};
use std::num::NonZeroUsize;
use std::path::Path;

/// Rows read to guess CSV/NDJSON column types before falling back to the whole file
/// (uploads, and datasets stored before typed copies).
pub const INFER_ROWS: usize = 10_000;

/// A lazy scan of the file; `infer_rows = None` infers types from every row.
pub fn scan(
    path: &Path,
    format: DatasetFormat,
    infer_rows: Option<usize>,
) -> PolarsResult<LazyFrame> {
    scan_with(path, format, infer_rows, None)
}

/// Where an analysis reads its dataset from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on this machine.
    File(std::path::PathBuf),
    /// Object storage that polars reads itself, by byte ranges (Parquet only).
    Cloud(quarry_core::blob::PolarsLocation),
}

/// A lazy scan of a dataset wherever it is; see [`scan_dataset`].
pub fn scan_source(
    source: &Source,
    format: DatasetFormat,
    columns: &[ColumnInfo],
) -> PolarsResult<LazyFrame> {
    match source {
        Source::File(path) => scan_dataset(path, format, columns),
        Source::Cloud(location) => {
            polars_ensure!(
                format == DatasetFormat::Parquet,
                ComputeError: "only Parquet is read from object storage in place"
            );
            let url = PlRefPath::new(location.url.as_str());
            let options = cloud::CloudOptions::from_untyped_config(
                url.scheme(),
                location
                    .options
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone())),
            )?;
            LazyFrame::scan_parquet(
                url,
                ScanArgsParquet {
                    glob: false,
                    cloud_options: Some(options),
                    ..Default::default()
                },
            )
        }
    }
}

/// A lazy scan of a stored dataset with the column types recorded when it was
/// uploaded, so an analysis reads exactly what the upload validated. Types that the
/// API's names cannot express exactly (nested, temporal) fall back to inferring from
/// the whole file; Parquet carries its own schema.
pub fn scan_dataset(
    path: &Path,
    format: DatasetFormat,
    columns: &[ColumnInfo],
) -> PolarsResult<LazyFrame> {
    let exact: Option<Schema> = columns
        .iter()
        .map(|c| exact_dtype(&c.r#type).map(|t| (PlSmallStr::from(c.name.as_str()), t)))
        .collect();
    match exact {
        Some(schema) if format != DatasetFormat::Parquet => {
            scan_with(path, format, None, Some(Arc::new(schema)))
        }
        _ => scan_with(path, format, None, None),
    }
}

fn scan_with(
    path: &Path,
    format: DatasetFormat,
    infer_rows: Option<usize>,
    schema: Option<SchemaRef>,
) -> PolarsResult<LazyFrame> {
    let source = PlRefPath::try_from_path(path)?;
    match format {
        DatasetFormat::Csv => LazyCsvReader::new(source)
            .with_has_header(true)
            .with_glob(false)
            .with_infer_schema_length(infer_rows)
            .with_schema(schema)
            .finish(),
        DatasetFormat::Parquet => LazyFrame::scan_parquet(
            source,
            ScanArgsParquet {
                glob: false,
                ..Default::default()
            },
        ),
        DatasetFormat::Ndjson => {
            let file = std::fs::File::open(path)?;
            LazyJsonLineReader::new_with_sources(ScanSources::Files(Arc::from([file])))
                .with_infer_schema_length(infer_rows.and_then(NonZeroUsize::new))
                .with_schema(schema)
                .finish()
        }
        DatasetFormat::Xlsx => polars_bail!(
            ComputeError: "an Excel workbook is read through its typed Parquet copy"
        ),
    }
}

/// Quarry's stable name for a polars type, as shown in the API.
pub fn type_name(dtype: &DataType) -> String {
    match dtype {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::String => "string".into(),
        DataType::Binary => "binary".into(),
        DataType::Date => "date".into(),
        DataType::Datetime(..) => "datetime".into(),
        DataType::Duration(_) => "duration".into(),
        DataType::Time => "time".into(),
        DataType::Null => "null".into(),
        DataType::List(_) => "list".into(),
        DataType::Struct(_) => "struct".into(),
        DataType::Decimal(..) => "decimal".into(),
        other => other.to_string(),
    }
}

/// The API's view of a schema.
pub fn columns(schema: &Schema) -> Vec<ColumnInfo> {
    schema
        .iter()
        .map(|(name, dtype)| ColumnInfo {
            name: name.to_string(),
            r#type: type_name(dtype),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_stored_dataset_is_read_with_the_types_its_upload_found() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "x").unwrap();
        for i in 0..(INFER_ROWS + 10) {
            writeln!(f, "{i}").unwrap();
        }
        writeln!(f, "0.5").unwrap();
        // What an upload before typed copies recorded after reading every row.
        let recorded = [ColumnInfo {
            name: "x".into(),
            r#type: "float64".into(),
        }];
        // The default window alone would guess int64 and fail on the last row.
        let guessed = scan(f.path(), DatasetFormat::Csv, Some(INFER_ROWS))
            .unwrap()
            .select([col("x").sum()])
            .collect();
        assert!(guessed.is_err());
        let df = scan_dataset(f.path(), DatasetFormat::Csv, &recorded)
            .unwrap()
            .select([col("x").sum()])
            .collect()
            .unwrap();
        let n = (INFER_ROWS + 10) as f64;
        assert_eq!(
            df.column("x").unwrap().get(0).unwrap().extract::<f64>(),
            Some(n * (n - 1.0) / 2.0 + 0.5)
        );
    }
}
