//! Transactions of steps, on the process's own SQLite connection and on Postgres's
//! pool (`QUARRY_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use super::*;
use secrecy::SecretString;

async fn sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/s.db?mode=rwc", dir.path().display()));
    (dir, Db::connect(&url).await.unwrap())
}

async fn postgres() -> Db {
    let admin = std::env::var("QUARRY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let url = crate::db::create_scratch_postgres(&admin).await.unwrap();
    Db::connect(&SecretString::from(url)).await.unwrap()
}

/// A SQLite file with the test table, its statements and their own connection.
async fn local_table() -> (tempfile::TempDir, Db, Statements, Arc<LocalConn>) {
    let (dir, db) = sqlite().await;
    create_table(&db).await;
    let s = db.statements().unwrap();
    let Statements::Local(conn) = &s else {
        panic!("a file's statements are local");
    };
    let conn = Arc::clone(conn);
    (dir, db, s, conn)
}

async fn create_table(db: &Db) {
    sqlx::query("CREATE TABLE steps_t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
}

async fn rows(db: &Db) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT k, v FROM steps_t ORDER BY k")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

const INSERT: &str = "INSERT INTO steps_t (k, v) VALUES ($1, $2) RETURNING v";
const BUMP: &str = "UPDATE steps_t SET v = v + 1 WHERE k = $1";

/// What every side must do: steps in order, conditions on earlier steps' changes,
/// returned values, and nothing left behind by a transaction a guard rolled back.
async fn steps_behave(db: &Db, local: bool) {
    create_table(db).await;
    let s = db.statements().unwrap();
    assert_eq!(matches!(s, Statements::Local(_)), local);

    let done = s
        .transaction(&[
            Step::new(INSERT, vec![Param::Text("a"), Param::Int(7)]).returning(),
            Step::new(BUMP, vec![Param::Text("nobody")]),
            Step::new(BUMP, vec![Param::Text("a")]).after(1),
            Step::new(BUMP, vec![Param::Owned("a".to_owned())]).after(0),
        ])
        .await
        .unwrap()
        .expect("no guard");
    assert_eq!(done[0].value, Some(7));
    assert_eq!((done[1].ran, done[1].changed), (true, 0));
    assert!(!done[2].ran, "step 1 changed nothing, so step 2 is skipped");
    assert_eq!((done[3].ran, done[3].changed), (true, 1));
    assert_eq!(rows(db).await, [("a".to_owned(), 8)]);

    // A guard that fails undoes the steps before it.
    let refused = s
        .transaction(&[
            Step::new(INSERT, vec![Param::Text("b"), Param::Int(1)]).returning(),
            Step::new(BUMP, vec![Param::Text("a")]),
            Step::new(BUMP, vec![Param::Text("nobody")]).must_change(),
            Step::new(BUMP, vec![Param::Text("a")]),
        ])
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(rows(db).await, [("a".to_owned(), 8)]);

    // A failing statement is an error, and undoes what came before it too.
    let failed = s
        .transaction(&[
            Step::new(INSERT, vec![Param::Text("c"), Param::Int(1)]).returning(),
            Step::new(INSERT, vec![Param::Text("a"), Param::Int(1)]).returning(),
        ])
        .await;
    assert!(failed.is_err(), "a duplicate key");
    assert_eq!(rows(db).await, [("a".to_owned(), 8)]);

    // The connection is usable afterwards, for single statements too.
    assert_eq!(s.execute(BUMP, &[Param::Text("a")]).await.unwrap(), 1);
    let back: Option<(String, i64)> = s
        .fetch_optional(
            false,
            "SELECT k, v FROM steps_t WHERE k = $1",
            &[Param::Text("a")],
        )
        .await
        .unwrap();
    assert_eq!(back, Some(("a".to_owned(), 9)));
    let null: Option<(Option<String>,)> = s
        .fetch_optional(false, "SELECT CAST($1 AS TEXT)", &[Param::Null])
        .await
        .unwrap();
    assert_eq!(null, Some((None,)));
}

#[tokio::test]
async fn steps_on_a_sqlite_file_run_on_the_processs_own_connection() {
    let (_dir, db) = sqlite().await;
    steps_behave(&db, true).await;
    // Every clone of the database shares that one connection.
    let (Statements::Local(a), Statements::Local(b)) =
        (db.statements().unwrap(), db.clone().statements().unwrap())
    else {
        panic!("a file's statements are local");
    };
    assert!(Arc::ptr_eq(&a, &b));
}

#[tokio::test]
async fn steps_on_postgres_run_on_the_pool() {
    steps_behave(&postgres().await, false).await;
}

#[tokio::test]
async fn reads_go_on_while_a_checkpoint_holds_the_writes_back() {
    let (_dir, db, s, conn) = local_table().await;
    // What a checkpoint holds while it runs (see `LocalConn::wrote`).
    let closed = Arc::clone(&conn.gate).write_owned().await;
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        s.fetch_optional::<(i64,)>(false, "SELECT COUNT(*) FROM steps_t", &[]),
    )
    .await
    .expect("a read does not wait for the checkpoint");
    assert_eq!(read.unwrap(), Some((0,)));
    let write = tokio::spawn({
        let s = s.clone();
        async move {
            s.execute(
                "INSERT INTO steps_t (k, v) VALUES ($1, $2)",
                &[Param::Text("w"), Param::Int(1)],
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!write.is_finished(), "a write waits for the checkpoint");
    drop(closed);
    let written = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("written once the checkpoint is done")
        .unwrap()
        .unwrap();
    assert_eq!(written, 1);
    assert_eq!(rows(&db).await, [("w".to_owned(), 1)]);
}

#[tokio::test]
async fn a_transaction_left_open_is_ended_before_the_next_statement() {
    let (_dir, db, s, conn) = local_table().await;
    // As a panic between `BEGIN` and `COMMIT` would leave it: open, holding the lock.
    conn.conn
        .lock()
        .unwrap()
        .0
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO steps_t (k, v) VALUES ('lost', 1);")
        .unwrap();
    let written = s
        .execute(
            "INSERT INTO steps_t (k, v) VALUES ($1, $2)",
            &[Param::Text("kept"), Param::Int(2)],
        )
        .await
        .unwrap();
    assert_eq!(written, 1);
    // Committed, and the lock is free for another connection's write.
    sqlx::query("INSERT INTO steps_t (k, v) VALUES ('pool', 3)")
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(
        rows(&db).await,
        [("kept".to_owned(), 2), ("pool".to_owned(), 3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_take_the_turnstile_once_they_met_another_writer_and_wait_there() {
    let (dir, db, _, _) = local_table().await;
    // A connection whose writers take the turnstile (`QUARRY_SQLITE_TURNSTILE=on`).
    let conn = Arc::new(LocalConn::opened(&dir.path().join("s.db"), true).unwrap());
    let s = Statements::Local(Arc::clone(&conn));
    assert!(!conn.contended(), "a writer alone takes no turnstile");
    s.execute(BUMP, &[Param::Text("none")]).await.unwrap();
    assert!(!conn.contended());
    // Another process's connection holds SQLite's lock for a while.
    let path = dir.path().join("s.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO steps_t (k, v) VALUES ('other', 1);")
        .unwrap();
    let write = tokio::spawn({
        let s = s.clone();
        async move {
            s.execute(
                "INSERT INTO steps_t (k, v) VALUES ($1, $2)",
                &[Param::Text("ours"), Param::Int(2)],
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(write.await.unwrap().unwrap(), 1);
    assert!(conn.contended(), "a write that found the lock taken");
    // Now another process holds the turnstile: our next write waits there (not in
    // busy retries) and goes on when it is let go.
    let theirs = Turnstile::open(&path).expect("lock file");
    let turn = theirs.enter().await;
    let write = tokio::spawn({
        let s = s.clone();
        async move { s.execute(BUMP, &[Param::Text("ours")]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (SQLite's lock is free: only the turnstile holds it back.)
    assert!(
        !write.is_finished(),
        "wrote while another process held the turnstile"
    );
    drop(turn);
    assert_eq!(write.await.unwrap().unwrap(), 1);
    assert_eq!(
        rows(&db).await,
        [("other".to_owned(), 1), ("ours".to_owned(), 3)]
    );
}

/// Holds the connection, starts the writes `spawn` makes, waits until they all line
/// up for the connection, then lets them go: they meet, as concurrent writes of one
/// process do under load.
async fn line_up<T: Send + 'static>(
    conn: &Arc<LocalConn>,
    spawn: impl FnOnce() -> Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let writers = {
        let _held = conn.conn.lock().unwrap();
        let writers = spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while conn.waiting.load(Ordering::SeqCst) < writers.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writers never lined up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        writers
    };
    let mut outcomes = Vec::with_capacity(writers.len());
    for w in writers {
        outcomes.push(w.await);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 5)]
async fn writes_that_meet_share_one_commit_and_each_keeps_only_its_own_outcome() {
    let (_dir, db, s, conn) = local_table().await;
    let commits = conn.writes.load(Ordering::Relaxed);
    let insert = |k: &'static str| {
        let s = s.clone();
        tokio::spawn(async move {
            s.execute(
                "INSERT INTO steps_t (k, v) VALUES ($1, 1)",
                &[Param::Text(k)],
            )
            .await
            .map(Some)
        })
    };
    let writers = || {
        vec![
            insert("a"),
            // Fenced: a step that must change a row changed none; its insert is undone.
            tokio::spawn({
                let s = s.clone();
                async move {
                    s.transaction(&[
                        Step::new(INSERT, vec![Param::Text("fenced"), Param::Int(1)]).returning(),
                        Step::new(BUMP, vec![Param::Text("nobody")]).must_change(),
                    ])
                    .await
                    .map(|done| done.map(|_| 0))
                }
            }),
            // Fails: no such table; only it sees the error.
            tokio::spawn({
                let s = s.clone();
                async move {
                    s.execute("INSERT INTO no_such_table VALUES (1)", &[])
                        .await
                        .map(Some)
                }
            }),
            insert("d"),
        ]
    };
    let outcomes: Vec<_> = line_up(&conn, writers)
        .await
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    assert_eq!(outcomes[0].as_ref().unwrap(), &Some(1));
    assert!(outcomes[1].as_ref().unwrap().is_none(), "{:?}", outcomes[1]);
    assert!(outcomes[2].is_err(), "{:?}", outcomes[2]);
    assert_eq!(outcomes[3].as_ref().unwrap(), &Some(1));
    assert_eq!(rows(&db).await, [("a".to_owned(), 1), ("d".to_owned(), 1)]);
    assert_eq!(
        conn.writes.load(Ordering::Relaxed) - commits,
        1,
        "the four writes took one commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_panics_in_a_group_takes_nothing_of_its_own_in_and_no_one_is_told_a_lie() {
    let (_dir, db, s, conn) = local_table().await;
    let insert = || {
        tokio::spawn({
            let s = s.clone();
            async move {
                s.execute("INSERT INTO steps_t (k, v) VALUES ('a', 1)", &[])
                    .await
                    .is_ok()
            }
        })
    };
    let panics = || {
        tokio::spawn({
            let s = s.clone();
            async move {
                s.local_transaction(|c| {
                    c.execute("INSERT INTO steps_t (k, v) VALUES ('p', 1)", [])?;
                    if c.is_autocommit() {
                        return Ok(Some(()));
                    }
                    panic!("a bug in the middle of a write");
                })
                .await
                .is_ok()
            }
        })
    };
    let outcomes = line_up(&conn, || vec![insert(), panics()]).await;
    assert!(
        outcomes[1].as_ref().is_err_and(|e| e.is_panic()),
        "{outcomes:?}"
    );
    let told_written = *outcomes[0].as_ref().unwrap();
    // Whether the insert ran before the panic (and shared its transaction, so it
    // was told it failed) or after it: what it was told is what the database holds.
    let stored = rows(&db).await;
    assert!(!stored.iter().any(|(k, _)| k == "p"), "{stored:?}");
    assert_eq!(
        stored.iter().any(|(k, _)| k == "a"),
        told_written,
        "{stored:?}"
    );
    // A later write goes on as usual.
    s.execute("INSERT INTO steps_t (k, v) VALUES ('later', 1)", &[])
        .await
        .unwrap();
    assert!(rows(&db).await.iter().any(|(k, _)| k == "later"));
}
