//! The HTTP server: accepts connections, gives every request an id and a tracing span, hands
//! it to the S3 service (which routes `/_meridian/` to the admin API, its custom route),
//! records its metrics and audit line, and shuts down gracefully (stop accepting, let
//! in-flight requests finish, bounded wait).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::service::S3Service;
use s3s::Body;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::admin::AdminApi;
use crate::limits::{Admission, BodyPace, ConnectionGate, LimitsConfig, PacedBody};
use crate::request::{content_length, plain, Connection, RequestSlot};

/// Request ids: a per-process random prefix and a counter, unique and cheap.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }
    fn next(&self) -> String {
        format!(
            "{:08X}{:08X}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// An HTTP/1 request with a body (HTTP/2 streams end on their own).
fn http1_with_body<B>(req: &Request<B>) -> bool {
    req.version() < http::Version::HTTP_2
        && (content_length(req.headers()) > 0
            || req.headers().contains_key(http::header::TRANSFER_ENCODING))
}

#[derive(Clone)]
pub struct Router {
    s3: S3Service,
    /// Requests and uploads in flight.
    admission: Arc<Admission>,
    /// The pace request bodies must keep.
    pace: BodyPace,
    ids: Arc<RequestIds>,
    /// Answer only the health probes (the plain-HTTP health listener).
    health_only: bool,
    audit: Option<crate::audit::AuditLog>,
    /// The user table, for the old secrets of rotated keys (see `grace`).
    users: Option<crate::auth::Users>,
    /// The buckets' CORS rules: preflights, and the headers of answers to browsers.
    cors: Option<crate::cors::CorsRules>,
    /// This node's region of several nodes, if it is in one: where requests are served.
    cluster: Option<Arc<crate::cluster::ClusterNode>>,
}

impl Router {
    pub fn new(s3: S3Service, audit: Option<crate::audit::AuditLog>) -> Router {
        Router {
            s3,
            admission: Arc::new(Admission::new(&LimitsConfig::default())),
            pace: BodyPace::of(&LimitsConfig::default()),
            ids: Arc::new(RequestIds::new()),
            health_only: false,
            audit,
            users: None,
            cors: None,
            cluster: None,
        }
    }

    /// The same router, sending each request to the node that serves it.
    pub fn with_cluster(self, cluster: &crate::cluster::ClusterGate) -> Router {
        Router {
            cluster: cluster.node().cloned(),
            ..self
        }
    }

    /// The same router, answering browsers by the buckets' CORS rules.
    pub fn with_cors(self, cors: crate::cors::CorsRules) -> Router {
        Router {
            cors: Some(cors),
            ..self
        }
    }

    /// The same router, accepting the old secrets of `users`' rotated keys in their grace.
    pub fn with_users(self, users: crate::auth::Users) -> Router {
        Router {
            users: Some(users),
            ..self
        }
    }

    /// The same router under `limits`: the pace of bodies, the requests in flight.
    fn with_limits(self, limits: &LimitsConfig) -> Router {
        Router {
            pace: BodyPace::of(limits),
            admission: Arc::new(Admission::new(limits)),
            ..self
        }
    }

    /// The same router answering only `/_meridian/health/*` (404 for everything else).
    pub fn health_only(&self) -> Router {
        Router {
            health_only: true,
            ..self.clone()
        }
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let request_id = self.ids.next();
        let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.uri().path());
        let fixups = Fixups::of(&req);
        let may_leave_body_unread = http1_with_body(&req);
        async move {
            if let (Some(cluster), false) = (&self.cluster, self.health_only) {
                if req.uri().path().starts_with(crate::cluster::INTERNAL) {
                    return Ok(cluster.internal(req).await);
                }
                if req.uri().path() == "/_meridian/health/ready" {
                    if let Err(why) = cluster.ready() {
                        return Ok(plain(
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            &format!("not ready: {why}\n"),
                        ));
                    }
                }
            }
            let started = Instant::now();
            let arrived = SystemTime::now();
            let audit = match &self.audit {
                Some(log) if !self.health_only && crate::audit::is_audited(req.uri().path()) => {
                    Some((log.clone(), crate::audit::Pending::of(&req, arrived)))
                }
                _ => None,
            };
            let slot = RequestSlot::default();
            let asked = match &self.cors {
                Some(cors) if !self.health_only => cors.asked(&req),
                _ => None,
            };
            let preflight = crate::cors::is_preflight(&req)
                && !req.uri().path().starts_with(AdminApi::PREFIX)
                && !self.health_only;
            // Refused by admission control: counted in its metric, not logged one by one.
            let mut shed = false;
            let resp = if self.health_only && !req.uri().path().starts_with(AdminApi::HEALTH_PREFIX)
            {
                plain(
                    http::StatusCode::NOT_FOUND,
                    "only health probes are served here\n",
                )
            } else if let (true, Some(cors)) = (preflight, &self.cors) {
                cors.preflight(&req, &request_id)
            } else if let Some(refusal) = presigned_expiry_refusal(req.uri().query()) {
                refusal
            } else if let Some(refusal) = oversize_document_refusal(&req, &request_id) {
                refusal
            } else {
                let bytes_in = content_length(req.headers());
                let admin = req.uri().path().starts_with(AdminApi::PREFIX);
                // Probes and the admin API are always answered; S3 requests take a place.
                let upload =
                    bytes_in > 0 || req.headers().contains_key(http::header::TRANSFER_ENCODING);
                let admitted = if admin {
                    Ok(None)
                } else {
                    self.admission.admit(upload).map(Some).map_err(|limit| {
                        crate::metrics::global()
                            .requests_refused
                            .with_label_values(&[limit])
                            .inc();
                        slow_down(&request_id, may_leave_body_unread)
                    })
                };
                match admitted {
                    // Refused: answered (and audited) like any other request.
                    Err(refusal) => {
                        shed = true;
                        refusal
                    }
                    Ok(_admitted) => {
                        let pace = self.pace;
                        let req = req.map(|b| Body::http_body(PacedBody::new(b, pace)));
                        let routed = match &self.cluster {
                            Some(c) => crate::cluster::routed(c, req).await,
                            None => Ok((req, None)),
                        };
                        let (req, bucket_change) = match routed {
                            Ok(local) => local,
                            Err(answer) => {
                                let mut answer = with_request_id(answer, &request_id);
                                answer.headers_mut().insert(
                                    http::header::SERVER,
                                    HeaderValue::from_static("Meridian"),
                                );
                                return Ok(answer);
                            }
                        };
                        let prepared = match sized(req, &request_id).await {
                            Ok(req) => crate::post_form::prepare(req, &request_id).await,
                            Err(refusal) => Err(refusal),
                        };
                        let resp = match prepared {
                            Ok(mut req) => {
                                req.extensions_mut().insert(slot.clone());
                                if let Some(u) = &self.users {
                                    crate::grace::add_slash_signed_by_sigv2(&mut req, u);
                                }
                                let previous = self.users.as_ref().is_some_and(|u| {
                                    crate::grace::signed_by_previous_secret(&req, u)
                                });
                                match crate::grace::with_previous(previous, self.s3.call(req)).await
                                {
                                    Ok(resp) => resp,
                                    Err(e) => {
                                        tracing::error!(error = ?e, "S3 service failed");
                                        plain(
                                            http::StatusCode::INTERNAL_SERVER_ERROR,
                                            "internal error\n",
                                        )
                                    }
                                }
                            }
                            Err(refusal) => refusal,
                        };
                        let resp = match (&self.cluster, bucket_change) {
                            (Some(c), Some(change)) => c.finish_bucket_change(change, resp).await,
                            _ => resp,
                        };
                        // S3 requests only: the admin API's paths are not S3 operations.
                        if !admin {
                            crate::metrics::global().request(
                                slot.facts().operation.as_deref().unwrap_or("unknown"),
                                resp.status(),
                                started.elapsed().as_secs_f64(),
                                bytes_in,
                                content_length(resp.headers()),
                            );
                        }
                        resp
                    }
                }
            };
            let mut resp = with_request_id(fixups.apply(resp).await, &request_id);
            if let (Some(cors), Some(asked), false) = (&self.cors, &asked, preflight) {
                cors.decorate(asked, resp.headers_mut());
            }
            let refused = resp.status().is_client_error() || resp.status().is_server_error();
            let headers = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                headers.insert("x-amz-request-id", v.clone());
                headers.insert("x-amz-id-2", v);
            }
            headers.insert(http::header::SERVER, HeaderValue::from_static("Meridian"));
            // A refusal may come before the request body was read (507 on full disks, 403):
            // the connection then cannot carry another request, and saying so keeps clients
            // from sending their next one into a socket the server is closing.
            if may_leave_body_unread && refused {
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            // s3s logs every error, a client's 404 included, at ERROR; its target is off by
            // default and server-side failures are reported here instead.
            if resp.status().is_server_error() && !shed {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "request failed on the server side"
                );
            } else {
                tracing::debug!(status = resp.status().as_u16(), "done");
            }
            if let Some((log, pending)) = audit {
                resp = pending.attach(resp, slot.facts(), request_id, started, log);
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

/// Where s3s 0.14 answers differently from S3 and its own types cannot say otherwise, the
/// response is corrected here.
struct Fixups {
    /// s3s answers HEAD with 200 whatever the output says; S3 answers a HEAD for a range or
    /// a part as it answers the GET: 206 with Content-Range.
    head: bool,
    /// s3s quotes every ETag it writes in XML; S3's GetObjectAttributes alone leaves the
    /// ETag unquoted.
    object_attributes: bool,
    /// A browser form upload (POST Object), where s3s 0.14 and S3 differ in two answers: a
    /// form that breaks its policy's conditions is 403 AccessDenied on S3 (s3s: 400
    /// InvalidPolicyDocument, a code S3 keeps for a policy it cannot read), and the
    /// `success_action_redirect` URL carries the ETag quoted, as S3's does.
    post_object: bool,
}

impl Fixups {
    fn of<B>(req: &Request<B>) -> Fixups {
        let method = req.method();
        Fixups {
            head: method == http::Method::HEAD,
            object_attributes: method == http::Method::GET
                && crate::query::value(req.uri().query(), "attributes").is_some(),
            post_object: method == http::Method::POST
                && req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with("multipart/form-data")),
        }
    }

    async fn apply(&self, mut resp: Response<Body>) -> Response<Body> {
        if self.post_object {
            return post_object_answer(resp);
        }
        if resp.status() != http::StatusCode::OK {
            return resp;
        }
        if self.head && resp.headers().contains_key(http::header::CONTENT_RANGE) {
            *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        }
        if self.object_attributes {
            let (mut parts, body) = resp.into_parts();
            let xml = match http_body_util::BodyExt::collect(body).await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    tracing::error!(error = %e, "GetObjectAttributes body failed");
                    return plain(http::StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
                }
            };
            let xml = unquote_etag_element(&xml);
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(xml.len() as u64),
            );
            return Response::from_parts(parts, Body::from(xml));
        }
        resp
    }
}

/// A POST Object answer as S3 gives it (see [`Fixups::post_object`]).
fn post_object_answer(resp: Response<Body>) -> Response<Body> {
    if resp.status() == http::StatusCode::CREATED {
        // S3's PostResponse quotes its ETag, as every other S3 document does.
        let Some(xml) = resp.body().bytes() else {
            return resp;
        };
        let quoted = quote_etag_element(&xml);
        let (mut parts, _) = resp.into_parts();
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(quoted.len()),
        );
        return Response::from_parts(parts, Body::from(quoted));
    }
    if resp.status() == http::StatusCode::SEE_OTHER {
        let (mut parts, body) = resp.into_parts();
        let quoted = parts
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(quote_redirect_etag)
            .and_then(|l| HeaderValue::from_str(&l).ok());
        if let Some(location) = quoted {
            parts.headers.insert(http::header::LOCATION, location);
        }
        return Response::from_parts(parts, body);
    }
    if resp.status() != http::StatusCode::BAD_REQUEST {
        return resp;
    }
    let Some(xml) = resp.body().bytes() else {
        return resp;
    };
    let text = String::from_utf8_lossy(&xml);
    let broken_condition = text.contains("<Code>InvalidPolicyDocument</Code>")
        && (text.contains("<Message>Policy condition")
            || text.contains("<Message>Bucket in form field"));
    if !broken_condition {
        return resp;
    }
    let detail = text
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map_or("", |(m, _)| m);
    let (mut parts, _) = resp.into_parts();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: {detail}</Message></Error>"
    );
    parts.status = http::StatusCode::FORBIDDEN;
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::from(body))
}

