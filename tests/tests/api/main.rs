//! Integration tests against the real `quarry` binary (one test binary, shared helpers).

mod auth;
mod datasets;

mod jobs;
mod roles;
