//! The API service: `quarry serve` on Fargate behind an internet-facing Application
//! Load Balancer.
//!
//! * `LoadBalancer` in the public subnets, with `LoadBalancerSecurityGroup`: port 80
//!   (and 443 with a certificate) from anywhere, out only to the API tasks' port;
//! * `ApiTargetGroup`: the tasks' IPs on port 3000, healthy when `GET /healthz` says
//!   200;
//! * `HttpListener` on 80 forwarding to the target group, or, with a certificate,
//!   redirecting to `HttpsListener` on 443;
//! * the API task (see [`super::fargate`], logical ids `Api…`), whose security group
//!   admits port 3000 from the load balancer only (`ApiSecurityGroupIngressFromLoadBalancer`);
//! * `ApiService` (`AWS::ECS::Service`): `desired_count` tasks in the private subnets,
//!   rolling deployments with the circuit breaker rolling back a deploy whose tasks
//!   never get healthy.
//!
//! * `PeerToken<Env>` (`AWS::SecretsManager::Secret`) for each `[control.peers.<env>]`:
//!   the token of a user of that environment, which the API task gets as
//!   `QUARRY_CONTROL__PEERS__<ENV>__TOKEN`. The stack creates it with a placeholder; an
//!   operator puts the token in (`aws secretsmanager put-secret-value`).
//!
//! The API's task role may read and write the bucket's objects, enqueue jobs, read the
//! queues' counts, read CloudWatch metrics (for the system page; `GetMetricData` cannot
//! be scoped) and write its own logs.

use super::fargate::{self, AppRefs, TaskIds, TaskSpec, add_security_group};
use super::{check_log_retention, check_range};
use crate::error::{PropError, StackError};
use crate::iam::Statement;
use crate::intrinsic::{get_att, ref_};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::{Value, json};

const CONSTRUCT: &str = "API service";

/// The load balancer's logical id.
pub const LOAD_BALANCER: &str = "LoadBalancer";
/// The service's logical id.
pub const SERVICE: &str = "ApiService";

/// Props of the API service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServiceProps {
    /// The task definition's family. Default: `quarry-api`.
    pub family: String,
    /// CPU units of one task (`stack.api.cpu`). Default: 512.
    pub cpu: u32,
    /// MiB of one task (`stack.api.memory`). Default: 1024.
    pub memory: u32,
    /// Tasks kept running (`stack.api.desired_count`), 1 to 100. Default: 1.
    pub desired_count: u32,
    /// An ACM certificate for HTTPS on 443 (`stack.api.certificate_arn`); without one
    /// the API is served over plain HTTP on 80. Default: none.
    pub certificate_arn: Option<String>,
    /// The container port. Default: 3000.
    pub port: u16,
    /// The target group's health check. Default: `/healthz`.
    pub health_check_path: String,
    /// Retention of the API log group (`stack.log_retention_days`). Default: 30.
    pub log_retention_days: u32,
    /// What happens to the log group when it leaves the stack. Default: `Retain`.
    pub log_removal: DeletionPolicy,
    /// The environments whose APIs the control plane calls (`[control.peers]`), each
    /// with a token secret. Default: none.
    pub peers: Vec<String>,
}

impl Default for ApiServiceProps {
    fn default() -> Self {
        Self {
            family: "quarry-api".to_owned(),
            cpu: 512,
            memory: 1024,
            desired_count: 1,
            certificate_arn: None,
            port: 3000,
            health_check_path: "/healthz".to_owned(),
            log_retention_days: 30,
            log_removal: DeletionPolicy::Retain,
            peers: Vec::new(),
        }
    }
}

impl ApiServiceProps {
    /// Checks the Fargate size, the task count, the certificate's ARN and the logs.
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors = fargate::check_size(CONSTRUCT, "stack.api", self.cpu, self.memory);
        errors.extend(
            [
                check_range(
                    CONSTRUCT,
                    "stack.api.desired_count",
                    self.desired_count,
                    "",
                    (1, 100),
                    "",
                ),
                check_log_retention(
                    CONSTRUCT,
                    "stack.log_retention_days",
                    self.log_retention_days,
                ),
            ]
            .into_iter()
            .flatten(),
        );
        if let Some(arn) = &self.certificate_arn {
            let ok = arn.starts_with("arn:aws")
                && arn.contains(":acm:")
                && arn.contains(":certificate/");
            if !ok {
                errors.push(PropError::new(
                    CONSTRUCT,
                    "stack.api.certificate_arn",
                    format!("{arn:?}"),
                    "is not an ACM certificate ARN: use arn:aws:acm:<region>:<account>:certificate/<id>, \
                     or leave the key out to serve HTTP only",
                ));
            }
        }
        if !self.health_check_path.starts_with('/') {
            errors.push(PropError::new(
                CONSTRUCT,
                "health_check_path",
                format!("{:?}", self.health_check_path),
                "must start with /",
            ));
        }
        for peer in &self.peers {
            let ok = !peer.is_empty()
                && peer.len() <= 32
                && peer
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                errors.push(PropError::new(
                    CONSTRUCT,
                    "control.peers",
                    format!("{peer:?}"),
                    "is not an environment name: use 1 to 32 lowercase letters, digits or -",
                ));
            }
        }
        errors
    }
}

