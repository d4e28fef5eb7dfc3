//! What the three Quarry roles (API, worker, orchestrator) share: one container of the
//! `quarry` image on Fargate, with its log group, execution role, least-privilege task
//! role, security group and the `QUARRY_*` environment that points it at the stack's
//! queue, bucket and database.
//!
//! For a task named `Worker` the logical ids are `WorkerLogGroup`, `WorkerExecutionRole`,
//! `WorkerTaskRole`, `WorkerTaskDefinition` and `WorkerSecurityGroup`.

use crate::error::{PropError, StackError};
use crate::iam::{self, Statement};
use crate::intrinsic::{get_att, name_tag, ref_, region, sub};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::{Value, json};

/// The `Cpu` values Fargate accepts (CPU units, 1024 = one vCPU).
pub const FARGATE_CPU: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// The memory sizes (MiB) Fargate accepts for `cpu`, as (min, max, step); `None` for a
/// `cpu` Fargate does not offer. 256 CPU units take 512, 1024 or 2048 MiB, which the
/// caller checks as a list.
fn memory_range(cpu: u32) -> Option<(u32, u32, u32)> {
    match cpu {
        256 => Some((512, 2048, 512)),
        512 => Some((1024, 4096, 1024)),
        1024 => Some((2048, 8192, 1024)),
        2048 => Some((4096, 16384, 1024)),
        4096 => Some((8192, 30720, 1024)),
        8192 => Some((16384, 61440, 4096)),
        16384 => Some((32768, 122_880, 8192)),
        _ => None,
    }
}

/// Checks a Fargate CPU/memory pair; `key` is the section, e.g. `stack.worker`.
pub fn check_size(construct: &'static str, key: &str, cpu: u32, memory: u32) -> Vec<PropError> {
    let Some((min, max, step)) = memory_range(cpu) else {
        let allowed: Vec<String> = FARGATE_CPU.iter().map(u32::to_string).collect();
        return vec![PropError::new(
            construct,
            format!("{key}.cpu"),
            format!("{cpu} CPU units"),
            format!(
                "is not a Fargate CPU size: use one of {}",
                allowed.join(", ")
            ),
        )];
    };
    let ok = if cpu == 256 {
        [512, 1024, 2048].contains(&memory)
    } else {
        (min..=max).contains(&memory) && (memory - min).is_multiple_of(step)
    };
    if ok {
        return Vec::new();
    }
    let allowed = if cpu == 256 {
        "use 512, 1024 or 2048".to_owned()
    } else {
        format!("use {min} to {max} in steps of {step}")
    };
    vec![PropError::new(
        construct,
        format!("{key}.memory"),
        format!("{memory} MiB"),
        format!("is not a Fargate size for {cpu} CPU units: {allowed}"),
    )]
}

/// The logical ids the stack's roles share: where the queue, bucket and database are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRefs {
    /// The environment name, `QUARRY_ENV` of every task.
    pub environment: String,
    /// The job queue (`Ref` = URL, `Arn`).
    pub job_queue: String,
    /// The dead-letter queue.
    pub dead_letter_queue: String,
    /// The data bucket (`Ref` = name, `Arn`).
    pub bucket: String,
    /// The RDS instance (`Endpoint.Address`, `Endpoint.Port`).
    pub database: String,
    /// The Secrets Manager secret holding the database password (`Ref` = ARN).
    pub database_secret: String,
    /// The ECS cluster (`Ref` = name, `Arn`).
    pub cluster: String,
    /// The template parameter naming the container image.
    pub image_parameter: String,
    /// The subnets the tasks run in.
    pub task_subnets: Vec<Value>,
    /// What services must wait for before their tasks can reach the internet (routes
    /// of the task subnets).
    pub task_subnets_ready: Vec<String>,
    /// The VPC of the security groups.
    pub vpc: Value,
}

impl AppRefs {
    /// The environment every Quarry task starts with: which environment file to load
    /// and the names of the stack's queue, bucket and database.
    pub fn environment(&self) -> Vec<(String, Value)> {
        vec![
            ("AWS_REGION".into(), region()),
            ("QUARRY_ENV".into(), json!(self.environment)),
            // Every attempt records the release its worker runs, and every result the
            // image it ran in: in the cloud both are the image by digest.
            ("QUARRY_WORKER__RELEASE".into(), ref_(&self.image_parameter)),
            ("QUARRY_WORKER__IMAGE".into(), ref_(&self.image_parameter)),
            ("QUARRY_QUEUE__URL".into(), ref_(&self.job_queue)),
            ("QUARRY_BLOB_STORE__BUCKET".into(), ref_(&self.bucket)),
            // `${Database.Endpoint.Address}` inline would do on AWS, but moto's
            // emulator splits a `Fn::Sub` attribute at its first dot; variables work in
            // both.
            (
                "QUARRY_DATABASE__URL".into(),
                json!({ "Fn::Sub": [
                    "postgres://quarry@${Host}:${Port}/quarry?sslmode=require",
                    {
                        "Host": get_att(&self.database, "Endpoint.Address"),
                        "Port": get_att(&self.database, "Endpoint.Port"),
                    },
                ] }),
            ),
        ]
    }

