//! One repository suite, two dialects: every repository's behaviour on a fresh SQLite
//! file and on a fresh database of a real Postgres server (`QUARRY_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; `cargo xtask test` makes sure
//! one is running).

use quarry_core::Db;
use quarry_core::db::{conformance, create_scratch_postgres};
use secrecy::SecretString;

fn postgres_admin_url() -> String {
    std::env::var("QUARRY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[tokio::test]
async fn sqlite_passes_the_repository_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/q.db?mode=rwc", dir.path().display()));
    let db = Db::connect(&url).await.unwrap();
    conformance::run_all(&db).await;
}

#[tokio::test]
async fn postgres_passes_the_repository_suite() {
    let url = create_scratch_postgres(&postgres_admin_url())
        .await
        .unwrap();
    let db = Db::connect(&SecretString::from(url.clone())).await.unwrap();
    conformance::run_all(&db).await;
    db.pool().close().await;
    // Reconnecting applies no migration twice.
    let again = Db::connect(&SecretString::from(url)).await.unwrap();
    assert_eq!(again.dialect(), quarry_core::db::Dialect::Postgres);
}
