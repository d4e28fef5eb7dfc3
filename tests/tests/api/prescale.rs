//! Pre-scaling from the job history, on the real binary: the orchestrator learns the
//! week's profile from the jobs table and launches workers ahead of an hour it expects
//! to be busy; those workers wait for the surge instead of exiting idle.

use quarry_tests::{Quarry, eventually};
use serde_json::Value;
use std::time::Duration;

/// Three jobs that ran at once, 30 minutes each, a week before the coming hour.
async fn a_busy_hour_last_week(q: &Quarry, owner: &str, dataset: &str) -> i64 {
    let db = quarry_core::Db::connect(&secrecy::SecretString::from(format!(
        "sqlite://{}/quarry.db",
        q.data_dir.path().display()
    )))
    .await
    .unwrap();
    let user = quarry_core::auth::find_user(&db, owner)
        .await
        .unwrap()
        .unwrap();
    let next_hour = (quarry_core::clock::now_ms() / 3_600_000 + 1) * 3_600_000;
    let at = next_hour - 7 * 86_400_000 + 60_000;
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO jobs (id, owner_id, dataset_id, analysis_json, status, attempts, \
             created_at, started_at, finished_at) \
             VALUES ($1, $2, $3, '{\"kind\":\"profile\"}', 'succeeded', 1, $4, $4, $5)",
        )
        .bind(format!("history-{i}"))
        .bind(&user.id)
        .bind(dataset)
        .bind(at)
        .bind(at + 1_800_000)
        .execute(db.pool())
        .await
        .unwrap();
    }
    next_hour
}

#[tokio::test]
async fn ahead_of_an_hour_the_history_says_is_busy_workers_start_and_wait_for_it() {
    let q = Quarry::start().await;
    let token = q.add_user("pia", "analyst").await;
    let dataset = q.upload_csv(&token, "d", "a\n1\n").await;
    let next_hour = a_busy_hour_last_week(&q, "pia", &dataset).await;
    // Off by default: the profile is shown, nothing is launched ahead.
    let system: Value = q.get_json("/api/v1/system").await;
    let p = &system["pre_scaling"];
    assert_eq!(p["enabled"], false);
    let weekday_hour = |ms: i64| {
        let (d, h) = quarry_core::prescale::weekday_hour(ms / 1000);
        (d as u64, h as u64)
    };
    let (day, hour) = weekday_hour(next_hour);
    let slot = p["hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["weekday"] == day && h["hour"] == hour)
        .unwrap_or_else(|| panic!("the busy hour in the profile: {p}"));
    assert_eq!(slot["arrivals"], 3.0);
    assert_eq!(slot["peak"], 3.0);
    let workers = &system["workers"];
    assert_eq!(
        workers["running"].as_u64().unwrap() + workers["starting"].as_u64().unwrap(),
        0
    );

    // On, with the coming hour within the lead, and workers that would exit after a
    // second idle.
    let q = q
        .stop_and_restart_with(&[
            ("QUARRY_FLEET__PRESCALE__ENABLED", "true"),
            ("QUARRY_FLEET__PRESCALE__LEAD_SECS", "3600"),
            ("QUARRY_FLEET__PRESCALE__MIN_WORKERS", "2"),
            ("QUARRY_FLEET__TICK_SECS", "1"),
            ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "1"),
        ])
        .await;
    let system: Value = eventually(
        Duration::from_secs(30),
        "three workers started ahead",
        || async {
            let s: Value = q.get_json("/api/v1/system").await;
            (s["workers"]["running"].as_u64()? >= 3).then_some(s)
        },
    )
    .await;
    assert_eq!(system["pre_scaling"]["enabled"], true);
    let reason = system["last_decision"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("pre-scaling") && reason.contains("3 workers ready ahead"),
        "the decision explains the pre-scale: {reason}"
    );
    // Well past their one-second idle timeout, the same three still wait for the hour
    // (had they exited, the orchestrator would have launched others).
    let ids = |s: &Value| -> Vec<String> {
        let mut ids: Vec<String> = s["releases"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["workers"].as_array().cloned().unwrap_or_default())
            .filter_map(|w| w["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let before = ids(&system);
    assert_eq!(before.len(), 3, "{system}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s: Value = q.get_json("/api/v1/system").await;
    assert_eq!(ids(&s), before, "pre-scaled workers exited idle: {s}");
}
