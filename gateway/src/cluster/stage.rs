//! Bodies streamed to the followers while they arrive.
//!
//! A client's PUT of a body above the inline threshold, at the primary of its key's
//! partition, is teed as it arrives: its bytes go into this node's store and, at the same
//! time, one request per follower that is up (`PUT /_meridian/cluster/stage`) carries them
//! into that follower's store, where they wait — ingested, hashed, not a version — under a
//! name. Once the primary has committed the version, its copy to the follower goes as every
//! copy does (the replicator's queue, fencing, retries, down marks: nothing changes there)
//! but without the body: `x-meridian-replica-staged` names the staged bytes, which the
//! follower checks against the copy's ETag and checksum exactly as it checks a body, then
//! commits. A write's latency is then its slowest node's ingest plus one round trip, where
//! it was the primary's ingest plus the copy's transfer and ingest.
//!
//! Nothing depends on the tee: a follower that fails or lags is dropped from it, a follower
//! whose bytes differ from the primary's is not named, and a copy whose staged body is gone
//! (it expired, the node restarted) is answered `NoSuchStagedBody` and sent with its body.
//! A staged body no copy names is discarded after [`STAGE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_cluster::layout::NodeId;
use meridian_erasure::DataId;
use meridian_metadata::{ChecksumAlgorithm, Storage, VersionRecord};
use meridian_replicator::StagedBodies;
use meridian_store::checksum;
use meridian_store::ingest::{BodyError, Ingested};
use meridian_store::layout::{Layout, Segment};
use s3s::Body;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::{copy_peer_id, error_response, json_response, ClusterNode, EPOCH, HOP, INTERNAL};

/// How long a staged body waits for the copy that names it, and a primary remembers that a
/// follower holds one: long enough for a multipart upload's parts to wait for its Complete,
/// well within the grace after which unreferenced shards are collected as orphans.
pub const STAGE_TTL: Duration = Duration::from_secs(30 * 60);
const _: () = assert!(STAGE_TTL.as_secs() * 2 <= meridian_store::orphans::ORPHAN_GRACE.as_secs());
/// Staged bodies a node holds at most (each a body on its disks awaiting its copy: a
/// 10,000-part upload's parts fit); beyond, a stage is refused and that copy carries its
/// body.
const MAX_STAGED: usize = 10_000;
/// How long a node waits for a follower to take a message about a staged body.
const STAGE_ANSWER: Duration = Duration::from_secs(10);
/// Chunks queued for one follower before the primary's ingest waits for it.
const LEG_QUEUE: usize = 16;

/// What a follower answers once it holds a staged body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedAnswer {
    pub size: u64,
    /// Hex.
    pub md5: String,
    /// Base64 of the digest of the algorithm the stage named.
    pub checksum: Option<String>,
}

impl StagedAnswer {
    pub fn of(ingested: &Ingested) -> StagedAnswer {
        StagedAnswer {
            size: ingested.size,
            md5: hex::encode(ingested.md5),
            checksum: ingested
                .checksum
                .as_ref()
                .map(|(_, d)| checksum::to_base64(d)),
        }
    }
}

/// A stage request: where the body is going and how to hash it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageAsk {
    pub name: String,
    pub bucket: String,
    pub key: String,
    pub algorithm: Option<ChecksumAlgorithm>,
}

impl StageAsk {
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("name", &self.name)
            .append_pair("bucket", &self.bucket)
            .append_pair("key", &self.key);
        if let Some(a) = &self.algorithm {
            q.append_pair("algorithm", checksum::header_name(a));
        }
        q.finish()
    }

    fn from_query(query: &str) -> Option<StageAsk> {
        let (mut name, mut bucket, mut key, mut algorithm) = (None, None, None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "name" => name = Some(v.into_owned()),
                "bucket" => bucket = Some(v.into_owned()),
                "key" => key = Some(v.into_owned()),
                "algorithm" => algorithm = Some(checksum::parse_algorithm(&v)?),
                _ => {}
            }
        }
        Some(StageAsk {
            name: name.filter(|n| !n.is_empty())?,
            bucket: bucket?,
            key: key?,
            algorithm,
        })
    }
}

