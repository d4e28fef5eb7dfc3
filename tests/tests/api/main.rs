//! Integration tests against the real `quarry` binary (one test binary, shared helpers).

mod auth;
mod cloud;
mod datasets;

mod jobs;
mod roles;
mod stacks;
