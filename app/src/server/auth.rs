//! Authentication: `Authorization: Bearer <token>` for the REST API, and a server-side
//! session in an HttpOnly cookie for the web app's pages, forms and server functions
//! (and the API's read-only routes, so the browser can download and follow jobs).

use super::error::AppError;
use super::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use quarry_core::Db;
use quarry_core::auth::{Principal, authenticate};
use quarry_core::sessions;

/// The cookie holding the web session id (`qss_…`), never an API token.
pub const SESSION_COOKIE: &str = "quarry_session";

/// The authenticated caller of a REST route.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            // The web app's own reads (downloads, live job events) ride on its session
            // cookie. Only reads: a cookie never authorizes a change through the API,
            // so the API needs no CSRF guard.
            let read =
                parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
            if read && let Some(id) = session_id(&parts.headers) {
                return Ok(Auth(
                    sessions::session_principal(&state.services.db, &id).await?,
                ));
            }
            return Err(AppError::unauthorized(
                "send your API token as `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AppError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        Ok(Auth(authenticate(&state.services.db, token).await?))
    }
}

/// The session id in the session cookie, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The user behind the session cookie.
pub async fn session_principal(db: &Db, headers: &HeaderMap) -> Result<Principal, AppError> {
    let id = session_id(headers).ok_or_else(|| AppError::unauthorized("sign in first"))?;
    Ok(sessions::session_principal(db, &id).await?)
}

/// True when the request came over HTTPS, directly or through a proxy that says so.
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the session (or its removal when `id` is `None`):
/// HttpOnly (no script reads it), SameSite=Strict (no other site sends it), and
/// Secure whenever the request came over HTTPS.
pub fn session_cookie(id: Option<&str>, request: &HeaderMap) -> String {
    let secure = if is_https(request) { "; Secure" } else { "" };
    let (value, age) = match id {
        Some(id) => (id, sessions::SESSION_TTL_MS / 1000),
        None => ("", 0),
    };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

/// Cross-site request forgery guard for cookie-authenticated routes: a state-changing
/// request must come from this site. Browsers say where a request comes from in
/// `Sec-Fetch-Site` (or at least `Origin`); a request from another site is refused
/// before any handler runs. Together with the SameSite=Strict cookie this makes forms
/// and server functions CSRF-safe without hidden tokens.
pub async fn same_origin_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let method = request.method();
    let safe = method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || method == axum::http::Method::OPTIONS;
    if !safe && !same_origin(request.headers()) {
        return AppError::forbidden("this form was sent from another site, so it was refused")
            .into_response();
    }
    next.run(request).await
}

fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // No browser metadata at all: not a browser form (curl, tests); the SameSite
        // cookie is what protects browsers that send neither header.
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin_host.is_some() && origin_host == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_is_read_from_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; quarry_session=qss_abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("qss_abc"));
        headers.insert(header::COOKIE, "quarry_session=".parse().unwrap());
        assert_eq!(session_id(&headers), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_same_site_requests_pass_the_csrf_guard() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "a")])));
        assert!(same_origin(&HeaderMap::new()), "non-browser clients");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_https() {
        let plain = session_cookie(Some("qss_1"), &HeaderMap::new());
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Strict"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"));
        let tls = session_cookie(Some("qss_1"), &headers(&[("x-forwarded-proto", "https")]));
        assert!(tls.ends_with("; Secure"), "{tls}");
        assert!(session_cookie(None, &HeaderMap::new()).contains("Max-Age=0"));
    }
}
