//! Dataset ingestion, shared by `POST /api/v1/datasets` and the web app's upload form.
//!
//! The body is streamed to the blob store (never held whole in memory), then polars
//! reads the stored file for its schema and row count, then the row is recorded. Any
//! failure removes what the earlier steps wrote: a refused upload leaves no file and
//! no row.

use super::error::{ApiResult, AppError};
use super::state::Services;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use futures::{StreamExt as _, TryStreamExt as _};
use quarry_core::Error;
use quarry_core::auth::Principal;
use quarry_core::blob::ByteStream;
use quarry_core::datasets::{self, NewDataset};
use quarry_domain::{Dataset, DatasetFormat};

/// What the client told us about the upload besides the bytes.
#[derive(Debug, Default, Clone)]
pub struct UploadHints {
    pub name: Option<String>,
    pub format: Option<String>,
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

    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
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
            match field.name() {
                Some("file") => {}
                Some("name") if hints.name.is_none() => {
                    let text = field.text().await.map_err(|e| {
                        AppError::invalid(
                            "bad_multipart",
                            format!("the `name` field is unreadable: {e}"),
                        )
                    })?;
                    hints.name = Some(text);
                    continue;
                }
                _ => continue,
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
                         .csv, .parquet or .ndjson file name",
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
            return ingest(services, who, &name, format, body).await;
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
    ingest(services, who, &name, format, body).await
}

fn parse_format(s: &str) -> ApiResult<DatasetFormat> {
    s.parse::<DatasetFormat>().map_err(|_| {
        AppError::invalid(
            "bad_format",
            format!("`format={s}` is unknown: use csv, parquet or ndjson"),
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
    body: ByteStream<'_>,
) -> ApiResult<Dataset> {
    let name = name.trim();
    datasets::validate_name(name)?;
    if datasets::name_taken(&services.db, &who.user_id, name).await? {
        return Err(datasets::duplicate_name(name).into());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let blob_key = format!("datasets/{id}.{}", format.extension());
    let bytes = services
        .blobs
        .put_stream(&blob_key, body, services.config.uploads.max_bytes)
        .await?;

    let recorded = async {
        if bytes == 0 {
            return Err(AppError::invalid(
                "empty_body",
                "the upload is empty: send the file's contents as the body",
            ));
        }
        let file = services.blobs.local_file(&blob_key).await?;
        let path = file.path().to_owned();
        let inspection =
            tokio::task::spawn_blocking(move || quarry_worker::inspect::inspect(&path, format))
                .await
                .map_err(|e| AppError::from(anyhow::anyhow!("inspection task failed: {e}")))?
                .map_err(|e| match e {
                    quarry_worker::inspect::InspectError::Malformed(m) => AppError::invalid(
                        "malformed_file",
                        format!(
                            "the file is not valid {}: {m}",
                            format.as_str().to_uppercase()
                        ),
                    ),
                    quarry_worker::inspect::InspectError::Internal(e) => AppError::from(e),
                })?;
        let new = NewDataset {
            id: id.clone(),
            owner_id: who.user_id.clone(),
            name: name.to_owned(),
            format,
            blob_key: blob_key.clone(),
            rows: inspection.rows,
            bytes,
            columns: inspection.columns,
        };
        datasets::insert(&services.db, &new).await?;
        Ok(())
    }
    .await;

    if let Err(error) = recorded {
        if let Err(e) = services.blobs.delete(&blob_key).await {
            tracing::error!(blob_key, error = %e, "could not remove a refused upload");
        }
        return Err(error);
    }
    tracing::info!(dataset_id = %id, rows = bytes, format = %format, "dataset stored");
    Ok(datasets::get(&services.db, who, &id).await?.view)
}

/// Deletes a dataset row and then its file.
pub async fn delete(services: &Services, who: &Principal, id: &str) -> ApiResult<()> {
    let stored = datasets::get(&services.db, who, id).await?;
    datasets::delete(&services.db, id).await?;
    services.blobs.delete(&stored.blob_key).await?;
    tracing::info!(dataset_id = %id, "dataset deleted");
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
