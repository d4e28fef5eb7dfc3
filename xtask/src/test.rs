//! `cargo xtask test`: everything CI checks, in order of cost.

use crate::{Layout, build, cargo, prereq, run};
use anyhow::{Context as _, bail};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Formatting and clippy with warnings denied, for the server and the WASM build.
pub fn lint(layout: &Layout) -> anyhow::Result<()> {
    run(layout, cargo().args(["fmt", "--all", "--check"]))?;
    // The web crate is linted for the browser too (on a fresh machine `lint` alone
    // would fail without the target).
    prereq::wasm_target(layout)?;
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

/// Lint, build, Rust tests (unit and integration against the real binary),
/// Schemathesis against the running API, then the browser tests in Chromium.
/// `--no-lint` skips the lints; `--api-schema` runs only the build and Schemathesis.
pub fn all(layout: &Layout, args: &[String]) -> anyhow::Result<()> {
    let skip_lint = args.iter().any(|a| a == "--no-lint");
    if args.iter().any(|a| a == "--api-schema") {
        build::host(layout)?;
        return api_schema(layout, &prereq::python_tools(layout)?);
    }
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
    // The fault run, small: the full 500-job run is `cargo xtask chaos`.
    for cloud in [false, true] {
        let mut args = vec!["--jobs".to_owned(), CI_CHAOS_JOBS.to_owned()];
        if cloud {
            args.push("--cloud".to_owned());
        }
        chaos_with(layout, &args, &postgres, &tools)?;
    }
    api_schema(layout, &tools)?;
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
            .env("QUARRY_MOTO_SERVER", tools.join("moto_server"))
            .env("CHROMIUM", chromium),
    )
}

/// Jobs in each of `cargo xtask test`'s chaos runs.
const CI_CHAOS_JOBS: &str = "60";

/// `cargo xtask chaos [--jobs N] [--cloud] [--seed S]`: builds, provides Postgres and
/// the emulator, and runs the chaos program (`tests/src/bin/chaos.rs`).
pub fn chaos(layout: &Layout, args: &[String]) -> anyhow::Result<()> {
    build::host(layout)?;
    let postgres = prereq::postgres(layout)?;
    let tools = prereq::python_tools(layout)?;
    chaos_with(layout, args, &postgres, &tools)
}

