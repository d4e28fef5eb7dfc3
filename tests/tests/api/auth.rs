//! Authentication: every `/api/v1` route needs a valid bearer token.

use quarry_tests::{Quarry, eventually};
use serde_json::Value;
use std::time::Duration;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (status, body)
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let q = Quarry::start().await;
    let r = q.http.get(q.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");

    // Unknown pages and files (a browser asks for /favicon.ico) get the app's own
    // "not found" page, signed in or not.
    for path in ["/favicon.ico", "/no/such/page"] {
        let r = q.http.get(q.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(
            r.text().await.unwrap().contains("There is no page here"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn api_routes_refuse_missing_malformed_and_unknown_tokens_with_json_401() {
    let q = Quarry::start().await;
    for path in [
        "/api/v1/datasets",
        "/api/v1/datasets/x",
        "/api/v1/openapi.json",
        "/api/v1/nope",
    ] {
        let (status, body) = error_of(q.http.get(q.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bearer"),
            "{body}"
        );
    }
    let r = q
        .http
        .get(q.url("/api/v1/datasets"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"quarry\"");
    assert_eq!(error_of(r).await.0, 401);
    let (status, body) = error_of(
        q.http
            .get(q.url("/api/v1/datasets"))
            .bearer_auth("qry_0000")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid"),
        "{body}"
    );
    let (status, _) = error_of(
        q.http
            .post(q.url("/api/v1/datasets?name=x"))
            .header("content-type", "text/csv")
            .body("a\n1\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(q.blob_files().is_empty());
}

#[tokio::test]
async fn an_expired_token_is_refused_and_says_so() {
    let q = Quarry::start().await;
    q.add_user("eve", "analyst").await;
    let out = q
        .cli(&["user", "token", "eve", "--expires-in", "1"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let body = eventually(Duration::from_secs(10), "the token to expire", || async {
        let r = q
            .http
            .get(q.url("/api/v1/datasets"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (r.status() == 401).then_some(r)
    })
    .await;
    let (_, body) = error_of(body).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn user_add_prints_a_working_token_and_refuses_bad_roles_and_duplicates() {
    let q = Quarry::start().await;
    let token = q.add_user("lee", "lead").await;
    assert!(token.starts_with("qry_"));
    let r = q
        .http
        .get(q.url("/api/v1/datasets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let bad = q
        .cli(&["user", "add", "x", "--role", "root"])
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("analyst, lead, operator, admin"));
    let dup = q
        .cli(&["user", "add", "lee", "--role", "lead"])
        .await
        .unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
}

#[tokio::test]
async fn the_admin_token_file_is_private_and_in_the_data_dir() {
    let q = Quarry::start().await;
    let path = q.data_dir.path().join("admin.token");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(q.data_dir.path().join("quarry.db").exists());
    let r = q
        .http
        .get(q.url("/api/v1/openapi.json"))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["paths"]["/api/v1/datasets"]["post"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"]["/api/v1/datasets/{id}"]["delete"].is_object());
    let status = q.stop().await.unwrap();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status}");
}

// Sign-in throttling, password hashing bounds, and sessions opened with tokens.

const PASSWORD: &str = "correct horse battery";

/// Creates a user who signs in with [`PASSWORD`]; returns their API token.
async fn add_user_with_password(q: &Quarry, name: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(quarry_tests::quarry_bin())
        .args(["user", "add", name, "--role", "analyst", "--password-stdin"])
        .env("QUARRY_DATA_DIR", q.data_dir.path())
        .env("QUARRY_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the sign-in form.
async fn sign_in(q: &Quarry, form: &[(&str, &str)]) -> reqwest::Response {
    no_redirects()
        .post(q.url("/session"))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The session cookie (`name=value`) of a successful sign-in, or a failure.
fn session_cookie_of(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 303, "sign-in redirects");
    assert_eq!(r.headers()["location"], "/datasets", "signed in");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn sign_in_with_token(q: &Quarry, token: &str) -> String {
    session_cookie_of(&sign_in(q, &[("token", token)]).await)
}

/// `GET /api/v1/datasets` with only the session cookie.
async fn read_with_cookie(q: &Quarry, cookie: &str) -> reqwest::Response {
    q.http
        .get(q.url("/api/v1/datasets"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Calls a server function (`/api/<name>`) with the session cookie.
async fn server_fn(q: &Quarry, cookie: &str, name: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = q
        .http
        .post(q.url(&format!("/api/{name}")))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds")
}

#[tokio::test]
async fn the_eleventh_failed_sign_in_for_a_name_is_refused_with_429_and_retry_after() {
    let q = Quarry::start().await; // 10 failures per name, 20 per address, in 300 s
    add_user_with_password(&q, "ana").await;
    add_user_with_password(&q, "bo").await;
    for i in 0..10 {
        let r = sign_in(&q, &[("name", "ana"), ("password", "wrong password!")]).await;
        assert_eq!(r.status(), 303, "failure {i} goes back to the form");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/login?error="), "{to}");
        assert!(r.headers().get("set-cookie").is_none());
    }

    let r = sign_in(&q, &[("name", "ana"), ("password", "wrong password!")]).await;
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r);
    assert!((290..=300).contains(&wait), "the window is 300 s: {wait}");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("too many failed sign-ins: try again in 5 minutes"),
        "{page}"
    );
    // Even the right password waits: the lock says nothing about the password.
    let r = no_redirects()
        .post(q.url("/session"))
        .header("accept", "application/json")
        .form(&[("name", "ana"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r) >= 290);
    let (_, body) = error_of(r).await;
    assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in"),
        "{body}"
    );

    let r = q.http.get(q.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Another user from the same address (11 of its 20 allowed) still signs in.
    let cookie = session_cookie_of(&sign_in(&q, &[("name", "bo"), ("password", PASSWORD)]).await);
    assert_eq!(read_with_cookie(&q, &cookie).await.status(), 200);
}

#[tokio::test]
async fn failed_sign_ins_from_one_address_are_refused_whatever_the_names() {
    let q = Quarry::start_with(&[("QUARRY_AUTH__MAX_FAILURES_PER_ADDRESS", "3")]).await;
    add_user_with_password(&q, "ana").await;
    for name in ["x1", "x2", "x3"] {
        let r = sign_in(&q, &[("name", name), ("password", "wrong password!")]).await;
        assert_eq!(r.status(), 303, "{name}");
    }
    let r = sign_in(&q, &[("name", "ana"), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), 429, "a fresh name from the same address");
    assert!(retry_after(&r) >= 290);
    let r = sign_in(&q, &[("token", "qry_00")]).await;
    assert_eq!(r.status(), 429, "token sign-ins count per address too");
}

#[tokio::test]
async fn a_flood_of_concurrent_wrong_sign_ins_gets_401_or_429_within_bounded_memory() {
    let q = Quarry::start_with(&[("QUARRY_AUTH__MAX_FAILURES_PER_ADDRESS", "1000")]).await;
    add_user_with_password(&q, "ana").await;
    let client = no_redirects();
    let started = std::time::Instant::now();
    let attempts = (0..50).map(|i| {
        let (client, url) = (client.clone(), q.url("/session"));
        async move {
            // Distinct names: every attempt needs a password hash (~19 MiB each).
            let name = if i % 10 == 0 {
                "ana".to_owned()
            } else {
                format!("nobody-{i}")
            };
            let r = client
                .post(url)
                .header("accept", "application/json")
                .form(&[("name", name.as_str()), ("password", "wrong password!")])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if status == 429 {
                assert!(retry_after(&r) >= 1);
            }
            status
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&401), "most were checked: {statuses:?}");
    assert!(started.elapsed() < Duration::from_secs(60));

    let status = std::fs::read_to_string(format!("/proc/{}/status", q.pid())).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {status}"))
    };
    // The peak, not just now: 50 hashes at once would need ~950 MiB.
    let (rss, peak) = (kib("VmRSS:"), kib("VmHWM:"));
    assert!(peak < 400 * 1024, "peak RSS {peak} KiB (now {rss} KiB)");
    assert_eq!(
        q.http.get(q.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let cookie = session_cookie_of(&sign_in(&q, &[("name", "ana"), ("password", PASSWORD)]).await);
    assert_eq!(read_with_cookie(&q, &cookie).await.status(), 200);
}

#[tokio::test]
async fn a_session_opened_with_a_token_ends_when_the_token_is_revoked() {
    let q = Quarry::start().await;
    let token = q.add_user("cy", "analyst").await;
    let cookie = sign_in_with_token(&q, &token).await;
    assert_eq!(read_with_cookie(&q, &cookie).await.status(), 200);
    let (status, list) = server_fn(&q, &cookie, "list_tokens", &[]).await;
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let (status, text) = server_fn(&q, &cookie, "revoke_token", &[("id", &id)]).await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = error_of(read_with_cookie(&q, &cookie).await).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the token this session came from has been revoked"),
        "{body}"
    );
    let (status, text) = server_fn(&q, &cookie, "list_tokens", &[]).await;
    assert_eq!(status, 401, "server functions too: {text}");
    let r = sign_in(&q, &[("token", &token)]).await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?error="),
        "no new session from it"
    );
}

#[tokio::test]
async fn a_session_opened_with_a_token_expiring_in_two_seconds_ends_then() {
    let q = Quarry::start().await;
    q.add_user("dee", "analyst").await;
    let out = q
        .cli(&["user", "token", "dee", "--expires-in", "2"])
        .await
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let cookie = sign_in_with_token(&q, &token).await;
    assert_eq!(read_with_cookie(&q, &cookie).await.status(), 200);
    let refused = eventually(Duration::from_secs(10), "the session to end", || async {
        let r = read_with_cookie(&q, &cookie).await;
        (r.status() != 200).then_some(r)
    })
    .await;
    let (status, body) = error_of(refused).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the token this session came from has expired"),
        "{body}"
    );
}

#[tokio::test]
async fn a_session_from_an_expiring_token_cannot_mint_a_longer_lived_token() {
    let q = Quarry::start().await;
    let lasting = q.add_user("eli", "analyst").await;
    let out = q
        .cli(&["user", "token", "eli", "--expires-in", "3600"])
        .await
        .unwrap();
    assert!(out.status.success());
    let hourly = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let cookie = sign_in_with_token(&q, &hourly).await;

    for days in ["0", "7"] {
        let (status, text) = server_fn(
            &q,
            &cookie,
            "create_token",
            &[("label", "longer"), ("expires_in_days", days)],
        )
        .await;
        assert_eq!(status, 403, "{days} days: {text}");
        assert!(text.contains("cannot outlive it"), "{text}");
    }
    let (_, list) = server_fn(&q, &cookie, "list_tokens", &[]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing was minted: {list}"
    );

    // A session opened with the never-expiring token may mint one that never expires.
    let cookie = sign_in_with_token(&q, &lasting).await;
    let (status, minted) = server_fn(
        &q,
        &cookie,
        "create_token",
        &[("label", "forever"), ("expires_in_days", "0")],
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let minted: String = serde_json::from_str(&minted).unwrap();
    let r = q
        .http
        .get(q.url("/api/v1/datasets"))
        .bearer_auth(&minted)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads `stream` until the server ends it, failing with `what` after `within`.
async fn ends_within(stream: &mut reqwest::Response, within: Duration, what: &str) {
    tokio::time::timeout(within, async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await
    .expect(what);
}

/// Submits a 60 s spin with `token` and opens its event stream with the same token.
async fn spin_and_follow(q: &Quarry, token: &str, dataset: &str) -> (String, reqwest::Response) {
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(token)
        .json(&serde_json::json!({"dataset_id": dataset, "analysis": {"kind": "spin", "seconds": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    (id, stream)
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    use secrecy::ExposeSecret as _;
    let q = Quarry::start_with(&[("QUARRY_FLEET__TICK_SECS", "1")]).await;
    let owner = q.add_user("gus", "analyst").await;
    let dataset = q.upload_csv(&owner, "d", "a\n1\n").await;
    // A token that expires in 3 s, written straight into the server's database.
    let db = quarry_core::Db::connect(&secrecy::SecretString::from(format!(
        "sqlite://{}/quarry.db",
        q.data_dir.path().display()
    )))
    .await
    .unwrap();
    let user = quarry_core::auth::find_user(&db, "gus")
        .await
        .unwrap()
        .unwrap();
    let short = quarry_core::auth::issue_token(
        &db,
        &user.id,
        "short",
        Some(quarry_core::clock::now_ms() + 3000),
    )
    .await
    .unwrap();
    let (_, mut stream) = spin_and_follow(&q, short.expose_secret(), &dataset).await;
    let opened = std::time::Instant::now();
    // Well before the streams' periodic check (30 s): at the token's end.
    ends_within(
        &mut stream,
        Duration::from_secs(12),
        "the stream ends once its token has expired",
    )
    .await;
    assert!(
        opened.elapsed() >= Duration::from_secs(2),
        "it ended at the expiry, not at once: {:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn deleting_a_dataset_ends_the_event_streams_of_its_jobs() {
    let q = Quarry::start_with(&[("QUARRY_FLEET__TICK_SECS", "1")]).await;
    let token = q.add_user("hal", "analyst").await;
    let dataset = q.upload_csv(&token, "d", "a\n1\n").await;
    let (_, mut stream) = spin_and_follow(&q, &token, &dataset).await;
    let first = stream.chunk().await.unwrap().expect("the opening event");
    assert!(String::from_utf8_lossy(&first).contains("event: job"));
    let r = q
        .http
        .delete(q.url(&format!("/api/v1/datasets/{dataset}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Well before the streams' periodic check (30 s).
    ends_within(
        &mut stream,
        Duration::from_secs(10),
        "the stream ends with its job",
    )
    .await;
}

#[tokio::test]
async fn revoking_a_token_ends_the_event_streams_it_opened() {
    let q = Quarry::start_with(&[("QUARRY_FLEET__TICK_SECS", "1")]).await;
    let token = q.add_user("fay", "analyst").await;
    let dataset = q.upload_csv(&token, "d", "a\n1\n").await;
    let (id, mut stream) = spin_and_follow(&q, &token, &dataset).await;
    let first = stream.chunk().await.unwrap().expect("the opening event");
    assert!(String::from_utf8_lossy(&first).contains("event: job"));

    let cookie = sign_in_with_token(&q, &token).await;
    let (_, list) = server_fn(&q, &cookie, "list_tokens", &[]).await;
    let token_id = serde_json::from_str::<Value>(&list).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, text) = server_fn(&q, &cookie, "revoke_token", &[("id", &token_id)]).await;
    assert_eq!(status, 200, "{text}");
    ends_within(
        &mut stream,
        Duration::from_secs(10),
        "the stream ends soon after the revocation",
    )
    .await;
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    assert_ne!(
        job["status"], "succeeded",
        "it ended early, not with the job"
    );
}
