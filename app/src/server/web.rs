//! Plain HTML form endpoints for the web app. They work without JavaScript, answer
//! with redirects, and carry errors back to the page in the query string.

use super::auth::{session_cookie, session_principal};
use super::state::AppState;
use super::uploads::{self, UploadHints};
use axum::Form;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use quarry_core::auth::authenticate;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct LoginForm {
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

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    match authenticate(&state.services.db, token).await {
        Ok(who) => {
            tracing::info!(user = %who.name, "signed in");
            let mut response = Redirect::to("/datasets").into_response();
            if let Ok(cookie) = HeaderValue::from_str(&session_cookie(Some(token))) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => {
            let (_, _, message) = super::error::AppError::from(e).parts();
            Redirect::to(&with_query("/login", "error", &message)).into_response()
        }
    }
}

async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie(None)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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
