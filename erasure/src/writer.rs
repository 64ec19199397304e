//! Streaming writes of a new object.
//!
//! [`ObjectWriter`] cuts the incoming byte stream into stripes and feeds them to the write
//! pipeline (see `write_pipeline`). Only after `finish()` has sealed at least the write quorum
//! of shards are they renamed into place; below quorum nothing is left behind.

use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::buffer_pool;
use crate::durable_fs::remove_if_present;
use crate::geometry::block_size_for;
use crate::set_state::SetInner;
use crate::shard_format::MAX_IDENTITY_LEN;
use crate::write_pipeline::{ShardTarget, Stripe, WritePipeline, WritePlan};
use crate::{descriptor::placement_for, DataId, ErasureError, ObjectDescriptor};

/// Result of a successful write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Store this to read, heal or delete the object later.
    pub descriptor: ObjectDescriptor,
    /// Shard indexes that could not be written although write quorum was met; pass the
    /// descriptor to [`crate::DiskSet::heal`] to rebuild them.
    pub missing_shards: Vec<usize>,
}

/// Why a writer can no longer succeed.
enum Broken {
    IdentityTooLong(usize),
    Quorum {
        succeeded: usize,
        details: String,
        storage_full: bool,
    },
}

/// A streaming write of one new object. Dropping it without `finish()` discards everything
/// written so far (in the background, without blocking).
pub struct ObjectWriter {
    set: Arc<SetInner>,
    plan: Arc<WritePlan>,
    pipeline: Option<WritePipeline>,
    /// The stripe being filled (used when chunks do not line up with stripes).
    fill: Vec<u8>,
    size: u64,
    broken: Option<Broken>,
}

impl ObjectWriter {
    pub(crate) fn start(set: Arc<SetInner>, identity: Vec<u8>) -> ObjectWriter {
        let data_id = DataId::new_v4();
        let config = &set.config;
        let (k, m) = (config.data_shards, config.parity_shards);
        let placement = placement_for(data_id, k + m);
        let targets = placement
            .iter()
            .map(|&slot| {
                let disk = &set.disks[slot as usize];
                ShardTarget {
                    staging: disk.layout.staging_file(data_id, "write"),
                    committed: disk.layout.shard_file(data_id),
                    offline: disk.offline.clone(),
                }
            })
            .collect();
        let broken =
            (identity.len() > MAX_IDENTITY_LEN).then_some(Broken::IdentityTooLong(identity.len()));
        let plan = Arc::new(WritePlan {
            data_id,
            k,
            m,
            stripe_size: config.stripe_size,
            block_size: block_size_for(config.stripe_size, k),
            placement,
            durability: config.durability,
            identity,
            targets,
        });
        let pipeline = broken.is_none().then(|| WritePipeline::start(plan.clone()));
        ObjectWriter {
            set,
            plan,
            pipeline,
            fill: Vec::new(),
            size: 0,
            broken,
        }
    }

    /// The data id the object's shards are stored under.
    pub fn data_id(&self) -> DataId {
        self.plan.data_id
    }

