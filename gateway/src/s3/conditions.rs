//! HTTP conditional requests as S3 evaluates them: If-Match / If-None-Match /
//! If-(Un)Modified-Since on reads and copy sources, and conditional writes
//! (If-None-Match: * to create only, If-Match to replace only a known version).

use meridian_metadata::{Precondition, VersionRecord};
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{s3_error, S3Result};

use super::convert::{format_http_date, nanos, timestamp, whole_seconds};
use crate::s3::errors::IntoS3;
use meridian_store::Store;

/// Read preconditions of GetObject/HeadObject (and, with `copy_source` set, the
/// `x-amz-copy-source-if-*` family, where every failure is 412).
pub struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl ReadConditions<'_> {
    /// S3's rules (RFC 9110 order): a true If-Match overrides a false If-Unmodified-Since, and a
    /// false If-None-Match overrides a true If-Modified-Since. GET/HEAD answer 304 for the
    /// "none match"/"modified since" failures; copy sources answer 412 for all of them.
    pub fn evaluate(&self, record: &VersionRecord, copy_source: bool) -> S3Result<()> {
        let mtime = whole_seconds(record.mtime);
        let failed = || {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        };
        let not_modified = || {
            if copy_source {
                return failed();
            }
            // A 304 still describes what the client has (RFC 9110 15.4.5).
            let mut headers = http::HeaderMap::new();
            let etag = format!("\"{}\"", record.etag);
            let modified = format_http_date(&timestamp(record.mtime));
            for (name, value) in [("etag", etag), ("last-modified", modified)] {
                if let Ok(v) = http::HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            let mut err = s3_error!(NotModified);
            err.set_headers(headers);
            err
        };

        match self.if_match {
            Some(cond) if !matches(cond, &record.etag) => return Err(failed()),
            Some(_) => {}
            None => {
                if let Some(t) = self.if_unmodified_since {
                    if mtime > whole_seconds(nanos(t)) {
                        return Err(failed());
                    }
                }
            }
        }
        match self.if_none_match {
            Some(cond) if matches(cond, &record.etag) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if let Some(t) = self.if_modified_since {
                    if mtime <= whole_seconds(nanos(t)) {
                        return Err(not_modified());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Conditional writes: `If-None-Match: *` succeeds only when no current object exists,
/// `If-None-Match: "etag"` only when the current object (if any) has another ETag (as RGW
/// and MinIO accept it); `If-Match: "etag"` only when the current object has that ETag (404
/// when there is none).
///
/// Checked here first, so a doomed upload is refused before its body is read, and returned
/// as a [`Precondition`] for the commit, which checks it again under the key lock: two racing
/// create-only writes cannot both win.
pub async fn check_write_preconditions(
    store: &Store,
    bucket: &str,
    key: &str,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<Precondition>> {
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(None);
    }
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let current = store
        .meta(move |m| m.get_version(&b, &k, None))
        .await
        .s3()?
        .filter(|r| !r.is_delete_marker);
    let failed = || {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    };
    let none_match = match if_none_match {
        None => None,
        Some(ETagCondition::ETag(etag)) => {
            let value = etag.value().to_owned();
            if current.as_ref().is_some_and(|c| c.etag == value) {
                return Err(failed());
            }
            Some(Precondition::NoneMatchEtag(value))
        }
        Some(_) if current.is_some() => return Err(failed()),
        Some(_) => Some(Precondition::NoneMatch),
    };
    let Some(cond) = if_match else {
        return Ok(none_match);
    };
    let Some(current) = current else {
        return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
    };
    if !matches(cond, &current.etag) {
        return Err(failed());
    }
    // `If-Match: *` only asks that something exists: pin what exists now.
    Ok(Some(Precondition::IfMatch(current.etag)))
}
