//! The names of Quarry's environments, the one definition the configuration, the
//! stacks and the web app share.

/// One machine, the embedded adapters.
pub const LOCAL: &str = "local";
/// The AWS environment every change is deployed to first.
pub const STAGING: &str = "staging";
/// The AWS environment only promotions reach.
pub const PRODUCTION: &str = "production";
