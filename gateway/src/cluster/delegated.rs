//! Work one node does for another on a client's behalf.
//!
//! A client's request is authenticated and authorized on the node it reached; some name keys
//! that other nodes lead: the keys of a DeleteObjects, the source of a CopyObject or an
//! UploadPartCopy (which is served at the destination's primary). The node that got the
//! request asks each key's primary for its part, over the internal endpoints (hop-signed):
//!
//! - `delete`: delete these keys of one bucket — each exactly as a DeleteObject there
//!   (delete markers, Object Lock, conditions, copies on the followers before the answer);
//! - `source`: the version a copy reads (its record), after checking the copy's SSE-C key;
//! - `read`: a byte range of that version, decrypted, streamed.
//!
//! Each answer carries S3's error code for a key or a source that fails, so the client sees
//! what a single node would have answered.

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_cluster::layout::NodeId;
use meridian_metadata::{DeleteCondition, VersionRecord};
use s3s::Body;
use serde::{Deserialize, Serialize};

use super::{ClusterNode, HOP, INTERNAL};

/// How long a node waits for another's answer to begin (a delete waits for its copies).
const DELEGATED_ANSWER: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest request between nodes for delegated work (a delete of 1,000 keys is far less).
const MAX_ASK: usize = 8 << 20;

/// Plaintext bytes of a version, as read by the node that holds it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send + Sync>>;

/// What the S3 layer does for another node (implemented by `MeridianS3`).
#[async_trait]
pub trait Delegated: Send + Sync {
    /// Deletes `objects` of `bucket`, as DeleteObjects would here, one answer per object.
    async fn delete(
        &self,
        bucket: &str,
        bypass_governance: bool,
        objects: Vec<DeleteItem>,
    ) -> Vec<Deleted>;
    /// The version a copy reads, once the copy's customer key (if any) opens it.
    async fn source(&self, ask: &SourceAsk) -> Result<VersionRecord, Refusal>;
    /// `range` of the version `ask` names (by its id), decrypted.
    async fn read(&self, ask: &SourceAsk, range: Range<u64>) -> Result<ByteStream, Refusal>;
    /// Ingests a body streamed here by the primary of `ask`'s key while it arrived there,
    /// and holds it for the copy that will name it ([`super::stage`]).
    async fn stage(
        &self,
        ask: &super::stage::StageAsk,
        body: futures::stream::BoxStream<'static, Result<Bytes, meridian_store::ingest::BodyError>>,
    ) -> Result<super::stage::StagedAnswer, String>;
    /// Discards the body staged here under `name`, which no copy will name.
    async fn unstage(&self, name: &str);
    /// Discards the bodies staged here that no copy named in time (checked every minute,
    /// besides whenever a body is staged or taken).
    fn expire_staged(&self);
    /// The bucket catalogue changed `bucket` in the store (made, changed or deleted it; `docs`
    /// names the configuration documents that changed): what was read of it before is stale.
    async fn bucket_applied(&self, bucket: &str, docs: &[String]);
    /// Queues the version for the peer regions its bucket's rules send it to, if it is this
    /// region's own write held here as a copy (another node led it): what a node that took
    /// over a dead node's partitions ships in its place. How many peers it was queued for.
    async fn reship(&self, bucket: &str, key: &str, version_id: &str) -> usize;
    /// What `bucket`'s lifecycle rules would do by `at` (Unix seconds) to the keys `keep`
    /// keeps, at most `limit` actions (blocking).
    fn lifecycle_preview(
        &self,
        bucket: &str,
        at: i64,
        limit: usize,
        keep: meridian_metadata::KeyFilter<'_>,
    ) -> Result<Vec<meridian_api::PreviewAction>, String>;
}

/// An S3 error as it travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Refusal {
    fn unavailable(message: String) -> Refusal {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            code: "ServiceUnavailable".into(),
            message,
        }
    }

    fn response(&self) -> Response<Body> {
        let mut resp = super::json_response(self);
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp
    }
}

/// One key of a delete another node leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteItem {
    pub key: String,
    pub version_id: Option<String>,
    pub condition: Option<Condition>,
}

/// A [`DeleteCondition`] on the wire (its `Option<Option<_>>` spelled out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `If-Match: *`.
    pub exists: bool,
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub mtime_secs: Option<i64>,
}

