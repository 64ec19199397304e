//! The S3 side of work done for another node of the region (see `crate::cluster`'s
//! `delegated`): deletes of keys this node leads, and the sources of copies it holds.

use std::ops::Range;

use async_trait::async_trait;
use futures::StreamExt;
use meridian_metadata::VersionRecord;
use s3s::dto::CopySource;
use s3s::{s3_error, S3Error, S3ErrorCode};

use super::encryption::CustomerHeaders;
use super::MeridianS3;
use crate::cluster::stage::{StageAsk, StagedAnswer};
use crate::cluster::{ByteStream, Delegated, DeleteItem, Deleted, Refusal, SourceAsk};
use crate::s3::errors::IntoS3;
use meridian_store::ingest::{ingest, BodyError, IngestOptions};

/// Deletes of one delegated request in flight at once (as DeleteObjects here).
const DELETE_CONCURRENCY: usize = 32;

/// An S3 error, to send to another node.
pub(super) fn refusal_of(e: &S3Error) -> Refusal {
    Refusal {
        status: e.status_code().map_or(500, |s| s.as_u16()),
        code: e.code().as_str().to_owned(),
        message: e.message().unwrap_or_default().to_owned(),
    }
}

/// Another node's error, as this node answers it.
pub(super) fn s3_error_of(r: &Refusal) -> S3Error {
    let code = S3ErrorCode::from_bytes(r.code.as_bytes())
        .unwrap_or_else(|| S3ErrorCode::Custom(r.code.clone().into()));
    let mut e = S3Error::with_message(code, r.message.clone());
    if let Ok(status) = http::StatusCode::from_u16(r.status) {
        e.set_status_code(status);
    }
    e
}

impl SourceAsk {
    fn copy_source(&self) -> CopySource {
        CopySource::Bucket {
            bucket: self.bucket.as_str().into(),
            key: self.key.as_str().into(),
            version_id: self.version_id.as_deref().map(Into::into),
        }
    }

    fn customer(&self) -> CustomerHeaders<'_> {
        CustomerHeaders {
            algorithm: self.customer[0].as_deref(),
            key: self.customer[1].as_deref(),
            key_md5: self.customer[2].as_deref(),
        }
    }
}

impl MeridianS3 {
    /// Discards staged bodies no copy named.
    pub(super) fn discard_staged(&self, gone: Vec<meridian_store::ingest::Ingested>) {
        if gone.is_empty() {
            return;
        }
        crate::metrics::global()
            .staged_bodies
            .with_label_values(&["discarded"])
            .inc_by(gone.len() as u64);
        let store = self.store.clone();
        tokio::spawn(async move {
            for ingested in gone {
                store.discard(ingested.data).await;
            }
        });
    }
}

#[async_trait]
impl Delegated for MeridianS3 {
    async fn stage(
        &self,
        ask: &StageAsk,
        body: futures::stream::BoxStream<'static, Result<bytes::Bytes, BodyError>>,
    ) -> Result<StagedAnswer, String> {
        let opts = IngestOptions {
            identity: super::put::shard_identity(&ask.bucket, &ask.key),
            checksum: ask.algorithm.clone(),
            inline_threshold: self.store.inline_threshold(),
            seal: None,
        };
        let ingested = ingest(&self.store.disks, body, opts)
            .await
            .map_err(|e| format!("staging the body: {e}"))?;
        let answer = StagedAnswer::of(&ingested);
        let (held, gone) = self.staged.keep(ask, ingested);
        self.discard_staged(gone);
        match held {
            true => Ok(answer),
            false => Err("too many bodies are staged here".into()),
        }
    }

    fn expire_staged(&self) {
        let gone = self.staged.expired();
        self.discard_staged(gone);
    }

    async fn unstage(&self, name: &str) {
        let gone: Vec<_> = self.staged.remove(name).into_iter().collect();
        self.discard_staged(gone);
    }

