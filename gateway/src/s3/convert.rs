//! Translations between the metadata store's records and s3s's wire types: timestamps,
//! ETags, user metadata, tags and checksums.

use std::collections::HashMap;

use meridian_metadata::{
    Checksum, ChecksumAlgorithm, ChecksumType, Nanos, ObjectHeaders, VersionRecord,
};
use s3s::dto::{self, Timestamp};
use s3s::{s3_error, S3Result};
use time::OffsetDateTime;

pub fn timestamp(nanos: Nanos) -> Timestamp {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

pub fn nanos(t: &Timestamp) -> Nanos {
    let t: OffsetDateTime = t.clone().into();
    t.unix_timestamp_nanos() as Nanos
}

pub fn now_nanos() -> Nanos {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as Nanos
}

/// HTTP dates have second precision: conditions compare at that precision, as S3 does.
pub fn whole_seconds(nanos: Nanos) -> i64 {
    nanos.div_euclid(1_000_000_000)
}

pub fn etag(value: &str) -> dto::ETag {
    dto::ETag::Strong(value.to_owned())
}

pub fn user_metadata(pairs: &[(String, String)]) -> Option<dto::Metadata> {
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().cloned().collect::<HashMap<_, _>>())
}

/// User metadata from a request, sorted so records compare and replicate deterministically.
pub fn metadata_pairs(meta: Option<dto::Metadata>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = meta.unwrap_or_default().into_iter().collect();
    pairs.sort();
    pairs
}

/// The stored headers of a write, from the fields every object-creating input has (the
/// macro takes PutObjectInput, CreateMultipartUploadInput or CopyObjectInput).
macro_rules! headers_of {
    ($input:expr) => {{
        let i = $input;
        $crate::s3::convert::headers_from(
            i.content_type.as_ref().map(|m| m.to_string()),
            i.content_encoding.clone(),
            i.content_disposition.clone(),
            i.content_language.clone(),
            i.cache_control.clone(),
            i.expires.as_ref(),
            i.website_redirect_location.clone(),
        )
    }};
}
pub(crate) use headers_of;

pub fn headers_from(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    website_redirect: Option<String>,
) -> S3Result<ObjectHeaders> {
    if let Some(r) = &website_redirect {
        let prefixed = r.starts_with('/') || r.starts_with("http://") || r.starts_with("https://");
        if !prefixed || r.len() > 2048 {
            return Err(s3s::s3_error!(
                InvalidArgument,
                "The website redirect location must have a prefix of 'http://' or 'https://' or '/' and be at most 2 KB."
            ));
        }
    }
    Ok(ObjectHeaders {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.map(format_http_date),
        website_redirect,
    })
}

pub fn format_http_date(t: &Timestamp) -> String {
    let mut buf = Vec::new();
    t.format(dto::TimestampFormat::HttpDate, &mut buf)
        .expect("formatting into a Vec cannot fail");
    String::from_utf8(buf).expect("HTTP dates are ASCII")
}

pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(dto::TimestampFormat::HttpDate, s).ok()
}

/// Tags as sent in the `x-amz-tagging` header: a URL-encoded query string.
pub fn parse_tagging_header(value: &str) -> S3Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for pair in value.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| s3_error!(InvalidArgument, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."))
        };
        tags.push((decode(k)?, decode(v)?));
    }
    validate_tags(&tags)?;
    Ok(tags)
}

/// S3's tag rules: at most 10 per object, unique keys of 1..=128 characters, values <= 256.
pub fn validate_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > 10 {
        return Err(super::errors::custom_error(
            "BadRequest",
            http::StatusCode::BAD_REQUEST,
            "Object tags cannot be greater than 10",
        ));
    }
    validate_each_tag(tags)
}

/// S3's rules for each tag of a set, whatever their number: unique keys of 1..=128
/// characters, values of at most 256.
pub fn validate_each_tag(tags: &[(String, String)]) -> S3Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid"
            ));
        }
        if v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid"
            ));
        }
        if !seen.insert(k) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(())
}

