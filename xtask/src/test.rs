//! `cargo xtask test`: everything CI checks, in order of cost.

use crate::{Layout, build, cargo, prereq, run};
use std::process::Command;

/// Formatting and clippy with warnings denied, for the server and the WASM build.
pub fn lint(layout: &Layout) -> anyhow::Result<()> {
    run(layout, cargo().args(["fmt", "--all", "--check"]))?;
    run(
        layout,
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        layout,
        cargo()
            .arg("clippy")
            .args(build::WASM_CRATE)
            .args(["--", "-D", "warnings"]),
    )
}

/// Lint, build, Rust tests (unit and integration against the real binary), then the
/// browser tests in Chromium.
pub fn all(layout: &Layout, args: &[String]) -> anyhow::Result<()> {
    let skip_lint = args.iter().any(|a| a == "--no-lint");
    prereq::wasm_target(layout)?;
    let site = build::all(layout)?;
    if !skip_lint {
        lint(layout)?;
    }
    let postgres = prereq::postgres(layout)?;
    let tools = prereq::python_tools(layout)?;
    run(
        layout,
        cargo()
            // One test at a time: the integration tests each run a fleet of worker
            // processes, and two cores shared by two fleets make timings meaningless.
            .args([
                "test",
                "--workspace",
                "--",
                "--test-threads",
                "1",
                "--color",
                "never",
            ])
            .env("QUARRY_BIN", layout.quarry_bin())
            .env("QUARRY_SITE_ROOT", &site)
            .env("QUARRY_TEST_POSTGRES", &postgres)
            .env("QUARRY_MOTO_SERVER", tools.join("moto_server"))
            .env("QUARRY_AWS_CLI", tools.join("aws"))
            .env("QUARRY_CFN_LINT", tools.join("cfn-lint")),
    )?;
    let chromium = prereq::chromium(layout)?;
    prereq::node_modules(layout)?;
    run(
        layout,
        Command::new("node")
            .args(["--test", "--test-reporter=spec"])
            .args(e2e_files(layout)?)
            .current_dir(layout.root.join("web"))
            .env("QUARRY_BIN", layout.quarry_bin())
            .env("QUARRY_SITE_ROOT", &site)
            .env("CHROMIUM", chromium),
    )
}

/// The browser test files, `web/e2e/*.test.mjs`, relative to `web/`.
fn e2e_files(layout: &Layout) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(layout.root.join("web").join("e2e"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".test.mjs"))
        .map(|n| format!("e2e/{n}"))
        .collect();
    files.sort();
    Ok(files)
}
