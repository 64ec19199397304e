//! Hand-built S3 requests, signed with the client tools' SigV4 signer (`meridian_client::s3::
//! Signer`, over the AWS SDK's aws-sigv4), for what no SDK will send on purpose: aws-chunked
//! bodies whose trailing checksum is wrong, and the like.

use std::io::{Read, Write};
use std::time::SystemTime;

use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SigningSettings};
use aws_sigv4::sign::v4;
use meridian_client::s3::Signer;

/// A response read off the wire.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Sends `method path` with `headers` and `body` to `endpoint`, signed as `payload`.
#[allow(clippy::too_many_arguments)]
pub fn send_signed(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: &[u8],
    payload: SignableBody<'_>,
    access_key: &str,
    secret_key: &str,
) -> RawResponse {
    let address = endpoint.trim_start_matches("http://");
    send_signed_as(
        address,
        address,
        method,
        path_and_query,
        headers,
        body,
        payload,
        access_key,
        secret_key,
    )
}

/// Like [`send_signed`], but connects to `address` and names `host` in the Host header (for
/// virtual-hosted-style requests without DNS).
#[allow(clippy::too_many_arguments)]
pub fn send_signed_as(
    address: &str,
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: &[u8],
    payload: SignableBody<'_>,
    access_key: &str,
    secret_key: &str,
) -> RawResponse {
    let mut pending = open_signed(
        address,
        host,
        method,
        path_and_query,
        headers,
        body.len(),
        payload,
        (access_key, secret_key),
        SystemTime::now(),
    );
    pending.write(body);
    pending.finish()
}

/// A request whose head is sent and whose body is still being written.
pub struct PendingRequest {
    stream: std::net::TcpStream,
}

impl PendingRequest {
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write body");
    }

    /// Writes body bytes; an error once the server has closed the connection.
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads whatever response the server sent before closing (status 0 when it closed
    /// without one, or reset the connection).
    pub fn finish_or_closed(mut self) -> RawResponse {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)));
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        if response.is_empty() {
            return RawResponse {
                status: 0,
                headers: Vec::new(),
                body: String::new(),
            };
        }
        parse_response(&response)
    }

    /// Reads the response (the body must be complete).
    pub fn finish(mut self) -> RawResponse {
        let mut response = Vec::new();
        self.stream
            .read_to_end(&mut response)
            .expect("read response");
        parse_response(&response)
    }
}

/// Connects to `address` and sends the head of a request signed at `time`, whose body of
/// `content_length` bytes the caller then writes, as slowly as a test needs.
#[allow(clippy::too_many_arguments)]
pub fn open_signed(
    address: &str,
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    content_length: usize,
    payload: SignableBody<'_>,
    (access_key, secret_key): (&str, &str),
    time: SystemTime,
) -> PendingRequest {
    let host = host.to_owned();
    let url = format!("http://{host}{path_and_query}");
    let mut all: Vec<(String, String)> = vec![("host".into(), host.clone())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));

    let (instructions, _) = Signer::new(access_key, secret_key, crate::REGION)
        .sign(
            settings(),
            time,
            method,
            &url,
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            payload,
        )
        .expect("signing");
    let mut request = http::Request::builder().method(method).uri(&url);
    for (k, v) in &all {
        request = request.header(k.as_str(), v.as_str());
    }
    let mut request = request.body(()).expect("request");
    instructions.apply_to_request_http1x(&mut request);

    let mut wire = format!("{method} {path_and_query} HTTP/1.1\r\n");
    for (k, v) in request.headers() {
        wire.push_str(&format!("{}: {}\r\n", k, v.to_str().expect("ASCII header")));
    }
    wire.push_str(&format!(
        "content-length: {content_length}\r\nconnection: close\r\n\r\n"
    ));
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.write_all(wire.as_bytes()).expect("write head");
    PendingRequest { stream }
}