pub fn dto_tags(tags: &[(String, String)]) -> Vec<dto::Tag> {
    tags.iter()
        .map(|(k, v)| dto::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

pub fn dto_algorithm(a: &ChecksumAlgorithm) -> dto::ChecksumAlgorithm {
    dto::ChecksumAlgorithm::from_static(match a {
        ChecksumAlgorithm::Crc32 => dto::ChecksumAlgorithm::CRC32,
        ChecksumAlgorithm::Crc32c => dto::ChecksumAlgorithm::CRC32C,
        ChecksumAlgorithm::Crc64Nvme => dto::ChecksumAlgorithm::CRC64NVME,
        ChecksumAlgorithm::Sha1 => dto::ChecksumAlgorithm::SHA1,
        ChecksumAlgorithm::Sha256 => dto::ChecksumAlgorithm::SHA256,
    })
}

pub fn dto_checksum_type(t: ChecksumType) -> dto::ChecksumType {
    dto::ChecksumType::from_static(match t {
        ChecksumType::FullObject => dto::ChecksumType::FULL_OBJECT,
        ChecksumType::Composite => dto::ChecksumType::COMPOSITE,
    })
}

pub fn parse_checksum_type(t: &dto::ChecksumType) -> S3Result<ChecksumType> {
    match t.as_str() {
        dto::ChecksumType::FULL_OBJECT => Ok(ChecksumType::FullObject),
        dto::ChecksumType::COMPOSITE => Ok(ChecksumType::Composite),
        other => Err(s3_error!(
            InvalidRequest,
            "Value for x-amz-checksum-type header is invalid: {other}"
        )),
    }
}

pub fn parse_dto_algorithm(a: &dto::ChecksumAlgorithm) -> S3Result<ChecksumAlgorithm> {
    meridian_store::checksum::parse_algorithm(a.as_str()).ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "Value for x-amz-checksum-algorithm header is invalid."
        )
    })
}

/// The five `x-amz-checksum-*` response fields, with only the stored algorithm set.
#[derive(Default)]
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub checksum_type: Option<dto::ChecksumType>,
}

impl ChecksumFields {
    pub fn of(checksum: Option<&Checksum>) -> ChecksumFields {
        let mut f = ChecksumFields::default();
        if let Some(c) = checksum {
            let v = Some(c.value.clone());
            match c.algorithm {
                ChecksumAlgorithm::Crc32 => f.crc32 = v,
                ChecksumAlgorithm::Crc32c => f.crc32c = v,
                ChecksumAlgorithm::Crc64Nvme => f.crc64nvme = v,
                ChecksumAlgorithm::Sha1 => f.sha1 = v,
                ChecksumAlgorithm::Sha256 => f.sha256 = v,
            }
            f.checksum_type = Some(dto_checksum_type(c.kind));
        }
        f
    }
}

/// An output struct with its six checksum fields taken from a [`ChecksumFields`] (the S3
/// outputs that report a stored checksum share the field names), the fields given, and the
/// rest default.
macro_rules! with_checksum_fields {
    ($ty:ident { $($field:ident: $value:expr),* $(,)? }, $fields:expr) => {{
        let f: $crate::s3::convert::ChecksumFields = $fields;
        // Some outputs (CopyObjectResult) have no fields beyond the ones named.
        #[allow(clippy::needless_update)]
        let output = $ty {
            $($field: $value,)*
            checksum_crc32: f.crc32,
            checksum_crc32c: f.crc32c,
            checksum_crc64nvme: f.crc64nvme,
            checksum_sha1: f.sha1,
            checksum_sha256: f.sha256,
            checksum_type: f.checksum_type,
            ..Default::default()
        };
        output
    }};
}
pub(crate) use with_checksum_fields;

/// `x-amz-version-id` is only reported by buckets that have ever had versioning.
pub fn reported_version_id(record: &VersionRecord, versioned_bucket: bool) -> Option<String> {
    versioned_bucket.then(|| record.version_id.clone())
}
