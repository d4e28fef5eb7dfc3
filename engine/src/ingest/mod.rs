//! Ingesting an upload: refuse what is hostile, read what is real, store it typed.
//!
//! 1. [`precheck`] looks at the bytes before polars does: magic numbers (compressed
//!    or mislabelled bodies are refused), the encoding (a byte-order mark or
//!    declared Latin-1 is rewritten as UTF-8), and one streaming pass bounding line
//!    length, width and nesting depth.
//! 2. polars reads the file with pandas' null markers, date detection, the sniffed
//!    or given delimiter and the caller's per-column type overrides, and the
//!    streaming engine writes the typed Parquet copy every analysis scans.
//!
//! The server runs this in a child process ([`child`]) with a memory limit and a
//! deadline, so no upload can take the server down, whatever polars does with it.

pub mod child;
mod csv_scan;
pub mod excel;
pub mod precheck;
pub mod sniff;
mod temporal;

use crate::analysis::validate::exact_dtype;
use polars::prelude::*;
use quarry_domain::{ColumnInfo, DatasetFormat, IngestOptions};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::path::Path;

use crate::scan::INFER_ROWS;

/// Bounds checked before polars reads the file (`uploads.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    pub max_line_bytes: u64,
    pub max_columns: u32,
    pub max_json_depth: u32,
}

impl Limits {
    pub fn from_config(c: &quarry_core::config::UploadsConfig) -> Self {
        Self {
            max_line_bytes: c.max_line_bytes,
            max_columns: c.max_columns,
            max_json_depth: c.max_json_depth,
        }
    }
}

/// How an upload was refused, which the server maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// An option is wrong (400).
    BadOption,
    /// Over a size bound (413).
    TooLarge,
    /// A kind of body Quarry does not read: compressed, UTF-16 (415).
    Unsupported,
    /// The file is not valid in its format (422).
    Malformed,
}

/// Why an upload could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The upload is refused; the message says what to fix.
    #[error("{message}")]
    Refused { kind: Refusal, message: String },
    /// polars could not read the file; [`ingest`] turns it into a `Malformed`
    /// refusal that names the format.
    #[error("{0}")]
    Unparsable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub(crate) fn refuse(kind: Refusal, message: impl Into<String>) -> IngestError {
    IngestError::Refused {
        kind,
        message: message.into(),
    }
}

/// What an ingested upload holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingested {
    pub columns: Vec<ColumnInfo>,
    pub rows: u64,
    /// The options used, detected values filled in.
    pub options: IngestOptions,
}

/// The polars type for a type name a user may ask for in `schema=`.
pub fn override_dtype(name: &str) -> Option<DataType> {
    exact_dtype(name).or(match name {
        "date" => Some(DataType::Date),
        "datetime" => Some(DataType::Datetime(TimeUnit::Microseconds, None)),
        "time" => Some(DataType::Time),
        "duration" => Some(DataType::Duration(TimeUnit::Microseconds)),
        _ => None,
    })
}

