//! The policy rules: the real templates pass, each rule catches its deliberately broken
//! template (and only that rule fires), and suppressions need a reason.

use crate::helpers::{config, edited_staging, template_value};
use quarry_stacks::config::Suppression;
use quarry_stacks::policy::{Rule, check, check_with};
use quarry_stacks::synth;
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[test]
fn the_real_templates_pass_every_rule() {
    for environment in ["staging", "production"] {
        let report = check(&template_value(environment), &config(environment));
        assert!(report.findings.is_empty(), "{environment}: {report}");
        assert!(!report.blocks_deploy());
    }
}

/// Breaks `environment`'s template with `edit`, checks it, and asserts that exactly
/// `rule` fires, on exactly `resource`.
fn assert_only(environment: &str, rule: Rule, resource: &str, edit: impl FnOnce(&mut Value)) {
    let mut template = template_value(environment);
    edit(&mut template);
    let report = check(&template, &config(environment));
    assert_eq!(report.rules_violated(), BTreeSet::from([rule]), "{report}");
    let resources: Vec<&str> = report.violations().map(|f| f.resource.as_str()).collect();
    assert_eq!(resources, [resource], "{report}");
    assert!(report.blocks_deploy());
    let text = report.to_string();
    assert!(
        text.contains(&format!("[{}] {resource}: ", rule.id())),
        "{text}"
    );
}

fn props<'a>(template: &'a mut Value, id: &str) -> &'a mut Value {
    &mut template["Resources"][id]["Properties"]
}

#[test]
fn encryption_catches_an_unencrypted_bucket_queue_and_database() {
    assert_only("staging", Rule::Encryption, "DataBucket", |t| {
        props(t, "DataBucket")
            .as_object_mut()
            .unwrap()
            .remove("BucketEncryption");
    });
    assert_only("staging", Rule::Encryption, "DeadLetterQueue", |t| {
        props(t, "DeadLetterQueue")["SqsManagedSseEnabled"] = json!(false);
    });
    assert_only("staging", Rule::Encryption, "Database", |t| {
        props(t, "Database")["StorageEncrypted"] = json!("false");
    });
}

