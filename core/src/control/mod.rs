//! The control plane's records: immutable [`artifacts`], each stack environment's
//! state ([`environments`]: freeze, hold, current and last good release), and
//! [`promotions`] with their approvals. Releases live in [`crate::releases`].
//!
//! Every state change that must happen once is a compare-and-set
//! (`UPDATE … WHERE id = $1 AND status = $2`, checking the rows it changed), so two
//! operators, or a server and its restarted self, can never both move a promotion on.
//! The service that drives CloudFormation with these records is `quarry_app::control`.

pub mod artifacts;
pub mod environments;
pub mod promotions;
pub mod references;

/// Who did something, when (RFC 3339) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub by: String,
    pub at: String,
    pub reason: String,
}

fn mark(by: Option<String>, at: Option<i64>, reason: Option<String>) -> Option<Mark> {
    Some(Mark {
        by: by?,
        at: crate::clock::rfc3339(at?),
        reason: reason.unwrap_or_default(),
    })
}
