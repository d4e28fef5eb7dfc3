//! The datasets repository: metadata rows whose files live in the blob store.

use crate::auth::Principal;
use crate::clock::{now_ms, rfc3339};
use crate::db::Db;
use crate::error::{Error, Result, is_unique_violation};
use anyhow::Context as _;
use quarry_domain::{ColumnInfo, Dataset, DatasetFormat, IngestOptions};

/// What the upload path learned about a new dataset, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewDataset {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub format: DatasetFormat,
    pub blob_key: String,
    pub rows: u64,
    pub bytes: u64,
    /// The SHA-256 of the original file, lowercase hex.
    pub sha256: String,
    pub columns: Vec<ColumnInfo>,
    pub typed: TypedCopy,
}

/// The typed Parquet copy of a dataset and how it was made.
#[derive(Debug, Clone)]
pub struct TypedCopy {
    pub parquet_key: String,
    pub stored_bytes: u64,
    pub ingest: IngestOptions,
}

/// A stored dataset with what the server needs beyond the API view.
#[derive(Debug, Clone)]
pub struct StoredDataset {
    pub view: Dataset,
    pub owner_id: String,
    /// The original file, as uploaded.
    pub blob_key: String,
    /// The typed Parquet copy, if the dataset has one.
    pub parquet_key: Option<String>,
}

impl StoredDataset {
    /// What an analysis reads: the typed Parquet copy, or the original of a dataset
    /// stored before typed copies existed.
    pub fn scan_target(&self) -> (&str, DatasetFormat) {
        match &self.parquet_key {
            Some(key) => (key, DatasetFormat::Parquet),
            None => (&self.blob_key, self.view.format),
        }
    }

    /// Every blob the dataset owns (the original and its typed copy).
    pub fn blob_keys(&self) -> Vec<String> {
        let mut keys = vec![self.blob_key.clone()];
        keys.extend(
            self.parquet_key
                .iter()
                .filter(|k| **k != self.blob_key)
                .cloned(),
        );
        keys
    }
}

crate::db::statements::stored_row! {
    struct Row {
        id: String,
        owner_id: String,
        owner: String,
        name: String,
        format: String,
        blob_key: String,
        row_count: i64,
        byte_count: i64,
        columns_json: String,
        created_at: i64,
        parquet_key: Option<String>,
        stored_bytes: Option<i64>,
        ingest_json: Option<String>,
        sha256: Option<String>,
}
}

impl Row {
    fn into_stored(self) -> Result<StoredDataset> {
        let format = self
            .format
            .parse::<DatasetFormat>()
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        let columns = serde_json::from_str(&self.columns_json).context("columns_json")?;
        let ingest = self
            .ingest_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("ingest_json")?;
        Ok(StoredDataset {
            view: Dataset {
                id: self.id,
                name: self.name,
                format,
                rows: u64::try_from(self.row_count).unwrap_or(0),
                bytes: u64::try_from(self.byte_count).unwrap_or(0),
                stored_bytes: self.stored_bytes.and_then(|b| u64::try_from(b).ok()),
                sha256: self.sha256,
                columns,
                ingest,
                created_at: rfc3339(self.created_at),
                owner: self.owner,
            },
            owner_id: self.owner_id,
            blob_key: self.blob_key,
            parquet_key: self.parquet_key,
        })
    }
}

const SELECT: &str = "SELECT d.id, d.owner_id, u.name AS owner, d.name, d.format, d.blob_key, \
     d.row_count, d.byte_count, d.columns_json, d.created_at, d.parquet_key, d.stored_bytes, \
     d.ingest_json, d.sha256 FROM datasets d JOIN users u ON u.id = d.owner_id";

/// Checks a dataset name: 1 to 200 printable characters, no slashes.
pub fn validate_name(name: &str) -> Result<()> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(
            "missing_name",
            "give the dataset a name: `?name=sales-2024`",
        ));
    }
    if trimmed.len() > 200
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(Error::invalid(
            "invalid_name",
            "a dataset name has at most 200 characters and no slashes or control characters",
        ));
    }
    Ok(())
}

/// The error for a name the owner already uses.
pub fn duplicate_name(name: &str) -> Error {
    Error::Conflict(format!(
        "you already have a dataset named `{name}`: pick another name or delete the old one"
    ))
}

/// Whether `owner_id` already has a dataset called `name`.
pub async fn name_taken(db: &Db, owner_id: &str, name: &str) -> Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM datasets WHERE owner_id = $1 AND name = $2")
            .bind(owner_id)
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

/// Records a dataset whose file is already stored.
pub async fn insert(db: &Db, new: &NewDataset) -> Result<()> {
    let columns = serde_json::to_string(&new.columns).context("columns")?;
    let ingest = serde_json::to_string(&new.typed.ingest).context("ingest options")?;
    let result = sqlx::query(
        "INSERT INTO datasets (id, owner_id, name, format, blob_key, row_count, byte_count, \
         columns_json, created_at, parquet_key, stored_bytes, ingest_json, sha256) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&new.id)
    .bind(&new.owner_id)
    .bind(&new.name)
    .bind(new.format.as_str())
    .bind(&new.blob_key)
    .bind(i64::try_from(new.rows).context("row count")?)
    .bind(i64::try_from(new.bytes).context("byte count")?)
    .bind(columns)
    .bind(now_ms())
    .bind(&new.typed.parquet_key)
    .bind(i64::try_from(new.typed.stored_bytes).context("stored bytes")?)
    .bind(ingest)
    .bind(&new.sha256)
    .execute(db.pool())
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(duplicate_name(&new.name)),
        Err(e) => Err(e.into()),
    }
}