fn chaos_with(
    layout: &Layout,
    args: &[String],
    postgres: &str,
    tools: &Path,
) -> anyhow::Result<()> {
    run(
        layout,
        Command::new(layout.target.join("debug").join("chaos"))
            .args(args)
            .env("QUARRY_BIN", layout.quarry_bin())
            .env("QUARRY_TEST_POSTGRES", postgres)
            .env("QUARRY_MOTO_SERVER", tools.join("moto_server"))
            .env("QUARRY_AWS_CLI", tools.join("aws")),
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

/// Schemathesis against `/api/v1/openapi.json` of a running `quarry up`: generated
/// requests to every operation (with real dataset and job ids some of the time) must
/// never meet a server error, and every answer must match its documented schema.
pub fn api_schema(layout: &Layout, tools: &Path) -> anyhow::Result<()> {
    let data_dir = layout
        .target
        .join("tmp")
        .join(format!("schemathesis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let mut server = Server::start(layout, &data_dir)?;
    let outcome = server.fuzz(layout, tools, &data_dir);
    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
    outcome
}

/// The pinned run: a fixed seed and example budget keep it to a few minutes and
/// make a failure reproducible.
const SCHEMATHESIS_SEED: &str = "20261201";
const SCHEMATHESIS_EXAMPLES: &str = "25";

/// A `quarry up` of this run, stopped on drop.
struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Server {
    fn start(layout: &Layout, data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(layout.quarry_bin())
            .arg("up")
            .env("QUARRY_LISTEN", "127.0.0.1:0")
            .env("QUARRY_DATA_DIR", data_dir)
            .env("QUARRY_LOG", "warn")
            // Generated analyses must not keep CPUs busy for minutes.
            .env("QUARRY_ANALYSES__ALLOW_SPIN", "false")
            .env("QUARRY_FLEET__MAX_WORKERS", "1")
            .env("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "5")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", layout.quarry_bin().display()))?;
        let stdout = child.stdout.take().context("quarry's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address, then keeps draining so quarry never blocks on the pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Quarry is up at ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
            token: String::new(),
        };
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .context("quarry up did not print its address within 60 s")?;
        server.addr = url
            .strip_prefix("http://")
            .unwrap_or(&url)
            .trim_end_matches('/')
            .to_owned();
        server.token = std::fs::read_to_string(data_dir.join("admin.token"))
            .context("reading admin.token")?
            .trim()
            .to_owned();
        Ok(server)
    }

    /// Gives generated requests something real to find: a dataset and a job that
    /// succeeded on it. Returns their ids.
    fn seed_data(&self) -> anyhow::Result<(String, String)> {
        let csv =
            "id,category,amount,when\n1,a,1.5,2024-01-01\n2,b,,2024-01-02\n3,a,-4.25,2024-01-03\n";
        let (status, body) = self.http("POST", "/api/v1/datasets?name=fuzz", "text/csv", csv)?;
        anyhow::ensure!(status == 201, "uploading the fuzz dataset: {status} {body}");
        let dataset = json_id(&body)?;
        let job = format!(r#"{{"dataset_id":"{dataset}","analysis":{{"kind":"profile"}}}}"#);
        let (status, body) = self.http("POST", "/api/v1/jobs", "application/json", &job)?;
        anyhow::ensure!(status == 202, "submitting the fuzz job: {status} {body}");
        let job = json_id(&body)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, body) = self.http("GET", &format!("/api/v1/jobs/{job}"), "", "")?;
            if body.contains(r#""status":"succeeded""#) {
                return Ok((dataset, job));
            }
            anyhow::ensure!(
                Instant::now() < deadline && !body.contains(r#""status":"failed""#),
                "the fuzz job did not succeed: {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn fuzz(&self, layout: &Layout, tools: &Path, data_dir: &Path) -> anyhow::Result<()> {
        let (dataset, job) = self.seed_data()?;
        let config = data_dir.join("schemathesis.toml");
        std::fs::write(&config, schemathesis_config(&self.token, &dataset, &job))?;
        run(
            layout,
            Command::new(tools.join("st"))
                .arg("--config-file")
                .arg(&config)
                .args(["run", &format!("http://{}/api/v1/openapi.json", self.addr)])
                .args(["--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"])
                .args(["--max-examples", SCHEMATHESIS_EXAMPLES])
                .args(["--seed", SCHEMATHESIS_SEED])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                .args(["--request-timeout", "30", "--workers", "1"])
                .args(["--generation-database", "none", "--no-color"])
                .arg("--report-dir")
                .arg(data_dir.join("report"))
                .current_dir(data_dir)
                .env("SCHEMATHESIS_TELEMETRY", "false"),
        )
        .context("Schemathesis found server errors or answers that break the OpenAPI document")
    }

    /// One HTTP/1.1 request to the server with the admin token; `(status, body)`.
    fn http(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(&self.addr)
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Connection: close\r\nContent-Length: {}\r\n",
            self.addr,
            self.token,
            body.len()
        );
        if !content_type.is_empty() {
            request.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("a bad HTTP answer to {method} {path}: {response}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The first `"id":"…"` of a JSON body.
fn json_id(body: &str) -> anyhow::Result<String> {
    let Some((_, rest)) = body.split_once(r#""id":""#) else {
        bail!("no id in {body}");
    };
    Ok(rest.split('"').next().unwrap_or_default().to_owned())
}

/// The run's configuration: the admin token on every request (in this file, so it
/// is not printed with the command); dataset routes and job routes draw their `{id}`
/// from the seeded ids half of the time (random ids the other half); deleting is left
/// to random ids so the seeded dataset lives through the run.
fn schemathesis_config(token: &str, dataset: &str, job: &str) -> String {
    format!(
        r#"# Written by `cargo xtask test` for one Schemathesis run.
headers = {{ Authorization = "Bearer {token}" }}

[dictionaries.datasets]
values = ["{dataset}"]

[dictionaries.jobs]
values = ["{job}"]

[[operations]]
include-path-regex = "^/api/v1/datasets/\\{{id\\}}"
exclude-method = "DELETE"
parameters = {{ "path.id" = {{ dictionary = "datasets", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/api/v1/jobs/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "jobs", probability = 0.5 }} }}
"#
    )
}
