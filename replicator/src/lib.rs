//! Geo-replication for Meridian: the peers a node replicates to, the bucket rules that say
//! what goes where, and one worker loop per peer that pushes committed changes — versions,
//! delete markers, tag changes — to it through aws-sdk-s3.
//!
//! Guarantees:
//! - nothing acknowledged is missed: every change is in the outbox (written in the same
//!   batch as the change), a peer's cursor moves only past changes whose outcome is durably
//!   settled, and failures wait in a durable retry queue, retried forever on a capped backoff;
//! - replicas are exact: same version id, mtime, ETag, checksums, headers, metadata and tags
//!   on Meridian peers, verified with a HEAD before a version counts as COMPLETED;
//! - no loops: replicas are never sent on.
//!
//! The server (`gateway`) owns HTTP: it supplies the bytes of stored objects through
//! [`ObjectSource`], records PENDING with each commit using [`Replicator::pending_peers`],
//! and applies replicas it receives using [`headers::ReplicaHeaders`].

mod backoff;
mod body;
pub mod config;
mod error;
pub mod headers;
mod peer;
mod pump;
pub mod rules;
mod rules_cache;
mod source;
mod throttle;
mod transfer;
mod upload;

use std::sync::Arc;

use meridian_metadata::{MetaError, MetaStore};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use config::{PeerConfig, PeerConfigError, PeerKind, ReplicationSettings};
pub use error::{ErrorClass, SendError};
pub use peer::DestinationCheck;
pub use rules::{Change, ReplicationConfig, RuleError, Target};
pub use rules_cache::RulesCache;
pub use source::{BoxError, ObjectBytes, ObjectSource};

use peer::Peer;
use pump::Pump;
use transfer::Shared;

struct PeerHandle {
    peer: Arc<Peer>,
    wakeup: Arc<Notify>,
}

/// The replication side of a node. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
    peers: Arc<Vec<PeerHandle>>,
}

impl Replicator {
    /// A replicator for `peers` (already validated); nothing runs until [`Replicator::spawn`].
    pub fn new(
        meta: MetaStore,
        source: Arc<dyn ObjectSource>,
        peers: Vec<PeerConfig>,
        settings: ReplicationSettings,
        region: String,
    ) -> Replicator {
        // Data streams in flight per peer: enough to keep the link busy, few enough that
        // memory stays at a few stripes each.
        let streams = settings.workers.clamp(4, 8);
        let peers = peers
            .into_iter()
            .map(|config| PeerHandle {
                peer: Arc::new(Peer::new(config, streams)),
                wakeup: Arc::new(Notify::new()),
            })
            .collect();
        Replicator {
            shared: Arc::new(Shared {
                rules: RulesCache::new(meta.clone()),
                meta,
                source,
                settings,
                region,
            }),
            peers: Arc::new(peers),
        }
    }

    /// Starts one worker loop per peer; they stop when `shutdown` flips.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.peers
            .iter()
            .map(|h| {
                let pump = Pump {
                    peer: h.peer.clone(),
                    shared: self.shared.clone(),
                    wakeup: h.wakeup.clone(),
                };
                tokio::spawn(pump.run(shutdown.clone()))
            })
            .collect()
    }

    /// The configured peers.
    pub fn peers(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.iter().map(|h| &h.peer.config)
    }

    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        self.peers().cloned().collect()
    }

    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Every bucket's replication rules, cached.
    pub fn rules(&self) -> &RulesCache {
        &self.shared.rules
    }

    /// The configured peers that must take this change under the bucket's current rules: the
    /// PENDING statuses to commit with it. Blocking on a rules-cache miss.
    pub fn pending_peers(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(String, String)],
        change: Change,
    ) -> Result<Vec<String>, MetaError> {
        if self.peers.is_empty() {
            return Ok(Vec::new());
        }
        let Some(rules) = self.shared.rules.get(bucket)? else {
            return Ok(Vec::new());
        };
        Ok(rules
            .targets(key, tags, change)
            .into_iter()
            .map(|t| t.peer)
            .filter(|p| self.peers().any(|c| &c.name == p))
            .collect())
    }

    /// Tells the worker loops that commits queued work for them.
    pub fn changed(&self) {
        for h in self.peers.iter() {
            h.wakeup.notify_one();
        }
    }

    /// Asks `peer` whether `bucket` exists there with versioning enabled.
    pub async fn check_destination(&self, peer: &str, bucket: &str) -> DestinationCheck {
        match self.peers.iter().find(|h| h.peer.name() == peer) {
            Some(h) => h.peer.check_destination(bucket).await,
            None => DestinationCheck::Unknown(format!("peer {peer:?} is not configured")),
        }
    }
}
