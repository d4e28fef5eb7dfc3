//! Reference analyses and the promotion gate they make: a pinned reference is a job
//! that succeeded on the release production runs (its dataset, analysis and a copy of
//! its result); every promotion requested while references are pinned records one
//! check per reference, which the control plane runs on the candidate release and
//! compares with the pinned result. The promotion's `gate` says where they stand:
//! `none` (nothing pinned), `pending` (checks recorded, not yet submitted),
//! `running`, `passed`, `blocked`, `overridden` or `abandoned` (the promotion ended
//! first). Every change is a compare-and-set.

use super::{Mark, mark};
use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::error::{Error, Result};

/// A pinned reference analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub id: String,
    pub name: String,
    /// Whose dataset it reads; its checks run as this user's jobs.
    pub owner_id: String,
    pub dataset_id: String,
    pub dataset_sha256: String,
    pub analysis_json: String,
    /// Where the pinned result's copy is stored, and its SHA-256.
    pub expected_key: String,
    pub expected_hash: String,
    pub expected_rows: u64,
    /// The release the pinned result was computed on.
    pub pinned_release: String,
    pub source_job_id: String,
    pub pinned_by: String,
    pub pinned_at: String,
    pub retired: Option<Mark>,
}

/// What pinning records.
#[derive(Debug, Clone)]
pub struct NewReference<'a> {
    pub name: &'a str,
    pub owner_id: &'a str,
    pub dataset_id: &'a str,
    pub dataset_sha256: &'a str,
    pub analysis_json: &'a str,
    pub expected_key: &'a str,
    pub expected_hash: &'a str,
    pub expected_rows: u64,
    pub pinned_release: &'a str,
    pub source_job_id: &'a str,
    pub pinned_by: &'a str,
}

type RefRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
);

const REF_COLUMNS: &str = "id, name, owner_id, dataset_id, dataset_sha256, analysis_json, \
     expected_key, expected_hash, expected_rows, pinned_release, source_job_id, pinned_by, \
     pinned_at, retired_by, retired_at";

fn reference(r: RefRow) -> Reference {
    Reference {
        id: r.0,
        name: r.1,
        owner_id: r.2,
        dataset_id: r.3,
        dataset_sha256: r.4,
        analysis_json: r.5,
        expected_key: r.6,
        expected_hash: r.7,
        expected_rows: u64::try_from(r.8).unwrap_or(0),
        pinned_release: r.9,
        source_job_id: r.10,
        pinned_by: r.11,
        pinned_at: rfc3339(r.12),
        retired: mark(r.13, r.14, None),
    }
}

/// Pins a reference; returns it. `id` names its result copy, so the caller makes it.
pub async fn pin(db: &Db, id: &str, new: &NewReference<'_>) -> Result<Reference> {
    sqlx::query(
        "INSERT INTO reference_analyses (id, name, owner_id, dataset_id, dataset_sha256, \
         analysis_json, expected_key, expected_hash, expected_rows, pinned_release, \
         source_job_id, pinned_by, pinned_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(id)
    .bind(new.name)
    .bind(new.owner_id)
    .bind(new.dataset_id)
    .bind(new.dataset_sha256)
    .bind(new.analysis_json)
    .bind(new.expected_key)
    .bind(new.expected_hash)
    .bind(i64::try_from(new.expected_rows).unwrap_or(i64::MAX))
    .bind(new.pinned_release)
    .bind(new.source_job_id)
    .bind(new.pinned_by)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    get(db, id).await
}

pub async fn get(db: &Db, id: &str) -> Result<Reference> {
    let row: Option<RefRow> = sqlx::query_as(&format!(
        "SELECT {REF_COLUMNS} FROM reference_analyses WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(reference).ok_or_else(|| {
        Error::NotFound(format!(
            "no reference analysis `{id}`: see GET /api/v1/references"
        ))
    })
}

/// The pinned references (retired ones too when asked), oldest first.
pub async fn list(db: &Db, with_retired: bool) -> Result<Vec<Reference>> {
    let filter = if with_retired {
        ""
    } else {
        "WHERE retired_at IS NULL"
    };
    let rows: Vec<RefRow> = sqlx::query_as(&format!(
        "SELECT {REF_COLUMNS} FROM reference_analyses {filter} ORDER BY pinned_at, id LIMIT 1000"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(reference).collect())
}

/// Retires a reference: later promotions no longer check it (earlier checks stay).
pub async fn retire(db: &Db, id: &str, by: &str) -> Result<Reference> {
    let done = sqlx::query(
        "UPDATE reference_analyses SET retired_by = $1, retired_at = $2 \
         WHERE id = $3 AND retired_at IS NULL",
    )
    .bind(by)
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    let r = get(db, id).await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict(format!(
            "reference analysis `{id}` was already retired"
        )));
    }
    Ok(r)
}

