//! The blob-store port: where dataset files and job results live.
//!
//! The embedded adapter is a local directory (through `object_store`); the cloud
//! adapter is S3. Writes are all-or-nothing: a failed or refused upload leaves no
//! object behind.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use crate::error::{Error, Result};
use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use std::fmt;
use std::path::{Path, PathBuf};

/// A stream of body chunks, as an HTTP server hands them over.
pub type ByteStream<'a> = BoxStream<'a, std::result::Result<Bytes, std::io::Error>>;

/// The SHA-256 of a stream's bytes, fed as they pass (an upload's content hash).
#[derive(Debug, Clone, Default)]
pub struct ContentHash(sha2::Sha256);

impl ContentHash {
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    /// Lowercase hex.
    pub fn hex(self) -> String {
        hex::encode(sha2::Digest::finalize(self.0))
    }

    /// The SHA-256 of `bytes` at once, lowercase hex.
    pub fn of(bytes: &[u8]) -> String {
        let mut hash = Self::default();
        hash.update(bytes);
        hash.hex()
    }

    /// The SHA-256 of a file's content, read in pieces (blocking: call it off the
    /// runtime).
    pub fn of_file(path: &Path) -> std::io::Result<String> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path)?;
        let mut hash = Self::default();
        let mut buf = vec![0_u8; 1 << 16];
        loop {
            match file.read(&mut buf)? {
                0 => return Ok(hash.hex()),
                n => hash.update(&buf[..n]),
            }
        }
    }
}

/// A blob readable as a local file (polars reads files). For the local adapter this
/// is the stored file itself; a remote adapter downloads to a temporary file that is
/// removed when this value is dropped.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl LocalFile {
    /// A downloaded copy, removed when the value is dropped.
    pub fn temporary(temp: tempfile::TempPath) -> Self {
        Self {
            path: temp.to_path_buf(),
            _temp: Some(temp),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where polars can read a blob itself (ranged requests to object storage): a URL and
/// `object_store` options (e.g. `aws_allow_http` for an emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolarsLocation {
    pub url: String,
    pub options: Vec<(String, String)>,
}

/// A stored blob as [`BlobStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// Where blobs are kept.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Streams `body` to `key` and returns the bytes written. Refuses with
    /// [`Error::TooLarge`] once more than `limit` bytes arrive; on any error nothing is
    /// left at `key`.
    async fn put_stream(&self, key: &str, body: ByteStream<'_>, limit: u64) -> Result<u64>;

    /// Copies a local file to `key` (results written by the engine).
    async fn put_file(&self, key: &str, file: &Path) -> Result<u64>;

    /// Stores a local file the caller no longer needs at `key`: the local store moves
    /// it into place when it can (no second file, no copy), so the file may be gone
    /// once this succeeds. On an error the file is still there.
    async fn put_file_moving(&self, key: &str, file: &Path) -> Result<u64> {
        self.put_file(key, file).await
    }

    /// Streams the blob at `key`.
    async fn get_stream(&self, key: &str) -> Result<ByteStream<'static>>;

    /// Bytes `range` of the blob (a range past the end is cut at the end).
    async fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes>;

    /// A local file with the blob's contents.
    async fn local_file(&self, key: &str) -> Result<LocalFile>;

    /// Removes the blob; a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// The blobs whose keys start with `prefix`, for the start-up sweep of files a
    /// crash left without a database row.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// A URL from which a browser can download the blob for `ttl`, saved as
    /// `download_name`; `None` when the store cannot sign one (then the server streams).
    async fn presigned_get(
        &self,
        _key: &str,
        _ttl: std::time::Duration,
        _download_name: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// Where polars can read the blob without a local copy; `None` = use `local_file`.
    fn polars_location(&self, _key: &str) -> Option<PolarsLocation> {
        None
    }
}

/// The embedded adapter: a directory on this machine.
#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    store: LocalFileSystem,
}

impl LocalBlobStore {
    /// Opens (creating) the directory and removes staging files left by uploads that
    /// were cut off by a crash.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        private_dir(root)?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let removed = sweep_staging_files(&root)?;
        if removed > 0 {
            tracing::warn!(removed, "removed partial uploads left by an earlier crash");
        }
        let store = LocalFileSystem::new_with_prefix(&root)
            .context("opening the local blob store")?
            .with_automatic_cleanup(true);
        Ok(Self { root, store })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fs_path(&self, key: &str) -> Result<PathBuf> {
        self.store
            .path_to_filesystem(&ObjectPath::from(key))
            .with_context(|| format!("blob key {key}"))
            .map_err(Error::Internal)
    }
}

/// Makes a blob file readable by its owner only (datasets are private).
async fn owner_only(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .await
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// Copies `file` to `target` under a staging name first, so readers never see half a
/// file, readable by its owner only; the bytes copied.
fn publish(file: &Path, target: &Path) -> Result<u64> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).context("creating blob directory")?;
    }
    let staging = target.with_file_name(format!(
        "{}#0",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("blob")
    ));
    let bytes = std::fs::copy(file, &staging).context("copying into blob store")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", staging.display()))?;
    }
    std::fs::rename(&staging, target).context("publishing blob")?;
    Ok(bytes)
}

