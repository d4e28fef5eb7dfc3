//! Excel workbooks (`.xlsx`): one sheet, written out as UTF-8 CSV so it is typed by
//! the same rules as any CSV (null markers, dates, overrides). Excel's dates are
//! written as ISO 8601, so they come in as `date` / `datetime`.

use super::{IngestError, Limits, Refusal, refuse};
use calamine::{Data, Reader as _};
use std::io::{BufWriter, Write};
use std::path::Path;

/// The sheet as CSV in a new temporary file under `scratch`, and the sheet's name.
pub fn to_csv(
    path: &Path,
    sheet: Option<&str>,
    limits: &Limits,
    scratch: &Path,
) -> Result<(tempfile::NamedTempFile, String), IngestError> {
    let mut book = calamine::open_workbook_auto(path).map_err(|e| {
        refuse(
            Refusal::Malformed,
            format!("the workbook cannot be read: {e}"),
        )
    })?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(wanted) => names
            .iter()
            .find(|n| n.as_str() == wanted)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    Refusal::BadOption,
                    format!(
                        "the workbook has no sheet `{wanted}`; its sheets are: {}",
                        names.join(", ")
                    ),
                )
            })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| refuse(Refusal::Malformed, "the workbook has no sheets"))?,
    };
    let range = book.worksheet_range(&name).map_err(|e| {
        refuse(
            Refusal::Malformed,
            format!("sheet `{name}` cannot be read: {e}"),
        )
    })?;
    if range.width() > limits.max_columns as usize {
        return Err(refuse(
            Refusal::TooLarge,
            format!(
                "sheet `{name}` has {} columns, over the limit of {} (uploads.max_columns)",
                range.width(),
                limits.max_columns
            ),
        ));
    }
    let out = tempfile::Builder::new()
        .prefix("sheet-")
        .suffix(".csv")
        .tempfile_in(scratch)
        .map_err(io)?;
    let mut w = BufWriter::new(out.reopen().map_err(io)?);
    let mut line = String::new();
    for row in range.rows() {
        line.clear();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            write_cell(&mut line, cell);
        }
        line.push('\n');
        if line.len() as u64 > limits.max_line_bytes {
            return Err(refuse(
                Refusal::TooLarge,
                format!(
                    "a row of sheet `{name}` is longer than {} bytes (uploads.max_line_bytes)",
                    limits.max_line_bytes
                ),
            ));
        }
        w.write_all(line.as_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok((out, name))
}

fn io(e: std::io::Error) -> IngestError {
    IngestError::Internal(anyhow::Error::new(e).context("writing the sheet as CSV"))
}

fn quoted(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) || text.trim() != text {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn write_cell(out: &mut String, cell: &Data) {
    use std::fmt::Write as _;
    match cell {
        Data::Empty | Data::Error(_) => {}
        Data::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Data::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Data::Float(_) => {}
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::String(s) => quoted(out, s),
        Data::DateTimeIso(s) | Data::DurationIso(s) => quoted(out, s),
        Data::DateTime(dt) if dt.is_datetime() => {
            let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
            if dt.as_f64().fract() == 0.0 {
                let _ = write!(out, "{y:04}-{mo:02}-{d:02}");
            } else {
                let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}");
            }
        }
        // A duration: Excel stores days.
        Data::DateTime(dt) => {
            let _ = write!(out, "{}", dt.as_f64() * 86_400.0);
        }
    }
}
