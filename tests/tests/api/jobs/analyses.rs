//! The analyses' answers, checked against independent computations, on small data and
//! on data larger than the worker's memory limit.

use super::{env, result_page, submit_ok, upload_csv, wait_status};
use quarry_tests::Quarry;
use quarry_tests::fixtures::{expected_means, mixed_csv};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn profile_histogram_and_correlation_match_independent_computations() {
    let q = Quarry::start_with(&env(&[])).await;
    let mut csv = String::from("x,y,label\n");
    for i in 0..1000_i64 {
        let label = if i % 3 == 0 {
            "fizz".to_owned()
        } else if i % 10 == 0 {
            String::new()
        } else {
            format!("n{}", i % 4)
        };
        csv.push_str(&format!("{i},{},{label}\n", 2 * i + 1));
    }
    let dataset = upload_csv(&q, "p", csv).await;

    let profile = submit_ok(&q, &dataset, json!({"kind": "profile"})).await;
    let hist = submit_ok(
        &q,
        &dataset,
        json!({"kind": "histogram", "column": "x", "bins": 4}),
    )
    .await;
    let corr = submit_ok(
        &q,
        &dataset,
        json!({"kind": "correlation", "columns": ["x", "y"]}),
    )
    .await;
    for id in [&profile, &hist, &corr] {
        wait_status(&q, id, "succeeded", Duration::from_secs(60)).await;
    }

    let p = result_page(&q, &profile, "").await;
    let cols: Vec<&str> = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let field =
        |row: &Value, name: &str| row[cols.iter().position(|c| *c == name).unwrap()].clone();
    let x = &p["rows"][0];
    assert_eq!(field(x, "column"), "x");
    assert_eq!(field(x, "count"), 1000);
    assert_eq!(field(x, "nulls"), 0);
    assert_eq!(field(x, "distinct"), 1000);
    assert_eq!(field(x, "mean"), 499.5);
    assert_eq!(field(x, "q50"), 499.5);
    assert_eq!(field(x, "min"), "0");
    // sample std of 0..999 = sqrt(n(n+1)/12) with n = 1000
    let std = (1000.0_f64 * 1001.0 / 12.0).sqrt();
    assert!((field(x, "std").as_f64().unwrap() - std).abs() < 1e-9);
    let label = &p["rows"][2];
    assert_eq!(
        field(label, "nulls"),
        66,
        "100 multiples of 10, less the 34 multiples of 30"
    );
    assert!(
        field(label, "top_values")
            .as_str()
            .unwrap()
            .starts_with("fizz (334)"),
        "{label}"
    );

    let h = result_page(&q, &hist, "").await;
    let counts: Vec<i64> = h["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[3].as_i64().unwrap())
        .collect();
    // width = 999 / 4 = 249.75: bins hold x in [0,249.75), [249.75,499.5), [499.5,749.25), [749.25,999]
    assert_eq!(counts, vec![250, 250, 250, 250]);

    let c = result_page(&q, &corr, "").await;
    assert!(
        (c["rows"][0][2].as_f64().unwrap() - 1.0).abs() < 1e-12,
        "y = 2x + 1 correlates perfectly: {c}"
    );
}

#[tokio::test]
async fn a_dataset_larger_than_the_worker_memory_limit_streams_through() {
    // Streaming stays under the limit: its peak here is 155–205 MB on 8 million rows
    // (it grows with the row count, ~180 MB on 6.5 million: a limit of 192 MB made the
    // test flaky); keeping every row needs far more.
    const ROWS: usize = 8_000_000;
    // Two polars threads, whatever the machine: the limit must hold on a CI runner
    // with many cores as on a laptop.
    let q = Quarry::start_with(&env(&[
        ("QUARRY_WORKER__MEMORY_LIMIT_MB", "256"),
        ("QUARRY_WORKER__THREADS", "2"),
    ]))
    .await;
    let csv = mixed_csv(ROWS, 3);
    assert!(
        csv.len() > 256 * 1024 * 1024,
        "the file ({} bytes) is larger than the limit",
        csv.len()
    );
    let expected = expected_means(&csv);
    let dataset = upload_csv(&q, "big", csv).await;

    let agg = submit_ok(
        &q,
        &dataset,
        json!({"kind": "aggregate", "group_by": ["category"], "aggregations": [{"column": "amount", "op": "mean"}]}),
    )
    .await;
    let sql = submit_ok(
        &q,
        &dataset,
        json!({"kind": "sql", "query": "SELECT category, COUNT(*) AS n, MAX(quantity) AS most FROM data GROUP BY category"}),
    )
    .await;
    let done = wait_status(&q, &agg, "succeeded", Duration::from_secs(300)).await;
    assert_eq!(
        done["attempts"], 1,
        "no attempt died of the memory limit: {done}"
    );
    let page = result_page(&q, &agg, "").await;
    assert_eq!(page["total_rows"], expected.len(), "one row per category");
    for row in page["rows"].as_array().unwrap() {
        let (k, have) = (row[0].as_str().unwrap(), row[1].as_f64().unwrap());
        let want = expected[k];
        assert!(
            (have - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{k}: {have} vs {want}"
        );
    }
    let done = wait_status(&q, &sql, "succeeded", Duration::from_secs(300)).await;
    assert_eq!(done["attempts"], 1);
    let total: i64 = result_page(&q, &sql, "").await["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_i64().unwrap())
        .sum();
    assert_eq!(total, ROWS as i64);

    // Keeping every row cannot stream: the guard stops it, and the user is told why.
    let all = submit_ok(
        &q,
        &dataset,
        json!({"kind": "sql", "query": "SELECT * FROM data"}),
    )
    .await;
    let failed = wait_status(&q, &all, "failed", Duration::from_secs(300)).await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("memory limit of 256 MB"), "{failed}");
    assert_eq!(failed["dead_letter"], true, "{failed}");
    assert_eq!(
        failed["attempts"], 3,
        "every attempt met the same limit: {failed}"
    );
}
