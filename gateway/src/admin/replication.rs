//! The replication admin API (root only, JSON):
//!
//! - `GET  /_meridian/replication/status[?bucket=B]`: per peer and bucket, pending versions
//!   and bytes, lag, failures and the last error, backfill and resync progress;
//! - `POST /_meridian/replication/checkpoint?peer=P[&bucket=B][&timeout=S]`: returns when the
//!   peer has everything committed before the call (`"reached": true`), or what is still
//!   pending when the timeout (default 60 s) passes;
//! - `POST /_meridian/replication/pause?peer=P`, `.../resume?peer=P`;
//! - `POST /_meridian/replication/resync?peer=P[&bucket=B][&from_scratch=true]`: re-sends what
//!   the peer lacks (every bucket with a rule to it when no bucket is named);
//!   `.../resync/cancel?peer=P&bucket=B` stops one.

use std::time::Duration;

use http::StatusCode;
use meridian_metadata::JobKind;
use s3s::{Body, S3Request};

use super::{error, json, query, AdminApi};

/// Longest a checkpoint may be asked to wait.
const MAX_CHECKPOINT: Duration = Duration::from_secs(3600);

impl AdminApi {
    pub(super) async fn replication(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let q = query(req);
        let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let action = req.uri.path().trim_start_matches("/_meridian/replication/");
        match (req.method.as_str(), action) {
            ("GET", "status") => match self.replicator.status(param("bucket")).await {
                Ok(peers) => json(StatusCode::OK, &meridian_api::ReplicationStatus { peers }),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            },
            ("POST", "checkpoint") => {
                let Some(peer) = param("peer") else {
                    return error(StatusCode::BAD_REQUEST, "peer is required");
                };
                let timeout = match param("timeout").map(str::parse::<f64>) {
                    None => Duration::from_secs(60),
                    // try_from: an infinite, negative or NaN number of seconds is refused.
                    Some(Ok(s)) => match Duration::try_from_secs_f64(s) {
                        Ok(d) => d.min(MAX_CHECKPOINT),
                        Err(_) => return error(StatusCode::BAD_REQUEST, "timeout must be seconds"),
                    },
                    Some(Err(_)) => {
                        return error(StatusCode::BAD_REQUEST, "timeout must be seconds")
                    }
                };
                match self
                    .replicator
                    .checkpoint(peer, param("bucket"), timeout)
                    .await
                {
                    Ok(report) => json(StatusCode::OK, &report),
                    Err(e) => error(StatusCode::NOT_FOUND, &e),
                }
            }
            ("POST", "pause" | "resume") => {
                let Some(peer) = param("peer") else {
                    return error(StatusCode::BAD_REQUEST, "peer is required");
                };
                let by = (action == "pause").then(|| meridian_api::PausedBy {
                    principal: req
                        .credentials
                        .as_ref()
                        .map_or_else(|| "anonymous".to_owned(), |c| c.access_key.clone()),
                    since: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                });
                if self.replicator.handle_exists(peer).is_err() {
                    return error(
                        StatusCode::NOT_FOUND,
                        &format!("peer {peer:?} is not configured"),
                    );
                }
                match self.replicator.set_paused(peer, by).await {
                    Ok(state) => {
                        tracing::info!(%peer, action, by = ?state, "replication {action}d by an operator");
                        json(
                            StatusCode::OK,
                            &meridian_api::PauseState {
                                peer: peer.to_owned(),
                                paused: state.is_some(),
                                paused_by: state,
                            },
                        )
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
                }
            }
            ("POST", "resync") => {
                self.resync(
                    param("peer"),
                    param("bucket"),
                    param("from_scratch") == Some("true"),
                )
                .await
            }
            ("POST", "resync/cancel") => match (param("peer"), param("bucket")) {
                (Some(peer), Some(bucket)) => match self.replicator.cancel_job(peer, bucket) {
                    Ok(()) => json(
                        StatusCode::OK,
                        &meridian_api::JobCancelled {
                            peer: peer.to_owned(),
                            bucket: bucket.to_owned(),
                            cancelled: true,
                        },
                    ),
                    Err(e) => error(StatusCode::NOT_FOUND, &e),
                },
                _ => error(StatusCode::BAD_REQUEST, "peer and bucket are required"),
            },
            _ => error(StatusCode::NOT_FOUND, "no such replication endpoint"),
        }
    }

    async fn resync(
        &self,
        peer: Option<&str>,
        bucket: Option<&str>,
        from_scratch: bool,
    ) -> http::Response<Body> {
        let Some(peer) = peer else {
            return error(StatusCode::BAD_REQUEST, "peer is required");
        };
        let buckets = match bucket {
            Some(b) => vec![b.to_owned()],
            None => match self.buckets_replicated_to(peer).await {
                Ok(b) => b,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            },
        };
        let mut jobs = Vec::new();
        for b in &buckets {
            match self
                .replicator
                .start_job(peer, b, JobKind::Resync, from_scratch)
                .await
            {
                Ok(job) => jobs.push(job),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            }
        }
        tracing::info!(%peer, buckets = ?buckets, from_scratch, "resync started by an operator");
        json(
            StatusCode::OK,
            &meridian_api::ResyncStarted {
                peer: peer.to_owned(),
                jobs,
            },
        )
    }

    /// Buckets with an enabled rule sending to `peer`.
    async fn buckets_replicated_to(&self, peer: &str) -> Result<Vec<String>, String> {
        let buckets = self
            .store
            .meta(|m| m.list_buckets())
            .await
            .map_err(|e| e.to_string())?;
        let (replicator, peer) = (self.replicator.clone(), peer.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for b in buckets {
                let rules = replicator.rules().get(&b.name).map_err(|e| e.to_string())?;
                if rules.is_some_and(|r| {
                    r.rules
                        .iter()
                        .any(|x| x.enabled && x.destination.peer == peer)
                }) {
                    out.push(b.name);
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
