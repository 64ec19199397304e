//! The grace period of a rotated key: its old secret is still accepted for a while.
//!
//! s3s asks the user table for one secret per access key ([`s3s::auth::S3Auth`]), so the
//! choice between the two is made before s3s sees the request: when the signing key has an
//! old secret still in grace, the request's SigV4 signature (header or presigned URL) is
//! computed again with the old secret (by `aws-sigv4`, over the headers the request says it
//! signed); if it matches, the request runs in a task-local scope that makes the table answer
//! with the old secret, and s3s verifies the signature, and any chunk signatures of the body,
//! as usual. Keys not in grace cost a lookup of their access key and nothing else.

use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

use crate::auth::Users;

tokio::task_local! {
    static PREVIOUS: bool;
}

/// Inside [`with_previous`]: the request was signed with its key's previous secret.
pub fn signed_with_previous() -> bool {
    PREVIOUS.try_with(|v| *v).unwrap_or(false)
}

/// Runs `f` (the S3 service's handling of one request) knowing which secret signed it.
pub async fn with_previous<F: Future>(previous: bool, f: F) -> F::Output {
    PREVIOUS.scope(previous, f).await
}

/// What a SigV4 request says about its signature.
struct Claimed<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
    date: SystemTime,
    /// Presigned: the query's X-Amz-Expires.
    expires: Option<Duration>,
}

/// Whether `req` is signed with the previous secret of its key, in its grace period.
pub fn signed_by_previous_secret<B>(req: &http::Request<B>, users: &Users) -> bool {
    if !users.any_in_grace() {
        return false;
    }
    let query: Vec<(String, String)> = crate::query::pairs(req.uri().query());
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some((access_key, signature)) = claimed_v2(authorization, &query) {
        let Some(previous) = users.previous_secret(&access_key) else {
            return false;
        };
        return same(&signature_v2(req, &query, &previous), &signature);
    }
    let Some(claimed) = claimed(authorization, &query, req.headers()) else {
        return false;
    };
    let Some(previous) = users.previous_secret(claimed.access_key) else {
        return false;
    };
    signature_with(req, &claimed, &previous).is_some_and(|s| same(&s, claimed.signature))
}

/// botocore's SigV2 signs a path-style bucket request (`/bucket?...`) as `/bucket/`, which
/// AWS accepts, and s3s 0.14 checks it against the path as sent. When a SigV2 header
/// signature matches only the path with the slash, the path gets the slash (the same bucket
/// request to s3s), so s3s finds the signature the client made. Only SigV2 requests to a
/// bucket path without a trailing slash cost the extra HMAC.
pub fn add_slash_signed_by_sigv2<B>(req: &mut http::Request<B>, users: &Users) {
    let path = req.uri().path();
    let bucket_only = path.len() > 1 && !path[1..].contains('/');
    if !bucket_only {
        return;
    }
    let Some((access_key, signature)) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("AWS "))
        .and_then(|v2| v2.split_once(':'))
        .map(|(k, s)| (k.to_owned(), s.to_owned()))
    else {
        return;
    };
    let query: Vec<(String, String)> = crate::query::pairs(req.uri().query());
    let as_sent = users
        .secrets(&access_key)
        .iter()
        .any(|secret| same(&signature_v2(req, &query, secret), &signature));
    if as_sent {
        return;
    }
    let slashed = format!("{path}/");
    let with_slash = users.secrets(&access_key).iter().any(|secret| {
        same(
            &signature_v2_of_path(req, &query, secret, &slashed),
            &signature,
        )
    });
    if !with_slash {
        return;
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{slashed}?{q}"),
        None => slashed,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// SigV2 (`Authorization: AWS KEY:SIG`, or a query with `AWSAccessKeyId` and `Signature`:
/// boto3's default presigned URLs): the access key and signature.
fn claimed_v2(authorization: Option<&str>, query: &[(String, String)]) -> Option<(String, String)> {
    if let Some(v2) = authorization.and_then(|a| a.strip_prefix("AWS ")) {
        let (key, sig) = v2.split_once(':')?;
        return Some((key.to_owned(), sig.to_owned()));
    }
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Some((q("AWSAccessKeyId")?, q("Signature")?))
}

/// The subresources SigV2 signs, in its order.
const V2_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The SigV2 signature of a path-style request with `secret`.
fn signature_v2<B>(req: &http::Request<B>, query: &[(String, String)], secret: &str) -> String {
    signature_v2_of_path(req, query, secret, req.uri().path())
}

/// The SigV2 signature of a path-style request with `secret`, were its path `path`.
fn signature_v2_of_path<B>(
    req: &http::Request<B>,
    query: &[(String, String)],
    secret: &str,
    path: &str,
) -> String {
    use base64::Engine as _;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let presigned = !req.headers().contains_key(http::header::AUTHORIZATION);
    let mut text = format!(
        "{}\n{}\n{}\n",
        req.method(),
        header("content-md5"),
        header("content-type")
    );
    if presigned {
        text.push_str(q("Expires").unwrap_or(""));
    } else if !req.headers().contains_key("x-amz-date") {
        text.push_str(header("date"));
    }
    text.push('\n');
    let mut amz: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in req.headers() {
        let name = name.as_str();
        if !name.starts_with("x-amz-") {
            continue;
        }
        let value = value.to_str().unwrap_or("").trim();
        match amz.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => amz.push((name.to_owned(), vec![value])),
        }
    }
    amz.sort();
    for (name, values) in amz {
        text.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    text.push_str(path);
    let mut first = true;
    for sub in V2_SUBRESOURCES {
        if let Some(v) = q(sub) {
            text.push(if first { '?' } else { '&' });
            first = false;
            text.push_str(sub);
            if !v.is_empty() {
                text.push('=');
                text.push_str(v);
            }
        }
    }
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, text.as_bytes()))
}