#[test]
fn no_public_bucket_catches_a_lifted_public_access_block() {
    assert_only("staging", Rule::NoPublicBucket, "DataBucket", |t| {
        props(t, "DataBucket")["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] =
            json!(false);
    });
    let mut template = template_value("staging");
    props(&mut template, "DataBucket")
        .as_object_mut()
        .unwrap()
        .remove("PublicAccessBlockConfiguration");
    let report = check(&template, &config("staging"));
    let finding = report.violations().next().unwrap();
    assert!(
        finding.message.contains(
            "BlockPublicAcls, BlockPublicPolicy, IgnorePublicAcls, RestrictPublicBuckets"
        ),
        "{finding}"
    );
}

#[test]
fn no_public_database_catches_a_publicly_accessible_instance() {
    assert_only("staging", Rule::NoPublicDatabase, "Database", |t| {
        props(t, "Database")["PubliclyAccessible"] = json!(true);
    });
    // Without the flag and without a subnet group, RDS makes it public.
    assert_only("staging", Rule::NoPublicDatabase, "Database", |t| {
        let p = props(t, "Database").as_object_mut().unwrap();
        p.remove("PubliclyAccessible");
        p.remove("DBSubnetGroupName");
    });
}

#[test]
fn no_iam_star_catches_an_allow_everything_statement() {
    assert_only("staging", Rule::NoIamStar, "WorkerTaskRole", |t| {
        let statements =
            &mut props(t, "WorkerTaskRole")["Policies"][0]["PolicyDocument"]["Statement"];
        statements.as_array_mut().unwrap().push(json!({
            "Sid": "Oops", "Effect": "Allow", "Action": "*", "Resource": ["*"],
        }));
    });
    assert_only("staging", Rule::NoIamStar, "Sneaky", |t| {
        t["Resources"]["Sneaky"] = json!({
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": {
                "Effect": "Allow", "Action": ["*:*"], "Resource": "*",
            }}},
        });
    });
    // A scoped `*` resource with a condition (PutMetricData) is not a violation, nor is
    // a Deny of everything.
    assert_only("staging", Rule::NoIamStar, "ApiTaskRole", |t| {
        props(t, "ApiTaskRole")["ManagedPolicyArns"] =
            json!([{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess"}]);
        let statements = &mut props(t, "ApiTaskRole")["Policies"][0]["PolicyDocument"]["Statement"];
        statements.as_array_mut().unwrap().push(json!({
            "Effect": "Deny", "Action": "*", "Resource": "*",
        }));
    });
}

#[test]
fn log_retention_catches_a_log_group_kept_forever() {
    assert_only("staging", Rule::LogRetention, "ApiLogGroup", |t| {
        props(t, "ApiLogGroup")
            .as_object_mut()
            .unwrap()
            .remove("RetentionInDays");
    });
}

#[test]
fn production_retains_data_catches_deletable_state_in_production_only() {
    assert_only("production", Rule::ProductionRetainsData, "Database", |t| {
        t["Resources"]["Database"]["DeletionPolicy"] = json!("Delete");
    });
    assert_only("production", Rule::ProductionRetainsData, "JobQueue", |t| {
        t["Resources"]["JobQueue"]
            .as_object_mut()
            .unwrap()
            .remove("UpdateReplacePolicy");
    });
    // Snapshot keeps a database's data, not a bucket's.
    assert_only(
        "production",
        Rule::ProductionRetainsData,
        "DataBucket",
        |t| {
            t["Resources"]["Database"]["DeletionPolicy"] = json!("Snapshot");
            t["Resources"]["DataBucket"]["DeletionPolicy"] = json!("Snapshot");
        },
    );
    // Staging deletes its data on purpose.
    let report = check(&template_value("staging"), &config("staging"));
    assert!(report.findings.is_empty(), "{report}");
}

fn public_database() -> Value {
    let mut template = template_value("staging");
    props(&mut template, "Database")["PubliclyAccessible"] = json!(true);
    template
}

#[test]
fn a_suppression_with_a_reason_suppresses_and_shows_it() {
    let suppressions = [Suppression {
        rule: "no-public-database".into(),
        resource: "Database".into(),
        reason: "a throwaway demo database, reached from the office".into(),
    }];
    let report = check_with(&public_database(), false, &suppressions);
    assert!(!report.blocks_deploy(), "{report}");
    let finding = report.suppressed().next().unwrap();
    assert_eq!(
        finding.suppressed.as_deref(),
        Some("a throwaway demo database, reached from the office")
    );
    assert!(
        report
            .to_string()
            .contains("(suppressed: a throwaway demo database"),
        "{report}"
    );

    // From the environment file, the same.
    let config = edited_staging(
        "# [[stack.suppress]]\n# rule = \"no-iam-star\"\n# resource = \"SomeRole\"\n# reason = \"why it is acceptable here\"",
        "[[stack.suppress]]\nrule = \"no-public-database\"\nresource = \"Database\"\nreason = \"demo\"",
    )
    .unwrap();
    synth(&config).unwrap();
    assert!(!check(&public_database(), &config).blocks_deploy());
    // With nothing to suppress it is reported as stale, without blocking.
    let report = check(&template_value("staging"), &config);
    assert!(!report.blocks_deploy());
    assert_eq!(report.unused_suppressions.len(), 1);
    assert!(report.to_string().contains("matches nothing"), "{report}");
}

#[test]
fn a_suppression_without_a_reason_is_an_error_and_suppresses_nothing() {
    let suppressions = [Suppression {
        rule: "no-public-database".into(),
        resource: "Database".into(),
        reason: "  ".into(),
    }];
    let report = check_with(&public_database(), false, &suppressions);
    assert!(report.blocks_deploy());
    assert_eq!(
        report.rules_violated(),
        BTreeSet::from([Rule::NoPublicDatabase])
    );
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0]
            .to_string()
            .contains("`stack.suppress[0].reason` = \"  \" is empty: say why rule `no-public-database` does not apply to `Database`"),
        "{report}"
    );

    // In the environment file it stops synthesis too.
    let config = edited_staging(
        "# [[stack.suppress]]\n# rule = \"no-iam-star\"\n# resource = \"SomeRole\"\n# reason = \"why it is acceptable here\"",
        "[[stack.suppress]]\nrule = \"no-public-database\"\nresource = \"Database\"",
    )
    .unwrap();
    let message = synth(&config).unwrap_err().to_string();
    assert!(message.contains("stack.suppress[0].reason"), "{message}");
}

#[test]
fn a_suppression_of_an_unknown_rule_is_an_error() {
    let suppressions = [Suppression {
        rule: "no-public-bucket-please".into(),
        resource: "DataBucket".into(),
        reason: "typo".into(),
    }];
    let report = check_with(&template_value("staging"), false, &suppressions);
    assert!(report.blocks_deploy());
    assert!(
        report.errors[0]
            .to_string()
            .contains("is not a policy rule: use one of encryption, no-public-bucket"),
        "{report}"
    );
}
