//! Passwords and web sessions.
//!
//! Passwords are stored as argon2id PHC strings (salted, memory-hard). A session is a
//! random `qss_` value in an HttpOnly cookie; like API tokens, only its SHA-256 is
//! stored, so the database alone cannot be used to sign in. Sessions expire after
//! [`SESSION_TTL_MS`] and end on logout, password change, or user deletion. A session
//! opened with an API token records it: it expires no later than the token and ends
//! when the token is revoked.
//!
//! Checking a password takes a [`HashPermit`] (see [`crate::throttle`]): the web
//! server computes only a bounded number of hashes at once, in reused memory.

use crate::auth::{Credential, Principal, TokenEnd, User, hash_secret, new_secret};
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::throttle::HashPermit;
use anyhow::Context as _;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

const SESSION_PREFIX: &str = "qss_";
/// A session lasts a working week.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Checks a new password: at least [`MIN_PASSWORD_LEN`] characters, at most 1024.
pub fn validate_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(Error::invalid(
            "weak_password",
            format!("the password must have at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::invalid(
            "weak_password",
            "the password must have at most 1024 bytes",
        ));
    }
    Ok(())
}

/// An argon2id hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("encoding a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `phc`, computed in the permit's memory
/// (the same computation as argon2's `verify_password`, without its allocation).
fn verify(password: &str, phc: &str, permit: &mut HashPermit) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Ok(algorithm), Some(salt), Some(expected)) = (
        Params::try_from(&parsed),
        Algorithm::try_from(parsed.algorithm),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let Some(memory) = permit.memory(blocks) else {
        tracing::warn!(blocks, "a stored password hash asks for too much memory");
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version.unwrap_or_default(), params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
        .is_ok()
        // `Output` compares in constant time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// Sets (or replaces) a user's password and ends their existing sessions. The CLI
/// calls this, one hash per process; it hashes on a blocking thread.
pub async fn set_password(db: &Db, user_id: &str, password: &str) -> Result<()> {
    validate_password(password)?;
    let owned = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || hash_password(&owned))
        .await
        .context("hashing a password")
        .map_err(Error::Internal)??;
    let mut tx = db.begin_write().await?;
    let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(&phc)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound("no such user".to_owned()));
    }
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The message for every failed sign-in, so it does not tell which part was wrong.
const BAD_CREDENTIALS: &str = "the name or password is not right";