/// A body on its way to the followers, as this node ingests it.
pub struct Tee {
    name: String,
    /// Each follower's queue of chunks, and its request (aborted when the follower is
    /// dropped, so that it never takes a cut body for a whole one).
    senders: Vec<(NodeId, mpsc::Sender<Bytes>, AbortHandle)>,
    answers: Vec<(NodeId, JoinHandle<Result<StagedAnswer, String>>)>,
    /// How long one follower may hold the body up before it is dropped from the tee.
    stall: Duration,
}

impl Tee {
    /// `body`, handing every chunk to the followers as it passes. A follower that takes no
    /// chunk for `stall` is dropped (its request aborted: its copy will carry the body); an
    /// error of the body aborts every follower's request.
    pub fn body(
        &mut self,
        body: BoxStream<'static, Result<Bytes, BodyError>>,
    ) -> BoxStream<'static, Result<Bytes, BodyError>> {
        let senders = std::mem::take(&mut self.senders);
        let stall = self.stall;
        futures::stream::unfold((body, senders), move |(mut body, mut senders)| async move {
            let item = body.next().await?;
            match &item {
                Ok(chunk) => {
                    let mut kept = Vec::with_capacity(senders.len());
                    for (id, tx, request) in senders {
                        match tokio::time::timeout(stall, tx.send(chunk.clone())).await {
                            Ok(Ok(())) => kept.push((id, tx, request)),
                            Ok(Err(_)) => request.abort(),
                            Err(_) => {
                                tracing::warn!(node = id, ?stall,
                                    "a follower took nothing of a body for too long; dropped from the tee, its copy carries the body");
                                request.abort();
                            }
                        }
                    }
                    senders = kept;
                }
                Err(_) => senders.drain(..).for_each(|(_, _, request)| request.abort()),
            }
            Some((item, (body, senders)))
        })
        .boxed()
    }

    /// After this node ingested the body (`None`: it failed): the followers that hold exactly
    /// the same bytes, remembered for the version's copies (under its `storage`).
    pub async fn finish(self, node: &ClusterNode, ingested: Option<(&Ingested, &Storage)>) {
        let expected = ingested.map(|(i, _)| StagedAnswer::of(i));
        for (id, answer) in self.answers {
            // Each follower's answer is awaited even when this node did not keep the body, so
            // that the follower holds what it staged before it is told to drop it.
            let abort = answer.abort_handle();
            match (&expected, tokio::time::timeout(self.stall, answer).await) {
                (Some(expected), Ok(Ok(Ok(got)))) if got == *expected => {
                    crate::metrics::global()
                        .staged_bodies
                        .with_label_values(&["streamed"])
                        .inc();
                    if let Some((_, storage)) = ingested {
                        node.streamed.remember(id, storage, &self.name);
                    }
                    continue;
                }
                (Some(expected), Ok(Ok(Ok(got)))) => {
                    tracing::warn!(node = id, ?got, ?expected,
                        "a follower staged other bytes than this node ingested; its copy carries the body");
                }
                // This node did not keep the body: neither does any follower.
                (None, Ok(Ok(Ok(_)))) => {}
                (_, Ok(Ok(Err(e)))) => {
                    tracing::debug!(node = id, error = %e, "a follower did not stage the body; its copy carries it");
                }
                (_, Ok(Err(_)) | Err(_)) => abort.abort(),
            }
            node.unstage(id, &self.name);
        }
    }
}

/// On a primary: the bodies its followers hold staged, by follower and the data id of the
/// segment they became here (unique to the body: a single PUT's, or a part's), with when
/// they were streamed.
#[derive(Default)]
pub struct Streamed {
    names: Mutex<HashMap<(NodeId, DataId), (String, Instant)>>,
}

impl Streamed {
    fn remember(&self, node: NodeId, storage: &Storage, name: &str) {
        let Some(data_id) = data_id_of(storage, 0) else {
            return;
        };
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.retain(|_, (_, at)| at.elapsed() < STAGE_TTL);
        names.insert((node, data_id), (name.to_owned(), Instant::now()));
    }

