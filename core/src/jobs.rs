//! The jobs repository: the user-visible record of each analysis run, and the reads
//! over it. Every state change a worker or the reconciler makes goes through
//! [`crate::lifecycle`], which guards it by the job's lease; a result is committed at
//! most once (`job_results.job_id` is the primary key).

use crate::auth::Principal;
use crate::blob::{BlobStore, ByteStream, LocalFile};
use crate::clock::{now_ms, rfc3339};
use crate::db::statements::{Param, Step};
use crate::db::{Db, Dialect};
use crate::error::{Error, Result};
use anyhow::Context as _;
use quarry_domain::{ColumnInfo, Job, JobAttempt, JobStatus};

crate::db::statements::stored_row! {
    /// A `jobs` row as every read and `RETURNING` of [`columns!`] answers it.
    struct Row {
    id: String,
    owner_id: String,
    dataset_id: String,
    analysis_json: String,
    status: String,
    attempts: i64,
    progress: f64,
    error: Option<String>,
    dead_letter: i64,
    cancel_requested: i64,
    held: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    lease: Option<String>,
    lease_until: Option<i64>,
    enqueued_at: Option<i64>,
    worker_id: Option<String>,
    provenance_json: Option<String>,
    required_release: Option<String>,
    rerun_of: Option<String>,
    peer: Option<String>,
    peer_job_id: Option<String>,
    peer_dataset_id: Option<String>,
}
}

/// A stored job with what the server and worker need beyond the API view.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub view: Job,
    pub owner_id: String,
    pub cancel_requested: bool,
    /// While the job is held back (its owner is at their limit of running jobs): the
    /// limit it waits under.
    pub held: Option<u32>,
    /// The receipt of the delivery that runs it, while one does.
    pub lease: Option<String>,
    /// When that lease ends unless renewed (ms since the epoch).
    pub lease_until: Option<i64>,
    /// When its message was sent (`None`: held, or released without a message yet).
    pub enqueued_at: Option<i64>,
    /// The worker that started its latest attempt.
    pub worker_id: Option<String>,
    /// A job run in another environment (`view.environment`): its job there, once
    /// submitted, and the copy of its dataset uploaded there.
    pub peer_job_id: Option<String>,
    pub peer_dataset_id: Option<String>,
}

impl StoredJob {
    /// The end of the lease another worker holds on this running job, if it is live
    /// at `now` (beyond [`crate::lifecycle::LEASE_SKEW`]).
    pub fn live_lease_until(&self, now: i64) -> Option<i64> {
        let skew = i64::try_from(crate::lifecycle::LEASE_SKEW.as_millis()).unwrap_or(0);
        self.lease_until
            .filter(|until| self.view.status == JobStatus::Running && *until > now + skew)
    }
}

impl Row {
    fn into_stored(self) -> Result<StoredJob> {
        let status: JobStatus = self
            .status
            .parse()
            .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?;
        let analysis = serde_json::from_str(&self.analysis_json).context("analysis_json")?;
        let provenance = self
            .provenance_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("provenance_json")?;
        Ok(StoredJob {
            view: Job {
                id: self.id,
                dataset_id: self.dataset_id,
                analysis,
                status,
                attempts: u32::try_from(self.attempts).unwrap_or(0),
                progress: self.progress,
                error: self.error,
                dead_letter: self.dead_letter != 0,
                created_at: rfc3339(self.created_at),
                started_at: self.started_at.map(rfc3339),
                finished_at: self.finished_at.map(rfc3339),
                provenance,
                required_release: self.required_release,
                rerun_of: self.rerun_of,
                environment: self.peer,
            },
            owner_id: self.owner_id,
            cancel_requested: self.cancel_requested != 0,
            held: u32::try_from(self.held).ok().filter(|n| *n > 0),
            lease: self.lease,
            lease_until: self.lease_until,
            enqueued_at: self.enqueued_at,
            worker_id: self.worker_id,
            peer_job_id: self.peer_job_id,
            peer_dataset_id: self.peer_dataset_id,
        })
    }
}

/// The columns a [`Row`] reads, for `SELECT` and `RETURNING`.
macro_rules! columns {
    () => {
        "id, owner_id, dataset_id, analysis_json, status, attempts, progress, error, \
         dead_letter, cancel_requested, held, created_at, started_at, finished_at, lease, \
         lease_until, enqueued_at, worker_id, provenance_json, required_release, rerun_of, \
         peer, peer_job_id, peer_dataset_id"
    };
}

