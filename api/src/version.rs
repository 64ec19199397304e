//! What a client can observe of one object version, and the one comparison of two of them.
//!
//! Replication promises that a replica is the source's version in every field a client can
//! see. The replicator's check after each transfer, `meridian drill verify --deep` and the
//! end-to-end tests all describe a version as an [`ObservedVersion`] and compare with
//! [`differences`], so a field added here is compared by all of them at once.

use std::collections::BTreeMap;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;

/// The content type S3 reports for an object stored without one.
pub const ABSENT_CONTENT_TYPE: &str = "binary/octet-stream";

/// One version as a client sees it through HEAD (with checksum mode on), a HEAD of part 1
/// and GetObjectTagging. A field a caller did not look at is `None` and is not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedVersion {
    pub version_id: Option<String>,
    pub size: Option<i64>,
    /// Without quotes.
    pub etag: Option<String>,
    /// Unix seconds (HTTP dates have no finer resolution).
    pub last_modified: Option<i64>,
    /// As reported: an object stored without a type reports [`ABSENT_CONTENT_TYPE`].
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// Unix seconds.
    pub expires: Option<i64>,
    pub website_redirect: Option<String>,
    /// `STANDARD` when the answer names none, as S3 does.
    pub storage_class: Option<String>,
    /// `x-amz-meta-*`, names in lower case.
    pub metadata: BTreeMap<String, String>,
    /// Algorithm name (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`) to value.
    pub checksums: BTreeMap<String, String>,
    pub checksum_type: Option<String>,
    pub object_lock_mode: Option<String>,
    pub object_lock_retain_until: Option<i64>,
    pub object_lock_legal_hold: Option<String>,
    pub server_side_encryption: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Parts of a multipart object (from a HEAD of part 1); `None` when not looked at.
    pub parts_count: Option<i32>,
    /// Sorted; `None` when not looked at.
    pub tags: Option<Vec<(String, String)>>,
}

/// How exactly a replica can follow its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fidelity {
    /// A Meridian peer keeps everything, identity included.
    Exact,
    /// A foreign S3 target makes its own version id and mtime, may report only some
    /// checksums, and keeps the ETag only when the object went in the same parts (`etag`).
    Foreign { etag: bool },
}

fn seconds(t: &aws_smithy_types::DateTime) -> i64 {
    t.secs()
}

/// An HTTP date as Unix seconds.
pub fn http_date_seconds(s: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::HttpDate)
        .ok()
        .map(|t| seconds(&t))
}

impl ObservedVersion {
    /// A version as a HEAD (with checksum mode on) describes it; `part1` is a HEAD of part 1,
    /// for the parts count, and `tags` the version's tag set, when the caller looked.
    pub fn from_head(
        h: &HeadObjectOutput,
        part1: Option<&HeadObjectOutput>,
        tags: Option<Vec<(String, String)>>,
    ) -> ObservedVersion {
        let checksums = [
            ("CRC32", h.checksum_crc32()),
            ("CRC32C", h.checksum_crc32_c()),
            ("CRC64NVME", h.checksum_crc64_nvme()),
            ("SHA1", h.checksum_sha1()),
            ("SHA256", h.checksum_sha256()),
        ]
        .into_iter()
        .filter_map(|(a, v)| Some((a.to_owned(), v?.to_owned())))
        .collect();
        ObservedVersion {
            version_id: h.version_id().map(str::to_owned),
            size: h.content_length(),
            etag: h.e_tag().map(|e| e.trim_matches('"').to_owned()),
            last_modified: h.last_modified().map(seconds),
            content_type: h.content_type().map(str::to_owned),
            content_encoding: h.content_encoding().map(str::to_owned),
            content_disposition: h.content_disposition().map(str::to_owned),
            content_language: h.content_language().map(str::to_owned),
            cache_control: h.cache_control().map(str::to_owned),
            expires: h.expires_string().and_then(http_date_seconds),
            website_redirect: h.website_redirect_location().map(str::to_owned),
            storage_class: Some(
                h.storage_class()
                    .map_or("STANDARD", |c| c.as_str())
                    .to_owned(),
            ),
            metadata: h
                .metadata()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            checksums,
            checksum_type: h.checksum_type().map(|t| t.as_str().to_owned()),
            object_lock_mode: h.object_lock_mode().map(|m| m.as_str().to_owned()),
            object_lock_retain_until: h.object_lock_retain_until_date().map(seconds),
            object_lock_legal_hold: h
                .object_lock_legal_hold_status()
                .map(|s| s.as_str().to_owned()),
            server_side_encryption: h.server_side_encryption().map(|s| s.as_str().to_owned()),
            sse_kms_key_id: h.ssekms_key_id().map(str::to_owned),
            parts_count: part1.and_then(HeadObjectOutput::parts_count),
            tags: tags.map(|mut t| {
                t.sort();
                t
            }),
        }
    }
}

