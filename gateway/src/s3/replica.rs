//! Where S3 writes meet replication: a local change is committed with PENDING for every peer
//! whose rule matches it (in the same batch, so HEAD says PENDING at once), and a write that
//! carries `x-meridian-replica-*` headers from a peer region is stored verbatim — same version
//! id, mtime, ETag and checksum — as a REPLICA that is never sent on.
//!
//! The access hook has already refused replica headers from anyone without the replicate
//! grant; here they are parsed and checked against the body that actually arrived.

use http::HeaderMap;
use meridian_metadata::{
    BucketRecord, ChangeSource, Checksum, NewVersion, Origin, PeerStatus, ReplicationState,
    VersionRecord, VersioningState,
};
use meridian_replicator::headers::ReplicaHeaders;
use meridian_replicator::Change;
use s3s::dto::ReplicationStatus;
use s3s::{s3_error, S3Result};

use super::MeridianS3;
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    /// The replication state a local change commits with: PENDING for each peer a rule of the
    /// bucket sends it to (none when no peer is configured).
    pub(super) async fn local_replication(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(String, String)],
        change: Change,
    ) -> S3Result<ReplicationState> {
        Ok(ReplicationState::pending_for(
            self.pending_peers(bucket, key, tags, change).await?,
        ))
    }

    /// The replication state a change from a peer region commits with: a REPLICA, and PENDING
    /// for the followers of its partition when this node of a region of several nodes leads
    /// it (a copy from another node of this region goes nowhere).
    pub(super) fn replica_state(
        &self,
        replica: &ReplicaHeaders,
        bucket: &str,
        key: &str,
    ) -> ReplicationState {
        let mut state = ReplicationState::replica_from(&replica.region);
        if let (Some(c), false) = (self.cluster.node(), replica.copy) {
            state.peers = c
                .copy_peers(bucket, key)
                .into_iter()
                .map(|p| (p, PeerStatus::Pending))
                .collect();
        }
        state
    }

    /// The peers a local change must reach under the bucket's current rules.
    pub(super) async fn pending_peers(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(String, String)],
        change: Change,
    ) -> S3Result<Vec<String>> {
        // The followers of the key's partition, when this node of a cluster leads it.
        let copies = match self.cluster.node() {
            Some(c) => c.copy_peers(bucket, key),
            None => Vec::new(),
        };
        if !self.replicator.has_peers() {
            return Ok(copies);
        }
        let (r, b, k, t) = (
            self.replicator.clone(),
            bucket.to_owned(),
            key.to_owned(),
            tags.to_vec(),
        );
        let peers = tokio::task::spawn_blocking(move || r.pending_peers(&b, &k, &t, change))
            .await
            .map_err(|e| s3_error!(InternalError, "replication rules task failed: {e}"))?
            .map_err(meridian_store::StoreError::from)
            .s3()?;
        Ok(peers.into_iter().chain(copies).collect())
    }

    /// Who makes a change that is not a new version (tags, lock) and which peers take it:
    /// a client of this region sends it to the peers the version's rules match; a peer
    /// region's change (`replica`) is recorded as its and goes nowhere.
    pub(super) async fn change_source(
        &self,
        replica: Option<ReplicaHeaders>,
        record: &VersionRecord,
        tags: &[(String, String)],
    ) -> S3Result<ChangeSource> {
        let (bucket, key) = (record.bucket.as_str(), record.key.as_str());
        Ok(match replica {
            Some(r) => {
                let state = self.replica_state(&r, bucket, key);
                ChangeSource {
                    origin: state.origin,
                    peers: state.peers.into_keys().collect(),
                }
            }
            None => ChangeSource {
                origin: Origin::Local,
                peers: self
                    .pending_peers(
                        bucket,
                        key,
                        tags,
                        meridian_replicator::version_change(record.encryption.as_ref()),
                    )
                    .await?,
            },
        })
    }

    /// After a commit that queued work for peers: wake their workers, and for `sync` peers
    /// wait until they have the version of `size` bytes (or their `sync_timeout` passed; the
    /// write is still acknowledged then, and the version stays PENDING for the background
    /// path).
    pub(super) async fn replication_queued(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        size: u64,
        replication: &ReplicationState,
    ) -> S3Result<()> {
        // A node of a cluster acknowledges its own writes, and a peer region's, only with
        // their copies made, and only as the partition's primary (not a copy it received).
        let copied = match &replication.origin {
            Origin::Local => true,
            Origin::Replica { .. } => !replication.peers.is_empty(),
        };
        if let (Some(c), true) = (self.cluster.node(), copied) {
            let peers: Vec<String> = replication.peers.keys().cloned().collect();
            c.await_copies(bucket, key, version_id, size, &peers)
                .await
                .map_err(|e| {
                    tracing::warn!(%bucket, %key, error = %e, "a version's copies could not be made or accounted for");
                    s3_error!(ServiceUnavailable, "The version's copies on other nodes could not be confirmed; try again")
                })?;
        }
        if replication.peers.is_empty() {
            return Ok(());
        }
        self.replicator.changed();
        let peers: Vec<String> = replication.peers.keys().cloned().collect();
        let late = self
            .replicator
            .wait_synced(bucket, key, version_id, &peers)
            .await;
        if !late.is_empty() {
            tracing::warn!(
                %bucket, %key, version = %version_id, peers = ?late,
                "sync replication timed out; acknowledged, the version stays PENDING for them"
            );
        }
        Ok(())
    }

    /// The replica headers of a write, if it is one; a replica only goes into a bucket with
    /// versioning enabled (as AWS requires of a replication destination).
    pub(super) fn replica_of(
        &self,
        headers: &HeaderMap,
        bucket: &BucketRecord,
    ) -> S3Result<Option<ReplicaHeaders>> {
        let Some(replica) = ReplicaHeaders::from_headers(headers)
            .map_err(|reason| s3_error!(InvalidArgument, "{reason}"))?
        else {
            return Ok(None);
        };
        let mut replica = replica;
        replica.copy = self.cluster.node().is_some() && headers.contains_key(crate::cluster::FROM);
        // A copy from another node of this region keeps the bucket's own versioning.
        let copy = replica.region == self.region && self.cluster.node().is_some();
        if bucket.versioning != VersioningState::Enabled && !copy {
            return Err(s3_error!(
                InvalidRequest,
                "Destination bucket must have versioning enabled."
            ));
        }
        Ok(Some(replica))
    }
}