    /// The secrets every Quarry task starts with: the database password, the `password`
    /// key of the database secret's JSON.
    pub fn secrets(&self) -> Vec<(String, Value)> {
        vec![(
            "QUARRY_DATABASE__PASSWORD".into(),
            sub(&format!("${{{}}}:password::", self.database_secret)),
        )]
    }

    /// Read and write the data bucket's objects (multipart uploads included).
    pub fn bucket_objects(&self, sid: &str) -> Statement {
        Statement::allow(
            sid,
            &[
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
            ],
            vec![sub(&format!("${{{}.Arn}}/*", self.bucket))],
        )
    }
}

/// One Fargate task of the `quarry` image.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The PascalCase prefix of the logical ids, e.g. `Worker`.
    pub name: String,
    /// The container's name, e.g. `worker`.
    pub container: String,
    /// The `quarry` subcommand the container runs, e.g. `worker`.
    pub command: String,
    /// The task definition family, e.g. `quarry-staging-worker`.
    pub family: String,
    /// CPU units.
    pub cpu: u32,
    /// MiB, for the task and as the container's hard limit.
    pub memory: u32,
    /// The log group's retention.
    pub log_retention_days: u32,
    /// What happens to the log group when it leaves the stack.
    pub log_removal: DeletionPolicy,
    /// Environment variables beyond [`AppRefs::environment`].
    pub environment: Vec<(String, Value)>,
    /// The container port, if it serves one.
    pub port: Option<u16>,
    /// Seconds between SIGTERM and SIGKILL (Fargate allows up to 120).
    pub stop_timeout_secs: Option<u32>,
    /// Secrets beyond [`AppRefs::secrets`]: the variable, and the logical id of the
    /// `AWS::SecretsManager::Secret` whose whole value it gets.
    pub secrets: Vec<(String, String)>,
    /// The task role's statements; logging to its own group is added.
    pub statements: Vec<Statement>,
}

/// The logical ids of an added task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIds {
    /// `AWS::ECS::TaskDefinition` (`Ref` = ARN with revision).
    pub task_definition: String,
    /// `AWS::IAM::Role` the container's code runs as.
    pub task_role: String,
    /// `AWS::IAM::Role` ECS uses to pull the image, write logs and read secrets.
    pub execution_role: String,
    /// `AWS::Logs::LogGroup`.
    pub log_group: String,
    /// `AWS::EC2::SecurityGroup` of the task (added by the caller).
    pub security_group: String,
}

/// Adds an `AWS::EC2::SecurityGroup` with the given ingress rules and all egress.
pub fn add_security_group(
    template: &mut Template,
    id: &str,
    description: &str,
    vpc: &Value,
    ingress: Vec<Value>,
) -> Result<(), StackError> {
    let mut props = json!({
        "GroupDescription": description,
        "VpcId": vpc,
        "SecurityGroupEgress": [{
            "Description": "All outbound traffic",
            "IpProtocol": "-1",
            "CidrIp": "0.0.0.0/0",
        }],
        "Tags": name_tag(json!(id)),
    });
    if !ingress.is_empty() {
        props["SecurityGroupIngress"] = Value::Array(ingress);
    }
    template.add_resource(id, Resource::new("AWS::EC2::SecurityGroup", props))
}

fn env_list(vars: Vec<(String, Value)>, key: &str) -> Value {
    let mut vars = vars;
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(
        vars.into_iter()
            .map(|(name, value)| json!({ "Name": name, key: value }))
            .collect(),
    )
}

