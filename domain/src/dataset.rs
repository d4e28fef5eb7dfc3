//! Datasets: an uploaded file plus the schema and row count polars read from it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The file formats Quarry reads.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    Csv,
    Parquet,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
    /// An Excel workbook (`.xlsx`); one sheet is read.
    Xlsx,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 4] = [
        DatasetFormat::Csv,
        DatasetFormat::Parquet,
        DatasetFormat::Ndjson,
        DatasetFormat::Xlsx,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Ndjson => "ndjson",
            DatasetFormat::Xlsx => "xlsx",
        }
    }

    /// The file extension the blob is stored under.
    pub fn extension(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Ndjson => "ndjson",
            DatasetFormat::Xlsx => "xlsx",
        }
    }

    /// The canonical media type, as accepted by `POST /api/v1/datasets`.
    pub fn media_type(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "text/csv",
            DatasetFormat::Parquet => "application/vnd.apache.parquet",
            DatasetFormat::Ndjson => "application/x-ndjson",
            DatasetFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }

    /// Maps a media type (parameters such as `; charset=utf-8` are ignored) to a format.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" | "application/csv" => Some(DatasetFormat::Csv),
            "application/vnd.apache.parquet" | "application/x-parquet" => {
                Some(DatasetFormat::Parquet)
            }
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Some(DatasetFormat::Ndjson),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                Some(DatasetFormat::Xlsx)
            }
            _ => None,
        }
    }

    /// Maps a file name's extension to a format.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(DatasetFormat::Csv),
            "parquet" | "pq" => Some(DatasetFormat::Parquet),
            "ndjson" | "jsonl" | "json" => Some(DatasetFormat::Ndjson),
            "xlsx" => Some(DatasetFormat::Xlsx),
            _ => None,
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown dataset format `{s}`"))
    }
}

/// The type names Quarry uses for columns, and accepts in `schema=` overrides.
pub const TYPE_NAMES: [&str; 17] = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
    "float64", "string", "date", "datetime", "time", "duration", "decimal",
];

/// The markers read as missing values unless the upload names its own
/// (`null_values=`): pandas' default list, so R and pandas exports read the same.
pub const DEFAULT_NULL_VALUES: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// A text encoding an upload may declare.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Utf8,
    /// ISO-8859-1 as Windows writes it (Windows-1252).
    Latin1,
}

impl FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "utf8" => Ok(Encoding::Utf8),
            "latin1" | "iso88591" | "cp1252" | "windows1252" => Ok(Encoding::Latin1),
            _ => Err(format!("`encoding={s}` is unknown: use utf8 or latin1")),
        }
    }
}

/// How an upload is read: every field optional, `None` meaning "detect". The
/// dataset records the options its typed copy was made with, detected values
/// filled in, so a re-type starts from what was found.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOptions {
    /// Markers read as missing; `None` = [`DEFAULT_NULL_VALUES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_values: Option<Vec<String>>,
    /// The CSV field separator; `None` = sniffed from `,` `;` tab `|`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// Whether the first CSV row names the columns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_header: Option<bool>,
    /// The text encoding; `None` = UTF-8, with or without a byte-order mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// Whether numbers use a decimal comma (`1,5`); `None` = detected for `;` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal_comma: Option<bool>,
    /// Per-column type overrides, by name: `{"delay": "float64"}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub schema: std::collections::BTreeMap<String, String>,
    /// The workbook sheet to read (Excel); `None` = the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
}

impl IngestOptions {
    /// The null markers in effect.
    pub fn null_markers(&self) -> Vec<String> {
        self.null_values.clone().unwrap_or_else(|| {
            DEFAULT_NULL_VALUES
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        })
    }
}

/// One column of a dataset or a result: its name and Quarry's name for its type
/// (`int64`, `float64`, `string`, `bool`, `date`, `datetime`, ...).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub r#type: String,
}

/// Whether a column type (as Quarry names it) holds numbers; booleans count as 0/1.
pub fn is_numeric_type(type_name: &str) -> bool {
    matches!(
        type_name,
        "int8"
            | "int16"
            | "int32"
            | "int64"
            | "uint8"
            | "uint16"
            | "uint32"
            | "uint64"
            | "float32"
            | "float64"
            | "decimal"
            | "bool"
    )
}

impl ColumnInfo {
    /// Whether the column holds numbers (see [`is_numeric_type`]).
    pub fn is_numeric(&self) -> bool {
        is_numeric_type(&self.r#type)
    }
}

/// A dataset as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub format: DatasetFormat,
    pub rows: u64,
    /// The size of the original file, as uploaded (and downloadable).
    pub bytes: u64,
    /// The size of the typed Parquet copy every analysis reads; absent for datasets
    /// stored before typed copies existed (they are read from the original).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// The SHA-256 of the original file (lowercase hex): its content, whatever its
    /// name. Absent for datasets stored before content hashes were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub columns: Vec<ColumnInfo>,
    /// How the original was read, detected values filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestOptions>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The owner's user name (admins see everyone's datasets).
    pub owner: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_extensions_map_to_formats() {
        assert_eq!(
            DatasetFormat::from_media_type("text/csv; charset=utf-8"),
            Some(DatasetFormat::Csv)
        );
        assert_eq!(
            DatasetFormat::from_media_type("application/vnd.apache.parquet"),
            Some(DatasetFormat::Parquet)
        );
        assert_eq!(
            DatasetFormat::from_media_type("application/x-ndjson"),
            Some(DatasetFormat::Ndjson)
        );
        assert_eq!(DatasetFormat::from_media_type("image/png"), None);
        assert_eq!(
            DatasetFormat::from_file_name("sales.PARQUET"),
            Some(DatasetFormat::Parquet)
        );
        assert_eq!(DatasetFormat::from_file_name("README"), None);
        for f in DatasetFormat::ALL {
            assert_eq!(DatasetFormat::from_media_type(f.media_type()), Some(f));
            assert_eq!(f.as_str().parse::<DatasetFormat>(), Ok(f));
        }
    }
}
