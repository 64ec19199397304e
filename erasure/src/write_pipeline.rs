//! The threads behind an [`crate::ObjectWriter`]: one encoder and one writer per shard.
//!
//! Stripes flow `write()` → bounded channel → encoder thread (parity) → one bounded channel
//! per shard → shard writer threads (checksum, append a frame to the shard's staging file).
//! The bounded channels are the backpressure that keeps a writer's memory at a few stripes.
//! Threads are dedicated rather than taken from tokio's blocking pool because they wait on
//! each other; a full pool must not be able to deadlock a write.
//!
//! A shard thread that hits an error records it in [`WriteStatus`] and keeps draining its
//! channel, so one bad disk never stalls the others. On `Finish` every healthy shard seals
//! its file (final header, fsync) and then waits for the writer's commit decision: rename into
//! place, or remove. Losing the channel before `Finish`, or the decision, means abort: the
//! staging file is removed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::buffer_pool;
use crate::codec::{codec, Codec};
use crate::durable_fs::{commit_file, remove_if_present};
use crate::shard_format::{write_frame, ShardHeader, SHARD_FORMAT_VERSION};
use crate::{DataId, Durability, ObjectDescriptor};

/// Stripes queued between `write()` and the encoder.
const ENCODER_QUEUE: usize = 1;
/// Encoded stripes queued per shard writer.
const SHARD_QUEUE: usize = 2;
const THREAD_STACK: usize = 512 * 1024;

/// Everything fixed about one object's write.
pub(crate) struct WritePlan {
    pub data_id: DataId,
    pub k: usize,
    pub m: usize,
    pub stripe_size: usize,
    pub block_size: usize,
    pub placement: Vec<u8>,
    pub durability: Durability,
    pub identity: Vec<u8>,
    /// Indexed by shard.
    pub targets: Vec<ShardTarget>,
}

/// Where one shard goes.
pub(crate) struct ShardTarget {
    pub staging: PathBuf,
    pub committed: PathBuf,
    /// Set when the disk is known unusable before the write starts.
    pub offline: Option<String>,
}

impl WritePlan {
    pub fn header(&self, shard: usize, object_size: u64) -> ShardHeader {
        ShardHeader {
            data_id: self.data_id,
            shard_index: shard as u8,
            data_shards: self.k as u8,
            parity_shards: self.m as u8,
            block_size: self.block_size as u32,
            stripe_size: self.stripe_size as u32,
            object_size,
            identity: self.identity.clone(),
        }
    }

    pub fn descriptor(&self, size: u64) -> ObjectDescriptor {
        ObjectDescriptor {
            data_id: self.data_id,
            size,
            data_shards: self.k as u8,
            parity_shards: self.m as u8,
            block_size: self.block_size as u32,
            stripe_size: self.stripe_size as u32,
            placement: self.placement.clone(),
            format_version: SHARD_FORMAT_VERSION,
        }
    }
}

/// One stripe of object data, `k * block_len` bytes (zero-padded at the end).
pub(crate) struct Stripe {
    pub data: Bytes,
    pub block_len: usize,
}

enum EncoderMsg {
    Stripe(Stripe),
    Finish { size: u64 },
}

struct EncodedStripe {
    k: usize,
    data: Bytes,
    parity: Vec<Vec<u8>>,
    block_len: usize,
}

impl EncodedStripe {
    fn block(&self, shard: usize) -> &[u8] {
        match shard.checked_sub(self.k) {
            None => &self.data[shard * self.block_len..(shard + 1) * self.block_len],
            Some(p) => &self.parity[p],
        }
    }
}

impl Drop for EncodedStripe {
    fn drop(&mut self) {
        self.parity.drain(..).for_each(buffer_pool::give);
    }
}

enum ShardMsg {
    Stripe(Arc<EncodedStripe>),
    Finish { size: u64 },
}

/// Failures seen by the shard threads, and the abort flag they watch.
#[derive(Default)]
pub(crate) struct WriteStatus {
    failures: Mutex<Vec<(usize, String)>>,
    aborted: AtomicBool,
    /// A shard failed because its disk is full.
    storage_full: AtomicBool,
}

impl WriteStatus {
    fn fail(&self, shard: usize, reason: &str) {
        let mut failures = self.failures.lock().expect("write status poisoned");
        if !failures.iter().any(|(s, _)| *s == shard) {
            failures.push((shard, reason.to_string()));
        }
    }

    fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }
}

struct ShardControl {
    staged: oneshot::Receiver<Result<(), String>>,
    commit: Option<oneshot::Sender<bool>>,
    done: oneshot::Receiver<Result<(), String>>,
}

