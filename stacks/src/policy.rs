//! Quarry's policy rules, run on a template's JSON before anything is deployed.
//!
//! Each [`Rule`] has a stable id (what `[[stack.suppress]]` entries and reports use):
//! * `encryption`: S3 buckets have default encryption, SQS queues SSE (SQS-managed or
//!   KMS), RDS instances and clusters encrypted storage (log groups are always
//!   encrypted by CloudWatch Logs);
//! * `no-public-bucket`: every S3 bucket turns all four public-access blocks on;
//! * `no-public-database`: no RDS instance is publicly accessible (an instance without
//!   `PubliclyAccessible` is private only when it names a subnet group);
//! * `no-iam-star`: no IAM policy allows action `*` (or `*:*`) on resource `*`, and no
//!   role holds `AdministratorAccess`;
//! * `log-retention`: every log group sets `RetentionInDays` (the default is forever);
//! * `production-retains-data`: in production, every stateful resource (S3 bucket, RDS
//!   instance or cluster, SQS queue, secret, log group, DynamoDB table, EFS file
//!   system) has `DeletionPolicy` and `UpdateReplacePolicy` `Retain` (`Snapshot` also
//!   counts where CloudFormation supports it: RDS).
//!
//! The rules read plain JSON, so they work on any template, including deliberately
//! broken ones in tests. A finding is suppressed by a `[[stack.suppress]]` entry with
//! the same rule and logical id and a non-empty reason; an entry without a reason
//! suppresses nothing and is itself an error.

use crate::config::{StackConfig, Suppression, suppression_errors};
use crate::error::PropError;
use crate::resource::Template;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// A policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Data at rest is encrypted.
    Encryption,
    /// Buckets block every kind of public access.
    NoPublicBucket,
    /// Databases are not reachable from the internet.
    NoPublicDatabase,
    /// No IAM grant of everything on everything.
    NoIamStar,
    /// Log groups do not keep logs forever.
    LogRetention,
    /// Production keeps its data when resources leave the stack or are replaced.
    ProductionRetainsData,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 6] = [
        Rule::Encryption,
        Rule::NoPublicBucket,
        Rule::NoPublicDatabase,
        Rule::NoIamStar,
        Rule::LogRetention,
        Rule::ProductionRetainsData,
    ];

    /// The stable id used in suppressions and reports.
    pub fn id(self) -> &'static str {
        match self {
            Rule::Encryption => "encryption",
            Rule::NoPublicBucket => "no-public-bucket",
            Rule::NoPublicDatabase => "no-public-database",
            Rule::NoIamStar => "no-iam-star",
            Rule::LogRetention => "log-retention",
            Rule::ProductionRetainsData => "production-retains-data",
        }
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One resource breaking one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule broken.
    pub rule: Rule,
    /// The resource's logical id.
    pub resource: String,
    /// What is wrong and what to change.
    pub message: String,
    /// The reason from the matching `[[stack.suppress]]` entry, if suppressed.
    pub suppressed: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.resource, self.message)?;
        if let Some(reason) = &self.suppressed {
            write!(f, " (suppressed: {reason})")?;
        }
        Ok(())
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every finding, suppressed or not, by rule then logical id.
    pub findings: Vec<Finding>,
    /// Invalid suppression entries (no reason, unknown rule, no resource).
    pub errors: Vec<PropError>,
    /// Valid suppression entries that matched no finding (stale; harmless).
    pub unused_suppressions: Vec<Suppression>,
}

impl Report {
    /// Whether the template must not be deployed: an unsuppressed finding or an
    /// invalid suppression remains.
    pub fn blocks_deploy(&self) -> bool {
        !self.errors.is_empty() || self.violations().next().is_some()
    }

    /// The unsuppressed findings.
    pub fn violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.suppressed.is_none())
    }

    /// The suppressed findings.
    pub fn suppressed(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.suppressed.is_some())
    }

    /// The rules with an unsuppressed finding.
    pub fn rules_violated(&self) -> BTreeSet<Rule> {
        self.violations().map(|f| f.rule).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let violations = self.violations().count();
        let suppressed = self.suppressed().count();
        write!(
            f,
            "policy: {violations} violation(s), {suppressed} suppressed, {} invalid suppression(s)",
            self.errors.len()
        )?;
        for finding in self.violations() {
            write!(f, "\n  x {finding}")?;
        }
        for finding in self.suppressed() {
            write!(f, "\n  ~ {finding}")?;
        }
        for error in &self.errors {
            write!(f, "\n  ! {error}")?;
        }
        for s in &self.unused_suppressions {
            write!(
                f,
                "\n  ? suppression of [{}] {} matches nothing: remove it",
                s.rule, s.resource
            )?;
        }
        Ok(())
    }
}

