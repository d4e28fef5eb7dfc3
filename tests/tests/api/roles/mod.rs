//! The role matrix: anonymous, the owning analyst, another analyst, a lead, an operator
//! and an admin, against every REST route, every server function and the pages. Every
//! cell is asserted; the server enforces roles, whatever the UI shows.

use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::time::Duration;

mod control;

/// The columns of the matrix.
pub(super) const WHO: [&str; 6] = [
    "anonymous",
    "owner",
    "other analyst",
    "lead",
    "operator",
    "admin",
];

#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    token: Option<String>,
    cookie: Option<String>,
}

pub(super) async fn caller(q: &Quarry, token: Option<String>) -> Caller {
    let cookie = match &token {
        Some(t) => Some(q.session_cookie(t).await),
        None => None,
    };
    Caller { token, cookie }
}

#[derive(Clone)]
pub(super) enum Body {
    None,
    Json(Value),
    Csv(&'static str),
    Form(Vec<(&'static str, String)>),
}

/// Sends a request as `who`: REST routes with the bearer token, everything else with
/// the session cookie. Returns the status and the body text.
pub(super) async fn send(
    q: &Quarry,
    who: &Caller,
    method: &str,
    path: &str,
    body: Body,
) -> (u16, String) {
    let method: reqwest::Method = method.parse().unwrap();
    let mut r = q.http.request(method, q.url(path));
    if path.starts_with("/api/v1/") {
        if let Some(t) = &who.token {
            r = r.bearer_auth(t);
        }
    } else if let Some(c) = &who.cookie {
        r = r.header("cookie", c);
    }
    r = match body {
        Body::None => r,
        Body::Json(v) => r.json(&v),
        Body::Csv(text) => r.header("content-type", "text/csv").body(text),
        Body::Form(pairs) => r.form(&pairs),
    };
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

const CSV: &str = "city,amount\nOslo,1.5\nRome,2.5\nOslo,3.0\n";

#[tokio::test]
async fn every_role_gets_exactly_its_rights_on_every_route() {
    let q = Quarry::start_with(&[("QUARRY_FLEET__TICK_SECS", "1")]).await;
    let ana = q.add_user("ana", "analyst").await;
    let bea = q.add_user("bea", "analyst").await;
    let lee = q.add_user("lee", "lead").await;
    let olga = q.add_user("olga", "operator").await;
    let callers = [
        caller(&q, None).await,
        caller(&q, Some(ana.clone())).await,
        caller(&q, Some(bea)).await,
        caller(&q, Some(lee)).await,
        caller(&q, Some(olga)).await,
        caller(&q, Some(q.admin_token.clone())).await,
    ];

    // The owner's dataset and a finished job on it; one dataset per deleting role.
    let d = q.upload_csv(&ana, "shared", CSV).await;
    let doomed = [
        d.clone(),
        q.upload_csv(&ana, "for-owner", CSV).await,
        d.clone(),
        d.clone(),
        q.upload_csv(&ana, "for-operator", CSV).await,
        q.upload_csv(&ana, "for-admin", CSV).await,
    ];
    let (status, job) = send(
        &q,
        &callers[1],
        "POST",
        "/api/v1/jobs",
        Body::Json(json!({"dataset_id": d, "analysis": {"kind": "profile"}})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let j = serde_json::from_str::<Value>(&job).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(60), "the job to succeed", || async {
        let (_, body) = send(
            &q,
            &callers[1],
            "GET",
            &format!("/api/v1/jobs/{j}"),
            Body::None,
        )
        .await;
        body.contains("\"succeeded\"").then_some(())
    })
    .await;

    let profile = || json!({"dataset_id": d, "analysis": {"kind": "profile"}});
    let id_form = |id: &str| Body::Form(vec![("id", id.to_owned())]);
    let mut cells = 0;
    fn check(label: &str, got: u16, want: u16, who: usize, body: &str) {
        assert_eq!(got, want, "{label} as {}: {body}", WHO[who]);
    }
    // One row of the matrix: the route, and the status each caller must get.
    macro_rules! row {
        ($label:expr, $method:expr, $path:expr, $body:expr, $want:expr) => {
            let path = $path;
            let path: &str = path.as_ref();
            for (i, who) in callers.iter().enumerate() {
                let (got, text) = send(&q, who, $method, path, $body).await;
                check($label, got, $want[i], i, &text);
                cells += 1;
            }
        };
    }

    // REST API.
    row!(
        "list datasets",
        "GET",
        "/api/v1/datasets".to_owned(),
        Body::None,
        [401, 200, 200, 200, 200, 200]
    );
    row!(
        "read dataset",
        "GET",
        format!("/api/v1/datasets/{d}"),
        Body::None,
        [401, 200, 404, 404, 200, 200]
    );
    row!(
        "submit job",
        "POST",
        "/api/v1/jobs".to_owned(),
        Body::Json(profile()),
        [401, 202, 404, 404, 202, 202]
    );
    row!(
        "list jobs",
        "GET",
        "/api/v1/jobs".to_owned(),
        Body::None,
        [401, 200, 200, 200, 200, 200]
    );
    row!(
        "read job",
        "GET",
        format!("/api/v1/jobs/{j}"),
        Body::None,
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "read result",
        "GET",
        format!("/api/v1/jobs/{j}/result"),
        Body::None,
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "download csv",
        "GET",
        format!("/api/v1/jobs/{j}/result?format=csv"),
        Body::None,
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "job events",
        "GET",
        format!("/api/v1/jobs/{j}/events"),
        Body::None,
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "cancel job",
        "POST",
        format!("/api/v1/jobs/{j}/cancel"),
        Body::None,
        [401, 409, 404, 403, 409, 409]
    );
    row!(
        "system",
        "GET",
        "/api/v1/system".to_owned(),
        Body::None,
        [401, 403, 403, 200, 200, 200]
    );
    row!(
        "openapi",
        "GET",
        "/api/v1/openapi.json".to_owned(),
        Body::None,
        [401, 200, 200, 200, 200, 200]
    );
    for (i, who) in callers.iter().enumerate() {
        let name = format!("up-{i}");
        let (got, text) = send(
            &q,
            who,
            "POST",
            &format!("/api/v1/datasets?name={name}"),
            Body::Csv(CSV),
        )
        .await;
        check("upload", got, if i == 0 { 401 } else { 201 }, i, &text);
        cells += 1;
    }

    // What each list contains, not only its status.
    for (i, who) in callers.iter().enumerate().skip(1) {
        let (_, datasets) = send(&q, who, "GET", "/api/v1/datasets", Body::None).await;
        let sees_d = datasets.contains(&d);
        assert_eq!(
            sees_d,
            matches!(i, 1 | 4 | 5),
            "{} lists the owner's dataset: {sees_d}",
            WHO[i]
        );
        let (_, jobs) = send(&q, who, "GET", "/api/v1/jobs", Body::None).await;
        let sees_j = jobs.contains(&j);
        assert_eq!(sees_j, i != 2, "{} lists the owner's job: {sees_j}", WHO[i]);
        cells += 2;
    }

    // Server functions (the web app's calls), with the session cookie.
    row!(
        "fn list_datasets",
        "POST",
        "/api/list_datasets",
        Body::Form(vec![]),
        [401, 200, 200, 200, 200, 200]
    );
    row!(
        "fn dataset_detail",
        "POST",
        "/api/dataset_detail",
        id_form(&d),
        [401, 200, 404, 404, 200, 200]
    );
    row!(
        "fn list_jobs",
        "POST",
        "/api/list_jobs",
        Body::Form(vec![]),
        [401, 200, 200, 200, 200, 200]
    );
    row!(
        "fn job_detail",
        "POST",
        "/api/job_detail",
        id_form(&j),
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "fn job_result",
        "POST",
        "/api/job_result",
        Body::Form(vec![
            ("id", j.clone()),
            ("offset", "0".into()),
            ("limit", "5".into())
        ]),
        [401, 200, 404, 200, 200, 200]
    );
    row!(
        "fn cancel_job",
        "POST",
        "/api/cancel_job",
        id_form(&j),
        [401, 409, 404, 403, 409, 409]
    );
    row!(
        "fn submit_job",
        "POST",
        "/api/submit_job",
        Body::Form(vec![
            ("dataset_id", d.clone()),
            ("analysis", r#"{"kind":"profile"}"#.into())
        ]),
        [401, 200, 404, 404, 200, 200]
    );
    row!(
        "fn system_graphs",
        "POST",
        "/api/system_graphs",
        Body::Form(vec![("minutes", "15".into())]),
        [401, 403, 403, 200, 200, 200]
    );
    row!(
        "fn system_graphs (unknown environment)",
        "POST",
        "/api/system_graphs",
        Body::Form(vec![("minutes", "15".into()), ("environment", "qa".into())]),
        [401, 403, 403, 404, 404, 404]
    );
    row!(
        "fn list_tokens",
        "POST",
        "/api/list_tokens",
        Body::Form(vec![]),
        [401, 200, 200, 200, 200, 200]
    );
    row!(
        "fn create_token",
        "POST",
        "/api/create_token",
        Body::Form(vec![
            ("label", "ci".into()),
            ("expires_in_days", "1".into())
        ]),
        [401, 200, 200, 200, 200, 200]
    );
    // Nobody revokes someone else's token: the owner's first token is "not found"
    // to everyone else, admins included.
    let (_, owner_tokens) = send(
        &q,
        &callers[1],
        "POST",
        "/api/list_tokens",
        Body::Form(vec![]),
    )
    .await;
    let owner_token_id = serde_json::from_str::<Value>(&owner_tokens).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, who) in callers.iter().enumerate().skip(2) {
        let (got, text) = send(
            &q,
            who,
            "POST",
            "/api/revoke_token",
            id_form(&owner_token_id),
        )
        .await;
        check(
            "fn revoke_token (others')",
            got,
            [401, 200, 404, 404, 404, 404][i],
            i,
            &text,
        );
        cells += 1;
    }
    row!(
        "fn current_user",
        "POST",
        "/api/current_user",
        Body::Form(vec![]),
        [200, 200, 200, 200, 200, 200]
    );

    // Pages answer with the status of what they show, and show it only to the roles
    // that may see it.
    for (i, who) in callers.iter().enumerate() {
        let (status, page) = send(&q, who, "GET", &format!("/datasets/{d}"), Body::None).await;
        check(
            "dataset page",
            status,
            [401, 200, 404, 404, 200, 200][i],
            i,
            "",
        );
        let shows = page.contains("Schema and first rows");
        assert_eq!(shows, status == 200, "dataset page as {}", WHO[i]);
        let (status, page) = send(&q, who, "GET", &format!("/jobs/{j}"), Body::None).await;
        check("job page", status, [401, 200, 404, 200, 200, 200][i], i, "");
        assert_eq!(
            page.contains("data-status=\"succeeded\""),
            status == 200,
            "job page as {}",
            WHO[i]
        );
        let (status, page) = send(&q, who, "GET", "/system?range=15m", Body::None).await;
        check(
            "system page",
            status,
            [401, 403, 403, 200, 200, 200][i],
            i,
            "",
        );
        assert_eq!(
            page.contains("Queue depth"),
            status == 200,
            "system page as {}",
            WHO[i]
        );
        let (status, _) = send(&q, who, "GET", "/jobs", Body::None).await;
        check(
            "jobs page",
            status,
            [401, 200, 200, 200, 200, 200][i],
            i,
            "",
        );
        let (status, _) = send(&q, who, "GET", "/datasets", Body::None).await;
        check(
            "datasets page",
            status,
            [401, 200, 200, 200, 200, 200][i],
            i,
            "",
        );
        let (status, _) = send(&q, who, "GET", "/login", Body::None).await;
        check("login page", status, 200, i, "");
        cells += 6;
    }

    // Deleting: others' datasets are invisible, so "not found".
    for (i, who) in callers.iter().enumerate() {
        let (got, text) = send(
            &q,
            who,
            "DELETE",
            &format!("/api/v1/datasets/{}", doomed[i]),
            Body::None,
        )
        .await;
        check(
            "delete dataset",
            got,
            [401, 204, 404, 404, 204, 204][i],
            i,
            &text,
        );
        cells += 1;
    }

    // A form or server function sent from another site is refused before it runs.
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = q
            .http
            .post(q.url("/api/submit_job"))
            .header("cookie", callers[1].cookie.clone().unwrap())
            .header(header, value)
            .form(&[
                ("dataset_id", d.as_str()),
                ("analysis", r#"{"kind":"profile"}"#),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "cross-site via {header}");
    }
    assert!(cells >= 6 * 23, "every cell was checked ({cells})");
}
