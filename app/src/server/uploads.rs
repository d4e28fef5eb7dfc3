//! Dataset ingestion, shared by `POST /api/v1/datasets` and the web app's upload form.
//!
//! The body is streamed to the blob store (never held whole in memory) as the
//! original, kept for download. A child process then checks it against the upload
//! bounds and reads it with polars into a typed Parquet copy, which every analysis
//! scans; then the row is recorded. Any failure removes what the earlier steps
//! wrote: a refused upload leaves no file and no row.

use super::error::{ApiResult, AppError};
use super::state::Services;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use futures::{StreamExt as _, TryStreamExt as _};
use quarry_core::Error;
use quarry_core::auth::Principal;
use quarry_core::blob::{ByteStream, ContentHash};
use quarry_core::datasets::{self, NewDataset, TypedCopy};
use quarry_domain::{Dataset, DatasetFormat, IngestOptions};

/// What the client told us about the upload besides the bytes.
#[derive(Debug, Default, Clone)]
pub struct UploadHints {
    pub name: Option<String>,
    pub format: Option<String>,
    pub options: IngestOptions,
}

/// The longest text field of a multipart upload (`name`, options).
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// The upload options as they arrive in a query string or a form.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
pub struct OptionParams {
    /// Comma-separated markers read as missing values; default: pandas' list
    /// (`NA`, `N/A`, `NULL`, `NaN`, empty, ...).
    pub null_values: Option<String>,
    /// The CSV field separator: `,` `;` `|` or `tab`; default: sniffed.
    pub delimiter: Option<String>,
    /// Whether the first CSV row names the columns (default true).
    pub has_header: Option<String>,
    /// `utf8` (default; a byte-order mark is fine) or `latin1`.
    pub encoding: Option<String>,
    /// Whether numbers use a decimal comma (`1,5`); default: detected for `;` files.
    pub decimal_comma: Option<String>,
    /// Per-column type overrides as JSON: `{"delay":"float64","day":"date"}`.
    pub schema: Option<String>,
    /// The workbook sheet to read (`.xlsx`); default: the first.
    pub sheet: Option<String>,
}

fn parse_bool(key: &str, value: &str) -> ApiResult<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(AppError::invalid(
            "bad_option",
            format!("`{key}={value}` must be true or false"),
        )),
    }
}

impl OptionParams {
    /// Checks and converts the options; unset or empty ones stay "detect".
    pub fn parse(&self) -> ApiResult<IngestOptions> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let mut o = IngestOptions {
            null_values: set(&self.null_values)
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            ..Default::default()
        };
        if let Some(d) = set(&self.delimiter) {
            o.delimiter = Some(match d.as_str() {
                "tab" | "\\t" | "\t" => '\t',
                _ if d.chars().count() == 1 => d.chars().next().unwrap_or(','),
                _ => {
                    return Err(AppError::invalid(
                        "bad_option",
                        format!("`delimiter={d}` must be one character, or `tab`"),
                    ));
                }
            });
        }
        if let Some(h) = set(&self.has_header) {
            o.has_header = Some(parse_bool("has_header", &h)?);
        }
        if let Some(c) = set(&self.decimal_comma) {
            o.decimal_comma = Some(parse_bool("decimal_comma", &c)?);
        }
        if let Some(e) = set(&self.encoding) {
            o.encoding = Some(
                e.parse()
                    .map_err(|m: String| AppError::invalid("bad_option", m))?,
            );
        }
        if let Some(schema) = set(&self.schema) {
            o.schema = serde_json::from_str(&schema).map_err(|e| {
                AppError::invalid(
                    "bad_option",
                    format!(
                        "`schema` must be a JSON object of column name to type, such as \
                         {{\"delay\":\"float64\"}}: {e}"
                    ),
                )
            })?;
        }
        o.sheet = set(&self.sheet);
        Ok(o)
    }
}

