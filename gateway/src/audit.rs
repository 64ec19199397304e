//! The audit log: one JSON line per request that read or changed data or configuration —
//! who (principal, source address), what (operation, bucket, key, version), the outcome
//! (status, S3 error code), bytes in and out, duration and, for replicas, the region they
//! came from.
//!
//! Lines are written off the request path: requests put them on a bounded queue and a
//! writer thread appends them to the file (rotated by size, a set number kept) or stderr.
//! When the queue is full the line is dropped, counted in `meridian_audit_dropped_total` and
//! said in the log; a request is never blocked or failed by the audit log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The `[audit]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The file lines are appended to, or `"-"` for stderr.
    pub path: PathBuf,
    /// The file is rotated (`path.1`, `path.2`, ...) once it has grown past this (by at
    /// most one batch of lines: 64 KiB, or this size if smaller).
    #[serde(default = "default_max_size")]
    pub max_size: bytesize::ByteSize,
    /// Rotated files kept; older ones are deleted.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Lines waiting for the writer; beyond this they are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_max_size() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(100)
}

fn default_keep() -> usize {
    10
}

fn default_queue() -> usize {
    16_384
}

/// One audited request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// When the request arrived, RFC 3339 UTC.
    pub time: String,
    pub request_id: String,
    /// The access key that signed the request (as verified); none for anonymous requests
    /// and those whose signature did not verify.
    pub principal: Option<String>,
    /// The client's address and port.
    pub source: String,
    /// The S3 operation (`PutObject`), or `admin` with the path for the admin API.
    pub operation: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub version_id: Option<String>,
    pub status: u16,
    /// The S3 error code of a failed request (`NoSuchKey`).
    pub error_code: Option<String>,
    /// Request body bytes as received (the declared length).
    pub bytes_in: u64,
    /// Response body bytes actually sent.
    pub bytes_out: u64,
    /// From arrival until the last response byte was handed on (or the client went away).
    pub duration_ms: f64,
    /// For a replica written by a peer region: that region.
    pub replica_origin: Option<String>,
    /// Came over TLS.
    pub secure: bool,
}

/// What the writer thread is sent.
enum Message {
    Line(Box<Entry>),
    /// Write out what is queued, flush, answer, and stop.
    Close(std::sync::mpsc::Sender<()>),
}

/// The queue's sending end; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    /// The second of the last "lines dropped" warning (one per second at most).
    warned: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens the destination (an error if it cannot be written) and starts the writer.
    pub fn start(config: &AuditConfig) -> anyhow::Result<AuditLog> {
        let sink: Box<dyn Write + Send> = if config.path.as_os_str() == "-" {
            Box::new(std::io::stderr())
        } else {
            if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("audit log directory {}: {e}", dir.display()))?;
            }
            // Fail at start, not silently in the writer, when the file cannot be written.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.path)
                .map_err(|e| anyhow::anyhow!("audit log {}: {e}", config.path.display()))?;
            Box::new(file_rotate::FileRotate::new(
                &config.path,
                file_rotate::suffix::AppendCount::new(config.keep),
                file_rotate::ContentLimit::BytesSurpassed(config.max_size.as_u64() as usize),
                file_rotate::compression::Compression::None,
                None,
            ))
        };
        let (tx, rx) = sync_channel(config.queue.max(1));
        let max_size = config.max_size.as_u64() as usize;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(rx, sink, max_size))?;
        Ok(AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            warned: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a line; never waits.
    pub fn record(&self, entry: Entry) {
        match self.tx.try_send(Message::Line(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                crate::metrics::global().audit_dropped.inc();
                let second = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if self.warned.swap(second, Ordering::Relaxed) != second {
                    tracing::warn!(
                        dropped_total = total,
                        "audit log queue full: lines are being dropped (the writer cannot keep up)"
                    );
                }
            }
        }
    }
}

/// Lines are written in batches of whole lines, at most this many bytes at once (one write
/// call each, and the rotation check between them).
const BATCH_BYTES: usize = 64 * 1024;

impl AuditLog {
    /// At shutdown, once requests are done: everything queued is written and flushed before
    /// this returns (or after 5 s). Lines recorded later are dropped and counted.
    pub fn close(&self) {
        let (ack, acked) = std::sync::mpsc::channel();
        if self.tx.send(Message::Close(ack)).is_ok() {
            let _ = acked.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn write_lines(rx: Receiver<Message>, mut sink: Box<dyn Write + Send>, max_size: usize) {
    // A small rotation size rotates at least every batch.
    let batch_limit = BATCH_BYTES.min(max_size.max(1));
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut line = Vec::with_capacity(512);
    let mut failing = false;
    let mut write = |batch: &mut Vec<u8>, sink: &mut Box<dyn Write + Send>| {
        match sink.write_all(batch) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "audit log write failed; lines are being lost");
            }
            Err(_) => {}
        }
        batch.clear();
    };
    while let Ok(first) = rx.recv() {
        let mut closing = None;
        // Everything queued goes out before the flush.
        for message in std::iter::once(first).chain(rx.try_iter()) {
            let entry = match message {
                Message::Line(entry) => entry,
                Message::Close(ack) => {
                    closing = Some(ack);
                    break;
                }
            };
            line.clear();
            if serde_json::to_writer(&mut line, &entry).is_err() {
                continue;
            }
            line.push(b'\n');
            // A batch never grows past the limit (unless one line alone does).
            if !batch.is_empty() && batch.len() + line.len() > batch_limit {
                write(&mut batch, &mut sink);
            }
            batch.extend_from_slice(&line);
        }
        if !batch.is_empty() {
            write(&mut batch, &mut sink);
        }
        let _ = sink.flush();
        if let Some(ack) = closing {
            let _ = ack.send(());
            return;
        }
        // Let lines gather: a writer that wakes for every line costs each request a thread
        // wake-up (measured: 15-20 % of a small GET on two cores); one that sleeps between
        // batches costs them a queue push.
        std::thread::sleep(GATHER);
    }
}