/// Adds the log group, roles and task definition of `spec`. The caller adds the
/// security group named in the returned ids: its rules differ per role.
pub fn add_task(
    template: &mut Template,
    app: &AppRefs,
    spec: &TaskSpec,
) -> Result<TaskIds, StackError> {
    let name = &spec.name;
    let ids = TaskIds {
        task_definition: format!("{name}TaskDefinition"),
        task_role: format!("{name}TaskRole"),
        execution_role: format!("{name}ExecutionRole"),
        log_group: format!("{name}LogGroup"),
        security_group: format!("{name}SecurityGroup"),
    };

    template.add_resource(
        &ids.log_group,
        Resource::new(
            "AWS::Logs::LogGroup",
            // Named by CloudFormation (`<stack>-<Name>LogGroup-<suffix>`): a fixed
            // name would collide with a retained group when the stack is recreated, and
            // moto's emulator recreates (and collides with) named groups on updates.
            json!({ "RetentionInDays": spec.log_retention_days }),
        )
        .removal(spec.log_removal),
    )?;

    let mut reads = vec![Statement::allow(
        "ReadDatabaseSecret",
        &["secretsmanager:GetSecretValue"],
        vec![ref_(&app.database_secret)],
    )];
    if !spec.secrets.is_empty() {
        reads.push(Statement::allow(
            "ReadTaskSecrets",
            &["secretsmanager:GetSecretValue"],
            spec.secrets.iter().map(|(_, id)| ref_(id)).collect(),
        ));
    }
    template.add_resource(
        &ids.execution_role,
        iam::task_role(
            &format!(
                "ECS pulls the image, writes logs and reads secrets for {}",
                spec.family
            ),
            vec![iam::aws_managed_policy(
                "service-role/AmazonECSTaskExecutionRolePolicy",
            )],
            "read-database-secret",
            &reads,
        ),
    )?;

    let mut statements = spec.statements.clone();
    statements.push(Statement::allow(
        "WriteOwnLogs",
        &["logs:CreateLogStream", "logs:PutLogEvents"],
        vec![get_att(&ids.log_group, "Arn")],
    ));
    template.add_resource(
        &ids.task_role,
        iam::task_role(
            &format!(
                "What the {} container may do, and nothing more",
                spec.family
            ),
            Vec::new(),
            &format!("quarry-{}", spec.container),
            &statements,
        ),
    )?;

    let mut container = json!({
        "Name": spec.container,
        "Image": ref_(&app.image_parameter),
        "Command": [spec.command],
        "Essential": true,
        "Memory": spec.memory,
        "Environment": env_list(
            app.environment().into_iter().chain(spec.environment.iter().cloned()).collect(),
            "Value",
        ),
        "Secrets": env_list(
            app.secrets()
                .into_iter()
                .chain(spec.secrets.iter().map(|(var, id)| (var.clone(), ref_(id))))
                .collect(),
            "ValueFrom",
        ),
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": ref_(&ids.log_group),
                "awslogs-region": region(),
                "awslogs-stream-prefix": spec.container,
            },
        },
    });
    if let Some(port) = spec.port {
        container["PortMappings"] = json!([{ "ContainerPort": port, "Protocol": "tcp" }]);
    }
    if let Some(secs) = spec.stop_timeout_secs {
        container["StopTimeout"] = json!(secs);
    }
    template.add_resource(
        &ids.task_definition,
        Resource::new(
            "AWS::ECS::TaskDefinition",
            json!({
                "Family": spec.family,
                "Cpu": spec.cpu.to_string(),
                "Memory": spec.memory.to_string(),
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "RuntimePlatform": {
                    "CpuArchitecture": "X86_64",
                    "OperatingSystemFamily": "LINUX",
                },
                "ExecutionRoleArn": get_att(&ids.execution_role, "Arn"),
                "TaskRoleArn": get_att(&ids.task_role, "Arn"),
                "ContainerDefinitions": [container],
            }),
        ),
    )?;
    Ok(ids)
}

/// The `AwsvpcConfiguration` of a service's tasks.
pub fn network_configuration(app: &AppRefs, security_group: &str) -> Value {
    json!({
        "AwsvpcConfiguration": {
            "AssignPublicIp": "DISABLED",
            "SecurityGroups": [ref_(security_group)],
            "Subnets": app.task_subnets,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_sizes_follow_the_documented_table() {
        assert!(check_size("t", "k", 256, 512).is_empty());
        assert!(check_size("t", "k", 256, 2048).is_empty());
        assert!(!check_size("t", "k", 256, 1536).is_empty());
        assert!(check_size("t", "k", 1024, 8192).is_empty());
        assert!(check_size("t", "k", 8192, 20480).is_empty());
        assert!(!check_size("t", "k", 8192, 18432).is_empty());
        let err = &check_size("worker fleet", "stack.worker", 1000, 2048)[0];
        assert_eq!(err.prop, "stack.worker.cpu");
    }
}
