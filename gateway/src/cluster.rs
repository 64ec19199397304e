//! This node's place in a region of several nodes (`[cluster]` in the config): it registers
//! in the control plane (etcd) and holds its lease there, and takes client writes only while
//! it holds it — a node cut off from etcd stops writing by itself before its partitions can
//! be handed to another. The data plane of such a region (copies on R nodes, forwarding,
//! merged listings) is being built: see docs/CLUSTER.md.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meridian_cluster::control::{ControlPlane, WriteGate};
use meridian_metadata::MetaStore;
use serde::Deserialize;

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://127.0.0.1:2379`).
    pub etcd: Vec<String>,
    /// Where the other nodes and clients reach this node's S3 endpoint.
    pub endpoint: String,
    /// This node's relative capacity in the layout.
    #[serde(default = "one")]
    pub weight: u32,
    /// The node's id; when unset, one is given at the first join and kept in the metadata.
    pub node_id: Option<u32>,
    /// How long the node's lease lasts without a keep-alive (kept alive every third of it).
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub lease_ttl: Duration,
}

fn one() -> u32 {
    1
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// The metadata setting that keeps the node's id once it was given one.
const NODE_ID: &str = "cluster/node-id";

/// Whether this node may take client writes: always without `[cluster]`, else while it
/// holds its lease.
#[derive(Clone, Default)]
pub struct ClusterGate {
    gate: Option<Arc<OnceLock<WriteGate>>>,
}

impl ClusterGate {
    pub fn may_write(&self) -> bool {
        match &self.gate {
            None => true,
            Some(g) => g.get().is_some_and(WriteGate::may_write),
        }
    }

    /// Joins the control plane in the background (again and again until etcd answers) and
    /// holds the lease for the life of the process.
    pub fn join(config: ClusterConfig, region: String, meta: MetaStore) -> ClusterGate {
        let cell = Arc::new(OnceLock::new());
        tokio::spawn(hold(config, region, meta, cell.clone()));
        ClusterGate { gate: Some(cell) }
    }
}

async fn hold(
    config: ClusterConfig,
    region: String,
    meta: MetaStore,
    cell: Arc<OnceLock<WriteGate>>,
) {
    let mut delay = Duration::from_millis(200);
    let (control, record) = loop {
        match join_once(&config, &region, &meta).await {
            Ok(joined) => break joined,
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the cluster's control plane yet: no client writes until it does");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    tracing::info!(node = record.id, endpoint = %record.endpoint, "joined the cluster's control plane");
    let membership = control.hold(record, config.lease_ttl);
    let _ = cell.set(membership.gate());
    // The membership lives as long as the process; dropping it would give up the lease.
    std::future::pending::<()>().await;
    drop(membership);
}

async fn join_once(
    config: &ClusterConfig,
    region: &str,
    meta: &MetaStore,
) -> anyhow::Result<(ControlPlane, meridian_cluster::control::NodeRecord)> {
    let control = ControlPlane::connect(&config.etcd, region).await?;
    let stored = {
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || meta.setting(NODE_ID)).await??
    };
    let known = match (config.node_id, stored) {
        (Some(id), _) => Some(id),
        (None, Some(bytes)) => Some(
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("the stored cluster node id is not a number"))?,
        ),
        (None, None) => None,
    };
    let record = control
        .register(known, &config.endpoint, config.weight)
        .await?;
    if known.is_none() {
        let meta = meta.clone();
        let id = record.id.to_string();
        tokio::task::spawn_blocking(move || meta.put_setting(NODE_ID, Some(id.as_bytes())))
            .await??;
    }
    Ok((control, record))
}
