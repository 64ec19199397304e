//! One peer region as the replicator talks to it: an aws-sdk-s3 client for its endpoint and
//! credentials, and the request settings every call to it shares (no SDK retries — the
//! replicator retries whole changes itself, from durable state; timeouts on calls without a
//! body; checksums only where the replicator asks for them).

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::types::BucketVersioningStatus;
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use tokio::sync::Semaphore;

use crate::config::{PeerConfig, PeerKind};
use crate::error::SendError;
use crate::metrics::PeerMetrics;
use crate::throttle::Throttle;

/// How long a call without a data body may take (HEAD, create, complete, delete, tagging).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A data transfer that moves no byte for this long has stalled (a blackholed link): it fails
/// and is retried, resuming at the part where it stopped. No deadline on a whole object.
const STALL_GRACE: Duration = Duration::from_secs(30);

/// A peer and its client.
pub struct Peer {
    pub config: PeerConfig,
    pub(crate) client: Client,
    /// Data streams (single PUTs and parts) in flight to this peer: bounds memory and sockets.
    pub(crate) streams: Semaphore,
    /// The peer's bandwidth cap, shared by its transfers.
    pub(crate) throttle: Option<Arc<Throttle>>,
    pub(crate) metrics: PeerMetrics,
}

/// Sets a peer's [`Stamp`](crate::config::Stamp) headers on each request as it leaves.
#[derive(Debug)]
struct StampHeaders(crate::config::Stamp);

impl aws_sdk_s3::config::Intercept for StampHeaders {
    fn name(&self) -> &'static str {
        "meridian-peer-stamp"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let headers = context.request_mut().headers_mut();
        for (name, value) in (self.0 .0)() {
            headers.insert(name, value);
        }
        Ok(())
    }
}

/// What a peer says about a destination bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationCheck {
    /// Exists with versioning enabled.
    Ready,
    Missing,
    NotVersioned,
    /// Could not ask (the problem will show as FAILED or PENDING later).
    Unknown(String),
}

impl Peer {
    pub(crate) fn new(config: PeerConfig, stream_limit: usize, metrics: PeerMetrics) -> Peer {
        let sdk = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(&config.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &config.access_key,
                &config.secret_key,
                None,
                None,
                "meridian-peer",
            ))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            );
        let sdk = match config.read_ca_file() {
            _ if config.tls_insecure => {
                tracing::warn!(
                    peer = %config.name,
                    endpoint = %config.endpoint,
                    "tls_insecure: this peer's certificate is NOT verified; anyone on the path can pose as it"
                );
                sdk.http_client(crate::insecure::unverified_https_client(CONNECT_TIMEOUT))
            }
            Ok(Some(pem)) => sdk.http_client(https_client_trusting(pem)),
            Ok(None) => sdk,
            Err(e) => {
                // Checked at start-up; a file changed since then trusts nothing, and says so
                // in every failure.
                tracing::error!(peer = %config.name, error = %e, "peer CA file unusable");
                sdk.http_client(https_client_trusting(Vec::new()))
            }
        };
        let sdk = sdk.interceptor(crate::blank_key::BlankKeys);
        let sdk = match &config.stamp {
            Some(stamp) => sdk.interceptor(StampHeaders(stamp.clone())),
            None => sdk,
        };
        let sdk = sdk.build();
        Peer {
            throttle: config.bandwidth.map(|rate| Arc::new(Throttle::new(rate))),
            config,
            client: Client::from_conf(sdk),
            streams: Semaphore::new(stream_limit.max(1)),
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_meridian(&self) -> bool {
        self.config.kind == PeerKind::Meridian
    }

    /// The S3 client for this peer (proxy reads use it too).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether `bucket` exists on the peer with versioning enabled.
    pub async fn check_destination(&self, bucket: &str) -> DestinationCheck {
        let answer = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .customize()
            .config_override(control_call())
            .send()
            .await;
        match answer {
            Ok(out) if out.status() == Some(&BucketVersioningStatus::Enabled) => {
                DestinationCheck::Ready
            }
            Ok(_) => DestinationCheck::NotVersioned,
            Err(e) => {
                let e = SendError::from_sdk(&format!("GetBucketVersioning {bucket}"), e);
                if e.is_code("NoSuchBucket") {
                    DestinationCheck::Missing
                } else {
                    DestinationCheck::Unknown(e.message)
                }
            }
        }
    }
}

/// An HTTPS client for the AWS SDK that trusts only the CA certificates in `pem` (a
/// private CA between regions, or a tool talking to a region).
pub fn https_client_trusting(pem: Vec<u8>) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty().with_pem_certificate(pem);
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context from a trust store");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https()
}

/// Settings of a call without a data body: bounded in time, no checksum the replicator did
/// not ask for.
pub(crate) fn control_call() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(CONTROL_TIMEOUT)
                .build(),
        )
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
}

/// Settings of a call that streams object data. `sdk_checksum`: let the SDK compute the
/// checksum algorithm set on the request as an aws-chunked trailer, on the way out (used when
/// the part's checksum is not known in advance); otherwise only the values the replicator
/// sets in headers are sent.
pub(crate) fn data_call(sdk_checksum: bool) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().request_checksum_calculation(if sdk_checksum {
        RequestChecksumCalculation::WhenSupported
    } else {
        RequestChecksumCalculation::WhenRequired
    })
}

/// A request mutation adding `headers` (before signing, so they are signed).
pub(crate) fn add_headers(
    headers: Vec<(&'static str, String)>,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    move |req| {
        for (name, value) in &headers {
            req.headers_mut().insert(*name, value.clone());
        }
    }
}