/// The running threads of one write.
pub(crate) struct WritePipeline {
    input: Option<mpsc::Sender<EncoderMsg>>,
    shards: Vec<ShardControl>,
    status: Arc<WriteStatus>,
}

impl WritePipeline {
    pub fn start(plan: Arc<WritePlan>) -> WritePipeline {
        let status = Arc::new(WriteStatus::default());
        let (input, encoder_rx) = mpsc::channel(ENCODER_QUEUE);
        let mut shard_txs = Vec::with_capacity(plan.targets.len());
        let mut shards = Vec::with_capacity(plan.targets.len());
        for shard in 0..plan.targets.len() {
            let (tx, rx) = sync_channel(SHARD_QUEUE);
            let (staged_tx, staged) = oneshot::channel();
            let (commit, commit_rx) = oneshot::channel();
            let (done_tx, done) = oneshot::channel();
            let (plan, status) = (plan.clone(), status.clone());
            spawn_named(format!("meridian-shard-{shard}"), move || {
                ShardWriter {
                    plan,
                    shard,
                    status,
                }
                .run(rx, staged_tx, commit_rx, done_tx)
            });
            shard_txs.push(tx);
            shards.push(ShardControl {
                staged,
                commit: Some(commit),
                done,
            });
        }
        let codec = codec(plan.k, plan.m);
        let encoder_status = status.clone();
        spawn_named("meridian-encoder".into(), move || {
            run_encoder(&codec, encoder_rx, shard_txs, &encoder_status)
        });
        WritePipeline {
            input: Some(input),
            shards,
            status,
        }
    }

    /// Queues a stripe; waits while the pipeline is full.
    pub async fn send(&mut self, stripe: Stripe) -> Result<(), String> {
        let input = self
            .input
            .as_ref()
            .ok_or("the write was already finished")?;
        input
            .send(EncoderMsg::Stripe(stripe))
            .await
            .map_err(|_| "the encoder stopped".to_string())
    }

    /// Whether a shard failed because its disk is full.
    pub fn storage_full(&self) -> bool {
        self.status.storage_full.load(Ordering::Relaxed)
    }

    /// Shards that have failed so far, with reasons.
    pub fn failures(&self) -> Vec<(usize, String)> {
        self.status
            .failures
            .lock()
            .expect("write status poisoned")
            .clone()
    }

    /// Ends the stream at `size` bytes and waits until every shard is sealed (or failed).
    pub async fn seal(&mut self, size: u64) -> Vec<Result<(), String>> {
        if let Some(input) = self.input.take() {
            let _ = input.send(EncoderMsg::Finish { size }).await;
        }
        let mut results = Vec::with_capacity(self.shards.len());
        for control in &mut self.shards {
            let result = (&mut control.staged).await;
            results.push(result.unwrap_or_else(|_| Err("shard writer stopped".into())));
        }
        results
    }

    /// Tells each sealed shard to commit (`true`) or discard, and waits for the outcome.
    pub async fn commit(&mut self, decisions: &[bool]) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(self.shards.len());
        for (control, &keep) in self.shards.iter_mut().zip(decisions) {
            if let Some(commit) = control.commit.take() {
                let _ = commit.send(keep);
            }
        }
        for control in &mut self.shards {
            let result = (&mut control.done).await;
            results.push(result.unwrap_or_else(|_| Err("not committed".into())));
        }
        results
    }

    /// Stops everything and waits until the staging files are gone.
    pub async fn abort(mut self) {
        self.status.aborted.store(true, Ordering::Relaxed);
        self.input = None;
        for control in &mut self.shards {
            control.commit = None;
        }
        for control in &mut self.shards {
            let _ = (&mut control.done).await;
        }
    }
}

impl Drop for WritePipeline {
    fn drop(&mut self) {
        // Without a decision the shard threads discard their files; the flag makes them stop
        // writing stripes that are still queued.
        if self.shards.iter().any(|c| c.commit.is_some()) {
            self.status.aborted.store(true, Ordering::Relaxed);
        }
    }
}

fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) {
    // If the thread cannot start, `body` is dropped with its channel ends and the write sees
    // that part of the pipeline as failed.
    if let Err(e) = std::thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK)
        .spawn(body)
    {
        tracing::error!(error = %e, "cannot start a write pipeline thread");
    }
}

