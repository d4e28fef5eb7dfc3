//! `quarry stack …`: synthesize, check, preview, deploy and remove an environment's
//! CloudFormation stack, recording every deployment as a release; promote, approve,
//! roll back, freeze and lift holds through the same control plane as the REST API
//! (`quarry_app::control::ops` and `quarry_app::control::reads`).
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
use quarry_app::control::ops::{self, Actor};
use quarry_app::control::reads;
use quarry_app::control::views::{DiffRow, ReleaseView};
use quarry_app::control::{self, ControlPlane, load_environments};
use quarry_core::releases::{self, Outcome};
use quarry_core::{Config, Db};
use quarry_stacks::cloudformation::{Deployer, ResourceChange, StackEvent, changes_table};
use quarry_stacks::{StackConfig, policy, synth, template_hash};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Deploy an artifact to an environment without an upstream (staging), through the
    /// control plane: check, change set, execute, follow the stack until it settles,
    /// record the release.
    Deploy {
        env: String,
        /// The image every task runs, by digest: `<repository>@sha256:<64 hex>`.
        #[arg(long)]
        image: String,
        /// The commit the image was built from.
        #[arg(long)]
        commit: Option<String>,
        /// Who deploys (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Request the promotion of what runs on FROM into TO; prints its id and diff.
    Promote {
        from: String,
        to: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Approve a promotion (not your own) and follow its deployment.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Return an environment to its last good release (or --to RELEASE) and hold it.
    Rollback {
        env: String,
        #[arg(long)]
        to: Option<String>,
        /// Also reject the artifact running now.
        #[arg(long)]
        reject: bool,
        #[arg(long, default_value = "rolled back from the command line")]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Freeze an environment: deploys, promotions and rollbacks are refused.
    Freeze {
        env: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// End a freeze.
    Unfreeze {
        env: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Holds set by rollbacks.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
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

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Lift the hold so promotions land on ENV again.
    Lift {
        env: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: Option<String>,
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
    let mut deployer = Deployer::new(&sdk, &config.stack.name);
    deployer.rollback =
        Some(quarry_stacks::stack::StackProps::from_config(config).rollback_triggers());
    deployer
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
            commit,
            by,
            file,
        } => deploy(&env, &image, commit.as_deref(), by, file.as_deref()).await,
        StackCommand::Promote { from, to, by } => {
            let plane = plane(None).await?;
            let p = ops::request_promotion(&plane, &from, &to, &actor(by), false).await?;
            eprintln!(
                "stack: promotion {} of {} from {from} to {to}: {}",
                p.id, p.artifact, p.status
            );
            print!("{}", changes_table(&rows(&p.diff)));
            println!("{}", p.id);
            Ok(())
        }
        StackCommand::Approve { id, comment, by } => {
            let plane = plane(None).await?;
            let mut events = plane.subscribe();
            let p = ops::approve(&plane, &id, &actor(by), &comment, false).await?;
            eprintln!("stack: promotion {id} {}", p.status);
            let Some(release) = p.release_id.clone() else {
                return Ok(());
            };
            let done = follow(&plane, &mut events, &release).await?;
            let p = reads::promotion(&plane, &id).await?;
            eprintln!("stack: promotion {id} {}", p.status);
            finished(&done)
        }
        StackCommand::Rollback {
            env,
            to,
            reject,
            reason,
            by,
        } => {
            let plane = plane(None).await?;
            let mut events = plane.subscribe();
            let r = ops::rollback(
                &plane,
                &env,
                to.as_deref(),
                reject,
                &reason,
                &actor(by),
                false,
            )
            .await?;
            eprintln!(
                "stack: rolling {env} back to {} (release {})",
                r.artifact, r.id
            );
            let done = follow(&plane, &mut events, &r.id).await?;
            eprintln!("stack: {env} is on hold until `quarry stack hold lift {env} --reason …`");
            finished(&done)
        }
        StackCommand::Freeze { env, reason, by } => {
            let plane = plane(None).await?;
            ops::freeze(&plane, &env, &reason, &actor(by)).await?;
            eprintln!("stack: {env} frozen: {reason}");
            Ok(())
        }
        StackCommand::Unfreeze { env, reason, by } => {
            let plane = plane(None).await?;
            ops::unfreeze(&plane, &env, &reason, &actor(by)).await?;
            eprintln!("stack: {env} unfrozen");
            Ok(())
        }
        StackCommand::Hold {
            command: HoldCommand::Lift { env, reason, by },
        } => {
            let plane = plane(None).await?;
            ops::lift_hold(&plane, &env, &reason, &actor(by)).await?;
            eprintln!("stack: the hold on {env} is lifted");
            Ok(())
        }
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

/// Who acts: `--by`, else `$USER`.
fn actor(by: Option<String>) -> Actor {
    let name = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    Actor { name, admin: false }
}

/// The control plane of the configured database, with the environment files of this
/// checkout (`file` replacing one of them).
async fn plane(file: Option<(&str, &Path)>) -> anyhow::Result<Arc<ControlPlane>> {
    let config = Config::load()?;
    let db = Db::connect(&config.database_url()).await?;
    let mut envs = load_environments(control::config_dir(&config).as_deref())?;
    if let Some((env, path)) = file {
        let def = envs
            .iter_mut()
            .find(|d| d.name == env)
            .with_context(|| format!("`{env}` is not a stack environment"))?;
        def.config = StackConfig::from_file(env, path)?;
    }
    Ok(ControlPlane::with_environments(db, &config, envs))
}

fn rows(diff: &[DiffRow]) -> Vec<ResourceChange> {
    diff.iter()
        .map(|r| ResourceChange {
            action: r.action.clone(),
            logical_id: r.logical_id.clone(),
            resource_type: r.resource_type.clone(),
            replacement: r.replacement.clone(),
        })
        .collect()
}

/// Prints the stack's events until `release` has finished; returns it.
async fn follow(
    plane: &ControlPlane,
    events: &mut tokio::sync::broadcast::Receiver<control::ControlEvent>,
    release: &str,
) -> anyhow::Result<ReleaseView> {
    loop {
        let current = releases::get(&plane.db, release).await?;
        if current.outcome != Outcome::InProgress.as_str() {
            return Ok(quarry_app::control::views::release(current));
        }
        match tokio::time::timeout(std::time::Duration::from_secs(2), events.recv()).await {
            Ok(Ok(event)) if event.kind == "stack" => {
                eprintln!(
                    "  {}  {:<28} {:<40} {}  {}",
                    event.data["at"].as_str().unwrap_or_default(),
                    event.data["status"].as_str().unwrap_or_default(),
                    event.data["logical_id"].as_str().unwrap_or_default(),
                    event.data["type"].as_str().unwrap_or_default(),
                    event.data["reason"].as_str().unwrap_or_default()
                );
            }
            _ => {}
        }
    }
}

/// Prints a finished release; fails unless it succeeded.
fn finished(release: &ReleaseView) -> anyhow::Result<()> {
    print!("{}", changes_table(&rows(&release.diff)));
    match release.outcome.as_str() {
        "succeeded" => {
            eprintln!(
                "stack: {} deployed with {} (release {})",
                release.environment, release.artifact, release.id
            );
            Ok(())
        }
        "no_changes" => {
            eprintln!(
                "stack: {} already runs this template and image",
                release.environment
            );
            Ok(())
        }
        other => bail!(
            "the release ended {other}: {}",
            release.detail.as_deref().unwrap_or("no detail")
        ),
    }
}

async fn deploy(
    env: &str,
    image: &str,
    commit: Option<&str>,
    by: Option<String>,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let config = load(env, file)?;
    let report = policy::check_template(&synth(&config)?, &config);
    eprintln!("{report}");
    if report.blocks_deploy() {
        bail!("policy check failed: nothing deployed");
    }
    let plane = plane(file.map(|f| (env, f))).await?;
    let mut events = plane.subscribe();
    eprintln!("stack: computing a change set for {}…", config.stack.name);
    let release = ops::deploy(&plane, env, image, commit, &actor(by), false).await?;
    let done = follow(&plane, &mut events, &release.id).await?;
    if let Ok(Some(status)) = plane.deployer(plane.env(env)?).await.status().await {
        eprintln!("stack: {}", status.status);
    }
    finished(&done)
}
