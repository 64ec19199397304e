//! ListObjects (v1 and v2) and ListObjectVersions: the metadata store pages by key, seeking
//! past common prefixes; this file translates markers, tokens and `encoding-type=url`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use meridian_metadata::{
    BucketRecord, ListObjectsPage, ListObjectsQuery, ListVersionsQuery, ObjectSummary,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert::{self, dto_algorithm};
use super::MeridianS3;
use crate::s3::errors::IntoS3;

const DEFAULT_MAX_KEYS: i32 = 1000;

/// What `encoding-type=url` escapes: everything but unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

struct Encoder {
    url: bool,
}

impl Encoder {
    fn new(encoding_type: Option<&EncodingType>) -> S3Result<Encoder> {
        match encoding_type.map(EncodingType::as_str) {
            None => Ok(Encoder { url: false }),
            Some(EncodingType::URL) => Ok(Encoder { url: true }),
            Some(_) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )),
        }
    }
    fn encode(&self, s: String) -> String {
        if self.url {
            utf8_percent_encode(&s, URL_ENCODE).to_string()
        } else {
            s
        }
    }
    fn encode_opt(&self, s: Option<String>) -> Option<String> {
        s.map(|s| self.encode(s))
    }
}

fn max_keys(value: Option<i32>) -> S3Result<usize> {
    match value {
        None => Ok(DEFAULT_MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "maxKeys should be non-negative")),
        Some(n) => Ok(n.min(DEFAULT_MAX_KEYS) as usize),
    }
}

fn encode_token(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(marker.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

/// The owner listings show: the bucket's owner as a canonical user (as GetBucketAcl does).
fn owner_of(bucket: &BucketRecord, users: &crate::auth::Users) -> Owner {
    let (id, display_name) = users.canonical(&bucket.owner);
    Owner {
        id: Some(id),
        display_name: Some(display_name),
    }
}

fn object_entry(o: ObjectSummary, owner: Option<&Owner>, enc: &Encoder) -> Object {
    Object {
        key: Some(enc.encode(o.key)),
        last_modified: Some(convert::timestamp(o.mtime)),
        e_tag: Some(convert::etag(&o.etag)),
        size: Some(o.size as i64),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: owner.cloned(),
        checksum_algorithm: o
            .checksum_algorithm
            .as_ref()
            .map(|a| vec![dto_algorithm(a)]),
        ..Default::default()
    }
}

fn common_prefixes(prefixes: Vec<String>, enc: &Encoder) -> Option<Vec<CommonPrefix>> {
    (!prefixes.is_empty()).then(|| {
        prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.encode(p)),
            })
            .collect()
    })
}

/// A listing some node of the region could not give: the bucket is missing there, or the
/// listing would be incomplete (an error rather than a page that silently misses keys).
pub(super) fn cluster_listing_error(bucket: &str, e: String) -> s3s::S3Error {
    if e == "NoSuchBucket" {
        return s3_error!(NoSuchBucket, "The specified bucket does not exist");
    }
    tracing::warn!(%bucket, error = %e, "a listing across the region's nodes failed");
    s3_error!(
        ServiceUnavailable,
        "A node of the region did not answer the listing; try again"
    )
}

impl MeridianS3 {
    async fn list_page(&self, bucket: &str, query: ListObjectsQuery) -> S3Result<ListObjectsPage> {
        if query.max_keys == 0 {
            return Ok(ListObjectsPage {
                objects: vec![],
                common_prefixes: vec![],
                is_truncated: false,
                next_marker: None,
            });
        }
        if let Some(c) = self.cluster.node() {
            return c
                .list_objects(bucket, query)
                .await
                .map_err(|e| cluster_listing_error(bucket, e));
        }
        let b = bucket.to_owned();
        self.store
            .meta(move |m| m.list_objects(&b, &query))
            .await
            .s3()
    }