/// Every field in which `replica` is not `source`, as readable lines (empty when the replica
/// is exact). Fields either side did not look at (`None` parts count or tags) are skipped.
pub fn differences(
    source: &ObservedVersion,
    replica: &ObservedVersion,
    fidelity: Fidelity,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: source {a}, replica {b}"));
        }
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let (exact, etag) = match fidelity {
        Fidelity::Exact => (true, true),
        Fidelity::Foreign { etag } => (false, etag),
    };
    let (s, r) = (source, replica);
    if exact {
        field("version id", show(&s.version_id), show(&r.version_id));
        field(
            "last modified",
            show(&s.last_modified),
            show(&r.last_modified),
        );
        field(
            "storage class",
            show(&s.storage_class),
            show(&r.storage_class),
        );
    }
    field("size", show(&s.size), show(&r.size));
    if etag {
        field("ETag", show(&s.etag), show(&r.etag));
    }
    field("Content-Type", show(&s.content_type), show(&r.content_type));
    field(
        "Content-Encoding",
        show(&s.content_encoding),
        show(&r.content_encoding),
    );
    field(
        "Content-Disposition",
        show(&s.content_disposition),
        show(&r.content_disposition),
    );
    field(
        "Content-Language",
        show(&s.content_language),
        show(&r.content_language),
    );
    field(
        "Cache-Control",
        show(&s.cache_control),
        show(&r.cache_control),
    );
    field("Expires", show(&s.expires), show(&r.expires));
    field(
        "website redirect",
        show(&s.website_redirect),
        show(&r.website_redirect),
    );
    field("user metadata", show(&s.metadata), show(&r.metadata));
    if exact {
        field("checksums", show(&s.checksums), show(&r.checksums));
        field(
            "checksum type",
            show(&s.checksum_type),
            show(&r.checksum_type),
        );
    } else {
        // A foreign target reports what it keeps; what it reports must agree.
        for (algorithm, value) in &s.checksums {
            if let Some(other) = r.checksums.get(algorithm) {
                field(&format!("checksum {algorithm}"), show(value), show(other));
            }
        }
    }
    field(
        "object lock mode",
        show(&s.object_lock_mode),
        show(&r.object_lock_mode),
    );
    field(
        "object lock retain until",
        show(&s.object_lock_retain_until),
        show(&r.object_lock_retain_until),
    );
    field(
        "legal hold",
        show(&s.object_lock_legal_hold),
        show(&r.object_lock_legal_hold),
    );
    // A clear source may land in a bucket whose default encryption seals it: that is the
    // destination's choice, not a difference.
    if s.server_side_encryption.is_some() {
        field(
            "server-side encryption",
            show(&s.server_side_encryption),
            show(&r.server_side_encryption),
        );
    }
    if exact && s.server_side_encryption.is_some() {
        field(
            "SSE-KMS key",
            show(&s.sse_kms_key_id),
            show(&r.sse_kms_key_id),
        );
    }
    if let (Some(a), Some(b)) = (&s.parts_count, &r.parts_count) {
        if etag {
            field("parts", show(a), show(b));
        }
    }
    if let (Some(a), Some(b)) = (&s.tags, &r.tags) {
        field("tags", show(a), show(b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> ObservedVersion {
        ObservedVersion {
            version_id: Some("v1".into()),
            size: Some(10),
            etag: Some("abc".into()),
            last_modified: Some(1_700_000_000),
            content_type: Some(ABSENT_CONTENT_TYPE.into()),
            storage_class: Some("STANDARD".into()),
            metadata: [("model".to_owned(), "llama".to_owned())].into(),
            checksums: [("CRC64NVME".to_owned(), "AAAA".to_owned())].into(),
            checksum_type: Some("FULL_OBJECT".into()),
            tags: Some(vec![("team".into(), "ml".into())]),
            ..ObservedVersion::default()
        }
    }

    #[test]
    fn an_exact_replica_has_no_differences_and_each_field_is_named() {
        let a = version();
        assert!(differences(&a, &a.clone(), Fidelity::Exact).is_empty());
        let mut b = a.clone();
        b.content_type = Some("application/octet-stream".into());
        b.tags = Some(vec![]);
        let d = differences(&a, &b, Fidelity::Exact);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("Content-Type: source Some(\"binary/octet-stream\")"));
        assert!(d[1].starts_with("tags:"));
    }

    #[test]
    fn a_foreign_target_may_differ_in_identity_but_not_in_headers() {
        let a = version();
        let mut b = a.clone();
        b.version_id = Some("theirs".into());
        b.last_modified = Some(1_800_000_000);
        b.etag = Some("other-2".into());
        b.checksums.clear();
        b.parts_count = Some(2);
        assert!(differences(&a, &b, Fidelity::Foreign { etag: false }).is_empty());
        assert_eq!(
            differences(&a, &b, Fidelity::Foreign { etag: true }).len(),
            1
        );
        b.cache_control = Some("no-store".into());
        assert_eq!(
            differences(&a, &b, Fidelity::Foreign { etag: false }),
            vec!["Cache-Control: source None, replica Some(\"no-store\")".to_owned()]
        );
        assert_eq!(differences(&a, &b, Fidelity::Exact).len(), 5);
    }

    #[test]
    fn fields_nobody_looked_at_are_not_compared() {
        let a = version();
        let mut b = a.clone();
        b.tags = None;
        b.parts_count = Some(3);
        assert!(differences(&a, &b, Fidelity::Exact).is_empty());
    }

    #[test]
    fn http_dates_become_seconds() {
        assert_eq!(
            http_date_seconds("Thu, 01 Jan 1970 00:01:40 GMT"),
            Some(100)
        );
        assert_eq!(http_date_seconds("yesterday"), None);
    }
}
