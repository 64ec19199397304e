//! GetObjectAttributes: ETag, checksum, size, storage class and the part list of one version,
//! without its bytes.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert::{self, ChecksumFields};
use super::MeridianS3;

const DEFAULT_MAX_PARTS: i32 = 1000;

impl MeridianS3 {
    pub(super) async fn get_object_attributes_impl(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        // One header may list several attributes, comma-separated (boto3 sends
        // `ObjectParts,Checksum,ETag,ObjectSize`), or the header may repeat.
        let wanted: Vec<&str> = input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .map(str::trim)
            .collect();
        if wanted.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "Invalid attribute name specified."
            ));
        }
        for w in &wanted {
            if ![
                ObjectAttributes::ETAG,
                ObjectAttributes::CHECKSUM,
                ObjectAttributes::OBJECT_PARTS,
                ObjectAttributes::OBJECT_SIZE,
                ObjectAttributes::STORAGE_CLASS,
            ]
            .contains(w)
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "Invalid attribute name specified."
                ));
            }
        }
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let record = resolved.record;
        let want = |a: &str| wanted.contains(&a);

        let checksum = want(ObjectAttributes::CHECKSUM)
            .then(|| ChecksumFields::of(record.checksum.as_ref()))
            .filter(|f| f.checksum_type.is_some())
            .map(|f| convert::with_checksum_fields!(Checksum {}, f));

        let object_parts = if want(ObjectAttributes::OBJECT_PARTS) && !record.parts.is_empty() {
            let max = input
                .max_parts
                .unwrap_or(DEFAULT_MAX_PARTS)
                .clamp(0, DEFAULT_MAX_PARTS) as usize;
            let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
            let after: Vec<_> = record.parts.iter().filter(|p| p.number > marker).collect();
            let page: Vec<_> = after.iter().take(max).collect();
            let is_truncated = after.len() > page.len();
            Some(GetObjectAttributesParts {
                total_parts_count: Some(record.parts.len() as i32),
                part_number_marker: input.part_number_marker,
                next_part_number_marker: page.last().map(|p| p.number as i32),
                max_parts: Some(max as i32),
                is_truncated: Some(is_truncated),
                parts: Some(
                    page.iter()
                        .map(|p| {
                            let f = ChecksumFields::of(p.checksum.as_ref());
                            ObjectPart {
                                part_number: Some(p.number as i32),
                                size: Some(p.size as i64),
                                checksum_crc32: f.crc32,
                                checksum_crc32c: f.crc32c,
                                checksum_crc64nvme: f.crc64nvme,
                                checksum_sha1: f.sha1,
                                checksum_sha256: f.sha256,
                            }
                        })
                        .collect(),
                ),
            })
        } else {
            None
        };

        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: want(ObjectAttributes::ETAG).then(|| convert::etag(&record.etag)),
            checksum,
            object_parts,
            object_size: want(ObjectAttributes::OBJECT_SIZE).then_some(record.size as i64),
            storage_class: want(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            last_modified: Some(convert::timestamp(record.mtime)),
            version_id: convert::reported_version_id(&record, resolved.versioned_bucket),
            delete_marker: None,
            request_charged: None,
        }))
    }
}
