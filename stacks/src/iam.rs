//! IAM building blocks: policy statements, documents and roles for ECS tasks.
//!
//! Roles are least-privilege by construction: a statement names its actions and its
//! resources explicitly; `"*"` as a resource is only used with a condition, where the
//! action cannot be scoped by ARN (CloudWatch metrics).

use crate::intrinsic::sub;
use crate::resource::Resource;
use serde_json::{Value, json};

/// One `Allow` statement of a policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// A short id shown in IAM's console and in access-denied messages.
    pub sid: String,
    /// The actions, `service:Action`.
    pub actions: Vec<String>,
    /// The resources (ARNs, usually intrinsic functions).
    pub resources: Vec<Value>,
    /// An optional `Condition` block.
    pub condition: Option<Value>,
}

impl Statement {
    /// Allows `actions` on `resources`.
    pub fn allow(sid: &str, actions: &[&str], resources: Vec<Value>) -> Self {
        Self {
            sid: sid.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            resources,
            condition: None,
        }
    }

    /// Adds a `Condition` block.
    #[must_use]
    pub fn when(mut self, condition: Value) -> Self {
        self.condition = Some(condition);
        self
    }

    /// The statement as IAM's JSON.
    pub fn to_value(&self) -> Value {
        let mut s = json!({
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": self.actions,
            "Resource": self.resources,
        });
        if let Some(condition) = &self.condition {
            s["Condition"] = condition.clone();
        }
        s
    }
}

/// A policy document (`Version` 2012-10-17) of `statements`.
pub fn document(statements: &[Statement]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements.iter().map(Statement::to_value).collect::<Vec<_>>(),
    })
}

/// The trust policy letting ECS tasks of this account assume a role (with
/// `aws:SourceAccount` against the confused-deputy problem).
pub fn ecs_tasks_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "ecs-tasks.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": { "Ref": "AWS::AccountId" } } },
        }],
    })
}

/// The ARN of an AWS managed policy, in the stack's partition.
pub fn aws_managed_policy(path_and_name: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:iam::aws:policy/{path_and_name}"
    ))
}

/// An `AWS::IAM::Role` for ECS tasks with managed policies and one inline policy
/// (left out when it has no statements).
pub fn task_role(
    description: &str,
    managed: Vec<Value>,
    policy_name: &str,
    statements: &[Statement],
) -> Resource {
    let mut props = json!({
        "Description": description,
        "AssumeRolePolicyDocument": ecs_tasks_trust(),
    });
    if !managed.is_empty() {
        props["ManagedPolicyArns"] = Value::Array(managed);
    }
    if !statements.is_empty() {
        props["Policies"] = json!([{
            "PolicyName": policy_name,
            "PolicyDocument": document(statements),
        }]);
    }
    Resource::new("AWS::IAM::Role", props)
}

/// The only way to scope `cloudwatch:PutMetricData`: a condition on the namespace.
pub fn put_metrics_in(namespace: &str) -> Statement {
    Statement::allow(
        "PutMetrics",
        &["cloudwatch:PutMetricData"],
        vec![json!("*")],
    )
    .when(json!({ "StringEquals": { "cloudwatch:namespace": namespace } }))
}
