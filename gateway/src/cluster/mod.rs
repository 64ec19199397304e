//! This node's place in a region of several nodes (`[cluster]` in the config).
//!
//! - **Control plane**: the node registers in etcd and holds its lease there; it takes client
//!   writes only while it holds it, so a node cut off from etcd stops writing by itself
//!   before its partitions can be handed to another.
//! - **Routing**: a request for an object goes to the primary of the object's partition (any
//!   node forwards it, streamed, with the client's signed headers untouched); a change to a
//!   bucket (create, delete, configurations) is served here and goes to the region's bucket
//!   catalogue in etcd, which every node applies (`catalogue`).
//! - **Copies**: the primary commits a version and the followers get it through the
//!   replication machinery (one `sync` peer per other node, named `cluster.node-<id>`, whose
//!   outbox also catches a returning node up). The write is acknowledged once every follower
//!   that is not marked down has it; a follower that does not answer within `copy_timeout`
//!   is marked down in etcd (a new layout version) first — never silently.
//! - **Fencing**: every copy names the sender and its layout version; a node refuses a copy
//!   from a node that is not the partition's primary in its layout (fetching a newer layout
//!   first when the copy names one).
//! - **Failover**: the lowest live node marks nodes whose lease lapsed down, which promotes
//!   a follower of each partition they led. A node marked down marks itself up once no other
//!   node has copies queued for it.
//! - **Work for other nodes** (`delegated`): a DeleteObjects is served where it arrives and
//!   each key is deleted by its primary; a copy is served at the destination's primary,
//!   which reads a source led elsewhere from that source's primary.
//! - **Listings**: every node answers for the keys of the partitions it leads; a listing is
//!   the merge of their pages (see `merge_*`).
//!
//! What is not built yet is listed in docs/CLUSTER.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use meridian_cluster::control::{ControlPlane, Membership, NodeRecord, WriteGate};
use meridian_cluster::layout::{Layout, NodeId};
use meridian_metadata::{
    ListObjectsPage, ListObjectsQuery, ListUploadsPage, ListUploadsQuery, ListVersionsPage,
    ListVersionsQuery, MetaStore, ObjectSummary, PeerStatus,
};
use meridian_replicator::{
    Leads, ObjectSource, PeerConfig, PeerMode, ReplicationSettings, Replicator, StagedBody, Stamp,
};
use s3s::Body;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

mod catalogue;
mod delegated;
mod keys;
mod reclaim;
mod reship;
pub mod stage;
pub use catalogue::PendingChange;
pub use delegated::{ByteStream, Condition, Delegated, DeleteItem, Deleted, Refusal, SourceAsk};

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
    /// How long a primary waits for a follower's copy before marking it down (plus the
    /// version's size at 16 MiB/s: a large version takes longer to copy).
    #[serde(default = "five_seconds", with = "humantime_serde")]
    pub copy_timeout: Duration,
}

fn one() -> u32 {
    1
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

/// The slowest copy rate (bytes/s) a follower is allowed before it counts as late: a
/// version's copy may take `copy_timeout` plus its size at this rate.
const COPY_RATE_FLOOR: f64 = 16.0 * 1024.0 * 1024.0;

/// The metadata setting that keeps the node's id once it was given one.
const NODE_ID: &str = "cluster/node-id";

/// On requests between the nodes: the region's hop token (derived from the root secret every
/// node shares). A request carrying it is served where it arrives, never forwarded again.
pub const HOP: &str = "x-meridian-cluster-hop";
/// On copies: the node that sent it.
pub const FROM: &str = "x-meridian-cluster-from";
/// On copies: the version of the layout the sender went by.
pub const EPOCH: &str = "x-meridian-cluster-epoch";
/// The internal endpoints, between the nodes only.
pub const INTERNAL: &str = "/_meridian/cluster/";
/// How often a node reads the layout and the members from etcd.
const REFRESH: Duration = Duration::from_millis(500);
/// A write is acknowledged only on a view of the layout read less than this long ago (read
/// again first otherwise), and a staged layout is put in force only once it has been staged
/// for twice this long: so every acknowledged write chose its copies knowing the staged
/// layout, or was committed before the walk that fills it.
const VIEW_TTL: Duration = Duration::from_secs(2);

/// The name of the replication peer that carries copies to node `id`: not a valid name of a
/// configured peer, so the two never mix.
pub fn copy_peer(id: NodeId) -> String {
    format!("cluster.node-{id}")
}

fn copy_peer_id(name: &str) -> Option<NodeId> {
    name.strip_prefix("cluster.node-")?.parse().ok()
}

/// What a node knows of the region, refreshed from etcd.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub layout: Option<Arc<Layout>>,
    /// The next layout, while its new copies are filled.
    pub staged: Option<Arc<Layout>>,
    pub endpoints: BTreeMap<NodeId, String>,
    pub alive: Vec<NodeId>,
    /// When it was read from etcd.
    pub read_at: Option<Instant>,
}

struct Joined {
    id: NodeId,
    control: ControlPlane,
    gate: WriteGate,
    /// Held for the life of the process; dropping it would give up the lease.
    _membership: Membership,
}

/// What the node needs to make copies: a replicator with one `sync` peer per other node.
pub struct CopyParts {
    pub meta: MetaStore,
    pub source: Arc<dyn ObjectSource>,
    pub settings: ReplicationSettings,
    pub root: (String, String),
    pub geo_peers: Vec<String>,
}

struct Copies {
    replicator: Replicator,
    peers: BTreeMap<NodeId, String>,
    stop: watch::Sender<bool>,
}

pub struct ClusterNode {
    config: ClusterConfig,
    region: String,
    hop: String,
    parts: CopyParts,
    domains: crate::host::Domains,
    joined: OnceLock<Joined>,
    view: Arc<RwLock<Arc<View>>>,
    epoch: Arc<AtomicU64>,
    copies: Mutex<Option<Copies>>,
    /// The staged and current layout versions this node is filling for (or has filled).
    filling: Mutex<Option<(u64, u64)>>,
    /// The staged layout version this node saw first, and when.
    staged_seen: Mutex<Option<(u64, Instant)>>,
    http: Client<HttpConnector, Body>,
    /// The S3 layer, for work done on other nodes' behalf (set once it is built).
    delegate: OnceLock<Arc<dyn Delegated>>,
    /// Run-time access keys, kept in etcd with the region's (set once opened).
    keys: OnceLock<keys::KeyParts>,
    /// What this node applied of the keys in etcd; held while a key change is written there.
    keys_applied: Arc<tokio::sync::Mutex<keys::KeysApplied>>,
    keys_ready: AtomicBool,
    /// What this node applied of the bucket catalogue; held while a bucket change is served.
    catalogue: Arc<tokio::sync::Mutex<catalogue::Applied>>,
    catalogue_ready: AtomicBool,
    /// Nodes marked down whose versions this node ships to the peer regions: a walk under
    /// way (`None`) or when one last ended.
    reshipping: Mutex<BTreeMap<NodeId, Option<Instant>>>,
    /// The layout version whose left-behind copies this node removed (0: none yet).
    reclaimed: AtomicU64,
    /// Walks that remove left-behind copies: under way, or when the next may start.
    reclaiming: Mutex<reclaim::Walks>,
    /// The layout version in force here, and since when this node knows it.
    layout_seen: Mutex<(u64, Instant)>,
    /// The bodies this node's followers hold staged for the copies it will send them.
    streamed: Arc<stage::Streamed>,
}

/// Whether this node may take client writes, and its cluster if it is in one.
#[derive(Clone, Default)]
pub struct ClusterGate {
    node: Option<Arc<ClusterNode>>,
}

impl ClusterGate {
    pub fn may_write(&self) -> bool {
        match &self.node {
            None => true,
            Some(n) => n.holds_lease(),
        }
    }

    pub fn node(&self) -> Option<&Arc<ClusterNode>> {
        self.node.as_ref()
    }

