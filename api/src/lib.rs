//! The JSON documents of Meridian's admin API (`/_meridian/...`): what the server writes and
//! what `meridian replication`, `meridian drill` and `meridian bench replication` read, as
//! one set of types, so a field renamed on one side cannot go unnoticed on the other; and
//! ([`version`]) what a client can observe of an object version, with the one comparison the
//! replicator, `meridian drill verify` and the tests use. The server (through the replicator)
//! and the client tools both link it; it holds no server logic.

pub mod version;

/// Request header: answer from this region's own data, never by a read proxied to a peer.
/// Waits for a replica (`meridian bench replication`, `drill`, tests) set it, so that a
/// version the target does not hold yet is not counted as arrived.
pub const NO_PROXY: &str = "x-meridian-no-proxy";

use serde::{Deserialize, Serialize};

/// Pending work of a peer (or of one of its buckets), as reported.
///
/// In JSON the figures are also written under their old names, `versions` and `bytes`, for
/// one release (deprecated: they read as "no versions" when they mean "nothing pending").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Pending {
    /// Changes (versions, delete markers, tag changes) not yet acknowledged by the peer.
    pub pending_versions: u64,
    /// Bytes of the pending versions.
    pub pending_bytes: u64,
    /// Age of the oldest pending change; 0 when nothing is pending.
    pub lag_seconds: f64,
    /// Pending changes that failed at least once, and of those, permanently.
    pub retrying: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// [`Pending`] as written: the figures, then their deprecated aliases.
#[derive(Serialize)]
struct PendingWire<'a> {
    pending_versions: u64,
    pending_bytes: u64,
    lag_seconds: f64,
    retrying: u64,
    failed: u64,
    last_error: &'a Option<String>,
    /// Deprecated alias of `pending_versions`.
    versions: u64,
    /// Deprecated alias of `pending_bytes`.
    bytes: u64,
}

impl Serialize for Pending {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PendingWire {
            pending_versions: self.pending_versions,
            pending_bytes: self.pending_bytes,
            lag_seconds: self.lag_seconds,
            retrying: self.retrying,
            failed: self.failed,
            last_error: &self.last_error,
            versions: self.pending_versions,
            bytes: self.pending_bytes,
        }
        .serialize(s)
    }
}

/// Who paused sending to a peer, and when: kept in the node's metadata, so a paused peer
/// stays paused across restarts until someone resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedBy {
    /// The access key of the principal that paused it (`root` for the root key).
    pub principal: String,
    /// Unix seconds.
    pub since: i64,
}

/// A bucket's share of a peer's pending work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketReport {
    pub bucket: String,
    #[serde(flatten)]
    pub pending: Pending,
}

/// A backfill or resync, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub bucket: String,
    /// `backfill` or `resync`.
    pub kind: String,
    pub running: bool,
    pub cancelled: bool,
    pub scanned: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    pub skipped: u64,
    /// Unix seconds.
    pub started: i64,
    pub finished: Option<i64>,
}

/// One peer, as reported by `GET /_meridian/replication/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub peer: String,
    pub endpoint: String,
    /// `meridian` or `s3`.
    pub kind: String,
    /// `async` or `sync`.
    pub mode: String,
    pub paused: bool,
    /// Who paused it and when, while it is paused.
    #[serde(default)]
    pub paused_by: Option<PausedBy>,
    #[serde(flatten)]
    pub pending: Pending,
    /// Since the server started.
    pub sent_versions: u64,
    pub sent_bytes: u64,
    pub buckets: Vec<BucketReport>,
    pub jobs: Vec<JobReport>,
}

/// `GET /_meridian/replication/status[?bucket=B]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub peers: Vec<PeerReport>,
}

impl ReplicationStatus {
    /// The peer named `peer`.
    pub fn peer(&self, peer: &str) -> Option<&PeerReport> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

/// `POST /_meridian/replication/checkpoint`: what the checkpoint found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointReport {
    pub peer: String,
    pub bucket: Option<String>,
    /// The peer has every change committed before the checkpoint was called.
    pub reached: bool,
    pub waited_seconds: f64,
    /// What was still pending of those changes when the checkpoint returned.
    pub pending: Pending,
}

/// `POST /_meridian/replication/pause|resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    pub peer: String,
    pub paused: bool,
    #[serde(default)]
    pub paused_by: Option<PausedBy>,
}

/// `POST /_meridian/replication/resync`: the jobs started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncStarted {
    pub peer: String,
    pub jobs: Vec<JobReport>,
}

