//! The role matrix of the operator control plane: its REST routes, the operations
//! pages' server functions and the pages, for the same six callers. Reads are for
//! leads, operators and admins; changes for operators and admins; analysts get 403.
//! No stack is deployed here (no emulator), so what operators and admins get back is
//! the control plane's own refusal (400, 404, 409), which shows the role check passed
//! and came first: a lead's bad body is still a 403.

use super::{Body, Caller, WHO, caller, send};
use quarry_tests::Quarry;
use serde_json::json;

struct Matrix {
    q: Quarry,
    callers: Vec<Caller>,
    cells: usize,
}

impl Matrix {
    /// Sends the request as every caller and asserts the status each must get.
    async fn row(&mut self, label: &str, method: &str, path: &str, body: Body, want: [u16; 6]) {
        for (i, who) in self.callers.iter().enumerate() {
            let (got, text) = send(&self.q, who, method, path, body.clone()).await;
            assert_eq!(got, want[i], "{label} as {}: {text}", WHO[i]);
            self.cells += 1;
        }
    }

    /// Like [`Matrix::row`], and asserts the body holds `marker` exactly when the
    /// answer is 200.
    async fn page(&mut self, label: &str, path: &str, marker: &str, want: [u16; 6]) {
        for (i, who) in self.callers.iter().enumerate() {
            let (got, text) = send(&self.q, who, "GET", path, Body::None).await;
            assert_eq!(got, want[i], "{label} as {}", WHO[i]);
            assert_eq!(
                text.contains(marker),
                got == 200,
                "{label} as {}: shows {marker}",
                WHO[i]
            );
            self.cells += 1;
        }
    }
}

/// The statuses of a change: anonymous 401, analysts and leads 403, then what the
/// operator and the admin get.
fn change(operator: u16, admin: u16) -> [u16; 6] {
    [401, 403, 403, 403, operator, admin]
}

const READ: [u16; 6] = [401, 403, 403, 200, 200, 200];
const READ_MISSING: [u16; 6] = [401, 403, 403, 404, 404, 404];