    /// Joins the control plane in the background (again and again until etcd answers),
    /// holds the lease for the life of the process, and keeps the region's view fresh.
    pub fn join(
        config: ClusterConfig,
        region: String,
        domains: crate::host::Domains,
        parts: CopyParts,
    ) -> ClusterGate {
        let hop = hop_token(&region, &parts.root.1);
        let reclaimed = ClusterNode::reclaimed_setting(&parts.meta);
        let node = Arc::new(ClusterNode {
            config,
            region,
            hop,
            parts,
            domains,
            joined: OnceLock::new(),
            view: Arc::new(RwLock::new(Arc::new(View::default()))),
            epoch: Arc::new(AtomicU64::new(0)),
            copies: Mutex::new(None),
            filling: Mutex::new(None),
            staged_seen: Mutex::new(None),
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            delegate: OnceLock::new(),
            keys: OnceLock::new(),
            keys_applied: Arc::new(tokio::sync::Mutex::new(keys::KeysApplied::default())),
            keys_ready: AtomicBool::new(false),
            catalogue: Arc::new(tokio::sync::Mutex::new(catalogue::Applied::default())),
            catalogue_ready: AtomicBool::new(false),
            reshipping: Mutex::new(BTreeMap::new()),
            reclaimed: AtomicU64::new(reclaimed),
            reclaiming: Mutex::new(reclaim::Walks::default()),
            layout_seen: Mutex::new((0, Instant::now())),
            streamed: Arc::default(),
        });
        tokio::spawn(node.clone().run());
        ClusterGate { node: Some(node) }
    }
}

/// What a wait for copies waits for.
#[derive(Clone, Copy)]
enum Copied {
    /// A version of `size` bytes.
    Version { size: u64 },
    /// A version's removal.
    Removal,
}

/// The hop token of a region whose nodes share the root secret `secret`.
pub fn hop_token(region: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"meridian-cluster-hop\0");
    h.update(region.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Sends `req` where it is served: `Ok` with the request when that is here (and, for a bucket
/// change, the change begun: see [`ClusterNode::finish_bucket_change`]), `Err` with the
/// answer when it was forwarded or refused.
pub async fn routed(
    node: &ClusterNode,
    req: Request<Body>,
) -> Result<(Request<Body>, Option<PendingChange>), Response<Body>> {
    if node.is_hop(req.headers()) {
        node.catch_up_with(req.headers()).await;
        if req.uri().path().starts_with(crate::admin::AdminApi::PREFIX) {
            // Another node's access key change (`/_meridian/keys-sync`), as root.
            return Ok((req, None));
        }
        let moved = || {
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The region's layout is changing: try again",
            )
        };
        if req.headers().contains_key(FROM) {
            node.check_copy(&req).await?;
        } else if crate::post_form::is_form(&req) {
            // A forwarded form is written here only if this node still leads its key.
            let bucket = node
                .bucket_and_key(&req)
                .map(|(b, _)| b)
                .unwrap_or_default();
            let (req, key) = crate::post_form::form_key(req).await;
            if key.is_some_and(|key| node.leader_elsewhere(&bucket, &key).is_some()) {
                return Err(moved());
            }
            return Ok((req, None));
        } else if !node.leads_forwarded(&req) {
            return Err(moved());
        }
        return Ok((req, None));
    }
    // Only a node may say a write is its copy (see `check_copy`).
    let mut req = req;
    req.headers_mut().remove(FROM);
    // A node without its lease has a view of the region that may be stale: it sends no
    // writes anywhere (reads go on).
    let read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let admin = req.uri().path().starts_with(crate::admin::AdminApi::PREFIX);
    if !read && !admin && !node.holds_lease() {
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "This node does not hold its lease in the cluster's control plane: it takes no writes until it does",
        ));
    }
    match node.route(&req) {
        Route::Local => Ok((req, None)),
        Route::Forward(endpoint) => Err(node.forward(&endpoint, req).await),
        Route::Refuse(status, code, message) => Err(error_response(status, code, message)),
        Route::Form => {
            let bucket = node
                .bucket_and_key(&req)
                .map(|(b, _)| b)
                .unwrap_or_default();
            let (req, key) = crate::post_form::form_key(req).await;
            let elsewhere = key.and_then(|key| node.leader_elsewhere(&bucket, &key));
            match elsewhere.map(|id| node.endpoint_of(id)) {
                // A form without a key is s3s's to refuse, here.
                None => Ok((req, None)),
                Some(Route::Forward(endpoint)) => Err(node.forward(&endpoint, req).await),
                Some(_) => Err(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The node that leads this object's partition is not known yet",
                )),
            }
        }
        Route::Bucket(bucket) => {
            let change = node.begin_bucket_change(bucket).await?;
            Ok((req, Some(change)))
        }
    }
}

/// Where a request is served.
pub enum Route {
    Local,
    /// At the partition's primary.
    Forward(String),
    /// A change to this bucket: here, then in the region's catalogue (see `catalogue`).
    Bucket(String),
    /// A browser form upload (POST Object): at the primary of the key its form names.
    Form,
    Refuse(StatusCode, &'static str, &'static str),
}

