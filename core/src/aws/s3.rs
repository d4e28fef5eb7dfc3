//! The blob store on Amazon S3.
//!
//! * Writes stream: a body is cut into [`PART_SIZE`] parts sent as a multipart upload
//!   (one `PutObject` when it fits in one part), so memory stays at one part whatever
//!   the size. A failed or refused upload is aborted: nothing is left at the key.
//! * Reads stream too, and [`BlobStore::read_range`] fetches byte ranges; polars reads
//!   Parquet straight from S3 ([`BlobStore::polars_location`]) with ranged requests, so
//!   it fetches only the footer and the column chunks an analysis needs.
//! * Downloads are short-lived presigned URLs: the bytes go from S3 to the browser.

use super::internal;
use crate::blob::{BlobStore, ByteStream, LocalFile, PolarsLocation};
use crate::error::{Error, Result};
use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Datasets and results in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    /// Where downloads for local reading are written.
    scratch: PathBuf,
    /// Whether the endpoint is plain HTTP (an emulator), for polars' reader.
    allow_http: bool,
}

impl S3BlobStore {
    /// A store on `bucket`. `path_style` addresses the bucket in the path
    /// (`endpoint/bucket/key`), as emulators need; AWS itself uses virtual hosts.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        path_style: bool,
        scratch: &Path,
    ) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: bucket.to_owned(),
            scratch: scratch.to_owned(),
            allow_http: sdk.endpoint_url().is_some_and(|u| u.starts_with("http://")),
        }
    }

    /// Creates the bucket if it does not exist (tests and emulators; the stacks create
    /// the real one, encrypted and private).
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| internal("creating the bucket", e))?;
        Ok(())
    }

    async fn upload(&self, key: &str, mut body: ByteStream<'_>, limit: u64) -> Result<u64> {
        let mut buffer = BytesMut::with_capacity(PART_SIZE);
        let mut total: u64 = 0;
        let mut multipart: Option<Multipart> = None;
        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::invalid(
                        "upload_interrupted",
                        format!("the upload was interrupted: {e}"),
                    )
                })?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(Error::TooLarge(format!(
                        "the upload is larger than the limit of {limit} bytes"
                    )));
                }
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= PART_SIZE {
                    let part = buffer.split_to(PART_SIZE).freeze();
                    if multipart.is_none() {
                        multipart = Some(self.start_multipart(key).await?);
                    }
                    if let Some(m) = multipart.as_mut() {
                        self.upload_part(key, m, part).await?;
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Some(m) = multipart {
                self.abort(key, &m).await;
            }
            return Err(e);
        }
        match multipart {
            None => {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(S3Body::from(buffer.freeze()))
                    .send()
                    .await
                    .map_err(|e| internal("putting an object", e))?;
            }
            Some(mut m) => {
                let finished: Result<()> = async {
                    if !buffer.is_empty() {
                        self.upload_part(key, &mut m, buffer.freeze()).await?;
                    }
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(&m.upload_id)
                        .multipart_upload(
                            CompletedMultipartUpload::builder()
                                .set_parts(Some(m.parts.clone()))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| internal("completing a multipart upload", e))?;
                    Ok(())
                }
                .await;
                if let Err(e) = finished {
                    self.abort(key, &m).await;
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    async fn start_multipart(&self, key: &str) -> Result<Multipart> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| internal("starting a multipart upload", e))?;
        Ok(Multipart {
            upload_id: out
                .upload_id
                .context("CreateMultipartUpload returned no upload id")?,
            parts: Vec::new(),
        })
    }

    async fn upload_part(&self, key: &str, m: &mut Multipart, part: Bytes) -> Result<()> {
        let number = i32::try_from(m.parts.len() + 1).unwrap_or(i32::MAX);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&m.upload_id)
            .part_number(number)
            .body(S3Body::from(part))
            .send()
            .await
            .map_err(|e| internal("uploading a part", e))?;
        m.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        Ok(())
    }

    async fn abort(&self, key: &str, m: &Multipart) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&m.upload_id)
            .send()
            .await
        {
            tracing::error!(key, error = %internal("aborting a multipart upload", e), "upload left parts behind");
        }
    }

    async fn get(&self, key: &str, range: Option<String>) -> Result<S3Body> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await
        {
            Ok(out) => Ok(out.body),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(Error::NotFound(format!("no stored file at `{key}`")))
            }
            Err(e) => Err(internal("getting an object", e)),
        }
    }
}

#[derive(Debug)]
struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn list(&self, prefix: &str) -> Result<Vec<crate::blob::Listed>> {
        let mut listed = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| internal("listing objects", e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    listed.push(crate::blob::Listed {
                        key: key.to_owned(),
                        modified_ms: object
                            .last_modified()
                            .and_then(|t| t.to_millis().ok())
                            .unwrap_or(0),
                    });
                }
            }
        }
        Ok(listed)
    }

    async fn put_stream(&self, key: &str, body: ByteStream<'_>, limit: u64) -> Result<u64> {
        self.upload(key, body, limit).await
    }

    async fn put_file(&self, key: &str, file: &Path) -> Result<u64> {
        let opened = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let body = tokio_util::io::ReaderStream::with_capacity(opened, 1024 * 1024).boxed();
        self.upload(key, body, u64::MAX).await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream<'static>> {
        let body = self.get(key, None).await?;
        let reader = body.into_async_read();
        Ok(tokio_util::io::ReaderStream::new(reader).boxed())
    }

    async fn read_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let body = self
            .get(
                key,
                Some(format!("bytes={}-{}", range.start, range.end - 1)),
            )
            .await?;
        let data = body
            .collect()
            .await
            .map_err(|e| internal("reading a byte range", e))?;
        Ok(data.into_bytes())
    }

    async fn local_file(&self, key: &str) -> Result<LocalFile> {
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .with_context(|| format!("creating {}", self.scratch.display()))?;
        let temp = tempfile::NamedTempFile::new_in(&self.scratch)
            .context("creating a download file")?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&temp)
            .await
            .context("opening the download file")?;
        let mut body = self.get(key, None).await?;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| internal("downloading an object", e))?
        {
            file.write_all(&chunk)
                .await
                .context("writing the download file")?;
        }
        file.flush().await.context("flushing the download file")?;
        Ok(LocalFile::temporary(temp))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| internal("deleting an object", e))?;
        Ok(())
    }

    async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
        download_name: &str,
    ) -> Result<Option<String>> {
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| internal("presigning configuration", e))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{download_name}\""))
            .presigned(config)
            .await
            .map_err(|e| internal("presigning a download", e))?;
        Ok(Some(request.uri().to_owned()))
    }

    fn polars_location(&self, key: &str) -> Option<PolarsLocation> {
        let mut options = Vec::new();
        if self.allow_http {
            options.push(("aws_allow_http".to_owned(), "true".to_owned()));
        }
        Some(PolarsLocation {
            url: format!("s3://{}/{key}", self.bucket),
            options,
        })
    }
}
