//! Artifacts: the immutable unit that moves between environments, an image pinned by
//! its digest (`repository@sha256:<64 hex>`), the commit it was built from and the
//! schema (migration) version it expects. An artifact can be rejected, and a rejected
//! artifact is refused everywhere.

use super::{Mark, mark};
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::{Error, Result, is_unique_violation};

/// An artifact as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub id: String,
    /// `repository@sha256:<digest>`.
    pub image: String,
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub commit: Option<String>,
    pub schema_version: i64,
    /// RFC 3339.
    pub created_at: String,
    pub rejected: Option<Mark>,
}

/// Splits `repository@sha256:<64 hex>` into its repository and digest; anything else
/// (a tag alone, a short digest) is refused, since a tag can move.
pub fn parse_reference(image: &str) -> Result<(String, String)> {
    let refuse = || {
        Error::invalid(
            "bad_artifact",
            format!(
                "`{image}` is not an artifact reference: give the image by digest, \
                 `<repository>@sha256:<64 hex digits>` (a tag can move; a digest cannot)"
            ),
        )
    };
    let (repository, digest) = image.split_once('@').ok_or_else(refuse)?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(refuse)?;
    let repository_ok = !repository.is_empty()
        && repository.len() <= 255
        && repository
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./-_:".contains(&b));
    let hex_ok = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !repository_ok || !hex_ok {
        return Err(refuse());
    }
    Ok((repository.to_owned(), digest.to_owned()))
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
);

const COLUMNS: &str = "id, image, repository, digest, git_commit, schema_version, created_at, \
     rejected_by, rejected_at, rejected_reason";

fn from_row(r: Row) -> Artifact {
    Artifact {
        id: r.0,
        image: r.1,
        repository: r.2,
        digest: r.3,
        commit: r.4,
        schema_version: r.5,
        created_at: crate::clock::rfc3339(r.6),
        rejected: mark(r.7, r.8, r.9),
    }
}

/// The artifact of `image`, registered on first use. The commit and schema version
/// of an existing artifact are kept (it is immutable).
pub async fn register(
    db: &Db,
    image: &str,
    commit: Option<&str>,
    schema_version: i64,
) -> Result<Artifact> {
    let (repository, digest) = parse_reference(image)?;
    if let Some(existing) = find(db, image).await? {
        return Ok(existing);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let inserted = sqlx::query(
        "INSERT INTO artifacts (id, image, repository, digest, git_commit, schema_version, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(image)
    .bind(&repository)
    .bind(&digest)
    .bind(commit)
    .bind(schema_version)
    .bind(now_ms())
    .execute(db.pool())
    .await;
    match inserted {
        Ok(_) => get(db, &id).await,
        // Registered at the same moment by another caller: theirs is the artifact.
        Err(e) if is_unique_violation(&e) => find(db, image)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("artifact {image} vanished"))),
        Err(e) => Err(e.into()),
    }
}

/// The artifact of exactly this image reference, if registered.
pub async fn find(db: &Db, image: &str) -> Result<Option<Artifact>> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM artifacts WHERE image = $1"))
            .bind(image)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(from_row))
}

pub async fn get(db: &Db, id: &str) -> Result<Artifact> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM artifacts WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    row.map(from_row)
        .ok_or_else(|| Error::NotFound(format!("no artifact `{id}`: see GET /api/v1/artifacts")))
}

/// Every artifact, newest first.
pub async fn list(db: &Db, limit: u32) -> Result<Vec<Artifact>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM artifacts ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Rejects an artifact, once: a second rejection is a conflict naming the first.
pub async fn reject(db: &Db, id: &str, by: &str, reason: &str) -> Result<Artifact> {
    let done = sqlx::query(
        "UPDATE artifacts SET rejected_by = $1, rejected_at = $2, rejected_reason = $3 \
         WHERE id = $4 AND rejected_at IS NULL",
    )
    .bind(by)
    .bind(now_ms())
    .bind(reason)
    .bind(id)
    .execute(db.pool())
    .await?;
    let artifact = get(db, id).await?;
    if done.rows_affected() == 0 {
        return Err(refused(&artifact).unwrap_or_else(|| {
            Error::Conflict(format!("artifact `{id}` changed meanwhile: try again"))
        }));
    }
    Ok(artifact)
}

/// The refusal for using a rejected artifact, if it is rejected.
pub fn refused(artifact: &Artifact) -> Option<Error> {
    artifact.rejected.as_ref().map(|m| {
        Error::Conflict(format!(
            "artifact {} was rejected by {} at {}: {}",
            artifact.image, m.by, m.at, m.reason
        ))
    })
}

/// The schema (migration) version this build expects: the newest migration's number.
/// An artifact registered by this control plane records it.
pub fn schema_version() -> i64 {
    sqlx::migrate!("../migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}