const SELECT: &str = concat!("SELECT ", columns!(), " FROM jobs");
const BY_ID: &str = concat!("SELECT ", columns!(), " FROM jobs WHERE id = $1");

// After `columns!`, which it uses.
pub mod forwarded;

/// A job to record.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub owner_id: &'a str,
    pub dataset_id: &'a str,
    pub analysis_json: &'a str,
    /// The only release whose workers may run it (a promotion gate's check on a
    /// candidate release); `None`: any worker.
    pub required_release: Option<&'a str>,
    /// The job it re-runs, if it is a re-run.
    pub rerun_of: Option<&'a str>,
}

/// On SQLite, the next change number of `jobs` ([`crate::watch`]). A statement on
/// the job path that writes a job sets `changed_seq` to it itself, so that the
/// triggers (which number every other write) do not write the row a second time.
macro_rules! next_change {
    () => {
        "(SELECT COALESCE(MAX(changed_seq), 0) + 1 FROM jobs)"
    };
}
pub(crate) use next_change;

/// Which jobs [`start`] may start.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StartIf {
    /// The common case, without reading the job first: queued, not being cancelled,
    /// attempts left (below this many) and no live lease.
    Queued { max_attempts: u32 },
    /// A job the caller read and checked: still at this attempt count, queued or
    /// running (a dead worker's lease ran out), not being cancelled.
    Unchanged { attempts: u32 },
}

/// Starts a job in one statement: `running` under the lease `receipt` until `until`,
/// one attempt more; returns the job as it is now. `None` (and nothing changed) when
/// `only` does not hold, when the worker's release has been superseded (a deploy
/// declared another current: its workers start nothing more), or when the job must
/// run on another release than the worker's (`required_release`).
pub(crate) async fn start(
    db: &Db,
    id: &str,
    receipt: &str,
    worker_id: &str,
    (now, until): (i64, i64),
    only: StartIf,
) -> Result<Option<StoredJob>> {
    let (sql, n) = start_statement(only, db.dialect());
    let row: Option<Row> = db
        .statements()?
        .fetch_optional(
            true,
            &sql,
            &start_params(id, receipt, worker_id, (now, until), n),
        )
        .await?;
    row.map(Row::into_stored).transpose()
}

/// [`start`] with [`StartIf::Queued`] on a connection, inside the transaction that
/// leased the delivery `receipt` ([`crate::queue::DbQueue::receive_then`]).
pub(crate) fn start_on(
    c: &rusqlite::Connection,
    id: &str,
    receipt: &str,
    worker_id: &str,
    (now, until): (i64, i64),
    max_attempts: u32,
) -> rusqlite::Result<Option<Started>> {
    let (sql, n) = start_statement(StartIf::Queued { max_attempts }, Dialect::Sqlite);
    let row: Option<Row> = crate::db::statements::fetch_on(
        c,
        &sql,
        &start_params(id, receipt, worker_id, (now, until), n),
    )?;
    Ok(row.map(Started))
}

/// A job [`start_on`] started, read once the transaction has committed.
pub(crate) struct Started(Row);

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Started").field(&self.0.id).finish()
    }
}

impl Started {
    pub(crate) fn into_stored(self) -> Result<StoredJob> {
        self.0.into_stored()
    }
}

fn start_statement(only: StartIf, dialect: Dialect) -> (String, u32) {
    let (condition, n) = match only {
        StartIf::Queued { max_attempts } => (
            "status = 'queued' AND cancel_requested = 0 AND attempts < $6 \
             AND (lease_until IS NULL OR lease_until <= $4)",
            max_attempts,
        ),
        StartIf::Unchanged { attempts } => (
            "attempts = $6 AND status IN ('queued', 'running') AND cancel_requested = 0",
            attempts,
        ),
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease = $1, \
         lease_until = $2, worker_id = $3, held = 0, progress = 0, \
         started_at = COALESCE(started_at, $4), enqueued_at = COALESCE(enqueued_at, $4){} \
         WHERE id = $5 AND {condition} AND NOT EXISTS (SELECT 1 FROM current_release c \
           JOIN workers w ON w.id = $3 WHERE c.id = 1 AND w.release <> c.release) \
           AND (required_release IS NULL \
                OR required_release = (SELECT release FROM workers WHERE id = $3)) \
         RETURNING {}",
        changes(dialect),
        columns!()
    );
    (sql, n)
}

