//! Quarry's infrastructure as code: typed CloudFormation resources, constructs with
//! documented defaults, and one stack per environment (`environments/<name>.toml`),
//! synthesized deterministically. Filled in by the cloud issue; `quarry stack` reports
//! that it is not available until then.