/// `<ETag>abc</ETag>` becomes `<ETag>"abc"</ETag>`; the rest of the document is kept.
fn quote_etag_element(xml: &[u8]) -> bytes::Bytes {
    match etag_value(xml) {
        Some(v) if !xml[v.clone()].starts_with(b"\"") && !xml[v.clone()].starts_with(b"&quot;") => {
            [
                &xml[..v.start],
                b"\"",
                &xml[v.clone()],
                b"\"",
                &xml[v.end..],
            ]
            .concat()
            .into()
        }
        _ => bytes::Bytes::copy_from_slice(xml),
    }
}

/// Where the value of the first `<ETag>` element is.
fn etag_value(xml: &[u8]) -> Option<std::ops::Range<usize>> {
    const OPEN: &[u8] = b"<ETag>";
    const CLOSE: &[u8] = b"</ETag>";
    let start = xml.windows(OPEN.len()).position(|w| w == OPEN)? + OPEN.len();
    let len = xml[start..].windows(CLOSE.len()).position(|w| w == CLOSE)?;
    Some(start..start + len)
}

/// `...&etag=abc` becomes `...&etag=%22abc%22` (S3 quotes the ETag it appends to a
/// `success_action_redirect`); `None` when there is nothing to change.
fn quote_redirect_etag(location: &str) -> Option<String> {
    let at = location.rfind("etag=")? + "etag=".len();
    let rest = &location[at..];
    let end = rest.find('&').unwrap_or(rest.len());
    let etag = &rest[..end];
    if etag.is_empty() || etag.starts_with("%22") {
        return None;
    }
    Some(format!("{}%22{etag}%22{}", &location[..at], &rest[end..]))
}

