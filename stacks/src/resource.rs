//! The lowest construct level: a CloudFormation template and its resources, typed just
//! enough to be hard to get wrong, with properties as JSON exactly as AWS documents them.
//!
//! Output is deterministic: every map is a `BTreeMap`, and [`Template::to_json_string`]
//! re-sorts every JSON object (property values included) before printing, so the bytes
//! do not depend on insertion order nor on whether some other crate in the build turned
//! on `serde_json/preserve_order`.

use crate::error::StackError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The only `AWSTemplateFormatVersion` there is.
pub const FORMAT_VERSION: &str = "2010-09-09";

/// What CloudFormation does with a resource's physical resource when the resource
/// leaves the template or is replaced (`DeletionPolicy`, `UpdateReplacePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeletionPolicy {
    /// Delete it, data included.
    Delete,
    /// Keep it (and keep paying for it), outside the stack.
    Retain,
    /// Take a final snapshot, then delete it (RDS, EBS, ElastiCache, ...).
    Snapshot,
}

/// One resource of a template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// The resource type, e.g. `AWS::SQS::Queue`.
    #[serde(rename = "Type")]
    pub type_name: String,
    /// The properties, as the type's CloudFormation reference spells them.
    #[serde(rename = "Properties", skip_serializing_if = "is_empty")]
    pub properties: Value,
    /// Logical ids created before this one, beyond those its references imply.
    #[serde(rename = "DependsOn", skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<String>,
    /// What happens to the physical resource when it leaves the template.
    #[serde(rename = "DeletionPolicy", skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// What happens to the old physical resource when an update replaces it.
    #[serde(
        rename = "UpdateReplacePolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub update_replace_policy: Option<DeletionPolicy>,
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(Map::is_empty)
}

impl Resource {
    /// A resource of `type_name` with `properties` (a JSON object).
    pub fn new(type_name: &str, properties: Value) -> Self {
        Self {
            type_name: type_name.to_owned(),
            properties,
            depends_on: BTreeSet::new(),
            deletion_policy: None,
            update_replace_policy: None,
        }
    }

    /// Adds an explicit `DependsOn`: only for orderings no `Ref`/`GetAtt` implies
    /// (cfn-lint flags the redundant ones).
    #[must_use]
    pub fn depends_on(mut self, id: &str) -> Self {
        self.depends_on.insert(id.to_owned());
        self
    }

    /// Adds several explicit `DependsOn`s (see [`Resource::depends_on`]).
    #[must_use]
    pub fn depends_on_all<'a>(mut self, ids: impl IntoIterator<Item = &'a String>) -> Self {
        self.depends_on.extend(ids.into_iter().cloned());
        self
    }

    /// Sets both `DeletionPolicy` and `UpdateReplacePolicy`: data must survive a
    /// replacement as much as a deletion.
    #[must_use]
    pub fn removal(mut self, policy: DeletionPolicy) -> Self {
        self.deletion_policy = Some(policy);
        self.update_replace_policy = Some(policy);
        self
    }
}

/// A template parameter: a value given at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parameter {
    /// `String`, `Number`, `AWS::EC2::VPC::Id`, ...
    #[serde(rename = "Type")]
    pub type_name: String,
    /// What the value is and where it comes from.
    #[serde(rename = "Description")]
    pub description: String,
    /// The smallest length a `String` value may have.
    #[serde(rename = "MinLength", skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
}

/// A template output: a value the deploy command reads back from the stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// What the value is.
    #[serde(rename = "Description")]
    pub description: String,
    /// The value (usually an intrinsic function).
    #[serde(rename = "Value")]
    pub value: Value,
}

impl Output {
    /// An output with `description` and `value`.
    pub fn new(description: &str, value: Value) -> Self {
        Self {
            description: description.to_owned(),
            value,
        }
    }
}