/// `POST /_meridian/replication/resync/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancelled {
    pub peer: String,
    pub bucket: String,
    pub cancelled: bool,
}

/// `GET|POST /_meridian/fence`, `POST /_meridian/unfence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceState {
    pub fenced: bool,
}

/// `GET /_meridian/lifecycle/status[?bucket=B]`: the lifecycle rules and the work they left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleStatus {
    /// The length of a lifecycle day when it is not a real one (`[lifecycle] day`, tests).
    pub test_day_seconds: Option<f64>,
    pub buckets: Vec<BucketLifecycle>,
    /// Actions due now and not yet taken (counted up to 100,000).
    pub backlog: u64,
    /// How long the oldest of them has waited.
    pub oldest_due_age_seconds: f64,
    /// When the next action falls due (Unix seconds), if any is indexed.
    pub next_due: Option<i64>,
    /// When the worker last looked for due actions (Unix seconds).
    pub last_run: Option<i64>,
    /// Actions taken since the server started, by kind.
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Bytes of versions removed since the server started.
    pub bytes_freed: u64,
}

/// One bucket with lifecycle rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketLifecycle {
    pub bucket: String,
    /// Rule IDs, `(disabled)` after the ones that are.
    pub rules: Vec<String>,
    /// While the versions stored before the rules are being indexed: how many so far.
    pub indexing: Option<u64>,
}

/// `GET /_meridian/lifecycle/preview?bucket=B[&at=UNIX_SECONDS]`: what the rules would do by
/// then, without acting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecyclePreview {
    pub bucket: String,
    pub at: i64,
    /// Actions listed (at most 1,000; `truncated` says when there are more).
    pub actions: Vec<PreviewAction>,
    pub truncated: bool,
    /// Versions removed and bytes freed by the listed actions.
    pub versions: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviewAction {
    /// `expire_current`, `expire_noncurrent` or `abort_upload`.
    pub action: String,
    pub key: String,
    /// The version id (the upload id for `abort_upload`).
    pub id: String,
    /// When it falls due (Unix seconds).
    pub due: i64,
    pub frees: u64,
}

/// Any refusal of the admin API itself (the S3 layer below it answers S3 error documents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_report_keeps_its_flattened_pending_figures_on_the_way_back() {
        let report = PeerReport {
            peer: "west".into(),
            endpoint: "http://127.0.0.1:9102".into(),
            kind: "meridian".into(),
            mode: "async".into(),
            paused: true,
            paused_by: Some(PausedBy {
                principal: "root".into(),
                since: 1_700_000_000,
            }),
            pending: Pending {
                pending_versions: 3,
                pending_bytes: 1024,
                lag_seconds: 1.5,
                retrying: 1,
                failed: 0,
                last_error: Some("timeout".into()),
            },
            sent_versions: 10,
            sent_bytes: 4096,
            buckets: vec![],
            jobs: vec![],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["pending_versions"], 3,
            "pending figures sit beside the peer's name"
        );
        assert_eq!(json["pending_bytes"], 1024);
        assert_eq!(json["versions"], 3, "the deprecated alias is still written");
        assert_eq!(json["bytes"], 1024);
        assert_eq!(json["paused_by"]["principal"], "root");
        let back: PeerReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}

/// One grant of a key, as `meridian admin key info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GrantInfo {
    /// A bucket, a prefix ending in `*`, or `*`.
    pub bucket: String,
    /// `read`, `write`, `owner`, `create`, `admin` or `replicate`.
    pub access: String,
}

/// An access key as the admin API reports it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub access_key: String,
    pub name: String,
    /// `runtime` (managed with `meridian admin`), or `config` (the configuration file's root
    /// and `[[users]]`: read-only here).
    pub source: String,
    pub enabled: bool,
    /// RFC 3339.
    pub created: Option<String>,
    pub expires: Option<String>,
    /// Until when the secret before the last rotation is still accepted.
    pub previous_secret_valid_until: Option<String>,
    pub grants: Vec<GrantInfo>,
    /// Who made the last change and where.
    pub changed_by: Option<String>,
    pub changed_in: Option<String>,
}

/// The answer to creating or rotating a key: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySecret {
    pub access_key: String,
    pub secret_key: String,
    pub name: String,
    /// After a rotation with a grace period: until when the old secret is accepted.
    pub previous_secret_valid_until: Option<String>,
}

/// Every key of a region, for `meridian admin key list` and `meridian drill verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}