impl From<DeleteCondition> for Condition {
    fn from(c: DeleteCondition) -> Condition {
        Condition {
            exists: matches!(c.etag, Some(None)),
            etag: c.etag.flatten(),
            size: c.size,
            mtime_secs: c.mtime_secs,
        }
    }
}

impl From<Condition> for DeleteCondition {
    fn from(c: Condition) -> DeleteCondition {
        DeleteCondition {
            etag: match (c.exists, c.etag) {
                (_, Some(etag)) => Some(Some(etag)),
                (true, None) => Some(None),
                (false, None) => None,
            },
            size: c.size,
            mtime_secs: c.mtime_secs,
        }
    }
}

/// The answer for one key of a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deleted {
    Done {
        version_id: Option<String>,
        delete_marker: bool,
    },
    Failed(Refusal),
}

#[derive(Serialize, Deserialize)]
struct DeleteAsk {
    bucket: String,
    bypass_governance: bool,
    objects: Vec<DeleteItem>,
    epoch: u64,
}

/// The source of a copy, as its primary is asked for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAsk {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// The copy's `x-amz-copy-source-server-side-encryption-customer-{algorithm,key,key-MD5}`.
    pub customer: [Option<String>; 3],
}

#[derive(Serialize, Deserialize)]
struct SourceRequest {
    source: SourceAsk,
    /// The bytes to read (`read` only).
    range: Option<(u64, u64)>,
    epoch: u64,
}

impl ClusterNode {
    /// The node that leads the partition of `bucket`/`key`, when that is not this one.
    pub fn leader_elsewhere(&self, bucket: &str, key: &str) -> Option<NodeId> {
        let (layout, me) = self.layout()?;
        let primary = layout.nodes_of(layout.partition(bucket, key))[0];
        (primary != me).then_some(primary)
    }

    /// This node set to serve other nodes' delegated work.
    pub fn set_delegate(&self, delegate: std::sync::Arc<dyn Delegated>) {
        let _ = self.delegate.set(delegate);
    }

    /// Deletes `objects` of `bucket` at `node`, their primary: one answer per object, in order.
    pub async fn delete_at(
        &self,
        node: NodeId,
        bucket: &str,
        bypass_governance: bool,
        objects: Vec<DeleteItem>,
    ) -> Result<Vec<Deleted>, Refusal> {
        let count = objects.len();
        let ask = DeleteAsk {
            bucket: bucket.to_owned(),
            bypass_governance,
            objects,
            epoch: self.epoch(),
        };
        let resp = self.send(node, "delete", &ask).await?;
        let answers: Vec<Deleted> = json_of(node, resp).await?;
        if answers.len() != count {
            return Err(Refusal::unavailable(format!(
                "node {node} answered {} deletes for {count}",
                answers.len()
            )));
        }
        Ok(answers)
    }

    /// The record of the version a copy reads, from `node`, its primary.
    pub async fn source_at(&self, node: NodeId, ask: &SourceAsk) -> Result<VersionRecord, Refusal> {
        let request = SourceRequest {
            source: ask.clone(),
            range: None,
            epoch: self.epoch(),
        };
        json_of(node, self.send(node, "source", &request).await?).await
    }

