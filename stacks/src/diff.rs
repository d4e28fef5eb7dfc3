//! What a new template changes against the deployed one, worked out from the two
//! templates themselves.
//!
//! CloudFormation's change set is the preview an operator sees, but it may list
//! resources whose template did not change (its emulator lists every resource). This
//! module says which resources really change, so `diff` and `deploy` show exactly
//! those: added, removed, resources whose definition differs (or that refer to a
//! parameter whose value changes), and, transitively, resources that refer to a
//! resource being replaced (its `Ref`/`GetAtt` values change). Replacement follows
//! CloudFormation's documented update behaviour for the properties involved.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How a resource changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Add,
    Remove,
    /// `replaces`: the resource is created anew and the old one deleted.
    Modify {
        replaces: bool,
    },
}

/// Properties whose change replaces a resource, by type. `*` = every property
/// (task definitions are immutable: any change is a new revision).
const REPLACING: &[(&str, &[&str])] = &[
    ("AWS::ECS::TaskDefinition", &["*"]),
    ("AWS::SQS::Queue", &["QueueName", "FifoQueue"]),
    ("AWS::S3::Bucket", &["BucketName"]),
    (
        "AWS::RDS::DBInstance",
        &[
            "DBName",
            "DBInstanceIdentifier",
            "Engine",
            "MasterUsername",
            "StorageEncrypted",
            "KmsKeyId",
            "DBSubnetGroupName",
        ],
    ),
    (
        "AWS::EC2::SecurityGroup",
        &["GroupDescription", "GroupName", "VpcId"],
    ),
    (
        "AWS::EC2::Subnet",
        &["AvailabilityZone", "CidrBlock", "VpcId"],
    ),
    ("AWS::EC2::VPC", &["CidrBlock"]),
    ("AWS::ECS::Cluster", &["ClusterName"]),
    (
        "AWS::ECS::Service",
        &["ServiceName", "Cluster", "LaunchType"],
    ),
    ("AWS::Logs::LogGroup", &["LogGroupName"]),
    ("AWS::IAM::Role", &["RoleName", "Path"]),
    (
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        &["Name", "Port", "Protocol", "TargetType", "VpcId"],
    ),
    (
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        &["Name", "Scheme", "Type"],
    ),
    ("AWS::SecretsManager::Secret", &["Name"]),
];

fn replaces(resource_type: &str, property: &str) -> bool {
    REPLACING
        .iter()
        .find(|(t, _)| *t == resource_type)
        .is_some_and(|(_, props)| props.iter().any(|p| *p == "*" || *p == property))
}

