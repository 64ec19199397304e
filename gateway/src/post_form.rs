//! Browser form uploads (POST Object) before s3s sees them.
//!
//! s3s 0.14 parses the form itself, checks its policy and hands the fields on as a PutObject,
//! but it reads only the header names of the fields (`x-amz-acl`, `x-amz-tagging`), not the
//! form names S3 documents (`acl`, and `tagging` holding a `<Tagging>` document), and it
//! checks the policy against the key as sent, where S3 first replaces `${filename}` with the
//! name of the uploaded file. So the form's fields — all of which come before the file, as S3
//! requires — are read here (the file itself streams on, untouched): `${filename}` is
//! replaced in the key, and `acl` and `tagging` travel to [`MeridianS3`]'s PostObject in
//! internal headers that a client's own headers of those names can never set.
//!
//! [`MeridianS3`]: crate::s3::MeridianS3

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request};
use s3s::Body;

/// The form's `acl` field, for PostObject.
pub const ACL_HEADER: &str = "x-meridian-post-acl";
/// The form's `tagging` field (a `<Tagging>` document), for PostObject.
pub const TAGGING_HEADER: &str = "x-meridian-post-tagging";

/// How much of a form is read looking for its file part. Browser forms carry a few KiB of
/// fields; a form with more goes on to s3s unchanged (its own limit is 20 MiB). Each new
/// piece of the head is parsed from the start, so this also bounds that work.
const MAX_FIELDS: usize = 1024 * 1024;

/// The form fields of a POST Object request read, `${filename}` replaced in its key, and its
/// `acl` and `tagging` fields put in [`ACL_HEADER`] and [`TAGGING_HEADER`]. Any other
/// request is returned as it came (minus those two headers, which only this sets). A form
/// with a policy but no signature is refused here (400, as S3 does; s3s would first check
/// the unsigned policy's conditions and answer 403).
pub async fn prepare(
    req: Request<Body>,
    request_id: &str,
) -> Result<Request<Body>, http::Response<Body>> {
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(ACL_HEADER);
    parts.headers.remove(TAGGING_HEADER);
    let Some(boundary) = form_boundary(&parts) else {
        return Ok(Request::from_parts(parts, body));
    };
    let delimiter = format!("--{boundary}").into_bytes();
    let (head, rest) = read_fields(body, &delimiter).await;
    let Some(form) = Form::parse(&head, &delimiter) else {
        return Ok(Request::from_parts(parts, Prefixed::body(head, rest)));
    };
    let signed = ["signature", "x-amz-signature"]
        .iter()
        .any(|f| form.field(&head, f).is_some());
    if let Some(policy) = form.field(&head, "policy") {
        if !expiration_is_iso8601(policy) {
            return Err(crate::request::xml_error(
                http::StatusCode::BAD_REQUEST,
                "InvalidPolicyDocument",
                "Invalid Policy: Invalid 'expiration' value: an ISO 8601 UTC date is required",
                request_id,
            ));
        }
    }
    if form.field(&head, "policy").is_some() && !signed && form.file_name.is_some() {
        return Err(crate::request::xml_error(
            http::StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Bucket POST must contain a field named 'Signature' (or 'X-Amz-Signature') with its policy",
            request_id,
        ));
    }
    for (header, field) in [(ACL_HEADER, "acl"), (TAGGING_HEADER, "tagging")] {
        if let Some(v) = form
            .field(&head, field)
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            parts.headers.insert(header, v);
        }
    }
    let head = match form.key_with_filename(&head) {
        Some(new_head) => {
            let grown = new_head.len() as i64 - head.len() as i64;
            let length = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(length) = length {
                parts.headers.insert(
                    http::header::CONTENT_LENGTH,
                    HeaderValue::from((length + grown).max(0)),
                );
            }
            new_head
        }
        None => head,
    };
    Ok(Request::from_parts(parts, Prefixed::body(head, rest)))
}

/// The key a POST Object form names (`${filename}` replaced, as S3 does), with the request
/// made whole again: where a region of several nodes serves it. `None` for any other
/// request, or a form whose key is not among its fields before the file.
pub async fn form_key(req: Request<Body>) -> (Request<Body>, Option<String>) {
    let (parts, body) = req.into_parts();
    let Some(boundary) = form_boundary(&parts) else {
        return (Request::from_parts(parts, body), None);
    };
    let delimiter = format!("--{boundary}").into_bytes();
    let (head, rest) = read_fields(body, &delimiter).await;
    let key = Form::parse(&head, &delimiter).and_then(|form| form.key(&head));
    (Request::from_parts(parts, Prefixed::body(head, rest)), key)
}