/// Makes `new` the replica the headers describe, after checking them against what arrived:
/// the body's MD5 must be the claimed ETag when the body is the whole object (`whole_body`),
/// and a checksum computed here must equal the claimed one of the same algorithm.
pub(super) fn apply_replica(
    new: &mut NewVersion,
    replica: &ReplicaHeaders,
    whole_body: bool,
) -> S3Result<()> {
    let (Some(version_id), Some(mtime)) = (&replica.version_id, replica.mtime) else {
        return Err(s3_error!(
            InvalidArgument,
            "A replica write needs x-meridian-replica-version-id and x-meridian-replica-mtime"
        ));
    };
    if let Some(etag) = &replica.etag {
        if whole_body && *etag != new.etag {
            return Err(s3_error!(
                BadDigest,
                "The replica's ETag does not match the body that was received."
            ));
        }
        new.etag = etag.clone();
    }
    new.checksum = merge_checksum(new.checksum.take(), replica.checksum.clone())?;
    if let Some(sealed) = &replica.sealed {
        // The body was the version's ciphertext: what was computed here is of that; the
        // version's own size, checksum and encryption came with it, and must describe
        // exactly the bytes that arrived.
        let record = sealed.record();
        let plain: u64 = record.segments.iter().sum();
        let stored: u64 = record
            .segments
            .iter()
            .map(|&s| meridian_store::encryption::package::sealed_size(s))
            .sum();
        if plain != sealed.size || stored != new.size || record.segments.is_empty() {
            return Err(s3_error!(
                BadDigest,
                "The sealed replica's segments do not match the bytes that were received."
            ));
        }
        new.size = sealed.size;
        new.checksum = sealed.checksum.clone();
        new.encryption = Some(record);
        new.parts.clear();
    }
    new.version_id = Some(version_id.clone());
    new.mtime = Some(mtime);
    // The source's ACL (its owner and grants), not one made here for the replication user.
    new.acl = replica.acl.clone();
    new.replication = ReplicationState::replica_from(&replica.region);
    // A replica is the source's version, whatever is current here.
    new.precondition = None;
    Ok(())
}

/// The checksum a replica stores: the source's, which must equal the one computed here when
/// both use the same algorithm (the source's SHA of a split object cannot be recomputed from
/// its parts; the parts were checked on arrival).
fn merge_checksum(
    computed: Option<Checksum>,
    claimed: Option<Checksum>,
) -> S3Result<Option<Checksum>> {
    match (computed, claimed) {
        (Some(c), Some(s)) if c.algorithm == s.algorithm && c.value != s.value => Err(s3_error!(
            BadDigest,
            "The replica's checksum does not match the checksum computed from what was received."
        )),
        (_, Some(s)) => Ok(Some(s)),
        (c, None) => Ok(c),
    }
}

