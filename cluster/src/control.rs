//! The control plane of a region of several nodes, in etcd.
//!
//! Only small, slowly changing state goes to etcd (its limits: 1.5 MiB a request, 8 GiB in
//! all); object metadata never does. Under `/meridian/<region>/`:
//!
//! | key | value | written |
//! |---|---|---|
//! | `next-node-id` | the next id to give | when a node first joins (a compare-and-swap) |
//! | `nodes/<id>` | [`NodeRecord`]: endpoint, weight, state | at join, by `cluster add-node` / `remove-node` |
//! | `members/<id>` | the node's endpoint, under its lease | by the node, kept alive every ttl/3 |
//! | `layout/current` | the [`Layout`] in force | when a staged layout is applied |
//! | `layout/staged` | the next [`Layout`], being filled | by `cluster add-node` / `remove-node` |
//! | `fill/<id>` | [`FillReport`]: a leader's progress in filling the staged layout | by that node |
//! | `catalogue/<bucket>` | a bucket's record and configuration documents (opaque here) | by the node that changed the bucket (a compare-and-swap) |
//! | `catalogue-changed` | empty; its revision is the catalogue's last change | with every catalogue change, in the same transaction |
//! | `keys/<access key>` | a run-time access key and its grants, sealed by the nodes (opaque here) | by the node where the key changed (a compare-and-swap) |
//! | `keys-changed` | empty; its revision is the keys' last change | with every key change, in the same transaction |
//! | `shipped/<id>` | per peer region, the commit time before which everything node `id` led was shipped there | by that node, every few seconds |
//!
//! A node may take client writes only while it holds its lease ([`Membership::may_write`]):
//! the lease is counted from when the node *sent* its last acknowledged keep-alive, so the
//! node stops before etcd can let the lease lapse and hand its partitions to another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::layout::{Layout, LayoutError, Node, NodeId, DEFAULT_PARTITIONS};

/// How long one etcd call may take before the control plane counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("a stored value is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("no node {0} is registered")]
    NoSuchNode(NodeId),
    #[error("another change to {0} came first; try again")]
    Conflict(&'static str),
    #[error("an entry of {0} bytes is larger than etcd takes")]
    TooLarge(usize),
}

/// A node as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Where other nodes and clients reach its S3 endpoint.
    pub endpoint: String,
    pub weight: u32,
    pub state: NodeState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Registered, not yet in a layout (`cluster add-node` puts it in).
    New,
    /// In the layout (or being added to it).
    Active,
    /// Being drained out of the layout (`cluster remove-node`).
    Draining,
}

/// A node's progress in filling the copies a staged layout gives to new nodes, for the
/// partitions it leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillReport {
    /// The staged layout's version it is for.
    pub version: u64,
    /// The version of the layout in force it was computed against (a failover that
    /// changes which node leads a partition starts the fill again).
    #[serde(default)]
    pub current: u64,
    /// Versions queued for new nodes so far.
    pub queued: u64,
    /// Of those, still to be taken by them.
    pub pending: u64,
    /// Every version is queued and every new node has what was queued.
    pub done: bool,
}

/// What `cluster status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub region: String,
    pub nodes: Vec<NodeStatus>,
    pub current: Option<Layout>,
    pub staged: Option<Layout>,
    /// Copies the staged layout needs that the current one does not have.
    pub copies_to_fill: usize,
    /// Each node's progress in filling them.
    pub fills: Vec<(NodeId, FillReport)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub record: NodeRecord,
    /// It holds its lease now.
    pub alive: bool,
    pub copies: usize,
    pub primaries: usize,
}

/// The largest table entry (a bucket's record and configuration documents), under etcd's
/// 1.5 MiB request limit.
pub const MAX_CATALOGUE_ENTRY: usize = 1 << 20;

/// The region-wide tables every node applies to its own store: each entry under
/// `<table>/<name>`, and `<table>-changed` rewritten with every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The bucket catalogue: a bucket's record and configuration documents.
    Catalogue,
    /// Run-time access keys and their grants.
    Keys,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Catalogue => "catalogue",
            Table::Keys => "keys",
        }
    }
}