/// The largest body of a PUT sent chunked without `Content-Length` that is taken (read whole
/// first, as RGW and MinIO take them); a larger one must say its length.
const MAX_UNSIZED_PUT: usize = 16 * 1024 * 1024;

/// A PUT with `Transfer-Encoding: chunked` and no `Content-Length` (nor aws-chunked's
/// `x-amz-decoded-content-length`): s3s needs a length, so the body is read first (up to
/// [`MAX_UNSIZED_PUT`]) and its length given. Any other request passes as it is.
async fn sized(req: Request<Body>, request_id: &str) -> Result<Request<Body>, Response<Body>> {
    let headers = req.headers();
    let unsized_chunked = req.method() == http::Method::PUT
        && !headers.contains_key(http::header::CONTENT_LENGTH)
        && !headers.contains_key("x-amz-decoded-content-length")
        && headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !unsized_chunked {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_UNSIZED_PUT);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            // Transfer-Encoding stays: a client may have signed it.
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let (status, code, message) = if too_large {
                (
                    http::StatusCode::LENGTH_REQUIRED,
                    "MissingContentLength",
                    "A chunked PUT without Content-Length is taken up to 16 MiB; send the length",
                )
            } else {
                (
                    http::StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "The request body ended early",
                )
            };
            Err(crate::request::xml_error(status, code, message, request_id))
        }
    }
}

