//! The stacks' tests, one binary: synthesized templates (snapshots, determinism,
//! cfn-lint), construct props validation, and the policy rules.

mod helpers;
mod policy;
mod props;
mod synth;
