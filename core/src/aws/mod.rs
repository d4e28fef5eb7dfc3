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
///
/// Off AWS (see [`imds_wanted`]) the EC2 instance-metadata service is left out of the
/// region and credential chains: on an operator's laptop it does not exist, and asking
/// it costs a timeout and a long warning on every call that needs credentials.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let imds = imds_wanted(
        std::env::var("AWS_EC2_METADATA_DISABLED").ok().as_deref(),
        std::env::var_os("AWS_EXECUTION_ENV").is_some(),
        on_ec2(),
    );
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client());
    let fixed = (!region.is_empty()).then(|| aws_config::Region::new(region.to_owned()));
    if let Some(r) = &fixed {
        loader = loader.region(r.clone());
    }
    if !imds {
        use aws_config::meta::credentials::CredentialsProviderChain;
        use aws_config::meta::region::RegionProviderChain;
        use aws_config::provider_config::ProviderConfig;
        let region = match fixed {
            Some(r) => Some(r),
            None => {
                RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::ProfileFileRegionProvider::new())
                .region()
                .await
            }
        };
        // Set even when none was found, so that the loader does not fall back on its
        // default chain (which ends in IMDS).
        loader = loader.region(region.clone());
        let conf = ProviderConfig::default()
            .with_http_client(http_client())
            .with_region(region);
        let chain = CredentialsProviderChain::first_try(
            "Environment",
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else(
            "Profile",
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        )
        .or_else(
            "WebIdentityToken",
            aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        )
        .or_else(
            "EcsContainer",
            aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        );
        loader = loader.credentials_provider(chain);
    }
    loader.load().await
}

/// Whether the SDK may ask the EC2 instance-metadata service (IMDS) for credentials and
/// region: when `AWS_EC2_METADATA_DISABLED` says so (`false` forces it on, anything
/// else off), or else when this process runs on AWS (`AWS_EXECUTION_ENV`, set on ECS
/// and Lambda, or an EC2 machine).
pub fn imds_wanted(disabled: Option<&str>, execution_env: bool, on_ec2: bool) -> bool {
    match disabled.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("false") => true,
        Some(v) if !v.is_empty() => false,
        _ => execution_env || on_ec2,
    }
}

/// Whether this machine is an EC2 instance, by its firmware's vendor (Nitro) or its
/// Xen hypervisor's id, without a network call.
fn on_ec2() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    read("/sys/devices/virtual/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/devices/virtual/dmi/id/board_asset_tag").starts_with("i-")
        || read("/sys/hypervisor/uuid")
            .to_ascii_lowercase()
            .starts_with("ec2")
}

/// The SDK configuration for an AWS emulator at `endpoint_url` (tests): fixed dummy
/// credentials and region, so nothing from the machine's environment leaks in.
#[cfg(any(test, feature = "testing"))]
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

#[cfg(test)]
mod imds_tests {
    use super::imds_wanted;

    #[test]
    fn imds_is_asked_only_on_aws_or_when_forced() {
        // A laptop: no marker, no EC2 firmware.
        assert!(!imds_wanted(None, false, false));
        // ECS or Lambda, or an EC2 machine.
        assert!(imds_wanted(None, true, false));
        assert!(imds_wanted(None, false, true));
        // The SDK's own switch wins either way.
        assert!(imds_wanted(Some("false"), false, false));
        assert!(!imds_wanted(Some("true"), true, true));
        assert!(imds_wanted(Some(""), true, false));
    }
}