/// A replica write of a version id this node already had: the stored version is kept. When
/// its content differs, that is a conflict worth an operator's attention.
pub(super) fn note_existing(stored: &VersionRecord, replica: &ReplicaHeaders, etag: &str) {
    let same = stored.etag == etag && Some(stored.mtime) == replica.mtime;
    if !same {
        crate::metrics::global().replica_conflicts.inc();
        tracing::warn!(
            bucket = %stored.bucket, key = %stored.key, version = %stored.version_id,
            stored_etag = %stored.etag, replica_etag = %etag, region = %replica.region,
            "a replica named a version that exists here with other content; kept the local one"
        );
    }
}

/// `x-amz-replication-status` of a version: REPLICA on the target; on the source FAILED if
/// any peer failed, else PENDING if any is pending, else COMPLETED; none if no peer takes it.
pub(super) fn replication_status(record: &VersionRecord) -> Option<ReplicationStatus> {
    let status = match &record.replication.origin {
        Origin::Replica { .. } => ReplicationStatus::REPLICA,
        Origin::Local => {
            let peers = &record.replication.peers;
            if peers.is_empty() {
                return None;
            }
            if peers
                .values()
                .any(|s| matches!(s, PeerStatus::Failed { .. }))
            {
                ReplicationStatus::FAILED
            } else if peers.values().any(|s| *s == PeerStatus::Pending) {
                ReplicationStatus::PENDING
            } else {
                ReplicationStatus::COMPLETED
            }
        }
    };
    Some(ReplicationStatus::from_static(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_metadata::{ChecksumAlgorithm, ChecksumType};

    fn crc(value: &str) -> Checksum {
        Checksum {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            value: value.into(),
            kind: ChecksumType::FullObject,
        }
    }

    fn replica() -> ReplicaHeaders {
        ReplicaHeaders {
            region: "east".into(),
            version_id: Some("v1".into()),
            mtime: Some(7),
            etag: Some("abc".into()),
            checksum: Some(crc("x")),
            delete_marker: false,
            sealed: None,
            acl: None,
            copy: false,
        }
    }

    #[test]
    fn a_replica_keeps_the_source_identity() {
        let mut new = NewVersion {
            etag: "abc".into(),
            checksum: Some(crc("x")),
            ..NewVersion::default()
        };
        apply_replica(&mut new, &replica(), true).unwrap();
        assert_eq!(new.version_id.as_deref(), Some("v1"));
        assert_eq!(new.mtime, Some(7));
        assert_eq!(
            new.replication.origin,
            Origin::Replica {
                region: "east".into()
            }
        );
    }

    #[test]
    fn a_replica_whose_body_differs_is_refused() {
        let mut wrong_etag = NewVersion {
            etag: "other".into(),
            ..NewVersion::default()
        };
        let e = apply_replica(&mut wrong_etag, &replica(), true).unwrap_err();
        assert_eq!(e.code().as_str(), "BadDigest");
        let mut wrong_sum = NewVersion {
            etag: "abc".into(),
            checksum: Some(crc("y")),
            ..NewVersion::default()
        };
        let e = apply_replica(&mut wrong_sum, &replica(), true).unwrap_err();
        assert_eq!(e.code().as_str(), "BadDigest");
    }

    #[test]
    fn a_split_replica_takes_the_source_etag() {
        let mut new = NewVersion {
            etag: "md5s-3".into(),
            ..NewVersion::default()
        };
        apply_replica(&mut new, &replica(), false).unwrap();
        assert_eq!(new.etag, "abc");
        assert_eq!(new.checksum, Some(crc("x")));
    }

    #[test]
    fn status_sums_up_the_peers() {
        let mut r = VersionRecord::default();
        assert_eq!(replication_status(&r), None);
        r.replication
            .peers
            .insert("a".into(), PeerStatus::Completed);
        assert_eq!(replication_status(&r).unwrap().as_str(), "COMPLETED");
        r.replication.peers.insert("b".into(), PeerStatus::Pending);
        assert_eq!(replication_status(&r).unwrap().as_str(), "PENDING");
        r.replication.peers.insert(
            "c".into(),
            PeerStatus::Failed {
                error: "x".into(),
                attempts: 1,
            },
        );
        assert_eq!(replication_status(&r).unwrap().as_str(), "FAILED");
        r.replication.origin = Origin::Replica { region: "e".into() };
        assert_eq!(replication_status(&r).unwrap().as_str(), "REPLICA");
    }
}
