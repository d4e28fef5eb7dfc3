//! The AWS emulator for the cloud tests: moto's server on a free loopback port, one per
//! test (its state is global, so tests do not share one), and the AWS CLI pointed at it
//! to check what really landed there.
//!
//! `cargo xtask test` installs both into a virtualenv and names them with
//! `QUARRY_MOTO_SERVER` and `QUARRY_AWS_CLI`; otherwise they are looked up on `PATH`.

use anyhow::{Context as _, bail};
use quarry_core::aws::SdkConfig;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The region every emulated resource lives in.
pub const REGION: &str = "us-east-1";

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    _child: Child,
    pub endpoint: String,
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

impl Moto {
    /// Starts moto's server and waits until it answers.
    pub async fn start() -> Self {
        match Self::try_start().await {
            Ok(moto) => moto,
            Err(e) => panic!(
                "starting the AWS emulator: {e:#} (run the tests with `cargo xtask test`, which \
                 installs moto, or put moto_server on PATH)"
            ),
        }
    }

    async fn try_start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(tool("QUARRY_MOTO_SERVER", "moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(match std::env::var_os("QUARRY_MOTO_LOG") {
                // Debugging a moto quirk: its server log, request by request.
                Some(path) => std::fs::File::create(path)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
                None => Stdio::null(),
            })
            .kill_on_drop(true)
            .spawn()
            .context("spawning moto_server")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("moto_server did not answer on {endpoint} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _child: child,
            endpoint,
        })
    }

    /// The SDK configuration for this emulator.
    pub async fn sdk(&self) -> SdkConfig {
        quarry_core::aws::emulator_config(&self.endpoint).await
    }

    /// The environment a `quarry` process (or the AWS CLI) needs to use this emulator
    /// exactly as it would use AWS.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Runs the AWS CLI against the emulator and parses its JSON output (`null` for
    /// commands that print nothing). A failing command fails with its stderr.
    pub async fn aws(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(tool("QUARRY_AWS_CLI", "aws"))
            .args(args)
            // Explicit: the CLI ignores AWS_ENDPOINT_URL for some services (SQS).
            .args(["--output", "json", "--endpoint-url", &self.endpoint])
            .envs(self.env())
            .env("AWS_PAGER", "")
            .output()
            .await
            .context("running the AWS CLI")?;
        if !out.status.success() {
            bail!(
                "aws {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&out.stdout).context("parsing the AWS CLI's JSON")
    }

    async fn id(&self, args: &[&str], pointer: &str) -> anyhow::Result<String> {
        Ok(self
            .aws(args)
            .await?
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("{pointer} in the answer to {}", args.join(" ")))?
            .to_owned())
    }

    /// A VPC with DNS hostnames enabled and `n` subnets spread over two zones.
    async fn vpc(&self, n: u8) -> anyhow::Result<(String, Vec<String>)> {
        let vpc = self
            .id(
                &["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"],
                "/Vpc/VpcId",
            )
            .await?;
        self.aws(&[
            "ec2",
            "modify-vpc-attribute",
            "--vpc-id",
            &vpc,
            "--enable-dns-hostnames",
            "{\"Value\":true}",
        ])
        .await?;
        let mut subnets = Vec::new();
        for i in 0..n {
            let cidr = format!("10.0.{}.0/24", i + 1);
            let zone = format!("{REGION}{}", if i % 2 == 0 { 'a' } else { 'b' });
            subnets.push(
                self.id(
                    &[
                        "ec2",
                        "create-subnet",
                        "--vpc-id",
                        &vpc,
                        "--cidr-block",
                        &cidr,
                        "--availability-zone",
                        &zone,
                    ],
                    "/Subnet/SubnetId",
                )
                .await?,
            );
        }
        Ok((vpc, subnets))
    }

    /// What ECS RunTask needs for awsvpc networking: a subnet in a VPC with DNS
    /// hostnames, and a security group. Returns (subnet id, security group id).
    pub async fn network(&self) -> anyhow::Result<(String, String)> {
        let (vpc, subnets) = self.vpc(1).await?;
        let group = self
            .id(
                &[
                    "ec2",
                    "create-security-group",
                    "--group-name",
                    "quarry-workers",
                    "--description",
                    "Quarry workers",
                    "--vpc-id",
                    &vpc,
                ],
                "/GroupId",
            )
            .await?;
        Ok((subnets[0].clone(), group))
    }

    /// An existing network for a stack to import: (VPC id, two public subnets, two
    /// private subnets), each pair across two zones.
    pub async fn vpc_with_subnets(&self) -> anyhow::Result<(String, Vec<String>, Vec<String>)> {
        let (vpc, subnets) = self.vpc(4).await?;
        Ok((vpc, subnets[..2].to_vec(), subnets[2..].to_vec()))
    }
}
