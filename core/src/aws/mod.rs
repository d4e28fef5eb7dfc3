//! The cloud column: AWS adapters for every port, on the official SDK.
//!
//! * [`sqs::SqsQueue`]: the job queue on SQS with a dead-letter queue;
//! * [`s3::S3BlobStore`]: datasets and results in S3 (multipart, ranged, presigned);
//! * [`cloudwatch::CloudWatchMetrics`]: samples to and from CloudWatch;
//! * [`ecs::EcsFleet`]: workers as ECS Fargate tasks (Spot with an on-demand base).
//!
//! Every client shares one [`aws_config::SdkConfig`] from [`sdk_config`]: credentials
//! and region from the usual chain (environment, profile, ECS task role), and
//! `AWS_ENDPOINT_URL` when set, which is how the tests point the SDK at an emulator.

pub mod cloudwatch;
pub mod ecs;
pub mod s3;
pub mod sqs;

pub use aws_config::SdkConfig;

use crate::error::Error;
use aws_smithy_http_client::tls;
use std::error::Error as StdError;

/// The SDK's HTTP client: rustls on ring, because the SDK's default TLS stack
/// (aws-lc) is a long C build.
fn http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK configuration for this process. `region` (from `aws.region`) wins over the
/// environment's when it is set.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client());
    if !region.is_empty() {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// The SDK configuration for an AWS emulator at `endpoint_url` (tests): fixed dummy
/// credentials and region, so nothing from the machine's environment leaks in.
pub async fn emulator_config(endpoint_url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .endpoint_url(endpoint_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

/// The error code and message of a failed SDK call, for matching on the code.
pub(crate) fn error_code<E>(e: &aws_sdk_sqs::error::SdkError<E>) -> Option<&str>
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code())
}

/// An SDK failure as an internal error, with the whole chain of causes for the log.
pub(crate) fn internal<E>(what: &str, e: E) -> Error
where
    E: StdError + Send + Sync + 'static,
{
    let mut text = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Internal(anyhow::anyhow!(text))
}

/// Rounds a duration up to whole seconds, as SQS and CloudWatch count them.
pub(crate) fn whole_secs(d: std::time::Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}
