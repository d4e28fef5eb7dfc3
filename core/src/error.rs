//! Error policy for Quarry's libraries.
//!
//! * Library crates return [`Error`], a `thiserror` enum whose variants are the
//!   *outcomes a caller can act on*: not found, conflict, invalid input, unauthorized,
//!   forbidden, too large. Their messages are written for the person who sent the
//!   request and say what to fix; they are safe to show to clients.
//! * Everything unexpected (I/O, SQL, SDK failures) is [`Error::Internal`], carrying an
//!   `anyhow::Error` with `.context(..)`. Its text is for the log only: the HTTP layer
//!   answers 500 with an opaque message and the request id, never the inner text.
//! * Binaries and long-running loops use `anyhow` with context directly.
//! * The HTTP mapping lives in one place, `quarry_app::server::error::AppError`.

/// The result type of Quarry's libraries.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An outcome a caller can act on, or an internal failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or belongs to someone else).
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with existing state (a duplicate name, a finished job).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong; `code` is a stable machine-readable tag.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The request is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Anything unexpected; the text goes to the log only.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database"))
    }
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}
