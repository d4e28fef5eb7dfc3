//! Sorted pages of a result without sorting it on every page request: the first
//! request for an order sorts the result once into a local cache of sorted copies;
//! later pages of that order read the copy by slice.
//!
//! A committed result never changes, so a copy keyed by the result's blob key, the
//! sort column's position and the direction is valid for as long as it exists. The
//! cache is bounded in entries and bytes; the least recently used copies go first.
//! Readers hold an open file, so an eviction never breaks a page being read.

use super::{ResultPage, page_of};
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Rows per row group of a sorted copy: a page reads at most two small row groups.
const SORTED_ROW_GROUP: usize = 16_384;

/// The longest file name the cache uses; longer keys are sorted without caching.
const MAX_NAME: usize = 200;

/// Which sorted copy: the result at `blob_key` sorted by `column` (its position in
/// the result is `index`), nulls last, ties in their original order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub blob_key: String,
    pub column: String,
    pub index: usize,
    pub descending: bool,
}

impl SortKey {
    /// The cache file's name: the blob key with every byte outside `[A-Za-z0-9.-]`
    /// escaped as `_XX` (so distinct keys never share a name), the column position
    /// and the direction.
    fn file_name(&self) -> Option<String> {
        let mut name = String::new();
        for b in self.blob_key.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                name.push(b as char);
            } else {
                name.push_str(&format!("_{b:02X}"));
            }
        }
        let direction = if self.descending { "desc" } else { "asc" };
        name.push_str(&format!(".sorted-{}-{direction}.parquet", self.index));
        (name.len() <= MAX_NAME).then_some(name)
    }
}

/// A directory of sorted copies, bounded in count and total size.
#[derive(Debug, Clone)]
pub struct SortCache {
    dir: PathBuf,
    max_entries: usize,
    max_bytes: u64,
}

impl SortCache {
    /// A cache in `dir` (created when first written) holding at most `max_entries`
    /// copies and `max_bytes` bytes.
    pub fn new(dir: impl Into<PathBuf>, max_entries: usize, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The page from the cached copy, or `None` when there is none yet.
    pub fn cached_page(
        &self,
        key: &SortKey,
        offset: u64,
        limit: u64,
    ) -> PolarsResult<Option<ResultPage>> {
        let Some(name) = key.file_name() else {
            return Ok(None);
        };
        let file = match File::open(self.dir.join(name)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Recently used copies are evicted last.
        if let Err(e) = file.set_modified(SystemTime::now()) {
            tracing::debug!(error = %e, "could not touch a sorted copy");
        }
        page_of(file, offset, limit).map(Some)
    }

    /// Sorts the result in `source` (a local copy of the blob) into the cache and
    /// answers the page from the sorted copy.
    pub fn build_page(
        &self,
        key: &SortKey,
        source: &Path,
        offset: u64,
        limit: u64,
    ) -> PolarsResult<ResultPage> {
        std::fs::create_dir_all(&self.dir)?;
        let building = tempfile::Builder::new()
            .prefix(".building-")
            .suffix(".parquet")
            .tempfile_in(&self.dir)?
            .into_temp_path();
        sort_into(source, &key.column, key.descending, &building)?;
        let file = File::open(&building)?;
        match key.file_name() {
            Some(name) => {
                let path = self.dir.join(name);
                building.persist(&path).map_err(|e| e.error)?;
                self.evict(&path)?;
            }
            // Uncacheable: the open file stays readable after the name is removed.
            None => drop(building),
        }
        page_of(file, offset, limit)
    }

    /// Removes the least recently used copies until the bounds hold, never `keep`.
    /// Copies half-built by a crashed process are removed once they are an hour old.
    fn evict(&self, keep: &Path) -> PolarsResult<()> {
        let now = SystemTime::now();
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            let path = entry.path();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".building-")
            {
                let age = now.duration_since(modified).unwrap_or_default();
                if age.as_secs() > 3600 {
                    remove(&path);
                }
                continue;
            }
            entries.push((modified, meta.len(), path));
        }
        entries.sort_by_key(|(modified, _, _)| *modified);
        let mut count = entries.len();
        let mut bytes: u64 = entries.iter().map(|(_, len, _)| len).sum();
        for (_, len, path) in entries {
            if count <= self.max_entries && bytes <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            remove(&path);
            count -= 1;
            bytes = bytes.saturating_sub(len);
        }
        Ok(())
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not evict a sorted copy");
    }
}

