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
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 3] = [
        DatasetFormat::Csv,
        DatasetFormat::Parquet,
        DatasetFormat::Ndjson,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Ndjson => "ndjson",
        }
    }

    /// The file extension the blob is stored under.
    pub fn extension(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Ndjson => "ndjson",
        }
    }

    /// The canonical media type, as accepted by `POST /api/v1/datasets`.
    pub fn media_type(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "text/csv",
            DatasetFormat::Parquet => "application/vnd.apache.parquet",
            DatasetFormat::Ndjson => "application/x-ndjson",
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
    pub bytes: u64,
    pub columns: Vec<ColumnInfo>,
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
