//! Users and API tokens.
//!
//! A token is `qry_` followed by 64 hex digits of randomness. Only its SHA-256 is
//! stored, so the database alone cannot be used to sign in. Tokens may expire and be
//! revoked; both are checked on every request, and again by responses that last
//! (event streams ask [`still_valid`] as they go). A web session opened with a token
//! ends with it, and nothing made with a token outlives it: a token minted under it
//! must expire no later (see [`issue_token_for`]).

use crate::clock::now_ms;
use crate::db::Db;
use crate::db::statements::Param;
use crate::error::{Error, Result, is_unique_violation};
use anyhow::Context as _;
use quarry_domain::Role;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

const TOKEN_PREFIX: &str = "qry_";

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub name: String,
    pub role: Role,
    /// What the request was authenticated with, so it can be checked again later.
    pub credential: Credential,
}

/// The credential behind a [`Principal`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// Made in-process (the CLI, tests): there is nothing to check again.
    #[default]
    Internal,
    /// A bearer token, by its id.
    Token { token_id: String },
    /// A web session, by the SHA-256 of its id, with the token it was opened with
    /// (if it was not opened with a password).
    Session {
        id_hash: String,
        token_id: Option<String>,
    },
}

impl Credential {
    /// The API token this credential is, or was made from.
    pub fn token_id(&self) -> Option<&str> {
        match self {
            Credential::Token { token_id } => Some(token_id),
            Credential::Session { token_id, .. } => token_id.as_deref(),
            Credential::Internal => None,
        }
    }
}

/// What each role may do. Every page, server function and API route asks these,
/// on the server: hiding a button is never the enforcement.
///
/// | role     | own datasets & jobs | others' jobs | others' datasets | system page |
/// |----------|---------------------|--------------|------------------|-------------|
/// | analyst  | read, write         | —            | —                | —           |
/// | lead     | read, write         | read         | —                | read        |
/// | operator | read, write         | read, write  | read, write      | read        |
/// | admin    | read, write         | read, write  | read, write      | read        |
impl Principal {
    /// Operators and admins see and change everything.
    pub fn sees_everything(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin)
    }

    /// Leads, operators and admins read everyone's jobs (leads read-only).
    pub fn reads_all_jobs(&self) -> bool {
        self.role != Role::Analyst
    }

    /// Leads, operators and admins see the system page and its metrics.
    pub fn sees_system(&self) -> bool {
        self.role != Role::Analyst
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// An API token's row with its user's name and role.
type TokenRow = (String, String, String, String, Option<i64>, Option<i64>);

/// A fresh secret: `prefix` and 64 hex digits of randomness (API tokens, sessions).
pub(crate) fn new_secret(prefix: &str) -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!("{prefix}{}", hex::encode(bytes)))
}

/// What is stored instead of a secret: its SHA-256, in hex.
pub(crate) fn hash_secret(secret: &str) -> String {
    crate::blob::ContentHash::of(secret.as_bytes())
}

fn new_token() -> SecretString {
    new_secret(TOKEN_PREFIX)
}

/// Checks a user name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn validate_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_user_name",
            format!("user name `{name}` must be 1-64 letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// Creates a user and a first token for them; the token is returned once, here.
pub async fn create_user(db: &Db, name: &str, role: Role) -> Result<(User, SecretString)> {
    validate_user_name(name)?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role,
    };
    let token = new_token();
    let mut tx = db.begin_write().await?;
    let inserted =
        sqlx::query("INSERT INTO users (id, name, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&user.id)
            .bind(&user.name)
            .bind(role.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::Conflict(format!(
                "a user named `{name}` already exists"
            )));
        }
        other => {
            other?;
        }
    }
    insert_token(&mut tx, &user.id, &token, "initial", None).await?;
    tx.commit().await?;
    Ok((user, token))
}

/// The user called `name`, if any.
pub async fn find_user(db: &Db, name: &str) -> Result<Option<User>> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, name, role FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    row.map(|(id, name, role)| {
        let role = role
            .parse()
            .context("stored role")
            .map_err(Error::Internal)?;
        Ok(User { id, name, role })
    })
    .transpose()
}

