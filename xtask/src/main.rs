//! Project automation, so that a fresh machine needs two commands:
//!
//! * `cargo xtask up`   — install what is missing, build the app, start the embedded default;
//! * `cargo xtask test` — install/start what the tests need and run the whole suite.
//!
//! Also: `cargo xtask build` (server + WASM bundle + styles), `cargo xtask lint`,
//! `cargo xtask bench engine`, `cargo xtask chaos [--jobs N] [--cloud]` (the fault run).
//! The WASM bundle is built with cargo and `wasm-bindgen-cli-support` as a library,
//! so no tool is downloaded from outside the package registries.

#![expect(
    clippy::print_stderr,
    reason = "xtask reports its steps on stderr, like cargo"
)]

mod build;
mod prereq;
mod test;

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(t, r)| (t.as_str(), r));
    match task {
        "up" => up(rest),
        "build" => build::all(&Layout::discover()?).map(drop),
        "dist" => build::dist(&Layout::discover()?).map(drop),
        "test" => test::all(&Layout::discover()?, rest),
        "lint" => test::lint(&Layout::discover()?),
        "bench" => bench(&Layout::discover()?, rest),
        "chaos" => test::chaos(&Layout::discover()?, rest),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <up | test | build | dist | lint | bench engine | chaos [--jobs N] [--cloud]>"
            );
            Ok(())
        }
        other => bail!("unknown task `{other}`: use up, test, build, dist, lint, bench or chaos"),
    }
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub target: PathBuf,
}

impl Layout {
    fn discover() -> anyhow::Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives in the workspace")?
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Ok(Self { root, target })
    }

    /// The `quarry` binary of the dev profile.
    pub fn quarry_bin(&self) -> PathBuf {
        self.target.join("debug").join("quarry")
    }

    /// Where the web bundle and styles go (`<target>/site`, found by the binary).
    pub fn site(&self) -> PathBuf {
        self.target.join("site")
    }
}

/// Runs a command (in the workspace root unless it has a directory of its own),
/// failing with its name if it fails.
pub fn run(layout: &Layout, cmd: &mut Command) -> anyhow::Result<()> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(&layout.root);
    }
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// `cargo` through the rustup proxy, exactly as a developer's shell runs it. Not
/// `$CARGO`: that is the resolved toolchain path (`stable-...` behind the pinned
/// `1.95.0` symlink), and cargo fingerprints the compiler by path, so the two would
/// keep two copies of every dependency and rebuild polars whenever they alternate.
///
/// The variables `cargo run` set for xtask itself (`CARGO_PKG_NAME=xtask`,
/// `CARGO_MANIFEST_DIR`, …) are removed too: build scripts such as ring's declare
/// `rerun-if-env-changed` on those names, so inheriting them would make every build
/// from xtask differ from a shell build and recompile ring, rustls, reqwest and all
/// of polars behind them.
pub fn cargo() -> Command {
    let mut command = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let injected = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                &*name,
                "CARGO" | "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "LD_LIBRARY_PATH"
            );
        if injected {
            command.env_remove(&*name);
        }
    }
    command
}

fn up(args: &[String]) -> anyhow::Result<()> {
    let layout = Layout::discover()?;
    let started = Instant::now();
    prereq::wasm_target(&layout)?;
    build::all(&layout)?;
    eprintln!(
        "xtask: built in {:.0?}; starting `quarry up`",
        started.elapsed()
    );
    let mut cmd = Command::new(layout.quarry_bin());
    cmd.arg("up").args(args).current_dir(&layout.root);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let err = cmd.exec();
        Err(err).context("starting quarry up")
    }
    #[cfg(not(unix))]
    {
        run(&layout, &mut cmd)
    }
}

/// `cargo xtask bench engine`: builds the binary and runs the engine benchmark.
fn bench(layout: &Layout, args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("engine") => {
            build::host(layout)?;
            let python = prereq::bench_tools(layout)?.join("python");
            let bench = layout.target.join("debug").join("bench-engine");
            // Exits non-zero when a figure misses its goal (after printing them all);
            // xtask then exits with its code, without a trace of its own.
            let mut cmd = Command::new(bench);
            cmd.current_dir(&layout.root);
            let status = cmd
                .args(&args[1..])
                .env("QUARRY_BIN", layout.quarry_bin())
                .env("QUARRY_BENCH_PYTHON", python)
                .env(
                    "QUARRY_BENCH_SCRIPT",
                    layout
                        .root
                        .join("tests")
                        .join("python")
                        .join("bench_duckdb.py"),
                )
                .env("QUARRY_BENCH_DATA", layout.target.join("bench-data"))
                .status()
                .context("starting the benchmark")?;
            if !status.success() {
                eprintln!("xtask: the benchmark failed or missed a goal (see above)");
                std::process::exit(status.code().unwrap_or(1));
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask bench engine [SECTION...]"),
    }
}
