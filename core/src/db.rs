//! The database: one `sqlx::AnyPool` for SQLite (embedded) and Postgres (cloud), so
//! every repository is written once in portable SQL (`$1` placeholders, `RETURNING`,
//! INTEGER milliseconds for time, TEXT ids and JSON).

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod statements;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

/// Which SQL dialect the pool speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// Postgres only: for connections outside the pool (`LISTEN`, see `crate::watch`).
    url: Option<std::sync::Arc<SecretString>>,
    /// SQLite only: the database file, for connections outside the pool (the job
    /// path's, see [`statements`]); `None` in memory.
    file: Option<std::sync::Arc<std::path::Path>>,
    /// The job path's own connection to that file, opened on first use and shared by
    /// every clone of this `Db` (so by the process's queue and lifecycle).
    local: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<statements::LocalConn>>>,
}

impl Db {
    /// Connects and applies the migrations of the URL's dialect.
    pub async fn connect(url: &SecretString) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let dialect = if raw.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            anyhow::bail!("database.url must start with sqlite:// or postgres://");
        };
        if dialect == Dialect::Sqlite
            && let Some(parent) = sqlite_file(raw).and_then(|p| p.parent().map(ToOwned::to_owned))
        {
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 8 } else { 16 })
            // A SQLite connection is a file handle in this process: pinging it on every
            // acquire only costs a round trip. Postgres connections can break (a
            // failover), so they are checked.
            .test_before_acquire(dialect == Dialect::Postgres)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(raw)
            .await
            .context("connecting to the database")?;
        let url = (dialect == Dialect::Postgres).then(|| std::sync::Arc::new(url.clone()));
        let file = (dialect == Dialect::Sqlite)
            .then(|| sqlite_file(raw))
            .flatten()
            .map(std::sync::Arc::from);
        let db = Db {
            pool,
            dialect,
            url,
            file,
            local: std::sync::Arc::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                // WAL lets worker processes read while the server writes; it is a
                // property of the file, set once outside any transaction.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&self.pool)
                    .await
                    .context("enabling WAL")?;
                // Foreign keys off while migrating, as SQLite's procedure for
                // rebuilding a table requires (a DROP would otherwise cascade); the
                // switch only works outside a transaction, so on the one connection
                // the migrator uses, and the keys are checked before it is on again.
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .context("a migration connection")?;
                conn.execute("PRAGMA foreign_keys = OFF")
                    .await
                    .context("pausing foreign keys")?;
                let migrated = sqlx::migrate!("../migrations/sqlite")
                    .run(&mut *conn)
                    .await
                    .context("applying migrations/sqlite");
                let broken: Vec<sqlx::any::AnyRow> = sqlx::query("PRAGMA foreign_key_check")
                    .fetch_all(&mut *conn)
                    .await
                    .context("checking foreign keys")?;
                conn.execute("PRAGMA foreign_keys = ON")
                    .await
                    .context("restoring foreign keys")?;
                migrated?;
                anyhow::ensure!(
                    broken.is_empty(),
                    "the migrated database has {} rows breaking a foreign key",
                    broken.len()
                );
            }
            Dialect::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.pool)
                    .await
                    .context("applying migrations/postgres")?;
            }
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL of a Postgres database (for a connection of its own); `None` on SQLite.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref().map(ExposeSecret::expose_secret)
    }

    /// The SQLite database's file; `None` on Postgres and in memory.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Where the job path's writes run: the process's own connection on a SQLite
    /// file, the pool on Postgres (and on an in-memory SQLite database, which no
    /// second connection could open). See [`statements`].
    pub fn statements(&self) -> crate::error::Result<statements::Statements> {
        use statements::{LocalConn, Statements};
        let Some(path) = self.sqlite_path() else {
            return Ok(Statements::Pool(self.clone()));
        };
        if let Some(conn) = self.local.get() {
            return Ok(Statements::Local(conn.clone()));
        }
        // Two first uses at once each open one; the one that is not kept is closed.
        let _ = self.local.set(std::sync::Arc::new(LocalConn::open(path)?));
        let conn = self
            .local
            .get()
            .unwrap_or_else(|| unreachable!("set above"));
        Ok(Statements::Local(conn.clone()))
    }

    /// Starts a transaction that takes the write lock at once on SQLite, so two
    /// processes racing for the same row serialise instead of failing mid-way.
    pub async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }
}