/// Issues another token for an existing user, optionally expiring at `expires_at` (ms).
pub async fn issue_token(
    db: &Db,
    user_id: &str,
    label: &str,
    expires_at: Option<i64>,
) -> Result<SecretString> {
    let token = new_token();
    let mut tx = db.begin_write().await?;
    insert_token(&mut tx, user_id, &token, label, expires_at).await?;
    tx.commit().await?;
    Ok(token)
}

async fn insert_token(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    token: &SecretString,
    label: &str,
    expires_at: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, token_hash, label, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(user_id)
    .bind(hash_secret(token.expose_secret()))
    .bind(label)
    .bind(now_ms())
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Resolves a bearer token to its user, or says why it cannot.
pub async fn authenticate(db: &Db, token: &str) -> Result<Principal> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(Error::Unauthorized(
            "the bearer token is not a Quarry token (they start with `qry_`)".to_owned(),
        ));
    }
    // Every API request asks this: on the process's own connection, no round trip to
    // a sqlx thread (see `crate::db::statements`).
    let hash = hash_secret(token);
    let row: Option<TokenRow> = db
        .statements()?
        .fetch_optional(
            false,
            "SELECT t.id, t.user_id, u.name, u.role, t.expires_at, t.revoked_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
            &[Param::Text(&hash)],
        )
        .await?;
    let (id, user_id, name, role, expires_at, revoked_at) = row.ok_or_else(|| {
        Error::Unauthorized(
            "the bearer token is not valid: check it or ask an admin for a new one".to_owned(),
        )
    })?;
    if let Some(ended) = TokenEnd::of(expires_at, revoked_at) {
        return Err(ended.as_bearer());
    }
    let role = role
        .parse()
        .context("stored role")
        .map_err(Error::Internal)?;
    Ok(Principal {
        user_id,
        name,
        role,
        credential: Credential::Token { token_id: id },
    })
}

/// Why a token no longer signs anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenEnd {
    Revoked,
    Expired,
}

impl TokenEnd {
    /// The end of a token with these stored times, if it has ended (revocation first).
    pub(crate) fn of(expires_at: Option<i64>, revoked_at: Option<i64>) -> Option<Self> {
        if revoked_at.is_some() {
            Some(TokenEnd::Revoked)
        } else if expires_at.is_some_and(|at| at <= now_ms()) {
            Some(TokenEnd::Expired)
        } else {
            None
        }
    }

    fn as_bearer(self) -> Error {
        Error::Unauthorized(
            match self {
                TokenEnd::Revoked => "the bearer token was revoked: ask an admin for a new one",
                TokenEnd::Expired => "the bearer token has expired: ask an admin for a new one",
            }
            .to_owned(),
        )
    }

    /// The refusal of a session opened with the token.
    pub(crate) fn as_session_origin(self) -> Error {
        Error::Unauthorized(
            match self {
                TokenEnd::Revoked => {
                    "the token this session came from has been revoked: sign in again"
                }
                TokenEnd::Expired => "the token this session came from has expired: sign in again",
            }
            .to_owned(),
        )
    }
}

