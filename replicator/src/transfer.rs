//! Sending one change to one peer: the change is looked up again (it may be gone), the
//! bucket's rules are read again (they may have changed since it was queued), and then a
//! version is uploaded (`upload`), a delete marker or a tag change is applied — each verified
//! before it counts as done.

use std::sync::Arc;

use aws_sdk_s3::types::{Tag, Tagging};
use meridian_metadata::{MetaError, MetaStore, Origin, OutboxEntry, OutboxKind, VersionRecord};

use crate::config::ReplicationSettings;
use crate::error::SendError;
use crate::headers::ReplicaHeaders;
use crate::peer::{add_headers, control_call, Peer};
use crate::rules::{Change, Delivery};
use crate::source::ObjectSource;
use crate::RulesCache;

/// What every transfer needs of the node.
pub(crate) struct Shared {
    pub meta: MetaStore,
    pub source: Arc<dyn ObjectSource>,
    pub rules: Arc<RulesCache>,
    pub settings: ReplicationSettings,
    /// This node's region, named in replica headers.
    pub region: String,
    /// Writers waiting for sync-mode peers.
    pub waiters: crate::sync::Waiters,
}

/// How a change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The peer has it, verified. Foreign peers report the version id they gave it.
    Done { target_version_id: Option<String> },
    /// Nothing to send (any more): the reason says why.
    Skipped(&'static str),
}

impl Sent {
    pub(crate) fn done() -> Sent {
        Sent::Done {
            target_version_id: None,
        }
    }
}

/// Runs a blocking metadata call off the async workers; its failure is transient (the
/// change stays queued).
pub(crate) async fn metadata<R, F>(meta: &MetaStore, f: F) -> Result<R, SendError>
where
    R: Send + 'static,
    F: FnOnce(&MetaStore) -> Result<R, MetaError> + Send + 'static,
{
    let meta = meta.clone();
    tokio::task::spawn_blocking(move || f(&meta))
        .await
        .map_err(|e| SendError::transient(format!("metadata task failed: {e}")))?
        .map_err(|e| SendError::transient(format!("metadata: {e}")))
}

/// Sends `entry` to `peer`, or says why there is nothing to send.
pub(crate) async fn send_change(
    shared: &Shared,
    peer: &Peer,
    entry: &OutboxEntry,
) -> Result<Sent, SendError> {
    if entry.kind == OutboxKind::DeleteVersion {
        if peer.config.mirror {
            return delete_version(peer, entry).await;
        }
        return Ok(Sent::Skipped("removing a version is not replicated"));
    }
    let (b, k, v) = (
        entry.bucket.clone(),
        entry.key.clone(),
        entry.version_id.clone(),
    );
    let found = metadata(&shared.meta, move |m| {
        match m.get_version(&b, &k, Some(&v)) {
            Err(MetaError::NoSuchBucket { .. }) => Ok(None),
            other => other,
        }
    })
    .await?;
    let Some(record) = found else {
        return Ok(Sent::Skipped("the version no longer exists"));
    };
    if !entry.kind.is_metadata_only()
        && !peer.config.mirror
        && matches!(&record.replication.origin, Origin::Replica { region } if *region != shared.region)
    {
        // Replicas are never sent on: this is what keeps active-active from looping. (The
        // other nodes of this region take them: their copies of a replica are replicas of
        // the same region. A copy of this region's own write, which another node of the
        // region led, is this region's write: a node that took over the partition ships it.)
        return Ok(Sent::Skipped("the version is a replica"));
    }
    let Some(target) = current_target(shared, peer, &record).await? else {
        return Ok(Sent::Skipped(
            "no enabled replication rule sends it to this peer any more",
        ));
    };
    let sender = Sender {
        shared,
        peer,
        target: &target,
        sealed: None,
    };
    match entry.kind {
        OutboxKind::Put | OutboxKind::DeleteMarker if record.is_delete_marker => {
            sender.send_marker(&record).await
        }
        OutboxKind::Put | OutboxKind::DeleteMarker => sender.send_version(&record).await,
        OutboxKind::Tags => sender.send_tags(&record).await,
        OutboxKind::Lock => sender.send_lock(&record).await,
        OutboxKind::DeleteVersion => unreachable!("handled above"),
    }
}

/// Removes one version on a mirror peer (a node of this region): its own removal, not a
/// replica of anything.
async fn delete_version(peer: &Peer, entry: &OutboxEntry) -> Result<Sent, SendError> {
    let what = format!(
        "DeleteObject {}/{} (version {}) on peer {}",
        entry.bucket,
        entry.key,
        entry.version_id,
        peer.name()
    );
    peer.client
        .delete_object()
        .bucket(&entry.bucket)
        .key(crate::sdk_key(&entry.key))
        .version_id(&entry.version_id)
        // The primary removed it (Object Lock checked there): its copy goes too, or the
        // follower holds a version the region removed. (The follower skips the check for a
        // removal copied from a node; this asks for what an older follower can do.)
        .bypass_governance_retention(true)
        .customize()
        .config_override(crate::peer::control_call())
        .send()
        .await
        .map_err(|e| SendError::from_sdk(&what, e))?;
    Ok(Sent::done())
}

