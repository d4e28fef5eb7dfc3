//! CloudFormation intrinsic functions and pseudo parameters as JSON values.
//!
//! Each helper returns the exact shape CloudFormation documents (`{"Ref": "X"}`,
//! `{"Fn::GetAtt": ["X", "Attr"]}`, ...), so constructs never spell them by hand.

use serde_json::{Value, json};

/// `{"Ref": id}`: a resource's primary id (see each type's docs) or a parameter's value.
pub fn ref_(id: &str) -> Value {
    json!({ "Ref": id })
}

/// `{"Fn::GetAtt": [id, attribute]}`.
pub fn get_att(id: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [id, attribute] })
}

/// `{"Fn::Sub": template}`: `${Id}`, `${Id.Attr}` and `${AWS::Region}` are substituted.
pub fn sub(template: &str) -> Value {
    json!({ "Fn::Sub": template })
}

/// `{"Fn::Join": [delimiter, parts]}`.
pub fn join(delimiter: &str, parts: Vec<Value>) -> Value {
    json!({ "Fn::Join": [delimiter, parts] })
}

/// `{"Fn::Select": [index, list]}`.
pub fn select(index: usize, list: Value) -> Value {
    json!({ "Fn::Select": [index, list] })
}

/// `{"Fn::GetAZs": ""}`: the availability zones of the stack's region.
pub fn get_azs() -> Value {
    json!({ "Fn::GetAZs": "" })
}

/// `Ref AWS::Region`.
pub fn region() -> Value {
    ref_("AWS::Region")
}

/// `Ref AWS::StackName`.
pub fn stack_name() -> Value {
    ref_("AWS::StackName")
}

/// An ARN in the stack's partition, region and account:
/// `arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:<resource>`, where
/// `resource` may itself hold `${Id}` substitutions.
pub fn arn(service: &str, resource: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"
    ))
}

/// A tag list with one `Name` tag, as EC2 resources take it.
pub fn name_tag(name: Value) -> Value {
    json!([{ "Key": "Name", "Value": name }])
}
