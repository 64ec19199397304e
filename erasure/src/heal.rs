//! Healing one object: verifying every shard and rebuilding missing or corrupt ones.
//!
//! Healing works stripe by stripe, so an object stays recoverable as long as every stripe has
//! `k` good blocks, even when every shard has a bad block somewhere. Rebuilt shards are
//! written to staging and renamed over the damaged file, byte-identical to what the original
//! write produced. When some stripe cannot be rebuilt, nothing is changed on disk.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;

use crate::codec::codec;
use crate::durable_fs::{commit_file, remove_if_present};
use crate::set_state::SetInner;
use crate::shard_format::{write_frame, ShardHeader};
use crate::shard_source::{ShardFault, ShardSource};
use crate::{Durability, ErasureError, ObjectDescriptor};

/// What a heal found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealReport {
    /// Shards rebuilt and written back.
    pub healed_shards: Vec<usize>,
    /// Shards found missing, short, corrupt or with a bad header (healed or not).
    pub damaged_shards: Vec<usize>,
    /// Damaged shards that could not be rewritten (e.g. their disk is gone), with reasons.
    pub failed_shards: Vec<(usize, String)>,
}

pub(crate) async fn heal_object(
    set: &Arc<SetInner>,
    desc: &ObjectDescriptor,
) -> Result<HealReport, ErasureError> {
    desc.check_for_set(set.disks.len())?;
    let _guard = set.locks.lock(desc.data_id).await;
    let (set, desc) = (set.clone(), desc.clone());
    tokio::task::spawn_blocking(move || heal_locked(&set, &desc))
        .await
        .expect("heal panicked")
}

/// Heals one object; the caller holds its object lock. Blocking.
pub(crate) fn heal_locked(
    set: &SetInner,
    desc: &ObjectDescriptor,
) -> Result<HealReport, ErasureError> {
    let sources = ShardSource::all_of(set, desc);
    let inspections: Vec<Inspection> = sources.iter().map(|source| inspect(source, desc)).collect();
    let damaged: Vec<usize> = (0..sources.len())
        .filter(|&s| inspections[s].is_damaged())
        .collect();
    let mut report = HealReport {
        damaged_shards: damaged.clone(),
        ..HealReport::default()
    };
    if damaged.is_empty() {
        return Ok(report);
    }
    tracing::warn!(data_id = %desc.data_id, ?damaged, "healing damaged shards");
    check_recoverable(desc, &inspections)?;
    let header = sources
        .iter()
        .find_map(|source| source.header(desc).ok())
        .expect("a recoverable object has a readable header")
        .clone();

    let mut rebuilds: Vec<Rebuild> = Vec::new();
    for &shard in &damaged {
        let disk = &set.disks[desc.placement[shard] as usize];
        let staging = disk.layout.staging_file(desc.data_id, "heal");
        let committed = disk.layout.shard_file(desc.data_id);
        match start_rebuild(disk.offline.as_deref(), &staging, &header, shard) {
            Ok(file) => rebuilds.push(Rebuild {
                shard,
                file,
                staging,
                committed,
            }),
            Err(reason) => report.failed_shards.push((shard, reason)),
        }
    }
    if let Err(e) = rebuild_stripes(desc, &sources, &inspections, &mut rebuilds, &mut report) {
        for rebuild in rebuilds {
            let _ = remove_if_present(&rebuild.staging);
        }
        return Err(e);
    }
    for rebuild in rebuilds {
        let shard = rebuild.shard;
        match rebuild.commit(set.config.durability) {
            Ok(()) => report.healed_shards.push(shard),
            Err(reason) => report.failed_shards.push((shard, reason)),
        }
    }
    report.failed_shards.sort();
    tracing::info!(data_id = %desc.data_id, healed = ?report.healed_shards, failed = ?report.failed_shards, "heal done");
    Ok(report)
}

/// What pass one found out about one shard.
struct Inspection {
    /// The whole shard is unusable.
    fault: Option<ShardFault>,
    /// Stripes whose block is bad.
    bad_stripes: BTreeSet<u64>,
    /// The file is longer or shorter than the object needs.
    wrong_length: bool,
}

impl Inspection {
    fn is_damaged(&self) -> bool {
        self.fault.is_some() || !self.bad_stripes.is_empty() || self.wrong_length
    }

    fn block_usable(&self, stripe: u64) -> bool {
        self.fault.is_none() && !self.bad_stripes.contains(&stripe)
    }
}