/// Checks a name and password, holding `permit` until the hash is done (even if the
/// caller goes away meanwhile). The same work is done for unknown users, so timing
/// does not reveal which names exist.
pub async fn check_password(
    db: &Db,
    mut permit: HashPermit,
    name: &str,
    password: &str,
) -> Result<User> {
    let row: Option<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, role, password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    let stored = row.as_ref().and_then(|r| r.3.clone());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(phc) => verify(&password, &phc, &mut permit),
        None => {
            let _ = verify(&password, dummy_hash(), &mut permit);
            false
        }
    })
    .await
    .context("verifying a password")
    .map_err(Error::Internal)?;
    match row {
        Some((id, name, role, Some(_))) if ok => Ok(User {
            id,
            name,
            role: role
                .parse()
                .context("stored role")
                .map_err(Error::Internal)?,
        }),
        _ => Err(Error::Unauthorized(BAD_CREDENTIALS.to_owned())),
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// Starts a session for a user; the returned value goes into the cookie, once.
/// A session opened with an API token (`token_id`) records it and expires no later
/// than the token; a token that has ended opens none.
pub async fn create_session(
    db: &Db,
    user_id: &str,
    token_id: Option<&str>,
) -> Result<SecretString> {
    let id = new_secret(SESSION_PREFIX);
    let now = now_ms();
    let mut expires_at = now + SESSION_TTL_MS;
    let mut tx = db.begin_write().await?;
    if let Some(token_id) = token_id {
        let token: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT expires_at, revoked_at FROM api_tokens WHERE id = $1 AND user_id = $2",
        )
        .bind(token_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (token_expires, revoked_at) = token.ok_or_else(|| {
            Error::Unauthorized("that token is not valid: check it or ask for a new one".to_owned())
        })?;
        if let Some(ended) = TokenEnd::of(token_expires, revoked_at) {
            return Err(ended.as_session_origin());
        }
        if let Some(at) = token_expires {
            expires_at = expires_at.min(at);
        }
    }
    // Housekeeping: sessions that can no longer be used go when someone signs in.
    sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= $1 OR token_id IN \
         (SELECT id FROM api_tokens WHERE revoked_at IS NOT NULL)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, token_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_secret(id.expose_secret()))
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .bind(token_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The user behind a session cookie, or why there is none.
pub async fn session_principal(db: &Db, id: &str) -> Result<Principal> {
    session_by_hash(db, &hash_secret(id)).await
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: String,
    name: String,
    role: String,
    expires_at: i64,
    token_id: Option<String>,
    token_found: Option<String>,
    token_expires_at: Option<i64>,
    token_revoked_at: Option<i64>,
}

/// The user behind a stored session (by the SHA-256 of its id), or why there is none.
pub(crate) async fn session_by_hash(db: &Db, id_hash: &str) -> Result<Principal> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT u.id AS user_id, u.name, u.role, s.expires_at, s.token_id, \
         t.id AS token_found, t.expires_at AS token_expires_at, t.revoked_at AS token_revoked_at \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         LEFT JOIN api_tokens t ON t.id = s.token_id WHERE s.id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Err(Error::Unauthorized(
            "your session has ended: sign in again".to_owned(),
        ));
    };
    if row.token_id.is_some() {
        let ended = match row.token_found {
            // Tokens are revoked, not deleted; one that is gone counts as revoked.
            None => Some(TokenEnd::Revoked),
            Some(_) => TokenEnd::of(row.token_expires_at, row.token_revoked_at),
        };
        if let Some(ended) = ended {
            return Err(ended.as_session_origin());
        }
    }
    if row.expires_at <= now_ms() {
        return Err(Error::Unauthorized(
            "your session has expired: sign in again".to_owned(),
        ));
    }
    Ok(Principal {
        user_id: row.user_id,
        name: row.name,
        role: row
            .role
            .parse()
            .context("stored role")
            .map_err(Error::Internal)?,
        credential: Credential::Session {
            id_hash: id_hash.to_owned(),
            token_id: row.token_id,
        },
    })
}