/// Reads a multipart text field, refusing one longer than [`MAX_TEXT_FIELD`].
async fn text_field(mut field: axum::extract::multipart::Field<'_>) -> ApiResult<String> {
    let name = field.name().unwrap_or("").to_owned();
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        AppError::invalid(
            "bad_multipart",
            format!("the `{name}` field is unreadable: {e}"),
        )
    })? {
        if text.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(Error::TooLarge(format!(
                "the `{name}` field is longer than {MAX_TEXT_FIELD} bytes"
            ))
            .into());
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .map_err(|_| AppError::invalid("bad_multipart", format!("the `{name}` field is not UTF-8")))
}

fn accepted_types() -> String {
    DatasetFormat::ALL
        .iter()
        .map(|f| f.media_type())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores the dataset in `request`'s body: raw (`text/csv`, Parquet, NDJSON) or
/// `multipart/form-data` with a `file` field.
pub async fn ingest_request(
    services: &Services,
    who: &Principal,
    mut hints: UploadHints,
    request: Request,
) -> ApiResult<Dataset> {
    let limit = services.config.uploads.max_bytes;
    check_declared_length(request.headers(), limit)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let explicit_format = hints.format.as_deref().map(parse_format).transpose()?;

    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(AppError::UnsupportedMediaType(format!(
            "Content-Encoding `{}` is not accepted: send the file uncompressed (or as Parquet, \
             which compresses itself)",
            encoding.to_str().unwrap_or("?")
        )));
    }
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let mut form = OptionParams::default();
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
            AppError::invalid(
                "bad_multipart",
                format!("the multipart body is malformed: {e}"),
            )
        })?;
        loop {
            let field = multipart.next_field().await.map_err(|e| {
                AppError::invalid(
                    "bad_multipart",
                    format!("the multipart body is malformed: {e}"),
                )
            })?;
            let Some(field) = field else {
                return Err(AppError::invalid(
                    "missing_file",
                    "the multipart body has no `file` field: send the dataset as field `file`",
                ));
            };
            let slot = match field.name() {
                Some("file") => None,
                Some("name") => Some(&mut hints.name),
                Some("null_values") => Some(&mut form.null_values),
                Some("delimiter") => Some(&mut form.delimiter),
                Some("has_header") => Some(&mut form.has_header),
                Some("encoding") => Some(&mut form.encoding),
                Some("decimal_comma") => Some(&mut form.decimal_comma),
                Some("schema") => Some(&mut form.schema),
                Some("sheet") => Some(&mut form.sheet),
                _ => {
                    // Unknown fields are skipped, but read within the same bound.
                    text_field(field).await?;
                    continue;
                }
            };
            if let Some(slot) = slot {
                let text = text_field(field).await?;
                if slot.is_none() {
                    *slot = Some(text);
                }
                continue;
            }
            let from_form = form.parse()?;
            if from_form != IngestOptions::default() {
                hints.options = merge(&hints.options, &from_form);
            }
            let file_name = field.file_name().map(ToOwned::to_owned);
            let format = explicit_format
                .or_else(|| {
                    field
                        .content_type()
                        .and_then(DatasetFormat::from_media_type)
                })
                .or_else(|| file_name.as_deref().and_then(DatasetFormat::from_file_name))
                .ok_or_else(|| {
                    AppError::UnsupportedMediaType(format!(
                        "cannot tell the file's format: give the part a content type ({}) or a \
                         .csv, .parquet, .ndjson or .xlsx file name",
                        accepted_types()
                    ))
                })?;
            let name = hints
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .or_else(|| file_name.as_deref().map(file_stem))
                .unwrap_or_default();
            let body: ByteStream<'_> = field.map_err(std::io::Error::other).boxed();
            return ingest(services, who, &name, format, &hints.options, body).await;
        }
    }

    let format = match explicit_format {
        Some(f) => f,
        None if content_type.is_empty() => {
            return Err(AppError::UnsupportedMediaType(format!(
                "say what the body is with a Content-Type header: one of {}",
                accepted_types()
            )));
        }
        None => DatasetFormat::from_media_type(&content_type).ok_or_else(|| {
            AppError::UnsupportedMediaType(format!(
                "Content-Type `{content_type}` is not a dataset format Quarry reads: use one of {} \
                 or multipart/form-data with a `file` field",
                accepted_types()
            ))
        })?,
    };
    let name = hints.name.unwrap_or_default();
    let body: ByteStream<'_> = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    ingest(services, who, &name, format, &hints.options, body).await
}

