//! Users, API tokens, passwords and sessions, on every dialect.

use super::{unique, user};
use crate::auth;
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::Error;
use crate::sessions;
use crate::throttle::{HashLimiter, HashPermit};
use quarry_domain::Role;
use secrecy::ExposeSecret as _;

/// A turn at the password hasher, as the web server's sign-in takes one.
async fn hash_permit() -> HashPermit {
    HashLimiter::new(1, std::time::Duration::from_secs(5))
        .acquire()
        .await
        .expect("a free hasher")
}

pub async fn users_and_tokens(db: &Db) {
    let name = unique("ada");
    let (user, token) = auth::create_user(db, &name, Role::Lead)
        .await
        .expect("create");
    let again = auth::create_user(db, &name, Role::Analyst).await;
    assert!(
        matches!(again, Err(Error::Conflict(_))),
        "duplicate names conflict: {again:?}"
    );
    assert_eq!(
        auth::find_user(db, &name).await.expect("find"),
        Some(user.clone())
    );
    let who = auth::authenticate(db, token.expose_secret())
        .await
        .expect("the first token signs in");
    assert_eq!(
        (who.user_id.as_str(), who.role),
        (user.id.as_str(), Role::Lead)
    );

    let expired = auth::issue_token(db, &user.id, "old", Some(now_ms() - 1))
        .await
        .expect("issue");
    assert!(matches!(
        auth::authenticate(db, expired.expose_secret()).await,
        Err(Error::Unauthorized(_))
    ));
    let tokens = auth::list_tokens(db, &user.id).await.expect("list");
    assert_eq!(tokens.len(), 2);
    for t in &tokens {
        auth::revoke_token(db, &user.id, &t.id)
            .await
            .expect("revoke");
    }
    assert!(matches!(
        auth::authenticate(db, token.expose_secret()).await,
        Err(Error::Unauthorized(_))
    ));
    assert!(
        auth::list_tokens(db, &user.id)
            .await
            .expect("list")
            .iter()
            .all(|t| t.revoked_at.is_some())
    );
}

pub async fn passwords_and_sessions(db: &Db) {
    let who = user(db, Role::Analyst).await;
    sessions::set_password(db, &who.user_id, "correct horse battery")
        .await
        .expect("set password");
    assert!(matches!(
        sessions::check_password(db, hash_permit().await, &who.name, "wrong password!").await,
        Err(Error::Unauthorized(_))
    ));
    let signed_in =
        sessions::check_password(db, hash_permit().await, &who.name, "correct horse battery")
            .await
            .expect("right password");
    assert_eq!(signed_in.id, who.user_id);
    let session = sessions::create_session(db, &who.user_id, None)
        .await
        .expect("session");
    let principal = sessions::session_principal(db, session.expose_secret())
        .await
        .expect("session signs in");
    assert_eq!(
        (&principal.user_id, &principal.name, principal.role),
        (&who.user_id, &who.name, who.role)
    );
    assert!(
        matches!(
            &principal.credential,
            auth::Credential::Session { token_id: None, .. }
        ),
        "{principal:?}"
    );
    auth::still_valid(db, &principal)
        .await
        .expect("a live session is valid");
    sessions::end_session(db, session.expose_secret())
        .await
        .expect("end");
    assert!(matches!(
        sessions::session_principal(db, session.expose_secret()).await,
        Err(Error::Unauthorized(_))
    ));
    assert!(matches!(
        auth::still_valid(db, &principal).await,
        Err(Error::Unauthorized(_))
    ));
}

/// Sessions opened with an API token record it, expire with it and end when it is
/// revoked; tokens minted under it cannot outlive it.
pub async fn sessions_opened_with_tokens(db: &Db) {
    let who = user(db, Role::Analyst).await;
    let expires = now_ms() + 3_600_000;
    let token = auth::issue_token(db, &who.user_id, "short", Some(expires))
        .await
        .expect("issue");
    let by_token = auth::authenticate(db, token.expose_secret())
        .await
        .expect("token signs in");
    let token_id = by_token
        .credential
        .token_id()
        .expect("a token id")
        .to_owned();
    auth::still_valid(db, &by_token)
        .await
        .expect("a live token is valid");

    let session = sessions::create_session(db, &who.user_id, Some(&token_id))
        .await
        .expect("session from a token");
    let principal = sessions::session_principal(db, session.expose_secret())
        .await
        .expect("session signs in");
    assert_eq!(principal.credential.token_id(), Some(token_id.as_str()));
    let (stored_token, stored_expiry): (Option<String>, i64) =
        sqlx::query_as("SELECT token_id, expires_at FROM sessions WHERE user_id = $1")
            .bind(&who.user_id)
            .fetch_one(db.pool())
            .await
            .expect("the stored session");
    assert_eq!(stored_token.as_deref(), Some(token_id.as_str()));
    assert_eq!(stored_expiry, expires, "capped at the token's expiry");

    assert!(matches!(
        auth::issue_token_for(db, &principal, "forever", None).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        auth::issue_token_for(db, &principal, "later", Some(expires + 1)).await,
        Err(Error::Forbidden(_))
    ));
    auth::issue_token_for(db, &principal, "within", Some(expires - 1))
        .await
        .expect("a token within the session's token");

    auth::revoke_token(db, &who.user_id, &token_id)
        .await
        .expect("revoke");
    for outcome in [
        sessions::session_principal(db, session.expose_secret())
            .await
            .map(drop),
        auth::still_valid(db, &principal).await,
        auth::still_valid(db, &by_token).await,
    ] {
        assert!(
            matches!(&outcome, Err(Error::Unauthorized(m)) if m.contains("revoked")),
            "{outcome:?}"
        );
    }
    assert!(matches!(
        sessions::create_session(db, &who.user_id, Some(&token_id)).await,
        Err(Error::Unauthorized(_))
    ));

    // An expired token ends its session too (the session's own expiry is later).
    let token = auth::issue_token(db, &who.user_id, "brief", Some(now_ms() + 60_000))
        .await
        .expect("issue");
    let brief = auth::authenticate(db, token.expose_secret())
        .await
        .expect("signs in")
        .credential
        .token_id()
        .map(str::to_owned)
        .expect("a token id");
    let session = sessions::create_session(db, &who.user_id, Some(&brief))
        .await
        .expect("session");
    sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() - 1)
        .bind(&brief)
        .execute(db.pool())
        .await
        .expect("age the token");
    assert!(matches!(
        sessions::session_principal(db, session.expose_secret()).await,
        Err(Error::Unauthorized(m)) if m.contains("expired")
    ));
}