/// What a job path update sets beside its change: the job's change number on SQLite
/// (see [`next_change!`]); nothing on Postgres, whose trigger notifies.
pub(crate) fn changes(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => concat!(", changed_seq = ", next_change!()),
        Dialect::Postgres => "",
    }
}

fn start_params<'a>(
    id: &'a str,
    receipt: &'a str,
    worker_id: &'a str,
    (now, until): (i64, i64),
    n: u32,
) -> [Param<'a>; 6] {
    [
        Param::Text(receipt),
        Param::Int(until),
        Param::Text(worker_id),
        Param::Int(now),
        Param::Text(id),
        Param::Int(i64::from(n)),
    ]
}

/// A job by id, regardless of owner (workers, orchestrator).
pub async fn find(db: &Db, id: &str) -> Result<Option<StoredJob>> {
    // The read behind every job's page and `GET /api/v1/jobs/{id}`: on the process's
    // own connection (see `crate::db::statements`).
    let row: Option<Row> = db
        .statements()?
        .fetch_optional(false, BY_ID, &[Param::Text(id)])
        .await?;
    row.map(Row::into_stored).transpose()
}

/// The re-runs of a job, newest first (at most 20).
pub async fn reruns(db: &Db, id: &str) -> Result<Vec<StoredJob>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "{SELECT} WHERE rerun_of = $1 ORDER BY created_at DESC, id LIMIT 20"
    ))
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(Row::into_stored).collect()
}

/// A job the principal may see.
pub async fn get(db: &Db, who: &Principal, id: &str) -> Result<StoredJob> {
    match find(db, id).await? {
        Some(job) if who.reads_all_jobs() || job.owner_id == who.user_id => Ok(job),
        _ => Err(Error::NotFound(format!(
            "no job with id `{id}`: list yours with GET /api/v1/jobs"
        ))),
    }
}

/// A job's attempts, first to last, as the triggers of migration 0012 recorded them.
pub async fn attempts(db: &Db, job_id: &str) -> Result<Vec<JobAttempt>> {
    type Row = (
        i64,
        Option<String>,
        Option<String>,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT attempt, worker_id, release, started_at, ended_at, outcome, error, failure \
         FROM job_attempts WHERE job_id = $1 ORDER BY seq",
    )
    .bind(job_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(attempt, worker, release, started, ended, outcome, error, failure)| JobAttempt {
                attempt: u32::try_from(attempt).unwrap_or(0),
                worker,
                release,
                started_at: rfc3339(started),
                ended_at: ended.map(rfc3339),
                outcome,
                error,
                failure,
            },
        )
        .collect())
}

/// An ended attempt the regression watch counts: its job's analysis kind, and whether
/// it failed through its release's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedAttempt {
    pub kind: String,
    pub failed: bool,
}

/// The attempts of `release` that ended in `from_ms..to_ms` and count for its health:
/// successes, and failures and losses that were not the data's fault (the newest
/// 10,000).
pub async fn counted_attempts(
    db: &Db,
    release: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<CountedAttempt>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT j.analysis_json, a.outcome FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
         WHERE a.release = $1 AND a.ended_at >= $2 AND a.ended_at < $3 \
           AND (a.outcome = 'succeeded' OR (a.outcome IN ('failed', 'lost') \
                AND COALESCE(a.failure, '') <> 'data')) \
         ORDER BY a.ended_at DESC LIMIT 10000",
    )
    .bind(release)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(analysis, outcome)| CountedAttempt {
            kind: serde_json::from_str::<quarry_domain::Analysis>(&analysis)
                .map_or_else(|_| "unknown".to_owned(), |a| a.kind().to_owned()),
            failed: outcome != "succeeded",
        })
        .collect())
}

/// The principal's jobs (a lead's, operator's or admin's: everyone's), newest first, optionally by status.
pub async fn list(
    db: &Db,
    who: &Principal,
    status: Option<JobStatus>,
    limit: u32,
) -> Result<Vec<StoredJob>> {
    let mut sql = format!("{SELECT} WHERE 1 = 1");
    let mut n = 0;
    if !who.reads_all_jobs() {
        n += 1;
        sql.push_str(&format!(" AND owner_id = ${n}"));
    }
    if status.is_some() {
        n += 1;
        sql.push_str(&format!(" AND status = ${n}"));
    }
    sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT ${}", n + 1));
    let mut query = sqlx::query_as::<_, Row>(&sql);
    if !who.reads_all_jobs() {
        query = query.bind(who.user_id.clone());
    }
    if let Some(s) = status {
        query = query.bind(s.as_str());
    }
    let rows = query.bind(i64::from(limit)).fetch_all(db.pool()).await?;
    rows.into_iter().map(Row::into_stored).collect()
}

