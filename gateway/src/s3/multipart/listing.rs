//! ListParts and ListMultipartUploads.

use super::*;
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    /// An upload's owner — the one its ACL names (the writer, or the bucket owner when
    /// BucketOwnerPreferred and `bucket-owner-full-control` gave it), else the bucket's owner
    /// (a bucket without ACLs) — and its initiator, as canonical users.
    fn upload_parties(
        &self,
        bucket: &meridian_metadata::BucketRecord,
        upload: &meridian_metadata::UploadRecord,
    ) -> (Owner, Initiator) {
        let acl_owner = upload
            .acl
            .as_deref()
            .and_then(|a| meridian_documents::acl::Acl::from_json(a).ok())
            .map(|a| a.owner);
        let (id, display_name) = self
            .users
            .canonical(acl_owner.as_deref().unwrap_or(&bucket.owner));
        let owner = Owner {
            id: Some(id),
            display_name: Some(display_name),
        };
        let (id, display_name) = self.users.canonical(&upload.owner);
        let initiator = Initiator {
            id: Some(id),
            display_name: Some(display_name),
        };
        (owner, initiator)
    }

    pub(in crate::s3) async fn list_parts_impl(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = match input.max_parts {
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-parts must be an integer between 0 and 2147483647"
                ))
            }
            Some(n) => n.min(DEFAULT_MAX_PARTS),
            None => DEFAULT_MAX_PARTS,
        };
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let page = self
            .store
            .meta(move |m| m.list_parts(&b, &k, &u, marker, max as usize))
            .await
            .s3()?;
        let bucket = self.bucket(&input.bucket).await?;
        let (owner, initiator) = self.upload_parties(&bucket, &upload);
        let parts = page
            .parts
            .iter()
            .map(|p| {
                let f = ChecksumFields::of(p.checksum.as_ref());
                Part {
                    part_number: Some(p.number as i32),
                    e_tag: Some(convert::etag(&p.etag)),
                    size: Some(p.size as i64),
                    last_modified: Some(convert::timestamp(p.mtime)),
                    checksum_crc32: f.crc32,
                    checksum_crc32c: f.crc32c,
                    checksum_crc64nvme: f.crc64nvme,
                    checksum_sha1: f.sha1,
                    checksum_sha256: f.sha256,
                }
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page.next_part_number_marker.map(|n| n as i32),
            max_parts: Some(max),
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            initiator: Some(initiator),
            owner: Some(owner),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: upload
                .checksum_algorithm
                .as_ref()
                .map(convert::dto_algorithm),
            checksum_type: upload.checksum_type.map(convert::dto_checksum_type),
            ..Default::default()
        }))
    }

    pub(in crate::s3) async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let max = match input.max_uploads {
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-uploads must be non-negative"
                ))
            }
            Some(n) => n.min(1000),
            None => 1000,
        };
        let query = ListUploadsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            upload_id_marker: input.upload_id_marker.clone().filter(|u| !u.is_empty()),
            max_uploads: max as usize,
        };
        let b = input.bucket.clone();
        let page = if max == 0 {
            meridian_metadata::ListUploadsPage {
                uploads: vec![],
                common_prefixes: vec![],
                is_truncated: false,
                next_key_marker: None,
                next_upload_id_marker: None,
            }
        } else if let Some(c) = self.cluster.node() {
            c.list_uploads(&b, query)
                .await
                .map_err(|e| crate::s3::listing::cluster_listing_error(&b, e))?
        } else {
            self.store
                .meta(move |m| m.list_uploads(&b, &query))
                .await
                .s3()?
        };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| {
                let (owner, initiator) = self.upload_parties(&bucket, &u);
                MultipartUpload {
                    key: Some(u.key),
                    upload_id: Some(u.upload_id),
                    initiated: Some(convert::timestamp(u.initiated)),
                    initiator: Some(initiator),
                    owner: Some(owner),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    checksum_algorithm: u.checksum_algorithm.as_ref().map(convert::dto_algorithm),
                    checksum_type: u.checksum_type.map(convert::dto_checksum_type),
                }
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max),
            is_truncated: Some(page.is_truncated),
            next_key_marker: page.next_key_marker,
            next_upload_id_marker: page.next_upload_id_marker,
            uploads: Some(uploads),
            common_prefixes: (!page.common_prefixes.is_empty()).then(|| {
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            }),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }
}