    /// The names under which followers hold the bodies of `data_ids` (deleted here: no copy
    /// will name them), forgotten.
    fn forget(&self, data_ids: &[DataId]) -> Vec<(NodeId, String)> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.is_empty() {
            return Vec::new();
        }
        let gone: Vec<(NodeId, DataId)> = names
            .keys()
            .filter(|(_, d)| data_ids.contains(d))
            .copied()
            .collect();
        gone.into_iter()
            .filter_map(|k| Some((k.0, names.remove(&k)?.0)))
            .collect()
    }

    /// The name under which `node` holds the body of `record`'s segment `index` (the whole
    /// of a single PUT, or a part), if it does.
    fn name(&self, node: NodeId, record: &VersionRecord, index: usize) -> Option<String> {
        let data_id = data_id_of(&record.storage, index)?;
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let (name, at) = names.get(&(node, data_id))?;
        (at.elapsed() < STAGE_TTL).then(|| name.clone())
    }

    fn forget_one(&self, node: NodeId, record: &VersionRecord, index: usize) {
        if let Some(data_id) = data_id_of(&record.storage, index) {
            let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            names.remove(&(node, data_id));
        }
    }
}

/// The bodies one follower holds staged, as its copy sender asks for them.
pub struct StagedOn {
    pub streamed: Arc<Streamed>,
    pub node: NodeId,
}

impl StagedBodies for StagedOn {
    fn name(&self, record: &VersionRecord, index: usize) -> Option<String> {
        self.streamed.name(self.node, record, index)
    }

    fn forget(&self, record: &VersionRecord, index: usize) {
        self.streamed.forget_one(self.node, record, index);
    }
}

/// The data id of segment `index` of a stored body, when it is erasure-coded.
fn data_id_of(storage: &Storage, index: usize) -> Option<DataId> {
    let Storage::Layout(bytes) = storage else {
        return None;
    };
    match Layout::from_bytes(bytes).ok()?.segments.get(index)? {
        Segment::Erasure(d) => Some(d.data_id),
        Segment::Inline(_) => None,
    }
}

/// On a follower: bodies staged here, waiting for the copies that name them.
#[derive(Default)]
pub struct Received {
    held: Mutex<HashMap<String, Held>>,
}

struct Held {
    bucket: String,
    key: String,
    at: Instant,
    ingested: Ingested,
}

impl Received {
    /// Holds `ingested` under `ask`'s name, unless too many are held. Returns whether it is
    /// held, and what is to be discarded: stages that expired, and this one if not held.
    pub fn keep(&self, ask: &StageAsk, ingested: Ingested) -> (bool, Vec<Ingested>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = expired(&mut held);
        if held.len() >= MAX_STAGED {
            gone.push(ingested);
            return (false, gone);
        }
        let previous = held.insert(
            ask.name.clone(),
            Held {
                bucket: ask.bucket.clone(),
                key: ask.key.clone(),
                at: Instant::now(),
                ingested,
            },
        );
        gone.extend(previous.map(|p| p.ingested));
        (true, gone)
    }