    /// Accepts a chunk of any size. Waits while a few stripes are already in flight, so memory
    /// stays bounded whatever the object size. Fails with [`ErasureError::WriteQuorum`] as soon
    /// as too many shards have failed for the write to succeed; the writer is then unusable.
    pub async fn write(&mut self, mut chunk: Bytes) -> Result<(), ErasureError> {
        self.check_usable()?;
        self.size += chunk.len() as u64;
        let (stripe, block) = (self.plan.stripe_size, self.plan.block_size);
        let full_stripe = self.plan.k * block;
        while !chunk.is_empty() {
            if self.fill.is_empty() && chunk.len() >= stripe && stripe == full_stripe {
                // The chunk holds a whole unpadded stripe: hand it on without copying.
                let data = chunk.split_to(stripe);
                self.send_stripe(Stripe {
                    data,
                    block_len: block,
                })
                .await?;
                continue;
            }
            if self.fill.capacity() == 0 {
                self.fill = buffer_pool::take_empty(full_stripe);
            }
            let take = (stripe - self.fill.len()).min(chunk.len());
            self.fill.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            if self.fill.len() == stripe {
                let mut data = std::mem::take(&mut self.fill);
                data.resize(full_stripe, 0);
                // Back to the pool once the encoder and every shard writer are done with it.
                self.send_stripe(Stripe {
                    data: buffer_pool::into_bytes(data),
                    block_len: block,
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Flushes the last partial stripe, seals the shards (fsync per durability) and renames
    /// them into place. Below write quorum (`k + 1` shards when `m > 0`, `k` when `m = 0`) it
    /// fails with [`ErasureError::WriteQuorum`] and leaves nothing behind.
    pub async fn finish(mut self) -> Result<WriteOutcome, ErasureError> {
        if let Err(e) = self.check_usable() {
            self.abort_pipeline().await;
            return Err(e);
        }
        if !self.fill.is_empty() {
            let mut data = std::mem::take(&mut self.fill);
            let block_len = data.len().div_ceil(self.plan.k);
            data.resize(block_len * self.plan.k, 0);
            if let Err(e) = self
                .send_stripe(Stripe {
                    data: data.into(),
                    block_len,
                })
                .await
            {
                self.abort_pipeline().await;
                return Err(e);
            }
        }
        let mut pipeline = self
            .pipeline
            .take()
            .expect("usable writers have a pipeline");
        let sealed = pipeline.seal(self.size).await;
        let sealed_ok: Vec<bool> = sealed.iter().map(Result::is_ok).collect();
        if count(&sealed_ok) < self.write_quorum() {
            pipeline.commit(&vec![false; sealed.len()]).await;
            return Err(self.quorum_error(count(&sealed_ok), &sealed, pipeline.storage_full()));
        }
        // Scrub must not see (and "heal") a half-renamed object, nor report it unrecoverable.
        let _guard = self.set.locks.lock(self.plan.data_id).await;
        let committed = pipeline.commit(&sealed_ok).await;
        let committed_ok: Vec<bool> = committed.iter().map(Result::is_ok).collect();
        if count(&committed_ok) < self.write_quorum() {
            self.remove_committed(&committed_ok).await;
            return Err(self.quorum_error(
                count(&committed_ok),
                &committed,
                pipeline.storage_full(),
            ));
        }
        let missing_shards: Vec<usize> = (0..committed_ok.len())
            .filter(|&s| !committed_ok[s])
            .collect();
        if !missing_shards.is_empty() {
            tracing::warn!(data_id = %self.plan.data_id, ?missing_shards, "object written without some shards; heal it");
        }
        Ok(WriteOutcome {
            descriptor: self.plan.descriptor(self.size),
            missing_shards,
        })
    }

    /// Discards everything written so far and waits until the staging files are removed.
    pub async fn abort(mut self) {
        self.abort_pipeline().await;
    }

    async fn abort_pipeline(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.abort().await;
        }
    }

    async fn send_stripe(&mut self, stripe: Stripe) -> Result<(), ErasureError> {
        let pipeline = self
            .pipeline
            .as_mut()
            .expect("usable writers have a pipeline");
        if let Err(reason) = pipeline.send(stripe).await {
            self.broken = Some(Broken::Quorum {
                succeeded: 0,
                details: reason,
                storage_full: pipeline.storage_full(),
            });
            return self.check_usable();
        }
        let failures = pipeline.failures();
        let storage_full = pipeline.storage_full();
        let total = self.plan.targets.len();
        if total - failures.len() < self.write_quorum() {
            let details = describe(failures.iter().map(|(s, r)| (*s, r.as_str())));
            self.broken = Some(Broken::Quorum {
                succeeded: total - failures.len(),
                details,
                storage_full,
            });
        }
        self.check_usable()
    }

    fn check_usable(&self) -> Result<(), ErasureError> {
        match &self.broken {
            None => Ok(()),
            Some(Broken::IdentityTooLong(len)) => Err(ErasureError::InvalidConfig(format!(
                "identity of {len} bytes exceeds the {MAX_IDENTITY_LEN} bytes a shard header holds"
            ))),
            Some(Broken::Quorum {
                succeeded,
                details,
                storage_full,
            }) => Err(ErasureError::WriteQuorum {
                data_id: self.plan.data_id,
                needed: self.write_quorum(),
                succeeded: *succeeded,
                details: details.clone(),
                storage_full: *storage_full,
            }),
        }
    }

    fn write_quorum(&self) -> usize {
        if self.plan.m == 0 {
            self.plan.k
        } else {
            self.plan.k + 1
        }
    }

    fn quorum_error(
        &self,
        succeeded: usize,
        results: &[Result<(), String>],
        storage_full: bool,
    ) -> ErasureError {
        let failures = results
            .iter()
            .enumerate()
            .filter_map(|(s, r)| r.as_ref().err().map(|e| (s, e.as_str())));
        ErasureError::WriteQuorum {
            data_id: self.plan.data_id,
            needed: self.write_quorum(),
            succeeded,
            details: describe(failures),
            storage_full,
        }
    }

    /// Rolls back shards already renamed into place when the write as a whole failed.
    async fn remove_committed(&self, committed: &[bool]) {
        let paths: Vec<_> = (0..committed.len())
            .filter(|&s| committed[s])
            .map(|s| self.plan.targets[s].committed.clone())
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for path in paths {
                let _ = remove_if_present(&path);
            }
        })
        .await;
    }
}

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|&&ok| ok).count()
}

fn describe<'a>(failures: impl Iterator<Item = (usize, &'a str)>) -> String {
    let parts: Vec<String> = failures
        .map(|(shard, reason)| format!("shard {shard}: {reason}"))
        .collect();
    parts.join("; ")
}