/// `base` with every option `over` sets.
fn merge(base: &IngestOptions, over: &IngestOptions) -> IngestOptions {
    let mut schema = base.schema.clone();
    schema.extend(over.schema.clone());
    IngestOptions {
        null_values: over
            .null_values
            .clone()
            .or_else(|| base.null_values.clone()),
        delimiter: over.delimiter.or(base.delimiter),
        has_header: over.has_header.or(base.has_header),
        encoding: over.encoding.or(base.encoding),
        decimal_comma: over.decimal_comma.or(base.decimal_comma),
        schema,
        sheet: over.sheet.clone().or_else(|| base.sheet.clone()),
    }
}

fn parse_format(s: &str) -> ApiResult<DatasetFormat> {
    s.parse::<DatasetFormat>().map_err(|_| {
        AppError::invalid(
            "bad_format",
            format!("`format={s}` is unknown: use csv, parquet, ndjson or xlsx"),
        )
    })
}

fn file_stem(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    base.rsplit_once('.')
        .map_or(base, |(stem, _)| stem)
        .to_owned()
}

fn check_declared_length(headers: &HeaderMap, limit: u64) -> ApiResult<()> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(Error::TooLarge(format!(
            "the upload is {n} bytes, over the limit of {limit} bytes (uploads.max_bytes): \
             split the file or compress it as Parquet"
        ))
        .into()),
        _ => Ok(()),
    }
}

