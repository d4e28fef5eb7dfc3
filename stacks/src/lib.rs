//! Quarry's infrastructure as code: the CloudFormation template of one whole Quarry
//! environment, synthesized deterministically from `environments/<name>.toml`.
//!
//! Three construct levels, as in the AWS CDK:
//! 1. **Resources** ([`resource`], [`intrinsic`], [`iam`]): a [`Template`] of
//!    [`Resource`]s held in sorted maps, intrinsic functions (`Ref`, `Fn::GetAtt`,
//!    `Fn::Sub`, ...) and IAM statements, printed as JSON with sorted keys.
//! 2. **Constructs** ([`constructs`]): network, data bucket, job queue, database,
//!    worker fleet, API service, orchestrator, observability. Each has a `Props`
//!    struct with documented defaults, a `validate()` whose errors name the key, the
//!    value and what is allowed, and an `add` function giving its resources stable
//!    PascalCase logical ids.
//! 3. **Stacks** ([`stack`]): one per environment, the constructs composed with props
//!    from the environment file ([`StackConfig`]); per-environment defaults (removal
//!    policy, deletion protection) are explicit there.
//!
//! [`synth`] validates every construct's props and builds the template;
//! [`Template::to_json_string`] gives the bytes to deploy (same config, same bytes;
//! [`template_hash`] identifies them); [`policy::check`] runs Quarry's own rules
//! (encryption, no public data, no `*` IAM grants, log retention, production retains
//! data) on any template JSON, honouring `[[stack.suppress]]` entries.
//!
//! Synthesis, the policy rules and the template diff ([`diff`], [`changes`]) are pure;
//! [`cloudformation`] is the one module that talks to AWS: the change-set driver
//! that previews, executes and follows deployments, and the stack reads the control
//! plane shows.

pub mod changes;
pub mod cloudformation;
pub mod config;
pub mod constructs;
pub mod diff;
pub mod error;
pub mod iam;
pub mod intrinsic;
pub mod policy;
pub mod resource;
pub mod stack;

pub use config::StackConfig;
pub use error::{PropError, StackError};
pub use policy::{Finding, Report, Rule};
pub use resource::{DeletionPolicy, Output, Parameter, Resource, Template};
pub use stack::{IMAGE_PARAMETER, StackProps};

use sha2::{Digest, Sha256};

/// The CloudWatch namespace of Quarry's own metrics (dimension `Environment`).
pub use quarry_domain::metrics::NAMESPACE as METRICS_NAMESPACE;

/// Validates every construct's props, then builds the environment's template.
///
/// Errors list every invalid prop at once ([`StackError::InvalidProps`]); a template
/// that refers to a missing logical id is an error too, never a deployable template.
pub fn synth(config: &StackConfig) -> Result<Template, StackError> {
    config.validate()?;
    StackProps::from_config(config).build()
}

/// The SHA-256 of a template's JSON, lowercase hex: names exactly what was deployed.
pub fn template_hash(json: &str) -> String {
    hex::encode(Sha256::digest(json.as_bytes()))
}