fn check_options(format: DatasetFormat, o: &IngestOptions) -> Result<(), IngestError> {
    let bad = |m: String| Err(refuse(Refusal::BadOption, m));
    if let Some(d) = o.delimiter
        && (!d.is_ascii() || matches!(d, '"' | '\n' | '\r') || d.is_ascii_alphanumeric())
    {
        return bad(format!(
            "`delimiter={d}` cannot separate fields: use one ASCII punctuation character or tab, \
             such as `,` `;` `|`"
        ));
    }
    if let Some(nulls) = &o.null_values
        && (nulls.len() > 100 || nulls.iter().any(|n| n.len() > 100))
    {
        return bad("`null_values` takes at most 100 markers of at most 100 bytes".to_owned());
    }
    if o.schema.len() > 10_000 {
        return bad("`schema` names too many columns".to_owned());
    }
    for (column, type_name) in &o.schema {
        let known = quarry_domain::dataset::TYPE_NAMES.contains(&type_name.as_str());
        if !known || type_name == "decimal" || override_dtype(type_name).is_none() {
            return bad(format!(
                "`schema` asks for type `{type_name}` for column `{column}`; the types are: {}",
                quarry_domain::dataset::TYPE_NAMES
                    .iter()
                    .filter(|t| **t != "decimal")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if o.sheet.is_some() && format != DatasetFormat::Xlsx {
        return bad("`sheet` is for Excel workbooks (.xlsx) only".to_owned());
    }
    let text = matches!(format, DatasetFormat::Csv | DatasetFormat::Xlsx);
    if !text && (o.delimiter.is_some() || o.has_header.is_some() || o.decimal_comma.is_some()) {
        return bad(format!(
            "`delimiter`, `has_header` and `decimal_comma` are CSV options; this upload is {format}"
        ));
    }
    Ok(())
}

/// Reads `input` and writes its typed Parquet copy to `output`. `scratch` is a
/// directory for temporary files (rewrites, workbook sheets), removed by the caller.
pub fn ingest(
    input: &Path,
    format: DatasetFormat,
    options: &IngestOptions,
    limits: &Limits,
    scratch: &Path,
    output: &Path,
) -> Result<Ingested, IngestError> {
    read_typed(input, format, options, limits, scratch, output).map_err(|e| match e {
        IngestError::Unparsable(text) => refuse(
            Refusal::Malformed,
            format!(
                "the file is not valid {}: {text}",
                match format {
                    DatasetFormat::Xlsx => "Excel sheet data".to_owned(),
                    other => other.as_str().to_uppercase(),
                }
            ),
        ),
        other => other,
    })
}

fn read_typed(
    input: &Path,
    format: DatasetFormat,
    options: &IngestOptions,
    limits: &Limits,
    scratch: &Path,
    output: &Path,
) -> Result<Ingested, IngestError> {
    check_options(format, options)?;
    let (lf, resolved) = match format {
        DatasetFormat::Parquet => {
            precheck::parquet(input)?;
            let lf = LazyFrame::scan_parquet(
                PlRefPath::try_from_path(input).map_err(malformed)?,
                ScanArgsParquet {
                    glob: false,
                    ..Default::default()
                },
            )
            .map_err(malformed)?;
            (lf, options.clone())
        }
        DatasetFormat::Csv => {
            let text = precheck::text(input, precheck::TextKind::Csv, options, limits, scratch)?;
            return write_csv(&text.path, &text.header, text.options, limits, output);
        }
        DatasetFormat::Xlsx => {
            precheck::xlsx(input)?;
            let (sheet, name) = excel::to_csv(input, options.sheet.as_deref(), limits, scratch)?;
            let mut as_csv = options.clone();
            as_csv.delimiter = Some(',');
            as_csv.decimal_comma = Some(false);
            as_csv.encoding = None;
            let text = precheck::text(
                sheet.path(),
                precheck::TextKind::Csv,
                &as_csv,
                limits,
                scratch,
            )?;
            let mut resolved = text.options;
            resolved.sheet = Some(name);
            resolved.delimiter = None;
            resolved.decimal_comma = None;
            return write_csv(&text.path, &text.header, resolved, limits, output);
        }
        DatasetFormat::Ndjson => {
            let text = precheck::text(input, precheck::TextKind::Ndjson, options, limits, scratch)?;
            let path = text.path.clone();
            let scan = move |infer: Option<usize>| {
                let file = std::fs::File::open(&path)?;
                LazyJsonLineReader::new_with_sources(ScanSources::Files(Arc::from([file])))
                    .with_infer_schema_length(infer.and_then(NonZeroUsize::new))
                    .finish()
            };
            // JSON has no date type: ISO text becomes date/datetime as in CSV, unless
            // a later value does not parse, when the column stays text.
            let detected = scan(Some(INFER_ROWS))
                .ok()
                .map(|lf| temporal::detect(lf, &text.options))
                .unwrap_or_default();
            let mut with_dates = text.options.clone();
            with_dates.schema = detected;
            with_dates.schema.extend(text.options.schema.clone());
            let typed =
                with_inference_fallback(&scan, |lf| write_typed(lf, &with_dates, limits, output));
            let typed = match typed {
                Err(IngestError::Unparsable(_)) if with_dates.schema != text.options.schema => {
                    with_inference_fallback(&scan, |lf| {
                        write_typed(lf, &text.options, limits, output)
                    })
                }
                other => other,
            };
            return typed.map(|(columns, rows)| Ingested {
                columns,
                rows,
                options: text.options.clone(),
            });
        }
    };
    let (columns, rows) = write_typed(lf, &resolved, limits, output)?;
    Ok(Ingested {
        columns,
        rows,
        options: resolved,
    })
}

fn write_csv(
    path: &Path,
    header: &[String],
    options: IngestOptions,
    limits: &Limits,
    output: &Path,
) -> Result<Ingested, IngestError> {
    let overrides: Schema = options
        .schema
        .iter()
        .filter_map(|(name, t)| override_dtype(t).map(|d| (PlSmallStr::from(name.as_str()), d)))
        .collect();
    if options.has_header != Some(false) {
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        unknown_override_columns(&options, &names)?;
    }
    let nulls: Vec<PlSmallStr> = options
        .null_markers()
        .iter()
        .map(|s| PlSmallStr::from(s.as_str()))
        .collect();
    let source = PlRefPath::try_from_path(path).map_err(malformed)?;
    let scan = |infer: Option<usize>| {
        LazyCsvReader::new(source.clone())
            .with_glob(false)
            .with_has_header(options.has_header.unwrap_or(true))
            .with_separator(options.delimiter.map_or(b',', |d| d as u8))
            .with_decimal_comma(options.decimal_comma.unwrap_or(false))
            .with_null_values(Some(NullValues::AllColumns(nulls.clone())))
            .with_missing_is_null(true)
            .with_try_parse_dates(true)
            .with_infer_schema_length(infer)
            .with_dtype_overwrite((!overrides.is_empty()).then(|| Arc::new(overrides.clone())))
            .finish()
    };
    // Overrides were given to the reader; the rest need no casting.
    let mut applied = options.clone();
    applied.schema.clear();
    let (columns, rows) =
        with_inference_fallback(&scan, |lf| write_typed(lf, &applied, limits, output))?;
    Ok(Ingested {
        columns,
        rows,
        options,
    })
}

/// Reads with types guessed from the first [`INFER_ROWS`] rows, and if a later row
/// contradicts them, again with types inferred from every row.
fn with_inference_fallback<T>(
    scan: &dyn Fn(Option<usize>) -> PolarsResult<LazyFrame>,
    write: impl Fn(LazyFrame) -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    let first = scan(Some(INFER_ROWS)).map_err(malformed).and_then(&write);
    match first {
        Err(IngestError::Unparsable(_)) => write(scan(None).map_err(malformed)?),
        other => other,
    }
}

fn unknown_override_columns(options: &IngestOptions, names: &[&str]) -> Result<(), IngestError> {
    for column in options.schema.keys() {
        if !names.contains(&column.as_str()) {
            let known: Vec<&str> = names.iter().take(50).copied().collect();
            return Err(refuse(
                Refusal::BadOption,
                format!(
                    "`schema` names column `{column}`, which the file does not have; its columns \
                     are: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Applies the type overrides as casts, checks the width and streams the typed copy
/// to `output`; returns its columns and row count.
fn write_typed(
    mut lf: LazyFrame,
    options: &IngestOptions,
    limits: &Limits,
    output: &Path,
) -> Result<(Vec<ColumnInfo>, u64), IngestError> {
    let schema = lf.collect_schema().map_err(malformed)?;
    if schema.is_empty() {
        return Err(refuse(Refusal::Malformed, "the file has no columns"));
    }
    if schema.len() > limits.max_columns as usize {
        return Err(refuse(
            Refusal::TooLarge,
            format!(
                "the file has {} columns, over the limit of {} (uploads.max_columns)",
                schema.len(),
                limits.max_columns
            ),
        ));
    }
    let names: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
    unknown_override_columns(options, &names)?;
    if !options.schema.is_empty() {
        let casts: Vec<Expr> = options
            .schema
            .iter()
            .filter_map(|(name, t)| {
                let target = override_dtype(t)?;
                let from = schema.get(name.as_str())?;
                Some(cast(name, from, &target))
            })
            .collect();
        lf = lf.with_columns(casts);
    }
    let target = SinkTarget::Path(PlRefPath::try_from_path(output).map_err(malformed)?);
    lf.sink(
        SinkDestination::File { target },
        FileWriteFormat::Parquet(Arc::new(ParquetWriteOptions::default())),
        UnifiedSinkArgs::default(),
    )
    .and_then(|sink| sink.collect_with_engine(Engine::Streaming))
    .map_err(malformed)?;
    let file = std::fs::File::open(output)
        .map_err(|e| IngestError::Internal(anyhow::Error::new(e).context("typed copy")))?;
    let mut reader = ParquetReader::new(file);
    let rows = reader.num_rows().map_err(malformed)? as u64;
    let written = reader.schema().map_err(malformed)?;
    let columns = written
        .iter()
        .map(|(name, field)| ColumnInfo {
            name: name.to_string(),
            r#type: crate::scan::type_name(&DataType::from_arrow_field(field)),
        })
        .collect();
    if rows == 0 {
        return Err(refuse(Refusal::Malformed, "the file has no rows of data"));
    }
    Ok((columns, rows))
}

fn cast(name: &str, from: &DataType, to: &DataType) -> Expr {
    let c = col(name);
    match (from, to) {
        (DataType::String, DataType::Date) => c.str().to_date(StrptimeOptions::default()),
        (DataType::String, DataType::Datetime(unit, zone)) => c.str().to_datetime(
            Some(*unit),
            zone.clone(),
            StrptimeOptions::default(),
            lit("raise"),
        ),
        _ => c.strict_cast(to.clone()),
    }
}

/// A polars failure while reading the upload: the file's fault unless it is I/O.
fn malformed(e: PolarsError) -> IngestError {
    if let PolarsError::IO { .. } = e {
        return IngestError::Internal(anyhow::Error::new(e).context("reading the upload"));
    }
    let text = e.to_string();
    let first: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    // polars' hints name its own options; say what to check in the file instead.
    let text = first.join(" ").replace(
        "Consider setting 'truncate_ragged_lines=true'.",
        "a row has more fields than the header: check the delimiter and the quoting.",
    );
    IngestError::Unparsable(text)
}

#[cfg(test)]
mod tests;