impl ClusterNode {
    pub fn id(&self) -> Option<NodeId> {
        self.joined.get().map(|j| j.id)
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The layout in force (shared, not copied: every request asks) and this node's id.
    fn layout(&self) -> Option<(Arc<Layout>, NodeId)> {
        Some((self.view().layout.clone()?, self.id()?))
    }

    pub fn holds_lease(&self) -> bool {
        self.joined.get().is_some_and(|j| j.gate.may_write())
    }

    /// Ready to serve: joined, holding its lease, and the region's layout known.
    pub fn ready(&self) -> Result<(), &'static str> {
        match self.joined.get() {
            None => Err("not joined to the cluster's control plane yet"),
            Some(j) if !j.gate.may_write() => Err("not holding its lease in the control plane"),
            Some(_) if self.view().layout.is_none() => Err("the region has no layout yet"),
            Some(_) if !self.catalogue_applied() => {
                Err("the region's bucket catalogue is not applied here yet")
            }
            Some(_) if !self.keys_applied() => {
                Err("the region's access keys are not applied here yet")
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether a request comes from another node of the region.
    pub fn is_hop(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(HOP)
            .is_some_and(|v| v.as_bytes() == self.hop.as_bytes())
    }

    /// Whether this node answers for (`bucket`, `key`) in listings: it leads its partition
    /// (every key when there is no layout yet).
    pub fn answers_for(&self, layout: Option<&Layout>, bucket: &str, key: &str) -> bool {
        match (layout, self.id()) {
            (Some(l), Some(me)) => l.nodes_of(l.partition(bucket, key))[0] == me,
            _ => true,
        }
    }

    /// The copy peers a new version of (`bucket`, `key`) must reach: the followers of its
    /// partition when this node leads it (down ones too: they catch up from the outbox).
    /// While a staged layout is filled, the nodes it adds to the partition take new versions
    /// too.
    pub fn copy_peers(&self, bucket: &str, key: &str) -> Vec<String> {
        let view = self.view();
        let (Some(layout), Some(me)) = (&view.layout, self.id()) else {
            return Vec::new();
        };
        let p = layout.partition(bucket, key);
        let nodes = layout.nodes_of(p);
        if nodes[0] != me {
            return Vec::new();
        }
        let mut peers: Vec<NodeId> = nodes[1..].to_vec();
        if let Some(staged) = view
            .staged
            .as_ref()
            .filter(|s| s.partitions.len() == layout.partitions.len())
        {
            for id in staged.nodes_of(p) {
                if *id != me && !peers.contains(id) {
                    peers.push(*id);
                }
            }
        }
        peers.into_iter().map(copy_peer).collect()
    }

    /// After a commit that queued copies of a version of `size` bytes: waits until every
    /// follower that is not down has it; a follower that does not answer in time is marked
    /// down in etcd before this returns. `Err` (the write is not acknowledged) when that
    /// cannot be recorded.
    pub async fn await_copies(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        size: u64,
        peers: &[String],
    ) -> Result<(), String> {
        let layout = self.fresh_layout().await?;
        // The copies were chosen before the commit; a staged layout seen since then adds
        // nodes that the fill's walk may already have passed: queue the version for them
        // too (if it is seen only later, the walk, which starts after, finds the version).
        let mut peers = peers.to_vec();
        for extra in self.copy_peers(bucket, key) {
            if peers.contains(&extra) {
                continue;
            }
            let Some(id) = copy_peer_id(&extra) else {
                continue;
            };
            let (meta, b, k, v) = (
                self.parts.meta.clone(),
                bucket.to_owned(),
                key.to_owned(),
                version_id.to_owned(),
            );
            tokio::task::spawn_blocking(move || meta.requeue_copy(&copy_peer(id), &b, &k, &v))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            peers.push(extra);
        }
        self.wait_for_copies(
            bucket,
            key,
            version_id,
            &peers,
            &layout,
            Copied::Version { size },
        )
        .await
    }

    /// After a version's removal (by its primary) queued for `peers`: waits until every
    /// follower that is not down removed it too, marking one that does not answer in time
    /// down first — so a failover cannot bring back a version removed on the primary.
    pub async fn await_removal(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
    ) -> Result<(), String> {
        let layout = self.fresh_layout().await?;
        self.wait_for_copies(bucket, key, version_id, peers, &layout, Copied::Removal)
            .await
    }

    /// Waits for the copies of a change (a version, or a removal) on `peers` but those down
    /// in `layout`; marks the late ones down, as the partition's primary.
    ///
    /// A follower may refuse the copy because its layout does not have this node lead the
    /// partition: it is behind, or newer (this node was marked down meanwhile, and may since
    /// lead again). The refusal wakes the wait at once. The replicator keeps a refused copy
    /// queued while this node leads the key in its view and drops it otherwise; once this
    /// node, reading the layout, knows it leads, the copy is queued again if it was dropped
    /// and waited for once more. A follower still without it is marked down with the copy
    /// queued, to take it when it catches up.
    async fn wait_for_copies(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
        layout: &Layout,
        change: Copied,
    ) -> Result<(), String> {
        let mut waited: Vec<String> = peers
            .iter()
            .filter(|p| copy_peer_id(p).is_some_and(|id| !layout.is_down(id)))
            .cloned()
            .collect();
        if waited.is_empty() {
            return self.still_leads(bucket, key).await;
        }
        let replicator = match &*self.copies.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(c) => c.replicator.clone(),
            None => return Err("the copies to the other nodes are not set up yet".into()),
        };
        let mut late = Vec::new();
        for attempt in 1..=2 {
            replicator.changed();
            let unsettled = match change {
                Copied::Removal => {
                    replicator
                        .wait_removed(bucket, key, version_id, &waited)
                        .await
                }
                Copied::Version { size } => {
                    // A large version takes longer to copy than `copy_timeout` (which is for
                    // a follower that does not answer): its size at COPY_RATE_FLOOR more.
                    let extra = Duration::from_secs_f64(size as f64 / COPY_RATE_FLOOR);
                    replicator
                        .wait_synced_within(bucket, key, version_id, &waited, extra)
                        .await
                }
            };
            if unsettled.is_empty() {
                break;
            }
            // Read the layout first: send again, or mark followers down, only as the
            // partition's primary in it.
            self.refresh().await.map_err(|e| e.to_string())?;
            self.still_leads(bucket, key).await?;
            let (refused, timed_out): (Vec<_>, Vec<_>) =
                unsettled.into_iter().partition(|u| u.refused);
            late.extend(timed_out.into_iter().map(|u| u.peer));
            waited = refused.into_iter().map(|u| u.peer).collect();
            for peer in &waited {
                tracing::info!(%bucket, %key, version = %version_id, %peer, "a follower refused a copy (it did not take this node for the primary): sending it again");
                self.queue_again(peer, bucket, key, version_id, change)
                    .await?;
            }
            if waited.is_empty() {
                break;
            }
            if attempt == 2 {
                late.append(&mut waited);
            }
        }
        for peer in late {
            let Some(id) = copy_peer_id(&peer) else {
                continue;
            };
            // It catches up from the outbox when it returns: the change must be queued for it
            // (a refusal settled before this node began to wait looks like a time-out).
            self.queue_again(&peer, bucket, key, version_id, change)
                .await?;
            tracing::warn!(%bucket, %key, version = %version_id, node = id, "a follower did not take a copy in time: marking it down");
            self.mark_down(id, bucket, key).await?;
        }
        self.still_leads(bucket, key).await
    }

    /// Runs `f` on this node's metadata, in a blocking task.
    async fn on_meta<T: Send + 'static>(
        &self,
        f: impl FnOnce(&MetaStore) -> Result<T, meridian_metadata::MetaError> + Send + 'static,
    ) -> Result<T, String> {
        let meta = self.parts.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Queues a change for `peer` again unless it is still queued for it (a removal leaves
    /// no record to tell: it is queued again, and a second removal finds nothing to remove).
    async fn queue_again(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
        change: Copied,
    ) -> Result<(), String> {
        let (p, b, k, v) = (
            peer.to_owned(),
            bucket.to_owned(),
            key.to_owned(),
            version_id.to_owned(),
        );
        self.on_meta(move |meta| match change {
            Copied::Version { .. } => {
                let queued = meta.get_version(&b, &k, Some(&v))?.is_none_or(|r| {
                    matches!(
                        r.replication.peers.get(&p),
                        Some(PeerStatus::Pending | PeerStatus::Failed { .. })
                    )
                });
                if !queued {
                    meta.requeue_copy(&p, &b, &k, &v)?;
                }
                Ok(())
            }
            Copied::Removal => meta.requeue_removal(&p, &b, &k, &v),
        })
        .await
    }

    /// Acknowledged only by the partition's primary in the layout that now holds (a primary
    /// demoted meanwhile — its followers refused its copies, or the copies were never
    /// queued because the write raced a layout change — must not acknowledge what only it
    /// has).
    async fn still_leads(&self, bucket: &str, key: &str) -> Result<(), String> {
        self.fresh_view().await?;
        let (layout, me) = self.layout().ok_or("no layout")?;
        if layout.nodes_of(layout.partition(bucket, key))[0] != me || layout.is_down(me) {
            return Err("this node no longer leads the partition".into());
        }
        Ok(())
    }

    /// The layout in force, read from etcd if the view is older than `VIEW_TTL`.
    async fn fresh_layout(&self) -> Result<Arc<Layout>, String> {
        self.fresh_view().await?;
        self.view()
            .layout
            .clone()
            .ok_or_else(|| "the region has no layout yet".to_owned())
    }

    async fn fresh_view(&self) -> Result<(), String> {
        if self.view().read_at.is_none_or(|at| at.elapsed() > VIEW_TTL) {
            self.refresh().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Marks `id` down, in the same compare-and-swap that checks this node still leads the
    /// partition of (`bucket`, `key`) and is not down itself (else it has no say).
    async fn mark_down(&self, id: NodeId, bucket: &str, key: &str) -> Result<(), String> {
        let joined = self.joined.get().ok_or("not joined")?;
        joined
            .control
            .change_current(|l| {
                if l.is_down(joined.id) || l.nodes_of(l.partition(bucket, key))[0] != joined.id {
                    None
                } else {
                    l.with_down(id)
                }
            })
            .await
            .map_err(|e| format!("marking node {id} down: {e}"))?;
        self.refresh().await.map_err(|e| e.to_string())
    }

    /// Where a request is served (before s3s sees it).
    pub fn route<B>(&self, req: &Request<B>) -> Route {
        let path = req.uri().path();
        if path.starts_with(crate::admin::AdminApi::PREFIX) || self.is_hop(req.headers()) {
            return Route::Local;
        }
        let Some((bucket, key)) = self.bucket_and_key(req) else {
            return Route::Local; // ListBuckets
        };
        let method = req.method();
        let no_layout = || {
            Route::Refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The region has no layout yet (meridian cluster add-node)",
            )
        };
        let Some(key) = key else {
            if method == Method::GET || method == Method::HEAD {
                return Route::Local;
            }
            let query = req.uri().query().unwrap_or_default();
            if method == Method::POST
                && query
                    .split('&')
                    .any(|p| p == "delete" || p.starts_with("delete="))
            {
                // Served here: each key is deleted by its primary (see `delete_at`).
                return Route::Local;
            }
            if crate::post_form::is_form(req) {
                // Served by the primary of the key in the form.
                return match self.layout() {
                    Some(_) => Route::Form,
                    None => no_layout(),
                };
            }
            // Bucket changes go to the catalogue, with or without a layout.
            return Route::Bucket(bucket);
        };
        // Objects wait for the first layout.
        let Some((layout, me)) = self.layout() else {
            return no_layout();
        };
        let primary = layout.nodes_of(layout.partition(&bucket, &key))[0];
        if primary == me {
            return Route::Local;
        }
        self.endpoint_of(primary)
    }

    /// Forwarded to node `id` (unknown yet: try again).
    fn endpoint_of(&self, id: NodeId) -> Route {
        match self.view().endpoints.get(&id) {
            Some(endpoint) => Route::Forward(endpoint.clone()),
            None => Route::Refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The node that leads this object's partition is not known yet",
            ),
        }
    }

    /// The bucket and key a request names (path-style, or virtual-hosted under a configured
    /// domain); the key is `None` for a bucket request.
    fn bucket_and_key<B>(&self, req: &Request<B>) -> Option<(String, Option<String>)> {
        let path = req.uri().path();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let (bucket, key) = match self.domains.bucket_of(host) {
            Some((_, bucket)) => (bucket.to_owned(), path.trim_start_matches('/').to_owned()),
            None => {
                let rest = path.strip_prefix('/')?;
                match rest.split_once('/') {
                    Some((b, k)) => (b.to_owned(), k.to_owned()),
                    None => (rest.to_owned(), String::new()),
                }
            }
        };
        if bucket.is_empty() {
            return None;
        }
        Some((decode(&bucket), (!key.is_empty()).then(|| decode(&key))))
    }

    /// Sends `req` to `endpoint` as it came (its signed headers untouched, the body streamed
    /// through), marked as a hop so that it is served there.
    pub async fn forward(&self, endpoint: &str, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let target = format!(
            "{}{}",
            endpoint.trim_end_matches('/'),
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        parts.uri = match target.parse() {
            Ok(uri) => uri,
            Err(_) => return internal_error("a node's endpoint is not a URL"),
        };
        parts.version = http::Version::HTTP_11;
        parts.headers.insert(
            HOP,
            HeaderValue::from_str(&self.hop).expect("hex is a header value"),
        );
        parts.headers.remove(FROM);
        parts
            .headers
            .insert(EPOCH, HeaderValue::from(self.epoch.load(Ordering::Acquire)));
        match self.http.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(Body::from),
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "forwarding to the partition's primary failed");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The node that leads this object's partition did not answer; try again",
                )
            }
        }
    }

