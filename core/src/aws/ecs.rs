//! The fleet on Amazon ECS: each worker is a Fargate task.
//!
//! * `launch` calls `RunTask` (at most [`MAX_PER_CALL`] tasks per call) with a
//!   capacity-provider strategy: the first `on_demand_base` workers run on `FARGATE`,
//!   the rest on `FARGATE_SPOT` (or split by `spot_share`). When Spot has no capacity,
//!   the same workers are launched on-demand instead.
//! * Every task carries `startedBy` (one value per environment), so `counts` finds the
//!   orchestrator's workers with `ListTasks` and tells running from starting with
//!   `DescribeTasks`.
//! * There is no way to stop a task here, on purpose: workers stop themselves.

use super::internal;
use crate::config::EcsConfig;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::fleet::PATIENT_UNTIL_ENV;
use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, DesiredStatus,
    NetworkConfiguration, Tag,
};
use quarry_domain::FleetCounts;

/// ECS accepts at most this many tasks per `RunTask`.
pub const MAX_PER_CALL: u64 = 10;
/// The on-demand Fargate capacity provider.
pub const ON_DEMAND: &str = "FARGATE";
/// The Spot Fargate capacity provider.
pub const SPOT: &str = "FARGATE_SPOT";

/// Where a group of workers should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// `FARGATE` only.
    OnDemand,
    /// `FARGATE_SPOT` with weight `spot_share`, `FARGATE` with the remainder.
    Spot { spot_share: u32 },
}

impl Capacity {
    /// The strategy items for `RunTask`, weights only (`base` is a per-call notion in
    /// RunTask, so the base is planned here instead, across calls).
    pub fn strategy(self) -> Vec<(&'static str, i32)> {
        match self {
            Capacity::OnDemand | Capacity::Spot { spot_share: 0 } => vec![(ON_DEMAND, 1)],
            Capacity::Spot { spot_share } if spot_share >= 100 => vec![(SPOT, 1)],
            Capacity::Spot { spot_share } => vec![
                (SPOT, i32::try_from(spot_share).unwrap_or(100)),
                (ON_DEMAND, i32::try_from(100 - spot_share).unwrap_or(0)),
            ],
        }
    }
}

/// How to launch `n` more workers when `on_demand_running` of the fleet already run
/// on-demand: groups of at most [`MAX_PER_CALL`], the on-demand base first.
pub fn plan_launch(
    n: u64,
    on_demand_running: u64,
    base: u64,
    spot_share: u32,
) -> Vec<(u64, Capacity)> {
    let on_demand = base.saturating_sub(on_demand_running).min(n);
    let mut groups = Vec::new();
    for (mut count, capacity) in [
        (on_demand, Capacity::OnDemand),
        (n - on_demand, Capacity::Spot { spot_share }),
    ] {
        while count > 0 {
            let batch = count.min(MAX_PER_CALL);
            groups.push((batch, capacity));
            count -= batch;
        }
    }
    groups
}

/// Whether a `RunTask` failure reason (or error message) says Spot had no capacity.
pub fn is_capacity_failure(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.contains("capacity") || reason.contains("spot")
}

/// Workers as ECS tasks of one cluster and task definition.
#[derive(Debug, Clone)]
pub struct EcsFleet {
    client: Client,
    config: EcsConfig,
    started_by: String,
}

impl EcsFleet {
    /// `environment` names the fleet: it is the `startedBy` of its tasks.
    pub fn new(sdk: &aws_config::SdkConfig, config: EcsConfig, environment: &str) -> Self {
        Self {
            client: Client::new(sdk),
            config,
            started_by: started_by(environment),
        }
    }

    fn network(&self) -> Result<NetworkConfiguration> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.config.subnets.clone()))
            .set_security_groups(Some(self.config.security_groups.clone()))
            .assign_public_ip(if self.config.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| internal("building the network configuration", e))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }

    /// Runs `count` tasks with `capacity`; returns the task ARNs started and how many
    /// failed for lack of Spot capacity.
    async fn run_tasks(
        &self,
        count: u64,
        capacity: Capacity,
        env: &[(&str, String)],
    ) -> Result<(Vec<String>, u64)> {
        let strategy = capacity
            .strategy()
            .into_iter()
            .map(|(provider, weight)| {
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(provider)
                    .weight(weight)
                    .build()
                    .map_err(|e| internal("building a capacity-provider strategy", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let sent = self
            .client
            .run_task()
            .cluster(&self.config.cluster)
            .task_definition(&self.config.task_definition)
            .count(i32::try_from(count).unwrap_or(10))
            .set_capacity_provider_strategy(Some(strategy))
            .network_configuration(self.network()?)
            .started_by(&self.started_by)
            .tags(Tag::builder().key("quarry:role").value("worker").build())
            .set_overrides(overrides(env))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                let message = e
                    .as_service_error()
                    .and_then(aws_sdk_ecs::error::ProvideErrorMetadata::message)
                    .unwrap_or_default()
                    .to_owned();
                if matches!(capacity, Capacity::Spot { .. }) && is_capacity_failure(&message) {
                    return Ok((Vec::new(), count));
                }
                return Err(internal("launching workers with RunTask", e));
            }
        };
        let arns: Vec<String> = out
            .tasks()
            .iter()
            .filter_map(|t| t.task_arn.clone())
            .collect();
        let mut capacity_failures = 0;
        for failure in out.failures() {
            let reason = failure.reason().unwrap_or_default();
            if matches!(capacity, Capacity::Spot { .. }) && is_capacity_failure(reason) {
                capacity_failures += 1;
            } else {
                tracing::error!(reason, detail = ?failure.detail(), "RunTask could not start a worker");
            }
        }
        Ok((arns, capacity_failures))
    }

    /// The fleet's tasks that ECS means to keep running, with their status and
    /// capacity provider.
    async fn tasks(&self) -> Result<Vec<(String, String)>> {
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tasks()
                .cluster(&self.config.cluster)
                .started_by(&self.started_by)
                .desired_status(DesiredStatus::Running)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| internal("listing workers with ListTasks", e))?;
            arns.extend(out.task_arns().iter().cloned());
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.config.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| internal("describing workers with DescribeTasks", e))?;
            for task in out.tasks() {
                tasks.push((
                    task.last_status().unwrap_or("PROVISIONING").to_owned(),
                    task.capacity_provider_name()
                        .unwrap_or(ON_DEMAND)
                        .to_owned(),
                ));
            }
        }
        Ok(tasks)
    }
}

