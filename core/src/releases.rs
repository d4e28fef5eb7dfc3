//! Releases: the record of every deployment of an environment's stack — which image and
//! template went where, who did it, when, through which change set, and how it ended.
//! A rollback is a deployment of an earlier release's image.

use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::error::{Error, Result};

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    InProgress,
    Succeeded,
    Failed,
    /// The template and image were already deployed: nothing to do.
    NoChanges,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::NoChanges => "no_changes",
        }
    }
}

/// A release as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub environment: String,
    pub stack: String,
    pub image: String,
    pub template_hash: String,
    pub deployed_by: String,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub change_set_id: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// What a new deployment is about to do.
#[derive(Debug, Clone)]
pub struct NewRelease<'a> {
    pub environment: &'a str,
    pub stack: &'a str,
    pub image: &'a str,
    pub template_hash: &'a str,
    pub deployed_by: &'a str,
}

/// Records a deployment that is starting; returns its id.
pub async fn start(db: &Db, new: &NewRelease<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO releases (id, environment, stack, image, template_hash, deployed_by, \
         started_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress')",
    )
    .bind(&id)
    .bind(new.environment)
    .bind(new.stack)
    .bind(new.image)
    .bind(new.template_hash)
    .bind(new.deployed_by)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Records how a deployment ended (once: a finished release is not changed again).
pub async fn finish(
    db: &Db,
    id: &str,
    outcome: Outcome,
    change_set_id: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE releases SET outcome = $1, finished_at = $2, change_set_id = $3, detail = $4 \
         WHERE id = $5 AND outcome = 'in_progress'",
    )
    .bind(outcome.as_str())
    .bind(now_ms())
    .bind(change_set_id)
    .bind(detail)
    .bind(id)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict(format!(
            "release `{id}` is unknown or already finished"
        )));
    }
    Ok(())
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
);

fn from_row(r: Row) -> Release {
    Release {
        id: r.0,
        environment: r.1,
        stack: r.2,
        image: r.3,
        template_hash: r.4,
        deployed_by: r.5,
        started_at: rfc3339(r.6),
        finished_at: r.7.map(rfc3339),
        change_set_id: r.8,
        outcome: r.9,
        detail: r.10,
    }
}

/// An environment's releases, newest first.
pub async fn list(db: &Db, environment: &str, limit: u32) -> Result<Vec<Release>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, environment, stack, image, template_hash, deployed_by, started_at, \
         finished_at, change_set_id, outcome, detail FROM releases \
         WHERE environment = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(environment)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}