/// The rule that sends this version to `peer` now, read at send time.
async fn current_target(
    shared: &Shared,
    peer: &Peer,
    record: &VersionRecord,
) -> Result<Option<Delivery>, SendError> {
    if peer.config.mirror {
        // Another node of this region shares its keyring: an SSE-KMS version keeps its key.
        return Ok(Some(Delivery {
            peer: peer.name().to_owned(),
            bucket: record.bucket.clone(),
            rule_id: "mirror".into(),
            replica_kms_key_id: record
                .encryption
                .as_ref()
                .and_then(|e| e.kms_key_id.clone()),
        }));
    }
    let (rules, bucket) = (shared.rules.clone(), record.bucket.clone());
    // The cache answers from memory; a miss reads one small document.
    let rules = tokio::task::spawn_blocking(move || rules.get(&bucket))
        .await
        .map_err(|e| SendError::transient(format!("rules task failed: {e}")))?
        .map_err(|e| SendError::transient(format!("reading replication rules: {e}")))?;
    let change = if record.is_delete_marker {
        Change::DeleteMarker
    } else {
        crate::version_change(record.encryption.as_ref())
    };
    Ok(rules.and_then(|r| r.target_on(peer.name(), &record.key, &record.tags, change)))
}

/// One change on its way to one destination.
pub(crate) struct Sender<'a> {
    pub shared: &'a Shared,
    pub peer: &'a Peer,
    pub target: &'a Delivery,
    /// Set while a version travels sealed (SSE-C): what the peer stores with its ciphertext.
    pub sealed: Option<crate::headers::Sealed>,
}

impl Sender<'_> {
    /// The replica headers for a write of `record` (none for foreign peers).
    pub(crate) fn replica_headers(&self, record: &VersionRecord) -> Vec<(&'static str, String)> {
        if !self.peer.is_meridian() {
            return Vec::new();
        }
        // A mirror (another node of this region) keeps the version's origin: a replica of
        // a peer region's version stays one.
        let region = match &record.replication.origin {
            Origin::Replica { region } if self.peer.config.mirror => region.clone(),
            _ => self.shared.region.clone(),
        };
        ReplicaHeaders {
            region,
            version_id: Some(record.version_id.clone()),
            mtime: Some(record.mtime),
            etag: (!record.is_delete_marker).then(|| record.etag.clone()),
            checksum: record.checksum.clone(),
            delete_marker: record.is_delete_marker,
            sealed: self.sealed.clone(),
            acl: record.acl.clone(),
            copy: false,
        }
        .to_pairs()
    }

    /// What to call the destination object in messages.
    pub(crate) fn what(&self, op: &str, record: &VersionRecord) -> String {
        format!(
            "{op} {}/{} (version {}) on peer {}",
            self.target.bucket,
            record.key,
            record.version_id,
            self.peer.name()
        )
    }

    async fn send_marker(&self, record: &VersionRecord) -> Result<Sent, SendError> {
        let what = self.what("DeleteObject", record);
        let out = self
            .peer
            .client
            .delete_object()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .customize()
            .config_override(control_call())
            .mutate_request(add_headers(self.replica_headers(record)))
            .send()
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        if !self.peer.is_meridian() {
            return Ok(Sent::Done {
                target_version_id: out.version_id().map(str::to_owned),
            });
        }
        // The peer answers with the marker it stored (or already had): it must be ours.
        match (out.version_id(), out.delete_marker()) {
            (Some(v), Some(true)) if v == record.version_id => Ok(Sent::done()),
            (v, marker) => Err(SendError::permanent(format!(
                "{what}: the peer holds version {v:?} (delete marker: {marker:?}) instead of this delete marker"
            ))),
        }
    }

    /// The id `record` has on the peer; `None` while it is not there yet (the version itself
    /// will carry its tags and lock as they are then).
    pub(crate) fn target_version_id(&self, record: &VersionRecord) -> Option<String> {
        if self.peer.is_meridian() {
            Some(record.version_id.clone())
        } else {
            record
                .replication
                .target_versions
                .get(self.peer.name())
                .cloned()
        }
    }

    /// The replica headers of a metadata-only change (tags, lock): the region alone.
    pub(crate) fn change_headers(&self) -> Vec<(&'static str, String)> {
        if !self.peer.is_meridian() {
            return Vec::new();
        }
        // An upload of a version that travels sealed says so from its start: the peer must
        // store its parts as they come, not seal them again for its bucket's default.
        ReplicaHeaders {
            region: self.shared.region.clone(),
            sealed: self.sealed.clone(),
            ..ReplicaHeaders::default()
        }
        .to_pairs()
    }

    async fn send_tags(&self, record: &VersionRecord) -> Result<Sent, SendError> {
        let Some(version_id) = self.target_version_id(record) else {
            return Ok(Sent::done());
        };
        let tag_set = record
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SendError::permanent(format!("building the tag set: {e}")))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| SendError::permanent(format!("building the tag set: {e}")))?;
        let headers = self.change_headers();
        let what = self.what("PutObjectTagging", record);
        let answer = self
            .peer
            .client
            .put_object_tagging()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .version_id(version_id)
            .tagging(tagging)
            .customize()
            .config_override(control_call())
            .mutate_request(add_headers(headers))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(Sent::done()),
            Err(e) => {
                let e = SendError::from_sdk(&what, e);
                if e.is_code("NoSuchVersion") || e.is_code("NoSuchKey") {
                    // The version is still on its way (or failed and is being retried): when
                    // it arrives it carries the tags it has then, which include these.
                    Ok(Sent::done())
                } else {
                    Err(e)
                }
            }
        }
    }
}
