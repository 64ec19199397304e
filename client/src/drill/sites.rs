//! The two regions of a drill: an S3 client and the admin API of each, the name each gives
//! the other as a replication peer, and the buckets the source replicates to the target.

use std::time::Duration;

use anyhow::{bail, Context as _};
use aws_sdk_s3::Client;
use meridian_api::{CheckpointReport, ReplicationStatus};
use serde::de::DeserializeOwned;

use crate::replication::{call, Endpoint};

/// One region.
pub struct Site {
    pub admin: Endpoint,
    pub s3: Client,
}

impl Site {
    pub fn new(admin: Endpoint) -> anyhow::Result<Site> {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(admin.region.clone()))
            .endpoint_url(&admin.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_credential_types::Credentials::new(
                &admin.access_key,
                &admin.secret_key,
                None,
                None,
                "drill",
            ))
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .timeout_config(
                aws_smithy_types::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        let config = match &admin.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?;
                config.http_client(crate::tls::sdk_https_client(pem))
            }
            None => config,
        };
        Ok(Site {
            admin,
            s3: Client::from_conf(config.build()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.admin.endpoint
    }

    pub async fn admin<T: DeserializeOwned>(&self, method: &str, path: &str) -> anyhow::Result<T> {
        call(&self.admin, method, path).await
    }

    /// The replication status of this region.
    pub async fn status(&self) -> anyhow::Result<ReplicationStatus> {
        self.admin("GET", "/_meridian/replication/status").await
    }

    /// The name this region gives the peer at `endpoint`, if it has one.
    pub async fn peer_named_for(&self, endpoint: &str) -> anyhow::Result<Option<String>> {
        let status = self.status().await?;
        let wanted = endpoint.trim_end_matches('/');
        Ok(status
            .peers
            .into_iter()
            .find(|p| p.endpoint.trim_end_matches('/') == wanted)
            .map(|p| p.peer))
    }

    /// Waits until the peer `peer` has everything this region committed so far.
    pub async fn checkpoint(
        &self,
        peer: &str,
        bucket: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<CheckpointReport> {
        let mut q = format!("?peer={peer}&timeout={}", timeout.as_secs_f64());
        if let Some(b) = bucket {
            q.push_str(&format!("&bucket={b}"));
        }
        self.admin("POST", &format!("/_meridian/replication/checkpoint{q}"))
            .await
    }

    /// Answers the readiness probe (after a restart).
    pub async fn ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.s3.list_buckets().send().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// A source bucket and where its versions go on the target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketPair {
    pub source: String,
    pub target: String,
}

/// The buckets the source replicates to the peer it calls `peer` (or only `only`).
pub async fn replicated_buckets(
    source: &Site,
    peer: &str,
    only: Option<&str>,
) -> anyhow::Result<Vec<BucketPair>> {
    let buckets = source
        .s3
        .list_buckets()
        .send()
        .await
        .context("listing the source's buckets")?;
    let mut out = Vec::new();
    for b in buckets.buckets() {
        let Some(name) = b.name() else { continue };
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let Ok(config) = source.s3.get_bucket_replication().bucket(name).send().await else {
            continue;
        };
        let destinations = config
            .replication_configuration()
            .map(|c| c.rules())
            .unwrap_or_default()
            .iter()
            .filter(|r| r.status().as_str() == "Enabled")
            .filter_map(|r| r.destination().map(|d| d.bucket().to_owned()))
            .collect::<Vec<_>>();
        for arn in destinations {
            let target = if let Some(rest) = arn.strip_prefix("arn:meridian:replication:") {
                match rest.split_once("::") {
                    Some((p, bucket)) if p == peer => bucket.to_owned(),
                    _ => continue,
                }
            } else if let Some(bucket) = arn.strip_prefix("arn:aws:s3:::") {
                bucket.to_owned()
            } else {
                continue;
            };
            let pair = BucketPair {
                source: name.to_owned(),
                target,
            };
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    if let Some(o) = only {
        if out.is_empty() {
            bail!("bucket {o:?} has no enabled replication rule to the target");
        }
    }
    Ok(out)
}
