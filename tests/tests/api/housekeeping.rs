//! Nothing left behind, and nothing readable by others: a deleted dataset takes its
//! jobs' result files along, a crash mid-upload leaves nothing the start-up sweep
//! does not remove, and the data directory is private.

use crate::ingest::{created, upload};
use crate::jobs::{env, submit_ok, wait_status};
use futures::StreamExt as _;
use quarry_tests::{Quarry, eventually};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn deleting_a_dataset_removes_its_files_and_its_jobs_results() {
    let q = Quarry::start_with(&env(&[])).await;
    let d = created(upload(&q, "?name=d", "text/csv", b"k,v\na,1\nb,2\n".to_vec()).await).await;
    let id = d["id"].as_str().unwrap();
    for analysis in [
        json!({"kind":"profile"}),
        json!({"kind":"sql","query":"SELECT k FROM data"}),
    ] {
        let job = submit_ok(&q, id, analysis).await;
        wait_status(&q, &job, "succeeded", Duration::from_secs(60)).await;
    }
    let files = q.blob_files();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.to_string_lossy().contains("/results/"))
            .count(),
        2,
        "{files:?}"
    );
    let r = q
        .http
        .delete(q.url(&format!("/api/v1/datasets/{id}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        q.blob_files().is_empty(),
        "left behind: {:?}",
        q.blob_files()
    );
}

#[tokio::test]
async fn a_crash_mid_upload_leaves_nothing_after_the_restart_sweep() {
    let q = Quarry::start().await;
    // A big body streamed slowly: the server is killed while it is still reading it,
    // or while its inspection runs.
    let chunk = "id,amount\n".to_owned() + &"1,2.5\n".repeat(100_000);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..200)
        .map(|_| Ok(bytes::Bytes::from(chunk.clone())))
        .collect();
    let stream = futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c
    });
    let request = q
        .http
        .post(q.url("/api/v1/datasets?name=cut"))
        .bearer_auth(&q.admin_token)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let sending = tokio::spawn(request);
    eventually(
        Duration::from_secs(30),
        "part of the upload on disk",
        || async { (!q.blob_files().is_empty()).then_some(()) },
    )
    .await;
    let q = q.crash_and_restart().await;
    let _ = sending.await;
    assert!(
        q.blob_files().is_empty(),
        "left behind: {:?}",
        q.blob_files()
    );
    let r = q
        .http
        .get(q.url("/api/v1/datasets"))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn a_reference_copy_a_crash_left_unrecorded_is_swept_at_the_restart() {
    let q = Quarry::start().await;
    // What a pin leaves when the server dies between copying the result and
    // recording the reference.
    let references = q.data_dir.path().join("blobs").join("references");
    std::fs::create_dir_all(&references).unwrap();
    let stray = references.join("0d1e5c7a-unrecorded.parquet");
    std::fs::write(&stray, b"PAR1 not really").unwrap();
    let q = q.stop_and_restart().await;
    assert!(!stray.exists(), "left behind: {:?}", q.blob_files());
}

#[tokio::test]
async fn the_data_directory_database_and_blobs_are_owner_only() {
    let q = Quarry::start().await;
    created(upload(&q, "?name=p", "text/csv", b"a\n1\n".to_vec()).await).await;
    // Loosened by hand (or by a umask): the next start makes them private again.
    let loose = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(q.data_dir.path(), loose.clone()).unwrap();
    std::fs::set_permissions(q.data_dir.path().join("quarry.db"), loose).unwrap();
    let q = q.crash_and_restart().await;
    let dir = q.data_dir.path();
    assert_eq!(mode(dir), 0o700, "the data directory");
    assert_eq!(mode(&dir.join("blobs")), 0o700, "the blob directory");
    assert_eq!(mode(&dir.join("quarry.db")), 0o600, "the database");
    let files = q.blob_files();
    assert_eq!(files.len(), 2);
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