fn resources(template: &Value) -> BTreeMap<&str, &Value> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .map(|r| r.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn properties(resource: &Value) -> BTreeMap<&str, &Value> {
    resource
        .get("Properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn type_of(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

/// Whether `value` refers to `name` (`Ref`, `Fn::GetAtt`, or `${name…}` in `Fn::Sub`).
fn refers_to(value: &Value, name: &str) -> bool {
    match value {
        Value::Object(map) => {
            if map.get("Ref").and_then(Value::as_str) == Some(name) {
                return true;
            }
            if let Some(att) = map.get("Fn::GetAtt") {
                let target = match att {
                    Value::Array(parts) => parts.first().and_then(Value::as_str),
                    Value::String(s) => s.split('.').next(),
                    _ => None,
                };
                if target == Some(name) {
                    return true;
                }
            }
            if let Some(sub) = map.get("Fn::Sub") {
                let text = match sub {
                    Value::String(s) => Some(s.as_str()),
                    Value::Array(parts) => parts.first().and_then(Value::as_str),
                    _ => None,
                };
                if text.is_some_and(|t| {
                    t.contains(&format!("${{{name}}}")) || t.contains(&format!("${{{name}."))
                }) {
                    return true;
                }
            }
            map.values().any(|v| refers_to(v, name))
        }
        Value::Array(items) => items.iter().any(|v| refers_to(v, name)),
        _ => false,
    }
}

/// The changes from `old` (deployed, with its parameter values) to `new` (with the
/// parameter values it will be deployed with), by logical id.
pub fn changes(
    old: &Value,
    old_parameters: &BTreeMap<String, String>,
    new: &Value,
    new_parameters: &BTreeMap<String, String>,
) -> BTreeMap<String, Change> {
    let (before, after) = (resources(old), resources(new));
    let mut out: BTreeMap<String, Change> = BTreeMap::new();
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        out.insert((*id).to_owned(), Change::Remove);
    }
    let changed_parameters: BTreeSet<&str> = new_parameters
        .iter()
        .filter(|(k, v)| old_parameters.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .collect();
    for (id, resource) in &after {
        let Some(previous) = before.get(id) else {
            out.insert((*id).to_owned(), Change::Add);
            continue;
        };
        let kind = type_of(resource);
        if type_of(previous) != kind {
            out.insert((*id).to_owned(), Change::Modify { replaces: true });
            continue;
        }
        let (p_old, p_new) = (properties(previous), properties(resource));
        let keys: BTreeSet<&str> = p_old.keys().chain(p_new.keys()).copied().collect();
        let mut modified = false;
        let mut replaced = false;
        for key in keys {
            let differs = p_old.get(key) != p_new.get(key);
            let by_parameter = p_new
                .get(key)
                .is_some_and(|v| changed_parameters.iter().any(|p| refers_to(v, p)));
            if differs || by_parameter {
                modified = true;
                replaced |= replaces(kind, key);
            }
        }
        let mut rest_old = (*previous).clone();
        let mut rest_new = (*resource).clone();
        for r in [&mut rest_old, &mut rest_new] {
            if let Some(map) = r.as_object_mut() {
                map.remove("Properties");
            }
        }
        modified |= rest_old != rest_new;
        if modified {
            out.insert((*id).to_owned(), Change::Modify { replaces: replaced });
        }
    }
    // A replaced resource has a new identity: whatever refers to it changes too.
    // Changes only grow (none to modify, modify to replace), so this settles.
    loop {
        let replaced: Vec<String> = out
            .iter()
            .filter(|(_, c)| matches!(c, Change::Modify { replaces: true }))
            .map(|(id, _)| id.clone())
            .collect();
        let mut grew = false;
        for (id, resource) in &after {
            if matches!(out.get(*id), Some(Change::Add)) {
                continue;
            }
            let mut touched = false;
            let mut replaces_too = false;
            for (key, value) in properties(resource) {
                if replaced.iter().any(|r| r != id && refers_to(value, r)) {
                    touched = true;
                    replaces_too |= replaces(type_of(resource), key);
                }
            }
            if !touched {
                continue;
            }
            let was = matches!(out.get(*id), Some(Change::Modify { replaces: true }));
            let change = Change::Modify {
                replaces: was || replaces_too,
            };
            if out.get(*id) != Some(&change) {
                out.insert((*id).to_owned(), change);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(image: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("ImageUri".to_owned(), image.to_owned())])
    }

    fn template(memory: &str, max_workers: &str) -> Value {
        json!({"Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 120}},
            "Worker": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Memory": memory, "Image": {"Ref": "ImageUri"}, "Env": {"Ref": "Queue"}}},
            "Orchestrator": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Env": [max_workers, {"Ref": "Worker"}]}},
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "TaskDefinition": {"Ref": "Orchestrator"}}},
            "Role": {"Type": "AWS::IAM::Role", "Properties": {
                "Policies": [{"Resource": {"Fn::Sub": "${Worker}"}}]}},
        }})
    }

    #[test]
    fn identical_templates_change_nothing() {
        let t = template("4096", "10");
        assert!(changes(&t, &params("a"), &t, &params("a")).is_empty());
    }

    #[test]
    fn a_replaced_task_definition_carries_its_dependents() {
        let got = changes(
            &template("4096", "10"),
            &params("a"),
            &template("8192", "10"),
            &params("a"),
        );
        assert_eq!(
            got,
            BTreeMap::from([
                ("Orchestrator".to_owned(), Change::Modify { replaces: true }),
                ("Role".to_owned(), Change::Modify { replaces: false }),
                ("Service".to_owned(), Change::Modify { replaces: false }),
                ("Worker".to_owned(), Change::Modify { replaces: true }),
            ])
        );
    }

    #[test]
    fn a_new_image_changes_what_uses_it() {
        let t = template("4096", "10");
        let got = changes(&t, &params("a"), &t, &params("b"));
        assert_eq!(got.get("Worker"), Some(&Change::Modify { replaces: true }));
        assert_eq!(got.get("Queue"), None);
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn added_and_removed_resources_are_listed() {
        let old = template("4096", "10");
        let mut new = old.clone();
        let resources = new["Resources"].as_object_mut().unwrap();
        resources.remove("Queue");
        resources.insert("Dlq".into(), json!({"Type": "AWS::SQS::Queue"}));
        let got = changes(&old, &params("a"), &new, &params("a"));
        assert_eq!(got.get("Queue"), Some(&Change::Remove));
        assert_eq!(got.get("Dlq"), Some(&Change::Add));
    }
}
