//! The data bucket: datasets and results, private and encrypted.
//!
//! An `AWS::S3::Bucket` (`DataBucket`) with default encryption, every public-access
//! block on, ACLs disabled (`BucketOwnerEnforced`), results (`results/…`) expiring
//! after `results_expire_days`, and incomplete multipart uploads (a dropped upload)
//! aborted after a day; plus an `AWS::S3::BucketPolicy` (`DataBucketPolicy`) refusing
//! any request not made over TLS. The bucket's name is left to CloudFormation (names
//! are global); tasks get it as `QUARRY_BLOB_STORE__BUCKET`.

use super::check_range;
use crate::error::{PropError, StackError};
use crate::intrinsic::{get_att, ref_, sub};
use crate::resource::{DeletionPolicy, Resource, Template};
use serde_json::json;

const CONSTRUCT: &str = "data bucket";

/// The bucket's logical id.
pub const BUCKET: &str = "DataBucket";

/// How objects are encrypted at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketEncryption {
    /// SSE-S3: keys managed by S3 (`AES256`); free, no key policy to manage.
    S3Managed,
    /// SSE-KMS with the account's `aws/s3` key and an S3 bucket key (fewer KMS calls).
    Kms,
}

/// Props of the data bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBucketProps {
    /// Days after which objects under `results/` expire (`stack.results_expire_days`).
    /// Default: 30.
    pub results_expire_days: u32,
    /// Days after which an incomplete multipart upload is aborted. Default: 1.
    pub abort_incomplete_upload_days: u32,
    /// Encryption at rest. Default: [`BucketEncryption::S3Managed`].
    pub encryption: BucketEncryption,
    /// What happens to the bucket (and its data) when it leaves the stack. Default:
    /// `Retain`.
    pub removal: DeletionPolicy,
}

impl Default for DataBucketProps {
    fn default() -> Self {
        Self {
            results_expire_days: 30,
            abort_incomplete_upload_days: 1,
            encryption: BucketEncryption::S3Managed,
            removal: DeletionPolicy::Retain,
        }
    }
}

impl DataBucketProps {
    /// Expiry days must be 1 or more (S3's minimum), and at most ten years.
    pub fn validate(&self) -> Vec<PropError> {
        [
            check_range(
                CONSTRUCT,
                "stack.results_expire_days",
                self.results_expire_days,
                "days",
                (1, 3650),
                " (S3 expires objects after whole days, at least one)",
            ),
            check_range(
                CONSTRUCT,
                "abort_incomplete_upload_days",
                self.abort_incomplete_upload_days,
                "days",
                (1, 365),
                "",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Adds the bucket and its policy.
pub fn add(template: &mut Template, props: &DataBucketProps) -> Result<(), StackError> {
    let encryption = match props.encryption {
        BucketEncryption::S3Managed => json!({
            "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" },
        }),
        BucketEncryption::Kms => json!({
            "ServerSideEncryptionByDefault": { "SSEAlgorithm": "aws:kms" },
            "BucketKeyEnabled": true,
        }),
    };
    template.add_resource(
        BUCKET,
        Resource::new(
            "AWS::S3::Bucket",
            json!({
                "BucketEncryption": { "ServerSideEncryptionConfiguration": [encryption] },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true,
                },
                "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": "expire-results",
                            "Status": "Enabled",
                            "Prefix": "results/",
                            "ExpirationInDays": props.results_expire_days,
                        },
                        {
                            "Id": "abort-incomplete-uploads",
                            "Status": "Enabled",
                            "AbortIncompleteMultipartUpload": {
                                "DaysAfterInitiation": props.abort_incomplete_upload_days,
                            },
                        },
                    ],
                },
            }),
        )
        .removal(props.removal),
    )?;
    template.add_resource(
        &format!("{BUCKET}Policy"),
        Resource::new(
            "AWS::S3::BucketPolicy",
            json!({
                "Bucket": ref_(BUCKET),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [get_att(BUCKET, "Arn"), sub(&format!("${{{BUCKET}.Arn}}/*"))],
                        "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                    }],
                },
            }),
        ),
    )
}
