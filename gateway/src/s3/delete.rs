//! DeleteObject and DeleteObjects with S3's versioning semantics: a delete marker in enabled
//! buckets, a null marker in suspended ones, removal in unversioned ones, and removal of one
//! version when a version id is given. Deleting what does not exist succeeds, as on S3.
//!
//! Conditional deletes (`If-Match` with an ETag or `*`, and `x-amz-if-match-size` /
//! `x-amz-if-match-last-modified-time`, or the same in DeleteObjects entries) are checked
//! under the key lock against the version addressed: the named one, else the current one.
//! As on AWS, a target that does not exist (or is a delete marker) answers 404 NoSuchKey and
//! a mismatch 412.

use std::collections::BTreeMap;

use futures::StreamExt;
use meridian_cluster::layout::NodeId;
use meridian_metadata::{
    DeleteCondition, DeleteOptions, DeleteOutcome, MetaError, ReplicationState,
};
use meridian_replicator::headers::ReplicaHeaders;
use meridian_replicator::Change;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::delegated::s3_error_of;
use super::MeridianS3;
use crate::cluster::{DeleteItem, Deleted};
use crate::s3::errors::IntoS3;
use meridian_store::StoreError;

/// S3's limit on keys per DeleteObjects request.
const MAX_KEYS_PER_DELETE: usize = 1000;
/// Deletes of one DeleteObjects request in flight at once.
const DELETE_CONCURRENCY: usize = 32;

