//! The `quarry` binary: every role of the process (`up`, `serve`, `worker`,
//! `orchestrator`, the admin and `stack` commands) behind one command line.
//!
//! The web server (`quarry-app`), the worker loop (`quarry-worker`) and the
//! orchestrator meet only here, so the web server never depends on the worker loop.

mod commands;
mod stack;

fn main() -> anyhow::Result<()> {
    commands::main()
}
