//! `quarry stack …`: synthesize, check, preview, deploy and remove an environment's
//! CloudFormation stack, recording every deployment as a release.
//!
//! The environment's parameters come from `environments/<env>.toml` in the current
//! directory when there is one (an operator's checkout, where changes are reviewed),
//! else from the copy compiled into the binary; `--file` names another.
//!
//! Progress goes to stderr, results (templates, tables, outputs) to stdout.
#![expect(
    clippy::print_stderr,
    reason = "the CLI reports progress on stderr and results on stdout"
)]

use anyhow::{Context as _, bail};
use clap::Subcommand;
use quarry_core::releases::{self, NewRelease, Outcome};
use quarry_core::{Config, Db};
use quarry_stacks::cloudformation::{Deployer, StackEvent};
use quarry_stacks::{StackConfig, policy, synth, template_hash};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Print the environment's template (deterministic: same file, same bytes).
    Synth {
        env: String,
        /// Write the template here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Run the policy rules; fails on a violation not suppressed in the env file.
    Check {
        env: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Preview a deployment: create a change set, show what it changes, delete it.
    Diff {
        env: String,
        /// The image to preview with (default: the one deployed now).
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Check, create and execute a change set, follow the stack until it settles, and
    /// record the release.
    Deploy {
        env: String,
        /// The container image every task runs (e.g. a digest-pinned ECR URI).
        #[arg(long)]
        image: String,
        /// Who deploys (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The stack's status and the image it runs.
    Status {
        env: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The stack's outputs (names of its queue, bucket, cluster, load balancer…).
    Outputs {
        env: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The environment's releases, newest first.
    Releases {
        env: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Delete the stack. Asks for the stack's name (or takes `--confirm NAME`);
    /// production also needs `--force`.
    Destroy {
        env: String,
        #[arg(long)]
        confirm: Option<String>,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// The environment's stack parameters and where they came from.
fn load(env: &str, file: Option<&Path>) -> anyhow::Result<StackConfig> {
    let local = PathBuf::from("environments").join(format!("{env}.toml"));
    let chosen = file
        .map(Path::to_path_buf)
        .or_else(|| local.exists().then_some(local));
    let config = match &chosen {
        Some(path) => {
            eprintln!("stack: parameters from {}", path.display());
            StackConfig::from_file(env, path)?
        }
        None => {
            eprintln!("stack: parameters compiled into this binary (environments/{env}.toml)");
            StackConfig::for_environment(env)?
        }
    };
    Ok(config)
}

async fn deployer(config: &StackConfig) -> Deployer {
    let region = Config::load().map(|c| c.aws.region).unwrap_or_default();
    let sdk = quarry_core::aws::sdk_config(&region).await;
    Deployer::new(&sdk, &config.stack.name)
}

fn print_event(event: &StackEvent) {
    eprintln!("  {event}");
}

/// A change-set name CloudFormation accepts, unique per second.
fn change_set_name(action: &str) -> String {
    format!("quarry-{action}-{}", quarry_core::clock::now_ms() / 1000)
}

pub async fn run(command: StackCommand) -> anyhow::Result<()> {
    match command {
        StackCommand::Synth { env, out, file } => {
            let config = load(&env, file.as_deref())?;
            let json = synth(&config)?.to_json_string();
            match out {
                Some(path) => {
                    std::fs::write(&path, &json)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "stack: {} written ({} bytes, sha256 {})",
                        path.display(),
                        json.len(),
                        template_hash(&json)
                    );
                }
                None => std::io::stdout().write_all(json.as_bytes())?,
            }
            Ok(())
        }
        StackCommand::Check { env, file } => {
            let config = load(&env, file.as_deref())?;
            let report = policy::check_template(&synth(&config)?, &config);
            println!("{report}");
            if report.blocks_deploy() {
                bail!("policy check failed: fix the template or suppress with a reason");
            }
            Ok(())
        }
        StackCommand::Diff { env, image, file } => {
            let config = load(&env, file.as_deref())?;
            let json = synth(&config)?.to_json_string();
            let deployer = deployer(&config).await;
            let image = match image {
                Some(image) => image,
                None => deployer
                    .status()
                    .await?
                    .and_then(|s| s.image)
                    .context("the stack is not deployed yet: give the image with --image")?,
            };
            eprintln!("stack: computing a change set for {}…", config.stack.name);
            let preview = deployer
                .preview(&json, &image, &change_set_name("diff"))
                .await?;
            print!("{}", preview.table());
            if !preview.change_set.changes.is_empty() {
                deployer.delete_change_set(&preview.change_set.id).await?;
            }
            Ok(())
        }
        StackCommand::Deploy {
            env,
            image,
            by,
            file,
        } => deploy(&env, &image, by, file.as_deref()).await,
        StackCommand::Status { env, file } => {
            let config = load(&env, file.as_deref())?;
            let deployer = deployer(&config).await;
            match deployer.status().await? {
                None => println!("{}: not deployed", config.stack.name),
                Some(status) => {
                    println!(
                        "{}: {}{}",
                        status.name,
                        status.status,
                        if status.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", status.reason)
                        }
                    );
                    println!("image: {}", status.image.as_deref().unwrap_or("-"));
                    for r in deployer.resources().await? {
                        println!(
                            "  {:<40} {:<44} {}",
                            r.logical_id, r.resource_type, r.status
                        );
                    }
                }
            }
            Ok(())
        }
        StackCommand::Outputs { env, file } => {
            let config = load(&env, file.as_deref())?;
            let outputs = deployer(&config).await.outputs().await?;
            println!("{}", serde_json::to_string_pretty(&outputs)?);
            Ok(())
        }
        StackCommand::Releases { env, file } => {
            let config = load(&env, file.as_deref())?;
            let db = Db::connect(&Config::load()?.database_url()).await?;
            for r in releases::list(&db, &config.environment, 50).await? {
                println!(
                    "{}  {:<11} {}  by {}  template {}  change set {}{}",
                    r.started_at,
                    r.outcome,
                    r.image,
                    r.deployed_by,
                    &r.template_hash[..12.min(r.template_hash.len())],
                    r.change_set_id.as_deref().unwrap_or("-"),
                    r.detail.map(|d| format!("  ({d})")).unwrap_or_default()
                );
            }
            Ok(())
        }
        StackCommand::Destroy {
            env,
            confirm,
            force,
            file,
        } => {
            let config = load(&env, file.as_deref())?;
            let name = config.stack.name.clone();
            if config.is_production() && !force {
                bail!("refusing to destroy production stack `{name}` without --force");
            }
            let typed = match confirm {
                Some(typed) => typed,
                None => {
                    eprint!("Type the stack name `{name}` to delete it: ");
                    std::io::stderr().flush().ok();
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().to_owned()
                }
            };
            if typed != name {
                bail!("`{typed}` is not `{name}`: nothing deleted");
            }
            eprintln!("stack: deleting {name}…");
            let status = deployer(&config).await.destroy(print_event).await?;
            if status != "DELETE_COMPLETE" {
                bail!("deleting `{name}` ended in {status}");
            }
            eprintln!("stack: {name} deleted");
            Ok(())
        }
    }
}

async fn deploy(
    env: &str,
    image: &str,
    by: Option<String>,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let config = load(env, file)?;
    let template = synth(&config)?;
    let report = policy::check_template(&template, &config);
    eprintln!("{report}");
    if report.blocks_deploy() {
        bail!("policy check failed: nothing deployed");
    }
    let json = template.to_json_string();
    let hash = template_hash(&json);
    let who = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let db = Db::connect(&Config::load()?.database_url()).await?;
    let release = releases::start(
        &db,
        &NewRelease {
            environment: &config.environment,
            stack: &config.stack.name,
            image,
            template_hash: &hash,
            deployed_by: &who,
        },
    )
    .await?;
    let deployer = deployer(&config).await;
    let outcome = run_deploy(&deployer, &json, image).await;
    let (result, change_set, detail) = match &outcome {
        Ok(Deployed::NoChanges) => (Outcome::NoChanges, None, None),
        Ok(Deployed::Done(id)) => (Outcome::Succeeded, Some(id.as_str()), None),
        Err((id, e)) => (Outcome::Failed, id.as_deref(), Some(format!("{e:#}"))),
    };
    releases::finish(&db, &release, result, change_set, detail.as_deref()).await?;
    match outcome {
        Ok(Deployed::NoChanges) => {
            eprintln!(
                "stack: {} already runs this template and image",
                config.stack.name
            );
            Ok(())
        }
        Ok(Deployed::Done(_)) => {
            eprintln!(
                "stack: {} deployed with {image} (release {release})",
                config.stack.name
            );
            Ok(())
        }
        Err((_, e)) => Err(e),
    }
}

enum Deployed {
    NoChanges,
    /// The change set executed.
    Done(String),
}

async fn run_deploy(
    deployer: &Deployer,
    json: &str,
    image: &str,
) -> Result<Deployed, (Option<String>, anyhow::Error)> {
    eprintln!(
        "stack: computing a change set for {}…",
        deployer.stack_name()
    );
    let preview = deployer
        .preview(json, image, &change_set_name("deploy"))
        .await
        .map_err(|e| (None, e.into()))?;
    let id = preview.change_set.id.clone();
    if preview.change_set.changes.is_empty() {
        return Ok(Deployed::NoChanges);
    }
    print!("{}", preview.table());
    eprintln!("stack: executing change set {id}");
    let status = deployer
        .execute(&id, print_event)
        .await
        .map_err(|e| (Some(id.clone()), e.into()))?;
    if status.ends_with("_COMPLETE") && !status.contains("ROLLBACK") {
        eprintln!("stack: {status}");
        return Ok(Deployed::Done(id));
    }
    let failures = deployer.failures().await.unwrap_or_default();
    let mut message = format!("the deployment ended in {status}");
    for f in &failures {
        message.push_str(&format!(
            "\n  {} ({}): {} {}",
            f.logical_id, f.resource_type, f.status, f.reason
        ));
    }
    Err((Some(id), anyhow::anyhow!(message)))
}