impl MeridianS3 {
    /// One delete by a client of this region. A delete marker it may create is PENDING for
    /// the peers whose rules replicate delete markers; removing a version is not replicated.
    /// `bypass_governance`: the caller asked to, and may, remove versions under GOVERNANCE
    /// retention (the metadata store refuses every other locked removal).
    pub(super) async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass_governance: bool,
        condition: Option<DeleteCondition>,
    ) -> S3Result<DeleteOutcome> {
        let replication = match version_id {
            None => {
                self.local_replication(bucket, key, &[], Change::DeleteMarker)
                    .await?
            }
            // Removing one version is not replicated, except to the other copies of its
            // partition in a region of several nodes.
            Some(_) => ReplicationState::pending_for(
                self.cluster
                    .node()
                    .map(|c| c.copy_peers(bucket, key))
                    .unwrap_or_default(),
            ),
        };
        let opts = DeleteOptions {
            replication,
            bypass_governance,
            condition,
            ..DeleteOptions::default()
        };
        self.delete_with(bucket, key, version_id, opts).await.s3()
    }

    async fn delete_with(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        opts: DeleteOptions,
    ) -> Result<DeleteOutcome, StoreError> {
        let (b, k, v) = (
            bucket.to_owned(),
            key.to_owned(),
            version_id.map(str::to_owned),
        );
        let replication = opts.replication.clone();
        let outcome = self
            .store
            .meta(move |m| m.delete_object(&b, &k, v.as_deref(), opts))
            .await;
        match outcome {
            Ok(o) => {
                if o.removed.is_some() {
                    self.store.wake_reclaimer();
                }
                // A version removed: the one named, or an unversioned key's null version.
                let removed = match (version_id, &o.removed) {
                    (_, None) => None,
                    (Some(v), Some(_)) => Some(v),
                    (None, Some(_)) if !o.delete_marker => Some(
                        o.version_id
                            .as_deref()
                            .unwrap_or(meridian_metadata::NULL_VERSION_ID),
                    ),
                    (None, Some(_)) => None,
                };
                if let (Some(c), Some(removed), false) =
                    (self.cluster.node(), removed, replication.peers.is_empty())
                {
                    // The followers remove their copies before the answer, as they take a
                    // write's (a follower that does not is marked down first); a failure
                    // leaves the removal queued for them, and the removal itself is done.
                    let peers: Vec<String> = replication.peers.keys().cloned().collect();
                    if let Err(e) = c.await_removal(bucket, key, removed, &peers).await {
                        tracing::warn!(%bucket, %key, version = %removed, error = %e, "a version's removal on the other nodes is not confirmed");
                    }
                }
                // A marker made (not one removed by its version id).
                if let (true, None, Some(marker)) = (o.delete_marker, version_id, &o.version_id) {
                    // A marker whose copies could not be confirmed stays queued for the
                    // followers; the delete itself is done.
                    if let Err(e) = self
                        .replication_queued(bucket, key, marker, 0, &replication)
                        .await
                    {
                        tracing::warn!(%bucket, %key, error = %e, "a delete marker's copies are not confirmed");
                    }
                }
                Ok(o)
            }
            Err(StoreError::Meta(
                MetaError::NoSuchKey { .. } | MetaError::NoSuchVersion { .. },
            )) => Ok(DeleteOutcome {
                version_id: version_id.map(str::to_owned),
                delete_marker: false,
                removed: None,
            }),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn delete_object_impl(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let bypass = super::object_lock::bypass_of(&req.extensions);
        let input = req.input;
        let condition = delete_condition(
            input.if_match.as_ref().map(|c| match c {
                ETagCondition::Any => None,
                ETagCondition::ETag(e) => Some(e.value().to_owned()),
            }),
            input.if_match_size,
            input.if_match_last_modified_time.as_ref(),
        )?;
        let bucket = self.bucket(&input.bucket).await?;
        // A node of this region copying its removal of a version (only a node may name
        // itself: see `cluster::routed`): the primary checked Object Lock; the copy goes.
        let copied_removal = self.cluster.node().is_some()
            && req.headers.contains_key(crate::cluster::FROM)
            && input.version_id.is_some();
        let outcome = match self.replica_of(&req.headers, &bucket)? {
            _ if copied_removal => {
                let opts = DeleteOptions {
                    unlocked: true,
                    ..DeleteOptions::default()
                };
                self.delete_with(&input.bucket, &input.key, input.version_id.as_deref(), opts)
                    .await
                    .s3()?
            }
            Some(replica) => self.replicate_delete_marker(&input, replica).await?,
            None => {
                self.delete_one(
                    &input.bucket,
                    &input.key,
                    input.version_id.as_deref(),
                    bypass,
                    condition,
                )
                .await?
            }
        };
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: outcome.delete_marker.then_some(true),
            version_id: outcome.version_id,
            request_charged: None,
        }))
    }

    /// A delete marker from a peer region, stored with the source's version id and mtime.
    async fn replicate_delete_marker(
        &self,
        input: &DeleteObjectInput,
        replica: ReplicaHeaders,
    ) -> S3Result<DeleteOutcome> {
        let (Some(version_id), Some(mtime), true, None) = (
            replica.version_id.clone(),
            replica.mtime,
            replica.delete_marker,
            &input.version_id,
        ) else {
            return Err(s3_error!(
                InvalidArgument,
                "A replicated delete names the marker's version id and mtime, with x-meridian-replica-delete-marker: true and no versionId"
            ));
        };
        let opts = DeleteOptions {
            replication: self.replica_state(&replica, &input.bucket, &input.key),
            version_id: Some(version_id.clone()),
            mtime: Some(mtime),
            ..DeleteOptions::default()
        };
        let outcome = self
            .delete_with(&input.bucket, &input.key, None, opts)
            .await
            .s3()?;
        if !outcome.delete_marker {
            crate::metrics::global().replica_conflicts.inc();
            tracing::warn!(
                bucket = %input.bucket, key = %input.key, version = %version_id, region = %replica.region,
                "a replicated delete marker named a version that exists here as an object; kept the local one"
            );
        }
        Ok(outcome)
    }

    pub(super) async fn delete_objects_impl(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        // Keys the access hook found a policy denies (none when no policy applies).
        let denied = req
            .extensions
            .get::<crate::auth::DeniedDeletes>()
            .cloned()
            .unwrap_or_default();
        let bypass = super::object_lock::bypass_of(&req.extensions);
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let objects = input.delete.objects;
        if objects.is_empty() || objects.len() > MAX_KEYS_PER_DELETE {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.as_str();
        // Each key's answer, in request order: refused ones now, the others once deleted;
        // and the conditions of those to delete.
        let mut outcomes: Vec<Option<S3Result<DeleteOutcome>>> = Vec::with_capacity(objects.len());
        let mut conditions = Vec::with_capacity(objects.len());
        for object in &objects {
            let condition = delete_condition(
                object.e_tag.as_ref().map(|e| Some(e.value().to_owned())),
                object.size,
                object.last_modified_time.as_ref(),
            );
            let (outcome, condition) = match condition {
                _ if denied.contains(&object.key, object.version_id.as_deref()) => {
                    (Some(Err(s3_error!(AccessDenied, "Access Denied"))), None)
                }
                Err(e) => (Some(Err(e)), None),
                Ok(condition) => (None, condition),
            };
            outcomes.push(outcome);
            conditions.push(condition);
        }
        if let Some(cluster) = self.cluster.node() {
            delete_elsewhere(
                cluster,
                bucket,
                bypass,
                &objects,
                &conditions,
                &mut outcomes,
            )
            .await;
        }
        // The rest here. Concurrent deletes share RocksDB's group commit: a 1,000-key
        // request costs a few synced writes' time, not a thousand. `buffered` keeps the
        // answers in request order.
        let here: Vec<usize> = (0..objects.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let done: Vec<(usize, S3Result<DeleteOutcome>)> = futures::stream::iter(here)
            .map(|i| {
                let (object, condition) = (&objects[i], conditions[i].clone());
                async move {
                    let outcome = self
                        .delete_one(
                            bucket,
                            &object.key,
                            object.version_id.as_deref(),
                            bypass,
                            condition,
                        )
                        .await;
                    (i, outcome)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .collect()
            .await;
        for (i, outcome) in done {
            outcomes[i] = Some(outcome);
        }
        let outcomes = objects
            .into_iter()
            .zip(outcomes)
            .map(|(object, outcome)| (object, outcome.expect("every key is answered")));
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (object, outcome) in outcomes {
            match outcome {
                Ok(outcome) => {
                    if quiet {
                        continue;
                    }
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        delete_marker: outcome.delete_marker.then_some(true),
                        // The marker created, or the marker removed by version id.
                        delete_marker_version_id: if outcome.delete_marker {
                            outcome.version_id
                        } else {
                            None
                        },
                        version_id: object.version_id,
                    });
                }
                Err(e) => {
                    let err = e;
                    errors.push(Error {
                        code: Some(err.code().as_str().to_owned()),
                        message: err.message().map(str::to_owned),
                        key: Some(object.key),
                        version_id: object.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            request_charged: None,
        }))
    }
}

/// In a region of several nodes, deletes the keys of a DeleteObjects that another node leads
/// there, one request per node, all at once, and puts each answer in `outcomes` (whose `None`
/// places are the keys still to delete).
async fn delete_elsewhere(
    cluster: &crate::cluster::ClusterNode,
    bucket: &str,
    bypass: bool,
    objects: &[ObjectIdentifier],
    conditions: &[Option<DeleteCondition>],
    outcomes: &mut [Option<S3Result<DeleteOutcome>>],
) {
    let mut elsewhere: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, object) in objects.iter().enumerate() {
        if let (None, Some(node)) = (&outcomes[i], cluster.leader_elsewhere(bucket, &object.key)) {
            elsewhere.entry(node).or_default().push(i);
        }
    }
    let asks = elsewhere.iter().map(|(node, places)| {
        let items = places
            .iter()
            .map(|&i| DeleteItem {
                key: objects[i].key.clone(),
                version_id: objects[i].version_id.clone(),
                condition: conditions[i].clone().map(Into::into),
            })
            .collect();
        cluster.delete_at(*node, bucket, bypass, items)
    });
    let answers = futures::future::join_all(asks).await;
    for (places, answer) in elsewhere.values().zip(answers) {
        for (n, &i) in places.iter().enumerate() {
            outcomes[i] = Some(match &answer {
                Ok(answers) => match &answers[n] {
                    Deleted::Done {
                        version_id,
                        delete_marker,
                    } => Ok(DeleteOutcome {
                        version_id: version_id.clone(),
                        delete_marker: *delete_marker,
                        removed: None,
                    }),
                    Deleted::Failed(refusal) => Err(s3_error_of(refusal)),
                },
                Err(refusal) => Err(s3_error_of(refusal)),
            });
        }
    }
}

/// The conditions of a conditional delete (DeleteObject's headers, or a DeleteObjects entry's
/// `ETag`, `Size` and `LastModifiedTime`); `None` when none is given. `etag` is `Some(None)`
/// for `If-Match: *`.
fn delete_condition(
    etag: Option<Option<String>>,
    size: Option<i64>,
    mtime: Option<&Timestamp>,
) -> S3Result<Option<DeleteCondition>> {
    if etag.is_none() && size.is_none() && mtime.is_none() {
        return Ok(None);
    }
    let size = size
        .map(|s| {
            u64::try_from(s)
                .map_err(|_| s3_error!(InvalidArgument, "The size to match is negative"))
        })
        .transpose()?;
    Ok(Some(DeleteCondition {
        etag,
        size,
        mtime_secs: mtime.map(|t| super::convert::whole_seconds(super::convert::nanos(t))),
    }))
}