/// Whether `req` is a POST Object form upload.
pub fn is_form<B>(req: &Request<B>) -> bool {
    boundary_of(req.method(), req.uri(), req.headers()).is_some()
}

/// Whether a base64 policy's `expiration` is an ISO 8601 UTC date (`2026-12-01T12:00:00Z`,
/// with or without fractions), as S3 requires; s3s 0.14 takes other forms too. A policy
/// that does not decode is left to s3s, which refuses it.
fn expiration_is_iso8601(policy: &[u8]) -> bool {
    use base64::Engine as _;
    let Ok(json) = base64::engine::general_purpose::STANDARD.decode(policy.trim_ascii()) else {
        return true;
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return true;
    };
    let Some(expiration) = doc.get("expiration").and_then(|e| e.as_str()) else {
        return true;
    };
    expiration.ends_with('Z')
        && time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .is_ok()
}

/// The boundary of a `multipart/form-data` POST to a bucket (`/bucket`, no query).
fn form_boundary(parts: &http::request::Parts) -> Option<String> {
    boundary_of(&parts.method, &parts.uri, &parts.headers)
}

fn boundary_of(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<String> {
    let path = uri.path();
    let bucket_only = path.len() > 1 && !path[1..].trim_end_matches('/').contains('/');
    if method != http::Method::POST || !bucket_only || uri.query().is_some() {
        return None;
    }
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// Reads the body until the headers of its `file` part have arrived (or the form ends, or
/// [`MAX_FIELDS`] is passed): what was read, and the rest of the body.
async fn read_fields(mut body: Body, delimiter: &[u8]) -> (Bytes, Body) {
    use http_body_util::BodyExt as _;
    let mut head = BytesMut::new();
    while head.len() <= MAX_FIELDS && !has_file_headers(&head, delimiter) {
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => head.extend_from_slice(&data),
                Err(_) => continue,
            },
            // An error is the rest's to report: s3s reads on and answers it.
            Some(Err(_)) | None => break,
        }
    }
    (head.freeze(), body)
}

/// Whether `head` holds the complete headers of a part named `file`.
fn has_file_headers(head: &[u8], delimiter: &[u8]) -> bool {
    Form::parse(head, delimiter).is_some_and(|f| f.file_name.is_some() || f.ended)
}

/// The fields of a form's head, as byte ranges into it.
#[derive(Debug, Default)]
struct Form {
    /// (lower-case name, value range)
    fields: Vec<(String, std::ops::Range<usize>)>,
    /// The `filename` of the `file` part, once its headers were read.
    file_name: Option<String>,
    /// The closing delimiter was read (a form without a file).
    ended: bool,
}

impl Form {
    /// The fields complete in `head`; `None` when it does not start like a form.
    fn parse(head: &[u8], delimiter: &[u8]) -> Option<Form> {
        let mut form = Form::default();
        let mut at = find(head, delimiter, 0)? + delimiter.len();
        loop {
            if head[at..].starts_with(b"--") {
                form.ended = true;
                return Some(form);
            }
            let Some(headers_end) = find(head, b"\r\n\r\n", at) else {
                return Some(form);
            };
            let headers = std::str::from_utf8(&head[at..headers_end]).ok()?;
            let (name, file_name) = disposition(headers)?;
            let data = headers_end + 4;
            if name == "file" {
                form.file_name = Some(file_name.unwrap_or_default());
                return Some(form);
            }
            let mut end_marker = b"\r\n".to_vec();
            end_marker.extend_from_slice(delimiter);
            let Some(data_end) = find(head, &end_marker, data) else {
                return Some(form);
            };
            form.fields.push((name, data..data_end));
            at = data_end + end_marker.len();
        }
    }

    fn field<'h>(&self, head: &'h [u8], name: &str) -> Option<&'h [u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| &head[r.clone()])
    }

    /// The key the form names, `${filename}` replaced by the file's name.
    fn key(&self, head: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(self.field(head, "key")?).ok()?;
        match self.file_name.as_deref() {
            // Browsers send a bare name; some send a path, of which S3 keeps the last part.
            Some(file_name) if key.contains("${filename}") => {
                let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
                Some(key.replace("${filename}", base))
            }
            _ => Some(key.to_owned()),
        }
    }

    /// `head` with `${filename}` in the key replaced by the file's name, as S3 does; `None`
    /// when there is nothing to replace.
    fn key_with_filename(&self, head: &[u8]) -> Option<Bytes> {
        self.file_name.as_deref()?;
        let (_, range) = self.fields.iter().find(|(n, _)| n == "key")?;
        let key = std::str::from_utf8(&head[range.clone()]).ok()?;
        if !key.contains("${filename}") {
            return None;
        }
        let new_key = self.key(head)?;
        let mut out = BytesMut::with_capacity(head.len() + new_key.len());
        out.extend_from_slice(&head[..range.start]);
        out.extend_from_slice(new_key.as_bytes());
        out.extend_from_slice(&head[range.end..]);
        Some(out.freeze())
    }
}

