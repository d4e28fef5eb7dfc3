//! Hostile SQL against the real server: queries built to overflow the stack, read
//! files or other tables are refused with a 400 that names the bound, and the
//! server is still up afterwards. SQL over temporal columns plans and runs.

use crate::jobs::{env, job, submit, submit_ok, upload_csv, wait_status};
use quarry_tests::Quarry;
use serde_json::{Value, json};
use std::time::Duration;

fn sum(terms: usize) -> String {
    format!("SELECT {} AS x FROM data", vec!["1"; terms].join("+"))
}

fn parens(depth: usize) -> String {
    format!(
        "SELECT {}1{} AS x FROM data",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

async fn refused(q: &Quarry, dataset: &str, query: &str) -> String {
    let r = submit(q, dataset, json!({"kind": "sql", "query": query})).await;
    assert_eq!(r.status(), 400, "{}", &query[..query.len().min(80)]);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_sql", "{body}");
    q.assert_healthy(&query[..query.len().min(80)]).await;
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stack_busting_and_escaping_queries_get_a_400_and_the_server_stays_up() {
    let q = Quarry::start_with(&env(&[])).await;
    let dataset = upload_csv(&q, "d", "id,amount\n1,2.5\n2,3.5\n3,4\n".into()).await;

    // This one used to overflow the stack and abort the whole server process.
    let m = refused(&q, &dataset, &sum(200_000)).await;
    assert!(m.contains("the limit is 65536 bytes (64 KiB)"), "{m}");
    let m = refused(&q, &dataset, &sum(12_000)).await;
    assert!(m.contains("tokens; the limit is 20000"), "{m}");
    let m = refused(&q, &dataset, &sum(5_000)).await;
    assert!(
        m.starts_with("the query's expressions nest 5000 deep; the limit is 200"),
        "{m}"
    );
    let m = refused(&q, &dataset, &parens(9_000)).await;
    assert!(
        m.contains("nest more than 1000 deep; the limit is 200"),
        "{m}"
    );
    let m = refused(&q, &dataset, &parens(300)).await;
    assert!(m.contains("nest 301 deep; the limit is 200"), "{m}");
    for query in [
        "WITH t AS (SELECT id FROM data) TABLE secrets",
        "SELECT id FROM data UNION ALL TABLE jobs",
        "SELECT id FROM data UNION SELECT id FROM users",
        "SELECT * FROM read_csv('/etc/passwd')",
    ] {
        let m = refused(&q, &dataset, query).await;
        assert!(m.contains("`data`"), "{query}: {m}");
    }

    // The server is alive and well: nothing was queued, and a fair query runs.
    let jobs: Vec<Value> = q.get_json("/api/v1/jobs").await;
    assert!(jobs.is_empty(), "{jobs:?}");
    let id = submit_ok(
        &q,
        &dataset,
        json!({"kind": "sql", "query": "SELECT id, amount FROM data UNION ALL TABLE data"}),
    )
    .await;
    wait_status(&q, &id, "succeeded", Duration::from_secs(60)).await;
    let page: Value = q.get_json(&format!("/api/v1/jobs/{id}/result")).await;
    assert_eq!(page["total_rows"], 6, "{page}");
}

pub(crate) async fn upload_parquet(
    q: &Quarry,
    name: &str,
    mut df: polars::prelude::DataFrame,
) -> Value {
    use polars::prelude::*;
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(&mut df).unwrap();
    let r = q
        .http
        .post(q.url(&format!("/api/v1/datasets?name={name}")))
        .bearer_auth(&q.admin_token)
        .header("content-type", "application/vnd.apache.parquet")
        .body(parquet)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn rows(q: &Quarry, id: &str) -> Vec<Value> {
    let page: Value = q.get_json(&format!("/api/v1/jobs/{id}/result")).await;
    page["rows"].as_array().unwrap().clone()
}

#[tokio::test]
async fn sql_over_datetime_and_date_columns_validates_and_runs() {
    use polars::prelude::*;
    let q = Quarry::start_with(&env(&[])).await;
    // 2024-01-01T00:00:00Z, 2025-06-30T12:00:00Z, 2025-12-31T23:00:00Z in microseconds.
    let micros = [1_704_067_200_i64, 1_751_284_800, 1_767_222_000].map(|s| s * 1_000_000);
    let ts = Series::new("ts".into(), micros)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    let day = Series::new("day".into(), [19_723_i32, 20_269, 20_453])
        .cast(&DataType::Date)
        .unwrap();
    let df = DataFrame::new_infer_height(vec![ts.into_column(), day.into_column()]).unwrap();
    let dataset = upload_parquet(&q, "times", df).await;
    let types: Vec<&str> = dataset["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["datetime", "date"], "{dataset}");
    let id = dataset["id"].as_str().unwrap();

    let years = submit_ok(
        &q,
        id,
        json!({"kind": "sql", "query": "SELECT EXTRACT(YEAR FROM ts) AS y, COUNT(*) AS n FROM data GROUP BY y ORDER BY y"}),
    )
    .await;
    let dates = submit_ok(
        &q,
        id,
        json!({"kind": "sql", "query": "SELECT CAST(ts AS DATE) AS d FROM data WHERE day > CAST('2024-06-01' AS DATE) ORDER BY d"}),
    )
    .await;
    for id in [&years, &dates] {
        let done = wait_status(&q, id, "succeeded", Duration::from_secs(60)).await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
    assert_eq!(
        rows(&q, &years).await,
        vec![json!([2024, 1]), json!([2025, 2])]
    );
    assert_eq!(
        rows(&q, &dates).await,
        vec![json!(["2025-06-30"]), json!(["2025-12-31"])]
    );
    assert_eq!(job(&q, &years).await["error"], Value::Null);
}
