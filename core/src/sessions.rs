//! Passwords and web sessions.
//!
//! Passwords are stored as argon2id PHC strings (salted, memory-hard). A session is a
//! random `qss_` value in an HttpOnly cookie; like API tokens, only its SHA-256 is
//! stored, so the database alone cannot be used to sign in. Sessions expire after
//! [`SESSION_TTL_MS`] and end on logout, password change, or user deletion.

use crate::auth::{Principal, User, hash_secret, new_secret};
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::{Error, Result};
use anyhow::Context as _;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
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

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Sets (or replaces) a user's password and ends their existing sessions.
pub async fn set_password(db: &Db, user_id: &str, password: &str) -> Result<()> {
    validate_password(password)?;
    let phc = hash_password(password)?;
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

/// Checks a name and password. The same work is done for unknown users, so timing
/// does not reveal which names exist.
pub async fn check_password(db: &Db, name: &str, password: &str) -> Result<User> {
    let row: Option<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, role, password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    let stored = row.as_ref().and_then(|r| r.3.clone());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(phc) => verify(&password, &phc),
        None => {
            let _ = verify(&password, dummy_hash());
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
pub async fn create_session(db: &Db, user_id: &str) -> Result<SecretString> {
    let id = new_secret(SESSION_PREFIX);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    // Housekeeping: expired sessions of anyone go when someone signs in.
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash_secret(id.expose_secret()))
    .bind(user_id)
    .bind(now)
    .bind(now + SESSION_TTL_MS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The user behind a session cookie, or why there is none.
pub async fn session_principal(db: &Db, id: &str) -> Result<Principal> {
    let row: Option<(String, String, String, i64)> = sqlx::query_as(
        "SELECT u.id, u.name, u.role, s.expires_at FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
    )
    .bind(hash_secret(id))
    .fetch_optional(db.pool())
    .await?;
    let Some((user_id, name, role, expires_at)) = row else {
        return Err(Error::Unauthorized(
            "your session has ended: sign in again".to_owned(),
        ));
    };
    if expires_at <= now_ms() {
        return Err(Error::Unauthorized(
            "your session has expired: sign in again".to_owned(),
        ));
    }
    Ok(Principal {
        user_id,
        name,
        role: role
            .parse()
            .context("stored role")
            .map_err(Error::Internal)?,
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
    use crate::auth::create_user;
    use quarry_domain::Role;

    use crate::db::tests::temp_db as db;

    #[tokio::test]
    async fn a_password_signs_in_and_a_wrong_one_or_unknown_name_does_not() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "ana", Role::Analyst).await.unwrap();
        let none = check_password(&db, "ana", "whatever-long")
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
            check_password(&db, "ana", "correct horse").await.unwrap(),
            user
        );
        let wrong = check_password(&db, "ana", "correct horsE")
            .await
            .unwrap_err();
        let unknown = check_password(&db, "nobody", "correct horse")
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
    async fn sessions_resolve_until_logout_expiry_or_password_change() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "bo", Role::Lead).await.unwrap();
        set_password(&db, &user.id, "first password").await.unwrap();

        let s = create_session(&db, &user.id).await.unwrap();
        assert!(s.expose_secret().starts_with("qss_"));
        let who = session_principal(&db, s.expose_secret()).await.unwrap();
        assert_eq!((who.name.as_str(), who.role), ("bo", Role::Lead));

        end_session(&db, s.expose_secret()).await.unwrap();
        let gone = session_principal(&db, s.expose_secret()).await.unwrap_err();
        assert!(gone.to_string().contains("sign in again"), "{gone}");

        let s = create_session(&db, &user.id).await.unwrap();
        sqlx::query("UPDATE sessions SET expires_at = $1")
            .bind(now_ms() - 1)
            .execute(db.pool())
            .await
            .unwrap();
        let expired = session_principal(&db, s.expose_secret()).await.unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");

        let s = create_session(&db, &user.id).await.unwrap();
        set_password(&db, &user.id, "second password")
            .await
            .unwrap();
        assert!(
            session_principal(&db, s.expose_secret()).await.is_err(),
            "a password change signs out every session"
        );
    }
}
