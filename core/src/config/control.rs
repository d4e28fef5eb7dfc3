//! `[control]`: the control plane's own settings (how it reads the environments,
//! polls CloudFormation, watches releases and runs the promotion gates).

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[control]`: how this process's control plane finds and drives the stack
/// environments. (In `staging.toml` and `production.toml` the same section also holds
/// that environment's `upstream` and approval rule, which `quarry-stacks` reads.)
#[derive(Debug, Clone, Deserialize)]
pub struct ControlConfig {
    /// The directory of the environments' files; empty = `./environments` when it
    /// exists, else the files compiled into the binary.
    #[serde(default)]
    pub environments_dir: String,
    /// Milliseconds between polls of CloudFormation while a stack changes.
    #[serde(default = "default_control_poll_ms")]
    pub poll_ms: u64,
    /// Milliseconds to wait between creating a change set and executing it (0 = none):
    /// lets tests stop the server with a deployment recorded but not finished.
    #[serde(default)]
    pub pause_before_execute_ms: u64,
    /// Milliseconds between two checks of the regression watch.
    #[serde(default = "default_watch_ms")]
    pub watch_ms: u64,
    /// Milliseconds between two looks at the promotion gates' reference checks.
    #[serde(default = "default_gate_poll_ms")]
    pub gate_poll_ms: u64,
    /// Seconds a reference check may take on the candidate release (queued and run)
    /// before it fails the gate: no worker of that release took it, or it ran too long.
    #[serde(default = "default_gate_timeout_secs")]
    pub gate_timeout_secs: u64,
    /// Seconds a check waits, while this fleet runs another release and no worker of
    /// the candidate is alive, before it fails the gate saying so.
    #[serde(default = "default_gate_no_worker_secs")]
    pub gate_no_worker_secs: u64,
    /// The other environments' APIs, by environment name (`[control.peers.staging]`):
    /// a promotion's reference checks run there, through the upstream environment's
    /// API, when no worker of the candidate reads this server's queue.
    #[serde(default)]
    pub peers: BTreeMap<String, PeerConfig>,
}

/// `[control.peers.<env>]`: how this control plane reaches another environment's API.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerConfig {
    /// The environment's API root (`https://quarry-staging.example.com`); empty = the
    /// `ApiUrl` output of its stack.
    #[serde(default)]
    pub url: String,
    /// A token of a user of that environment (an analyst's is enough): it uploads the
    /// reference's dataset there, submits the analysis and reads the result. A secret:
    /// set it from the environment (`QUARRY_CONTROL__PEERS__STAGING__TOKEN`).
    #[serde(default = "empty_secret")]
    pub token: SecretString,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            environments_dir: String::new(),
            poll_ms: default_control_poll_ms(),
            pause_before_execute_ms: 0,
            watch_ms: default_watch_ms(),
            gate_poll_ms: default_gate_poll_ms(),
            gate_timeout_secs: default_gate_timeout_secs(),
            gate_no_worker_secs: default_gate_no_worker_secs(),
            peers: BTreeMap::new(),
        }
    }
}

fn default_watch_ms() -> u64 {
    15_000
}

fn default_gate_poll_ms() -> u64 {
    1000
}

fn default_gate_no_worker_secs() -> u64 {
    120
}

fn default_gate_timeout_secs() -> u64 {
    1800
}

fn default_control_poll_ms() -> u64 {
    2000
}