/// A committed result's description.
#[derive(Debug, Clone)]
pub struct ResultMeta {
    /// Where the result is in the blob store; for a result kept in its row, the key
    /// it would have had (it still names the result, e.g. in the sorted copies' cache).
    pub blob_key: String,
    pub rows: u64,
    pub bytes: u64,
    pub columns: Vec<ColumnInfo>,
    /// The Parquet bytes of a small result, kept in its row instead of the blob store
    /// (at most `analyses.inline_result_max_kb`, itself at most 1 MiB).
    pub inline: Option<bytes::Bytes>,
}

impl ResultMeta {
    /// The result as a local file (polars reads files). A result kept in its row is
    /// written to a temporary file, removed when the value is dropped.
    pub async fn local_file(&self, blobs: &dyn BlobStore) -> Result<LocalFile> {
        let Some(bytes) = self.inline.clone() else {
            return blobs.local_file(&self.blob_key).await;
        };
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<LocalFile> {
            let mut file = tempfile::Builder::new().suffix(".parquet").tempfile()?;
            std::io::Write::write_all(&mut file, &bytes)?;
            Ok(LocalFile::temporary(file.into_temp_path()))
        })
        .await
        .context("writing a result to a temporary file")?;
        Ok(written.context("writing a result to a temporary file")?)
    }

    /// The result's bytes as a stream (a download).
    pub async fn stream(&self, blobs: &dyn BlobStore) -> Result<ByteStream<'static>> {
        match self.inline.clone() {
            Some(bytes) => Ok(Box::pin(futures::stream::once(async move { Ok(bytes) }))),
            None => blobs.get_stream(&self.blob_key).await,
        }
    }
}

/// The statement that records a job's result (at `now`) in a
/// [`crate::db::statements::Statements::transaction`]: it changes nothing when the
/// job already has one (a result is committed at most once).
pub(crate) fn result_step<'a>(job_id: &'a str, result: &ResultMeta, now: i64) -> Result<Step<'a>> {
    Ok(Step::new(
        INSERT_RESULT,
        vec![
            Param::Text(job_id),
            Param::Owned(result.blob_key.clone()),
            Param::Int(i64::try_from(result.rows).context("rows")?),
            Param::Int(i64::try_from(result.bytes).context("bytes")?),
            Param::Owned(serde_json::to_string(&result.columns).context("columns")?),
            Param::Int(now),
            Param::Blob(result.inline.clone()),
        ],
    ))
}

/// Records a job's result; changes nothing when the job already has one.
const INSERT_RESULT: &str = "INSERT INTO job_results (job_id, blob_key, row_count, byte_count, \
     columns_json, created_at, inline_parquet) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (job_id) DO NOTHING";

/// Records a job's result within `tx` (at `now`); `Ok(false)` when the job already
/// has one (a result is committed at most once).
pub(crate) async fn insert_result(
    tx: &mut crate::queue::Tx,
    job_id: &str,
    result: &ResultMeta,
    now: i64,
) -> Result<bool> {
    let inserted = sqlx::query(INSERT_RESULT)
        .bind(job_id)
        .bind(&result.blob_key)
        .bind(i64::try_from(result.rows).context("rows")?)
        .bind(i64::try_from(result.bytes).context("bytes")?)
        .bind(serde_json::to_string(&result.columns).context("columns")?)
        .bind(now)
        .bind(result.inline.as_ref().map(|b| b.to_vec()))
        .execute(&mut **tx)
        .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Asks for cancellation: a queued job is cancelled at once, a running one is
/// flagged and stopped by its worker. Returns the job afterwards. (Called through
/// [`crate::lifecycle::Lifecycle::cancel`].)
pub async fn request_cancel(db: &Db, who: &Principal, id: &str) -> Result<StoredJob> {
    let job = get(db, who, id).await?;
    if job.owner_id != who.user_id && !who.sees_everything() {
        return Err(Error::Forbidden(
            "leads see everyone's jobs read-only: only the job's owner, an operator or an \
             admin can cancel it"
                .to_owned(),
        ));
    }
    if job.view.status.is_terminal() {
        return Err(Error::Conflict(format!(
            "job `{id}` already {}: there is nothing to cancel",
            job.view.status
        )));
    }
    sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    sqlx::query(
        "UPDATE jobs SET status = 'cancelled', finished_at = $1 WHERE id = $2 AND status = 'queued'",
    )
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    get(db, who, id).await
}

/// A `job_results` row: key, rows, bytes, columns, inline Parquet.
type ResultRow = (String, i64, i64, String, Option<Vec<u8>>);

/// The committed result of a job.
pub async fn result(db: &Db, id: &str) -> Result<Option<ResultMeta>> {
    let row: Option<ResultRow> = sqlx::query_as(
        "SELECT blob_key, row_count, byte_count, columns_json, inline_parquet FROM job_results \
         WHERE job_id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|(blob_key, rows, bytes, columns, inline)| {
        Ok(ResultMeta {
            blob_key,
            rows: u64::try_from(rows).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
            columns: serde_json::from_str(&columns).context("columns_json")?,
            inline: inline.map(bytes::Bytes::from),
        })
    })
    .transpose()
}