/// The `name` (lower case) and `filename` of a part's Content-Disposition.
fn disposition(headers: &str) -> Option<(String, Option<String>)> {
    let line = headers.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut name = None;
    let mut file_name = None;
    for param in value.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "name" => name = Some(v.to_ascii_lowercase()),
            "filename" => file_name = Some(v),
            _ => {}
        }
    }
    Some((name?, file_name))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A body whose first bytes were read already: those, then the rest.
struct Prefixed {
    head: Option<Bytes>,
    rest: Body,
}

impl Prefixed {
    fn body(head: Bytes, rest: Body) -> Body {
        Body::http_body_unsync(Prefixed {
            head: (!head.is_empty()).then_some(head),
            rest,
        })
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/${filename}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"ACL\"\r\n\r\npublic-read\r\n--XyZ\r\nContent-Disposition: form-data; name=\"tagging\"\r\n\r\n<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\data\\\\cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEGDATA\r\n--XyZ--\r\n";

    #[test]
    fn the_fields_before_the_file_are_read_and_the_key_gets_the_file_name() {
        let form = Form::parse(FORM, b"--XyZ").unwrap();
        assert_eq!(form.field(FORM, "acl"), Some(&b"public-read"[..]));
        assert!(form
            .field(FORM, "tagging")
            .unwrap()
            .starts_with(b"<Tagging>"));
        assert_eq!(form.file_name.as_deref(), Some("C:\\\\data\\\\cat.jpg"));
        let head = form.key_with_filename(FORM).unwrap();
        let again = Form::parse(&head, b"--XyZ").unwrap();
        assert_eq!(again.field(&head, "key"), Some(&b"uploads/cat.jpg"[..]));
        assert!(
            head.ends_with(b"JPEGDATA\r\n--XyZ--\r\n"),
            "the rest is kept"
        );
    }

    #[test]
    fn a_policy_expires_at_an_iso8601_utc_date() {
        use base64::Engine as _;
        let policy = |expiration: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!(
                r#"{{"expiration": "{expiration}", "conditions": []}}"#
            ))
        };
        for good in ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000Z"] {
            assert!(expiration_is_iso8601(policy(good).as_bytes()), "{good}");
        }
        for bad in [
            "2030-01-01 00:00:00.000000+00:00",
            "2030-01-01T00:00:00+01:00",
            "soon",
        ] {
            assert!(!expiration_is_iso8601(policy(bad).as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_form_cut_short_has_only_its_complete_fields() {
        let cut = &FORM[..60];
        let form = Form::parse(cut, b"--XyZ").unwrap();
        assert!(form.fields.is_empty() && form.file_name.is_none() && !form.ended);
        assert!(!has_file_headers(cut, b"--XyZ"));
        assert!(has_file_headers(FORM, b"--XyZ"));
        assert!(Form::parse(b"not a form", b"--XyZ").is_none());
    }

    #[tokio::test]
    async fn the_request_gets_the_fields_as_headers_and_keeps_its_length() {
        let req = Request::post("/bucket")
            .header(
                http::header::CONTENT_TYPE,
                "multipart/form-data; boundary=XyZ",
            )
            .header(http::header::CONTENT_LENGTH, FORM.len())
            .header(ACL_HEADER, "spoofed")
            .body(Body::from(Bytes::from_static(FORM)))
            .unwrap();
        let req = prepare(req, "id").await.unwrap();
        assert_eq!(req.headers()[ACL_HEADER], "public-read");
        assert!(req.headers().contains_key(TAGGING_HEADER));
        let (parts, body) = req.into_parts();
        use http_body_util::BodyExt as _;
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            parts.headers[http::header::CONTENT_LENGTH],
            bytes.len().to_string().as_str()
        );
        assert!(bytes.windows(15).any(|w| w == b"uploads/cat.jpg"));

        let plain = Request::put("/bucket/key")
            .header(ACL_HEADER, "spoofed")
            .body(Body::from(Bytes::from_static(b"x")))
            .unwrap();
        let plain = prepare(plain, "id").await.unwrap();
        assert!(!plain.headers().contains_key(ACL_HEADER));
    }
}
