//! Plain HTML form endpoints for the web app. They work without JavaScript, answer
//! with redirects, and carry errors back to the page in the query string.

use super::auth::{session_cookie, session_id, session_principal};
use super::state::AppState;
use super::uploads::{self, UploadHints};
use axum::Form;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use quarry_core::auth::authenticate;
use quarry_core::sessions::{check_password, create_session, end_session};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

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

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let db = &state.services.db;
    let token = form.token.trim();
    let user_id = if token.is_empty() {
        check_password(db, form.name.trim(), &form.password)
            .await
            .map(|u| (u.id, u.name))
    } else {
        authenticate(db, token).await.map(|p| (p.user_id, p.name))
    };
    let session = match user_id {
        Ok((id, name)) => {
            tracing::info!(user = %name, "signed in");
            create_session(db, &id).await
        }
        Err(e) => Err(e),
    };
    match session {
        Ok(session) => redirect_with_cookie(
            "/datasets",
            &session_cookie(Some(session.expose_secret()), &headers),
        ),
        Err(e) => {
            let (_, _, message) = super::error::AppError::from(e).parts();
            Redirect::to(&with_query("/login", "error", &message)).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers)
        && let Err(e) = end_session(&state.services.db, &id).await
    {
        tracing::warn!(error = %e, "could not end a session");
    }
    redirect_with_cookie("/login", &session_cookie(None, &headers))
}

async fn upload(State(state): State<AppState>, request: Request) -> Response {
    let who = match session_principal(&state.services.db, request.headers()).await {
        Ok(who) => who,
        Err(e) => {
            return Redirect::to(&with_query("/login", "error", &e.parts().2)).into_response();
        }
    };
    match uploads::ingest_request(&state.services, &who, UploadHints::default(), request).await {
        Ok(dataset) => {
            Redirect::to(&with_query("/datasets", "uploaded", &dataset.name)).into_response()
        }
        Err(e) => Redirect::to(&with_query("/datasets", "error", &e.parts().2)).into_response(),
    }
}

/// The form routes: `POST /session`, `POST /session/logout`, `POST /datasets/upload`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", post(login))
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
    fn messages_are_percent_encoded_into_the_query() {
        assert_eq!(
            with_query("/x", "error", "a b&c/é"),
            "/x?error=a%20b%26c%2F%C3%A9"
        );
    }
}
