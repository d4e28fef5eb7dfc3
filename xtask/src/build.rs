//! Building the server binary and the browser bundle.

use crate::{Layout, cargo, run};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use wasm_bindgen_cli_support::Bindgen;

/// Builds the `quarry` binary, the WASM bundle and the styles; returns the site root.
pub fn all(layout: &Layout) -> anyhow::Result<PathBuf> {
    host(layout)?;
    wasm(layout)?;
    assets(layout)?;
    Ok(layout.site())
}

/// The workspace's binaries. Always `--workspace`: cargo unifies features over the
/// packages it builds, so building one package alone would compile polars a second
/// time with a different feature set. `cargo test --workspace` then reuses all of it.
pub fn host(layout: &Layout) -> anyhow::Result<()> {
    run(
        layout,
        cargo().args(["build", "--workspace", "--all-targets"]),
    )
}

/// The release build a container image ships (`cargo xtask dist`, used by the
/// Dockerfile): the `quarry` binary in `<target>/release` and the site beside it.
pub fn dist(layout: &Layout) -> anyhow::Result<PathBuf> {
    run(
        layout,
        cargo().args([
            "build",
            "--release",
            "--package",
            "quarry-cli",
            "--bin",
            "quarry",
        ]),
    )?;
    wasm_profile(layout, true)?;
    assets(layout)?;
    Ok(layout.site())
}

/// Cargo's selection of the browser crate: `quarry-app` for WASM, `hydrate` only
/// (built here, linted by `cargo xtask lint`).
pub const WASM_CRATE: [&str; 8] = [
    "--package",
    "quarry-app",
    "--lib",
    "--target",
    "wasm32-unknown-unknown",
    "--no-default-features",
    "--features",
    "hydrate",
];

/// `quarry_app` for the browser (`hydrate` only), then wasm-bindgen into `site/pkg`.
pub fn wasm(layout: &Layout) -> anyhow::Result<()> {
    wasm_profile(layout, false)
}

fn wasm_profile(layout: &Layout, release: bool) -> anyhow::Result<()> {
    crate::prereq::wasm_target(layout)?;
    let mut args = vec!["build"];
    args.extend(WASM_CRATE);
    if release {
        args.push("--release");
    }
    run(layout, cargo().args(args))?;
    let input = layout
        .target
        .join("wasm32-unknown-unknown")
        .join(if release { "release" } else { "debug" })
        .join("quarry_app.wasm");
    let pkg = layout.site().join("pkg");
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    Bindgen::new()
        .input_path(&input)
        .out_name("quarry")
        .web(true)?
        .typescript(false)
        .generate(&pkg)
        .with_context(|| format!("wasm-bindgen on {}", input.display()))?;
    eprintln!("xtask: web bundle in {}", pkg.display());
    Ok(())
}

/// Copies `web/assets` into the site root.
pub fn assets(layout: &Layout) -> anyhow::Result<()> {
    copy_dir(&layout.root.join("web").join("assets"), &layout.site())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