/// How long a scratch database is kept: the next test run on the same server drops
/// older ones (a run takes well under an hour).
const SCRATCH_KEPT_SECS: u64 = 6 * 3600;

/// Creates an empty database with a fresh name on the Postgres server that
/// `admin_url` reaches, and returns the new database's URL. For tests: each gets its
/// own database, as `#[sqlx::test]` would give it. Its name carries its creation time
/// (`quarry_test_<unix seconds>_<random>`), and scratch databases older than
/// [`SCRATCH_KEPT_SECS`] (and those named before names carried one) are dropped
/// first, unless still in use, so test runs do not fill the server.
pub async fn create_scratch_postgres(admin_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "quarry_test_{now}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = sqlx::PgConnection::connect(admin_url).await.with_context(
        || "connecting to the test Postgres server (is it running? `cargo xtask test` starts one)",
    )?;
    let existing: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'quarry\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .context("listing scratch databases")?;
    for (old,) in existing {
        if scratch_is_stale(&old, now) {
            // In use (another run's): it stays, and goes next time.
            admin
                .execute(format!("DROP DATABASE IF EXISTS \"{old}\"").as_str())
                .await
                .ok();
        }
    }
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .context("creating a scratch database")?;
    admin.close().await.ok();
    let (without_query, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let (server, _) = without_query
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("//") && !server.ends_with('/'))
        .unwrap_or((without_query, ""));
    let mut url = format!("{server}/{name}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// Whether scratch database `name`, seen at `now` (unix seconds), is old enough to drop.
fn scratch_is_stale(name: &str, now: u64) -> bool {
    let Some(rest) = name.strip_prefix("quarry_test_") else {
        return false;
    };
    match rest.split_once('_') {
        Some((secs, _)) => secs
            .parse::<u64>()
            .is_ok_and(|t| now.saturating_sub(t) > SCRATCH_KEPT_SECS),
        // Named before names carried their time: 32 hex digits.
        None => rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()),
    }
}

fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn scratch_databases_are_stale_after_their_time_or_without_one() {
        let now = 1_800_000_000;
        let hour_ago = format!("quarry_test_{}_abcdef012345", now - 3600);
        let day_ago = format!("quarry_test_{}_abcdef012345", now - 86_400);
        assert!(
            !scratch_is_stale(&hour_ago, now),
            "another run may still use it"
        );
        assert!(scratch_is_stale(&day_ago, now));
        assert!(scratch_is_stale(
            "quarry_test_0c6ae98bed90486eb52c4cc1d4912fdb",
            now
        ));
        for kept in [
            "postgres",
            "quarry_test_x",
            "quarry_test_",
            "quarry_production",
        ] {
            assert!(!scratch_is_stale(kept, now), "{kept}");
        }
    }

    /// A migrated SQLite database in a temporary directory (kept alive by the guard).
    pub(crate) async fn temp_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
        let db = Db::connect(&url).await.unwrap();
        (dir, db)
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite:///tmp/q/quarry.db?mode=rwc"),
            Some("/tmp/q/quarry.db".into())
        );
        assert_eq!(
            sqlite_file("sqlite://.quarry/quarry.db"),
            Some(".quarry/quarry.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[tokio::test]
    async fn a_fresh_database_is_migrated_and_reopening_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!(
            "sqlite://{}/sub/q.db?mode=rwc",
            dir.path().display()
        ));
        let db = Db::connect(&url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
        drop(db);
        Db::connect(&url).await.unwrap();
    }
}
