//! Meridian's own endpoints under `/_meridian/`, outside the S3 namespace (no bucket name
//! can start with `_`):
//!
//! - `GET health/live`, `GET health/ready`: probes for load balancers (no authentication);
//! - `GET metrics`: Prometheus text format, for root, users with `metrics = true`, or anyone
//!   when `metrics_public = true`;
//! - `replication/...`: status, checkpoint, pause/resume, resync — root only (see
//!   [`replication`]).
//!
//! Callers authenticate with a SigV4 header signature, as for S3 (`curl --aws-sigv4`, the
//! `meridian replication` commands).

mod replication;
pub mod signature;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use meridian_replicator::Replicator;
use s3s::Body;

use crate::auth::{Principal, Users};
use crate::fence::Fence;
use crate::server::plain;
use crate::storage::Store;

#[derive(Clone)]
pub struct AdminApi {
    store: Store,
    replicator: Replicator,
    users: Users,
    fence: Fence,
    metrics_public: bool,
}

/// An admin answer as JSON.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> http::Response<Body> {
    let mut resp = http::Response::new(Body::from(
        serde_json::to_string_pretty(value).expect("serializable") + "\n",
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error(status: StatusCode, message: &str) -> http::Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The query parameters of a request, percent-decoded.
pub(crate) fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl AdminApi {
    pub const PREFIX: &'static str = "/_meridian/";
    pub const HEALTH_PREFIX: &'static str = "/_meridian/health/";

    pub fn new(
        store: Store,
        replicator: Replicator,
        users: Users,
        fence: Fence,
        metrics_public: bool,
    ) -> AdminApi {
        AdminApi {
            store,
            replicator,
            users,
            fence,
            metrics_public,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> http::Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (method.as_str(), path.as_str()) {
            // Live: the process answers. Nothing else is checked, so a restart loop is
            // never triggered by a slow disk.
            ("GET" | "HEAD", "/_meridian/health/live") => plain(StatusCode::OK, "ok\n"),
            // Ready: disks and RocksDB usable, writes can reach quorum.
            ("GET" | "HEAD", "/_meridian/health/ready") => match self.store.readiness().await {
                Ok(()) => plain(StatusCode::OK, "ready\n"),
                Err(reason) => {
                    tracing::warn!(%reason, "not ready");
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("not ready: {reason}\n"),
                    )
                }
            },
            ("GET", "/_meridian/metrics") => {
                match self.caller(&req) {
                    Ok(p) if self.metrics_public || p.as_ref().is_some_and(|p| p.metrics) => {}
                    Ok(_) => {
                        return error(
                            StatusCode::FORBIDDEN,
                            "metrics need root, a user with metrics = true, or metrics_public",
                        )
                    }
                    Err(resp) => return *resp,
                }
                self.metrics().await
            }
            (_, "/_meridian/fence" | "/_meridian/unfence") => {
                match self.caller(&req) {
                    Ok(Some(p)) if p.is_root => {}
                    Ok(_) => return error(StatusCode::FORBIDDEN, "fencing is for root only"),
                    Err(resp) => return *resp,
                }
                self.fence(&req).await
            }
            (_, p) if p.starts_with("/_meridian/replication/") => {
                match self.caller(&req) {
                    Ok(Some(p)) if p.is_root => {}
                    Ok(_) => {
                        return error(
                            StatusCode::FORBIDDEN,
                            "replication administration is for root only",
                        )
                    }
                    Err(resp) => return *resp,
                }
                self.replication(&req).await
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The signer of the request; a bad signature is answered at once.
    fn caller(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Option<Principal>, Box<http::Response<Body>>> {
        signature::principal_of(req, &self.users).map_err(|e| {
            tracing::debug!(error = %e, "admin request refused");
            Box::new(error(StatusCode::FORBIDDEN, &e.to_string()))
        })
    }

    /// `GET /_meridian/fence` says whether the region is fenced; `POST /_meridian/fence
    /// [?note=...]` puts the fence up, `POST /_meridian/unfence` takes it down.
    async fn fence(&self, req: &Request<Incoming>) -> http::Response<Body> {
        let up = match (req.method().as_str(), req.uri().path()) {
            ("GET", "/_meridian/fence") => {
                return json(
                    StatusCode::OK,
                    &serde_json::json!({ "fenced": self.fence.is_up() }),
                )
            }
            ("POST", "/_meridian/fence") => true,
            ("POST", "/_meridian/unfence") => false,
            _ => return error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        };
        let note = query(req)
            .into_iter()
            .find(|(k, _)| k == "note")
            .map_or_else(|| "by an operator".to_owned(), |(_, v)| v);
        let fence = self.fence.clone();
        match tokio::task::spawn_blocking(move || fence.set(up, &note)).await {
            Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({ "fenced": up })),
            Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    async fn metrics(&self) -> http::Response<Body> {
        let m = crate::metrics::global();
        let health = self.store.disks.disk_health();
        m.disks_total.set(health.len() as i64);
        m.disks_online
            .set(health.iter().filter(|d| d.ok).count() as i64);
        self.replicator.refresh_metrics().await;
        let mut resp = http::Response::new(Body::from(m.render()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}