    /// The bodies that waited longer than [`STAGE_TTL`] (they leave).
    pub fn expired(&self) -> Vec<Ingested> {
        expired(&mut self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The body staged under `name`, which no copy will name, if it is still here.
    pub fn remove(&self, name: &str) -> Option<Ingested> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(name).map(|h| h.ingested)
    }

    /// The body staged under `name` for `bucket`/`key`, if it is still here (it leaves), and
    /// what is to be discarded (stages that expired).
    pub fn take(&self, name: &str, bucket: &str, key: &str) -> (Option<Ingested>, Vec<Ingested>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = expired(&mut held);
        let found = match held.remove(name) {
            Some(h) if h.bucket == bucket && h.key == key => Some(h.ingested),
            Some(h) => {
                gone.push(h.ingested);
                None
            }
            None => None,
        };
        (found, gone)
    }
}

fn expired(held: &mut HashMap<String, Held>) -> Vec<Ingested> {
    let old: Vec<String> = held
        .iter()
        .filter(|(_, h)| h.at.elapsed() >= STAGE_TTL)
        .map(|(name, _)| name.clone())
        .collect();
    old.into_iter()
        .filter_map(|name| held.remove(&name))
        .map(|h| h.ingested)
        .collect()
}

impl ClusterNode {
    /// A tee of a client's body of `length` bytes (if known) to the followers of
    /// `bucket`/`key` that are up, when this node leads the key and the body is worth it
    /// (above `inline_threshold`: a small body costs its copy no more than naming it would).
    pub fn tee(
        &self,
        bucket: &str,
        key: &str,
        algorithm: Option<ChecksumAlgorithm>,
        length: Option<u64>,
        inline_threshold: usize,
    ) -> Option<Tee> {
        if length.is_some_and(|l| l <= inline_threshold as u64) {
            return None;
        }
        let view = self.view();
        let layout = view.layout.as_ref()?;
        let followers: Vec<(NodeId, String)> = self
            .copy_peers(bucket, key)
            .iter()
            .filter_map(|p| copy_peer_id(p))
            .filter(|id| !layout.is_down(*id) && view.alive.contains(id))
            .filter_map(|id| Some((id, view.endpoints.get(&id)?.clone())))
            .collect();
        if followers.is_empty() {
            return None;
        }
        let ask = StageAsk {
            name: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            algorithm,
        };
        let mut tee = Tee {
            name: ask.name.clone(),
            senders: Vec::new(),
            answers: Vec::new(),
            stall: self.config.copy_timeout,
        };
        for (id, endpoint) in followers {
            let (tx, rx) = mpsc::channel::<Bytes>(LEG_QUEUE);
            let url = format!(
                "{}{INTERNAL}stage?{}",
                endpoint.trim_end_matches('/'),
                ask.query()
            );
            let chunks = futures::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(chunk)), rx))
            });
            let req = Request::put(url)
                .header(HOP, &self.hop)
                .header(EPOCH, self.epoch.load(std::sync::atomic::Ordering::Acquire))
                .body(Body::http_body(http_body_util::StreamBody::new(chunks)))
                .expect("a stage request");
            let http = self.http.clone();
            let answer = tokio::spawn(async move {
                let resp = http.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if !status.is_success() {
                    return Err(format!("answered {status}"));
                }
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())
            });
            tee.senders.push((id, tx, answer.abort_handle()));
            tee.answers.push((id, answer));
        }
        Some(tee)
    }

    /// The shards of `data_ids` were deleted here: the followers drop what they hold staged
    /// of them (a write refused at its commit, a part replaced or left out of its upload, an
    /// upload aborted, a version removed before its copy went).
    pub fn reclaimed(&self, data_ids: &[DataId]) {
        for (id, name) in self.streamed.forget(data_ids) {
            self.unstage(id, &name);
        }
    }

    /// Tells node `id` to discard the body it holds staged under `name` (in the background;
    /// a follower that does not hear it discards it after [`STAGE_TTL`]).
    fn unstage(&self, id: NodeId, name: &str) {
        let Some(endpoint) = self.view().endpoints.get(&id).cloned() else {
            return;
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("name", name);
        let req = Request::delete(format!(
            "{}{INTERNAL}stage?{}",
            endpoint.trim_end_matches('/'),
            query.finish()
        ))
        .header(HOP, &self.hop)
        .body(Body::empty())
        .expect("an unstage request");
        let http = self.http.clone();
        tokio::spawn(async move {
            let error = match tokio::time::timeout(STAGE_ANSWER, http.request(req)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".into(),
            };
            tracing::debug!(node = id, %error, "a follower was not told to drop a staged body");
        });
    }

    /// `PUT /_meridian/cluster/stage?name=..&bucket=..&key=..[&algorithm=..]`: ingests the
    /// body and holds it under the name for the copy that will name it. `DELETE` with the
    /// name: discards it.
    pub(super) async fn serve_stage(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let Some(delegate) = self.delegate.get() else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "this node is starting",
            );
        };
        if req.method() == http::Method::DELETE {
            let name = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned());
            if let Some(name) = name {
                delegate.unstage(&name).await;
            }
            return Response::new(Body::empty());
        }
        let Some(ask) = req.uri().query().and_then(StageAsk::from_query) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "name=..&bucket=..&key=..",
            );
        };
        let body = req
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(|e| BodyError::Incomplete(e.to_string())))
            .boxed();
        match delegate.stage(&ask, body).await {
            Ok(answer) => json_response(&answer),
            Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_erasure::ObjectDescriptor;
    use meridian_store::ingest::IngestedData;

    /// A version whose body is the erasure-coded objects `ids`, one segment each.
    fn version_of(ids: &[DataId]) -> VersionRecord {
        let segments = ids
            .iter()
            .map(|id| {
                Segment::Erasure(ObjectDescriptor {
                    data_id: *id,
                    size: 1 << 20,
                    data_shards: 4,
                    parity_shards: 2,
                    block_size: 262_144,
                    stripe_size: 1 << 20,
                    placement: vec![0, 1, 2, 3, 4, 5],
                    format_version: 1,
                })
            })
            .collect();
        VersionRecord {
            storage: Storage::Layout(Layout { segments }.to_bytes()),
            ..VersionRecord::default()
        }
    }

    fn staged_body(bytes: &'static [u8]) -> Ingested {
        Ingested {
            size: bytes.len() as u64,
            md5: meridian_store::checksum::md5(bytes),
            checksum: None,
            data: IngestedData::Inline(Bytes::from_static(bytes)),
        }
    }

    #[test]
    fn a_primary_names_a_staged_body_until_it_is_taken_or_its_shards_go() {
        let (a, b) = (DataId::new_v4(), DataId::new_v4());
        let streamed = Arc::new(Streamed::default());
        let single = version_of(&[a]);
        streamed.remember(2, &single.storage, "for-2");
        let on = |node| StagedOn {
            streamed: streamed.clone(),
            node,
        };
        // Named for the follower that holds it, as often as asked, until forgotten.
        assert_eq!(on(2).name(&single, 0).as_deref(), Some("for-2"));
        assert_eq!(on(2).name(&single, 0).as_deref(), Some("for-2"));
        assert_eq!(on(3).name(&single, 0), None);
        on(2).forget(&single, 0);
        assert_eq!(on(2).name(&single, 0), None);

        // The parts of a multipart object, each by its segment.
        let parts = version_of(&[a, b]);
        streamed.remember(2, &version_of(&[b]).storage, "part-2");
        streamed.remember(3, &version_of(&[b]).storage, "part-2-on-3");
        assert_eq!(on(2).name(&parts, 0), None);
        assert_eq!(on(2).name(&parts, 1).as_deref(), Some("part-2"));
        // Shards deleted here: every follower's name for them is returned and forgotten.
        let mut gone = streamed.forget(&[b]);
        gone.sort();
        assert_eq!(
            gone,
            vec![(2, "part-2".to_owned()), (3, "part-2-on-3".to_owned())]
        );
        assert_eq!(on(3).name(&parts, 1), None);
        // An inline body has no shards to name.
        let inline = VersionRecord {
            storage: Storage::Inline(b"small".to_vec()),
            ..VersionRecord::default()
        };
        streamed.remember(2, &inline.storage, "never");
        assert_eq!(on(2).name(&inline, 0), None);
    }

    #[test]
    fn a_follower_gives_a_staged_body_once_and_only_for_its_key() {
        let received = Received::default();
        let ask = |name: &str| StageAsk {
            name: name.into(),
            bucket: "b".into(),
            key: "k".into(),
            algorithm: None,
        };
        assert!(received.keep(&ask("one"), staged_body(b"abc")).0);
        assert!(received.keep(&ask("two"), staged_body(b"def")).0);
        // Another key's copy cannot take it (and it is discarded: nothing else names it).
        let (found, gone) = received.take("one", "b", "other");
        assert!(found.is_none());
        assert_eq!(gone.len(), 1);
        let (found, gone) = received.take("two", "b", "k");
        assert_eq!(found.map(|i| i.size), Some(3));
        assert!(gone.is_empty());
        assert!(received.take("two", "b", "k").0.is_none());
        assert!(received.keep(&ask("three"), staged_body(b"ghi")).0);
        assert_eq!(received.remove("three").map(|i| i.size), Some(3));
        assert!(received.remove("three").is_none());
    }

    #[test]
    fn a_stage_request_survives_its_query() {
        let ask = StageAsk {
            name: "abc".into(),
            bucket: "b".into(),
            key: "dir/a b&c=d?ü".into(),
            algorithm: Some(ChecksumAlgorithm::Sha256),
        };
        assert_eq!(StageAsk::from_query(&ask.query()), Some(ask.clone()));
        let plain = StageAsk {
            algorithm: None,
            ..ask
        };
        assert_eq!(StageAsk::from_query(&plain.query()), Some(plain));
        assert_eq!(StageAsk::from_query("bucket=b&key=k"), None);
        assert_eq!(
            StageAsk::from_query("name=n&bucket=b&key=k&algorithm=md4"),
            None
        );
    }
}
