//! What the layers of the server share about one request: the connection it came on, the
//! facts the S3 layer learned of it (for metrics and the audit line), its declared length,
//! and the plain-text answers given outside S3. A leaf: it knows no other module.

use std::sync::{Arc, Mutex};

use http::{HeaderValue, Response};
use s3s::Body;

/// What the access hook (or the admin route) learned of a request — the S3 operation s3s
/// resolved, the verified principal, bucket and key — for the router's metrics and audit
/// line: the router itself only sees HTTP.
#[derive(Clone, Default)]
pub struct RequestSlot(Arc<Mutex<RequestFacts>>);

#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    pub operation: Option<String>,
    pub principal: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
}

impl RequestSlot {
    pub fn update(&self, f: impl FnOnce(&mut RequestFacts)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn facts(&self) -> RequestFacts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The declared length of a request or response body (0 when none is declared).
pub fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A plain-text answer (health probes, errors outside S3).
pub fn plain(status: http::StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(text.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An S3 error document, answered by the HTTP layer itself (before or beside s3s).
pub fn xml_error(
    status: http::StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = Response::new(Body::from(xml));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// What the router knows of the connection a request came on (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub remote: std::net::SocketAddr,
    /// Came over TLS (`aws:SecureTransport`).
    pub secure: bool,
}
