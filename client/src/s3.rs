//! A lean S3 client, the one every client tool signs with: hyper 1 over hyper-util's pooled
//! client (keep-alive, connections reused across requests), `http://` or `https://` (rustls,
//! [`crate::tls`]), SigV4 header signing ([`Signer`]) with unsigned payloads, and
//! path-style addressing (`http://host:port/bucket/key`), so it works against any S3 endpoint
//! without DNS tricks. Bodies go out as zero-copy payload slices and GET bodies are streamed
//! through a checker, never buffered whole.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SigningInstructions, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::OpError;
use crate::payload::{ContentCheck, PayloadBody};
use crate::xml;

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port`, optionally with a path prefix.
    pub endpoint: String,
    /// For `https://`: the CA to trust instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub bucket: String,
    /// Idle connections kept per host: at least the number of requests in flight.
    pub max_idle_connections: usize,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
}

/// One page of a ListObjectsV2 walk.
#[derive(Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Keys on this page.
    pub keys: u64,
    /// Token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// An S3 client bound to one endpoint, credential and bucket. Cheap to share behind an `Arc`.
pub struct S3Client {
    http: Client<HttpsConnector<HttpConnector>, PayloadBody>,
    /// `http(s)://host:port` plus any path prefix of the endpoint, without a trailing `/`.
    base_uri: String,
    host: String,
    signer: Signer,
    signing_settings: SigningSettings,
    bucket: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one SigV4 signer of the client tools (over aws-sigv4): the S3 client, the admin API
/// calls and the end-to-end tests' hand-built requests all sign through it.
pub struct Signer {
    identity: Identity,
    region: String,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Signer {
        Signer {
            identity: Credentials::new(access_key, secret_key, None, None, "meridian").into(),
            region: region.to_owned(),
        }
    }

    /// The signing parameters for service `s3` at `time` (also what chunk signatures of a
    /// streaming body are chained with).
    pub fn params(
        &self,
        settings: SigningSettings,
        time: SystemTime,
    ) -> Result<v4::SigningParams<'_, SigningSettings>, BoxError> {
        Ok(v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()?)
    }

    /// Signs `method uri` with `headers` (`host` among them) and `body` as `settings` say
    /// (an Authorization header or presigned query parameters): the instructions to apply to
    /// the request, and the signature (the seed of a streaming body's chunk signatures).
    #[allow(clippy::too_many_arguments)]
    pub fn sign<'a>(
        &self,
        settings: SigningSettings,
        time: SystemTime,
        method: &'a str,
        uri: &'a str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        body: SignableBody<'a>,
    ) -> Result<(SigningInstructions, String), BoxError> {
        let params = self.params(settings, time)?.into();
        let signable = SignableRequest::new(method, uri, headers, body)?;
        Ok(sign(signable, &params)?.into_parts())
    }
}

