//! The `analyses.*` limits end to end: run time, jobs per user, widths, spin length,
//! and analyses that used to fail three times now refused up front or working.

use super::{env, job, sse_events, submit, submit_ok, upload_csv, wait_status};
use quarry_tests::Quarry;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn at(job: &Value, field: &str) -> OffsetDateTime {
    OffsetDateTime::parse(job[field].as_str().unwrap(), &Rfc3339).unwrap()
}

#[tokio::test]
async fn an_attempt_past_max_runtime_fails_once_naming_the_limit() {
    let q = Quarry::start_with(&env(&[("QUARRY_ANALYSES__MAX_RUNTIME_SECS", "2")])).await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let submitted = Instant::now();
    let id = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 30})).await;
    let failed = wait_status(&q, &id, "failed", Duration::from_secs(25)).await;
    assert!(
        submitted.elapsed() < Duration::from_secs(25),
        "stopped long before the spin's 30 s"
    );
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("analyses.max_runtime_secs (2 s)") && error.contains("not retried"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "not retried: {failed}");
    assert_eq!(failed["dead_letter"], false, "{failed}");
    let ran = at(&failed, "finished_at") - at(&failed, "started_at");
    assert!(
        ran >= time::Duration::seconds(2) && ran < time::Duration::seconds(10),
        "ran {ran}"
    );
    // The attempt is over for good: it stays failed with one attempt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = job(&q, &id).await;
    assert_eq!(
        (later["status"].as_str(), later["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
}

#[tokio::test]
async fn jobs_past_max_running_per_user_are_held_and_never_overlap() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_ANALYSES__MAX_RUNNING_PER_USER", "1"),
        ("QUARRY_FLEET__MAX_WORKERS", "3"),
    ]))
    .await;
    let dataset = upload_csv(&q, "d", "a\n1\n".into()).await;
    let bob = q.add_user("bob", "analyst").await;
    let bobs_data = q.upload_csv(&bob, "b", "a\n1\n").await;
    let first = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 4})).await;
    let second = submit_ok(&q, &dataset, json!({"kind": "spin", "seconds": 3})).await;

    // The held job is not in the queue: it is neither queue depth nor a receive.
    let system: Value = q.get_json("/api/v1/system").await;
    let in_queue = system["queue"]["visible"].as_u64().unwrap()
        + system["queue"]["in_flight"].as_u64().unwrap();
    assert_eq!(in_queue, 1, "only the first job was sent: {system}");

    // Another user is not held by the admin's limit.
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&bob)
        .json(&json!({"dataset_id": bobs_data, "analysis": {"kind": "spin", "seconds": 0.2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let bobs: Value = r.json().await.unwrap();

    let events = sse_events(&q, &format!("/api/v1/jobs/{second}/events")).await;
    let opening = &events[0];
    assert_eq!(opening["job"]["status"], "queued", "{opening}");
    let reason = opening["waiting"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("you have 1 job running; analyses.max_running_per_user is 1"),
        "{opening}"
    );
    assert_eq!(
        events.last().unwrap()["job"]["status"],
        "succeeded",
        "the held job ran once the first finished"
    );

    let a = wait_status(&q, &first, "succeeded", Duration::from_secs(60)).await;
    let b = wait_status(&q, &second, "succeeded", Duration::from_secs(60)).await;
    assert!(
        at(&a, "finished_at") <= at(&b, "started_at"),
        "never at the same time: {a} / {b}"
    );
    assert_eq!(
        (a["attempts"].as_u64(), b["attempts"].as_u64()),
        (Some(1), Some(1))
    );

    let bobs_id = bobs["id"].as_str().unwrap();
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{bobs_id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let bobs: Value = r.json().await.unwrap();
    assert_eq!(bobs["status"], "succeeded", "{bobs}");
    assert!(
        at(&bobs, "started_at") < at(&a, "finished_at"),
        "bob's job did not wait for the admin's: {bobs} / {a}"
    );
}

async fn refused(q: &Quarry, dataset: &str, analysis: Value, code: &str, says: &str) {
    let r = submit(q, dataset, analysis.clone()).await;
    assert_eq!(r.status(), 400, "{analysis}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{analysis}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{analysis}: {message}");
    q.assert_healthy(code).await;
}

#[tokio::test]
async fn analyses_that_cannot_work_are_refused_before_they_are_queued() {
    let q = Quarry::start_with(&env(&[
        ("QUARRY_ANALYSES__MAX_PROFILE_COLUMNS", "3"),
        ("QUARRY_ANALYSES__MAX_CORRELATION_COLUMNS", "2"),
        ("QUARRY_ANALYSES__MAX_SPIN_SECS", "5"),
    ]))
    .await;
    let wide = upload_csv(&q, "wide", "a,b,c,d\n1,2,3,4\n2,4,6,9\n".into()).await;
    for (analysis, code, says) in [
        (
            json!({"kind": "profile"}),
            "too_many_columns",
            "analyses.max_profile_columns",
        ),
        (
            json!({"kind": "correlation", "columns": ["a", "b", "c"]}),
            "too_many_columns",
            "analyses.max_correlation_columns",
        ),
        (
            json!({"kind": "correlation", "columns": ["a", "a"]}),
            "duplicate_column",
            "`a` twice",
        ),
        (
            json!({"kind": "aggregate", "group_by": ["a", "a"], "aggregations": [{"column": "b", "op": "sum"}]}),
            "duplicate_column",
            "`a` twice",
        ),
        (
            json!({"kind": "aggregate", "group_by": ["a"], "aggregations": [{"column": "b", "op": "sum", "alias": "a"}]}),
            "duplicate_output",
            "`a`",
        ),
        (
            json!({"kind": "spin", "seconds": 6}),
            "bad_seconds",
            "analyses.max_spin_secs",
        ),
    ] {
        refused(&q, &wide, analysis, code, says).await;
    }
    let jobs: Vec<Value> = q.get_json("/api/v1/jobs").await;
    assert!(jobs.is_empty(), "nothing was queued: {jobs:?}");

    // Within the limits the same analyses run.
    let narrow = upload_csv(&q, "narrow", "a,b,c\n1,2,3\n2,4,7\n".into()).await;
    let profile = submit_ok(&q, &narrow, json!({"kind": "profile"})).await;
    let corr = submit_ok(
        &q,
        &narrow,
        json!({"kind": "correlation", "columns": ["a", "b"]}),
    )
    .await;
    for id in [&profile, &corr] {
        let done = wait_status(&q, id, "succeeded", Duration::from_secs(60)).await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
}

#[tokio::test]
async fn a_profile_of_list_and_struct_columns_succeeds_first_time() {
    use polars::prelude::*;
    let q = Quarry::start_with(&env(&[])).await;
    let tags = Series::new(
        "tags".into(),
        [
            Series::new("".into(), [1_i64, 2]),
            Series::new("".into(), [3_i64]),
            Series::new("".into(), [4_i64, 5, 6]),
        ],
    );
    let point = StructChunked::from_columns(
        "point".into(),
        3,
        &[
            Column::new("x".into(), [1.0_f64, 2.0, 3.0]),
            Column::new("y".into(), [4.0_f64, 5.0, 6.0]),
        ],
    )
    .unwrap()
    .into_series();
    let id = Series::new("id".into(), [1_i64, 2, 3]);
    let df = DataFrame::new_infer_height(vec![
        id.into_column(),
        tags.into_column(),
        point.into_column(),
    ])
    .unwrap();
    let dataset = crate::hostile_sql::upload_parquet(&q, "nested", df).await;
    let dataset = dataset["id"].as_str().unwrap();
    let profile = submit_ok(&q, dataset, json!({"kind": "profile"})).await;
    let done = wait_status(&q, &profile, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    let page: Value = q.get_json(&format!("/api/v1/jobs/{profile}/result")).await;
    let rows = page["rows"].as_array().unwrap();
    let summary: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!("id"), json!("int64"), json!(3)),
            (json!("tags"), json!("list"), json!(3)),
            (json!("point"), json!("struct"), json!(3)),
        ],
        "column, type and count of every column: {page}"
    );
    // Aggregating a nested column other than by count is refused up front.
    let r = submit(
        &q,
        dataset,
        json!({"kind": "aggregate", "aggregations": [{"column": "tags", "op": "max"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
}