fn inspect(source: &ShardSource, desc: &ObjectDescriptor) -> Inspection {
    let g = desc.geometry();
    let header_len = match source.header(desc) {
        Ok(header) => header.encoded_len(),
        Err(fault) => {
            return Inspection {
                fault: Some(fault),
                bad_stripes: BTreeSet::new(),
                wrong_length: false,
            }
        }
    };
    let mut buf = Vec::new();
    let bad_stripes = (0..g.stripe_count())
        .filter(|&s| {
            buf.resize(g.block_len(s), 0);
            source.read_block(desc, &g, s, &mut buf).is_err()
        })
        .collect();
    let wrong_length = source
        .file_len(desc)
        .map_or(true, |len| len != g.shard_file_len(header_len));
    Inspection {
        fault: None,
        bad_stripes,
        wrong_length,
    }
}

/// Every stripe must have `k` usable blocks (and some header must survive) before anything
/// is written.
fn check_recoverable(
    desc: &ObjectDescriptor,
    inspections: &[Inspection],
) -> Result<(), ErasureError> {
    let g = desc.geometry();
    let not_enough = |available: usize, details: String| ErasureError::NotEnoughShards {
        data_id: desc.data_id,
        needed: g.k,
        available,
        details,
    };
    let headers = inspections.iter().filter(|i| i.fault.is_none()).count();
    if headers == 0 {
        return Err(not_enough(0, "no shard has a readable header".into()));
    }
    for s in 0..g.stripe_count() {
        let available = inspections.iter().filter(|i| i.block_usable(s)).count();
        if available < g.k {
            return Err(not_enough(
                available,
                format!("stripe {s} cannot be rebuilt"),
            ));
        }
    }
    Ok(())
}

struct Rebuild {
    shard: usize,
    file: File,
    staging: std::path::PathBuf,
    committed: std::path::PathBuf,
}

impl Rebuild {
    fn commit(self, durability: Durability) -> Result<(), String> {
        let synced = match durability {
            Durability::Fsync => self.file.sync_data(),
            Durability::NoSync => Ok(()),
        };
        let result = synced.and_then(|()| commit_file(&self.staging, &self.committed, durability));
        result.map_err(|e| {
            let _ = remove_if_present(&self.staging);
            format!("cannot write {}: {e}", self.committed.display())
        })
    }
}

fn start_rebuild(
    offline: Option<&str>,
    staging: &std::path::Path,
    header: &ShardHeader,
    shard: usize,
) -> Result<File, String> {
    if let Some(reason) = offline {
        return Err(format!("disk offline: {reason}"));
    }
    let header = ShardHeader {
        shard_index: shard as u8,
        ..header.clone()
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(staging)
        .and_then(|mut file| file.write_all(&header.encode()).map(|()| file))
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))
}

/// Pass two: rebuilds every stripe and appends the damaged shards' blocks to their files.
fn rebuild_stripes(
    desc: &ObjectDescriptor,
    sources: &[ShardSource],
    inspections: &[Inspection],
    rebuilds: &mut Vec<Rebuild>,
    report: &mut HealReport,
) -> Result<(), ErasureError> {
    let g = desc.geometry();
    let codec = codec(g.k, g.m);
    for s in 0..g.stripe_count() {
        let b = g.block_len(s);
        let mut blocks: Vec<Option<Vec<u8>>> = (0..sources.len())
            .map(|shard| {
                let mut block = vec![0u8; b];
                let ok = inspections[shard].block_usable(s)
                    && sources[shard].read_block(desc, &g, s, &mut block).is_ok();
                ok.then_some(block)
            })
            .collect();
        let available = blocks.iter().filter(|b| b.is_some()).count();
        codec
            .reconstruct(&mut blocks, false)
            .map_err(|reason| ErasureError::NotEnoughShards {
                data_id: desc.data_id,
                needed: g.k,
                available,
                details: format!("stripe {s} changed during heal: {reason}"),
            })?;
        rebuilds.retain_mut(|rebuild| {
            let block = blocks[rebuild.shard].as_deref().expect("reconstructed");
            match write_frame(&mut rebuild.file, block) {
                Ok(()) => true,
                Err(e) => {
                    let _ = remove_if_present(&rebuild.staging);
                    report.failed_shards.push((
                        rebuild.shard,
                        format!("cannot write {}: {e}", rebuild.staging.display()),
                    ));
                    false
                }
            }
        });
    }
    Ok(())
}
