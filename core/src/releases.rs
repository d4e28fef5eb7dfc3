//! Releases: the record of every deployment of an environment's stack — which image and
//! template went where, who did it, when, through which change set, and how it ended.
//! Since the control plane (`crate::control`), a release also names its artifact, its
//! kind (`deploy`, `promotion`, `rollback`), the promotion it belongs to, the release it
//! replaced and the diff rows it deployed.

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
    /// It ran, then a rollback replaced it.
    RolledBack,
    /// It ran, then a later release replaced it.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::NoChanges => "no_changes",
            Outcome::RolledBack => "rolled_back",
            Outcome::Superseded => "superseded",
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
    /// The artifact deployed (releases made before the control plane have none).
    pub artifact_id: Option<String>,
    /// `deploy`, `promotion` or `rollback`.
    pub kind: String,
    pub promotion_id: Option<String>,
    /// The environment's current release when this one started.
    pub previous_release_id: Option<String>,
    /// The change-set diff rows deployed, as JSON.
    pub diff_json: Option<String>,
}

/// What a release of the control plane adds to [`NewRelease`].
#[derive(Debug, Clone, Default)]
pub struct Link<'a> {
    pub artifact_id: Option<&'a str>,
    /// `deploy` (the default), `promotion` or `rollback`.
    pub kind: Option<&'a str>,
    pub promotion_id: Option<&'a str>,
    pub previous_release_id: Option<&'a str>,
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
    start_linked(db, new, &Link::default()).await
}

/// Records a control-plane deployment that is starting; returns its id.
pub async fn start_linked(db: &Db, new: &NewRelease<'_>, link: &Link<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO releases (id, environment, stack, image, template_hash, deployed_by, \
         started_at, outcome, artifact_id, kind, promotion_id, previous_release_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress', $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(new.environment)
    .bind(new.stack)
    .bind(new.image)
    .bind(new.template_hash)
    .bind(new.deployed_by)
    .bind(now_ms())
    .bind(link.artifact_id)
    .bind(link.kind.unwrap_or("deploy"))
    .bind(link.promotion_id)
    .bind(link.previous_release_id)
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Records the change set of a release that is running, before it is executed, so a
/// restart follows that change set instead of making another. Once only: `false` when
/// the release already has one (or has finished).
pub async fn set_change_set(
    db: &Db,
    id: &str,
    change_set_id: &str,
    diff_json: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE releases SET change_set_id = $1, diff_json = $2 \
         WHERE id = $3 AND outcome = 'in_progress' AND change_set_id IS NULL",
    )
    .bind(change_set_id)
    .bind(diff_json)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Changes a finished release's outcome from `from` to `to` (e.g. `succeeded` to
/// `superseded`); `false` when it was not `from`.
pub async fn relabel(db: &Db, id: &str, from: Outcome, to: Outcome) -> Result<bool> {
    let done = sqlx::query("UPDATE releases SET outcome = $1 WHERE id = $2 AND outcome = $3")
        .bind(to.as_str())
        .bind(id)
        .bind(from.as_str())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
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
        "UPDATE releases SET outcome = $1, finished_at = $2, \
         change_set_id = COALESCE($3, change_set_id), detail = $4 \
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
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str = "id, environment, stack, image, template_hash, deployed_by, started_at, \
     finished_at, change_set_id, outcome, detail, artifact_id, kind, promotion_id, \
     previous_release_id, diff_json";

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
        artifact_id: r.11,
        kind: r.12,
        promotion_id: r.13,
        previous_release_id: r.14,
        diff_json: r.15,
    }
}

/// An environment's releases, newest first.
pub async fn list(db: &Db, environment: &str, limit: u32) -> Result<Vec<Release>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases \
         WHERE environment = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
    ))
    .bind(environment)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One release.
pub async fn get(db: &Db, id: &str) -> Result<Release> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM releases WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.map(from_row)
        .ok_or_else(|| Error::NotFound(format!("no release `{id}`")))
}

/// Releases still running (in every environment), oldest first: what a restarted
/// control plane resumes.
pub async fn in_progress(db: &Db) -> Result<Vec<Release>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases WHERE outcome = 'in_progress' \
         AND artifact_id IS NOT NULL ORDER BY started_at, id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The newest release of `environment` that ran successfully (`succeeded`, or
/// `superseded` since) with an artifact other than `not_artifact`: where a rollback
/// returns to.
pub async fn last_good_other_than(
    db: &Db,
    environment: &str,
    not_artifact: &str,
) -> Result<Option<Release>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases WHERE environment = $1 AND artifact_id IS NOT NULL \
         AND artifact_id <> $2 AND outcome IN ('succeeded', 'superseded') \
         ORDER BY started_at DESC, id DESC LIMIT 1"
    ))
    .bind(environment)
    .bind(not_artifact)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(from_row))
}
