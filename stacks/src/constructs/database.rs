//! The database: Postgres on RDS, private and encrypted, its password in Secrets
//! Manager.
//!
//! * `DatabaseSecret` (`AWS::SecretsManager::Secret`): `{"username": "quarry",
//!   "password": <32 generated letters and digits>}`; tasks get the password as
//!   `QUARRY_DATABASE__PASSWORD` through their task definition's `Secrets`;
//! * `DatabaseSubnetGroup`: the private subnets;
//! * `DatabaseSecurityGroup`: port 5432 from the given client security groups only;
//! * `Database` (`AWS::RDS::DBInstance`): user and database `quarry`, the password
//!   resolved from the secret at deploy time (never in the template), gp3 storage,
//!   encrypted, not publicly accessible; minor upgrades happen by changing
//!   `engine_version`, never behind the template's back.

use super::check_range;
use super::fargate::add_security_group;
use crate::error::{PropError, StackError};
use crate::intrinsic::{get_att, ref_, sub};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde::Deserialize;
use serde_json::{Value, json};

const CONSTRUCT: &str = "database";

/// The instance's logical id.
pub const DATABASE: &str = "Database";
/// The secret's logical id.
pub const SECRET: &str = "DatabaseSecret";
/// The security group's logical id.
pub const SECURITY_GROUP: &str = "DatabaseSecurityGroup";
/// The port Postgres listens on.
pub const POSTGRES_PORT: u16 = 5432;

/// Props of the database, `[stack.database]` in the environment file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseProps {
    /// The RDS instance class, `db.<family>.<size>`. Default: `db.t4g.micro`.
    pub instance_class: String,
    /// gp3 storage in GiB, 20 to 65536. Default: 20.
    pub allocated_storage_gb: u32,
    /// The Postgres version, `major.minor` (e.g. `16.13`). Default: `16.13`.
    pub engine_version: String,
    /// A standby in a second zone with automatic failover. Default: false.
    pub multi_az: bool,
    /// Days of automated backups (point-in-time recovery), 0 to 35; production needs
    /// at least 1. Default: 7.
    pub backup_retention_days: u32,
    /// Whether RDS refuses to delete the instance. Default: true in production only.
    #[serde(default)]
    pub deletion_protection: Option<bool>,
}

impl Default for DatabaseProps {
    fn default() -> Self {
        Self {
            instance_class: "db.t4g.micro".to_owned(),
            allocated_storage_gb: 20,
            engine_version: "16.13".to_owned(),
            multi_az: false,
            backup_retention_days: 7,
            deletion_protection: None,
        }
    }
}

impl DatabaseProps {
    /// Checks the class's shape, the storage and backup ranges and the version's
    /// shape; `production` requires backups.
    pub fn validate(&self, production: bool) -> Vec<PropError> {
        let key = |k: &str| format!("stack.database.{k}");
        let mut errors: Vec<PropError> = [
            check_range(
                CONSTRUCT,
                &key("allocated_storage_gb"),
                self.allocated_storage_gb,
                "GiB",
                (20, 65_536),
                " (gp3 storage)",
            ),
            check_range(
                CONSTRUCT,
                &key("backup_retention_days"),
                self.backup_retention_days,
                "days",
                (u32::from(production), 35),
                if production {
                    " (production keeps backups)"
                } else {
                    ""
                },
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        let parts: Vec<&str> = self.instance_class.split('.').collect();
        let class_ok = parts.len() == 3
            && parts[0] == "db"
            && parts[1..].iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !class_ok {
            errors.push(PropError::new(
                CONSTRUCT,
                key("instance_class"),
                format!("{:?}", self.instance_class),
                "is not an RDS instance class: use db.<family>.<size>, e.g. db.t4g.micro",
            ));
        }
        let version: Vec<&str> = self.engine_version.split('.').collect();
        let version_ok = version.len() == 2
            && version
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && version[0].parse::<u32>().is_ok_and(|major| major >= 13);
        if !version_ok {
            errors.push(PropError::new(
                CONSTRUCT,
                key("engine_version"),
                format!("{:?}", self.engine_version),
                "is not a Postgres version RDS offers: use major.minor with major 13 or \
                 newer, e.g. \"16.13\"",
            ));
        }
        errors
    }
}

/// Adds the secret, subnet group, security group and instance. `clients` are the
/// logical ids of the security groups allowed to connect.
pub fn add(
    template: &mut Template,
    props: &DatabaseProps,
    production: bool,
    removal: DeletionPolicy,
    vpc: &Value,
    private_subnets: &[Value],
    clients: &[&str],
) -> Result<(), StackError> {
    template.add_resource(
        SECRET,
        Resource::new(
            "AWS::SecretsManager::Secret",
            json!({
                "Description": "Quarry's Postgres user `quarry` and its generated password",
                "GenerateSecretString": {
                    "SecretStringTemplate": "{\"username\":\"quarry\"}",
                    "GenerateStringKey": "password",
                    "ExcludePunctuation": true,
                    "PasswordLength": 32,
                },
            }),
        )
        .removal(removal),
    )?;
    template.add_resource(
        "DatabaseSubnetGroup",
        Resource::new(
            "AWS::RDS::DBSubnetGroup",
            json!({
                "DBSubnetGroupDescription": "Quarry's database, in the private subnets",
                "SubnetIds": private_subnets,
            }),
        ),
    )?;
    let ingress = clients
        .iter()
        .map(|client| {
            json!({
                "Description": format!("Postgres from {client}"),
                "IpProtocol": "tcp",
                "FromPort": POSTGRES_PORT,
                "ToPort": POSTGRES_PORT,
                "SourceSecurityGroupId": ref_(client),
            })
        })
        .collect();
    add_security_group(
        template,
        SECURITY_GROUP,
        "Quarry database: Postgres from the Quarry tasks only",
        vpc,
        ingress,
    )?;
    template.add_resource(
        DATABASE,
        Resource::new(
            "AWS::RDS::DBInstance",
            json!({
                "Engine": "postgres",
                "EngineVersion": props.engine_version,
                "DBInstanceClass": props.instance_class,
                "AllocatedStorage": props.allocated_storage_gb.to_string(),
                "StorageType": "gp3",
                "StorageEncrypted": true,
                "PubliclyAccessible": false,
                "MultiAZ": props.multi_az,
                // Postgres' default, written out: the security group opens it, and
                // moto's emulator would otherwise report MySQL's 3306.
                "Port": POSTGRES_PORT.to_string(),
                "DBName": "quarry",
                "MasterUsername": "quarry",
                "MasterUserPassword": sub(&format!(
                    "{{{{resolve:secretsmanager:${{{SECRET}}}:SecretString:password}}}}"
                )),
                "DBSubnetGroupName": ref_("DatabaseSubnetGroup"),
                "VPCSecurityGroups": [get_att(SECURITY_GROUP, "GroupId")],
                "BackupRetentionPeriod": props.backup_retention_days,
                "DeletionProtection": props.deletion_protection.unwrap_or(production),
                "CopyTagsToSnapshot": true,
                // The version is pinned in the environment file: an automatic minor
                // upgrade would make the next deploy ask RDS for a downgrade.
                "AutoMinorVersionUpgrade": false,
            }),
        )
        .removal(removal),
    )
}