/// Job activity in a time window, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Mean run time of the jobs that finished in the window, in seconds.
    pub mean_duration_secs: Option<f64>,
    /// Median and 95th percentile of those run times, in seconds.
    pub p50_duration_secs: Option<f64>,
    pub p95_duration_secs: Option<f64>,
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What happened to jobs since `since_ms`.
pub async fn activity_since(db: &Db, since_ms: i64) -> Result<Activity> {
    let (started, succeeded, failed, mean_ms): (i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(CASE WHEN started_at >= $1 THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN finished_at >= $1 AND status = 'succeeded' THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN finished_at >= $1 AND status = 'failed' THEN 1 ELSE 0 END), 0), \
           AVG(CASE WHEN finished_at >= $1 AND started_at IS NOT NULL \
               THEN CAST(finished_at - started_at AS DOUBLE PRECISION) END) \
         FROM jobs WHERE started_at >= $1 OR finished_at >= $1",
    )
    .bind(since_ms)
    .fetch_one(db.pool())
    .await?;
    let durations: Vec<(i64,)> = sqlx::query_as(
        "SELECT finished_at - started_at FROM jobs \
         WHERE finished_at >= $1 AND started_at IS NOT NULL",
    )
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?;
    let mut secs: Vec<f64> = durations
        .into_iter()
        .map(|(ms,)| ms.max(0) as f64 / 1000.0)
        .collect();
    secs.sort_by(f64::total_cmp);
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Activity {
        started: n(started),
        succeeded: n(succeeded),
        failed: n(failed),
        mean_duration_secs: mean_ms.map(|ms| ms / 1000.0),
        p50_duration_secs: quantile(&secs, 0.5),
        p95_duration_secs: quantile(&secs, 0.95),
    })
}

/// The position of a queued job among all queued jobs, oldest first (1 = next), or
/// `None` if it is not queued. Released jobs come before held ones.
pub async fn queue_position(db: &Db, id: &str) -> Result<Option<u64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'queued' \
                 AND ((o.held = 0 AND j.held > 0) \
                      OR ((o.held = 0) = (j.held = 0) \
                          AND (o.created_at < j.created_at \
                               OR (o.created_at = j.created_at AND o.id <= j.id))))) \
         FROM jobs j WHERE j.id = $1 AND j.status = 'queued'",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(n,)| u64::try_from(n).unwrap_or(0)))
}

/// How long the oldest job that has not finished (queued or running) has existed:
/// the age of the oldest job, whichever queue carries it.
pub async fn oldest_unfinished_age(db: &Db) -> Result<Option<std::time::Duration>> {
    let (oldest,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(created_at) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(db.pool())
            .await?;
    Ok(
        oldest
            .map(|at| std::time::Duration::from_millis(u64::try_from(now_ms() - at).unwrap_or(0))),
    )
}

/// How many jobs are running now.
pub async fn running_count(db: &Db) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
        .fetch_one(db.pool())
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The median run time, in seconds, of the last `n` jobs that succeeded.
pub async fn recent_median_secs(db: &Db, n: u32) -> Result<Option<f64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT finished_at - started_at FROM jobs \
         WHERE status = 'succeeded' AND started_at IS NOT NULL AND finished_at IS NOT NULL \
         ORDER BY finished_at DESC LIMIT $1",
    )
    .bind(i64::from(n))
    .fetch_all(db.pool())
    .await?;
    let mut secs: Vec<f64> = rows
        .into_iter()
        .map(|(ms,)| ms.max(0) as f64 / 1000.0)
        .collect();
    secs.sort_by(f64::total_cmp);
    Ok(quantile(&secs, 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 0.95), Some(4.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