fn run_encoder(
    codec: &Codec,
    mut input: mpsc::Receiver<EncoderMsg>,
    shards: Vec<SyncSender<ShardMsg>>,
    status: &WriteStatus,
) {
    while let Some(msg) = input.blocking_recv() {
        match msg {
            EncoderMsg::Stripe(_) if status.aborted() => {}
            EncoderMsg::Stripe(stripe) => {
                let encoded = Arc::new(encode(codec, stripe));
                for tx in &shards {
                    let _ = tx.send(ShardMsg::Stripe(encoded.clone()));
                }
            }
            EncoderMsg::Finish { size } => {
                for tx in &shards {
                    let _ = tx.send(ShardMsg::Finish { size });
                }
                return;
            }
        }
    }
}

fn encode(codec: &Codec, stripe: Stripe) -> EncodedStripe {
    let b = stripe.block_len;
    // Encoding overwrites every parity byte, so recycled buffers need no clearing.
    let mut parity: Vec<Vec<u8>> = (0..codec.parity_shards())
        .map(|_| buffer_pool::take(b))
        .collect();
    let data: Vec<&[u8]> = stripe.data.chunks_exact(b).collect();
    codec.encode(&data, &mut parity);
    EncodedStripe {
        k: data.len(),
        data: stripe.data,
        parity,
        block_len: b,
    }
}

struct ShardWriter {
    plan: Arc<WritePlan>,
    shard: usize,
    status: Arc<WriteStatus>,
}

impl ShardWriter {
    fn run(
        self,
        rx: Receiver<ShardMsg>,
        staged_tx: oneshot::Sender<Result<(), String>>,
        commit_rx: oneshot::Receiver<bool>,
        done_tx: oneshot::Sender<Result<(), String>>,
    ) {
        let target = &self.plan.targets[self.shard];
        let mut file = self.create();
        let mut finish = None;
        for msg in rx.iter() {
            match msg {
                ShardMsg::Stripe(encoded) => {
                    if let (Ok(f), false) = (&mut file, self.status.aborted()) {
                        if let Err(e) = write_frame(f, encoded.block(self.shard)) {
                            file = Err(self.failed_io(
                                format!("write to {} failed", target.staging.display()),
                                &e,
                            ));
                        }
                    }
                }
                ShardMsg::Finish { size } => {
                    finish = Some(size);
                    break;
                }
            }
        }
        let sealed = match (finish, file) {
            (Some(_), _) if self.status.aborted() => Err("aborted".to_string()),
            (Some(size), Ok(f)) => self.seal(f, size),
            (Some(_), Err(e)) => Err(e),
            (None, _) => Err("aborted".to_string()),
        };
        if let Err(e) = sealed {
            let _ = remove_if_present(&target.staging);
            let _ = staged_tx.send(Err(e.clone()));
            let _ = done_tx.send(Err(e));
            return;
        }
        let _ = staged_tx.send(Ok(()));
        let done = match commit_rx.blocking_recv() {
            Ok(true) => commit_file(&target.staging, &target.committed, self.plan.durability)
                .map_err(|e| {
                    self.failed(format!(
                        "rename to {} failed: {e}",
                        target.committed.display()
                    ))
                }),
            _ => Err("discarded".to_string()),
        };
        if done.is_err() {
            let _ = remove_if_present(&target.staging);
        }
        let _ = done_tx.send(done);
    }

    fn create(&self) -> Result<File, String> {
        let target = &self.plan.targets[self.shard];
        if let Some(reason) = &target.offline {
            return Err(self.failed(format!("disk offline: {reason}")));
        }
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target.staging)
            .and_then(|mut f| {
                f.write_all(&self.plan.header(self.shard, 0).encode())
                    .map(|()| f)
            });
        created
            .map_err(|e| self.failed_io(format!("cannot create {}", target.staging.display()), &e))
    }

    /// Writes the final header (with the object size) and syncs per durability.
    fn seal(&self, file: File, size: u64) -> Result<(), String> {
        let target = &self.plan.targets[self.shard];
        let result = file
            .write_all_at(&self.plan.header(self.shard, size).encode(), 0)
            .and_then(|()| match self.plan.durability {
                Durability::Fsync => file.sync_data(),
                Durability::NoSync => Ok(()),
            });
        result.map_err(|e| self.failed_io(format!("cannot seal {}", target.staging.display()), &e))
    }

    /// Records an I/O failure, noting a full disk.
    fn failed_io(&self, what: String, e: &std::io::Error) -> String {
        if e.kind() == std::io::ErrorKind::StorageFull {
            self.status.storage_full.store(true, Ordering::Relaxed);
        }
        self.failed(format!("{what}: {e}"))
    }

    fn failed(&self, reason: String) -> String {
        tracing::warn!(data_id = %self.plan.data_id, shard = self.shard, reason, "shard write failed");
        self.status.fail(self.shard, &reason);
        reason
    }
}
