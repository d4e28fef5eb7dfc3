//! Datasets over REST: upload, list, read, delete, isolation, and every bad input.

use quarry_tests::Quarry;
use quarry_tests::fixtures::{mixed_csv, sha256sum};
use serde_json::Value;

fn column_types(dataset: &Value) -> Vec<(String, String)> {
    dataset["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn upload(
    q: &Quarry,
    token: &str,
    query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    q.http
        .post(q.url(&format!("/api/v1/datasets{query}")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn list(q: &Quarry, token: &str) -> Vec<Value> {
    let r = q
        .http
        .get(q.url("/api/v1/datasets"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

/// The state after a refused upload: no blob file and no dataset row (as the admin sees).
async fn assert_nothing_stored(q: &Quarry, what: &str) {
    assert!(
        q.blob_files().is_empty(),
        "{what}: files left behind: {:?}",
        q.blob_files()
    );
    assert!(
        list(q, &q.admin_token).await.is_empty(),
        "{what}: a dataset row was left behind"
    );
}

async fn expect_error(r: reqwest::Response, status: u16, code: &str, message_part: &str) {
    assert_eq!(r.status().as_u16(), status, "status for {code}");
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "message `{message}` should mention `{message_part}`"
    );
}

#[tokio::test]
async fn a_300k_row_csv_upload_reports_its_rows_and_column_types() {
    let q = Quarry::start().await;
    let csv = mixed_csv(300_000, 7);
    let bytes = csv.len() as u64;
    let digest = sha256sum(csv.as_bytes());
    let r = upload(&q, &q.admin_token, "?name=sales", "text/csv", csv.clone()).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["name"], "sales");
    assert_eq!(created["format"], "csv");
    assert_eq!(created["rows"], 300_000);
    assert_eq!(created["bytes"], bytes);
    assert_eq!(
        created["sha256"], digest,
        "the content's SHA-256, as sha256sum computes it"
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let expected: Vec<(String, String)> = [
        ("id", "int64"),
        ("category", "string"),
        ("amount", "float64"),
        ("quantity", "int64"),
        ("active", "bool"),
        ("note", "string"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(column_types(&created), expected);

    let id = created["id"].as_str().unwrap();
    let r = q
        .http
        .get(q.url(&format!("/api/v1/datasets/{id}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), created);
    assert_eq!(list(&q, &q.admin_token).await, vec![created.clone()]);
    // The original as uploaded, and the typed Parquet copy analyses read.
    let mut sizes: Vec<u64> = q
        .blob_files()
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    sizes.sort_unstable();
    let typed = created["stored_bytes"].as_u64().unwrap();
    let mut expected_sizes = vec![bytes, typed];
    expected_sizes.sort_unstable();
    assert_eq!(sizes, expected_sizes);
    assert!(
        typed < bytes,
        "Parquet is smaller than the CSV: {typed} vs {bytes}"
    );

    // The hash is of the content, not the name.
    let r = upload(&q, &q.admin_token, "?name=copy", "text/csv", csv).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["sha256"], digest);
}

#[tokio::test]
async fn multipart_parquet_and_ndjson_uploads_are_read() {
    use polars::prelude::*;
    let q = Quarry::start().await;

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"k,v\nx,1\ny,2\n".to_vec()).file_name("small.csv"),
    );
    let r = q
        .http
        .post(q.url("/api/v1/datasets"))
        .bearer_auth(&q.admin_token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let small: Value = r.json().await.unwrap();
    assert_eq!(
        (small["name"].as_str(), small["rows"].as_u64()),
        (Some("small"), Some(2))
    );

    let mut df = df!("city" => ["Oslo", "Lima", "Pune"], "temp" => [3.5, 19.0, 31.25]).unwrap();
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(&mut df).unwrap();
    let r = upload(
        &q,
        &q.admin_token,
        "?name=weather",
        "application/vnd.apache.parquet",
        parquet,
    )
    .await;
    assert_eq!(r.status(), 201);
    let weather: Value = r.json().await.unwrap();
    assert_eq!(weather["rows"], 3);
    assert_eq!(
        column_types(&weather),
        [
            ("city".into(), "string".into()),
            ("temp".into(), "float64".into())
        ]
    );

    let ndjson =
        "{\"user\":\"a\",\"n\":1}\n{\"user\":\"b\",\"n\":2}\n{\"user\":\"c\",\"n\":null}\n";
    let r = upload(
        &q,
        &q.admin_token,
        "?name=events",
        "application/x-ndjson",
        ndjson,
    )
    .await;
    assert_eq!(r.status(), 201);
    let events: Value = r.json().await.unwrap();
    assert_eq!(events["rows"], 3);
    assert_eq!(events["format"], "ndjson");
    assert_eq!(list(&q, &q.admin_token).await.len(), 3);
}

#[tokio::test]
async fn users_see_only_their_own_datasets_and_admins_see_all() {
    let q = Quarry::start().await;
    let ann = q.add_user("ann", "analyst").await;
    let bob = q.add_user("bob", "analyst").await;
    let r = upload(&q, &ann, "?name=mine", "text/csv", "a\n1\n").await;
    assert_eq!(r.status(), 201);
    let anns: Value = r.json().await.unwrap();
    let id = anns["id"].as_str().unwrap();
    assert_eq!(anns["owner"], "ann");

    assert!(list(&q, &bob).await.is_empty());
    let url = q.url(&format!("/api/v1/datasets/{id}"));
    assert_eq!(
        q.http
            .get(&url)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        q.http
            .delete(&url)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Bob may use the same name: names are unique per user.
    assert_eq!(
        upload(&q, &bob, "?name=mine", "text/csv", "b\n2\n")
            .await
            .status(),
        201
    );

    assert_eq!(list(&q, &ann).await.len(), 1);
    assert_eq!(list(&q, &q.admin_token).await.len(), 2);
    assert_eq!(
        q.http
            .get(&url)
            .bearer_auth(&q.admin_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    assert_eq!(
        q.http
            .delete(&url)
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(list(&q, &ann).await.is_empty());
    assert_eq!(
        q.http
            .get(&url)
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        q.blob_files().len(),
        2,
        "only bob's files remain: the original and its typed copy"
    );
}

#[tokio::test]
async fn bad_uploads_get_a_clear_4xx_and_leave_no_file_or_row() {
    let q = Quarry::start_with(&[("QUARRY_UPLOADS__MAX_BYTES", "4096")]).await;
    let t = q.admin_token.clone();

    expect_error(
        upload(&q, &t, "?name=e", "text/csv", "").await,
        400,
        "empty_body",
        "empty",
    )
    .await;
    assert_nothing_stored(&q, "empty body").await;

    expect_error(
        upload(&q, &t, "?name=p", "image/png", "abc").await,
        415,
        "unsupported_media_type",
        "text/csv",
    )
    .await;
    let r = q
        .http
        .post(q.url("/api/v1/datasets?name=n"))
        .bearer_auth(&t)
        .body("a\n1\n")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type", "Content-Type").await;
    assert_nothing_stored(&q, "unknown format").await;

    let ragged = "a,b\n1,2\n3,4,5,6\n";
    expect_error(
        upload(&q, &t, "?name=r", "text/csv", ragged).await,
        422,
        "malformed_file",
        "not valid CSV",
    )
    .await;
    assert_nothing_stored(&q, "malformed CSV").await;

    let not_utf8: Vec<u8> = b"a,b\n1,\xff\xfe\n".to_vec();
    expect_error(
        upload(&q, &t, "?name=u", "text/csv", not_utf8).await,
        422,
        "malformed_file",
        "not UTF-8",
    )
    .await;
    assert_nothing_stored(&q, "invalid UTF-8").await;

    let r = upload(
        &q,
        &t,
        "?name=w",
        "application/vnd.apache.parquet",
        "a,b\n1,2\n",
    )
    .await;
    expect_error(r, 422, "malformed_file", "not a Parquet file").await;
    let r = upload(
        &q,
        &t,
        "?name=j",
        "application/x-ndjson",
        "{\"a\": 1}\n{\"a\":\n",
    )
    .await;
    expect_error(r, 422, "malformed_file", "not valid NDJSON").await;
    assert_nothing_stored(&q, "wrong content type").await;

    let big = "x\n".repeat(3000);
    expect_error(
        upload(&q, &t, "?name=b", "text/csv", big.clone()).await,
        413,
        "too_large",
        "4096",
    )
    .await;
    // Without a Content-Length the limit is enforced while streaming.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..6)
        .map(|_| Ok(bytes::Bytes::from(big[..1000].to_owned())))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    match q
        .http
        .post(q.url("/api/v1/datasets?name=s"))
        .bearer_auth(&t)
        .header("content-type", "text/csv")
        .body(streamed)
        .send()
        .await
    {
        Ok(r) => expect_error(r, 413, "too_large", "uploads.max_bytes").await,
        // The server may close the connection before the client finishes sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_nothing_stored(&q, "over the limit").await;

    let r = upload(&q, &t, "", "text/csv", "a\n1\n").await;
    expect_error(r, 400, "missing_name", "name").await;
    let r = upload(&q, &t, "?name=a%2Fb", "text/csv", "a\n1\n").await;
    expect_error(r, 400, "invalid_name", "slashes").await;
    let r = upload(&q, &t, "?name=x&format=xls", "text/csv", "a\n1\n").await;
    expect_error(r, 400, "bad_format", "csv, parquet, ndjson or xlsx").await;
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = q
        .http
        .post(q.url("/api/v1/datasets?name=m"))
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "missing_file", "`file`").await;
    assert_nothing_stored(&q, "bad requests").await;

    assert_eq!(
        upload(&q, &t, "?name=dup", "text/csv", "a\n1\n")
            .await
            .status(),
        201
    );
    let files = q.blob_files();
    expect_error(
        upload(&q, &t, "?name=dup", "text/csv", "a\n2\n").await,
        409,
        "conflict",
        "dup",
    )
    .await;
    assert_eq!(q.blob_files(), files, "the duplicate left no file");
    assert_eq!(list(&q, &t).await.len(), 1);

    let r = q
        .http
        .get(q.url("/api/v1/datasets/nope"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found", "GET /api/v1/datasets").await;
    let r = q
        .http
        .get(q.url("/api/v1/nothing-here"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found", "openapi.json").await;
}