impl S3Client {
    pub fn new(config: &ClientConfig) -> Result<S3Client, ClientError> {
        let bad = |reason: &str| ClientError::BadEndpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.into(),
        };
        let uri: http::Uri = config.endpoint.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) => scheme,
            _ => return Err(bad("expected http://host:port or https://host:port")),
        };
        let host = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_string();
        let base_path = uri.path().trim_end_matches('/').to_string();
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(bad("the bucket name must be non-empty and contain no '/'"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = crate::tls::client_config(config.ca_file.as_deref())
            .map_err(|e| bad(&e.to_string()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_connections.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(S3Client {
            http,
            base_uri: format!("{scheme}://{host}{base_path}"),
            host,
            signer: Signer::new(&config.access_key, &config.secret_key, &config.region),
            signing_settings: s3_signing_settings(),
            bucket: config.bucket.clone(),
        })
    }

    /// The bucket every operation addresses.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn target(&self, key: &str) -> String {
        if key.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{key}", self.bucket)
        }
    }

    /// Signs and sends one request; a non-2xx answer becomes [`OpError::S3`] with the code
    /// from the XML error body (or `HTTP<status>` when there is none).
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        range: Option<&str>,
        body: PayloadBody,
    ) -> Result<Response<Incoming>, OpError> {
        let request = self
            .signed_request(method, key, query, range, body)
            .map_err(|e| self.transport(op, key, e.as_ref()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.transport(op, key, &e))?;
        if response.status().is_success() || response.status() == StatusCode::PARTIAL_CONTENT {
            return Ok(response);
        }
        Err(self.error_from(op, key, response).await)
    }

    /// The signed request for `method` on `key` (the bucket itself when empty): what every
    /// operation costs before it reaches the network, measured by `cargo bench -p
    /// meridian-client`.
    pub fn signed_request(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        range: Option<&str>,
        body: PayloadBody,
    ) -> Result<Request<PayloadBody>, Box<dyn std::error::Error + Send + Sync>> {
        let path = if key.is_empty() {
            format!("/{}", self.bucket)
        } else {
            format!("/{}/{key}", self.bucket)
        };
        let path = encode_path(&path);
        let query = encode_query(query);
        let uri = if query.is_empty() {
            format!("{}{path}", self.base_uri)
        } else {
            format!("{}{path}?{query}", self.base_uri)
        };
        let mut headers = vec![("host", self.host.as_str())];
        if let Some(range) = range {
            headers.push(("range", range));
        }
        let (instructions, _) = self.signer.sign(
            self.signing_settings.clone(),
            SystemTime::now(),
            method.as_str(),
            &uri,
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )?;

        let content_length = body.len();
        let mut request = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if method == Method::PUT || method == Method::POST {
            request = request.header(http::header::CONTENT_LENGTH, content_length);
        }
        let mut request = request.body(body)?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    fn transport(&self, op: &'static str, key: &str, error: &dyn std::error::Error) -> OpError {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        OpError::Transport {
            op,
            target: self.target(key),
            detail,
        }
    }

    async fn error_from(
        &self,
        op: &'static str,
        key: &str,
        response: Response<Incoming>,
    ) -> OpError {
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return self.transport(op, key, &e),
        };
        let (code, message) = xml::error_fields(&String::from_utf8_lossy(&body));
        OpError::S3 {
            op,
            target: self.target(key),
            status: status.as_u16(),
            code: code.unwrap_or_else(|| format!("HTTP{}", status.as_u16())),
            message: message.unwrap_or_default(),
        }
    }

    /// Reads a small response body whole (XML documents).
    async fn read_small(
        &self,
        op: &'static str,
        key: &str,
        response: Response<Incoming>,
    ) -> Result<String, OpError> {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(op, key, &e))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the bucket exists. Asked with a one-key listing rather than HeadBucket because
    /// a HEAD error has no body, and "SignatureDoesNotMatch" says more than "HTTP403".
    pub async fn bucket_exists(&self) -> Result<bool, OpError> {
        match self.list_page("", None, 1).await {
            Ok(_) => Ok(true),
            Err(OpError::S3 { code, .. }) if code == "NoSuchBucket" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket; succeeds if it already exists and is ours.
    pub async fn create_bucket(&self) -> Result<(), OpError> {
        let body = if self.signer.region == "us-east-1" {
            PayloadBody::empty()
        } else {
            PayloadBody::from_bytes(Bytes::from(format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(&self.signer.region)
            )))
        };
        match self
            .send("CreateBucket", Method::PUT, "", &[], None, body)
            .await
        {
            Ok(_) => Ok(()),
            Err(OpError::S3 { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// PutBucketEncryption: every object written without SSE headers is encrypted with
    /// `algorithm` (`AES256` or `aws:kms`).
    pub async fn put_bucket_encryption(&self, algorithm: &str) -> Result<(), OpError> {
        let body = format!(
            "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>\
             <SSEAlgorithm>{}</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>\
             </ServerSideEncryptionConfiguration>",
            xml::escape(algorithm)
        );
        let response = self
            .send(
                "PutBucketEncryption",
                Method::PUT,
                "",
                &[("encryption", "")],
                None,
                PayloadBody::from_bytes(Bytes::from(body)),
            )
            .await?;
        self.read_small("PutBucketEncryption", "", response)
            .await
            .map(|_| ())
    }

    /// PutObject with `body` as the content.
    pub async fn put_object(&self, key: &str, body: PayloadBody) -> Result<(), OpError> {
        let response = self
            .send("PutObject", Method::PUT, key, &[], None, body)
            .await?;
        // Drain so the connection goes back to the pool.
        self.read_small("PutObject", key, response)
            .await
            .map(|_| ())
    }

    /// GetObject of the whole object, or of `len` bytes from `start` when `range` is given.
    /// The body is streamed through `check` when given; returns the number of bytes received.
    pub async fn get_object(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        mut check: Option<&mut ContentCheck>,
    ) -> Result<u64, OpError> {
        let range_header =
            range.map(|(start, len)| format!("bytes={start}-{}", start + len.max(1) - 1));
        let response = self
            .send(
                "GetObject",
                Method::GET,
                key,
                &[],
                range_header.as_deref(),
                PayloadBody::empty(),
            )
            .await?;
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.transport("GetObject", key, &e))?;
            if let Ok(data) = frame.into_data() {
                if let Some(check) = check.as_deref_mut() {
                    check.check(&data).map_err(|m| OpError::ContentMismatch {
                        target: self.target(key),
                        offset: m.offset,
                    })?;
                }
                received += data.len() as u64;
            }
        }
        Ok(received)
    }

    /// One ListObjectsV2 page under `prefix`.
    pub async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, OpError> {
        let max_keys = max_keys.to_string();
        let mut query = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("max-keys", max_keys.as_str()),
        ];
        if let Some(token) = token {
            query.push(("continuation-token", token));
        }
        let response = self
            .send(
                "ListObjectsV2",
                Method::GET,
                "",
                &query,
                None,
                PayloadBody::empty(),
            )
            .await?;
        let doc = self.read_small("ListObjectsV2", prefix, response).await?;
        let page = xml::list_summary(&doc);
        if page.is_truncated && page.next_token.is_none() {
            return Err(OpError::BadResponse {
                op: "ListObjectsV2",
                target: self.target(prefix),
                detail: "truncated page without NextContinuationToken".into(),
            });
        }
        Ok(ListPage {
            keys: page.keys,
            next: page.next_token.filter(|_| page.is_truncated),
        })
    }

    /// DeleteObject.
    pub async fn delete_object(&self, key: &str) -> Result<(), OpError> {
        let response = self
            .send(
                "DeleteObject",
                Method::DELETE,
                key,
                &[],
                None,
                PayloadBody::empty(),
            )
            .await?;
        self.read_small("DeleteObject", key, response)
            .await
            .map(|_| ())
    }

    /// CreateMultipartUpload; returns the upload id.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, OpError> {
        let op = "CreateMultipartUpload";
        let response = self
            .send(
                op,
                Method::POST,
                key,
                &[("uploads", "")],
                None,
                PayloadBody::empty(),
            )
            .await?;
        let doc = self.read_small(op, key, response).await?;
        xml::first_text(&doc, "UploadId").ok_or_else(|| OpError::BadResponse {
            op,
            target: self.target(key),
            detail: "no UploadId".into(),
        })
    }

    /// UploadPart; returns the part's ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        body: PayloadBody,
    ) -> Result<String, OpError> {
        let part_number = part.to_string();
        let query = [
            ("partNumber", part_number.as_str()),
            ("uploadId", upload_id),
        ];
        let response = self
            .send("UploadPart", Method::PUT, key, &query, None, body)
            .await?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.read_small("UploadPart", key, response).await?;
        etag.ok_or_else(|| OpError::BadResponse {
            op: "UploadPart",
            target: self.target(key),
            detail: format!("part {part} answered without an ETag"),
        })
    }

    /// CompleteMultipartUpload with the parts' ETags in part-number order (part 1 first).
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), OpError> {
        let op = "CompleteMultipartUpload";
        let mut doc = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            doc.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml::escape(etag)
            ));
        }
        doc.push_str("</CompleteMultipartUpload>");
        let body = PayloadBody::from_bytes(Bytes::from(doc));
        let response = self
            .send(
                op,
                Method::POST,
                key,
                &[("uploadId", upload_id)],
                None,
                body,
            )
            .await?;
        let answer = self.read_small(op, key, response).await?;
        // S3 may report a failed completion inside a 200 response.
        if answer.contains("<Error>") {
            let (code, message) = xml::error_fields(&answer);
            return Err(OpError::S3 {
                op,
                target: self.target(key),
                status: 200,
                code: code.unwrap_or_else(|| "InternalError".into()),
                message: message.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// AbortMultipartUpload; used to clean up after a failed part.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), OpError> {
        let query = [("uploadId", upload_id)];
        let response = self
            .send(
                "AbortMultipartUpload",
                Method::DELETE,
                key,
                &query,
                None,
                PayloadBody::empty(),
            )
            .await?;
        self.read_small("AbortMultipartUpload", key, response)
            .await
            .map(|_| ())
    }
}

/// How S3 wants requests signed: the path as sent (already URI-encoded once, never
/// normalised), an `x-amz-content-sha256` header, and bodies as `UNSIGNED-PAYLOAD` so
/// signing never reads the payload.
/// The settings the S3 client signs with: header signatures, `x-amz-content-sha256`, keys
/// encoded once and not normalised.
pub fn s3_signing_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    // Only `host` and `range` are ever offered for signing: nothing to exclude, and no list
    // to clone for every request.
    settings.excluded_headers = None;
    settings
}

