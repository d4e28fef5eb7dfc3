//! Shared helpers: the real environments, edited copies of them, and cfn-lint.

use quarry_stacks::config::STAGING;
use quarry_stacks::{StackConfig, StackError, synth};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The compiled-in configuration of `environment`.
pub fn config(environment: &str) -> StackConfig {
    StackConfig::for_environment(environment).expect("the environment file parses")
}

/// The synthesized template of `environment`, as deployed.
pub fn template_json(environment: &str) -> String {
    synth(&config(environment))
        .expect("the environment synthesizes")
        .to_json_string()
}

/// The synthesized template of `environment`, parsed.
pub fn template_value(environment: &str) -> Value {
    serde_json::from_str(&template_json(environment)).expect("the template is JSON")
}

/// staging.toml with `from` replaced by `to` (which must occur exactly once), then
/// parsed: how a person would break it.
pub fn edited_staging(from: &str, to: &str) -> Result<StackConfig, StackError> {
    assert_eq!(
        STAGING.matches(from).count(),
        1,
        "`{from}` must occur once in staging.toml"
    );
    StackConfig::from_toml("staging", &STAGING.replacen(from, to, 1))
}

/// The message of synthesizing staging.toml with `from` replaced by `to`.
pub fn staging_error(from: &str, to: &str) -> String {
    match edited_staging(from, to).and_then(|config| synth(&config)) {
        Ok(_) => panic!("replacing `{from}` with `{to}` should fail"),
        Err(e) => e.to_string(),
    }
}

/// Runs cfn-lint (`QUARRY_CFN_LINT`, default `cfn-lint` on PATH) on `json`; returns
/// whether it passed and what it said.
pub fn cfn_lint(name: &str, json: &str) -> (bool, String) {
    let lint = std::env::var("QUARRY_CFN_LINT").unwrap_or_else(|_| "cfn-lint".to_owned());
    let path: PathBuf =
        std::env::temp_dir().join(format!("quarry-stacks-{}-{name}.json", std::process::id()));
    std::fs::write(&path, json).expect("writing the template to a temporary file");
    let output = Command::new(&lint)
        .args(["--regions", "us-east-1", "eu-west-1", "--"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running `{lint}` failed ({e}): install cfn-lint (cargo xtask test does) or \
                 point QUARRY_CFN_LINT at it"
            )
        });
    let _ = std::fs::remove_file(&path);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}