/// An S3 error document gets the request's id (`<RequestId>`), as the `x-amz-request-id`
/// header has it.
fn with_request_id(resp: Response<Body>, request_id: &str) -> Response<Body> {
    const END: &[u8] = b"</Error>";
    if !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return resp;
    }
    let Some(xml) = resp.body().bytes() else {
        return resp;
    };
    let Some(at) = xml.windows(END.len()).rposition(|w| w == END) else {
        return resp;
    };
    if xml.windows(11).any(|w| w == b"<RequestId>") {
        return resp;
    }
    let mut out = Vec::with_capacity(xml.len() + 48);
    out.extend_from_slice(&xml[..at]);
    out.extend_from_slice(format!("<RequestId>{request_id}</RequestId>").as_bytes());
    out.extend_from_slice(&xml[at..]);
    let (mut parts, _) = resp.into_parts();
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, Body::from(bytes::Bytes::from(out)))
}

/// `<ETag>"abc"</ETag>` becomes `<ETag>abc</ETag>`; the rest of the document is kept.
fn unquote_etag_element(xml: &[u8]) -> bytes::Bytes {
    match etag_value(xml) {
        Some(v) if v.len() >= 2 && xml[v.start] == b'"' && xml[v.end - 1] == b'"' => {
            [&xml[..v.start], &xml[v.start + 1..v.end - 1], &xml[v.end..]]
                .concat()
                .into()
        }
        _ => bytes::Bytes::copy_from_slice(xml),
    }
}

