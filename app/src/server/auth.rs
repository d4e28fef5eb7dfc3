//! Authentication: `Authorization: Bearer <token>` for the REST API, and an HttpOnly
//! cookie holding the same token for the web app's pages and server functions.

use super::error::AppError;
use super::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use quarry_core::Db;
use quarry_core::auth::{Principal, authenticate};

/// The cookie the web app keeps the user's token in.
pub const SESSION_COOKIE: &str = "quarry_token";

/// The authenticated caller of a REST route.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            AppError::unauthorized("send your API token as `Authorization: Bearer <token>`")
        })?;
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

/// The token in the session cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
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
    let token = session_token(headers)
        .ok_or_else(|| AppError::unauthorized("sign in with your API token first"))?;
    Ok(authenticate(db, &token).await?)
}

/// A `Set-Cookie` value for the session (or its removal when `token` is `None`).
pub fn session_cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => {
            format!("{SESSION_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000")
        }
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_read_from_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; quarry_token=qry_abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("qry_abc"));
        headers.insert(header::COOKIE, "quarry_token=".parse().unwrap());
        assert_eq!(session_token(&headers), None);
    }
}