/// Header signatures with `x-amz-content-sha256`, and the path as S3 signs it (encoded
/// once, not normalized), as the SDKs send them.
fn settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
    settings.uri_path_normalization_mode =
        aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
    settings
}

/// PUTs `data` as a signed aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): every
/// chunk carries a signature chained from the request's. With `tamper`, one byte of the
/// second chunk is changed after signing.
pub fn put_signed_chunks(
    endpoint: &str,
    path: &str,
    data: &[u8],
    chunk: usize,
    tamper: bool,
) -> RawResponse {
    let host = endpoint.trim_start_matches("http://").to_owned();
    let url = format!("{endpoint}{path}");
    let signer = Signer::new(crate::ACCESS_KEY, crate::SECRET_KEY, crate::REGION);
    let time = SystemTime::now();
    let params = signer.params(settings(), time).expect("signing params");

    // The encoded length must be known up front: it is signed.
    let pieces: Vec<&[u8]> = data.chunks(chunk).chain(std::iter::once(&[][..])).collect();
    let encoded_len: usize = pieces
        .iter()
        .map(|p| format!("{:x};chunk-signature=", p.len()).len() + 64 + 2 + p.len() + 2)
        .sum();
    let headers = [
        ("host".to_owned(), host.clone()),
        ("content-encoding".to_owned(), "aws-chunked".to_owned()),
        ("content-length".to_owned(), encoded_len.to_string()),
        (
            "x-amz-decoded-content-length".to_owned(),
            data.len().to_string(),
        ),
    ];
    let (instructions, seed) = signer
        .sign(
            settings(),
            time,
            "PUT",
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
        )
        .expect("signing");
    let mut request = http::Request::builder().method("PUT").uri(&url);
    for (k, v) in &headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let mut request = request.body(()).expect("request");
    instructions.apply_to_request_http1x(&mut request);

    let mut body = Vec::with_capacity(encoded_len);
    let mut running = seed;
    for (i, piece) in pieces.iter().enumerate() {
        let signature = v4::sign_chunk(&bytes::Bytes::copy_from_slice(piece), &running, &params)
            .expect("chunk signature")
            .into_parts()
            .1;
        body.extend_from_slice(
            format!("{:x};chunk-signature={signature}\r\n", piece.len()).as_bytes(),
        );
        let start = body.len();
        body.extend_from_slice(piece);
        if tamper && i == 1 {
            body[start] ^= 1;
        }
        body.extend_from_slice(b"\r\n");
        running = signature;
    }
    assert_eq!(body.len(), encoded_len);

    let mut wire = format!("PUT {path} HTTP/1.1\r\n");
    for (k, v) in request.headers() {
        wire.push_str(&format!("{}: {}\r\n", k, v.to_str().expect("ASCII header")));
    }
    wire.push_str("connection: close\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(&host).expect("connect");
    stream.write_all(wire.as_bytes()).expect("write head");
    stream.write_all(&body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    parse_response(&response)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An aws-chunked body with the given chunk sizes and trailer lines (unsigned variant).
pub fn aws_chunked(data: &[u8], chunk: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}:{v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A presigned URL's path and query for `method path`, valid for `expires` from `time`, signed
/// with the test root's keys. The signer itself sets no upper bound on `expires`.
pub fn presign(
    endpoint: &str,
    method: &str,
    path: &str,
    expires: std::time::Duration,
    time: SystemTime,
) -> String {
    let host = endpoint.trim_start_matches("http://");
    let url = format!("http://{host}{path}");
    let mut settings = SigningSettings::default();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let (instructions, _) = Signer::new(crate::ACCESS_KEY, crate::SECRET_KEY, crate::REGION)
        .sign(
            settings,
            time,
            method,
            &url,
            [("host", host)].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .expect("signing");
    let mut request = http::Request::builder()
        .method(method)
        .uri(&url)
        .body(())
        .expect("request");
    instructions.apply_to_request_http1x(&mut request);
    request
        .uri()
        .path_and_query()
        .expect("a path")
        .as_str()
        .to_owned()
}