/// A whole CloudFormation template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    /// Always [`FORMAT_VERSION`].
    #[serde(rename = "AWSTemplateFormatVersion")]
    pub format_version: String,
    /// Shown by CloudFormation next to the stack.
    #[serde(rename = "Description")]
    pub description: String,
    /// Values given at deploy time, by logical id.
    #[serde(rename = "Parameters", skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Parameter>,
    /// Named conditions, by logical id (unused by Quarry's stacks so far: choices are
    /// made at synthesis time, from the environment file).
    #[serde(rename = "Conditions", skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<String, Value>,
    /// The resources, by logical id.
    #[serde(rename = "Resources")]
    pub resources: BTreeMap<String, Resource>,
    /// The outputs, by logical id.
    #[serde(rename = "Outputs", skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Output>,
}

impl Template {
    /// An empty template with a description.
    pub fn new(description: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION.to_owned(),
            description: description.to_owned(),
            parameters: BTreeMap::new(),
            conditions: BTreeMap::new(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    fn check_new_id(&self, id: &str) -> Result<(), StackError> {
        if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StackError::BadLogicalId(id.to_owned()));
        }
        if self.resources.contains_key(id)
            || self.parameters.contains_key(id)
            || self.outputs.contains_key(id)
        {
            return Err(StackError::DuplicateLogicalId(id.to_owned()));
        }
        Ok(())
    }

    /// Adds a parameter; the id must be new to the template.
    pub fn add_parameter(&mut self, id: &str, parameter: Parameter) -> Result<(), StackError> {
        self.check_new_id(id)?;
        self.parameters.insert(id.to_owned(), parameter);
        Ok(())
    }

    /// Adds a resource; the id must be new to the template.
    pub fn add_resource(&mut self, id: &str, resource: Resource) -> Result<(), StackError> {
        self.check_new_id(id)?;
        self.resources.insert(id.to_owned(), resource);
        Ok(())
    }

    /// Adds an output; the id must be new to the template.
    pub fn add_output(&mut self, id: &str, output: Output) -> Result<(), StackError> {
        self.check_new_id(id)?;
        self.outputs.insert(id.to_owned(), output);
        Ok(())
    }