    async fn delete(
        &self,
        bucket: &str,
        bypass_governance: bool,
        objects: Vec<DeleteItem>,
    ) -> Vec<Deleted> {
        if let Err(e) = self.bucket(bucket).await {
            let refusal = refusal_of(&e);
            return objects
                .iter()
                .map(|_| Deleted::Failed(refusal.clone()))
                .collect();
        }
        futures::stream::iter(objects)
            .map(|object| async move {
                let outcome = self
                    .delete_one(
                        bucket,
                        &object.key,
                        object.version_id.as_deref(),
                        bypass_governance,
                        object.condition.map(Into::into),
                    )
                    .await;
                match outcome {
                    Ok(o) => Deleted::Done {
                        version_id: o.version_id,
                        delete_marker: o.delete_marker,
                    },
                    Err(e) => Deleted::Failed(refusal_of(&e)),
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .collect()
            .await
    }

    async fn source(&self, ask: &SourceAsk) -> Result<VersionRecord, Refusal> {
        let record = self
            .source_here(&ask.copy_source())
            .await
            .map_err(|e| refusal_of(&e))?;
        // The copy's customer key must open the source, as it must on a single node.
        self.data_key_of(record.encryption.as_ref(), &ask.customer())
            .await
            .map_err(|e| refusal_of(&e))?;
        Ok(record)
    }

    async fn read(&self, ask: &SourceAsk, range: Range<u64>) -> Result<ByteStream, Refusal> {
        if ask.version_id.is_none() {
            return Err(refusal_of(&s3_error!(
                InvalidRequest,
                "A delegated read names the version it reads"
            )));
        }
        let record = self
            .source_here(&ask.copy_source())
            .await
            .map_err(|e| refusal_of(&e))?;
        if range.start > range.end || range.end > record.size {
            return Err(refusal_of(&s3_error!(
                InvalidRange,
                "The requested range is not satisfiable"
            )));
        }
        let key = self
            .data_key_of(record.encryption.as_ref(), &ask.customer())
            .await
            .map_err(|e| refusal_of(&e))?;
        let stream = self
            .store
            .read_plain(
                &record.storage,
                range,
                key.as_ref(),
                record.encryption.as_ref().map_or(&[][..], |e| &e.segments),
            )
            .s3()
            .map_err(|e| refusal_of(&e))?;
        Ok(Box::pin(stream.map(|r| r.map_err(|e| e.to_string()))))
    }

    async fn bucket_applied(&self, bucket: &str, docs: &[String]) {
        let name = bucket.to_owned();
        let held = self.store.meta(move |m| m.bucket_state(&name)).await;
        let Ok(Some((_, stored))) = held else {
            self.bucket_gone(bucket);
            return;
        };
        self.forget_bucket(bucket);
        let changed = |name: &str| docs.iter().any(|d| d == name);
        if changed(meridian_documents::lifecycle::CONFIG_DOCUMENT) {
            // The new rules index the versions this node holds, as where they were set.
            meridian_store::lifecycle::start_pass(&self.store, bucket);
        }
        let replication = meridian_replicator::rules::CONFIG_DOCUMENT;
        if changed(replication) {
            let config = stored
                .get(replication)
                .and_then(|doc| meridian_replicator::rules::ReplicationConfig::from_json(doc).ok());
            if let Some(config) = config {
                self.backfill_existing(bucket, &config).await;
            }
        }
    }

    fn lifecycle_preview(
        &self,
        bucket: &str,
        at: i64,
        limit: usize,
        keep: meridian_metadata::KeyFilter<'_>,
    ) -> Result<Vec<meridian_api::PreviewAction>, String> {
        crate::admin::lifecycle::preview_actions(&self.store, bucket, at, limit, Some(keep))
    }

    async fn reship(&self, bucket: &str, key: &str, version_id: &str) -> usize {
        let (b, k, v) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
        let Ok(Some(record)) = self
            .store
            .meta(move |m| m.get_version(&b, &k, Some(&v)))
            .await
        else {
            return 0;
        };
        // A peer region's replica is never sent on; a version this node committed itself is
        // in its own outbox already.
        let own = matches!(
            &record.replication.origin,
            meridian_metadata::Origin::Replica { region } if *region == self.region
        );
        if !own || !self.replicator.has_peers() {
            return 0;
        }
        let (r, b, k, tags) = (
            self.replicator.clone(),
            bucket.to_owned(),
            key.to_owned(),
            record.tags.clone(),
        );
        let change = meridian_replicator::version_change(record.encryption.as_ref());
        let peers = tokio::task::spawn_blocking(move || r.pending_peers(&b, &k, &tags, change))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut queued = 0;
        for peer in peers {
            let (b, k, v) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
            let requeued = self
                .store
                .meta(move |m| m.requeue_copy(&peer, &b, &k, &v))
                .await;
            if matches!(requeued, Ok(meridian_metadata::Requeued::Queued(_))) {
                queued += 1;
            }
        }
        if queued > 0 {
            self.replicator.changed();
        }
        queued
    }
}
