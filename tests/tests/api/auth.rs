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