/// Creates `dir` (and its parents) readable by its owner only.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// `object_store` stages multipart uploads as `<name>#<n>`; after a crash they remain.
fn sweep_staging_files(dir: &Path) -> anyhow::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += sweep_staging_files(&path)?;
        } else if is_staging_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn internal(e: object_store::Error, what: &str) -> Error {
    Error::Internal(anyhow::Error::new(e).context(what.to_owned()))
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_stream(&self, key: &str, mut body: ByteStream<'_>, limit: u64) -> Result<u64> {
        let location = ObjectPath::from(key);
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| internal(e, "starting upload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut written: u64 = 0;
        let failure = loop {
            match body.next().await {
                None => break None,
                Some(Err(e)) => {
                    break Some(Error::invalid(
                        "upload_interrupted",
                        format!(
                            "the upload was interrupted after {written} bytes ({e}): send it again"
                        ),
                    ));
                }
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    if written > limit {
                        break Some(Error::TooLarge(format!(
                            "the upload is larger than the limit of {limit} bytes \
                             (uploads.max_bytes): split the file or compress it as Parquet"
                        )));
                    }
                    if let Err(e) = writer.wait_for_capacity(2).await {
                        break Some(internal(e, "writing upload"));
                    }
                    writer.put(chunk);
                }
            }
        };
        if let Some(error) = failure {
            writer
                .abort()
                .await
                .map_err(|e| internal(e, "aborting upload"))?;
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(|e| internal(e, "finishing upload"))?;
        owner_only(&self.fs_path(key)?).await?;
        Ok(written)
    }

    async fn put_file(&self, key: &str, file: &Path) -> Result<u64> {
        let target = self.fs_path(key)?;
        let file = file.to_owned();
        // One trip to a blocking thread for the whole publication, not one per call:
        // a worker stores a result per job, and each trip is a thread to wake.
        tokio::task::spawn_blocking(move || publish(&file, &target))
            .await
            .context("storing a blob")?
    }

    async fn put_file_moving(&self, key: &str, file: &Path) -> Result<u64> {
        let target = self.fs_path(key)?;
        let file = file.to_owned();
        tokio::task::spawn_blocking(move || {
            // A rename within one file system publishes the file whole, as the copy
            // does; across file systems (a temp dir elsewhere) it is copied instead.
            match std::fs::metadata(&file).and_then(|m| {
                std::fs::rename(&file, &target)?;
                Ok(m.len())
            }) {
                Ok(bytes) => Ok(bytes),
                Err(_) => publish(&file, &target),
            }
        })
        .await
        .context("storing a blob")?
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream<'static>> {
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    Error::NotFound(format!("blob {key} is missing"))
                }
                e => internal(e, "reading blob"),
            })?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed())
    }

    async fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = ObjectPath::from(key);
        let size = match self.store.head(&path).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound(format!("blob {key} is missing")));
            }
            Err(e) => return Err(internal(e, "reading blob size")),
        };
        let range = range.start.min(size)..range.end.min(size);
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&path, range)
            .await
            .map_err(|e| internal(e, "reading a blob range"))
    }

    async fn local_file(&self, key: &str) -> Result<LocalFile> {
        let path = self.fs_path(key)?;
        // A `stat` on a local disk, in place: a trip to a blocking thread and back
        // costs more (a worker asks this once a job).
        if !path.try_exists().unwrap_or(false) {
            return Err(Error::NotFound(format!("blob {key} is missing")));
        }
        Ok(LocalFile { path, _temp: None })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(internal(e, "deleting blob")),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let prefix = ObjectPath::from(prefix.trim_end_matches('/'));
        let mut listed = Vec::new();
        let mut stream = self.store.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            match meta {
                Ok(meta) => listed.push(Listed {
                    key: meta.location.to_string(),
                    modified_ms: meta.last_modified.timestamp_millis(),
                }),
                // A file removed while listing is not there any more: fine.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(internal(e, "listing blobs")),
            }
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> ByteStream<'static> {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_streamed_blob_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let n = store
            .put_stream("d/a.csv", chunks(vec![b"a,b\n", b"1,2\n"]), 100)
            .await
            .unwrap();
        assert_eq!(n, 8);
        let file = store.local_file("d/a.csv").await.unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), b"a,b\n1,2\n");
        let mut got = Vec::new();
        let mut stream = store.get_stream("d/a.csv").await.unwrap();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"a,b\n1,2\n");
        store.delete("d/a.csv").await.unwrap();
        store.delete("d/a.csv").await.unwrap();
        assert!(matches!(
            store.local_file("d/a.csv").await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let err = store
            .put_stream("d/big.csv", chunks(vec![b"0123456789", b"0123456789"]), 15)
            .await;
        assert!(matches!(err, Err(Error::TooLarge(_))), "{err:?}");
        assert!(
            files_under(store.root()).is_empty(),
            "{:?}",
            files_under(store.root())
        );
    }

    #[tokio::test]
    async fn local_store_passes_the_blob_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        conformance::run_all(&store, 3 << 20).await;
    }

    #[test]
    fn staging_files_from_a_crash_are_swept_on_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x.csv#1"), b"half").unwrap();
        std::fs::write(dir.path().join("d/keep.csv"), b"whole").unwrap();
        LocalBlobStore::open(dir.path()).unwrap();
        assert_eq!(files_under(dir.path()), vec![dir.path().join("d/keep.csv")]);
        assert!(
            is_staging_name("a.parquet#12") && !is_staging_name("a#b") && !is_staging_name("a#")
        );
    }
}
