//! Meridian's own endpoints under `/_meridian/`, outside the S3 namespace (no bucket name
//! can start with `_`): liveness and readiness probes for load balancers and orchestrators.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use s3s::Body;

use crate::server::plain;
use crate::storage::Store;

#[derive(Clone)]
pub struct AdminApi {
    store: Store,
}

impl AdminApi {
    pub const PREFIX: &'static str = "/_meridian/";

    pub fn new(store: Store) -> AdminApi {
        AdminApi { store }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> http::Response<Body> {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match req.uri().path() {
            // Live: the process answers. Nothing else is checked, so a restart loop is
            // never triggered by a slow disk.
            "/_meridian/health/live" => plain(StatusCode::OK, "ok\n"),
            // Ready: disks and RocksDB usable, writes can reach quorum.
            "/_meridian/health/ready" => match self.store.readiness().await {
                Ok(()) => plain(StatusCode::OK, "ready\n"),
                Err(reason) => {
                    tracing::warn!(%reason, "not ready");
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("not ready: {reason}\n"),
                    )
                }
            },
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