/// The longest validity a presigned URL may ask for: seven days, as on S3.
const MAX_PRESIGNED_EXPIRY_SECS: i64 = 604_800;

/// A presigned URL whose `X-Amz-Expires` is negative, not a number or above seven days is
/// refused (403 AccessDenied) before anything else looks at it, and so is never served.
fn presigned_expiry_refusal(query: Option<&str>) -> Option<Response<Body>> {
    let value = crate::query::value(query, "X-Amz-Expires")?;
    let message = match value.parse::<i64>() {
        Ok(secs) if (0..=MAX_PRESIGNED_EXPIRY_SECS).contains(&secs) => return None,
        Ok(secs) if secs < 0 => "X-Amz-Expires must be non-negative",
        _ => "X-Amz-Expires must be less than a week (in seconds) that is; 604800",
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    );
    let mut resp = Response::new(Body::from(xml));
    *resp.status_mut() = http::StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Some(resp)
}

/// Pending connections the kernel may queue before the server accepts them. tokio's default
/// (1,024) overflows under a burst of connects (a flood, a fleet of clients starting at
/// once), and every connection whose SYN is dropped waits a second or more to retry.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` with a deep accept queue ([`LISTEN_BACKLOG`]).
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Largest request document (XML or JSON configuration, DeleteObjects, completion) s3s reads
/// whole: its default `xml_max_body_size`.
const MAX_DOCUMENT_BODY: u64 = 20 << 20;