    /// The internal endpoints (`/_meridian/cluster/...`), for requests between the nodes.
    pub async fn internal(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if !self.is_hop(req.headers()) {
            return error_response(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Between the nodes of a region only",
            );
        }
        let path = req.uri().path().trim_start_matches(INTERNAL).to_owned();
        match path.as_str() {
            "delete" | "source" | "read" => self.serve_delegated(&path, req).await,
            "list" => {
                let body = match req.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return internal_error("reading the request"),
                };
                let ask: ListAsk = match serde_json::from_slice(&body) {
                    Ok(a) => a,
                    Err(_) => {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            "InvalidArgument",
                            "bad listing request",
                        )
                    }
                };
                match self.list_here(ask).await {
                    Ok(answer) => json_response(&answer),
                    Err(e) => internal_error(&e),
                }
            }
            "catalogue" => {
                let query = req.uri().query().map(str::to_owned);
                self.serve_catalogue_nudge(query.as_deref()).await
            }
            "keys" => {
                let query = req.uri().query().map(str::to_owned);
                self.serve_keys_nudge(query.as_deref()).await
            }
            "holds" => self.serve_holds(req).await,
            "stage" => self.serve_stage(req).await,
            "backlog" => {
                let node = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("node="))
                    .and_then(|n| n.parse::<NodeId>().ok());
                let Some(node) = node else {
                    return error_response(StatusCode::BAD_REQUEST, "InvalidArgument", "node=ID");
                };
                match self.backlog_for(node).await {
                    Ok(pending) => json_response(&serde_json::json!({ "pending": pending })),
                    Err(e) => internal_error(&e),
                }
            }
            _ => error_response(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "No such internal endpoint",
            ),
        }
    }

    /// Changes queued here for node `id` and not yet taken by it.
    async fn backlog_for(&self, id: NodeId) -> Result<u64, String> {
        let replicator = match &*self.copies.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(c) => c.replicator.clone(),
            None => return Err("copies not set up yet".into()),
        };
        let name = copy_peer(id);
        let reports = replicator.status(None).await?;
        Ok(reports.iter().find(|r| r.peer == name).map_or(0, |r| {
            r.pending.pending_versions + r.pending.retrying + r.pending.failed
        }))
    }

    /// Reads the layout again when a request from another node names a newer one.
    async fn catch_up_with(&self, headers: &http::HeaderMap) {
        let epoch: u64 = headers
            .get(EPOCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if epoch > self.epoch.load(Ordering::Acquire) {
            let _ = self.refresh().await;
        }
    }

    /// A client's write forwarded here by another node is served only if this node leads
    /// the object's partition in its layout (else the two nodes' layouts differ for a moment:
    /// the client tries again).
    fn leads_forwarded<B>(&self, req: &Request<B>) -> bool {
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            return true;
        }
        match self.bucket_and_key(req) {
            Some((bucket, Some(key))) => self.leader_elsewhere(&bucket, &key).is_none(),
            _ => true,
        }
    }

    /// Checks a copy sent by another node: its sender must lead the object's partition in
    /// this node's layout (read again first when the copy names a newer one).
    pub async fn check_copy<B>(&self, req: &Request<B>) -> Result<(), Response<Body>> {
        let Some(from) = req.headers().get(FROM) else {
            return Ok(());
        };
        let from: Option<NodeId> = from.to_str().ok().and_then(|s| s.parse().ok());
        let epoch: u64 = req
            .headers()
            .get(EPOCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let Some((layout, _)) = self.layout() else {
            return Ok(());
        };
        let Some((bucket, Some(key))) = self.bucket_and_key(req) else {
            return Ok(());
        };
        let leader = layout.nodes_of(layout.partition(&bucket, &key))[0];
        if Some(leader) != from {
            tracing::warn!(%bucket, %key, from = ?from, epoch, leader, "refused a copy from a node that no longer leads the partition");
            return Err(error_response(
                StatusCode::CONFLICT,
                "OperationAborted",
                "The sending node does not lead this object's partition in the current layout",
            ));
        }
        Ok(())
    }

    /// One node's share of a listing: the keys it answers for.
    async fn list_here(&self, ask: ListAsk) -> Result<ListAnswer, String> {
        if ask.epoch() > self.epoch.load(Ordering::Acquire) {
            let _ = self.refresh().await;
        }
        let layout = self.view().layout.clone();
        let meta = self.parts.meta.clone();
        let me = self.id();
        let delegate = self.delegate.get().cloned();
        tokio::task::spawn_blocking(move || {
            let answers = |bucket: &str, key: &str| match (&layout, me) {
                (Some(l), Some(me)) => l.nodes_of(l.partition(bucket, key))[0] == me,
                _ => true,
            };
            match ask {
                ListAsk::Objects { bucket, query, .. } => {
                    let keep = |k: &str| answers(&bucket, k);
                    meta.list_objects_keeping(&bucket, &query, Some(&keep))
                        .map(ListAnswer::Objects)
                }
                ListAsk::Versions { bucket, query, .. } => {
                    let keep = |k: &str| answers(&bucket, k);
                    meta.list_versions_keeping(&bucket, &query, Some(&keep))
                        .map(ListAnswer::Versions)
                }
                ListAsk::Uploads { bucket, query, .. } => {
                    let keep = |k: &str| answers(&bucket, k);
                    meta.list_uploads_keeping(&bucket, &query, Some(&keep))
                        .map(ListAnswer::Uploads)
                }
                ListAsk::Preview {
                    bucket, at, limit, ..
                } => {
                    let keep = |k: &str| answers(&bucket, k);
                    let delegate = delegate.ok_or("the S3 layer is not up yet")?;
                    return delegate
                        .lifecycle_preview(&bucket, at, limit, &keep)
                        .map(ListAnswer::Preview);
                }
            }
            .map_err(|e| match e {
                meridian_metadata::MetaError::NoSuchBucket { .. } => "NoSuchBucket".to_owned(),
                e => e.to_string(),
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The nodes that lead at least one partition: those a listing asks.
    fn leaders(layout: &Layout) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = layout.partitions.iter().map(|p| p[0]).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    async fn ask(&self, node: NodeId, ask: &ListAsk) -> Result<ListAnswer, String> {
        if Some(node) == self.id() {
            return self.list_here(ask.clone()).await;
        }
        let endpoint = self
            .view()
            .endpoints
            .get(&node)
            .cloned()
            .ok_or_else(|| format!("node {node} is not known"))?;
        let body = serde_json::to_vec(ask).expect("a listing request serializes");
        let req = Request::post(format!("{}{INTERNAL}list", endpoint.trim_end_matches('/')))
            .header(HOP, &self.hop)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a listing request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| format!("node {node} did not answer a listing in time"))?
            .map_err(|e| format!("node {node}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("node {node}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("NoSuchBucket") {
                return Err("NoSuchBucket".into());
            }
            return Err(format!("node {node} answered {status}: {text}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("node {node}: {e}"))
    }

    async fn ask_leaders(&self, ask: ListAsk) -> Result<Vec<ListAnswer>, String> {
        let Some((layout, _)) = self.layout() else {
            return Ok(vec![self.list_here(ask).await?]);
        };
        match self.ask_each(&layout, &ask).await {
            Ok(answers) => Ok(answers),
            Err(e) => {
                // A leader that does not answer may have been marked down since this node
                // last read the layout: once more, with the layout as etcd has it now.
                self.refresh().await.map_err(|r| format!("{e}; {r}"))?;
                match self.layout() {
                    Some((now, _)) if now.version != layout.version => {
                        self.ask_each(&now, &ask).await
                    }
                    _ => Err(e),
                }
            }
        }
    }

    async fn ask_each(&self, layout: &Layout, ask: &ListAsk) -> Result<Vec<ListAnswer>, String> {
        let asks = Self::leaders(layout)
            .into_iter()
            .map(|node| async move { self.ask(node, ask).await });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// Every leader's page for `ask`, as `page` picks it from the answer.
    async fn pages<P>(
        &self,
        ask: ListAsk,
        page: impl Fn(ListAnswer) -> Option<P>,
    ) -> Result<Vec<P>, String> {
        let answers = self.ask_leaders(ask).await?;
        Ok(answers.into_iter().filter_map(page).collect())
    }

    /// ListObjects(V2) over the whole region.
    pub async fn list_objects(
        &self,
        bucket: &str,
        query: ListObjectsQuery,
    ) -> Result<ListObjectsPage, String> {
        let max = query.max_keys;
        let ask = ListAsk::Objects {
            bucket: bucket.to_owned(),
            query,
            epoch: self.epoch.load(Ordering::Acquire),
        };
        let pages = self
            .pages(ask, |a| match a {
                ListAnswer::Objects(p) => Some(p),
                _ => None,
            })
            .await?;
        Ok(merge_objects(pages, max))
    }

    /// What `bucket`'s lifecycle rules would do by `at` (Unix seconds) over the whole region:
    /// each leader's actions for the keys it leads, uploads first, then by key (at most
    /// `limit` from each).
    pub async fn lifecycle_preview(
        &self,
        bucket: &str,
        at: i64,
        limit: usize,
    ) -> Result<Vec<meridian_api::PreviewAction>, String> {
        let ask = ListAsk::Preview {
            bucket: bucket.to_owned(),
            at,
            limit,
            epoch: self.epoch.load(Ordering::Acquire),
        };
        let pages = self
            .pages(ask, |a| match a {
                ListAnswer::Preview(p) => Some(p),
                _ => None,
            })
            .await?;
        let mut actions: Vec<_> = pages.into_iter().flatten().collect();
        // Stable: a key's versions (all from its leader) keep their order.
        actions.sort_by(|a, b| {
            (a.action != "abort_upload", &a.key).cmp(&(b.action != "abort_upload", &b.key))
        });
        Ok(actions)
    }

    /// ListObjectVersions over the whole region.
    pub async fn list_versions(
        &self,
        bucket: &str,
        query: ListVersionsQuery,
    ) -> Result<ListVersionsPage, String> {
        let max = query.max_keys;
        let ask = ListAsk::Versions {
            bucket: bucket.to_owned(),
            query,
            epoch: self.epoch.load(Ordering::Acquire),
        };
        let pages = self
            .pages(ask, |a| match a {
                ListAnswer::Versions(p) => Some(p),
                _ => None,
            })
            .await?;
        Ok(merge_versions(pages, max))
    }

    /// Whether any node holds a version (or delete marker) of `bucket` (false when the bucket
    /// does not exist: the node that got the request answers that).
    pub async fn holds_versions(&self, bucket: &str) -> Result<bool, String> {
        let query = ListVersionsQuery {
            max_keys: 1,
            ..ListVersionsQuery::default()
        };
        match self.list_versions(bucket, query).await {
            Ok(page) => Ok(!page.versions.is_empty()),
            Err(e) if e == "NoSuchBucket" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// ListMultipartUploads over the whole region (an upload lives on its key's primary).
    pub async fn list_uploads(
        &self,
        bucket: &str,
        query: ListUploadsQuery,
    ) -> Result<ListUploadsPage, String> {
        let max = query.max_uploads;
        let ask = ListAsk::Uploads {
            bucket: bucket.to_owned(),
            query,
            epoch: self.epoch.load(Ordering::Acquire),
        };
        let pages = self
            .pages(ask, |a| match a {
                ListAnswer::Uploads(p) => Some(p),
                _ => None,
            })
            .await?;
        Ok(merge_uploads(pages, max))
    }

    async fn run(self: Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        let record = loop {
            match self.join_once().await {
                Ok(joined) => break joined,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the cluster's control plane yet: no client writes until it does");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!(node = record.id, endpoint = %record.endpoint, "joined the cluster's control plane");
        let started = Instant::now();
        let mut trimmed = Instant::now();
        let mut checked: Option<Instant> = None;
        let mut shipped = Instant::now();
        loop {
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "reading the region's layout");
            }
            self.keep_copies();
            if started.elapsed() > self.config.lease_ttl * 2 {
                self.fail_over().await;
                self.catch_up().await;
                self.apply_when_filled().await;
                self.reship_for_down().await;
                self.reclaim_moved();
            }
            if shipped.elapsed() > reship::SHIP_EVERY {
                shipped = Instant::now();
                self.publish_shipped().await;
            }
            self.start_fill();
            if checked.is_none_or(|t| t.elapsed() > catalogue::CHECK_EVERY) {
                checked = Some(Instant::now());
                self.check_catalogue().await;
                self.check_keys().await;
            }
            if trimmed.elapsed() > Duration::from_secs(60) {
                trimmed = Instant::now();
                self.trim_outbox().await;
                if let Some(delegate) = self.delegate.get() {
                    delegate.expire_staged();
                }
            }
            tokio::time::sleep(REFRESH).await;
        }
    }

    async fn join_once(&self) -> anyhow::Result<NodeRecord> {
        let control = ControlPlane::connect(&self.config.etcd, &self.region).await?;
        let meta = self.parts.meta.clone();
        let stored = tokio::task::spawn_blocking(move || meta.setting(NODE_ID)).await??;
        let known = match (self.config.node_id, stored) {
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
            .register(known, &self.config.endpoint, self.config.weight)
            .await?;
        if known.is_none() {
            let meta = self.parts.meta.clone();
            let id = record.id.to_string();
            tokio::task::spawn_blocking(move || meta.put_setting(NODE_ID, Some(id.as_bytes())))
                .await??;
        }
        let membership = control.hold(record.clone(), self.config.lease_ttl);
        let _ = self.joined.set(Joined {
            id: record.id,
            gate: membership.gate(),
            control,
            _membership: membership,
        });
        Ok(record)
    }

    /// Reads the layout, the nodes and the live members from etcd.
    async fn refresh(&self) -> Result<(), meridian_cluster::control::ControlError> {
        let Some(joined) = self.joined.get() else {
            return Ok(());
        };
        let read_at = Instant::now();
        let layout = joined.control.current_layout().await?.map(Arc::new);
        let staged = joined.control.staged_layout().await?.map(Arc::new);
        let nodes = joined.control.nodes().await?;
        let alive = joined.control.alive().await?;
        let view = View {
            endpoints: nodes.into_iter().map(|n| (n.id, n.endpoint)).collect(),
            alive,
            layout,
            staged,
            read_at: Some(read_at),
        };
        if let Some(l) = &view.layout {
            self.epoch.fetch_max(l.version, Ordering::AcqRel);
        }
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
        Ok(())
    }

    /// (Re)builds the copy replicator when the set of other nodes changed.
    fn keep_copies(&self) {
        let Some(me) = self.id() else { return };
        let others: BTreeMap<NodeId, String> = self
            .view()
            .endpoints
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, e)| (*id, e.clone()))
            .collect();
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if copies.as_ref().is_some_and(|c| c.peers == others) {
            return;
        }
        if let Some(old) = copies.take() {
            old.stop.send_replace(true);
        }
        let (root_key, root_secret) = &self.parts.root;
        let stamp = {
            let epoch = self.epoch.clone();
            let hop = self.hop.clone();
            Stamp(Arc::new(move || {
                vec![
                    (HOP, hop.clone()),
                    (FROM, me.to_string()),
                    (EPOCH, epoch.load(Ordering::Acquire).to_string()),
                ]
            }))
        };
        // Whether this node leads a key's partition in its view (it retries a copy refused
        // by a node whose layout is behind, and drops one it no longer should send).
        let leads = {
            let view = self.view.clone();
            Leads(Arc::new(move |bucket: &str, key: &str| {
                let view = view.read().unwrap_or_else(|e| e.into_inner()).clone();
                view.layout.as_ref().is_some_and(|l| {
                    l.nodes_of(l.partition(bucket, key))[0] == me && !l.is_down(me)
                })
            }))
        };
        let peers = others
            .iter()
            .map(|(id, endpoint)| PeerConfig {
                region: self.region.clone(),
                mode: PeerMode::Sync,
                sync_timeout: self.config.copy_timeout,
                proxy_reads: false,
                stamp: Some(stamp.clone()),
                mirror: true,
                leads: Some(leads.clone()),
                staged: Some(StagedBody(Arc::new(stage::StagedOn {
                    streamed: self.streamed.clone(),
                    node: *id,
                }))),
                ..PeerConfig::new(&copy_peer(*id), endpoint, root_key, root_secret)
            })
            .collect();
        let settings = ReplicationSettings {
            // A node that comes back is caught up within seconds, not minutes.
            max_backoff: self.parts.settings.max_backoff.min(Duration::from_secs(2)),
            ..self.parts.settings.clone()
        };
        let replicator = Replicator::new(
            self.parts.meta.clone(),
            self.parts.source.clone(),
            peers,
            settings,
            self.region.clone(),
            &prometheus::Registry::new(),
        );
        let (stop, stop_rx) = watch::channel(false);
        replicator.spawn(stop_rx.clone());
        tracing::info!(nodes = ?others.keys().collect::<Vec<_>>(), "copies to the other nodes of the region set up");
        *copies = Some(Copies {
            replicator,
            peers: others,
            stop,
        });
    }

    /// The lowest live node marks down the nodes of the layout whose lease lapsed.
    async fn fail_over(&self) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        let Some(layout) = &view.layout else { return };
        if !joined.gate.may_write() || view.alive.first() != Some(&joined.id) {
            return;
        }
        for node in &layout.nodes {
            if !view.alive.contains(&node.id) && !layout.is_down(node.id) {
                tracing::warn!(
                    node = node.id,
                    "a node's lease lapsed: marking it down, its partitions go to their followers"
                );
                let marked = joined
                    .control
                    .change_current(|l| {
                        if l.is_down(joined.id) {
                            None
                        } else {
                            l.with_down(node.id)
                        }
                    })
                    .await;
                let _ = self.refresh().await;
                if let Err(e) = marked {
                    tracing::warn!(error = %e, "marking a node down failed; will retry");
                }
            }
        }
    }

    /// A node marked down marks itself up once no other node has copies queued for it.
    async fn catch_up(&self) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        let Some(layout) = &view.layout else { return };
        if !layout.is_down(joined.id) || !joined.gate.may_write() {
            return;
        }
        for node in &layout.nodes {
            if node.id == joined.id || layout.is_down(node.id) {
                continue;
            }
            let Some(endpoint) = view.endpoints.get(&node.id) else {
                return;
            };
            let req = Request::get(format!(
                "{}{INTERNAL}backlog?node={}",
                endpoint.trim_end_matches('/'),
                joined.id
            ))
            .header(HOP, &self.hop)
            .body(Body::empty())
            .expect("a backlog request");
            let Ok(Ok(resp)) =
                tokio::time::timeout(Duration::from_secs(5), self.http.request(req)).await
            else {
                return;
            };
            if !resp.status().is_success() {
                return;
            }
            let Ok(body) = resp.into_body().collect().await else {
                return;
            };
            let pending = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
                .ok()
                .and_then(|v| v["pending"].as_u64());
            if pending != Some(0) {
                tracing::info!(node = node.id, pending = ?pending, "catching up before marking this node up");
                return;
            }
        }
        match joined
            .control
            .change_current(|l| l.with_up(joined.id))
            .await
        {
            Ok(Some(l)) => {
                tracing::info!(
                    version = l.version,
                    "caught up: this node is marked up again"
                )
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "marking this node up failed; will retry"),
        }
    }

    /// Starts filling the staged layout's new copies of the partitions this node leads,
    /// once per staged version.
    fn start_fill(self: &Arc<Self>) {
        let view = self.view();
        let (Some(current), Some(staged)) = (view.layout.clone(), view.staged.clone()) else {
            return;
        };
        let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
        let at = (staged.version, current.version);
        if *filling == Some(at) || self.id().is_none() {
            return;
        }
        *filling = Some(at);
        tokio::spawn(self.clone().fill(current, staged));
    }

    /// Queues every version of the partitions this node leads for the nodes `staged` adds
    /// to them, waits until they have taken it all, and says so in etcd.
    async fn fill(self: Arc<Self>, current: Arc<Layout>, staged: Arc<Layout>) {
        let Some(joined) = self.joined.get() else {
            return;
        };
        let me = joined.id;
        let gains = {
            let (current, staged) = (current.clone(), staged.clone());
            move |bucket: &str, key: &str| -> Vec<NodeId> {
                gained(&current, &staged, me, bucket, key)
            }
        };
        let mut new_nodes: Vec<NodeId> = (0..current.partitions.len())
            .filter(|p| current.nodes_of(*p)[0] == me)
            .flat_map(|p| {
                staged
                    .nodes_of(p)
                    .iter()
                    .filter(|n| !current.nodes_of(p).contains(n))
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        new_nodes.sort_unstable();
        new_nodes.dedup();
        tracing::info!(version = staged.version, nodes = ?new_nodes, "filling the staged layout's new copies");
        // A write acknowledged on a view without the staged layout was committed before
        // that view was VIEW_TTL old: wait that long, so that the walk below finds it.
        tokio::time::sleep(VIEW_TTL).await;
        let mut report = meridian_cluster::control::FillReport {
            version: staged.version,
            current: current.version,
            queued: 0,
            pending: 0,
            done: false,
        };
        let meta = self.parts.meta.clone();
        let buckets = match tokio::task::spawn_blocking({
            let meta = meta.clone();
            move || meta.list_buckets()
        })
        .await
        {
            Ok(Ok(b)) => b,
            _ => {
                *self.filling.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return;
            }
        };
        for bucket in buckets {
            let mut query = ListVersionsQuery {
                max_keys: 500,
                ..ListVersionsQuery::default()
            };
            loop {
                if !self.still_filling(&staged, &current) {
                    return; // staged again, applied, or failed over: a new fill takes over
                }
                let (meta2, name, q) = (meta.clone(), bucket.name.clone(), query.clone());
                let (c2, s2) = (current.clone(), staged.clone());
                let page = tokio::task::spawn_blocking(move || {
                    let keep = |k: &str| !gained(&c2, &s2, me, &name, k).is_empty();
                    meta2.list_versions_keeping(&name, &q, Some(&keep))
                })
                .await;
                let Ok(Ok(page)) = page else { break };
                for v in &page.versions {
                    for node in gains(&bucket.name, &v.key) {
                        let (meta, b, k, id) = (
                            meta.clone(),
                            bucket.name.clone(),
                            v.key.clone(),
                            v.version_id.clone(),
                        );
                        let queued = tokio::task::spawn_blocking(move || {
                            meta.requeue_copy(&copy_peer(node), &b, &k, &id)
                        })
                        .await;
                        if matches!(queued, Ok(Ok(meridian_metadata::Requeued::Queued(_)))) {
                            report.queued += 1;
                        }
                    }
                }
                if let Some(c) = &*self.copies.lock().unwrap_or_else(|e| e.into_inner()) {
                    c.replicator.changed();
                }
                let _ = joined.control.report_fill(me, &report).await;
                if !page.is_truncated {
                    break;
                }
                query.key_marker = page.next_key_marker;
                query.version_id_marker = page.next_version_id_marker;
            }
        }
        // Done once the new nodes have taken everything queued for them until now (what is
        // written from here on reaches them before it is acknowledged).
        loop {
            if !self.still_filling(&staged, &current) {
                return;
            }
            let replicator = self
                .copies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|c| c.replicator.clone());
            let Some(replicator) = replicator else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let mut pending = 0;
            let mut reached = true;
            for node in &new_nodes {
                match replicator
                    .checkpoint(&copy_peer(*node), None, Duration::from_secs(2))
                    .await
                {
                    Ok(r) => {
                        reached &= r.reached;
                        pending += r.pending.pending_versions;
                    }
                    Err(_) => reached = false,
                }
            }
            report.pending = pending;
            report.done = reached;
            let reported = joined.control.report_fill(me, &report).await;
            if report.done && reported.is_err() {
                // The layout is put in force on this report: it must reach etcd (which may
                // be down or restarting), so try again rather than end the fill unsaid.
                tracing::warn!(
                    version = staged.version,
                    "could not report the fill done yet; will retry"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if report.done {
                tracing::info!(
                    version = staged.version,
                    queued = report.queued,
                    "the staged layout's new copies are filled here"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether the view still has these layouts (else the fill for them is over).
    fn still_filling(&self, staged: &Layout, current: &Layout) -> bool {
        let view = self.view();
        view.staged.as_ref().map(|s| s.version) == Some(staged.version)
            && view.layout.as_ref().map(|c| c.version) == Some(current.version)
    }

    /// The lowest live node puts the staged layout in force once every node that leads
    /// partitions has filled its new copies (and no node is down).
    async fn apply_when_filled(&self) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        if view.staged.is_none()
            || view.alive.first() != Some(&joined.id)
            || !joined.gate.may_write()
        {
            return;
        }
        let control = &joined.control;
        let (Ok(Some((current, cr))), Ok(Some((staged, sr)))) = (
            control.current_layout_at().await,
            control.staged_layout_at().await,
        ) else {
            return;
        };
        {
            let mut seen = self.staged_seen.lock().unwrap_or_else(|e| e.into_inner());
            match *seen {
                Some((version, at)) if version == staged.version => {
                    if at.elapsed() < VIEW_TTL * 2 {
                        return;
                    }
                }
                _ => {
                    *seen = Some((staged.version, Instant::now()));
                    return;
                }
            }
        }
        // A node that stays in the layout must be up (it holds copies being filled); one
        // that leaves may be down (its partitions' new leaders fill them).
        if current
            .down
            .iter()
            .any(|n| staged.nodes.iter().any(|m| m.id == *n))
        {
            return;
        }
        let Ok(reports) = control.fill_reports().await else {
            return;
        };
        let leaders = Self::leaders(&current);
        let filled = leaders.iter().all(|id| {
            reports.iter().any(|(n, r)| {
                n == id && r.version == staged.version && r.current == current.version && r.done
            })
        });
        if !filled {
            return;
        }
        match control.apply_staged(&current, cr, &staged, sr).await {
            Ok(Some(l)) => {
                tracing::info!(
                    version = l.version,
                    "the staged layout is filled and now in force"
                );
                let _ = self.refresh().await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "putting the staged layout in force failed; will retry")
            }
        }
    }

    /// Trims the outbox below what every peer, geo and copy, has taken.
    async fn trim_outbox(&self) {
        let me = self.id();
        let mut peers = self.parts.geo_peers.clone();
        peers.extend(
            self.view()
                .endpoints
                .keys()
                .filter(|id| Some(**id) != me)
                .map(|id| copy_peer(*id)),
        );
        let meta = self.parts.meta.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut below = u64::MAX;
            for p in &peers {
                below = below.min(meta.outbox_cursor(p)?);
            }
            if below != 0 && below != u64::MAX {
                meta.outbox_trim(below)?;
            }
            Ok::<_, meridian_metadata::MetaError>(())
        })
        .await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "trimming the outbox failed; will retry");
        }
    }
}

/// The nodes `staged` adds to the partition of (`bucket`, `key`), when `me` leads it now.
fn gained(current: &Layout, staged: &Layout, me: NodeId, bucket: &str, key: &str) -> Vec<NodeId> {
    if staged.partitions.len() != current.partitions.len() {
        return Vec::new();
    }
    let p = current.partition(bucket, key);
    let now = current.nodes_of(p);
    if now[0] != me {
        return Vec::new();
    }
    staged
        .nodes_of(p)
        .iter()
        .filter(|n| !now.contains(n))
        .copied()
        .collect()
}

/// A listing asked of one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum ListAsk {
    Objects {
        bucket: String,
        query: ListObjectsQuery,
        epoch: u64,
    },
    Versions {
        bucket: String,
        query: ListVersionsQuery,
        epoch: u64,
    },
    Uploads {
        bucket: String,
        query: ListUploadsQuery,
        epoch: u64,
    },
    /// What a bucket's lifecycle rules would do by `at` (Unix seconds), at most `limit`.
    Preview {
        bucket: String,
        at: i64,
        limit: usize,
        epoch: u64,
    },
}

impl ListAsk {
    fn epoch(&self) -> u64 {
        match self {
            ListAsk::Objects { epoch, .. }
            | ListAsk::Versions { epoch, .. }
            | ListAsk::Uploads { epoch, .. }
            | ListAsk::Preview { epoch, .. } => *epoch,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "page", rename_all = "kebab-case")]
enum ListAnswer {
    Objects(ListObjectsPage),
    Versions(ListVersionsPage),
    Uploads(ListUploadsPage),
    Preview(Vec<meridian_api::PreviewAction>),
}

/// One entry of a merged listing.
enum Entry {
    Row(ObjectSummary),
    Prefix(String),
}

impl Entry {
    fn key(&self) -> &str {
        match self {
            Entry::Row(o) => &o.key,
            Entry::Prefix(p) => p,
        }
    }
}

/// The first `max` entries of the union of the nodes' pages, in key order (a key's versions
/// all come from the one node that answers for it, newest first, and keep that order).
/// Each node returned its own first `max` entries, so the union holds the region's first
/// `max`; the page is truncated when there were more, or a node had more.
fn merge(pages: Vec<(Vec<ObjectSummary>, Vec<String>, bool)>, max: usize) -> (Vec<Entry>, bool) {
    let mut truncated = false;
    let mut entries = Vec::new();
    for (rows, prefixes, more) in pages {
        truncated |= more;
        entries.extend(rows.into_iter().map(Entry::Row));
        entries.extend(prefixes.into_iter().map(Entry::Prefix));
    }
    entries.sort_by(|a, b| a.key().cmp(b.key()));
    entries.dedup_by(|a, b| matches!((a, b), (Entry::Prefix(x), Entry::Prefix(y)) if x == y));
    if entries.len() > max {
        truncated = true;
        entries.truncate(max);
    }
    (entries, truncated)
}

fn merge_objects(pages: Vec<ListObjectsPage>, max: usize) -> ListObjectsPage {
    let (entries, is_truncated) = merge(
        pages
            .into_iter()
            .map(|p| (p.objects, p.common_prefixes, p.is_truncated))
            .collect(),
        max,
    );
    let next_marker = is_truncated
        .then(|| entries.last().map(|e| e.key().to_owned()))
        .flatten();
    let mut page = ListObjectsPage {
        is_truncated,
        next_marker,
        ..ListObjectsPage::default()
    };
    for e in entries {
        match e {
            Entry::Row(o) => page.objects.push(o),
            Entry::Prefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

fn merge_versions(pages: Vec<ListVersionsPage>, max: usize) -> ListVersionsPage {
    let (entries, is_truncated) = merge(
        pages
            .into_iter()
            .map(|p| (p.versions, p.common_prefixes, p.is_truncated))
            .collect(),
        max,
    );
    let mut page = ListVersionsPage {
        is_truncated,
        ..ListVersionsPage::default()
    };
    if is_truncated {
        match entries.last() {
            Some(Entry::Row(o)) => {
                page.next_key_marker = Some(o.key.clone());
                page.next_version_id_marker = Some(o.version_id.clone());
            }
            Some(Entry::Prefix(p)) => page.next_key_marker = Some(p.clone()),
            None => {}
        }
    }
    for e in entries {
        match e {
            Entry::Row(o) => page.versions.push(o),
            Entry::Prefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

/// The first `max` uploads and prefixes of the nodes' pages, in key order (a key's uploads
/// all come from the node that leads it, in upload id order, and keep that order).
fn merge_uploads(pages: Vec<ListUploadsPage>, max: usize) -> ListUploadsPage {
    enum Upload {
        Row(Box<meridian_metadata::UploadRecord>),
        Prefix(String),
    }
    let key = |u: &Upload| match u {
        Upload::Row(r) => r.key.clone(),
        Upload::Prefix(p) => p.clone(),
    };
    let mut is_truncated = false;
    let mut entries = Vec::new();
    for page in pages {
        is_truncated |= page.is_truncated;
        entries.extend(page.uploads.into_iter().map(|u| Upload::Row(Box::new(u))));
        entries.extend(page.common_prefixes.into_iter().map(Upload::Prefix));
    }
    // Stable: a key's uploads stay in their node's order.
    entries.sort_by_key(key);
    entries.dedup_by(|a, b| matches!((a, b), (Upload::Prefix(x), Upload::Prefix(y)) if x == y));
    if entries.len() > max {
        is_truncated = true;
        entries.truncate(max);
    }
    let mut page = ListUploadsPage {
        is_truncated,
        ..ListUploadsPage::default()
    };
    if is_truncated {
        match entries.last() {
            Some(Upload::Row(u)) => {
                page.next_key_marker = Some(u.key.clone());
                page.next_upload_id_marker = Some(u.upload_id.clone());
            }
            Some(Upload::Prefix(p)) => page.next_key_marker = Some(p.clone()),
            None => {}
        }
    }
    for e in entries {
        match e {
            Upload::Row(u) => page.uploads.push(*u),
            Upload::Prefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

fn json_response<T: Serialize>(value: &T) -> Response<Body> {
    let mut resp = Response::new(Body::from(
        serde_json::to_vec(value).expect("an answer serializes"),
    ));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn internal_error(message: &str) -> Response<Body> {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
}

/// An S3 error document.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
        escape(code),
        escape(message)
    );
    let mut resp = Response::new(Body::from(xml));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, version: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.into(),
            version_id: version.into(),
            ..ObjectSummary::default()
        }
    }

    #[test]
    fn merged_pages_keep_key_order_prefixes_once_and_the_right_markers() {
        let a = ListObjectsPage {
            objects: vec![row("a", "1"), row("d", "1")],
            common_prefixes: vec!["p/".into()],
            is_truncated: false,
            next_marker: None,
        };
        let b = ListObjectsPage {
            objects: vec![row("b", "1"), row("c", "1")],
            common_prefixes: vec!["p/".into()],
            is_truncated: false,
            next_marker: None,
        };
        let all = merge_objects(vec![a.clone(), b.clone()], 10);
        let keys: Vec<&str> = all.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(all.common_prefixes, ["p/"]);
        assert!(!all.is_truncated);
        let first = merge_objects(vec![a, b], 3);
        assert!(first.is_truncated);
        assert_eq!(first.next_marker.as_deref(), Some("c"));
        // A node with more than the page keeps the merge truncated.
        let more = ListObjectsPage {
            objects: vec![row("x", "1")],
            is_truncated: true,
            next_marker: Some("x".into()),
            ..ListObjectsPage::default()
        };
        let one = merge_objects(vec![more], 1);
        assert!(one.is_truncated);
    }

    #[test]
    fn merged_versions_keep_each_keys_versions_together_and_end_on_a_version() {
        let a = ListVersionsPage {
            versions: vec![row("k", "3"), row("k", "2"), row("k", "1")],
            ..ListVersionsPage::default()
        };
        let b = ListVersionsPage {
            versions: vec![row("j", "9"), row("m", "8")],
            ..ListVersionsPage::default()
        };
        let page = merge_versions(vec![a, b], 3);
        let got: Vec<(&str, &str)> = page
            .versions
            .iter()
            .map(|o| (o.key.as_str(), o.version_id.as_str()))
            .collect();
        assert_eq!(got, [("j", "9"), ("k", "3"), ("k", "2")]);
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("k"));
        assert_eq!(page.next_version_id_marker.as_deref(), Some("2"));
    }

    #[test]
    fn merged_uploads_keep_each_keys_uploads_in_order_and_end_on_an_upload() {
        let upload = |key: &str, id: &str| meridian_metadata::UploadRecord {
            key: key.into(),
            upload_id: id.into(),
            ..Default::default()
        };
        let a = ListUploadsPage {
            uploads: vec![upload("k", "1"), upload("k", "2")],
            common_prefixes: vec!["p/".into()],
            ..ListUploadsPage::default()
        };
        let b = ListUploadsPage {
            uploads: vec![upload("j", "9"), upload("m", "8")],
            common_prefixes: vec!["p/".into()],
            ..ListUploadsPage::default()
        };
        let page = merge_uploads(vec![a.clone(), b.clone()], 3);
        let got: Vec<(&str, &str)> = page
            .uploads
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect();
        assert_eq!(got, [("j", "9"), ("k", "1"), ("k", "2")]);
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("k"));
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("2"));
        let all = merge_uploads(vec![a, b], 10);
        assert_eq!(all.uploads.len(), 4);
        assert_eq!(all.common_prefixes, ["p/"]);
        assert!(!all.is_truncated);
    }

    #[test]
    fn copy_peers_are_named_apart_from_configured_peers() {
        assert_eq!(copy_peer(7), "cluster.node-7");
        assert_eq!(copy_peer_id("cluster.node-7"), Some(7));
        assert_eq!(copy_peer_id("west"), None);
    }
}
