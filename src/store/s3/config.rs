//! The SDK client behind an [`S3Store`](super::S3Store): the target's Go CDK URL parameters
//! (`region=`, `profile=`, `endpoint=`, path style) over the standard AWS configuration chain,
//! with the SDK's own retries and default checksums turned off.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};

use crate::target::S3Target;

/// Connects (lazily) to the target's endpoint; credentials come from the standard AWS chain.
pub(super) async fn client(target: &S3Target) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &target.region {
        // Used verbatim: Garage checks the region in every signature.
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(target.force_path_style)
        // aws-sdk-s3 ≥ 1.69 adds CRC32 trailers by default, which Garage and others refuse.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // Retries are the shared policy's (see the `s3` module docs), not the SDK's.
        .retry_config(RetryConfig::disabled())
        // A stalled connection counts as a transient failure instead of hanging the run.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if shared.region().is_none() {
        conf = conf.region(Region::new("us-east-1"));
    }
    if let Some(endpoint) = &target.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Client::from_conf(conf.build())
}
