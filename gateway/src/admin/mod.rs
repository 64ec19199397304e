//! Meridian's own endpoints under `/_meridian/`, outside the S3 namespace (no bucket name
//! can start with `_`):
//!
//! - `GET health/live`, `GET health/ready`: probes for load balancers (no authentication);
//! - `GET metrics`: Prometheus text format, for root, users with `metrics = true`, or anyone
//!   when `metrics_public = true`;
//! - `replication/...`: status, checkpoint, pause/resume, resync — root only (see
//!   [`replication`]);
//! - `lifecycle/...`: status and preview — root only (see [`lifecycle`]);
//! - `admin/keys...`: access keys and grants at run time — root or a key with the `admin`
//!   grant (see [`keys`]); `keys-sync`: a peer region's key changes — root or a `replicate`
//!   grant on `*`.
//!
//! Callers authenticate as for S3: the admin API is a custom route of the S3 service
//! (`s3s::route::S3Route`), so s3s verifies the SigV4 signature (header or presigned) with the
//! same user table before [`AdminApi::check_access`] sees the verified principal, which it
//! also hands to the audit log. `curl --aws-sigv4` and `meridian replication ...` sign so.

mod keys;
pub(crate) mod lifecycle;
mod replication;

use http::{Method, StatusCode};
use meridian_replicator::Replicator;
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};

use crate::auth::{Principal, Users};
use crate::fence::Fence;
use crate::request::{plain, RequestSlot};
use meridian_store::Store;

#[derive(Clone)]
pub struct AdminApi {
    store: Store,
    replicator: Replicator,
    users: Users,
    fence: Fence,
    metrics_public: bool,
    key_sync: crate::key_sync::KeySync,
    /// This node's region of several nodes, if it is in one: key changes reach every node.
    cluster: crate::cluster::ClusterGate,
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
    json(
        status,
        &meridian_api::ApiError {
            error: message.to_owned(),
        },
    )
}

/// The query parameters of a request, decoded.
pub(crate) fn query(req: &S3Request<Body>) -> Vec<(String, String)> {
    crate::query::pairs(req.uri.query())
}

/// Who may call an endpoint.
#[derive(Debug, PartialEq, Eq)]
enum Audience {
    /// Anyone: the health probes, and unknown paths (answered 404).
    Anyone,
    /// Root, users with `metrics = true`, or anyone with `metrics_public`.
    MetricsReaders,
    Root,
    /// Root, or a key with the `admin` grant.
    Admins,
    /// Root, or a key with the `replicate` grant on `*` (a peer region).
    Replicators,
}

