//! The orchestrator's recent decisions, for `GET /api/v1/system` and the dashboards.

use crate::clock::rfc3339;
use crate::db::Db;
use crate::error::Result;
use quarry_domain::Decision;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Stores a decision taken at `at_ms` and trims the history to `keep` rows.
pub async fn record(db: &Db, at_ms: i64, d: &Decision, keep: i64) -> Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO orchestrator_decisions (at, visible, in_flight, running, starting, launch, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at_ms)
    .bind(to_i64(d.visible))
    .bind(to_i64(d.in_flight))
    .bind(to_i64(d.running))
    .bind(to_i64(d.starting))
    .bind(to_i64(d.launch))
    .bind(&d.reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM orchestrator_decisions WHERE id <= (SELECT MAX(id) FROM orchestrator_decisions) - $1",
    )
    .bind(keep)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The most recent decision.
pub async fn latest(db: &Db) -> Result<Option<Decision>> {
    let row: Option<(i64, i64, i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT at, visible, in_flight, running, starting, launch, reason \
         FROM orchestrator_decisions ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(
        |(at, visible, in_flight, running, starting, launch, reason)| Decision {
            at: rfc3339(at),
            visible: to_u64(visible),
            in_flight: to_u64(in_flight),
            running: to_u64(running),
            starting: to_u64(starting),
            launch: to_u64(launch),
            reason,
        },
    ))
}
