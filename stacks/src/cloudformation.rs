//! Previewing and applying a synthesized template with CloudFormation change sets.
//!
//! Nothing is deployed without a change set: `diff` creates one, describes it and
//! deletes it; `deploy` creates one, executes it and follows the stack until it
//! settles. Everything read back comes from `DescribeStacks`,
//! `DescribeStackEvents` and `DescribeStackResources`, which every CloudFormation
//! (and its emulators) implements; where a stack made through change sets reports no
//! outputs, [`Deployer::outputs`] derives them from the stack's resources.

use crate::diff;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_cloudformation::types::{
    Capability, ChangeAction, ChangeSetStatus, ChangeSetType, Parameter, Replacement,
    RollbackConfiguration, RollbackTrigger,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

mod reads;

pub use crate::changes::{
    ChangeSet, Preview, ResourceChange, StackEvent, StackResource, StackStatus, changes_table,
};

/// The template parameter that carries the container image of every task.
pub use crate::stack::IMAGE_PARAMETER;

/// A CloudFormation failure, with the text AWS gave.
#[derive(Debug, thiserror::Error)]
pub enum CfnError {
    #[error("CloudFormation {action}: {message}")]
    Call {
        action: &'static str,
        message: String,
    },
    #[error("the change set failed: {0}")]
    ChangeSetFailed(String),
    #[error("stack `{0}` does not exist")]
    NoStack(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
}

fn call<E>(action: &'static str) -> impl FnOnce(SdkError<E>) -> CfnError
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| {
        let message = match e.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or_default()
            ),
            None => aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string(),
        };
        CfnError::Call { action, message }
    }
}

/// Whether a call failed because the stack does not exist.
fn stack_missing<E: aws_sdk_cloudformation::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error()
        .and_then(|s| s.message())
        .is_some_and(|m| m.contains("does not exist"))
}

/// The alarms CloudFormation watches while it updates the stack and for
/// `monitoring_minutes` after: if one fires, it rolls the update back itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackTriggers {
    /// Alarm names in the stack's account and region.
    pub alarm_names: Vec<String>,
    pub monitoring_minutes: u32,
}