fn audience_of(path: &str) -> Audience {
    match path {
        "/_meridian/metrics" => Audience::MetricsReaders,
        "/_meridian/fence" | "/_meridian/unfence" => Audience::Root,
        p if p.starts_with("/_meridian/replication/") => Audience::Admins,
        p if p.starts_with("/_meridian/lifecycle/") => Audience::Admins,
        p if p == "/_meridian/admin/keys" || p.starts_with("/_meridian/admin/keys/") => {
            Audience::Admins
        }
        "/_meridian/keys-sync" => Audience::Replicators,
        // `/_meridian` itself would be a bucket of that name: nobody may touch it.
        "/_meridian" => Audience::Root,
        _ => Audience::Anyone,
    }
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
        key_sync: crate::key_sync::KeySync,
    ) -> AdminApi {
        AdminApi {
            store,
            replicator,
            users,
            fence,
            metrics_public,
            key_sync,
            cluster: crate::cluster::ClusterGate::default(),
        }
    }

    /// The same API, in a region of several nodes.
    pub fn with_cluster(self, cluster: crate::cluster::ClusterGate) -> AdminApi {
        AdminApi { cluster, ..self }
    }

    async fn handle(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let path = req.uri.path();
        match (&req.method, path) {
            // Live: the process answers. Nothing else is checked, so a restart loop is
            // never triggered by a slow disk.
            (&Method::GET | &Method::HEAD, "/_meridian/health/live") => {
                plain(StatusCode::OK, "ok\n")
            }
            // Ready: disks and RocksDB usable, writes can reach quorum.
            (&Method::GET | &Method::HEAD, "/_meridian/health/ready") => {
                match self.store.readiness().await {
                    Ok(()) => plain(StatusCode::OK, "ready\n"),
                    Err(reason) => {
                        tracing::warn!(%reason, "not ready");
                        plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("not ready: {reason}\n"),
                        )
                    }
                }
            }
            (&Method::GET, "/_meridian/metrics") => self.metrics().await,
            (_, "/_meridian/fence" | "/_meridian/unfence") => self.fence(req).await,
            (_, p) if p.starts_with("/_meridian/replication/") => self.replication(req).await,
            (_, p) if p.starts_with("/_meridian/lifecycle/") => self.lifecycle(req).await,
            (_, p) if p.starts_with("/_meridian/admin/keys") => self.keys(req).await,
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// `GET /_meridian/fence` says whether the region is fenced; `POST /_meridian/fence
    /// [?note=...]` puts the fence up, `POST /_meridian/unfence` takes it down.
    async fn fence(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let up = match (req.method.as_str(), req.uri.path()) {
            ("GET", "/_meridian/fence") => {
                return json(
                    StatusCode::OK,
                    &meridian_api::FenceState {
                        fenced: self.fence.is_up(),
                    },
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
            Ok(Ok(())) => json(StatusCode::OK, &meridian_api::FenceState { fenced: up }),
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

/// The admin endpoints as a route of the S3 service: matched before S3 operations, with the
/// signature already verified by s3s.
#[async_trait::async_trait]
impl S3Route for AdminApi {
    fn is_match(
        &self,
        _method: &Method,
        uri: &http::Uri,
        _headers: &http::HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        let path = uri.path();
        path == "/_meridian" || path.starts_with(Self::PREFIX)
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let principal: Option<Principal> = match &req.credentials {
            Some(c) => Some(
                self.users
                    .principal(&c.access_key)
                    .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?,
            ),
            None => None,
        };
        let path = req.uri.path();
        if let Some(slot) = req.extensions.get::<RequestSlot>() {
            let operation = format!("admin {} {path}", req.method);
            let signer = principal.as_ref().map(|p| p.access_key.clone());
            slot.update(|f| {
                f.operation = Some(operation);
                f.principal = signer;
            });
        }
        let allowed = match audience_of(path) {
            Audience::Anyone => true,
            Audience::MetricsReaders => {
                self.metrics_public || principal.as_ref().is_some_and(|p| p.metrics)
            }
            Audience::Root => principal.as_ref().is_some_and(|p| p.is_root),
            Audience::Admins => principal.as_ref().is_some_and(|p| p.is_admin()),
            Audience::Replicators => principal
                .as_ref()
                .is_some_and(|p| p.replicates_everything()),
        };
        if !allowed {
            let need = match audience_of(path) {
                Audience::MetricsReaders => {
                    "metrics need root, a user with metrics = true, or metrics_public"
                }
                Audience::Admins => "this endpoint is for root and keys with the admin grant",
                Audience::Replicators => "this endpoint is for peer regions",
                _ => "this endpoint is for root only",
            };
            return Err(s3_error!(AccessDenied, "{need}"));
        }
        if let Some(p) = principal {
            req.extensions.insert(p);
        }
        Ok(())
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let answer = if req.uri.path() == "/_meridian/keys-sync" {
            self.keys_sync(req).await
        } else {
            self.handle(&req).await
        };
        let (parts, body) = answer.into_parts();
        let mut resp = S3Response::new(body);
        resp.status = Some(parts.status);
        resp.headers = parts.headers;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_has_its_audience() {
        assert_eq!(audience_of("/_meridian/health/live"), Audience::Anyone);
        assert_eq!(audience_of("/_meridian/health/ready"), Audience::Anyone);
        assert_eq!(audience_of("/_meridian/nothing"), Audience::Anyone);
        assert_eq!(audience_of("/_meridian/metrics"), Audience::MetricsReaders);
        assert_eq!(audience_of("/_meridian/fence"), Audience::Root);
        assert_eq!(audience_of("/_meridian/unfence"), Audience::Root);
        assert_eq!(
            audience_of("/_meridian/replication/status"),
            Audience::Admins
        );
        assert_eq!(audience_of("/_meridian/admin/keys"), Audience::Admins);
        assert_eq!(
            audience_of("/_meridian/admin/keys/MK1/rotate"),
            Audience::Admins
        );
        assert_eq!(audience_of("/_meridian/admin/keysx"), Audience::Anyone);
        assert_eq!(audience_of("/_meridian/keys-sync"), Audience::Replicators);
        assert_eq!(audience_of("/_meridian"), Audience::Root);
    }
}