/// Streams, inspects and records one dataset.
pub async fn ingest(
    services: &Services,
    who: &Principal,
    name: &str,
    format: DatasetFormat,
    options: &IngestOptions,
    body: ByteStream<'_>,
) -> ApiResult<Dataset> {
    let name = name.trim();
    datasets::validate_name(name)?;
    if datasets::name_taken(&services.db, &who.user_id, name).await? {
        return Err(datasets::duplicate_name(name).into());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let blob_key = format!("datasets/{id}.{}", format.extension());
    let typed_key = typed_key(&id);
    // The content's hash, taken as the bytes stream past on their way to the store.
    let mut hasher = ContentHash::default();
    let hashed = body.inspect_ok(|chunk| hasher.update(chunk)).boxed();
    let bytes = services
        .blobs
        .put_stream(&blob_key, hashed, services.config.uploads.max_bytes)
        .await?;
    let sha256 = hasher.hex();

    let recorded = async {
        if bytes == 0 {
            return Err(AppError::invalid(
                "empty_body",
                "the upload is empty: send the file's contents as the body",
            ));
        }
        let (ingested, typed) =
            make_typed_copy(services, &blob_key, format, options, &typed_key).await?;
        let new = NewDataset {
            id: id.clone(),
            owner_id: who.user_id.clone(),
            name: name.to_owned(),
            format,
            blob_key: blob_key.clone(),
            rows: ingested.rows,
            bytes,
            sha256,
            columns: ingested.columns,
            typed,
        };
        datasets::insert(&services.db, &new).await?;
        Ok(())
    }
    .await;

    if let Err(error) = recorded {
        remove_blobs(services, &[blob_key, typed_key]).await;
        return Err(error);
    }
    tracing::info!(dataset_id = %id, bytes, format = %format, "dataset stored");
    Ok(datasets::get(&services.db, who, &id).await?.view)
}

/// The key of a dataset's typed copy; a re-type writes a new one beside it.
fn typed_key(id: &str) -> String {
    format!(
        "datasets/{id}.typed-{}.parquet",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Reads the stored original in the inspection child and stores its typed copy at
/// `typed_key`. Temporary files go with the scratch directory on every path.
async fn make_typed_copy(
    services: &Services,
    blob_key: &str,
    format: DatasetFormat,
    options: &IngestOptions,
    typed_key: &str,
) -> ApiResult<(quarry_engine::ingest::Ingested, TypedCopy)> {
    let file = services.blobs.local_file(blob_key).await?;
    let tmp = services.config.tmp_dir();
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("ingest-")
        .tempdir_in(&tmp)
        .map_err(|e| anyhow::anyhow!("creating a scratch directory: {e}"))?;
    let output = scratch.path().join("typed.parquet");
    let ingested = super::ingest_child::ingest(
        services,
        file.path(),
        format,
        options,
        scratch.path(),
        &output,
    )
    .await?;
    let stored_bytes = services.blobs.put_file(typed_key, &output).await?;
    let typed = TypedCopy {
        parquet_key: typed_key.to_owned(),
        stored_bytes,
        ingest: ingested.options.clone(),
    };
    Ok((ingested, typed))
}

async fn remove_blobs(services: &Services, keys: &[String]) {
    for key in keys {
        if let Err(e) = services.blobs.delete(key).await {
            tracing::error!(blob_key = %key, error = %e, "could not remove a blob");
        }
    }
}

/// Reads a dataset's original again with changed options (types, null markers) and
/// replaces its typed copy. Jobs already run keep their results.
pub async fn retype(
    services: &Services,
    who: &Principal,
    id: &str,
    changes: &IngestOptions,
) -> ApiResult<Dataset> {
    let stored = datasets::get(&services.db, who, id).await?;
    // Start from what was found, so only what the user changes changes; the
    // detected delimiter and encoding are kept, a new schema replaces the old one.
    let mut options = stored.view.ingest.clone().unwrap_or_default();
    if changes.null_values.is_some() {
        options.null_values = changes.null_values.clone();
    }
    options.schema = changes.schema.clone();
    options.delimiter = changes.delimiter.or(options.delimiter);
    options.has_header = changes.has_header.or(options.has_header);
    options.encoding = changes.encoding.or(options.encoding);
    options.decimal_comma = changes.decimal_comma.or(options.decimal_comma);
    options.sheet = changes.sheet.clone().or(options.sheet);
    if stored.view.format == DatasetFormat::Xlsx {
        options.delimiter = None;
        options.decimal_comma = None;
    }
    let new_key = typed_key(id);
    let made = make_typed_copy(
        services,
        &stored.blob_key,
        stored.view.format,
        &options,
        &new_key,
    )
    .await;
    let (ingested, typed) = match made {
        Ok(made) => made,
        Err(e) => {
            remove_blobs(services, &[new_key]).await;
            return Err(e);
        }
    };
    let replaced =
        datasets::replace_typed(&services.db, id, ingested.rows, &ingested.columns, &typed).await;
    match replaced {
        Ok(old) => remove_blobs(services, &old.into_iter().collect::<Vec<_>>()).await,
        Err(e) => {
            remove_blobs(services, &[new_key]).await;
            return Err(e.into());
        }
    }
    tracing::info!(dataset_id = %id, "dataset re-typed");
    Ok(datasets::get(&services.db, who, id).await?.view)
}

/// Deletes a dataset row, then its files and its jobs' result files.
pub async fn delete(services: &Services, who: &Principal, id: &str) -> ApiResult<()> {
    let stored = datasets::get(&services.db, who, id).await?;
    let mut keys = stored.blob_keys();
    keys.extend(datasets::result_blob_keys(&services.db, id).await?);
    let jobs = datasets::job_ids(&services.db, id).await?;
    datasets::delete(&services.db, id).await?;
    // The jobs went with it: their event streams end now (SQLite says nothing of a
    // deleted row to the job watch).
    for job in &jobs {
        services.watch.changed(job, "deleted");
    }
    remove_blobs(services, &keys).await;
    tracing::info!(dataset_id = %id, files = keys.len(), "dataset deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_drop_directories_and_extensions() {
        assert_eq!(file_stem("C:\\data\\sales.2024.csv"), "sales.2024");
        assert_eq!(file_stem("/tmp/x.parquet"), "x");
        assert_eq!(file_stem("noext"), "noext");
    }
}
