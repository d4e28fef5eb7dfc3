//! Promotions: moving the artifact that runs successfully on an upstream environment
//! into its downstream one, with the change-set diff computed when it was requested,
//! approvals (who, when, a comment) and a durable state:
//! `awaiting_approval → deploying → succeeded | failed`, or `rejected | cancelled |
//! expired`. Every transition is a compare-and-set on the status.

use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::error::{Error, Result};

/// A promotion's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    AwaitingApproval,
    Deploying,
    Succeeded,
    Failed,
    Rejected,
    Cancelled,
    Expired,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::AwaitingApproval,
        Status::Deploying,
        Status::Succeeded,
        Status::Failed,
        Status::Rejected,
        Status::Cancelled,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::AwaitingApproval => "awaiting_approval",
            Status::Deploying => "deploying",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "bad_status",
                    format!(
                        "unknown promotion status `{s}`: use awaiting_approval, deploying, \
                         succeeded, failed, rejected, cancelled or expired"
                    ),
                )
            })
    }
}

/// A promotion as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub id: String,
    pub from_env: String,
    pub to_env: String,
    pub artifact_id: String,
    pub status: String,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    pub expires_at_ms: i64,
    /// The diff rows the approver sees, as JSON.
    pub diff_json: String,
    pub diff_hash: String,
    pub release_id: Option<String>,
    pub change_set_id: Option<String>,
    pub detail: Option<String>,
    pub finished_at: Option<String>,
}

/// One approval or rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    pub at: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
}

/// What a new promotion records.
#[derive(Debug, Clone)]
pub struct NewPromotion<'a> {
    pub from_env: &'a str,
    pub to_env: &'a str,
    pub artifact_id: &'a str,
    pub requested_by: &'a str,
    pub expires_in_ms: i64,
    pub diff_json: &'a str,
    pub diff_hash: &'a str,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const COLUMNS: &str = "id, from_env, to_env, artifact_id, status, requested_by, requested_at, \
     expires_at, diff_json, diff_hash, release_id, change_set_id, detail, finished_at";

fn from_row(r: Row) -> Promotion {
    Promotion {
        id: r.0,
        from_env: r.1,
        to_env: r.2,
        artifact_id: r.3,
        status: r.4,
        requested_by: r.5,
        requested_at: rfc3339(r.6),
        expires_at: rfc3339(r.7),
        expires_at_ms: r.7,
        diff_json: r.8,
        diff_hash: r.9,
        release_id: r.10,
        change_set_id: r.11,
        detail: r.12,
        finished_at: r.13.map(rfc3339),
    }
}

/// Records a promotion awaiting approval.
pub async fn create(db: &Db, new: &NewPromotion<'_>) -> Result<Promotion> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO promotions (id, from_env, to_env, artifact_id, status, requested_by, \
         requested_at, expires_at, diff_json, diff_hash) \
         VALUES ($1, $2, $3, $4, 'awaiting_approval', $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(new.from_env)
    .bind(new.to_env)
    .bind(new.artifact_id)
    .bind(new.requested_by)
    .bind(now)
    .bind(now.saturating_add(new.expires_in_ms))
    .bind(new.diff_json)
    .bind(new.diff_hash)
    .execute(db.pool())
    .await?;
    get(db, &id).await
}

pub async fn get(db: &Db, id: &str) -> Result<Promotion> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    row.map(from_row)
        .ok_or_else(|| Error::NotFound(format!("no promotion `{id}`: see GET /api/v1/promotions")))
}

/// Promotions, newest first, optionally of one status.
pub async fn list(db: &Db, status: Option<Status>, limit: u32) -> Result<Vec<Promotion>> {
    let rows: Vec<Row> = match status {
        Some(s) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM promotions WHERE status = $1 \
                 ORDER BY requested_at DESC, id DESC LIMIT $2"
            ))
            .bind(s.as_str())
            .bind(i64::from(limit))
            .fetch_all(db.pool())
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM promotions ORDER BY requested_at DESC, id DESC LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(db.pool())
            .await?
        }
    };
    Ok(rows.into_iter().map(from_row).collect())
}

/// Moves a promotion from `from` to `to` if it is still `from`; `false` otherwise (it
/// moved meanwhile). A final state records when it was reached.
pub async fn transition(
    db: &Db,
    id: &str,
    from: Status,
    to: Status,
    detail: Option<&str>,
) -> Result<bool> {
    let finished = !matches!(to, Status::AwaitingApproval | Status::Deploying);
    let done = sqlx::query(
        "UPDATE promotions SET status = $1, detail = COALESCE($2, detail), \
         finished_at = $3 WHERE id = $4 AND status = $5",
    )
    .bind(to.as_str())
    .bind(detail)
    .bind(finished.then(now_ms))
    .bind(id)
    .bind(from.as_str())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the diff of a promotion still awaiting approval (the stack changed since
/// it was requested): the approvers must see the new rows.
pub async fn replace_diff(db: &Db, id: &str, diff_json: &str, diff_hash: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE promotions SET diff_json = $1, diff_hash = $2 \
         WHERE id = $3 AND status = 'awaiting_approval'",
    )
    .bind(diff_json)
    .bind(diff_hash)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Links the release (and later its change set) a deploying promotion runs.
pub async fn set_release(
    db: &Db,
    id: &str,
    release_id: &str,
    change_set_id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE promotions SET release_id = $1, change_set_id = COALESCE($2, change_set_id) \
         WHERE id = $3",
    )
    .bind(release_id)
    .bind(change_set_id)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records the change set computed when the promotion was requested: the one its
/// approval executes when the diff is unchanged.
pub async fn set_change_set(db: &Db, id: &str, change_set_id: &str) -> Result<()> {
    sqlx::query("UPDATE promotions SET change_set_id = $1 WHERE id = $2 AND release_id IS NULL")
        .bind(change_set_id)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Marks every promotion whose approval window has passed as `expired`; returns how
/// many.
pub async fn expire_due(db: &Db) -> Result<u64> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE promotions SET status = 'expired', finished_at = $1 \
         WHERE status = 'awaiting_approval' AND expires_at <= $1",
    )
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Records an approval or a rejection.
pub async fn add_approval(
    db: &Db,
    id: &str,
    by: &str,
    decision: &str,
    comment: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO approvals (promotion_id, decided_by, decided_at, decision, comment) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(by)
    .bind(now_ms())
    .bind(decision)
    .bind(comment)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A promotion's approvals and rejections, oldest first.
pub async fn approvals(db: &Db, id: &str) -> Result<Vec<Approval>> {
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT decided_by, decided_at, decision, comment FROM approvals \
         WHERE promotion_id = $1 ORDER BY decided_at, decided_by",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Approval {
            by: r.0,
            at: rfc3339(r.1),
            decision: r.2,
            comment: r.3,
        })
        .collect())
}
