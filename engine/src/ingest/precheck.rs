//! The first look at an upload, before polars reads a byte of it: magic numbers
//! (compressed or mislabelled files), the encoding, and one streaming pass that
//! bounds line length, width and nesting depth and finds unbalanced quotes. Each
//! refusal says what to fix. Text that is not plain UTF-8 (a byte-order mark,
//! Latin-1) is rewritten as UTF-8 in the same pass.

use super::csv_scan::CsvScanner;
use super::sniff;
use super::{IngestError, Limits, Refusal, refuse};
use quarry_domain::{Encoding, IngestOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// How much of the start of a file is kept for sniffing.
const SAMPLE_BYTES: usize = 256 * 1024;
const CHUNK: usize = 1 << 20;

/// Compression and archive formats, by their magic bytes.
fn compressed(head: &[u8]) -> Option<&'static str> {
    match head {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some("xz"),
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c, ..] => Some("7-Zip"),
        // zlib: CMF 0x78 with a valid check byte that is not printable text.
        [0x78, 0x01 | 0x9c | 0xda, ..] => Some("zlib"),
        [b'P', b'K', 0x03, 0x04, ..] => Some("zip"),
        _ => None,
    }
}

fn head(path: &Path, n: usize) -> Result<Vec<u8>, IngestError> {
    let mut file = std::fs::File::open(path).map_err(internal)?;
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        match file.read(&mut buf[got..]).map_err(internal)? {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

fn internal(e: std::io::Error) -> IngestError {
    IngestError::Internal(anyhow::Error::new(e).context("reading the upload"))
}

/// Refuses compressed bodies: polars would decompress them without a bound.
fn refuse_compressed(head: &[u8], what: &str) -> Result<(), IngestError> {
    if head.starts_with(b"PAR1") {
        return Err(refuse(
            Refusal::Unsupported,
            format!(
                "this is a Parquet file, not {what}: upload it with `format=parquet` or \
                 Content-Type application/vnd.apache.parquet"
            ),
        ));
    }
    match compressed(head) {
        Some("zip") => Err(refuse(
            Refusal::Unsupported,
            format!(
                "this is a zip archive (or an Excel workbook), not {what}: upload a workbook \
                 as .xlsx (`format=xlsx`), and unpack other archives first"
            ),
        )),
        Some(kind) => Err(refuse(
            Refusal::Unsupported,
            format!(
                "the file is {kind}-compressed: Quarry does not decompress uploads. Upload it \
                 uncompressed, or as Parquet, which compresses itself"
            ),
        )),
        None => Ok(()),
    }
}

/// Checks a Parquet file's magic bytes at both ends.
pub fn parquet(path: &Path) -> Result<(), IngestError> {
    let len = std::fs::metadata(path).map_err(internal)?.len();
    let start = head(path, 4)?;
    let mut tail = [0u8; 4];
    if len >= 12 {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(path).map_err(internal)?;
        f.seek(SeekFrom::End(-4)).map_err(internal)?;
        f.read_exact(&mut tail).map_err(internal)?;
    }
    if start != b"PAR1" || &tail != b"PAR1" {
        refuse_compressed(&start, "Parquet")?;
        return Err(refuse(
            Refusal::Malformed,
            "this is not a Parquet file (or it is truncated): a Parquet file starts and ends \
             with the bytes PAR1",
        ));
    }
    Ok(())
}

/// Checks an Excel workbook's container.
pub fn xlsx(path: &Path) -> Result<(), IngestError> {
    let start = head(path, 8)?;
    if !start.starts_with(b"PK\x03\x04") {
        return Err(refuse(
            Refusal::Malformed,
            "this is not an .xlsx workbook: save it from Excel as \"Excel Workbook (.xlsx)\" \
             (the older .xls format is not read)",
        ));
    }
    Ok(())
}

/// Which text format the pass checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Csv,
    Ndjson,
}

/// A text upload that passed the checks, as UTF-8 on disk.
#[derive(Debug)]
pub struct Text {
    /// The file to read: the upload itself, or its UTF-8 rewrite.
    pub path: PathBuf,
    _rewrite: Option<tempfile::NamedTempFile>,
    /// The options in effect, detected values filled in.
    pub options: IngestOptions,
    /// The header's field names (CSV with a header).
    pub header: Vec<String>,
}

/// The checks and the UTF-8 rewrite, in one pass.
pub fn text(
    path: &Path,
    kind: TextKind,
    options: &IngestOptions,
    limits: &Limits,
    scratch: &Path,
) -> Result<Text, IngestError> {
    let what = match kind {
        TextKind::Csv => "CSV",
        TextKind::Ndjson => "NDJSON",
    };
    let start = head(path, SAMPLE_BYTES)?;
    if start.is_empty() {
        return Err(refuse(
            Refusal::Malformed,
            "the file is empty: send the file's contents",
        ));
    }
    refuse_compressed(&start, what)?;
    if start.starts_with(&[0xff, 0xfe]) || start.starts_with(&[0xfe, 0xff]) {
        return Err(refuse(
            Refusal::Unsupported,
            "the file is UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8 \
             (\"CSV UTF-8\" in Excel), or as Latin-1 and upload with `encoding=latin1`",
        ));
    }
    let bom = start.starts_with(&[0xef, 0xbb, 0xbf]);
    let mut resolved = options.clone();
    let latin1 = options.encoding == Some(Encoding::Latin1);
    resolved.encoding = Some(if latin1 {
        Encoding::Latin1
    } else {
        Encoding::Utf8
    });
    let sample = decode(&start[if bom { 3 } else { 0 }..], latin1);
    if kind == TextKind::Csv {
        let delimiter = match options.delimiter {
            Some(d) => d,
            None => sniff::delimiter(&sample) as char,
        };
        resolved.delimiter = Some(delimiter);
        if resolved.decimal_comma.is_none() {
            resolved.decimal_comma = Some(sniff::decimal_comma(&sample, delimiter as u8));
        }
        resolved.has_header = Some(options.has_header.unwrap_or(true));
    }

    let rewrite = if bom || latin1 {
        Some(
            tempfile::Builder::new()
                .prefix("upload-")
                .suffix(".utf8")
                .tempfile_in(scratch)
                .map_err(internal)?,
        )
    } else {
        None
    };
    let header = pass(path, kind, &resolved, limits, bom, rewrite.as_ref())?;
    Ok(Text {
        path: rewrite
            .as_ref()
            .map_or_else(|| path.to_owned(), |t| t.path().to_owned()),
        _rewrite: rewrite,
        options: resolved,
        header,
    })
}

fn decode(bytes: &[u8], latin1: bool) -> String {
    if latin1 {
        encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Tracks nesting of JSON arrays and objects outside strings.
#[derive(Debug, Default)]
struct JsonDepth {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl JsonDepth {
    fn feed(&mut self, b: u8) -> u32 {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return self.depth;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.depth
    }
}

/// Streams the file once; returns the CSV header's names.
fn pass(
    path: &Path,
    kind: TextKind,
    options: &IngestOptions,
    limits: &Limits,
    bom: bool,
    rewrite: Option<&tempfile::NamedTempFile>,
) -> Result<Vec<String>, IngestError> {
    let latin1 = options.encoding == Some(Encoding::Latin1);
    let delimiter = options.delimiter.map_or(b',', |d| d as u8);
    let has_header = options.has_header.unwrap_or(true);
    let mut csv = CsvScanner::new(delimiter, if has_header { 1 } else { 0 });
    let mut json = JsonDepth::default();
    let mut out = rewrite
        .map(|t| t.reopen().map(BufWriter::new))
        .transpose()
        .map_err(internal)?;
    let mut file = std::fs::File::open(path).map_err(internal)?;
    let mut buf = vec![0u8; CHUNK];
    let mut carry: Vec<u8> = Vec::new();
    let (mut offset, mut line, mut line_len) = (0u64, 1u64, 0u64);
    let (mut newlines, mut bare_cr, mut prev_cr) = (0u64, 0u64, false);
    let mut first = true;
    loop {
        let n = file.read(&mut buf).map_err(internal)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first && bom {
            chunk = &chunk[3.min(chunk.len())..];
            offset += 3;
        }
        first = false;
        if !latin1 {
            check_utf8(&mut carry, chunk, offset, line)?;
        }
        for (i, &b) in chunk.iter().enumerate() {
            if b == 0 {
                return Err(refuse(
                    Refusal::Malformed,
                    format!(
                        "the file holds a NUL byte at offset {}: it is not text (a binary file, \
                         or UTF-16 without a byte-order mark?)",
                        offset + i as u64
                    ),
                ));
            }
            if b == b'\n' {
                newlines += 1;
                line += 1;
                line_len = 0;
            } else {
                if prev_cr {
                    bare_cr += 1;
                }
                line_len += 1;
                if line_len > limits.max_line_bytes {
                    return Err(refuse(
                        Refusal::TooLarge,
                        format!(
                            "line {line} is longer than {} bytes (uploads.max_line_bytes): \
                             check the line endings, or split the record",
                            limits.max_line_bytes
                        ),
                    ));
                }
            }
            prev_cr = b == b'\r';
            match kind {
                TextKind::Csv => {
                    csv.feed(b);
                    if csv.records == 0 && csv.fields_so_far() > limits.max_columns as usize {
                        return Err(too_wide(limits));
                    }
                }
                TextKind::Ndjson => {
                    if json.feed(b) > limits.max_json_depth {
                        return Err(refuse(
                            Refusal::Malformed,
                            format!(
                                "the record on line {line} nests arrays and objects deeper than \
                                 {} levels (uploads.max_json_depth): flatten it",
                                limits.max_json_depth
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(out) = out.as_mut() {
            let text = decode(chunk, latin1);
            out.write_all(text.as_bytes()).map_err(internal)?;
        }
        offset += chunk.len() as u64;
    }
    if !carry.is_empty() {
        return Err(not_utf8(carry[0], offset - carry.len() as u64, line));
    }
    if newlines == 0 && bare_cr > 0 {
        return Err(refuse(
            Refusal::Malformed,
            "the lines end in a bare carriage return (old Mac style): save the file with \
             \\n or \\r\\n line endings",
        ));
    }
    if let Some(mut out) = out {
        out.flush().map_err(internal)?;
    }
    if kind == TextKind::Ndjson {
        return Ok(Vec::new());
    }
    if csv.in_quotes() {
        return Err(refuse(
            Refusal::Malformed,
            format!(
                "a quoted field that starts on line {} is never closed: look for a stray `\"`",
                csv.quote_line
            ),
        ));
    }
    csv.finish();
    let header = csv.captured.into_iter().next().unwrap_or_default();
    if has_header {
        check_header(&header, limits)?;
    }
    let data_records = csv.records.saturating_sub(u64::from(has_header));
    if data_records == 0 {
        return Err(refuse(
            Refusal::Malformed,
            if has_header {
                "the file has a header but no rows of data"
            } else {
                "the file has no rows of data"
            },
        ));
    }
    Ok(header)
}

fn too_wide(limits: &Limits) -> IngestError {
    refuse(
        Refusal::TooLarge,
        format!(
            "the file has more than {} columns (uploads.max_columns): split it, or check the \
             `delimiter=`",
            limits.max_columns
        ),
    )
}

fn check_header(header: &[String], limits: &Limits) -> Result<(), IngestError> {
    if header.len() > limits.max_columns as usize {
        return Err(too_wide(limits));
    }
    let mut seen = std::collections::HashSet::new();
    for name in header {
        if !seen.insert(name.as_str()) {
            return Err(refuse(
                Refusal::Malformed,
                format!("the column name `{name}` appears twice in the header: rename one of them"),
            ));
        }
    }
    Ok(())
}

fn not_utf8(byte: u8, offset: u64, line: u64) -> IngestError {
    refuse(
        Refusal::Malformed,
        format!(
            "the file is not UTF-8: byte 0x{byte:02X} at offset {offset} (line {line}) is not \
             valid UTF-8. If it was saved as Latin-1 / Windows-1252 (as Excel on Windows \
             does), upload it with `encoding=latin1`"
        ),
    )
}

/// Validates UTF-8 across chunk boundaries: an incomplete sequence at a chunk's end
/// is carried into the next.
fn check_utf8(
    carry: &mut Vec<u8>,
    chunk: &[u8],
    offset: u64,
    line: u64,
) -> Result<(), IngestError> {
    let joined;
    let (bytes, base) = if carry.is_empty() {
        (chunk, offset)
    } else {
        joined = [carry.as_slice(), chunk].concat();
        (joined.as_slice(), offset - carry.len() as u64)
    };
    match std::str::from_utf8(bytes) {
        Ok(_) => carry.clear(),
        Err(e) if e.error_len().is_none() => {
            let tail = bytes[e.valid_up_to()..].to_vec();
            *carry = tail;
        }
        Err(e) => {
            let at = e.valid_up_to();
            let lines_before = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            return Err(not_utf8(bytes[at], base + at as u64, line + lines_before));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