/// The rollback configuration of an update of the stack `stack_arn`: its alarms by ARN
/// (same partition, region and account as the stack). `None` when the ARN is not one
/// (a stack being created has none yet, and its alarms do not exist before it does).
pub fn rollback_configuration(
    stack_arn: &str,
    triggers: &RollbackTriggers,
) -> Option<RollbackConfiguration> {
    let mut parts = stack_arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("cloudformation"), Some(region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let mut config = RollbackConfiguration::builder()
        .monitoring_time_in_minutes(i32::try_from(triggers.monitoring_minutes).unwrap_or(180));
    for name in &triggers.alarm_names {
        config = config.rollback_triggers(
            RollbackTrigger::builder()
                .arn(format!(
                    "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}"
                ))
                .r#type("AWS::CloudWatch::Alarm")
                .build(),
        );
    }
    Some(config.build())
}

/// Drives one named stack.
#[derive(Debug, Clone)]
pub struct Deployer {
    client: Client,
    stack: String,
    /// How often to poll while waiting.
    pub poll: Duration,
    /// How long to wait for a change set or a stack operation.
    pub timeout: Duration,
    /// The alarms every update of an existing stack passes as rollback triggers.
    pub rollback: Option<RollbackTriggers>,
}

impl Deployer {
    pub fn new(sdk: &aws_config::SdkConfig, stack: &str) -> Self {
        Self {
            client: Client::new(sdk),
            stack: stack.to_owned(),
            poll: Duration::from_secs(2),
            timeout: Duration::from_secs(3600),
            rollback: None,
        }
    }

    pub fn stack_name(&self) -> &str {
        &self.stack
    }

    /// The stack's status, or `None` if it does not exist (or only a change set was
    /// ever made for it and never executed).
    pub async fn status(&self) -> Result<Option<StackStatus>, CfnError> {
        let out = match self
            .client
            .describe_stacks()
            .stack_name(&self.stack)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if stack_missing(&e) => {
                return Ok(None);
            }
            Err(e) => return Err(call("DescribeStacks")(e)),
        };
        let Some(stack) = out.stacks().first() else {
            return Ok(None);
        };
        let status = stack
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if status == "REVIEW_IN_PROGRESS" || status == "DELETE_COMPLETE" {
            return Ok(None);
        }
        Ok(Some(StackStatus {
            name: self.stack.clone(),
            id: stack.stack_id().unwrap_or_default().to_owned(),
            status,
            reason: stack.stack_status_reason().unwrap_or_default().to_owned(),
            image: stack
                .parameters()
                .iter()
                .find(|p| p.parameter_key() == Some(IMAGE_PARAMETER))
                .and_then(|p| p.parameter_value().map(ToOwned::to_owned)),
        }))
    }

    /// Creates a change set for `template` with `image`, waits until CloudFormation has
    /// computed it, and returns its changes. A template identical to the deployed one
    /// gives a change set with no changes (which is deleted here).
    pub async fn create_change_set(
        &self,
        template: &str,
        image: &str,
        name: &str,
    ) -> Result<ChangeSet, CfnError> {
        let status = self.status().await?;
        let creates_stack = status.is_none();
        let rollback = status
            .as_ref()
            .zip(self.rollback.as_ref())
            .and_then(|(s, t)| rollback_configuration(&s.id, t));
        let out = self
            .client
            .create_change_set()
            .set_rollback_configuration(rollback)
            .stack_name(&self.stack)
            .change_set_name(name)
            .change_set_type(if creates_stack {
                ChangeSetType::Create
            } else {
                ChangeSetType::Update
            })
            .template_body(template)
            .parameters(
                Parameter::builder()
                    .parameter_key(IMAGE_PARAMETER)
                    .parameter_value(image)
                    .build(),
            )
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // Some CloudFormations refuse an identical template at once.
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.message())
                    .is_some_and(|m| m.contains("No updates are to be performed")) =>
            {
                return Ok(ChangeSet {
                    id: String::new(),
                    creates_stack,
                    changes: Vec::new(),
                });
            }
            Err(e) => return Err(call("CreateChangeSet")(e)),
        };
        let id = out.id().unwrap_or(name).to_owned();
        let started = tokio::time::Instant::now();
        loop {
            let described = self
                .client
                .describe_change_set()
                .stack_name(&self.stack)
                .change_set_name(&id)
                .send()
                .await
                .map_err(call("DescribeChangeSet"))?;
            match described.status() {
                Some(ChangeSetStatus::CreateComplete) => {
                    let changes = self.all_changes(&id).await?;
                    return Ok(ChangeSet {
                        id,
                        creates_stack,
                        changes,
                    });
                }
                Some(ChangeSetStatus::Failed) => {
                    let reason = described.status_reason().unwrap_or_default().to_owned();
                    if reason.contains("didn't contain changes") || reason.contains("No updates") {
                        self.delete_change_set(&id).await.ok();
                        // No id: the change set is gone, and nothing can execute it.
                        return Ok(ChangeSet {
                            id: String::new(),
                            creates_stack,
                            changes: Vec::new(),
                        });
                    }
                    return Err(CfnError::ChangeSetFailed(reason));
                }
                _ => {}
            }
            if started.elapsed() > self.timeout {
                return Err(CfnError::Timeout(self.timeout, "the change set"));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn all_changes(&self, id: &str) -> Result<Vec<ResourceChange>, CfnError> {
        let mut changes = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_change_set()
                .stack_name(&self.stack)
                .change_set_name(id)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(call("DescribeChangeSet"))?;
            for change in out.changes() {
                let Some(rc) = change.resource_change() else {
                    continue;
                };
                changes.push(ResourceChange {
                    action: rc
                        .action()
                        .map(ChangeAction::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    logical_id: rc.logical_resource_id().unwrap_or_default().to_owned(),
                    resource_type: rc.resource_type().unwrap_or_default().to_owned(),
                    replacement: rc
                        .replacement()
                        .map(Replacement::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        changes.sort();
        Ok(changes)
    }

    pub async fn delete_change_set(&self, id: &str) -> Result<(), CfnError> {
        self.client
            .delete_change_set()
            .stack_name(&self.stack)
            .change_set_name(id)
            .send()
            .await
            .map_err(call("DeleteChangeSet"))?;
        Ok(())
    }

    /// The deployed template and its parameter values, if the stack exists.
    pub async fn deployed(&self) -> Result<Option<(Value, BTreeMap<String, String>)>, CfnError> {
        let Some(status) = self.status().await? else {
            return Ok(None);
        };
        let out = self
            .client
            .get_template()
            .stack_name(&self.stack)
            .send()
            .await
            .map_err(call("GetTemplate"))?;
        let template: Value =
            serde_json::from_str(out.template_body().unwrap_or("{}")).map_err(|e| {
                CfnError::Call {
                    action: "GetTemplate",
                    message: format!("the deployed template is not JSON: {e}"),
                }
            })?;
        let mut parameters = BTreeMap::new();
        if let Some(image) = status.image {
            parameters.insert(IMAGE_PARAMETER.to_owned(), image);
        }
        Ok(Some((template, parameters)))
    }

    /// Creates the change set that deploys `template` with `image`, and works out
    /// which resources it really changes (see [`crate::diff`]): the rows to show. Rows
    /// CloudFormation lists without a change in the templates are left out and
    /// counted in [`Preview::unchanged_listed`].
    pub async fn preview(
        &self,
        template: &str,
        image: &str,
        name: &str,
    ) -> Result<Preview, CfnError> {
        let (rows, new) = self.rows_and_template(template, image).await?;
        // Sent compact: CloudFormation takes at most 51,200 bytes inline, and the
        // pretty template of production is larger.
        let compact = serde_json::to_string(&new).map_err(|e| CfnError::Call {
            action: "CreateChangeSet",
            message: format!("serializing the template: {e}"),
        })?;
        let mut change_set = self.create_change_set(&compact, image, name).await?;
        if change_set.id.is_empty() && !rows.is_empty() {
            // The endpoint found no change where the deployed template and parameters
            // show one. moto does this when a stack returns to the parameter values it
            // was created with: `ExecuteChangeSet` never updates the `parameters` that
            // `CreateChangeSet` compares against (only `UpdateStack` does), so the
            // creation-time image counts as deployed forever. The same template with a
            // marked description is a different template to it, and CloudFormation
            // deploys the same resources from it.
            let mut marked = new.clone();
            if let Some(t) = marked.as_object_mut() {
                let description = t
                    .get("Description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                t.insert(
                    "Description".to_owned(),
                    Value::String(
                        format!("{description} (re-sent with {image})")
                            .trim()
                            .to_owned(),
                    ),
                );
            }
            let compact = serde_json::to_string(&marked).map_err(|e| CfnError::Call {
                action: "CreateChangeSet",
                message: format!("serializing the template: {e}"),
            })?;
            change_set = self.create_change_set(&compact, image, name).await?;
        }
        let unchanged_listed = change_set
            .changes
            .iter()
            .filter(|c| !rows.iter().any(|r| r.logical_id == c.logical_id))
            .count();
        Ok(Preview {
            change_set,
            rows,
            unchanged_listed,
        })
    }

    /// The rows [`Deployer::preview`] shows, worked out from the deployed template
    /// alone, without making a change set: what re-checks a reviewed diff.
    pub async fn rows(&self, template: &str, image: &str) -> Result<Vec<ResourceChange>, CfnError> {
        Ok(self.rows_and_template(template, image).await?.0)
    }

    async fn rows_and_template(
        &self,
        template: &str,
        image: &str,
    ) -> Result<(Vec<ResourceChange>, Value), CfnError> {
        let (old, old_parameters) = self
            .deployed()
            .await?
            .unwrap_or_else(|| (Value::Object(Default::default()), BTreeMap::new()));
        let new: Value = serde_json::from_str(template).map_err(|e| CfnError::Call {
            action: "CreateChangeSet",
            message: format!("the template is not JSON: {e}"),
        })?;
        let new_parameters = BTreeMap::from([(IMAGE_PARAMETER.to_owned(), image.to_owned())]);
        let ours = diff::changes(&old, &old_parameters, &new, &new_parameters);
        let type_in = |t: &Value, id: &str| {
            t.get("Resources")
                .and_then(|r| r.get(id))
                .and_then(|r| r.get("Type"))
                .and_then(Value::as_str)
                .map(ToOwned::to_owned)
        };
        let rows: Vec<ResourceChange> = ours
            .iter()
            .map(|(id, change)| {
                let (action, replacement) = match change {
                    diff::Change::Add => ("Add", ""),
                    diff::Change::Remove => ("Remove", ""),
                    diff::Change::Modify { replaces: true } => ("Modify", "True"),
                    diff::Change::Modify { replaces: false } => ("Modify", "False"),
                };
                ResourceChange {
                    action: action.to_owned(),
                    logical_id: id.clone(),
                    resource_type: type_in(&new, id)
                        .or_else(|| type_in(&old, id))
                        .unwrap_or_default(),
                    replacement: replacement.to_owned(),
                }
            })
            .collect();
        Ok((rows, new))
    }

    /// Executes a change set and follows the stack until it settles, calling
    /// `on_event` for each new stack event. Returns the final stack status.
    pub async fn execute(
        &self,
        change_set_id: &str,
        on_event: impl FnMut(&StackEvent),
    ) -> Result<String, CfnError> {
        let seen = self.event_ids().await?;
        self.client
            .execute_change_set()
            .stack_name(&self.stack)
            .change_set_name(change_set_id)
            .send()
            .await
            .map_err(call("ExecuteChangeSet"))?;
        self.follow(seen, on_event).await
    }

    /// Follows the stack from now until it settles, without starting anything: what a
    /// restarted control plane does with a deployment it had already executed.
    pub async fn follow_to_end(
        &self,
        on_event: impl FnMut(&StackEvent),
    ) -> Result<String, CfnError> {
        let seen = self.event_ids().await?;
        self.follow(seen, on_event).await
    }

    /// A change set's status and execution status (`CREATE_COMPLETE`, `AVAILABLE`,
    /// `EXECUTE_COMPLETE`, ...), or `None` when CloudFormation no longer has it.
    pub async fn change_set_state(&self, id: &str) -> Result<Option<(String, String)>, CfnError> {
        match self
            .client
            .describe_change_set()
            .stack_name(&self.stack)
            .change_set_name(id)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                out.execution_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            ))),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.code() == Some("ChangeSetNotFound")
                        || s.message().is_some_and(|m| m.contains("does not exist"))
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(call("DescribeChangeSet")(e)),
        }
    }

    /// Deletes the stack and follows it until it is gone.
    pub async fn destroy(&self, on_event: impl FnMut(&StackEvent)) -> Result<String, CfnError> {
        if self.status().await?.is_none() {
            return Err(CfnError::NoStack(self.stack.clone()));
        }
        let seen = self.event_ids().await?;
        self.client
            .delete_stack()
            .stack_name(&self.stack)
            .send()
            .await
            .map_err(call("DeleteStack"))?;
        self.follow(seen, on_event).await
    }

    async fn event_ids(&self) -> Result<HashSet<String>, CfnError> {
        Ok(self.events().await?.into_iter().map(|(id, _)| id).collect())
    }

    async fn follow(
        &self,
        mut seen: HashSet<String>,
        mut on_event: impl FnMut(&StackEvent),
    ) -> Result<String, CfnError> {
        let started = tokio::time::Instant::now();
        loop {
            for (id, event) in self.events().await? {
                if seen.insert(id) {
                    on_event(&event);
                }
            }
            let status = match self.status().await? {
                None => return Ok("DELETE_COMPLETE".to_owned()),
                Some(s) => s.status,
            };
            if !status.ends_with("_IN_PROGRESS") {
                return Ok(status);
            }
            if started.elapsed() > self.timeout {
                return Err(CfnError::Timeout(self.timeout, "the stack"));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
