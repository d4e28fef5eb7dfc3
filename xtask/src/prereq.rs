//! Installing what the build and the tests need, only when it is missing.

use crate::{Layout, run};
use anyhow::Context as _;
use std::path::Path;
use std::process::Command;

/// The WASM target of the pinned toolchain.
pub fn wasm_target(layout: &Layout) -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&layout.root)
        .output()
        .context("running rustup (install Rust with rustup first)")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    run(
        layout,
        Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]),
    )
}

/// Debian's Chromium, for the browser tests.
pub fn chromium(layout: &Layout) -> anyhow::Result<String> {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return Ok(candidate.to_owned());
        }
    }
    eprintln!("xtask: installing Debian's chromium for the browser tests");
    run(layout, Command::new("apt-get").args(["update", "-qq"]))?;
    run(
        layout,
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok("/usr/bin/chromium".to_owned())
}

/// The browser tests' npm packages (playwright-core), from the committed lockfile.
pub fn node_modules(layout: &Layout) -> anyhow::Result<()> {
    let web = layout.root.join("web");
    if web.join("node_modules").join("playwright-core").exists() {
        return Ok(());
    }
    run(
        layout,
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web),
    )
    .context("installing the browser tests' npm packages (needs node and npm)")
}