/// The logical id of the token secret of peer `env`: `PeerToken` and the name in
/// PascalCase (`staging` → `PeerTokenStaging`).
pub fn peer_token_secret(env: &str) -> String {
    let pascal: String = env
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    format!("PeerToken{pascal}")
}

/// What the API construct added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiIds {
    /// The API task's ids.
    pub task: TaskIds,
    /// The listener that forwards to the tasks.
    pub listener: String,
}

fn ingress(port: u16, description: &str) -> Value {
    json!({
        "Description": description,
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "CidrIp": "0.0.0.0/0",
    })
}

/// Adds the load balancer, the API task and its service.
pub fn add(
    template: &mut Template,
    props: &ApiServiceProps,
    app: &AppRefs,
    public_subnets: &[Value],
    public_ready: &[String],
) -> Result<ApiIds, StackError> {
    let mut secrets = Vec::new();
    for peer in &props.peers {
        let id = peer_token_secret(peer);
        template.add_resource(
            &id,
            Resource::new(
                "AWS::SecretsManager::Secret",
                json!({
                    "Description": format!(
                        "The token of a user of {peer}: the control plane runs reference \
                         checks and re-runs there. Put the token in after the stack is made."
                    ),
                    "SecretString": "unset: put a token of a user of the peer here",
                }),
            )
            // State an operator wrote: kept with the environment's data.
            .removal(props.log_removal),
        )?;
        secrets.push((
            format!(
                "QUARRY_CONTROL__PEERS__{}__TOKEN",
                peer.to_ascii_uppercase().replace('-', "_")
            ),
            id,
        ));
    }
    let spec = TaskSpec {
        name: "Api".to_owned(),
        container: "api".to_owned(),
        command: "serve".to_owned(),
        family: props.family.clone(),
        cpu: props.cpu,
        memory: props.memory,
        log_retention_days: props.log_retention_days,
        log_removal: props.log_removal,
        environment: vec![(
            "QUARRY_LISTEN".to_owned(),
            json!(format!("0.0.0.0:{}", props.port)),
        )],
        port: Some(props.port),
        stop_timeout_secs: None,
        secrets,
        statements: vec![
            app.bucket_objects("ReadWriteData"),
            Statement::allow(
                "EnqueueJobs",
                &[
                    "sqs:SendMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                vec![get_att(&app.job_queue, "Arn")],
            ),
            Statement::allow(
                "CountDeadLetters",
                &["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                vec![get_att(&app.dead_letter_queue, "Arn")],
            ),
            // GetMetricData has no resource type nor condition key to scope it.
            Statement::allow(
                "ReadMetrics",
                &["cloudwatch:GetMetricData"],
                vec![json!("*")],
            ),
        ],
    };
    let task = fargate::add_task(template, app, &spec)?;
    add_security_group(
        template,
        &task.security_group,
        "Quarry API tasks: the API port from the load balancer only",
        &app.vpc,
        Vec::new(),
    )?;

    let lb_group = format!("{LOAD_BALANCER}SecurityGroup");
    let mut lb_ingress = vec![ingress(80, "HTTP from anywhere")];
    if props.certificate_arn.is_some() {
        lb_ingress.push(ingress(443, "HTTPS from anywhere"));
    }
    template.add_resource(
        &lb_group,
        Resource::new(
            "AWS::EC2::SecurityGroup",
            json!({
                "GroupDescription": "Quarry load balancer: HTTP(S) from anywhere, out to the API tasks only",
                "VpcId": app.vpc,
                "SecurityGroupIngress": lb_ingress,
                "SecurityGroupEgress": [{
                    "Description": "The API port of the API tasks",
                    "IpProtocol": "tcp",
                    "FromPort": props.port,
                    "ToPort": props.port,
                    "DestinationSecurityGroupId": get_att(&task.security_group, "GroupId"),
                }],
                "Tags": [{ "Key": "Name", "Value": lb_group }],
            }),
        ),
    )?;
    // A separate rule: inline, the two groups would refer to each other (a cycle).
    template.add_resource(
        &format!("{}IngressFromLoadBalancer", task.security_group),
        Resource::new(
            "AWS::EC2::SecurityGroupIngress",
            json!({
                "GroupId": get_att(&task.security_group, "GroupId"),
                "Description": "The API port from the load balancer",
                "IpProtocol": "tcp",
                "FromPort": props.port,
                "ToPort": props.port,
                "SourceSecurityGroupId": get_att(&lb_group, "GroupId"),
            }),
        ),
    )?;

    template.add_resource(
        LOAD_BALANCER,
        Resource::new(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            json!({
                "Type": "application",
                "Scheme": "internet-facing",
                "IpAddressType": "ipv4",
                "Subnets": public_subnets,
                "SecurityGroups": [get_att(&lb_group, "GroupId")],
                "LoadBalancerAttributes": [
                    { "Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true" },
                ],
            }),
        )
        // An internet-facing load balancer needs its subnets routed to the gateway.
        .depends_on_all(public_ready),
    )?;
    let target_group = "ApiTargetGroup";
    template.add_resource(
        target_group,
        Resource::new(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            json!({
                "TargetType": "ip",
                "Protocol": "HTTP",
                "Port": props.port,
                "VpcId": app.vpc,
                "HealthCheckProtocol": "HTTP",
                "HealthCheckPath": props.health_check_path,
                "Matcher": { "HttpCode": "200" },
                "TargetGroupAttributes": [
                    { "Key": "deregistration_delay.timeout_seconds", "Value": "30" },
                ],
            }),
        ),
    )?;
    let forward = json!([{ "Type": "forward", "TargetGroupArn": ref_(target_group) }]);
    let listener = match &props.certificate_arn {
        None => {
            template.add_resource(
                "HttpListener",
                Resource::new(
                    "AWS::ElasticLoadBalancingV2::Listener",
                    json!({
                        "LoadBalancerArn": ref_(LOAD_BALANCER),
                        "Port": 80,
                        "Protocol": "HTTP",
                        "DefaultActions": forward,
                    }),
                ),
            )?;
            "HttpListener"
        }
        Some(certificate) => {
            template.add_resource(
                "HttpListener",
                Resource::new(
                    "AWS::ElasticLoadBalancingV2::Listener",
                    json!({
                        "LoadBalancerArn": ref_(LOAD_BALANCER),
                        "Port": 80,
                        "Protocol": "HTTP",
                        "DefaultActions": [{
                            "Type": "redirect",
                            "RedirectConfig": {
                                "Protocol": "HTTPS",
                                "Port": "443",
                                "StatusCode": "HTTP_301",
                            },
                        }],
                    }),
                ),
            )?;
            template.add_resource(
                "HttpsListener",
                Resource::new(
                    "AWS::ElasticLoadBalancingV2::Listener",
                    json!({
                        "LoadBalancerArn": ref_(LOAD_BALANCER),
                        "Port": 443,
                        "Protocol": "HTTPS",
                        "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                        "Certificates": [{ "CertificateArn": certificate }],
                        "DefaultActions": forward,
                    }),
                ),
            )?;
            "HttpsListener"
        }
    };

    // The target group must belong to a load balancer (through the listener) before
    // a service can register tasks in it; tasks need their subnets' routes to pull
    // the image.
    template.add_resource(
        SERVICE,
        Resource::new(
            "AWS::ECS::Service",
            json!({
                "Cluster": ref_(&app.cluster),
                "LaunchType": "FARGATE",
                "TaskDefinition": ref_(&task.task_definition),
                "DesiredCount": props.desired_count,
                "NetworkConfiguration": fargate::network_configuration(app, &task.security_group),
                "LoadBalancers": [{
                    "ContainerName": spec.container,
                    "ContainerPort": props.port,
                    "TargetGroupArn": ref_(target_group),
                }],
                "HealthCheckGracePeriodSeconds": 60,
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": { "Enable": true, "Rollback": true },
                },
            }),
        )
        .depends_on(listener)
        .depends_on_all(&app.task_subnets_ready),
    )?;
    Ok(ApiIds {
        task,
        listener: listener.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_token_secrets_are_named_after_their_environment() {
        assert_eq!(peer_token_secret("staging"), "PeerTokenStaging");
        assert_eq!(peer_token_secret("eu-staging-2"), "PeerTokenEuStaging2");
        let bad = ApiServiceProps {
            peers: vec!["Staging".into(), String::new()],
            ..ApiServiceProps::default()
        };
        let errors = bad.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            ApiServiceProps {
                peers: vec!["staging".into()],
                ..ApiServiceProps::default()
            }
            .validate()
            .is_empty()
        );
    }
}