/// Sorts the Parquet file `source` by `by` (nulls last, stable) into `out` with the
/// streaming engine.
fn sort_into(source: &Path, by: &str, descending: bool, out: &Path) -> PolarsResult<()> {
    let options = ParquetWriteOptions {
        row_group_size: Some(SORTED_ROW_GROUP),
        ..Default::default()
    };
    crate::scan::scan(source, quarry_domain::DatasetFormat::Parquet, None)?
        .sort(
            [by],
            SortMultipleOptions::default()
                .with_order_descending(descending)
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .sink(
            SinkDestination::File {
                target: SinkTarget::Path(PlRefPath::try_from_path(out)?),
            },
            FileWriteFormat::Parquet(Arc::new(options)),
            UnifiedSinkArgs::default(),
        )?
        .collect_with_engine(Engine::Streaming)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::write;
    use serde_json::Value;

    fn key(blob_key: &str, column: &str, index: usize, descending: bool) -> SortKey {
        SortKey {
            blob_key: blob_key.to_owned(),
            column: column.to_owned(),
            index,
            descending,
        }
    }

    fn ids(page: &ResultPage) -> Vec<i64> {
        page.rows.iter().map(|r| r[0].as_i64().unwrap()).collect()
    }

    /// `id` 0..n, `v` with ties and nulls.
    fn result(dir: &Path, n: i64) -> PathBuf {
        let path = dir.join("result.parquet");
        let v: Vec<Option<i64>> = (0..n)
            .map(|i| (i % 11 != 3).then_some((i * 7919) % 13))
            .collect();
        let mut df = df!("id" => (0..n).collect::<Vec<_>>(), "v" => v).unwrap();
        write(&path, &mut df, 1_000);
        path
    }

    #[test]
    fn sorted_pages_match_an_independent_stable_sort_and_are_served_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let n = 5_000;
        let source = result(dir.path(), n);
        let cache = SortCache::new(dir.path().join("cache"), 8, u64::MAX);
        let k = key("results/job-1.attempt-1-w.parquet", "v", 1, true);
        assert!(cache.cached_page(&k, 0, 10).unwrap().is_none());

        let mut expected: Vec<(i64, Option<i64>)> = (0..n)
            .map(|i| (i, (i % 11 != 3).then_some((i * 7919) % 13)))
            .collect();
        // Descending, nulls last, ties in their original order.
        expected.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let expected: Vec<i64> = expected.into_iter().map(|(id, _)| id).collect();

        let first = cache.build_page(&k, &source, 0, 700).unwrap();
        assert_eq!((first.total_rows, first.limit), (n as u64, 700));
        let mut got = ids(&first);
        // The source is gone: every later page comes from the sorted copy.
        std::fs::remove_file(&source).unwrap();
        let mut offset = 700;
        while offset < n as u64 {
            let page = cache.cached_page(&k, offset, 700).unwrap().expect("cached");
            assert_eq!(page.offset, offset);
            got.extend(ids(&page));
            offset += 700;
        }
        assert_eq!(got, expected);
        let last = cache.cached_page(&k, n as u64 - 1, 700).unwrap().unwrap();
        assert_eq!(last.rows[0][1], Value::Null, "nulls sort last");
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_evicting_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let source = result(dir.path(), 100);
        let cache_dir = dir.path().join("cache");
        let cache = SortCache::new(&cache_dir, 2, u64::MAX);
        let a = key("results/a.parquet", "v", 1, false);
        let b = key("results/b.parquet", "v", 1, false);
        let c = key("results/c.parquet", "id", 0, true);
        cache.build_page(&a, &source, 0, 10).unwrap();
        cache.build_page(&b, &source, 0, 10).unwrap();
        // Using `a` makes `b` the least recently used.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(cache_dir.join(b.file_name().unwrap()))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(cache.cached_page(&a, 0, 10).unwrap().is_some());
        let page = cache.build_page(&c, &source, 0, 3).unwrap();
        assert_eq!(ids(&page), [99, 98, 97]);
        assert!(cache.cached_page(&a, 0, 1).unwrap().is_some());
        assert!(cache.cached_page(&b, 0, 1).unwrap().is_none(), "evicted");
        assert!(cache.cached_page(&c, 0, 1).unwrap().is_some());
        let files = std::fs::read_dir(&cache_dir).unwrap().count();
        assert_eq!(files, 2, "no half-built copy is left behind");
    }

    #[test]
    fn cache_names_are_distinct_per_key_and_long_keys_are_not_cached() {
        let names = [
            key("results/a_b.parquet", "v", 1, false),
            key("results/a/b.parquet", "v", 1, false),
            key("results/a/b.parquet", "v", 2, false),
            key("results/a/b.parquet", "v", 1, true),
        ]
        .map(|k| k.file_name().unwrap());
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| !n.contains('/')));

        let dir = tempfile::tempdir().unwrap();
        let source = result(dir.path(), 10);
        let cache = SortCache::new(dir.path().join("cache"), 4, u64::MAX);
        let long = key(&"x/".repeat(200), "id", 0, true);
        assert_eq!(
            ids(&cache.build_page(&long, &source, 0, 2).unwrap()),
            [9, 8]
        );
        assert!(cache.cached_page(&long, 0, 2).unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0
        );
    }
}