/// Characters left unencoded in URIs: `A-Z a-z 0-9 - _ . ~`.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`QUERY_ENCODE`], and `/` separates path segments.
const PATH_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// URI-encodes an object path (`/bucket/key`) as S3 expects it on the wire.
fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ENCODE).to_string()
}

/// The query string of unencoded pairs, each name and value URI-encoded.
fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(utf8_percent_encode(k, QUERY_ENCODE));
        out.push('=');
        out.extend(utf8_percent_encode(v, QUERY_ENCODE));
    }
    out
}

/// Makes a request read the region's own data only ([`meridian_api::NO_PROXY`]), for
/// `customize().mutate_request`: a wait for a replica must not count a read the target
/// proxies to the source.
pub fn own_copy_only(req: &mut aws_sdk_s3::config::http::HttpRequest) {
    req.headers_mut().insert(meridian_api::NO_PROXY, "1");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.into(),
            ca_file: None,
            access_key: "ak".into(),
            secret_key: "sk".into(),
            region: "us-east-1".into(),
            bucket: "bench".into(),
            max_idle_connections: 4,
        }
    }

    #[tokio::test]
    async fn http_endpoints_are_accepted_with_host_and_path_prefix() {
        let client = S3Client::new(&config("http://127.0.0.1:9000/s3/")).unwrap();
        assert_eq!(client.host, "127.0.0.1:9000");
        assert_eq!(client.base_uri, "http://127.0.0.1:9000/s3");
    }

    #[tokio::test]
    async fn https_endpoints_are_taken_and_garbage_refused_with_a_reason() {
        let https = S3Client::new(&config("https://s3.amazonaws.com")).unwrap();
        assert_eq!(https.base_uri, "https://s3.amazonaws.com");
        let missing_ca = S3Client::new(&ClientConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..config("https://127.0.0.1:9000")
        })
        .err()
        .unwrap();
        assert!(
            missing_ca.to_string().contains("/nonexistent/ca.pem"),
            "{missing_ca}"
        );
        assert!(S3Client::new(&config("ftp://127.0.0.1:9000")).is_err());
        assert!(S3Client::new(&config("not a url")).is_err());
        assert!(S3Client::new(&config("127.0.0.1:9000")).is_err());
    }

    #[tokio::test]
    async fn requests_are_signed_for_s3_with_unsigned_payloads() {
        let client = S3Client::new(&config("http://127.0.0.1:9000")).unwrap();
        let req = client
            .signed_request(
                Method::GET,
                "dir/a b+c",
                &[("partNumber", "3"), ("uploadId", "a/b+c=")],
                Some("bytes=0-9"),
                PayloadBody::empty(),
            )
            .unwrap();
        assert_eq!(
            req.uri().to_string(),
            "http://127.0.0.1:9000/bench/dir/a%20b%2Bc?partNumber=3&uploadId=a%2Fb%2Bc%3D"
        );
        let header = |name: &str| req.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-amz-content-sha256"), "UNSIGNED-PAYLOAD");
        assert_eq!(header("range"), "bytes=0-9");
        assert_eq!(header("x-amz-date").len(), 16);
        let auth = header("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=ak/"),
            "{auth}"
        );
        assert!(
            auth.contains(
                "/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );
    }
}
