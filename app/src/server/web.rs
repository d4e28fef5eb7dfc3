//! Plain HTML form endpoints for the web app. They work without JavaScript, answer
//! with redirects, and carry errors back to the page in the query string.
//!
//! Sign-in is bounded (see `quarry_core::throttle`): failed attempts are counted per
//! client address and per name, and password hashes run a few at a time. A refused
//! attempt answers `429 Too Many Requests` with `Retry-After`, as a short page, since
//! a redirect would hide the status. A client that accepts JSON (a script) gets
//! statuses and the JSON error shape instead of redirects and pages: 401 for wrong
//! credentials, 429 with `Retry-After` when throttled.

use super::auth::{session_cookie, session_id, session_principal};
use super::state::AppState;
use super::uploads::{self, UploadHints};
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Extension, Json};
use quarry_core::auth::authenticate;
use quarry_core::sessions::{check_password, create_session, end_session};
use quarry_core::throttle::{HASH_WAIT, RetryAfter, SignInGuard};
use quarry_domain::ErrorBody;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Sign-in: a name and password, or (for scripts and the first admin) an API token.
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

fn with_query(path: &str, key: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{path}?{key}={encoded}")
}

fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The sign-in guard of one router, built from the configuration on first use.
type Guard = Arc<OnceLock<SignInGuard>>;

/// The client's address, when the server was started with connection info
/// (`into_make_service_with_connect_info`). `X-Forwarded-For` is never trusted: any
/// client can write it. Without an address only the per-name count applies.
fn client_address(extensions: &Extensions) -> Option<IpAddr> {
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if address.is_none() {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "the server does not see client addresses: failed sign-ins are counted \
                 per name only"
            );
        });
    }
    address
}

async fn login(
    State(state): State<AppState>,
    Extension(guard): Extension<Guard>,
    extensions: Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let guard = guard.get_or_init(|| SignInGuard::new(&state.services.config.auth));
    let db = &state.services.db;
    let address = client_address(&extensions);
    let token = form.token.trim();
    let name = form.name.trim();
    let named = token.is_empty().then_some(name);
    let attempt = match guard.throttle.begin(address, named) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::info!(address = ?address, by_name = named.is_some(), "sign-in throttled");
            let until = quarry_core::clock::rfc3339(
                quarry_core::clock::now_ms()
                    + i64::try_from(wait.secs().saturating_mul(1000)).unwrap_or(i64::MAX),
            );
            let message = format!(
                "too many failed sign-ins: try again in {} (after {until})",
                wait.human()
            );
            return too_many_attempts(&headers, wait, message);
        }
    };
    let signed_in = if let Some(name) = named {
        let Some(permit) = guard.hashes.acquire().await else {
            attempt.not_counted();
            return too_many_attempts(
                &headers,
                RetryAfter(HASH_WAIT),
                "the server is busy signing people in; retry in a few seconds".to_owned(),
            );
        };
        check_password(db, permit, name, &form.password)
            .await
            .map(|u| (u.id, u.name, None))
    } else {
        authenticate(db, token).await.map(|p| {
            let token_id = p.credential.token_id().map(str::to_owned);
            (p.user_id, p.name, token_id)
        })
    };
    let session = match signed_in {
        Ok((id, name, token_id)) => create_session(db, &id, token_id.as_deref())
            .await
            .map(|s| (s, name)),
        Err(e) => Err(e),
    };
    match session {
        Ok((session, name)) => {
            attempt.succeeded();
            tracing::info!(user = %name, "signed in");
            redirect_with_cookie(
                "/datasets",
                &session_cookie(Some(session.expose_secret()), &headers),
            )
        }
        Err(e) => {
            // Only a refusal of the credentials counts against the throttle.
            if !matches!(e, quarry_core::Error::Unauthorized(_)) {
                attempt.not_counted();
            }
            let e = super::error::AppError::from(e);
            if wants_json(&headers) {
                return e.into_response();
            }
            Redirect::to(&with_query("/login", "error", &e.user_message())).into_response()
        }
    }
}

/// `429 Too Many Requests` with `Retry-After`: the JSON error shape for clients that
/// accept JSON, otherwise a short page that says when to try again.
fn too_many_attempts(request: &HeaderMap, wait: RetryAfter, message: String) -> Response {
    let mut response = if wants_json(request) {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(ErrorBody::new("too_many_attempts", message)),
        )
            .into_response()
    } else {
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Too many sign-in attempts</title>\
             <link rel=\"stylesheet\" href=\"/style.css\"></head><body>\
             <section class=\"page narrow\"><h1>Sign in</h1>\
             <p class=\"error\" role=\"alert\">{}</p>\
             <p><a href=\"/login\">Back to sign-in</a></p></section></body></html>",
            escape_html(&message)
        );
        (StatusCode::TOO_MANY_REQUESTS, Html(page)).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.secs()));
    response
}

/// Whether the client asked for JSON (a script): it then gets statuses and the JSON
/// error shape instead of redirects and pages.
fn wants_json(request: &HeaderMap) -> bool {
    request
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        match end_session(&state.services.db, &id).await {
            // Streams opened with the session end with it.
            Ok(()) => state.services.watch.credentials_changed(),
            Err(e) => tracing::warn!(error = %e, "could not end a session"),
        }
    }
    redirect_with_cookie("/login", &session_cookie(None, &headers))
}

async fn upload(State(state): State<AppState>, request: Request) -> Response {
    let who = match session_principal(&state.services.db, request.headers()).await {
        Ok(who) => who,
        Err(e) => {
            return Redirect::to(&with_query("/login", "error", &e.user_message())).into_response();
        }
    };
    match uploads::ingest_request(&state.services, &who, UploadHints::default(), request).await {
        Ok(dataset) => {
            Redirect::to(&with_query("/datasets", "uploaded", &dataset.name)).into_response()
        }
        Err(e) => {
            Redirect::to(&with_query("/datasets", "error", &e.user_message())).into_response()
        }
    }
}

/// The form routes: `POST /session`, `POST /session/logout`, `POST /datasets/upload`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", post(login).layer(Extension(Guard::default())))
        .route("/session/logout", post(logout))
        .route(
            "/datasets/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_sign_in_answers_429_with_retry_after_as_a_page_or_json() {
        let wait = RetryAfter(std::time::Duration::from_millis(61_500));
        let page = too_many_attempts(&HeaderMap::new(), wait, "try <later>".to_owned());
        assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page.headers()[header::RETRY_AFTER], "62");
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let json = too_many_attempts(&accept, wait, "later".to_owned());
        assert_eq!(json.headers()[header::RETRY_AFTER], "62");
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            escape_html("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn messages_are_percent_encoded_into_the_query() {
        assert_eq!(
            with_query("/x", "error", "a b&c/é"),
            "/x?error=a%20b%26c%2F%C3%A9"
        );
    }
}