    pub(super) async fn list_objects_impl(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let query = ListObjectsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max,
        };
        let page = self.list_page(&input.bucket, query).await?;
        let owner = owner_of(&bucket, &self.users);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            // ListObjects (v1) echoes the prefix unencoded even with encoding-type=url (unlike
            // v2 and ListObjectVersions); clients decode only the other fields.
            prefix: Some(input.prefix.unwrap_or_default()),
            marker: Some(enc.encode(input.marker.unwrap_or_default())),
            max_keys: Some(max as i32),
            // An empty delimiter is no delimiter, and S3 does not echo it.
            delimiter: enc.encode_opt(input.delimiter.filter(|d| !d.is_empty())),
            is_truncated: Some(page.is_truncated),
            next_marker: if page.is_truncated {
                enc.encode_opt(page.next_marker)
            } else {
                None
            },
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| object_entry(o, Some(&owner), &enc))
                    .collect(),
            ),
            common_prefixes: common_prefixes(page.common_prefixes, &enc),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    pub(super) async fn list_objects_v2_impl(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        // The continuation token wins over start-after, as on S3.
        let start_after = match input.continuation_token.as_deref() {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let query = ListObjectsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after,
            max_keys: max,
        };
        let page = self.list_page(&input.bucket, query).await?;
        let owner = input
            .fetch_owner
            .unwrap_or(false)
            .then(|| owner_of(&bucket, &self.users));
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.encode(input.prefix.unwrap_or_default())),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            // An empty delimiter is no delimiter, and S3 does not echo it.
            delimiter: enc.encode_opt(input.delimiter.filter(|d| !d.is_empty())),
            continuation_token: input.continuation_token,
            start_after: enc.encode_opt(input.start_after),
            is_truncated: Some(page.is_truncated),
            next_continuation_token: if page.is_truncated {
                page.next_marker.as_deref().map(encode_token)
            } else {
                None
            },
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| object_entry(o, owner.as_ref(), &enc))
                    .collect(),
            ),
            common_prefixes: common_prefixes(page.common_prefixes, &enc),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    pub(super) async fn list_object_versions_impl(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
        let version_id_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
        if version_id_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let page = if max == 0 {
            meridian_metadata::ListVersionsPage::default()
        } else {
            let query = ListVersionsQuery {
                prefix: input.prefix.clone().unwrap_or_default(),
                delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
                key_marker,
                version_id_marker,
                max_keys: max,
            };
            let b = input.bucket.clone();
            match self.cluster.node() {
                Some(c) => c
                    .list_versions(&b, query)
                    .await
                    .map_err(|e| cluster_listing_error(&b, e))?,
                None => self
                    .store
                    .meta(move |m| m.list_versions(&b, &query))
                    .await
                    .s3()?,
            }
        };
        let owner = owner_of(&bucket, &self.users);
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in page.versions {
            if v.is_delete_marker {
                markers.push(DeleteMarkerEntry {
                    key: Some(enc.encode(v.key)),
                    version_id: Some(v.version_id),
                    is_latest: Some(v.is_latest),
                    last_modified: Some(convert::timestamp(v.mtime)),
                    owner: Some(owner.clone()),
                });
            } else {
                versions.push(ObjectVersion {
                    key: Some(enc.encode(v.key)),
                    version_id: Some(v.version_id),
                    is_latest: Some(v.is_latest),
                    last_modified: Some(convert::timestamp(v.mtime)),
                    e_tag: Some(convert::etag(&v.etag)),
                    size: Some(v.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(owner.clone()),
                    checksum_algorithm: v
                        .checksum_algorithm
                        .as_ref()
                        .map(|a| vec![dto_algorithm(a)]),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.encode(input.prefix.unwrap_or_default())),
            key_marker: Some(enc.encode(input.key_marker.unwrap_or_default())),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            // An empty delimiter is no delimiter, and S3 does not echo it.
            delimiter: enc.encode_opt(input.delimiter.filter(|d| !d.is_empty())),
            is_truncated: Some(page.is_truncated),
            next_key_marker: if page.is_truncated {
                enc.encode_opt(page.next_key_marker)
            } else {
                None
            },
            next_version_id_marker: if page.is_truncated {
                page.next_version_id_marker
            } else {
                None
            },
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            common_prefixes: common_prefixes(page.common_prefixes, &enc),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_round_trip_any_key() {
        for key in ["a", "dir/sub dir/ünï+code", ""] {
            assert_eq!(decode_token(&encode_token(key)).unwrap(), key);
        }
        assert!(decode_token("***").is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_the_rest() {
        let enc = Encoder { url: true };
        assert_eq!(enc.encode("a b/c+d&é".into()), "a%20b/c%2Bd%26%C3%A9");
    }

    #[test]
    fn max_keys_is_capped_and_checked() {
        assert_eq!(max_keys(None).unwrap(), 1000);
        assert_eq!(max_keys(Some(5000)).unwrap(), 1000);
        assert_eq!(max_keys(Some(0)).unwrap(), 0);
        assert!(max_keys(Some(-1)).is_err());
    }
}