    /// `range` of the version `ask` names, read and decrypted by `node`.
    pub async fn read_at(
        &self,
        node: NodeId,
        ask: &SourceAsk,
        range: Range<u64>,
    ) -> Result<ByteStream, Refusal> {
        let request = SourceRequest {
            source: ask.clone(),
            range: Some((range.start, range.end)),
            epoch: self.epoch(),
        };
        let resp = self.send(node, "read", &request).await?;
        Ok(Box::pin(resp.into_body().into_data_stream().map_err(
            move |e| format!("reading from node {node}: {e}"),
        )))
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// POSTs `body` to `node`'s internal endpoint `path`; an answer that is not a success is
    /// the [`Refusal`] it carries.
    pub(super) async fn send<T: Serialize>(
        &self,
        node: NodeId,
        path: &str,
        body: &T,
    ) -> Result<Response<hyper::body::Incoming>, Refusal> {
        let endpoint = self
            .view()
            .endpoints
            .get(&node)
            .cloned()
            .ok_or_else(|| Refusal::unavailable(format!("node {node} is not known")))?;
        let req = Request::post(format!(
            "{}{INTERNAL}{path}",
            endpoint.trim_end_matches('/')
        ))
        .header(HOP, &self.hop)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("an internal request serializes"),
        ))
        .expect("an internal request");
        let resp = tokio::time::timeout(DELEGATED_ANSWER, self.http.request(req))
            .await
            .map_err(|_| Refusal::unavailable(format!("node {node} did not answer in time")))?
            .map_err(|e| Refusal::unavailable(format!("node {node} did not answer: {e}")))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(serde_json::from_slice(&bytes).unwrap_or_else(|_| Refusal {
            status: status.as_u16(),
            code: "InternalError".into(),
            message: format!("node {node} answered {status}"),
        }))
    }

    /// Serves `delete`, `source` and `read` for another node.
    pub(super) async fn serve_delegated(
        &self,
        path: &str,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        let Some(delegate) = self.delegate.get() else {
            return Refusal::unavailable("this node is starting".into()).response();
        };
        let body = match http_body_util::Limited::new(req.into_body(), MAX_ASK)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return super::internal_error("reading the request"),
        };
        match path {
            "delete" => {
                let Ok(ask) = serde_json::from_slice::<DeleteAsk>(&body) else {
                    return bad_request();
                };
                self.catch_up_to(ask.epoch).await;
                // Each key is deleted where it is led now; a key this node no longer leads
                // (the layout changed on the way) is answered "try again", not deleted here.
                let mut answers: Vec<Option<Deleted>> = vec![None; ask.objects.len()];
                let mut here = Vec::new();
                let mut places = Vec::new();
                for (i, object) in ask.objects.into_iter().enumerate() {
                    if !self.holds_lease()
                        || self.leader_elsewhere(&ask.bucket, &object.key).is_some()
                    {
                        answers[i] = Some(Deleted::Failed(Refusal::unavailable(
                            "The region's layout is changing: try again".into(),
                        )));
                    } else {
                        places.push(i);
                        here.push(object);
                    }
                }
                let done = delegate
                    .delete(&ask.bucket, ask.bypass_governance, here)
                    .await;
                for (i, answer) in places.into_iter().zip(done) {
                    answers[i] = Some(answer);
                }
                let answers: Vec<Deleted> = answers.into_iter().flatten().collect();
                super::json_response(&answers)
            }
            "source" | "read" => {
                let Ok(request) = serde_json::from_slice::<SourceRequest>(&body) else {
                    return bad_request();
                };
                self.catch_up_to(request.epoch).await;
                match request.range {
                    None => match delegate.source(&request.source).await {
                        Ok(record) => super::json_response(&record),
                        Err(refusal) => refusal.response(),
                    },
                    Some((start, end)) => match delegate.read(&request.source, start..end).await {
                        Ok(stream) => {
                            let frames = stream.map(|r| {
                                r.map(hyper::body::Frame::data)
                                    .map_err(std::io::Error::other)
                            });
                            let mut resp = Response::new(Body::http_body(
                                http_body_util::StreamBody::new(frames),
                            ));
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/octet-stream"),
                            );
                            resp
                        }
                        Err(refusal) => refusal.response(),
                    },
                }
            }
            _ => super::error_response(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "No such internal endpoint",
            ),
        }
    }

    /// Reads the layout again when another node's request names a newer one.
    async fn catch_up_to(&self, epoch: u64) {
        if epoch > self.epoch() {
            let _ = self.refresh().await;
        }
    }
}

fn bad_request() -> Response<Body> {
    Refusal {
        status: 400,
        code: "InvalidArgument".into(),
        message: "bad internal request".into(),
    }
    .response()
}

async fn json_of<T: serde::de::DeserializeOwned>(
    node: NodeId,
    resp: Response<hyper::body::Incoming>,
) -> Result<T, Refusal> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Refusal::unavailable(format!("node {node}: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::unavailable(format!("node {node} answered: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_conditions_survive_the_wire() {
        for etag in [None, Some(None), Some(Some("abc".to_owned()))] {
            let condition = DeleteCondition {
                etag,
                size: Some(3),
                mtime_secs: Some(7),
            };
            let wire = serde_json::to_vec(&Condition::from(condition.clone())).unwrap();
            let back: Condition = serde_json::from_slice(&wire).unwrap();
            assert_eq!(DeleteCondition::from(back), condition);
        }
    }
}