/// A dataset's row: read on every submit and by the worker for every job, so on the
/// process's own connection (see `crate::db::statements`).
async fn by_id(db: &Db, id: &str) -> Result<Option<Row>> {
    let sql = format!("{SELECT} WHERE d.id = $1");
    db.statements()?
        .fetch_optional(false, &sql, &[crate::db::statements::Param::Text(id)])
        .await
}

/// A dataset the principal may see; others' datasets are "not found" to
/// analysts and leads.
pub async fn get(db: &Db, who: &Principal, id: &str) -> Result<StoredDataset> {
    let row = by_id(db, id).await?;
    match row {
        Some(row) if who.sees_everything() || row.owner_id == who.user_id => row.into_stored(),
        _ => Err(Error::NotFound(format!(
            "no dataset with id `{id}`: list yours with GET /api/v1/datasets"
        ))),
    }
}

/// The datasets the principal may see, newest first.
pub async fn list(db: &Db, who: &Principal) -> Result<Vec<StoredDataset>> {
    let rows: Vec<Row> = if who.sees_everything() {
        sqlx::query_as(&format!("{SELECT} ORDER BY d.created_at DESC, d.name"))
            .fetch_all(db.pool())
            .await?
    } else {
        sqlx::query_as(&format!(
            "{SELECT} WHERE d.owner_id = $1 ORDER BY d.created_at DESC, d.name"
        ))
        .bind(&who.user_id)
        .fetch_all(db.pool())
        .await?
    };
    rows.into_iter().map(Row::into_stored).collect()
}

/// The ids of the dataset's jobs (deleted with it).
pub async fn job_ids(db: &Db, id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM jobs WHERE dataset_id = $1")
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes the row; the caller removes the blob afterwards.
pub async fn delete(db: &Db, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM datasets WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A dataset by id regardless of owner (workers).
pub async fn find(db: &Db, id: &str) -> Result<Option<StoredDataset>> {
    let row = by_id(db, id).await?;
    row.map(Row::into_stored).transpose()
}

/// Every dataset's name by id (for lists of jobs, which may show others' jobs to leads).
pub async fn names(db: &Db) -> Result<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, name FROM datasets")
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().collect())
}

/// Replaces a dataset's typed copy (a re-type): its columns, rows and how it was
/// read. Returns the previous typed copy's key, for the caller to remove.
pub async fn replace_typed(
    db: &Db,
    id: &str,
    rows: u64,
    columns: &[ColumnInfo],
    typed: &TypedCopy,
) -> Result<Option<String>> {
    let columns = serde_json::to_string(columns).context("columns")?;
    let ingest = serde_json::to_string(&typed.ingest).context("ingest options")?;
    let mut tx = db.begin_write().await?;
    let old: Option<(Option<String>,)> =
        sqlx::query_as("SELECT parquet_key FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((old_key,)) = old else {
        return Err(Error::NotFound(format!("no dataset with id `{id}`")));
    };
    sqlx::query(
        "UPDATE datasets SET row_count = $1, columns_json = $2, parquet_key = $3, \
         stored_bytes = $4, ingest_json = $5 WHERE id = $6",
    )
    .bind(i64::try_from(rows).context("row count")?)
    .bind(columns)
    .bind(&typed.parquet_key)
    .bind(i64::try_from(typed.stored_bytes).context("stored bytes")?)
    .bind(ingest)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(old_key.filter(|k| *k != typed.parquet_key))
}

/// Every blob key a dataset row or job result refers to, for the start-up sweep of
/// blobs that a crash left without a row.
pub async fn referenced_blob_keys(db: &Db) -> Result<std::collections::HashSet<String>> {
    let datasets: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT blob_key, parquet_key FROM datasets")
            .fetch_all(db.pool())
            .await?;
    // A result kept in its row has no blob.
    let mut results: Vec<(String,)> =
        sqlx::query_as("SELECT blob_key FROM job_results WHERE inline_parquet IS NULL")
            .fetch_all(db.pool())
            .await?;
    // The pinned references' copies of their results (retired ones' too).
    results.extend(
        sqlx::query_as::<_, (String,)>("SELECT expected_key FROM reference_analyses")
            .fetch_all(db.pool())
            .await?,
    );
    let mut keys = std::collections::HashSet::new();
    for (original, typed) in datasets {
        keys.insert(original);
        keys.extend(typed);
    }
    keys.extend(results.into_iter().map(|(k,)| k));
    Ok(keys)
}

/// The result blobs of a dataset's jobs, removed with the dataset (a result kept in
/// its row goes with the row).
pub async fn result_blob_keys(db: &Db, dataset_id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT r.blob_key FROM job_results r JOIN jobs j ON j.id = r.job_id \
         WHERE j.dataset_id = $1 AND r.inline_parquet IS NULL",
    )
    .bind(dataset_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}
