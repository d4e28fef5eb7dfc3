//! Where a committed result's bytes are: in the blob store, or (a small one) in its
//! own row, which no sweep or dataset deletion then looks for in the store.

use super::lifecycle::{leased, lifecycle, provenance, result_meta, stored, submitted};
use super::user;
use crate::blob::LocalBlobStore;
use crate::datasets;
use crate::db::Db;
use crate::jobs;
use quarry_domain::Role;

/// A result committed with its bytes reads back with exactly those bytes, as a local
/// file too; a result in the blob store reads back without any. Only the latter is a
/// blob the sweep keeps and a dataset's deletion removes.
pub async fn small_results_are_kept_in_their_row(db: &Db) {
    let owner = user(db, Role::Analyst).await;
    let (life, _queue) = lifecycle(db, 3);
    // Every byte value, so a text column or an encoding on the way would show.
    let bytes: Vec<u8> = (0..=255_u8).cycle().take(70_000).collect();
    let mut ids = Vec::new();
    for (key, inline) in [
        (
            "results/inline.parquet",
            Some(bytes::Bytes::from(bytes.clone())),
        ),
        ("results/blob.parquet", None),
    ] {
        submitted(&life, &owner).await;
        let lease = leased(&life, "w-results").await;
        let id = lease.job_id.clone();
        let meta = jobs::ResultMeta {
            inline,
            ..result_meta(key)
        };
        life.commit(&lease, &meta, &provenance(&lease))
            .await
            .expect("commit")
            .expect("kept");
        ids.push(id);
    }
    let inline = jobs::result(db, &ids[0])
        .await
        .expect("result")
        .expect("stored");
    assert_eq!(inline.inline.as_deref(), Some(&bytes[..]));
    let blobs = LocalBlobStore::open(&std::env::temp_dir().join(super::unique("blobs")))
        .expect("blob store");
    let file = inline.local_file(&blobs).await.expect("a local copy");
    assert_eq!(std::fs::read(file.path()).expect("read"), bytes);
    let blob = jobs::result(db, &ids[1])
        .await
        .expect("result")
        .expect("stored");
    assert!(blob.inline.is_none());

    let referenced = datasets::referenced_blob_keys(db)
        .await
        .expect("referenced");
    assert!(referenced.contains("results/blob.parquet"));
    assert!(!referenced.contains("results/inline.parquet"));
    for (id, want) in ids
        .iter()
        .zip([vec![], vec!["results/blob.parquet".to_owned()]])
    {
        let job = stored(db, id).await;
        let keys = datasets::result_blob_keys(db, &job.view.dataset_id)
            .await
            .expect("keys");
        assert_eq!(keys, want, "{id}");
    }
}
