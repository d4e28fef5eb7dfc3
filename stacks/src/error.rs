//! Errors of the stacks library.
//!
//! Policy:
//! * one `thiserror` enum, [`StackError`], at the crate boundary: everything a caller
//!   (the `quarry stack` commands) can get back from parsing an environment or
//!   synthesizing its template;
//! * a bad construct prop is a [`PropError`] that names the construct, the key in
//!   `environments/<name>.toml`, the bad value and what is allowed, so the message alone
//!   says what to fix; validation collects every bad prop rather than stopping at the
//!   first;
//! * mistakes in the wiring of constructs (a logical id used twice, a `Ref` to nothing)
//!   are errors too, not panics, and tests pin that the real stacks have none;
//! * policy findings are not errors: [`crate::policy::check`] returns a report.

use std::fmt;

/// One invalid construct prop: which construct, which key, which value, what is allowed.
///
/// Displayed as ``worker fleet: `stack.worker.memory` = 3000 MiB is not a Fargate size
/// for 1024 CPU units: use 2048 to 8192 in steps of 1024``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{construct}: `{prop}` = {value} {problem}")]
pub struct PropError {
    /// The construct whose props were checked, e.g. `worker fleet`.
    pub construct: &'static str,
    /// The key in the environment file, e.g. `stack.worker.memory`.
    pub prop: String,
    /// The offending value as written, with its unit where it has one.
    pub value: String,
    /// What is wrong and what is allowed instead.
    pub problem: String,
}

impl PropError {
    /// A prop error; `value` is shown as given (quote strings yourself).
    pub fn new(
        construct: &'static str,
        prop: impl Into<String>,
        value: impl fmt::Display,
        problem: impl Into<String>,
    ) -> Self {
        Self {
            construct,
            prop: prop.into(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}

/// Everything that can go wrong between an environment file and a template.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The environment file cannot be read or parsed (TOML syntax, a missing key, a
    /// value of the wrong type, an unknown key under `[stack]`).
    #[error("environment `{environment}`: {message}")]
    Config {
        /// The environment whose file was parsed.
        environment: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Construct props that failed validation, every one of them.
    #[error("{}", PropList(.0))]
    InvalidProps(Vec<PropError>),
    /// Two resources (or parameters, or outputs) want the same logical id.
    #[error("template: logical id `{0}` is used twice")]
    DuplicateLogicalId(String),
    /// A logical id CloudFormation would refuse.
    #[error("template: logical id `{0}` is not allowed: use 1 to 255 ASCII letters and digits")]
    BadLogicalId(String),
    /// A `Ref`, `Fn::GetAtt`, `Fn::Sub` variable or `DependsOn` names nothing.
    #[error("template: `{from}` refers to `{to}`, which is neither a resource nor a parameter")]
    DanglingReference {
        /// The logical id holding the reference.
        from: String,
        /// The name it refers to.
        to: String,
    },
}

struct PropList<'a>(&'a [PropError]);

impl fmt::Display for PropList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} invalid props:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Turns collected prop errors into a result.
pub(crate) fn collect(errors: Vec<PropError>) -> Result<(), StackError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StackError::InvalidProps(errors))
    }
}