fn claimed<'a>(
    authorization: Option<&'a str>,
    query: &'a [(String, String)],
    headers: &'a http::HeaderMap,
) -> Option<Claimed<'a>> {
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (credential, signed_headers, signature, date, expires) =
        match authorization.and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 ")) {
            Some(fields) => {
                let field = |name: &str| {
                    fields
                        .split(',')
                        .map(str::trim)
                        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                };
                let date = headers.get("x-amz-date")?.to_str().ok()?;
                (
                    field("Credential")?,
                    field("SignedHeaders")?,
                    field("Signature")?,
                    date,
                    None,
                )
            }
            None => {
                if q("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
                    return None;
                }
                let expires = Duration::from_secs(q("X-Amz-Expires")?.parse().ok()?);
                (
                    q("X-Amz-Credential")?,
                    q("X-Amz-SignedHeaders")?,
                    q("X-Amz-Signature")?,
                    q("X-Amz-Date")?,
                    Some(expires),
                )
            }
        };
    let mut scope = credential.split('/');
    let (access_key, _day, region, service) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    let date = time::PrimitiveDateTime::parse(
        date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .ok()?
    .assume_utc();
    Some(Claimed {
        access_key,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
        date: date.into(),
        expires,
    })
}

/// The signature `req` would carry if it had been signed with `secret`.
fn signature_with<B>(
    req: &http::Request<B>,
    claimed: &Claimed<'_>,
    secret: &str,
) -> Option<String> {
    let headers: Vec<(&str, &str)> = claimed
        .signed_headers
        .iter()
        .filter(|name| claimed.expires.is_some() || !matches!(**name, "x-amz-date"))
        .filter_map(|name| Some((*name, req.headers().get(*name)?.to_str().ok()?)))
        .collect();
    let payload = req
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok());
    // The URL as signed: the path as sent, the query as sent without the presigned fields
    // (the signer decodes and canonicalizes the rest, and adds those again from the same
    // values).
    let mut url = format!("http://signed{}", req.uri().path());
    let kept: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && (claimed.expires.is_none() || !p.starts_with("X-Amz-")))
        .collect();
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    settings.payload_checksum_kind = match claimed.expires {
        None if claimed.signed_headers.contains(&"x-amz-content-sha256") => {
            PayloadChecksumKind::XAmzSha256
        }
        _ => PayloadChecksumKind::NoHeader,
    };
    if let Some(expires) = claimed.expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }
    let body = match (claimed.expires, payload) {
        (None, Some(hash)) => SignableBody::Precomputed(hash.to_owned()),
        _ => SignableBody::UnsignedPayload,
    };
    let identity = Credentials::new(claimed.access_key, secret, None, None, "grace").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(claimed.region)
        .name(claimed.service)
        .time(claimed.date)
        .settings(settings)
        .build()
        .ok()?;
    let signable =
        SignableRequest::new(req.method().as_str(), url, headers.into_iter(), body).ok()?;
    let (_, signature) = sign(signable, &params.into()).ok()?.into_parts();
    Some(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request signed by aws-sigv4 (as the SDKs sign) verifies with the same secret and
    /// not with another, for headers and for presigned URLs.
    #[test]
    fn the_signature_is_recomputed_exactly() {
        for presigned in [false, true] {
            let mut settings = SigningSettings::default();
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            if presigned {
                settings.signature_location = SignatureLocation::QueryParams;
                settings.expires_in = Some(Duration::from_secs(900));
                settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
            }
            let identity = Credentials::new("MKTEST", "old-secret", None, None, "t").into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("s3")
                .time(SystemTime::now())
                .settings(settings)
                .build()
                .unwrap();
            let url = "http://127.0.0.1:9000/bucket/a%20key.txt?versionId=abc&x-id=GetObject";
            let signable = SignableRequest::new(
                "GET",
                url,
                [("host", "127.0.0.1:9000"), ("range", "bytes=0-9")].into_iter(),
                SignableBody::UnsignedPayload,
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params.into()).unwrap().into_parts();
            let mut req = http::Request::builder()
                .method("GET")
                .uri(url)
                .header("host", "127.0.0.1:9000")
                .header("range", "bytes=0-9")
                .body(())
                .unwrap();
            instructions.apply_to_request_http1x(&mut req);
            let query = crate::query::pairs(req.uri().query());
            let authorization = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let claimed = claimed(authorization.as_deref(), &query, req.headers()).unwrap();
            assert_eq!(claimed.access_key, "MKTEST");
            assert_eq!(claimed.expires.is_some(), presigned);
            let right = signature_with(&req, &claimed, "old-secret").unwrap();
            assert_eq!(right, claimed.signature, "presigned: {presigned}");
            let wrong = signature_with(&req, &claimed, "new-secret").unwrap();
            assert_ne!(wrong, claimed.signature);
        }
    }
}
