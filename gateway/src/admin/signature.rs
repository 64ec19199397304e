//! Who is calling an admin endpoint: the request's SigV4 header signature (as the aws CLI,
//! `curl --aws-sigv4` and `meridian replication ...` send it) is recomputed with the user's
//! secret using the SDK's own signer, and must match. Anything else is anonymous.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::Request;

use crate::auth::{Principal, Users};

/// How far a request's date may be from ours (as S3 allows).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a signed request was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unknown access key")]
    UnknownKey,
    #[error("the request date is missing or too far from the server's clock")]
    Skewed,
    #[error("the signature does not match")]
    Mismatch,
}

/// The parts of an `AWS4-HMAC-SHA256` Authorization header.
struct Authorization<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        let (k, v) = part.split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let (access_key, _date, region, service) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    Some(Authorization {
        access_key,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).ok()?))
}

/// The principal that signed `req`, `Ok(None)` for an unsigned request.
pub fn principal_of<B>(
    req: &Request<B>,
    users: &Users,
) -> Result<Option<Principal>, SignatureError> {
    let Some(header) = req.headers().get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let auth = header
        .to_str()
        .ok()
        .and_then(parse_authorization)
        .ok_or(SignatureError::Malformed)?;
    let (principal, secret) = users
        .credentials(auth.access_key)
        .ok_or(SignatureError::UnknownKey)?;
    let header_text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let date = header_text("x-amz-date")
        .and_then(parse_amz_date)
        .ok_or(SignatureError::Skewed)?;
    let now = SystemTime::now();
    let skew = now
        .duration_since(date)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(SignatureError::Skewed);
    }
    let mut signed: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        signed.push((name, header_text(name).ok_or(SignatureError::Malformed)?));
    }
    let host = header_text("host").unwrap_or_default();
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{host}{path_and_query}");
    let payload = header_text("x-amz-content-sha256").unwrap_or(EMPTY_SHA256);

    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.excluded_headers = Some(Vec::new());
    let identity =
        aws_credential_types::Credentials::new(auth.access_key, secret, None, None, "admin").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(date)
        .settings(settings)
        .build()
        .map_err(|_| SignatureError::Malformed)?
        .into();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &url,
        signed.iter().copied(),
        SignableBody::Precomputed(payload.to_owned()),
    )
    .map_err(|_| SignatureError::Malformed)?;
    let expected = sign(signable, &params).map_err(|_| SignatureError::Malformed)?;
    if constant_time_eq(expected.signature().as_bytes(), auth.signature.as_bytes()) {
        Ok(Some(principal))
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEV_ROOT_PASSWORD, DEV_ROOT_USER};

    /// A request signed the way clients sign it, with the SDK's signer.
    fn signed(method: &str, path: &str, key: &str, secret: &str, at: SystemTime) -> Request<()> {
        let url = format!("http://127.0.0.1:9000{path}");
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        let identity = aws_credential_types::Credentials::new(key, secret, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(at)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers = [("host", "127.0.0.1:9000")];
        let signable =
            SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(b""))
                .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:9000")
            .body(())
            .unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req
    }

    #[test]
    fn a_correctly_signed_request_names_its_principal() {
        let users = Users::from_config(&Config::default());
        let req = signed(
            "POST",
            "/_meridian/replication/pause?peer=west",
            DEV_ROOT_USER,
            DEV_ROOT_PASSWORD,
            SystemTime::now(),
        );
        let p = principal_of(&req, &users).unwrap().unwrap();
        assert!(p.is_root);
    }

    #[test]
    fn wrong_secrets_stale_dates_and_unsigned_requests_are_not_principals() {
        let users = Users::from_config(&Config::default());
        let now = SystemTime::now();
        let wrong = signed(
            "GET",
            "/_meridian/metrics",
            DEV_ROOT_USER,
            "not-the-secret",
            now,
        );
        assert_eq!(
            principal_of(&wrong, &users).unwrap_err(),
            SignatureError::Mismatch
        );
        let old = signed(
            "GET",
            "/_meridian/metrics",
            DEV_ROOT_USER,
            DEV_ROOT_PASSWORD,
            now - Duration::from_secs(3600),
        );
        assert_eq!(
            principal_of(&old, &users).unwrap_err(),
            SignatureError::Skewed
        );
        let stranger = signed("GET", "/_meridian/metrics", "nobody", "x", now);
        assert_eq!(
            principal_of(&stranger, &users).unwrap_err(),
            SignatureError::UnknownKey
        );
        let mut tampered = signed(
            "GET",
            "/_meridian/metrics",
            DEV_ROOT_USER,
            DEV_ROOT_PASSWORD,
            now,
        );
        *tampered.uri_mut() = "/_meridian/replication/status".parse().unwrap();
        assert_eq!(
            principal_of(&tampered, &users).unwrap_err(),
            SignatureError::Mismatch
        );
        let unsigned = Request::builder()
            .uri("/_meridian/metrics")
            .body(())
            .unwrap();
        assert!(principal_of(&unsigned, &users).unwrap().is_none());
    }
}