/// A request whose body s3s reads whole (a PUT or POST on a subresource: `?tagging`,
/// `?policy`, `?delete`, a completion, ...; not an object or part upload) declaring more than
/// [`MAX_DOCUMENT_BODY`]: 400 MaxMessageLengthExceeded before a byte is read. (s3s itself
/// reads up to its limit and then answers 500 InternalError.)
fn oversize_document_refusal<B>(req: &Request<B>, request_id: &str) -> Option<Response<Body>> {
    let keys: Vec<String> = crate::query::pairs(req.uri().query())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    // Keys that do not make an upload a document: parts, versions, the SDKs' operation id.
    let upload_keys = ["partNumber", "uploadId", "versionId", "x-id"];
    let document = match *req.method() {
        http::Method::PUT => keys.iter().any(|k| !upload_keys.contains(&k.as_str())),
        http::Method::POST => keys.iter().any(|k| k != "uploads" && k != "x-id"),
        _ => false,
    };
    if !document || content_length(req.headers()) <= MAX_DOCUMENT_BODY {
        return None;
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>MaxMessageLengthExceeded</Code><Message>Your request was too big.</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = Response::new(Body::from(xml));
    *resp.status_mut() = http::StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Some(resp)
}

/// 503 SlowDown with Retry-After: the answer to a request over the admission limits, which
/// every SDK retries with backoff.
fn slow_down(request_id: &str, body_unread: bool) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = Response::new(Body::from(xml));
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amz-request-id", v);
    }
    headers.insert(http::header::SERVER, HeaderValue::from_static("Meridian"));
    if body_unread {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A client that opens a connection and never finishes its TLS handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves, then waits up to `grace` for in-flight requests. With
/// `tls`, every connection is a TLS one (a handshake that fails or stalls drops it). Every
/// connection is held to `limits` (see [`crate::limits`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    limits: LimitsConfig,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently ignores its header-read timeout.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let router = router.with_limits(&limits);
    let header_timeout = limits.header_timeout;
    let gate = ConnectionGate::new(&limits);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let admitted = match gate.admit(remote.ip()) {
                    Ok(admitted) => admitted,
                    Err(refusal) => {
                        crate::metrics::global()
                            .connections_refused
                            .with_label_values(&[refusal.label()])
                            .inc();
                        tracing::debug!(%remote, reason = refusal.label(), "connection refused: too many open");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _admitted = admitted;
                    let Some(acceptor) = tls else {
                        let conn = Connection { remote, secure: false };
                        return serve_connection(&builder, watcher, TokioIo::new(stream), router, conn, header_timeout).await;
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = Connection { remote, secure: true };
                            serve_connection(&builder, watcher, TokioIo::new(stream), router, conn, header_timeout).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
            _ = shutdown.as_mut() => break,
        }
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: waiting for in-flight requests"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; abandoning remaining connections"),
    }
}

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    router: Router,
    conn: Connection,
    header_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // hyper's header timeout starts once it parses HTTP/1; before that the auto builder
    // reads the first bytes to tell HTTP/1 from HTTP/2 with no limit, so a client that
    // connects and sends nothing would be held for ever. The first request must arrive
    // within the header timeout too.
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = seen.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        first.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(conn);
        router.clone().handle(req)
    });
    let served = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let watched = watcher.watch(served);
    let deadline = tokio::time::sleep(header_timeout);
    tokio::pin!(watched, deadline);
    let mut waiting_for_first = true;
    let result = loop {
        tokio::select! {
            result = &mut watched => break result,
            _ = &mut deadline, if waiting_for_first => {
                waiting_for_first = false;
                if !seen.load(Ordering::Relaxed) {
                    crate::metrics::global().connections_timed_out.inc();
                    tracing::debug!(remote = %conn.remote, "no request within the header timeout; closed");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            crate::metrics::global().connections_timed_out.inc();
        }
        tracing::debug!(remote = %conn.remote, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_expiry_is_bounded_to_a_week() {
        for query in [
            None,
            Some("list-type=2"),
            Some("X-Amz-Expires=0"),
            Some("a=b&X-Amz-Expires=604800&c=d"),
        ] {
            assert!(presigned_expiry_refusal(query).is_none(), "{query:?}");
        }
        for query in [
            "X-Amz-Expires=604801",
            "X-Amz-Expires=-1",
            "x=1&X-Amz-Expires=soon",
        ] {
            let resp = presigned_expiry_refusal(Some(query)).expect(query);
            assert_eq!(resp.status(), http::StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn a_post_redirect_carries_the_etag_quoted() {
        assert_eq!(
            quote_redirect_etag("http://a/b?x=1&bucket=b&key=k.txt&etag=37b5").as_deref(),
            Some("http://a/b?x=1&bucket=b&key=k.txt&etag=%2237b5%22")
        );
        assert_eq!(quote_redirect_etag("http://a/b?etag=%2237b5%22"), None);
        assert_eq!(quote_redirect_etag("http://a/b?bucket=b"), None);
        let xml = b"<PostResponse><Key>k</Key><ETag>abc</ETag></PostResponse>";
        assert_eq!(
            &quote_etag_element(xml)[..],
            &b"<PostResponse><Key>k</Key><ETag>\"abc\"</ETag></PostResponse>"[..]
        );
        let quoted = b"<PostResponse><ETag>\"abc\"</ETag></PostResponse>";
        assert_eq!(&quote_etag_element(quoted)[..], &quoted[..]);
    }

    #[test]
    fn the_attributes_etag_loses_its_quotes_and_nothing_else_changes() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><GetObjectAttributesResponse><ETag>"9b2cf535f27731c974343645a3985328-3"</ETag><ObjectSize>7</ObjectSize></GetObjectAttributesResponse>"#;
        let out = unquote_etag_element(xml);
        assert_eq!(
            &out[..],
            &br#"<?xml version="1.0" encoding="UTF-8"?><GetObjectAttributesResponse><ETag>9b2cf535f27731c974343645a3985328-3</ETag><ObjectSize>7</ObjectSize></GetObjectAttributesResponse>"#[..]
        );
        let without = br#"<GetObjectAttributesResponse><ObjectSize>7</ObjectSize></GetObjectAttributesResponse>"#;
        assert_eq!(&unquote_etag_element(without)[..], &without[..]);
    }
}