/// Runs every rule on a template's JSON with the environment's suppressions;
/// `production-retains-data` only applies when the environment is production.
pub fn check(template: &Value, config: &StackConfig) -> Report {
    check_with(template, config.is_production(), &config.stack.suppress)
}

/// [`check`] on a [`Template`].
pub fn check_template(template: &Template, config: &StackConfig) -> Report {
    check(&template.to_value(), config)
}

/// [`check`] with the environment's facts given directly.
pub fn check_with(template: &Value, production: bool, suppressions: &[Suppression]) -> Report {
    let mut findings = Vec::new();
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    for (id, resource) in resources {
        let type_name = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let empty = Value::Null;
        let props = resource.get("Properties").unwrap_or(&empty);
        let mut found = |rule: Rule, message: String| {
            findings.push(Finding {
                rule,
                resource: id.clone(),
                message,
                suppressed: None,
            });
        };
        for (rule, message) in encryption(type_name, props)
            .map(|m| (Rule::Encryption, m))
            .into_iter()
            .chain(no_public_bucket(type_name, props).map(|m| (Rule::NoPublicBucket, m)))
            .chain(no_public_database(type_name, props).map(|m| (Rule::NoPublicDatabase, m)))
            .chain(
                no_iam_star(type_name, props)
                    .into_iter()
                    .map(|m| (Rule::NoIamStar, m)),
            )
            .chain(log_retention(type_name, props).map(|m| (Rule::LogRetention, m)))
        {
            found(rule, message);
        }
        if production {
            for message in retains_data(type_name, resource) {
                found(Rule::ProductionRetainsData, message);
            }
        }
    }
    findings.sort_by(|a, b| (a.rule, &a.resource).cmp(&(b.rule, &b.resource)));

    let errors = suppression_errors(suppressions);
    let mut used = vec![false; suppressions.len()];
    for finding in &mut findings {
        for (i, s) in suppressions.iter().enumerate() {
            if s.rule == finding.rule.id() && s.resource == finding.resource {
                used[i] = true;
                if !s.reason.trim().is_empty() {
                    finding.suppressed = Some(s.reason.trim().to_owned());
                }
            }
        }
    }
    let unused_suppressions = suppressions
        .iter()
        .zip(used)
        .filter(|(s, used)| {
            !used && Rule::from_id(&s.rule).is_some() && !s.reason.trim().is_empty()
        })
        .map(|(s, _)| s.clone())
        .collect();
    Report {
        findings,
        errors,
        unused_suppressions,
    }
}

/// `true` or `"true"`: CloudFormation accepts booleans as either.
fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn is_false(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => !*b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

fn encryption(type_name: &str, props: &Value) -> Option<String> {
    match type_name {
        "AWS::S3::Bucket" => {
            let rules = props
                .pointer("/BucketEncryption/ServerSideEncryptionConfiguration")
                .and_then(Value::as_array);
            let ok = rules.is_some_and(|rules| {
                !rules.is_empty()
                    && rules.iter().all(|r| {
                        r.pointer("/ServerSideEncryptionByDefault/SSEAlgorithm")
                            .is_some_and(|a| !a.is_null())
                    })
            });
            (!ok).then(|| {
                "has no default encryption: set BucketEncryption.ServerSideEncryptionConfiguration \
                 with SSEAlgorithm AES256 or aws:kms"
                    .to_owned()
            })
        }
        "AWS::SQS::Queue" => {
            let ok =
                is_true(props.get("SqsManagedSseEnabled")) || props.get("KmsMasterKeyId").is_some();
            (!ok).then(|| {
                "is not encrypted: set SqsManagedSseEnabled: true (or a KmsMasterKeyId)".to_owned()
            })
        }
        "AWS::RDS::DBInstance" => {
            // An Aurora instance's storage is its cluster's.
            let in_cluster = props.get("DBClusterIdentifier").is_some();
            (!in_cluster && !is_true(props.get("StorageEncrypted"))).then(|| {
                "stores data unencrypted: set StorageEncrypted: true (this replaces an existing \
                 instance; restore an encrypted snapshot copy)"
                    .to_owned()
            })
        }
        "AWS::RDS::DBCluster" => (!is_true(props.get("StorageEncrypted")))
            .then(|| "stores data unencrypted: set StorageEncrypted: true".to_owned()),
        _ => None,
    }
}

fn no_public_bucket(type_name: &str, props: &Value) -> Option<String> {
    if type_name != "AWS::S3::Bucket" {
        return None;
    }
    let block = props.get("PublicAccessBlockConfiguration");
    let missing: Vec<&str> = [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ]
    .into_iter()
    .filter(|flag| !is_true(block.and_then(|b| b.get(*flag))))
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "may be made public: set PublicAccessBlockConfiguration.{} to true",
            missing.join(", ")
        )
    })
}

