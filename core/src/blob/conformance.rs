//! The behaviour every [`BlobStore`] adapter must have, as runnable checks: the local
//! directory runs them in its unit tests, S3 against the emulator in the integration
//! tests. Keys are unique per run, so the checks may share a store.
//!
//! These panic on failure, like test assertions.

use super::{BlobStore, ByteStream};
use crate::error::Error;
use bytes::Bytes;
use futures::StreamExt as _;

/// Bytes that differ at every offset, so a misplaced range shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn in_chunks(data: &[u8], chunk: usize) -> ByteStream<'static> {
    let parts: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts).boxed()
}

async fn read_all(store: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut stream = store.get_stream(key).await.expect("get_stream");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

fn key(name: &str) -> String {
    format!("conformance/{}/{name}", uuid::Uuid::new_v4().simple())
}

/// Runs every check; `large` is a size that needs several parts in a multipart upload.
pub async fn run_all(store: &dyn BlobStore, large: usize) {
    large_streamed_blob_round_trips_with_ranges(store, large).await;
    upload_over_the_limit_leaves_nothing(store, large).await;
    missing_blobs_are_not_found_and_deleting_twice_is_harmless(store).await;
    listing_finds_the_blobs_under_a_prefix_and_when_they_were_written(store).await;
}

pub async fn listing_finds_the_blobs_under_a_prefix_and_when_they_were_written(
    store: &dyn BlobStore,
) {
    let prefix = key("listed");
    let before = crate::clock::now_ms() - 60_000;
    for name in ["a.csv", "b/c.parquet"] {
        store
            .put_stream(&format!("{prefix}/{name}"), in_chunks(b"x", 1), 10)
            .await
            .expect("put");
    }
    let mut listed = store.list(&format!("{prefix}/")).await.expect("list");
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        [format!("{prefix}/a.csv"), format!("{prefix}/b/c.parquet")]
    );
    assert!(listed.iter().all(|l| l.modified_ms >= before), "{listed:?}");
    assert!(
        store.list(&key("nothing")).await.expect("list").is_empty(),
        "an unknown prefix lists nothing"
    );
    for l in &listed {
        store.delete(&l.key).await.expect("delete");
    }
}

pub async fn large_streamed_blob_round_trips_with_ranges(store: &dyn BlobStore, large: usize) {
    let data = pattern(large);
    let key = key("large.bin");
    let written = store
        .put_stream(&key, in_chunks(&data, 1 << 20), u64::MAX)
        .await
        .expect("put_stream");
    assert_eq!(written, data.len() as u64);
    assert!(read_all(store, &key).await == data, "streamed back intact");
    let mid = large as u64 / 2;
    let range = store
        .read_range(&key, mid..mid + 1000)
        .await
        .expect("read_range");
    assert_eq!(&range[..], &data[mid as usize..mid as usize + 1000]);
    let tail = store
        .read_range(&key, large as u64 - 10..large as u64 + 50)
        .await
        .expect("range past the end");
    assert_eq!(&tail[..], &data[large - 10..], "cut at the end");
    let local = store.local_file(&key).await.expect("local_file");
    assert!(std::fs::read(local.path()).expect("read local copy") == data);

    let small = key.replace("large", "small");
    store
        .put_file(&small, local.path())
        .await
        .expect("put_file");
    assert_eq!(
        store.read_range(&small, 0..4).await.expect("range"),
        Bytes::from(data[..4].to_vec())
    );
    // A file handed over whole: its bytes arrive, whether it was moved or copied.
    let moved = key.replace("large", "moved");
    let bytes = store
        .put_file_moving(&moved, local.path())
        .await
        .expect("put_file_moving");
    assert_eq!(bytes, large as u64);
    let back = store.local_file(&moved).await.expect("local_file");
    assert!(std::fs::read(back.path()).expect("read moved") == data);
    for k in [&small, &moved, &key] {
        store.delete(k).await.expect("delete");
    }
}

pub async fn upload_over_the_limit_leaves_nothing(store: &dyn BlobStore, large: usize) {
    let key = key("too-big.bin");
    let limit = large as u64 - 1;
    let refused = store
        .put_stream(&key, in_chunks(&pattern(large), 1 << 20), limit)
        .await;
    assert!(matches!(refused, Err(Error::TooLarge(_))), "{refused:?}");
    assert!(
        matches!(store.get_stream(&key).await, Err(Error::NotFound(_))),
        "a refused upload leaves no object"
    );
}

pub async fn missing_blobs_are_not_found_and_deleting_twice_is_harmless(store: &dyn BlobStore) {
    let key = key("missing.bin");
    assert!(matches!(
        store.get_stream(&key).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.local_file(&key).await,
        Err(Error::NotFound(_))
    ));
    store.delete(&key).await.expect("deleting a missing blob");
    store.delete(&key).await.expect("twice");
}