/// Ends a session (logout). Unknown ids are fine: the result is the same.
pub async fn end_session(db: &Db, id: &str) -> Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(hash_secret(id))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{authenticate, create_user, issue_token, revoke_token};
    use crate::throttle::HashLimiter;
    use argon2::password_hash::PasswordVerifier as _;
    use quarry_domain::Role;
    use std::time::Duration;

    use crate::db::tests::temp_db as db;

    async fn permit() -> HashPermit {
        HashLimiter::new(1, Duration::from_secs(1))
            .acquire()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_password_signs_in_and_a_wrong_one_or_unknown_name_does_not() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "ana", Role::Analyst).await.unwrap();
        let none = check_password(&db, permit().await, "ana", "whatever-long")
            .await
            .unwrap_err();
        assert!(
            matches!(none, Error::Unauthorized(_)),
            "no password set yet"
        );

        set_password(&db, &user.id, "correct horse").await.unwrap();
        let stored: (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
            .bind(&user.id)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert!(stored.0.starts_with("$argon2id$"), "{}", stored.0);
        assert!(!stored.0.contains("correct horse"));

        assert_eq!(
            check_password(&db, permit().await, "ana", "correct horse")
                .await
                .unwrap(),
            user
        );
        let wrong = check_password(&db, permit().await, "ana", "correct horsE")
            .await
            .unwrap_err();
        let unknown = check_password(&db, permit().await, "nobody", "correct horse")
            .await
            .unwrap_err();
        assert_eq!(
            wrong.to_string(),
            unknown.to_string(),
            "no hint which part was wrong"
        );

        let weak = set_password(&db, &user.id, "short").await.unwrap_err();
        assert!(weak.to_string().contains("at least 10"), "{weak}");
    }

    #[tokio::test]
    async fn verifying_in_reused_memory_agrees_with_argon2() {
        let mut permit = permit().await;
        let phc = hash_password("correct horse").unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        for guess in ["correct horse", "correct horsE", "", "correct horse "] {
            let reference = Argon2::default()
                .verify_password(guess.as_bytes(), &parsed)
                .is_ok();
            assert_eq!(verify(guess, &phc, &mut permit), reference, "{guess:?}");
        }
        assert!(verify("correct horse", &phc, &mut permit), "and again");
        assert!(!verify("correct horse", "not a hash", &mut permit));
        let greedy = phc.replace("m=19456", "m=4194304");
        assert!(
            !verify("correct horse", &greedy, &mut permit),
            "4 GiB is refused"
        );
    }

    #[tokio::test]
    async fn sessions_resolve_until_logout_expiry_or_password_change() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "bo", Role::Lead).await.unwrap();
        set_password(&db, &user.id, "first password").await.unwrap();

        let s = create_session(&db, &user.id, None).await.unwrap();
        assert!(s.expose_secret().starts_with("qss_"));
        let who = session_principal(&db, s.expose_secret()).await.unwrap();
        assert_eq!((who.name.as_str(), who.role), ("bo", Role::Lead));
        assert_eq!(who.credential.token_id(), None);
        crate::auth::still_valid(&db, &who).await.unwrap();

        end_session(&db, s.expose_secret()).await.unwrap();
        let gone = session_principal(&db, s.expose_secret()).await.unwrap_err();
        assert!(gone.to_string().contains("sign in again"), "{gone}");
        let ended = crate::auth::still_valid(&db, &who).await.unwrap_err();
        assert!(ended.to_string().contains("ended"), "{ended}");

        let s = create_session(&db, &user.id, None).await.unwrap();
        sqlx::query("UPDATE sessions SET expires_at = $1")
            .bind(now_ms() - 1)
            .execute(db.pool())
            .await
            .unwrap();
        let expired = session_principal(&db, s.expose_secret()).await.unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");

        let s = create_session(&db, &user.id, None).await.unwrap();
        set_password(&db, &user.id, "second password")
            .await
            .unwrap();
        assert!(
            session_principal(&db, s.expose_secret()).await.is_err(),
            "a password change signs out every session"
        );
    }

    #[tokio::test]
    async fn a_session_opened_with_a_token_ends_with_it() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "cy", Role::Analyst).await.unwrap();
        let in_a_minute = now_ms() + 60_000;
        let token = issue_token(&db, &user.id, "short", Some(in_a_minute))
            .await
            .unwrap();
        let by_token = authenticate(&db, token.expose_secret()).await.unwrap();
        let token_id = by_token.credential.token_id().unwrap().to_owned();

        let s = create_session(&db, &user.id, Some(&token_id))
            .await
            .unwrap();
        let who = session_principal(&db, s.expose_secret()).await.unwrap();
        assert_eq!(who.credential.token_id(), Some(token_id.as_str()));
        let (expires_at,): (i64,) = sqlx::query_as("SELECT expires_at FROM sessions")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(expires_at, in_a_minute, "capped at the token's expiry");

        revoke_token(&db, &user.id, &token_id).await.unwrap();
        for err in [
            session_principal(&db, s.expose_secret()).await.unwrap_err(),
            crate::auth::still_valid(&db, &who).await.unwrap_err(),
            create_session(&db, &user.id, Some(&token_id))
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Unauthorized(m) if m.contains("token this session came from has been revoked")),
                "{err:?}"
            );
        }

        let other = create_user(&db, "dee", Role::Analyst).await.unwrap().0;
        let err = create_session(&db, &other.id, Some(&token_id))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not valid"),
            "someone else's token: {err}"
        );
    }
}