fn no_public_database(type_name: &str, props: &Value) -> Option<String> {
    if type_name != "AWS::RDS::DBInstance" {
        return None;
    }
    match props.get("PubliclyAccessible") {
        None if props.get("DBSubnetGroupName").is_some() => None,
        None => Some(
            "has no DBSubnetGroupName, so RDS makes it publicly accessible by default: set \
             PubliclyAccessible: false and a private subnet group"
                .to_owned(),
        ),
        v if is_false(v) => None,
        v if is_true(v) => {
            Some("is reachable from the internet: set PubliclyAccessible: false".to_owned())
        }
        _ => {
            Some("has a computed PubliclyAccessible the rule cannot verify: write false".to_owned())
        }
    }
}

/// The policy documents of an IAM resource, with where each comes from.
fn policy_documents<'a>(type_name: &str, props: &'a Value) -> Vec<(String, &'a Value)> {
    match type_name {
        "AWS::IAM::Role" | "AWS::IAM::User" | "AWS::IAM::Group" => props
            .get("Policies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let name = p.get("PolicyName").and_then(Value::as_str).unwrap_or("?");
                p.get("PolicyDocument")
                    .map(|d| (format!("inline policy `{name}`"), d))
            })
            .collect(),
        "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::IAM::RolePolicy" => props
            .get("PolicyDocument")
            .map(|d| ("its policy".to_owned(), d))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn one_or_many(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    }
}

fn no_iam_star(type_name: &str, props: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (source, document) in policy_documents(type_name, props) {
        for (i, statement) in one_or_many(document.get("Statement"))
            .into_iter()
            .enumerate()
        {
            let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
            let star_action = one_or_many(statement.get("Action"))
                .iter()
                .any(|a| matches!(a.as_str(), Some("*" | "*:*")));
            let star_resource = one_or_many(statement.get("Resource"))
                .iter()
                .any(|r| r.as_str() == Some("*"));
            if allow && star_action && star_resource {
                let sid = statement
                    .get("Sid")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("statement {i}"), |s| format!("statement `{s}`"));
                out.push(format!(
                    "{source}, {sid} allows every action on every resource: list the actions \
                     and the resources (ARNs) it needs"
                ));
            }
        }
    }
    if type_name == "AWS::IAM::Role" {
        for arn in one_or_many(props.get("ManagedPolicyArns")) {
            let text = arn
                .as_str()
                .or_else(|| arn.get("Fn::Sub").and_then(Value::as_str))
                .unwrap_or("");
            if text.ends_with(":policy/AdministratorAccess") {
                out.push(
                    "holds AdministratorAccess: attach a policy listing the actions and \
                     resources it needs"
                        .to_owned(),
                );
            }
        }
    }
    out
}

fn log_retention(type_name: &str, props: &Value) -> Option<String> {
    (type_name == "AWS::Logs::LogGroup" && props.get("RetentionInDays").is_none())
        .then(|| "keeps logs forever: set RetentionInDays (e.g. 30)".to_owned())
}

/// Stateful types, and whether `Snapshot` counts as retaining their data.
const STATEFUL: [(&str, bool); 8] = [
    ("AWS::S3::Bucket", false),
    ("AWS::RDS::DBInstance", true),
    ("AWS::RDS::DBCluster", true),
    ("AWS::SQS::Queue", false),
    ("AWS::SecretsManager::Secret", false),
    ("AWS::Logs::LogGroup", false),
    ("AWS::DynamoDB::Table", false),
    ("AWS::EFS::FileSystem", false),
];

fn retains_data(type_name: &str, resource: &Value) -> Vec<String> {
    let Some((_, snapshot_ok)) = STATEFUL.iter().find(|(t, _)| *t == type_name) else {
        return Vec::new();
    };
    let allowed = if *snapshot_ok {
        "Retain (or Snapshot)"
    } else {
        "Retain"
    };
    ["DeletionPolicy", "UpdateReplacePolicy"]
        .into_iter()
        .filter_map(|attribute| {
            let value = resource.get(attribute).and_then(Value::as_str);
            let ok = matches!(value, Some("Retain")) || (*snapshot_ok && value == Some("Snapshot"));
            (!ok).then(|| {
                format!(
                    "would lose production data: set {attribute}: {allowed} (it is {})",
                    value.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"))
                )
            })
        })
        .collect()
}