/// A check's state.
pub mod check {
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const PASSED: &str = "passed";
    /// The candidate's result differed from the pinned one.
    pub const DIFFERED: &str = "differed";
    /// The check could not give a result (its job failed, or no worker of the
    /// candidate took it in time).
    pub const FAILED: &str = "failed";
}

/// A promotion's gate.
pub mod gate {
    pub const NONE: &str = "none";
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const PASSED: &str = "passed";
    pub const BLOCKED: &str = "blocked";
    pub const OVERRIDDEN: &str = "overridden";
    /// The promotion ended before its checks did.
    pub const ABANDONED: &str = "abandoned";
}

/// One reference's check on one promotion.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Check {
    pub promotion_id: String,
    pub reference_id: String,
    /// The check's job: here, or in the environment `peer` when it ran there.
    pub job_id: Option<String>,
    pub status: String,
    pub actual_hash: Option<String>,
    /// The comparison (or why there is none), as JSON.
    pub detail_json: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The upstream environment the check ran in through its API; `None`: here.
    pub peer: Option<String>,
    /// The copy of the reference's dataset uploaded to `peer` for the check.
    pub peer_dataset_id: Option<String>,
}

/// The columns a [`Check`] reads, of `promotion_checks c`.
const CHECK_COLUMNS: &str = "c.promotion_id, c.reference_id, c.job_id, c.status, \
     c.actual_hash, c.detail_json, c.started_at, c.finished_at, c.peer, c.peer_dataset_id";

/// Records a pending check for every active reference on a new promotion, and its
/// gate (`pending`, or `none` with nothing pinned), in one transaction. Returns how
/// many checks it recorded.
pub async fn open_gate(db: &Db, promotion_id: &str) -> Result<u64> {
    let mut tx = db.begin_write().await?;
    let added = sqlx::query(
        "INSERT INTO promotion_checks (promotion_id, reference_id, status) \
         SELECT $1, id, 'pending' FROM reference_analyses WHERE retired_at IS NULL",
    )
    .bind(promotion_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE promotions SET gate = $1 WHERE id = $2")
        .bind(if added == 0 {
            gate::NONE
        } else {
            gate::PENDING
        })
        .bind(promotion_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(added)
}

/// A promotion's checks, in the order their references were pinned.
pub async fn checks(db: &Db, promotion_id: &str) -> Result<Vec<Check>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CHECK_COLUMNS} FROM promotion_checks c \
         JOIN reference_analyses r ON r.id = c.reference_id \
         WHERE c.promotion_id = $1 ORDER BY r.pinned_at, r.id"
    ))
    .bind(promotion_id)
    .fetch_all(db.pool())
    .await?)
}

/// A check and its reference, as one joined row.
#[derive(sqlx::FromRow)]
struct Joined {
    #[sqlx(flatten)]
    check: Check,
    id: String,
    name: String,
    owner_id: String,
    dataset_id: String,
    dataset_sha256: String,
    analysis_json: String,
    expected_key: String,
    expected_hash: String,
    expected_rows: i64,
    pinned_release: String,
    source_job_id: String,
    pinned_by: String,
    pinned_at: i64,
    retired_by: Option<String>,
    retired_at: Option<i64>,
}

/// A promotion's checks with their references, in one query (the promotions list
/// shows every promotion's gate).
pub async fn checks_with_references(
    db: &Db,
    promotion_id: &str,
) -> Result<Vec<(Check, Reference)>> {
    let prefixed: Vec<String> = REF_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
    let rows: Vec<Joined> = sqlx::query_as(&format!(
        "SELECT {CHECK_COLUMNS}, {} FROM promotion_checks c \
         JOIN reference_analyses r ON r.id = c.reference_id \
         WHERE c.promotion_id = $1 ORDER BY r.pinned_at, r.id",
        prefixed.join(", ")
    ))
    .bind(promotion_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|j| {
            let r = reference((
                j.id,
                j.name,
                j.owner_id,
                j.dataset_id,
                j.dataset_sha256,
                j.analysis_json,
                j.expected_key,
                j.expected_hash,
                j.expected_rows,
                j.pinned_release,
                j.source_job_id,
                j.pinned_by,
                j.pinned_at,
                j.retired_by,
                j.retired_at,
            ));
            (j.check, r)
        })
        .collect())
}

