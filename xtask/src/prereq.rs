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
    apt_install(layout, "chromium")?;
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

/// The Postgres server the repository suite and the cloud tests use:
/// `QUARRY_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`. If
/// nothing answers on that port, Debian's PostgreSQL is installed if missing, told to
/// trust loopback connections (a throwaway test machine), and started.
pub fn postgres(layout: &Layout) -> anyhow::Result<String> {
    let url = std::env::var("QUARRY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if answers("127.0.0.1:5432") {
        return Ok(url);
    }
    eprintln!("xtask: no Postgres on 127.0.0.1:5432; starting one for the tests");
    if !Path::new("/usr/lib/postgresql").exists() {
        apt_install(layout, "postgresql")?;
    }
    for entry in std::fs::read_dir("/etc/postgresql").context("finding Postgres clusters")? {
        let hba = entry?.path().join("main").join("pg_hba.conf");
        let current = std::fs::read_to_string(&hba).unwrap_or_default();
        if hba.exists() && !current.contains("quarry-tests") {
            std::fs::write(
                &hba,
                format!("host all all 127.0.0.1/32 trust # quarry-tests\n{current}"),
            )
            .with_context(|| format!("trusting loopback in {}", hba.display()))?;
        }
    }
    run(
        layout,
        Command::new("service").args(["postgresql", "restart"]),
    )?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !answers("127.0.0.1:5432") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "Postgres did not start on 127.0.0.1:5432"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(url)
}

fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).ok()
        })
        .is_some()
}

/// The Python tools of the tests (moto's AWS emulator, the AWS CLI, cfn-lint, and
/// Schemathesis for the REST API), pinned in `tests/python/requirements.txt` and
/// installed into a virtualenv beside the build cache; reinstalled when the pins
/// change. Returns the virtualenv's `bin` directory.
pub fn python_tools(layout: &Layout) -> anyhow::Result<std::path::PathBuf> {
    python_env(
        layout,
        "requirements.txt",
        "venv",
        "moto, awscli, cfn-lint and schemathesis",
    )
}

/// The engine benchmark's baselines (DuckDB), pinned in
/// `tests/python/bench-requirements.txt`, in a virtualenv of their own so the tests'
/// tools stay as they are. Returns its `bin` directory.
pub fn bench_tools(layout: &Layout) -> anyhow::Result<std::path::PathBuf> {
    python_env(layout, "bench-requirements.txt", "bench-venv", "duckdb")
}

/// A virtualenv `tools/<venv>` beside the build cache with the pins of
/// `tests/python/<requirements>`, made or remade when they change.
fn python_env(
    layout: &Layout,
    requirements: &str,
    venv: &str,
    what: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let requirements = layout.root.join("tests").join("python").join(requirements);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = layout.target.join("tools").join(venv);
    let stamp = venv.join("quarry-requirements.txt");
    let bin = venv.join("bin");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(bin);
    }
    eprintln!("xtask: installing {what} into {}", venv.display());
    run(
        layout,
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
    )
    .context("creating a virtualenv (needs python3 with venv)")?;
    run(
        layout,
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )
    .with_context(|| format!("installing {what} from PyPI"))?;
    std::fs::write(&stamp, wanted)?;
    Ok(bin)
}

/// Installs one Debian package (and only what it needs).
fn apt_install(layout: &Layout, package: &str) -> anyhow::Result<()> {
    run(layout, Command::new("apt-get").args(["update", "-qq"]))?;
    run(
        layout,
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
