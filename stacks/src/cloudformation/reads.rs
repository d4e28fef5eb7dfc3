//! What the driver reads back from a stack: its events, resources, outputs, the
//! failures of its last operation and its drift.

use super::{CfnError, Deployer, StackEvent, StackResource, call, stack_missing};
use std::collections::BTreeMap;
use std::time::Duration;

impl Deployer {
    /// The stack's newest `limit` events, newest first.
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<StackEvent>, CfnError> {
        let mut events: Vec<StackEvent> =
            self.events().await?.into_iter().map(|(_, e)| e).collect();
        events.reverse();
        events.truncate(limit);
        Ok(events)
    }

    /// Whether the deployed resources still match the template: `in_sync`, `drifted`,
    /// or `unsupported` where the endpoint cannot detect drift (emulators).
    pub async fn drift(&self) -> Result<String, CfnError> {
        let started = match self
            .client
            .detect_stack_drift()
            .stack_name(&self.stack)
            .send()
            .await
        {
            Ok(out) => out,
            Err(_) => return Ok("unsupported".to_owned()),
        };
        let Some(id) = started.stack_drift_detection_id() else {
            return Ok("unsupported".to_owned());
        };
        let begun = tokio::time::Instant::now();
        loop {
            let out = match self
                .client
                .describe_stack_drift_detection_status()
                .stack_drift_detection_id(id)
                .send()
                .await
            {
                Ok(out) => out,
                Err(_) => return Ok("unsupported".to_owned()),
            };
            let detection = out
                .detection_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if detection != "DETECTION_IN_PROGRESS" {
                return Ok(match out.stack_drift_status().map(|s| s.as_str()) {
                    Some("IN_SYNC") => "in_sync",
                    Some("DRIFTED") => "drifted",
                    _ => "unknown",
                }
                .to_owned());
            }
            if begun.elapsed() > Duration::from_secs(60) {
                return Ok("unknown".to_owned());
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The stack's events, oldest first, with their ids.
    pub(super) async fn events(&self) -> Result<Vec<(String, StackEvent)>, CfnError> {
        let out = match self
            .client
            .describe_stack_events()
            .stack_name(&self.stack)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if stack_missing(&e) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(call("DescribeStackEvents")(e)),
        };
        let mut events: Vec<(String, StackEvent)> = out
            .stack_events()
            .iter()
            .map(|e| {
                (
                    e.event_id().unwrap_or_default().to_owned(),
                    StackEvent {
                        at: e
                            .timestamp()
                            .and_then(|t| {
                                t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
                                    .ok()
                            })
                            .unwrap_or_default(),
                        logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
                        resource_type: e.resource_type().unwrap_or_default().to_owned(),
                        status: e
                            .resource_status()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        reason: e.resource_status_reason().unwrap_or_default().to_owned(),
                    },
                )
            })
            .collect();
        events.reverse();
        Ok(events)
    }

    /// Why resources failed in the last operation: every `*_FAILED` event's reason.
    pub async fn failures(&self) -> Result<Vec<StackEvent>, CfnError> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.status.ends_with("_FAILED"))
            .collect())
    }

    /// The stack's resources, by logical id.
    pub async fn resources(&self) -> Result<Vec<StackResource>, CfnError> {
        let out = self
            .client
            .describe_stack_resources()
            .stack_name(&self.stack)
            .send()
            .await
            .map_err(call("DescribeStackResources"))?;
        let mut resources: Vec<StackResource> = out
            .stack_resources()
            .iter()
            .map(|r| StackResource {
                logical_id: r.logical_resource_id().unwrap_or_default().to_owned(),
                physical_id: r.physical_resource_id().unwrap_or_default().to_owned(),
                resource_type: r.resource_type().unwrap_or_default().to_owned(),
                status: r
                    .resource_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect();
        resources.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(resources)
    }

    /// The stack's outputs. Where CloudFormation reports none (emulators do not for
    /// stacks made through change sets), each resource's physical id is given under
    /// its logical id instead, which names the same things.
    pub async fn outputs(&self) -> Result<BTreeMap<String, String>, CfnError> {
        let out = self
            .client
            .describe_stacks()
            .stack_name(&self.stack)
            .send()
            .await
            .map_err(call("DescribeStacks"))?;
        let outputs: BTreeMap<String, String> = out
            .stacks()
            .first()
            .map(|s| {
                s.outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((
                            o.output_key()?.to_owned(),
                            o.output_value().unwrap_or_default().to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !outputs.is_empty() {
            return Ok(outputs);
        }
        Ok(self
            .resources()
            .await?
            .into_iter()
            .filter(|r| !r.logical_id.is_empty() && !r.physical_id.is_empty())
            .map(|r| (r.logical_id, r.physical_id))
            .collect())
    }
}