/// Records, on a pending check, the copy of its dataset uploaded to the upstream
/// environment `peer` it will run in (before its job there is submitted, so a restart
/// submits with that copy instead of uploading another).
pub async fn check_uploaded(
    db: &Db,
    promotion_id: &str,
    reference_id: &str,
    peer: &str,
    dataset_id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE promotion_checks SET peer = $1, peer_dataset_id = $2 \
         WHERE promotion_id = $3 AND reference_id = $4 AND status = 'pending'",
    )
    .bind(peer)
    .bind(dataset_id)
    .bind(promotion_id)
    .bind(reference_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets the copy a check uploaded to its peer, once that copy is deleted there.
pub async fn check_upload_gone(db: &Db, promotion_id: &str, reference_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE promotion_checks SET peer_dataset_id = NULL \
         WHERE promotion_id = $1 AND reference_id = $2",
    )
    .bind(promotion_id)
    .bind(reference_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Marks a pending check running under its job (in its peer, if it has one).
pub async fn check_started(
    db: &Db,
    promotion_id: &str,
    reference_id: &str,
    job_id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE promotion_checks SET status = 'running', job_id = $1, started_at = $2 \
         WHERE promotion_id = $3 AND reference_id = $4 AND status = 'pending'",
    )
    .bind(job_id)
    .bind(now_ms())
    .bind(promotion_id)
    .bind(reference_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a running check: `passed`, `differed` or `failed`, with its detail.
pub async fn check_finished(
    db: &Db,
    promotion_id: &str,
    reference_id: &str,
    status: &str,
    actual_hash: Option<&str>,
    detail_json: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE promotion_checks SET status = $1, actual_hash = $2, detail_json = $3, \
         finished_at = $4 \
         WHERE promotion_id = $5 AND reference_id = $6 AND status IN ('pending', 'running')",
    )
    .bind(status)
    .bind(actual_hash)
    .bind(detail_json)
    .bind(now_ms())
    .bind(promotion_id)
    .bind(reference_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The promotions whose gate is still `pending` or `running`, with their gate.
pub async fn open_gates(db: &Db) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, gate FROM promotions WHERE gate IN ('pending', 'running') \
         ORDER BY requested_at LIMIT 100",
    )
    .fetch_all(db.pool())
    .await?)
}

/// A promotion's gate, and the admin's override of it when there is one.
pub async fn gate_of(db: &Db, promotion_id: &str) -> Result<(String, Option<Mark>)> {
    type GateRow = (String, Option<String>, Option<i64>, Option<String>);
    let row: Option<GateRow> = sqlx::query_as(
        "SELECT gate, gate_override_by, gate_override_at, gate_override_reason \
         FROM promotions WHERE id = $1",
    )
    .bind(promotion_id)
    .fetch_optional(db.pool())
    .await?;
    let (gate, by, at, reason) = row.ok_or_else(|| {
        Error::NotFound(format!(
            "no promotion `{promotion_id}`: see GET /api/v1/promotions"
        ))
    })?;
    Ok((gate, mark(by, at, reason)))
}

/// Moves a gate from `from` to `to`; whether it moved.
pub async fn move_gate(db: &Db, promotion_id: &str, from: &str, to: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE promotions SET gate = $1 WHERE id = $2 AND gate = $3")
        .bind(to)
        .bind(promotion_id)
        .bind(from)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An admin's override of a blocked gate, with the reason; whether it was blocked.
pub async fn override_gate(db: &Db, promotion_id: &str, by: &str, reason: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE promotions SET gate = 'overridden', gate_override_by = $1, \
         gate_override_at = $2, gate_override_reason = $3 \
         WHERE id = $4 AND gate = 'blocked' AND status = 'awaiting_approval'",
    )
    .bind(by)
    .bind(now_ms())
    .bind(reason)
    .bind(promotion_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
