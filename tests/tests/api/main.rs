//! Integration tests against the real `quarry` binary (one test binary, shared helpers).

mod auth;
mod cloud;
mod control;
mod corpus;
mod datasets;
mod gate;
mod ingest;

mod hostile_sql;
mod housekeeping;
mod http_limits;
mod jobs;
mod prescale;
mod reruns;
mod roles;
mod stacks;
mod system_envs;