    /// The template as a JSON value with every object's keys sorted.
    pub fn to_value(&self) -> Value {
        // Serializing plain data with string keys cannot fail.
        canonical(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The template as pretty JSON: sorted keys everywhere, two-space indents, a
    /// trailing newline. Byte-identical for identical templates; what is deployed,
    /// snapshotted and hashed.
    pub fn to_json_string(&self) -> String {
        to_pretty_json(&self.to_value())
    }

    /// Checks that every `Ref`, `Fn::GetAtt`, `Fn::Sub` variable and `DependsOn`
    /// names a resource or parameter of this template (or a pseudo parameter).
    pub fn check_references(&self) -> Result<(), StackError> {
        let known = |name: &str| {
            name.starts_with("AWS::")
                || self.resources.contains_key(name)
                || self.parameters.contains_key(name)
        };
        let mut found = Vec::new();
        for (id, resource) in &self.resources {
            references(&resource.properties, &mut found);
            for to in found.drain(..).chain(resource.depends_on.iter().cloned()) {
                if !known(&to) {
                    return Err(StackError::DanglingReference {
                        from: id.clone(),
                        to,
                    });
                }
            }
        }
        for (id, output) in &self.outputs {
            references(&output.value, &mut found);
            for to in found.drain(..) {
                if !known(&to) {
                    return Err(StackError::DanglingReference {
                        from: id.clone(),
                        to,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A copy of `value` whose objects have their keys in sorted order, whichever map type
/// `serde_json` was built with.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), canonical(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON of `value` with sorted keys and a trailing newline.
pub fn to_pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&canonical(value)).unwrap_or_default();
    text.push('\n');
    text
}

/// Compact JSON of `value` with sorted keys: for JSON documents embedded as strings
/// (a dashboard body).
pub fn to_compact_json(value: &Value) -> String {
    serde_json::to_string(&canonical(value)).unwrap_or_default()
}

/// Collects the logical ids `value` refers to.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("Ref") {
                out.push(name.clone());
            }
            if let Some(Value::Array(args)) = map.get("Fn::GetAtt")
                && let Some(Value::String(name)) = args.first()
            {
                out.push(name.clone());
            }
            match map.get("Fn::Sub") {
                Some(Value::String(text)) => sub_variables(text, &BTreeSet::new(), out),
                Some(Value::Array(args)) => {
                    if let (Some(Value::String(text)), vars) = (args.first(), args.get(1)) {
                        let local = vars
                            .and_then(Value::as_object)
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        sub_variables(text, &local, out);
                    }
                }
                _ => {}
            }
            for v in map.values() {
                references(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The logical ids named by `${Id}` / `${Id.Attr}` in an `Fn::Sub` string, skipping
/// literal `${!...}` and variables defined by the `Fn::Sub` itself.
fn sub_variables(text: &str, local: &BTreeSet<String>, out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let var = &rest[..end];
        rest = &rest[end + 1..];
        if var.starts_with('!') || local.contains(var) {
            continue;
        }
        let id = var.split('.').next().unwrap_or(var);
        out.push(id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intrinsic::{get_att, ref_, sub};
    use serde_json::json;

    #[test]
    fn keys_come_out_sorted_whatever_the_insertion_order() {
        let mut t = Template::new("t");
        t.add_resource(
            "Zed",
            Resource::new("AWS::SQS::Queue", json!({"b": 1, "a": {"d": 1, "c": 2}})),
        )
        .unwrap();
        t.add_resource("Abc", Resource::new("AWS::SQS::Queue", json!({})))
            .unwrap();
        let text = t.to_json_string();
        assert!(text.find("\"Abc\"").unwrap() < text.find("\"Zed\"").unwrap());
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
        assert!(text.find("\"c\"").unwrap() < text.find("\"d\"").unwrap());
        assert!(text.ends_with("}\n"));
        // Empty properties are left out rather than printed as `{}`.
        assert!(!text.contains("\"Properties\": {}"));
    }

    #[test]
    fn a_logical_id_is_refused_twice_or_when_not_alphanumeric() {
        let mut t = Template::new("t");
        t.add_resource("Queue", Resource::new("AWS::SQS::Queue", json!({})))
            .unwrap();
        let err = t
            .add_resource("Queue", Resource::new("AWS::SQS::Queue", json!({})))
            .unwrap_err();
        assert!(matches!(err, StackError::DuplicateLogicalId(id) if id == "Queue"));
        let err = t
            .add_resource("My-Queue", Resource::new("AWS::SQS::Queue", json!({})))
            .unwrap_err();
        assert!(
            err.to_string().contains("ASCII letters and digits"),
            "{err}"
        );
    }

    #[test]
    fn dangling_references_are_found_in_ref_getatt_sub_and_depends_on() {
        for props in [
            json!({"A": ref_("Missing")}),
            json!({"A": [get_att("Missing", "Arn")]}),
            json!({"A": sub("${Missing.Arn}/*")}),
        ] {
            let mut t = Template::new("t");
            t.add_resource("Q", Resource::new("AWS::SQS::Queue", props))
                .unwrap();
            let err = t.check_references().unwrap_err();
            assert!(err.to_string().contains("`Missing`"), "{err}");
        }
        let mut t = Template::new("t");
        t.add_resource(
            "Q",
            Resource::new("AWS::SQS::Queue", json!({})).depends_on("Missing"),
        )
        .unwrap();
        assert!(t.check_references().is_err());

        let mut t = Template::new("t");
        let props = json!({
            "A": sub("${AWS::Region} ${!Literal} ${Q.Arn}"),
            "B": {"Fn::Sub": ["${Local}", {"Local": "x"}]},
        });
        t.add_resource("Q", Resource::new("AWS::SQS::Queue", props))
            .unwrap();
        t.check_references().unwrap();
    }
}