/// How long the writer lets lines gather between batches (the most a line waits).
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// Requests that get an audit line: everything but the health probes and metrics scrapes.
pub fn is_audited(path: &str) -> bool {
    !(path.starts_with(crate::admin::AdminApi::HEALTH_PREFIX) || path == "/_meridian/metrics")
}

/// What is known of a request when it arrives; completed into an [`Entry`] when its
/// response body has been sent.
pub struct Pending {
    entry: Entry,
}

impl Pending {
    pub fn of<B>(req: &http::Request<B>, arrived: std::time::SystemTime) -> Pending {
        let conn = req.extensions().get::<crate::request::Connection>();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Pending {
            entry: Entry {
                time: timestamp(arrived),
                source: conn.map(|c| c.remote.to_string()).unwrap_or_default(),
                secure: conn.is_some_and(|c| c.secure),
                version_id: crate::query::value(req.uri().query(), "versionId"),
                bytes_in: crate::request::content_length(req.headers()),
                replica_origin: header(meridian_replicator::headers::REGION),
                ..Entry::default()
            },
        }
    }

    /// The response, its body wrapped so the line is written once the body has been sent
    /// (or the client went away).
    pub fn attach(
        mut self,
        resp: http::Response<s3s::Body>,
        facts: crate::request::RequestFacts,
        request_id: String,
        started: std::time::Instant,
        log: AuditLog,
    ) -> http::Response<s3s::Body> {
        let (parts, body) = resp.into_parts();
        let e = &mut self.entry;
        e.request_id = request_id;
        e.status = parts.status.as_u16();
        if parts.status.as_u16() >= 400 {
            e.error_code = body.bytes().and_then(|xml| error_code(&xml));
        }
        // The S3 access hook or the admin route filled these in, with the principal whose
        // signature s3s verified (none for an unsigned or unverifiable request).
        e.operation = facts.operation.unwrap_or_else(|| "unknown".into());
        e.principal = facts.principal;
        e.bucket = facts.bucket;
        e.key = facts.key;
        if let Some(v) = parts
            .headers
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
        {
            e.version_id = Some(v.to_owned());
        }
        let body = AuditedBody {
            inner: body,
            pending: Some((self.entry, log)),
            started,
            sent: 0,
        };
        http::Response::from_parts(parts, s3s::Body::http_body(body))
    }
}

/// A response body that counts the bytes handed on and writes the audit line at its end.
struct AuditedBody {
    inner: s3s::Body,
    pending: Option<(Entry, AuditLog)>,
    started: std::time::Instant,
    sent: u64,
}

impl AuditedBody {
    fn finish(&mut self) {
        if let Some((mut entry, log)) = self.pending.take() {
            entry.bytes_out = self.sent;
            entry.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            log.record(entry);
        }
    }
}

impl http_body::Body for AuditedBody {
    type Data = bytes::Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            std::task::Poll::Ready(_) => this.finish(),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The `<Code>` of an S3 error document.
pub fn error_code(xml: &[u8]) -> Option<String> {
    let start = find(xml, b"<Code>")? + b"<Code>".len();
    let len = find(&xml[start..], b"</Code>")?;
    std::str::from_utf8(&xml[start..start + len])
        .ok()
        .map(str::to_owned)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(at: std::time::SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_is_read_from_the_document() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"#;
        assert_eq!(error_code(xml).as_deref(), Some("NoSuchKey"));
        assert_eq!(error_code(b"<Error></Error>"), None);
    }

    #[test]
    fn lines_rotate_by_size_and_only_keep_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::start(&AuditConfig {
            path: path.clone(),
            max_size: bytesize::ByteSize::kib(4),
            keep: 2,
            queue: 100_000,
        })
        .unwrap();
        for i in 0..200 {
            log.record(Entry {
                request_id: format!("r{i}"),
                operation: "PutObject".into(),
                ..Entry::default()
            });
        }
        let rotated = dir.path().join("audit.log.2");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rotated.exists() {
            assert!(std::time::Instant::now() < deadline, "never rotated");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The writer may be between the renames of a rotation: let it finish everything.
        log.close();
        drop(log);
        assert!(!dir.path().join("audit.log.3").exists());
        for name in ["audit.log.1", "audit.log.2"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 2 * 4096, "{name}: {} bytes", text.len());
            for line in text.lines() {
                let entry: Entry = serde_json::from_str(line).unwrap();
                assert_eq!(entry.operation, "PutObject");
            }
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A writer that never drains: stderr is fine, the queue of one fills at once.
        let (tx, _rx) = sync_channel::<Message>(1);
        let log = AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            warned: Arc::new(AtomicU64::new(0)),
        };
        let before = crate::metrics::global().audit_dropped.get();
        for _ in 0..5 {
            log.record(Entry::default());
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 4);
        assert!(crate::metrics::global().audit_dropped.get() >= before + 4);
    }

    #[test]
    fn an_unwritable_path_fails_at_start() {
        let err = AuditLog::start(&AuditConfig {
            path: "/proc/meridian-audit/audit.log".into(),
            max_size: default_max_size(),
            keep: 1,
            queue: 1,
        });
        assert!(err.is_err());
    }
}