/// The stored expiry and revocation of a token, by id.
pub(crate) async fn token_times(
    db: &Db,
    token_id: &str,
) -> Result<Option<(Option<i64>, Option<i64>)>> {
    Ok(
        sqlx::query_as("SELECT expires_at, revoked_at FROM api_tokens WHERE id = $1")
            .bind(token_id)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// When the credential behind `who` expires (milliseconds), if it does: the sooner of
/// a session's end and the end of the token it was opened with. An event stream checks
/// its credential then, so it does not outlive it.
pub async fn ends_at(db: &Db, who: &Principal) -> Result<Option<i64>> {
    match &who.credential {
        Credential::Internal => Ok(None),
        Credential::Token { token_id } => Ok(token_times(db, token_id)
            .await?
            .and_then(|(expires, _)| expires)),
        Credential::Session { id_hash, .. } => {
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT s.expires_at, t.expires_at FROM sessions s \
                 LEFT JOIN api_tokens t ON t.id = s.token_id WHERE s.id_hash = $1",
            )
            .bind(id_hash)
            .fetch_optional(db.pool())
            .await?;
            Ok(row.map(|(session, token)| token.map_or(session, |t| t.min(session))))
        }
    }
}

/// Whether the credential behind `who` still holds: a bearer token neither revoked
/// nor expired; a session not ended, not expired, and not opened with a token that
/// since ended. `Err(Unauthorized)` says why not. Responses that outlast their
/// request (event streams) call this as they go, so revoking a token ends them.
/// It costs one lookup by primary key.
pub async fn still_valid(db: &Db, who: &Principal) -> Result<()> {
    match &who.credential {
        Credential::Internal => Ok(()),
        Credential::Token { token_id } => match token_times(db, token_id).await? {
            None => Err(Error::Unauthorized(
                "the bearer token is not valid any more".to_owned(),
            )),
            Some((expires_at, revoked_at)) => match TokenEnd::of(expires_at, revoked_at) {
                Some(ended) => Err(ended.as_bearer()),
                None => Ok(()),
            },
        },
        Credential::Session { id_hash, .. } => crate::sessions::session_by_hash(db, id_hash)
            .await
            .map(drop),
    }
}

/// Issues a token for the caller, as the settings page does. A caller signed in with
/// an API token (directly, or through a session opened with one) cannot mint a token
/// that outlives it: asking for a later expiry, or none, is refused with the date to
/// stay within. This keeps a stolen short-lived token from turning into a lasting one.
pub async fn issue_token_for(
    db: &Db,
    who: &Principal,
    label: &str,
    expires_at: Option<i64>,
) -> Result<SecretString> {
    if let Some(parent) = who.credential.token_id() {
        let (parent_expires, revoked_at) = token_times(db, parent).await?.ok_or_else(|| {
            Error::Unauthorized("the token you signed in with is not valid any more".to_owned())
        })?;
        if let Some(ended) = TokenEnd::of(parent_expires, revoked_at) {
            return Err(match who.credential {
                Credential::Token { .. } => ended.as_bearer(),
                _ => ended.as_session_origin(),
            });
        }
        if let Some(limit) = parent_expires
            && expires_at.is_none_or(|at| at > limit)
        {
            return Err(Error::Forbidden(format!(
                "you signed in with an API token that expires at {}, and a token made \
                 with it cannot outlive it: choose an expiry before then, or sign in \
                 with your password to make a longer-lived token",
                crate::clock::rfc3339(limit)
            )));
        }
    }
    issue_token(db, &who.user_id, label, expires_at).await
}

/// An API token as its owner sees it (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A user's tokens, newest first.
pub async fn list_tokens(db: &Db, user_id: &str) -> Result<Vec<TokenInfo>> {
    Ok(sqlx::query_as(
        "SELECT id, label, created_at, expires_at, revoked_at FROM api_tokens \
         WHERE user_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?)
}

/// Revokes one of the user's tokens; someone else's token is "not found".
pub async fn revoke_token(db: &Db, user_id: &str, token_id: &str) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3",
    )
    .bind(now_ms())
    .bind(token_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!(
            "you have no token with id `{token_id}`"
        )));
    }
    tx.commit().await?;
    Ok(())
}

/// The file the embedded default writes the admin's token to.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// On first start, creates the `admin` user and writes its token to
/// `<data_dir>/admin.token` with mode 0600. Later starts leave both alone, unless the
/// file was deleted, in which case a fresh admin token is issued and written.
pub async fn ensure_admin(db: &Db, data_dir: &Path) -> Result<PathBuf> {
    let path = admin_token_path(data_dir);
    let existing: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE name = 'admin'")
        .fetch_optional(db.pool())
        .await?;
    let token = match existing {
        Some(_) if path.exists() => return Ok(path),
        Some((id,)) => issue_token(db, &id, "admin.token", None).await?,
        None => create_user(db, "admin", Role::Admin).await?.1,
    };
    write_secret_file(&path, token.expose_secret()).map_err(Error::Internal)?;
    Ok(path)
}

fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("token.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::db::tests::temp_db as db;

    #[tokio::test]
    async fn a_created_users_token_authenticates_as_that_user() {
        let (_dir, db) = db().await;
        let (user, token) = create_user(&db, "ana", Role::Analyst).await.unwrap();
        let who = authenticate(&db, token.expose_secret()).await.unwrap();
        assert_eq!(
            who,
            Principal {
                user_id: user.id,
                name: "ana".into(),
                role: Role::Analyst,
                credential: who.credential.clone(),
            }
        );
        assert!(
            matches!(&who.credential, Credential::Token { token_id } if !token_id.is_empty()),
            "{who:?}"
        );
        still_valid(&db, &who).await.unwrap();
        let dup = create_user(&db, "ana", Role::Lead).await.unwrap_err();
        assert!(matches!(dup, Error::Conflict(_)), "{dup:?}");
    }

    #[tokio::test]
    async fn unknown_and_expired_tokens_are_refused_with_a_reason() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "bo", Role::Lead).await.unwrap();
        let expired = issue_token(&db, &user.id, "old", Some(now_ms() - 1))
            .await
            .unwrap();
        let err = authenticate(&db, expired.expose_secret())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = authenticate(&db, "qry_00").await.unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
        let err = authenticate(&db, "hunter2").await.unwrap_err();
        assert!(err.to_string().contains("qry_"), "{err}");
    }

    #[tokio::test]
    async fn tokens_are_listed_without_secrets_and_revoked_only_by_their_owner() {
        let (_dir, db) = db().await;
        let (ana, first) = create_user(&db, "ana", Role::Analyst).await.unwrap();
        let (bo, _) = create_user(&db, "bo", Role::Analyst).await.unwrap();
        let second = issue_token(&db, &ana.id, "laptop", None).await.unwrap();
        let tokens = list_tokens(&db, &ana.id).await.unwrap();
        assert_eq!(tokens.len(), 2);
        let laptop = tokens.iter().find(|t| t.label == "laptop").unwrap();

        let err = revoke_token(&db, &bo.id, &laptop.id).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(authenticate(&db, second.expose_secret()).await.is_ok());

        revoke_token(&db, &ana.id, &laptop.id).await.unwrap();
        let err = authenticate(&db, second.expose_secret()).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        assert!(
            authenticate(&db, first.expose_secret()).await.is_ok(),
            "others still work"
        );
        let after = list_tokens(&db, &ana.id).await.unwrap();
        assert!(
            after
                .iter()
                .any(|t| t.id == laptop.id && t.revoked_at.is_some())
        );
    }

    #[tokio::test]
    async fn a_token_mints_none_that_outlives_it_and_its_principal_ends_when_revoked() {
        let (_dir, db) = db().await;
        let (user, _) = create_user(&db, "cy", Role::Analyst).await.unwrap();
        let soon = now_ms() + 60_000;
        let short = issue_token(&db, &user.id, "short", Some(soon))
            .await
            .unwrap();
        let who = authenticate(&db, short.expose_secret()).await.unwrap();
        for asked in [None, Some(soon + 1)] {
            let err = issue_token_for(&db, &who, "longer", asked)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Forbidden(_)) && err.to_string().contains("outlive"),
                "{asked:?}: {err}"
            );
        }
        let within = issue_token_for(&db, &who, "within", Some(soon - 1_000))
            .await
            .unwrap();
        assert!(authenticate(&db, within.expose_secret()).await.is_ok());
        let by_password = Principal {
            credential: Credential::Internal,
            ..who.clone()
        };
        issue_token_for(&db, &by_password, "forever", None)
            .await
            .unwrap();
        assert_eq!(list_tokens(&db, &user.id).await.unwrap().len(), 4);

        still_valid(&db, &who).await.unwrap();
        let id = who.credential.token_id().unwrap().to_owned();
        revoke_token(&db, &user.id, &id).await.unwrap();
        let err = still_valid(&db, &who).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        let err = issue_token_for(&db, &who, "after", Some(soon - 1_000))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[tokio::test]
    async fn ensure_admin_writes_a_private_token_once() {
        let (dir, db) = db().await;
        let path = ensure_admin(&db, dir.path()).await.unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            authenticate(&db, token.trim()).await.unwrap().role,
            Role::Admin
        );
        ensure_admin(&db, dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            token,
            "second start keeps the token"
        );
    }
}
