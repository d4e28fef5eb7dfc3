//! The control plane's view of one environment's CloudFormation stack, as a trait: the
//! real implementation drives `quarry_stacks::cloudformation::Deployer` through the
//! SDK; a test injects one whose update fails (an emulator cannot make one fail).

use async_trait::async_trait;
use quarry_stacks::cloudformation::{
    self, CfnError, Preview, ResourceChange, StackEvent, StackResource, StackStatus,
};
use std::collections::BTreeMap;

/// What is called for each new stack event while a stack changes.
pub type OnEvent<'a> = &'a (dyn Fn(&StackEvent) + Send + Sync);

/// One environment's stack.
#[async_trait]
pub trait Deployer: Send + Sync + std::fmt::Debug {
    /// Creates a change set for `template` with `image` and returns what it changes.
    async fn preview(&self, template: &str, image: &str, name: &str) -> Result<Preview, CfnError>;
    /// The rows `preview` would show, without making a change set.
    async fn rows(&self, template: &str, image: &str) -> Result<Vec<ResourceChange>, CfnError>;
    async fn delete_change_set(&self, id: &str) -> Result<(), CfnError>;
    /// Executes a change set and follows the stack until it settles; the final status.
    async fn execute(&self, change_set_id: &str, on_event: OnEvent<'_>)
    -> Result<String, CfnError>;
    /// A change set's (status, execution status), `None` when it is gone.
    async fn change_set_state(&self, id: &str) -> Result<Option<(String, String)>, CfnError>;
    /// Follows the stack until it settles, starting nothing; the final status.
    async fn follow(&self, on_event: OnEvent<'_>) -> Result<String, CfnError>;
    /// The `*_FAILED` events of the last operation: which resources failed, and why.
    async fn failures(&self) -> Result<Vec<StackEvent>, CfnError>;
    async fn status(&self) -> Result<Option<StackStatus>, CfnError>;
    async fn resources(&self) -> Result<Vec<StackResource>, CfnError>;
    async fn outputs(&self) -> Result<BTreeMap<String, String>, CfnError>;
    async fn recent_events(&self, limit: usize) -> Result<Vec<StackEvent>, CfnError>;
    /// `in_sync`, `drifted`, `unknown` or `unsupported`.
    async fn drift(&self) -> Result<String, CfnError>;
}

/// The real stack, through the SDK.
#[derive(Debug)]
pub struct CfnDeployer(pub cloudformation::Deployer);

#[async_trait]
impl Deployer for CfnDeployer {
    async fn preview(&self, template: &str, image: &str, name: &str) -> Result<Preview, CfnError> {
        self.0.preview(template, image, name).await
    }
    async fn rows(&self, template: &str, image: &str) -> Result<Vec<ResourceChange>, CfnError> {
        self.0.rows(template, image).await
    }
    async fn delete_change_set(&self, id: &str) -> Result<(), CfnError> {
        self.0.delete_change_set(id).await
    }
    async fn execute(
        &self,
        change_set_id: &str,
        on_event: OnEvent<'_>,
    ) -> Result<String, CfnError> {
        self.0.execute(change_set_id, |e| on_event(e)).await
    }
    async fn change_set_state(&self, id: &str) -> Result<Option<(String, String)>, CfnError> {
        self.0.change_set_state(id).await
    }
    async fn follow(&self, on_event: OnEvent<'_>) -> Result<String, CfnError> {
        self.0.follow_to_end(|e| on_event(e)).await
    }
    async fn failures(&self) -> Result<Vec<StackEvent>, CfnError> {
        self.0.failures().await
    }
    async fn status(&self) -> Result<Option<StackStatus>, CfnError> {
        self.0.status().await
    }
    async fn resources(&self) -> Result<Vec<StackResource>, CfnError> {
        self.0.resources().await
    }
    async fn outputs(&self) -> Result<BTreeMap<String, String>, CfnError> {
        self.0.outputs().await
    }
    async fn recent_events(&self, limit: usize) -> Result<Vec<StackEvent>, CfnError> {
        self.0.recent_events(limit).await
    }
    async fn drift(&self) -> Result<String, CfnError> {
        self.0.drift().await
    }
}
