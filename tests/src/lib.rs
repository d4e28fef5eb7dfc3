//! Helpers for the integration tests: start the real `quarry` binary on port 0 with a
//! temporary data directory, talk to it over HTTP, and stop it.

pub mod aws;
pub mod fixtures;

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The `quarry` binary: `$QUARRY_BIN`, or `<target>/<profile>/quarry` next to this test.
pub fn quarry_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("QUARRY_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test> -> <target>/<profile>/quarry
    exe.parent()
        .and_then(Path::parent)
        .map(|p| p.join("quarry"))
        .expect("target directory")
}

/// A running `quarry up` with its own data directory.
#[derive(Debug)]
pub struct Quarry {
    child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub admin_token: String,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
}

impl Quarry {
    /// Starts with the local environment's defaults.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts `quarry up` with extra variables.
    pub async fn start_with(vars: &[(&str, &str)]) -> Self {
        match Self::try_start("up", vars).await {
            Ok(q) => q,
            Err(e) => panic!("starting quarry: {e:#}"),
        }
    }

    /// Starts `quarry serve` (the web server alone, as the cloud runs it) with extra
    /// variables. There is no admin token: add users with [`Quarry::add_user`].
    pub async fn serve_with(vars: &[(&str, &str)]) -> Self {
        match Self::try_start("serve", vars).await {
            Ok(q) => q,
            Err(e) => panic!("starting quarry serve: {e:#}"),
        }
    }

    /// Spawns another `quarry` process (a worker, the orchestrator) with this
    /// instance's environment; it is killed when the handle is dropped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with(args, &[])
    }

    /// [`Quarry::spawn`] with variables of its own on top (a worker of another release).
    pub fn spawn_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Child {
        Command::new(quarry_bin())
            .args(args)
            .envs(self.env.iter().cloned())
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning quarry")
    }

    /// Kills the server with SIGKILL, as a crash would, and starts `quarry up` again
    /// on the same data directory with the same variables.
    pub async fn crash_and_restart(mut self) -> Self {
        self.child.start_kill().expect("SIGKILL quarry");
        let _ = self.child.wait().await;
        self.restart().await
    }

    /// [`Quarry::stop_and_restart`] with variables changed or added: the next start runs
    /// another release, say.
    pub async fn stop_and_restart_with(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self.env.retain(|(key, _)| key != k);
            self.env.push(((*k).to_owned(), (*v).to_owned()));
        }
        self.stop_and_restart().await
    }

    /// Stops the server with SIGTERM, as an operator would, and starts `quarry up`
    /// again on the same data directory with the same variables.
    pub async fn stop_and_restart(mut self) -> Self {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            panic!("quarry up did not stop within 60 s of SIGTERM");
        }
        self.restart().await
    }

    async fn restart(mut self) -> Self {
        let vars: Vec<(String, String)> = self.env.clone();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        let borrowed: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match Self::try_start_in(data_dir, "up", &borrowed).await {
            Ok(q) => q,
            Err(e) => panic!("restarting quarry: {e:#}"),
        }
    }

    async fn try_start(role: &str, vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::try_start_in(tempfile::tempdir()?, role, vars).await
    }

    async fn try_start_in(
        data_dir: tempfile::TempDir,
        role: &str,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut env: Vec<(String, String)> = vec![
            ("QUARRY_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "QUARRY_DATA_DIR".into(),
                data_dir.path().display().to_string(),
            ),
            ("QUARRY_LOG".into(), "warn".into()),
        ];
        env.extend(
            vars.iter()
                .filter(|(k, _)| !matches!(*k, "QUARRY_LISTEN" | "QUARRY_DATA_DIR"))
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut cmd = Command::new(quarry_bin());
        cmd.arg(role)
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", quarry_bin().display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .context("quarry did not print its address within 60 s")??
                .context("quarry exited before printing its address")?;
            let url = line
                .strip_prefix("Quarry is up at ")
                .or_else(|| line.strip_prefix("Quarry is serving at "));
            if let Some(url) = url {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let admin_token = if role == "up" {
            std::fs::read_to_string(data_dir.path().join("admin.token"))
                .context("reading admin.token")?
                .trim()
                .to_owned()
        } else {
            String::new()
        };
        Ok(Self {
            child,
            base,
            data_dir,
            admin_token,
            http: reqwest::Client::new(),
            env,
        })
    }

    /// The process id of `quarry up`.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("quarry is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `quarry <args>` against this instance's data directory.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let out = Command::new(quarry_bin())
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .await
            .context("running quarry")?;
        Ok(out)
    }

    /// Creates a user and returns their token.
    pub async fn add_user(&self, name: &str, role: &str) -> String {
        let out = self
            .cli(&["user", "add", name, "--role", role])
            .await
            .expect("quarry user add");
        if !out.status.success() {
            panic!(
                "quarry user add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout)
            .expect("utf-8 token")
            .trim()
            .to_owned()
    }

    /// `GET path` as the admin, decoded from JSON; a non-JSON answer fails the test.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not the JSON expected: {e}"))
    }

    /// Signs in through the web form with an API token and returns the session cookie
    /// (`name=value`), checking that it is HttpOnly and SameSite=Strict.
    pub async fn session_cookie(&self, token: &str) -> String {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client")
            .post(self.url("/session"))
            .form(&[("token", token)])
            .send()
            .await
            .expect("sign-in request");
        assert_eq!(r.status(), 303, "sign-in redirects");
        let set = r.headers()["set-cookie"]
            .to_str()
            .expect("a textual cookie")
            .to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        set.split(';').next().unwrap_or_default().to_owned()
    }

    /// Fails the test unless the server still answers `/healthz` with 200: every
    /// refusal of hostile input is followed by this.
    pub async fn assert_healthy(&self, after: &str) {
        let r = self
            .http
            .get(self.url("/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("after {after}: the server is down: {e}"));
        assert_eq!(r.status(), 200, "after {after}: /healthz");
    }

    /// Uploads a CSV as the token's user and returns the new dataset's id; anything
    /// but `201 Created` fails the test.
    pub async fn upload_csv(
        &self,
        token: &str,
        name: &str,
        csv: impl Into<reqwest::Body>,
    ) -> String {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/datasets?name={name}")))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .expect("upload request");
        assert_eq!(r.status(), 201, "uploading {name}");
        let dataset: serde_json::Value = r.json().await.expect("dataset JSON");
        dataset["id"].as_str().expect("dataset id").to_owned()
    }

    /// Every file under the blob store, for "nothing left behind" checks.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.path().join("blobs"), &mut out);
        out.sort();
        out
    }

    /// Stops the server with SIGTERM and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -TERM {pid} failed");
            }
        }
        Ok(tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await??)
    }
}

/// PIDs of `quarry worker` processes whose parent is `parent` (a `quarry up`).
pub fn worker_pids_of(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let is_worker = cmdline.split(|b| *b == 0).nth(1) == Some(b"worker".as_slice());
        // stat: pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
        if is_worker && ppid.as_deref() == Some(parent.as_str()) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `sig` (`-KILL`, `-TERM`, `-STOP`, `-CONT`) to `pid`; whether it was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `check` until it returns `Some`, or fails after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// xorshift64*: a small generator, reproducible from its seed, with no dependency (the
/// chaos run prints its seed; the benchmark's arrivals are the same every run).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }
}