/// A table as read at one revision of etcd.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    pub revision: i64,
    /// Each entry's stored value and the revision it was last written at.
    pub entries: BTreeMap<String, (Vec<u8>, i64)>,
}

/// A connection to the region's keys in etcd (cheap to clone).
#[derive(Clone)]
pub struct ControlPlane {
    client: Client,
    region: String,
}

async fn timed<T, F>(f: F) -> Result<T, ControlError>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| ControlError::Timeout(CALL_TIMEOUT))?
        .map_err(ControlError::from)
}

impl ControlPlane {
    /// Connects to etcd (`http://host:port` or `host:port`, one or more members).
    pub async fn connect(endpoints: &[String], region: &str) -> Result<ControlPlane, ControlError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), CALL_TIMEOUT)
            .with_keep_alive_while_idle(true);
        let client =
            tokio::time::timeout(CALL_TIMEOUT * 2, Client::connect(endpoints, Some(options)))
                .await
                .map_err(|_| ControlError::Timeout(CALL_TIMEOUT * 2))??;
        Ok(ControlPlane {
            client,
            region: region.to_owned(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("/meridian/{}/{rest}", self.region)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<(T, i64)>, ControlError> {
        let mut c = self.client.clone();
        let resp = timed(c.get(self.key(key), None)).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(kv.value())
                .map(|v| Some((v, kv.mod_revision())))
                .map_err(|e| ControlError::Corrupt(format!("{key}: {e}"))),
        }
    }

    /// Writes `key` if it still has `revision` (0: if it does not exist).
    async fn put_if(&self, key: &str, revision: i64, value: &[u8]) -> Result<bool, ControlError> {
        let full = self.key(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let mut c = self.client.clone();
        Ok(timed(c.txn(txn)).await?.succeeded())
    }

    /// Registers a node: `id` when it has one already (its own record is updated), else a
    /// new id from `next-node-id`. Returns the node's record.
    pub async fn register(
        &self,
        id: Option<NodeId>,
        endpoint: &str,
        weight: u32,
    ) -> Result<NodeRecord, ControlError> {
        let id = match id {
            Some(id) => id,
            None => self.allocate_id().await?,
        };
        let key = format!("nodes/{id}");
        for _ in 0..8 {
            let existing = self.get_json::<NodeRecord>(&key).await?;
            let (record, revision) = match existing {
                Some((mut r, rev)) => {
                    r.endpoint = endpoint.to_owned();
                    r.weight = weight;
                    (r, rev)
                }
                None => (
                    NodeRecord {
                        id,
                        endpoint: endpoint.to_owned(),
                        weight,
                        state: NodeState::New,
                    },
                    0,
                ),
            };
            let value = serde_json::to_vec(&record).expect("a record serializes");
            if self.put_if(&key, revision, &value).await? {
                return Ok(record);
            }
        }
        Err(ControlError::Conflict("a node record"))
    }

    async fn allocate_id(&self) -> Result<NodeId, ControlError> {
        for _ in 0..16 {
            let (next, revision) = self
                .get_json::<NodeId>("next-node-id")
                .await?
                .unwrap_or((1, 0));
            let value = serde_json::to_vec(&(next + 1)).expect("a number serializes");
            if self.put_if("next-node-id", revision, &value).await? {
                return Ok(next);
            }
        }
        Err(ControlError::Conflict("next-node-id"))
    }

    /// Every registered node.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ControlError> {
        let mut c = self.client.clone();
        let resp = timed(c.get(self.key("nodes/"), Some(GetOptions::new().with_prefix()))).await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let record: NodeRecord = serde_json::from_slice(kv.value())
                .map_err(|e| ControlError::Corrupt(format!("{:?}: {e}", kv.key_str())))?;
            out.push(record);
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The nodes holding their lease now.
    pub async fn alive(&self) -> Result<Vec<NodeId>, ControlError> {
        let mut c = self.client.clone();
        let prefix = self.key("members/");
        let resp = timed(c.get(
            prefix.clone(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        ))
        .await?;
        let mut ids: Vec<NodeId> = resp
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix)?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub async fn current_layout(&self) -> Result<Option<Layout>, ControlError> {
        Ok(self.get_json("layout/current").await?.map(|(l, _)| l))
    }

    /// The current layout and its revision (for a compare-and-swap).
    pub async fn current_layout_at(&self) -> Result<Option<(Layout, i64)>, ControlError> {
        self.get_json("layout/current").await
    }

    /// Replaces the current layout with `change(current)` by compare-and-swap, again on a
    /// conflict; `Ok(None)` when there is no layout or `change` has nothing to do.
    pub async fn change_current(
        &self,
        change: impl Fn(&Layout) -> Option<Layout>,
    ) -> Result<Option<Layout>, ControlError> {
        for _ in 0..16 {
            let Some((current, revision)) = self.current_layout_at().await? else {
                return Ok(None);
            };
            let Some(next) = change(&current) else {
                return Ok(None);
            };
            let value = serde_json::to_vec(&next).expect("a layout serializes");
            if self.put_if("layout/current", revision, &value).await? {
                return Ok(Some(next));
            }
        }
        Err(ControlError::Conflict("layout/current"))
    }

    /// Records node `id`'s shipping watermarks (`shipped/<id>`): per peer region, the commit
    /// time (ns) before which every change it led was shipped there.
    pub async fn put_shipped(
        &self,
        id: NodeId,
        marks: &BTreeMap<String, i64>,
    ) -> Result<(), ControlError> {
        let mut c = self.client.clone();
        let value = serde_json::to_vec(marks).expect("watermarks serialize");
        timed(c.put(self.key(&format!("shipped/{id}")), value, None)).await?;
        Ok(())
    }

    /// Node `id`'s shipping watermarks (empty: it never recorded any).
    pub async fn shipped(&self, id: NodeId) -> Result<BTreeMap<String, i64>, ControlError> {
        let mut c = self.client.clone();
        let resp = timed(c.get(self.key(&format!("shipped/{id}")), None)).await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
            .unwrap_or_default())
    }

    /// Records this node's progress in filling the staged layout `version` (`fill/<id>`).
    pub async fn report_fill(&self, id: NodeId, report: &FillReport) -> Result<(), ControlError> {
        let mut c = self.client.clone();
        let value = serde_json::to_vec(report).expect("a report serializes");
        timed(c.put(self.key(&format!("fill/{id}")), value, None)).await?;
        Ok(())
    }

    /// Every node's fill report.
    pub async fn fill_reports(&self) -> Result<Vec<(NodeId, FillReport)>, ControlError> {
        let mut c = self.client.clone();
        let prefix = self.key("fill/");
        let resp = timed(c.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let id = kv
                .key_str()
                .ok()
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|k| k.parse().ok());
            let report = serde_json::from_slice(kv.value()).ok();
            if let (Some(id), Some(report)) = (id, report) {
                out.push((id, report));
            }
        }
        Ok(out)
    }

    /// Puts the staged layout in force, in one transaction that holds only if neither
    /// layout changed since they were read (`current_revision`, `staged_revision`): its
    /// version follows the current one's, and the staged layout and fill reports go.
    pub async fn apply_staged(
        &self,
        current: &Layout,
        current_revision: i64,
        staged: &Layout,
        staged_revision: i64,
    ) -> Result<Option<Layout>, ControlError> {
        let mut next = staged.clone();
        next.version = current.version.max(staged.version) + 1;
        // Nodes still down stay down (not waited for) in the new layout.
        next.down = current
            .down
            .iter()
            .filter(|n| next.nodes.iter().any(|m| m.id == **n))
            .copied()
            .collect();
        let value = serde_json::to_vec(&next).expect("a layout serializes");
        let (current_key, staged_key) = (self.key("layout/current"), self.key("layout/staged"));
        let txn = Txn::new()
            .when([
                Compare::mod_revision(current_key.clone(), CompareOp::Equal, current_revision),
                Compare::mod_revision(staged_key.clone(), CompareOp::Equal, staged_revision),
            ])
            .and_then([
                TxnOp::put(current_key, value, None),
                TxnOp::delete(staged_key, None),
                TxnOp::delete(
                    self.key("fill/"),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            ]);
        let mut c = self.client.clone();
        Ok(timed(c.txn(txn)).await?.succeeded().then_some(next))
    }

    /// The staged layout and its revision.
    pub async fn staged_layout_at(&self) -> Result<Option<(Layout, i64)>, ControlError> {
        self.get_json("layout/staged").await
    }

    pub async fn staged_layout(&self) -> Result<Option<Layout>, ControlError> {
        Ok(self.get_json("layout/staged").await?.map(|(l, _)| l))
    }

    async fn set_state(&self, id: NodeId, state: NodeState) -> Result<(), ControlError> {
        let key = format!("nodes/{id}");
        for _ in 0..8 {
            let Some((mut record, revision)) = self.get_json::<NodeRecord>(&key).await? else {
                return Err(ControlError::NoSuchNode(id));
            };
            record.state = state;
            let value = serde_json::to_vec(&record).expect("a record serializes");
            if self.put_if(&key, revision, &value).await? {
                return Ok(());
            }
        }
        Err(ControlError::Conflict("a node record"))
    }

    /// Puts a registered node in the layout (`cluster add-node`). The first layout of a
    /// region (once it has `replicas` active nodes) takes effect at once — there is nothing
    /// to fill; a later one is staged, to take effect once its copies are filled.
    pub async fn add_node(&self, id: NodeId, replicas: usize) -> Result<Status, ControlError> {
        self.add_nodes(&[id], replicas).await
    }

    /// [`ControlPlane::add_node`] of several nodes in one layout change.
    pub async fn add_nodes(&self, ids: &[NodeId], replicas: usize) -> Result<Status, ControlError> {
        for id in ids {
            self.set_state(*id, NodeState::Active).await?;
        }
        self.restage(replicas).await?;
        self.status().await
    }

    /// Takes a node out of the layout (`cluster remove-node`): it drains (its copies are
    /// staged onto the others) before it may be stopped.
    pub async fn remove_node(&self, id: NodeId, replicas: usize) -> Result<Status, ControlError> {
        self.set_state(id, NodeState::Draining).await?;
        self.restage(replicas).await?;
        self.status().await
    }

    /// Computes the layout of the active nodes from the current one and stores it: as the
    /// current layout when there is none yet, else as the staged one.
    async fn restage(&self, replicas: usize) -> Result<(), ControlError> {
        let members: Vec<Node> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| Node {
                id: n.id,
                weight: n.weight,
            })
            .collect();
        match self.get_json::<Layout>("layout/current").await? {
            None => {
                if members.len() < replicas {
                    return Ok(()); // not enough nodes yet for a first layout
                }
                let first = Layout::initial(&members, DEFAULT_PARTITIONS, replicas)?;
                let value = serde_json::to_vec(&first).expect("a layout serializes");
                if !self.put_if("layout/current", 0, &value).await? {
                    return Err(ControlError::Conflict("layout/current"));
                }
            }
            Some((current, _)) => {
                let staged_revision = self
                    .get_json::<Layout>("layout/staged")
                    .await?
                    .map_or(0, |(_, r)| r);
                let next = current.next(&members)?;
                let value = serde_json::to_vec(&next).expect("a layout serializes");
                if !self
                    .put_if("layout/staged", staged_revision, &value)
                    .await?
                {
                    return Err(ControlError::Conflict("layout/staged"));
                }
            }
        }
        Ok(())
    }

    pub async fn status(&self) -> Result<Status, ControlError> {
        let records = self.nodes().await?;
        let alive = self.alive().await?;
        let current = self.current_layout().await?;
        let staged = self.staged_layout().await?;
        let count = |id: NodeId, primary: bool| {
            current.as_ref().map_or(0, |l| {
                l.partitions
                    .iter()
                    .filter(|p| if primary { p[0] == id } else { p.contains(&id) })
                    .count()
            })
        };
        let nodes = records
            .into_iter()
            .map(|record| NodeStatus {
                alive: alive.contains(&record.id),
                copies: count(record.id, false),
                primaries: count(record.id, true),
                record,
            })
            .collect();
        let copies_to_fill = match (&current, &staged) {
            (Some(c), Some(s)) => c.copies_to_fill(s),
            _ => 0,
        };
        let fills = match &staged {
            Some(s) => self
                .fill_reports()
                .await?
                .into_iter()
                .filter(|(_, r)| r.version == s.version)
                .collect(),
            None => Vec::new(),
        };
        Ok(Status {
            region: self.region.clone(),
            nodes,
            current,
            staged,
            copies_to_fill,
            fills,
        })
    }

    /// The key of entry `name` of `table`.
    fn entry_key(&self, table: Table, name: &str) -> String {
        self.key(&format!("{}/{name}", table.name()))
    }

    /// The key rewritten with every change of `table` (its revision is the last change's).
    fn changed_key(&self, table: Table) -> String {
        self.key(&format!("{}-changed", table.name()))
    }

    /// Every entry of `table` (its stored value and revision), and the revision of etcd it
    /// was read at.
    pub async fn table(&self, table: Table) -> Result<Catalogue, ControlError> {
        self.table_since(table, 0).await
    }

    /// The names in `table` and the revision each was last written at (no values: what a
    /// node compares with what it applied), and the revision of etcd they were read at.
    pub async fn table_revisions(
        &self,
        table: Table,
    ) -> Result<(i64, BTreeMap<String, i64>), ControlError> {
        let mut c = self.client.clone();
        let prefix = self.key(&format!("{}/", table.name()));
        let resp = timed(c.get(
            prefix.clone(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        ))
        .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let names = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(&prefix)?;
                Some((name.to_owned(), kv.mod_revision()))
            })
            .collect();
        Ok((revision, names))
    }

    /// The entries of `table` written at `revision` or later (values and revisions).
    pub async fn table_since(
        &self,
        table: Table,
        revision: i64,
    ) -> Result<Catalogue, ControlError> {
        let mut c = self.client.clone();
        let prefix = self.key(&format!("{}/", table.name()));
        let mut options = GetOptions::new().with_prefix();
        if revision > 0 {
            options = options.with_min_mod_revision(revision);
        }
        let resp = timed(c.get(prefix.clone(), Some(options))).await?;
        let read_at = resp.header().map_or(0, |h| h.revision());
        let entries = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(&prefix)?;
                Some((name.to_owned(), (kv.value().to_vec(), kv.mod_revision())))
            })
            .collect();
        Ok(Catalogue {
            revision: read_at,
            entries,
        })
    }

    /// The revision of `table`'s last change (0: never changed).
    pub async fn table_changed(&self, table: Table) -> Result<i64, ControlError> {
        let mut c = self.client.clone();
        let resp = timed(c.get(self.changed_key(table), None)).await?;
        Ok(resp.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }

    /// One entry's stored value and revision.
    pub async fn table_entry(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<(Vec<u8>, i64)>, ControlError> {
        let mut c = self.client.clone();
        let resp = timed(c.get(self.entry_key(table, name), None)).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// Writes an entry's value if it still has `revision` (0: only if there is none, which
    /// is how a bucket is made); the revision written at, or `None` on a conflict.
    pub async fn put_table_entry(
        &self,
        table: Table,
        name: &str,
        revision: i64,
        value: Vec<u8>,
    ) -> Result<Option<i64>, ControlError> {
        if value.len() > MAX_CATALOGUE_ENTRY {
            return Err(ControlError::TooLarge(value.len()));
        }
        let key = self.entry_key(table, name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::put(key, value, None),
                TxnOp::put(self.changed_key(table), Vec::new(), None),
            ]);
        let mut c = self.client.clone();
        let resp = timed(c.txn(txn)).await?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map_or(0, |h| h.revision())))
    }

    /// Removes an entry; the revision it was removed at.
    pub async fn remove_table_entry(&self, table: Table, name: &str) -> Result<i64, ControlError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.entry_key(table, name), None),
            TxnOp::put(self.changed_key(table), Vec::new(), None),
        ]);
        let mut c = self.client.clone();
        let resp = timed(c.txn(txn)).await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Holds `node`'s membership: its `members/<id>` key under a lease of `ttl`, kept alive
    /// in the background, and granted again when etcd comes back after losing it.
    pub fn hold(&self, node: NodeRecord, ttl: Duration) -> Membership {
        let state = Arc::new(Held {
            started: Instant::now(),
            until_ms: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let task = tokio::spawn(keep_membership(self.clone(), node, ttl, state.clone()));
        Membership { state, task }
    }
}

struct Held {
    started: Instant,
    /// Milliseconds after `started` until which the lease is surely held.
    until_ms: AtomicU64,
    stopped: AtomicBool,
}

impl Held {
    fn extend(&self, sent: Instant, ttl: Duration) {
        let until = (sent + ttl).saturating_duration_since(self.started);
        self.until_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }
}

/// A node's lease in the control plane; dropping it stops keeping it alive (etcd then lets
/// it lapse, and the node's `members/` key goes with it).
pub struct Membership {
    state: Arc<Held>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Whether the node surely holds its lease now (and so may take client writes).
    pub fn may_write(&self) -> bool {
        self.gate().may_write()
    }

    /// A cheap handle for the request path.
    pub fn gate(&self) -> WriteGate {
        WriteGate {
            state: self.state.clone(),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
        self.task.abort();
    }
}

/// [`Membership::may_write`], for the request path.
#[derive(Clone)]
pub struct WriteGate {
    state: Arc<Held>,
}

impl WriteGate {
    pub fn may_write(&self) -> bool {
        let now = self.state.started.elapsed().as_millis() as u64;
        !self.state.stopped.load(Ordering::Acquire)
            && now < self.state.until_ms.load(Ordering::Acquire)
    }
}

async fn keep_membership(cp: ControlPlane, node: NodeRecord, ttl: Duration, state: Arc<Held>) {
    let ttl_s = ttl.as_secs().max(2) as i64;
    let beat = Duration::from_secs(ttl_s as u64) / 3;
    loop {
        if let Err(e) = hold_once(&cp, &node, ttl_s, beat, &state).await {
            if state.until_ms.load(Ordering::Acquire) > 0 {
                tracing::warn!(error = %e, node = node.id, "the cluster lease is not being kept: this node takes no client writes once it lapses, until it holds one again");
            }
        }
        tokio::time::sleep(beat).await;
    }
}

/// Grants a lease, puts the member key under it and keeps it alive until that fails.
async fn hold_once(
    cp: &ControlPlane,
    node: &NodeRecord,
    ttl_s: i64,
    beat: Duration,
    state: &Held,
) -> Result<(), ControlError> {
    let mut c = cp.client.clone();
    let sent = Instant::now();
    let lease = timed(c.lease_grant(ttl_s, None)).await?;
    let value = serde_json::to_vec(node).expect("a record serializes");
    timed(c.put(
        cp.key(&format!("members/{}", node.id)),
        value,
        Some(PutOptions::new().with_lease(lease.id())),
    ))
    .await?;
    state.extend(sent, Duration::from_secs(lease.ttl().max(0) as u64));
    tracing::info!(
        node = node.id,
        lease = lease.id(),
        "holding the cluster lease"
    );
    let (mut keeper, mut answers) = timed(c.lease_keep_alive(lease.id())).await?;
    loop {
        tokio::time::sleep(beat).await;
        let sent = Instant::now();
        timed(keeper.keep_alive()).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, answers.message())
            .await
            .map_err(|_| ControlError::Timeout(CALL_TIMEOUT))??;
        match answer {
            Some(a) if a.ttl() > 0 => state.extend(sent, Duration::from_secs(a.ttl() as u64)),
            // The lease is gone (it lapsed while etcd was away): grant a new one.
            _ => return Err(ControlError::Conflict("the lease (it expired)")),
        }
    }
}
