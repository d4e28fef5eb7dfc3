//! Nothing left behind, and nothing readable by others: a deleted dataset takes its
//! jobs' result files along, a crash mid-upload leaves nothing the start-up sweep
//! does not remove, and the data directory is private.

use crate::ingest::{created, upload};
use crate::jobs::{RESULTS_AS_BLOBS, env, result_page, submit_ok, wait_status};
use futures::StreamExt as _;
use quarry_tests::{Quarry, eventually};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Deletes the dataset `id`: `204`, and no file is left in the blob store.
async fn deleted_leaves_no_file(q: &Quarry, id: &str) {
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
async fn deleting_a_dataset_removes_its_files_and_its_jobs_results() {
    let q = Quarry::start_with(&env(&[RESULTS_AS_BLOBS])).await;
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
    deleted_leaves_no_file(&q, id).await;
}

/// A result of at most `analyses.inline_result_max_kb` is kept in its job's row: no
/// file in the blob store, and it reads like any other (a page, CSV, Parquet); a
/// larger one is a file there. Deleting the dataset leaves neither.
#[tokio::test]
async fn a_small_result_is_kept_in_its_row_and_a_large_one_is_a_file() {
    let q = Quarry::start_with(&env(&[("QUARRY_ANALYSES__INLINE_RESULT_MAX_KB", "4")])).await;
    let rows = 5_000;
    let csv: String = std::iter::once("k,v\n".to_owned())
        .chain((0..rows).map(|i| format!("key-{i:06},{i}\n")))
        .collect();
    let d = created(upload(&q, "?name=d", "text/csv", csv.into_bytes()).await).await;
    let id = d["id"].as_str().unwrap();
    let results = |q: &Quarry| -> Vec<String> {
        q.blob_files()
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .filter(|f| f.contains("/results/"))
            .collect()
    };
    // The sum of 0..rows, by the formula.
    let small = submit_ok(
        &q,
        id,
        json!({"kind":"sql","query":"SELECT SUM(v) AS s FROM data"}),
    )
    .await;
    wait_status(&q, &small, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(
        results(&q),
        Vec::<String>::new(),
        "a small result is no file"
    );
    let page = result_page(&q, &small, "").await;
    assert_eq!(page["rows"][0][0], rows * (rows - 1) / 2, "{page}");
    let download = |format: &'static str| {
        let q = &q;
        let small = small.clone();
        async move {
            let r = q
                .http
                .get(q.url(&format!("/api/v1/jobs/{small}/result?format={format}")))
                .bearer_auth(&q.admin_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{format}");
            r.bytes().await.unwrap()
        }
    };
    let text = download("csv").await;
    assert_eq!(
        std::str::from_utf8(&text).unwrap(),
        format!("s\n{}\n", rows * (rows - 1) / 2)
    );
    let parquet = download("parquet").await;
    let frame = {
        use polars::prelude::{ParquetReader, SerReader as _};
        ParquetReader::new(std::io::Cursor::new(parquet.to_vec()))
            .finish()
            .expect("the download is Parquet")
    };
    let sum = frame
        .column("s")
        .unwrap()
        .cast(&polars::prelude::DataType::Int64);
    assert_eq!(
        (frame.height(), sum.unwrap().i64().unwrap().get(0)),
        (1, Some(rows * (rows - 1) / 2)),
        "the Parquet download's value, by the formula"
    );

    // Every row back: 5,000 distinct keys are far over 4 KiB of Parquet.
    let large = submit_ok(
        &q,
        id,
        json!({"kind":"sql","query":"SELECT k, v FROM data"}),
    )
    .await;
    wait_status(&q, &large, "succeeded", Duration::from_secs(60)).await;
    let files = results(&q);
    assert!(files.len() == 1 && files[0].contains(&large), "{files:?}");
    let page = result_page(&q, &large, "?offset=4999&limit=1").await;
    assert_eq!(page["rows"][0], json!(["key-004999", 4999]), "{page}");
    let sorted = result_page(&q, &large, "?sort=-k&limit=1").await;
    assert_eq!(sorted["rows"][0], json!(["key-004999", 4999]), "{sorted}");

    deleted_leaves_no_file(&q, id).await;
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