/// The `startedBy` of an environment's workers (ECS allows 36 characters).
pub fn started_by(environment: &str) -> String {
    let mut value = format!("quarry-{environment}");
    value.truncate(36);
    value
}

impl EcsFleet {
    /// Launches `n` workers with `env` set on their container.
    async fn launch_with(&self, n: u64, env: &[(&str, String)]) -> Result<Vec<String>> {
        let on_demand_running = self
            .tasks()
            .await?
            .iter()
            .filter(|(_, provider)| provider == ON_DEMAND)
            .count() as u64;
        let mut launched = Vec::new();
        for (count, capacity) in plan_launch(
            n,
            on_demand_running,
            u64::from(self.config.on_demand_base),
            self.config.spot_share,
        ) {
            let (arns, no_spot) = self.run_tasks(count, capacity, env).await?;
            launched.extend(arns);
            if no_spot > 0 {
                tracing::warn!(
                    workers = no_spot,
                    "no Spot capacity: launching on-demand instead"
                );
                let (arns, _) = self.run_tasks(no_spot, Capacity::OnDemand, env).await?;
                launched.extend(arns);
            }
        }
        if launched.is_empty() && n > 0 {
            return Err(Error::Internal(anyhow::anyhow!(
                "RunTask started none of the {n} workers asked for"
            )));
        }
        for arn in &launched {
            tracing::info!(task_arn = %arn, "worker task launched");
        }
        Ok(launched)
    }
}

/// The container of the worker task definition (`quarry-stacks`' worker fleet).
pub const WORKER_CONTAINER: &str = "worker";

/// Environment for the worker container of the tasks a RunTask starts; `None` without.
fn overrides(env: &[(&str, String)]) -> Option<aws_sdk_ecs::types::TaskOverride> {
    use aws_sdk_ecs::types::{ContainerOverride, KeyValuePair, TaskOverride};
    if env.is_empty() {
        return None;
    }
    let container = env.iter().fold(
        ContainerOverride::builder().name(WORKER_CONTAINER),
        |c, (name, value)| c.environment(KeyValuePair::builder().name(*name).value(value).build()),
    );
    Some(
        TaskOverride::builder()
            .container_overrides(container.build())
            .build(),
    )
}

#[async_trait]
impl Fleet for EcsFleet {
    async fn launch(&self, n: u64) -> Result<Vec<String>> {
        self.launch_with(n, &[]).await
    }

    async fn launch_patient(&self, n: u64, until_ms: i64) -> Result<Vec<String>> {
        self.launch_with(n, &[(PATIENT_UNTIL_ENV, until_ms.to_string())])
            .await
    }

    async fn counts(&self) -> Result<FleetCounts> {
        let mut counts = FleetCounts {
            running: 0,
            starting: 0,
        };
        for (status, _) in self.tasks().await? {
            match status.as_str() {
                "RUNNING" => counts.running += 1,
                "PROVISIONING" | "PENDING" | "ACTIVATING" => counts.starting += 1,
                _ => {} // stopping: on its way out, it takes no more work
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_on_demand_base_comes_first_then_spot_in_calls_of_ten() {
        assert_eq!(
            plan_launch(23, 0, 2, 100),
            vec![
                (2, Capacity::OnDemand),
                (10, Capacity::Spot { spot_share: 100 }),
                (10, Capacity::Spot { spot_share: 100 }),
                (1, Capacity::Spot { spot_share: 100 }),
            ]
        );
        // The base is already running on-demand: everything goes to Spot.
        assert_eq!(
            plan_launch(3, 2, 2, 100),
            vec![(3, Capacity::Spot { spot_share: 100 })]
        );
        // Fewer workers than the base: all on-demand.
        assert_eq!(plan_launch(1, 0, 4, 100), vec![(1, Capacity::OnDemand)]);
        assert!(plan_launch(0, 0, 4, 100).is_empty());
    }

    #[test]
    fn spot_share_splits_the_weights() {
        assert_eq!(
            Capacity::Spot { spot_share: 100 }.strategy(),
            vec![(SPOT, 1)]
        );
        assert_eq!(
            Capacity::Spot { spot_share: 0 }.strategy(),
            vec![(ON_DEMAND, 1)]
        );
        assert_eq!(
            Capacity::Spot { spot_share: 75 }.strategy(),
            vec![(SPOT, 75), (ON_DEMAND, 25)]
        );
        assert_eq!(Capacity::OnDemand.strategy(), vec![(ON_DEMAND, 1)]);
    }

    #[test]
    fn capacity_failures_are_recognised() {
        assert!(is_capacity_failure("Capacity is unavailable at this time"));
        assert!(is_capacity_failure("SPOT capacity not available"));
        assert!(!is_capacity_failure("MISSING"));
    }

    #[test]
    fn started_by_fits_ecs() {
        assert_eq!(started_by("staging"), "quarry-staging");
        assert_eq!(started_by(&"x".repeat(80)).len(), 36);
    }
}
