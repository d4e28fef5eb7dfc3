//! The state of each stack environment: freeze, hold, current release and last good
//! release, plus the log of overrides (an admin deploying through a freeze, an operator
//! lifting a hold). A row is created on first use; its definition (stack, upstream,
//! approval rule) comes from `environments/<name>.toml`, not from here.

use super::{Mark, mark};
use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::error::{Error, Result};

/// An environment's recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvState {
    pub name: String,
    pub frozen: Option<Mark>,
    pub hold: Option<Mark>,
    pub current_release_id: Option<String>,
    pub last_good_release_id: Option<String>,
}

/// One recorded override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub environment: String,
    pub action: String,
    pub by: String,
    pub at: String,
    pub reason: String,
}

type Row = (
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn ensure(db: &Db, name: &str) -> Result<()> {
    sqlx::query("INSERT INTO environments (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The environment's state (an empty one the first time).
pub async fn get(db: &Db, name: &str) -> Result<EnvState> {
    ensure(db, name).await?;
    let r: Row = sqlx::query_as(
        "SELECT name, frozen_by, frozen_at, frozen_reason, hold_by, hold_at, hold_reason, \
         current_release_id, last_good_release_id FROM environments WHERE name = $1",
    )
    .bind(name)
    .fetch_one(db.pool())
    .await?;
    Ok(EnvState {
        name: r.0,
        frozen: mark(r.1, r.2, r.3),
        hold: mark(r.4, r.5, r.6),
        current_release_id: r.7,
        last_good_release_id: r.8,
    })
}

/// Freezes an environment; a frozen one stays frozen by whoever froze it first.
pub async fn freeze(db: &Db, name: &str, by: &str, reason: &str) -> Result<EnvState> {
    ensure(db, name).await?;
    let done = sqlx::query(
        "UPDATE environments SET frozen_by = $1, frozen_at = $2, frozen_reason = $3 \
         WHERE name = $4 AND frozen_at IS NULL",
    )
    .bind(by)
    .bind(now_ms())
    .bind(reason)
    .bind(name)
    .execute(db.pool())
    .await?;
    let state = get(db, name).await?;
    if done.rows_affected() == 0
        && let Some(m) = &state.frozen
    {
        return Err(Error::Conflict(format!(
            "{name} is already frozen by {} since {}: {}",
            m.by, m.at, m.reason
        )));
    }
    Ok(state)
}

/// Ends a freeze (recorded as an override with its reason).
pub async fn unfreeze(db: &Db, name: &str, by: &str, reason: &str) -> Result<EnvState> {
    ensure(db, name).await?;
    let done = sqlx::query(
        "UPDATE environments SET frozen_by = NULL, frozen_at = NULL, frozen_reason = NULL \
         WHERE name = $1 AND frozen_at IS NOT NULL",
    )
    .bind(name)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict(format!("{name} is not frozen")));
    }
    record_override(db, name, "unfreeze", by, reason).await?;
    get(db, name).await
}

/// Sets a hold: no promotion lands here until it is lifted. A newer hold replaces an
/// older one.
pub async fn hold(db: &Db, name: &str, by: &str, reason: &str) -> Result<()> {
    ensure(db, name).await?;
    sqlx::query(
        "UPDATE environments SET hold_by = $1, hold_at = $2, hold_reason = $3 WHERE name = $4",
    )
    .bind(by)
    .bind(now_ms())
    .bind(reason)
    .bind(name)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Lifts the hold, recording who and why.
pub async fn lift_hold(db: &Db, name: &str, by: &str, reason: &str) -> Result<EnvState> {
    ensure(db, name).await?;
    let done = sqlx::query(
        "UPDATE environments SET hold_by = NULL, hold_at = NULL, hold_reason = NULL \
         WHERE name = $1 AND hold_at IS NOT NULL",
    )
    .bind(name)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict(format!("{name} has no hold to lift")));
    }
    record_override(db, name, "lift_hold", by, reason).await?;
    get(db, name).await
}

/// Makes `release_id` the environment's current (and last good) release.
pub async fn set_current(db: &Db, name: &str, release_id: &str) -> Result<()> {
    ensure(db, name).await?;
    sqlx::query(
        "UPDATE environments SET current_release_id = $1, last_good_release_id = $1 \
         WHERE name = $2",
    )
    .bind(release_id)
    .bind(name)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records an override or a lifted guard.
pub async fn record_override(
    db: &Db,
    environment: &str,
    action: &str,
    by: &str,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO overrides (environment, action, done_by, done_at, reason) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(environment)
    .bind(action)
    .bind(by)
    .bind(now_ms())
    .bind(reason)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// An environment's overrides, newest first.
pub async fn overrides(db: &Db, environment: &str) -> Result<Vec<Override>> {
    let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
        "SELECT environment, action, done_by, done_at, reason FROM overrides \
         WHERE environment = $1 ORDER BY done_at DESC",
    )
    .bind(environment)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Override {
            environment: r.0,
            action: r.1,
            by: r.2,
            at: rfc3339(r.3),
            reason: r.4,
        })
        .collect())
}