fn form(pairs: &[(&'static str, &str)]) -> Body {
    Body::Form(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
}

#[tokio::test]
async fn every_role_gets_exactly_its_rights_on_the_control_plane() {
    let q = Quarry::start().await;
    let ana = q.add_user("ana", "analyst").await;
    let bea = q.add_user("bea", "analyst").await;
    let lee = q.add_user("lee", "lead").await;
    let olga = q.add_user("olga", "operator").await;
    let admin = q.admin_token.clone();
    let mut callers = vec![caller(&q, None).await];
    for token in [ana, bea, lee, olga, admin] {
        callers.push(caller(&q, Some(token)).await);
    }
    let mut m = Matrix {
        q,
        callers,
        cells: 0,
    };

    // REST reads.
    for (label, path) in [
        ("list environments", "/api/v1/environments"),
        ("read environment", "/api/v1/environments/staging"),
        (
            "environment releases",
            "/api/v1/environments/staging/releases",
        ),
        ("list promotions", "/api/v1/promotions"),
        ("list artifacts", "/api/v1/artifacts"),
    ] {
        m.row(label, "GET", path, Body::None, READ).await;
    }
    m.row(
        "read promotion",
        "GET",
        "/api/v1/promotions/nope",
        Body::None,
        READ_MISSING,
    )
    .await;
    m.row(
        "unknown environment",
        "GET",
        "/api/v1/environments/qa",
        Body::None,
        READ_MISSING,
    )
    .await;
    // The environment's event stream never ends: only its status is read.
    for (i, who) in m.callers.iter().enumerate() {
        let mut r = m.q.http.get(m.q.url("/api/v1/environments/staging/events"));
        if let Some(t) = &who.token {
            r = r.bearer_auth(t);
        }
        let status = r.send().await.unwrap().status().as_u16();
        assert_eq!(status, READ[i], "environment events as {}", WHO[i]);
        m.cells += 1;
    }

    // REST changes.
    let v1 = format!("registry.example/quarry@sha256:{}", "1".repeat(64));
    m.row(
        "deploy (a tag only)",
        "POST",
        "/api/v1/environments/staging/deploy",
        Body::Json(json!({"artifact": "quarry:latest"})),
        change(400, 400),
    )
    .await;
    m.row(
        "deploy (to a promoted environment)",
        "POST",
        "/api/v1/environments/production/deploy",
        Body::Json(json!({"artifact": v1})),
        change(409, 409),
    )
    .await;
    m.row(
        "request promotion (nothing upstream)",
        "POST",
        "/api/v1/promotions",
        Body::Json(json!({"from": "staging", "to": "production"})),
        change(409, 409),
    )
    .await;
    for action in ["approve", "reject"] {
        m.row(
            &format!("{action} promotion"),
            "POST",
            &format!("/api/v1/promotions/nope/{action}"),
            Body::Json(json!({"comment": "ok"})),
            change(404, 404),
        )
        .await;
    }
    m.row(
        "cancel promotion",
        "POST",
        "/api/v1/promotions/nope/cancel",
        Body::None,
        change(404, 404),
    )
    .await;
    m.row(
        "rollback (nothing to return to)",
        "POST",
        "/api/v1/environments/staging/rollback",
        Body::Json(json!({"reason": "bad release"})),
        change(409, 409),
    )
    .await;
    // The operator freezes; the admin then finds it frozen already, and so on.
    m.row(
        "freeze",
        "POST",
        "/api/v1/environments/staging/freeze",
        Body::Json(json!({"reason": "audit"})),
        change(200, 409),
    )
    .await;
    m.row(
        "unfreeze",
        "DELETE",
        "/api/v1/environments/staging/freeze",
        Body::Json(json!({"reason": "audit done"})),
        change(200, 409),
    )
    .await;
    m.row(
        "lift hold (none)",
        "DELETE",
        "/api/v1/environments/staging/hold",
        Body::Json(json!({"reason": "fixed"})),
        change(409, 409),
    )
    .await;
    m.row(
        "reject artifact",
        "POST",
        "/api/v1/artifacts/nope/reject",
        Body::Json(json!({"reason": "broken"})),
        change(404, 404),
    )
    .await;

    // The operations pages' server functions: the same rules as the REST routes.
    m.row("fn operations", "POST", "/api/operations", form(&[]), READ)
        .await;
    m.row(
        "fn environment_page",
        "POST",
        "/api/environment_page",
        form(&[("name", "staging")]),
        READ,
    )
    .await;
    m.row(
        "fn promotion_page",
        "POST",
        "/api/promotion_page",
        form(&[("id", "nope")]),
        READ_MISSING,
    )
    .await;
    m.row(
        "fn request_promotion",
        "POST",
        "/api/request_promotion",
        form(&[("from", "staging"), ("to", "production")]),
        change(409, 409),
    )
    .await;
    m.row(
        "fn decide_promotion",
        "POST",
        "/api/decide_promotion",
        form(&[("id", "nope"), ("decision", "approve"), ("comment", "")]),
        change(404, 404),
    )
    .await;
    m.row(
        "fn cancel_promotion",
        "POST",
        "/api/cancel_promotion",
        form(&[("id", "nope")]),
        change(404, 404),
    )
    .await;
    m.row(
        "fn freeze_environment",
        "POST",
        "/api/freeze_environment",
        form(&[("name", "staging"), ("reason", "audit")]),
        change(200, 409),
    )
    .await;
    m.row(
        "fn unfreeze_environment",
        "POST",
        "/api/unfreeze_environment",
        form(&[("name", "staging"), ("reason", "")]),
        change(200, 409),
    )
    .await;
    m.row(
        "fn lift_hold",
        "POST",
        "/api/lift_hold",
        form(&[("name", "staging"), ("reason", "fixed")]),
        change(409, 409),
    )
    .await;
    m.row(
        "fn rollback_environment",
        "POST",
        "/api/rollback_environment",
        form(&[("name", "staging"), ("reason", "bad release")]),
        change(409, 409),
    )
    .await;

    // The pages answer with the status of what they show, and show it only to the
    // roles that may see it; only operators and admins get the forms.
    m.page(
        "operations page",
        "/operations",
        "data-testid=\"env-card-production\"",
        READ,
    )
    .await;
    m.page(
        "environment page",
        "/operations/environments/staging",
        "data-testid=\"env-status\"",
        READ,
    )
    .await;
    m.page(
        "promotion page",
        "/operations/promotions/nope",
        "data-testid=\"approval-panel\"",
        READ_MISSING,
    )
    .await;
    for (i, who) in m.callers.iter().enumerate() {
        let (_, page) = send(
            &m.q,
            who,
            "GET",
            "/operations/environments/staging",
            Body::None,
        )
        .await;
        assert_eq!(
            page.contains("data-testid=\"freeze-form\""),
            i >= 4,
            "freeze form as {}",
            WHO[i]
        );
        assert_eq!(
            page.contains("data-testid=\"read-only\""),
            i == 3,
            "read-only note as {}",
            WHO[i]
        );
        m.cells += 1;
    }
    assert!(m.cells >= 6 * 33, "every cell was checked ({})", m.cells);
}
