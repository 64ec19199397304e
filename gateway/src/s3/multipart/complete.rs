//! CompleteMultipartUpload: the client's part list checked against what was uploaded, the
//! ETag and checksum derived from the parts, and one version committed whose layout is the
//! parts' segments in order.

use super::*;
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    pub(in crate::s3) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let replica = self.replica_of(&req.headers, &bucket)?;
        let requested: Vec<CompletedPart> = input
            .multipart_upload
            .take()
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
        }
        let requested = latest_per_part(&requested)?;
        let upload = match self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await
        {
            Ok(upload) => upload,
            Err(e) if *e.code() == S3ErrorCode::NoSuchUpload => {
                return self
                    .repeated_completion(&input, &requested, reports_written_version(&bucket))
                    .await?
                    .ok_or(e);
            }
            Err(e) => return Err(e),
        };
        let precondition = check_write_preconditions(
            &self.store,
            &input.bucket,
            &input.key,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )
        .await?;

        let stored = self.all_parts(&upload).await?;
        let chosen = choose_parts(&requested, &stored, upload.checksum_algorithm.as_ref())?;
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        if input.mpu_object_size.is_some_and(|s| s as u64 != size) {
            return Err(s3_error!(InvalidRequest, "The provided 'x-amz-mp-object-size' header value does not match what was computed."));
        }

        let md5s: Vec<[u8; 16]> = chosen
            .iter()
            .map(|p| {
                hex::decode(&p.etag)
                    .ok()
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
            })
            .collect::<Option<_>>()
            .ok_or_else(|| s3_error!(InternalError, "a stored part ETag is not an MD5"))?;
        let etag = checksum::multipart_etag(&md5s);
        let object_checksum = object_checksum(&upload, &chosen)?;
        verify_complete_checksum(&input, object_checksum.as_ref())?;

        let mut layout = Layout::default();
        for p in &chosen {
            layout.segments.extend(
                Layout::from_bytes(&p.storage)
                    .map_err(StoreError::from)
                    .s3()?
                    .segments,
            );
        }
        let mut new = NewVersion {
            size,
            etag,
            checksum: object_checksum,
            headers: upload.headers.clone(),
            user_metadata: upload.user_metadata.clone(),
            tags: upload.tags.clone(),
            lock: upload.lock,
            encryption: upload.encryption.clone(),
            acl: upload.acl.clone(),
            storage: meridian_metadata::Storage::Layout(layout.to_bytes()),
            parts: chosen
                .iter()
                .map(|p| ObjectPart {
                    number: p.number,
                    size: p.size,
                    etag: p.etag.clone(),
                    checksum: p.checksum.clone(),
                })
                .collect(),
            precondition,
            ..NewVersion::default()
        };
        match &replica {
            Some(r) => {
                // A multipart source keeps its `-N` ETag, which must come out the same here; a
                // single-part source was split on the way and keeps its own ETag and no parts.
                let mirrored = r.etag.as_deref().is_none_or(|e| e.contains('-'));
                // Parts sealed here have keyed ETags of their own (SSE-KMS, SSE-C): the
                // checksum vouches for them instead.
                let check =
                    mirrored && r.sealed.is_none() && !super::super::encryption::keyed_etag(&new);
                apply_replica(&mut new, r, check)?;
                new.replication = self.replica_state(r, &input.bucket, &input.key);
                if !mirrored {
                    new.parts.clear();
                }
            }
            None => {
                new.replication = self
                    .local_replication(
                        &input.bucket,
                        &input.key,
                        &upload.tags,
                        meridian_replicator::version_change(upload.encryption.as_ref()),
                    )
                    .await?
            }
        }
        let (replication, new_etag) = (new.replication.clone(), new.etag.clone());
        let used: Vec<u32> = chosen.iter().map(|p| p.number).collect();
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let outcome = match self
            .store
            .meta(move |m| m.complete_upload(&b, &k, &u, &used, new))
            .await
        {
            Ok(outcome) => outcome,
            // Another completion of this upload committed first.
            Err(StoreError::Meta(MetaError::NoSuchUpload { .. })) => {
                return self
                    .repeated_completion(&input, &requested, reports_written_version(&bucket))
                    .await?
                    .ok_or_else(|| s3_error!(NoSuchUpload, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."));
            }
            Err(e) => return Err(crate::s3::errors::s3_error_of(e)),
        };
        self.store.wake_reclaimer();
        if let Some(r) = &replica {
            note_existing(&outcome.version, r, &new_etag);
        }
        let v = &outcome.version;
        self.replication_queued(&v.bucket, &v.key, &v.version_id, v.size, &replication)
            .await?;
        let record = outcome.version;
        let mut out = completion_output(
            &input,
            &record.etag,
            convert::reported_version_id(&record, reports_written_version(&bucket)),
            record.checksum.as_ref(),
        );
        out.output.expiration = self.expiration_of(&record).await?;
        let sse = super::super::encryption::SseFields::of(record.encryption.as_ref());
        out.output.server_side_encryption = sse.server_side_encryption;
        out.output.ssekms_key_id = sse.ssekms_key_id;
        Ok(out)
    }

    /// A completion repeated after the upload was completed (an SDK retrying after a lost
    /// response) gets the first answer again when it names the same parts; another part list
    /// is `InvalidPart`. `Ok(None)` when nothing is known of the upload.
    async fn repeated_completion(
        &self,
        input: &CompleteMultipartUploadInput,
        requested: &[&CompletedPart],
        versioned: bool,
    ) -> S3Result<Option<S3Response<CompleteMultipartUploadOutput>>> {
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let Some(done) = self
            .store
            .meta(move |m| m.completed_upload(&b, &k, &u))
            .await
            .s3()?
        else {
            return Ok(None);
        };
        let same_parts = requested.len() == done.parts.len()
            && requested
                .iter()
                .zip(&done.parts)
                .all(|(r, (number, etag))| {
                    r.part_number == Some(*number as i32)
                        && r.e_tag
                            .as_ref()
                            .is_none_or(|e| e.value().trim_matches('"') == etag)
                });
        if !same_parts {
            return Err(invalid_part());
        }
        let (b, k, v) = (
            input.bucket.clone(),
            input.key.clone(),
            done.version_id.clone(),
        );
        let record = self
            .store
            .meta(move |m| m.get_version(&b, &k, Some(&v)))
            .await
            .s3()?
            .filter(|r| r.etag == done.etag);
        let version_id = versioned.then(|| done.version_id.clone());
        let mut out = completion_output(
            input,
            &done.etag,
            version_id,
            record.as_ref().and_then(|r| r.checksum.as_ref()),
        );
        let sse = super::super::encryption::SseFields::of(
            record.as_ref().and_then(|r| r.encryption.as_ref()),
        );
        out.output.server_side_encryption = sse.server_side_encryption;
        out.output.ssekms_key_id = sse.ssekms_key_id;
        Ok(Some(out))
    }

    /// Every stored part of an upload, in part-number order.
    async fn all_parts(&self, upload: &UploadRecord) -> S3Result<Vec<PartRecord>> {
        let mut parts = Vec::new();
        let mut marker = 0u32;
        loop {
            let (b, k, u) = (
                upload.bucket.clone(),
                upload.key.clone(),
                upload.upload_id.clone(),
            );
            let page = self
                .store
                .meta(move |m| m.list_parts(&b, &k, &u, marker, 1000))
                .await
                .s3()?;
            parts.extend(page.parts);
            match page.next_part_number_marker {
                Some(next) if page.is_truncated => marker = next,
                _ => return Ok(parts),
            }
        }
    }
}

fn completion_output(
    input: &CompleteMultipartUploadInput,
    etag: &str,
    version_id: Option<String>,
    checksum: Option<&Checksum>,
) -> S3Response<CompleteMultipartUploadOutput> {
    S3Response::new(convert::with_checksum_fields!(
        CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(convert::etag(etag)),
            version_id: version_id,
        },
        ChecksumFields::of(checksum)
    ))
}

fn invalid_part() -> s3s::S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
    )
}

/// The client's part list with numbers checked and ascending. A part named twice in a row
/// (a resent part whose both responses the client recorded) counts once, as its last entry:
/// the upload that finished last is the part's data.
fn latest_per_part(requested: &[CompletedPart]) -> S3Result<Vec<&CompletedPart>> {
    let mut out: Vec<&CompletedPart> = Vec::with_capacity(requested.len());
    let mut previous = 0;
    for r in requested {
        let number = check_part_number(r.part_number.ok_or_else(invalid_part)?)?;
        if number < previous {
            return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        if number == previous {
            out.pop();
        }
        previous = number;
        out.push(r);
    }
    Ok(out)
}

/// Checks the client's part list (from [`latest_per_part`]) against what was uploaded:
/// matching ETags (and checksums when given), every part but the last at least 5 MiB.
fn choose_parts(
    requested: &[&CompletedPart],
    stored: &[PartRecord],
    algorithm: Option<&ChecksumAlgorithm>,
) -> S3Result<Vec<PartRecord>> {
    let mut chosen = Vec::with_capacity(requested.len());
    for r in requested {
        let number = check_part_number(r.part_number.ok_or_else(invalid_part)?)?;
        let part = stored
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(invalid_part)?;
        if let Some(etag) = &r.e_tag {
            if etag.value().trim_matches('"') != part.etag {
                return Err(invalid_part());
            }
        }
        if let (Some(alg), Some(stored_sum)) = (algorithm, &part.checksum) {
            let claimed = checksum_headers!(r)
                .into_iter()
                .find(|(a, v)| a == alg && v.is_some())
                .and_then(|(_, v)| v);
            if claimed.is_some_and(|c| c != stored_sum.value) {
                return Err(invalid_part());
            }
        }
        chosen.push(part.clone());
    }
    for p in &chosen[..chosen.len() - 1] {
        if p.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed object size."
            ));
        }
    }
    Ok(chosen)
}

/// The object's checksum from its parts: composite ("-N") or, for CRCs, full-object.
fn object_checksum(upload: &UploadRecord, parts: &[PartRecord]) -> S3Result<Option<Checksum>> {
    let Some(algorithm) = &upload.checksum_algorithm else {
        return Ok(None);
    };
    let mut digests = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(c) = p.checksum.as_ref().filter(|c| &c.algorithm == algorithm) else {
            return Err(s3_error!(
                InvalidRequest,
                "Part {} has no {} checksum",
                p.number,
                checksum::header_name(algorithm)
            ));
        };
        let raw = checksum::from_base64(algorithm, &c.value)
            .ok_or_else(|| s3_error!(InternalError, "stored part checksum is malformed"))?;
        digests.push((raw, p.size));
    }
    let kind = upload.checksum_type.unwrap_or(ChecksumType::Composite);
    let value = match kind {
        ChecksumType::Composite => checksum::composite(
            algorithm,
            &digests.into_iter().map(|(d, _)| d).collect::<Vec<_>>(),
        ),
        ChecksumType::FullObject => checksum::to_base64(
            &checksum::combine_crcs(algorithm, &digests)
                .ok_or_else(|| s3_error!(InternalError, "checksum does not combine"))?,
        ),
    };
    Ok(Some(Checksum {
        algorithm: algorithm.clone(),
        value,
        kind,
    }))
}

/// A full-object checksum sent with CompleteMultipartUpload must match what the parts give.
fn verify_complete_checksum(
    input: &CompleteMultipartUploadInput,
    computed: Option<&Checksum>,
) -> S3Result<()> {
    for (alg, value) in checksum_headers!(input) {
        let Some(value) = value else { continue };
        match computed {
            Some(c) if c.algorithm == alg => {
                let bare = c.value.split('-').next().unwrap_or_default();
                if value.split('-').next().unwrap_or_default() != bare {
                    return Err(s3_error!(BadDigest, "The {} you specified did not match the calculated checksum.", checksum::header_name(&alg).to_ascii_uppercase()));
                }
            }
            _ => {
                return Err(s3_error!(InvalidRequest, "The upload was created using a different checksum algorithm than x-amz-checksum-{}.", checksum::header_name(&alg)))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64) -> PartRecord {
        PartRecord {
            number,
            size,
            etag: format!("{number:032x}"),
            checksum: None,
            mtime: 0,
            storage: Vec::new(),
        }
    }

    fn completed(number: i32, etag: &str) -> CompletedPart {
        CompletedPart {
            part_number: Some(number),
            e_tag: Some(ETag::Strong(etag.into())),
            ..Default::default()
        }
    }

    fn choose(requested: &[CompletedPart], stored: &[PartRecord]) -> S3Result<Vec<PartRecord>> {
        choose_parts(&latest_per_part(requested)?, stored, None)
    }

    #[test]
    fn parts_must_ascend_match_and_be_big_enough() {
        let stored = vec![part(1, MIN_PART_SIZE), part(2, MIN_PART_SIZE), part(3, 10)];
        let ok = choose(
            &[completed(1, &stored[0].etag), completed(3, &stored[2].etag)],
            &stored,
        )
        .unwrap();
        assert_eq!(ok.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 3]);

        let err = choose(
            &[completed(2, &stored[1].etag), completed(1, &stored[0].etag)],
            &stored,
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPartOrder");
        let err = choose(&[completed(1, "ffff")], &stored).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPart");
        let err = choose(&[completed(4, "x")], &stored).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPart");
        let err = choose(
            &[completed(3, &stored[2].etag), completed(4, "x")],
            &[part(3, 10), part(4, 10)],
        )
        .unwrap_err();
        assert!(matches!(
            err.code().as_str(),
            "EntityTooSmall" | "InvalidPart"
        ));
        let small_first = vec![part(1, 10), part(2, 10)];
        let err = choose(
            &[
                completed(1, &small_first[0].etag),
                completed(2, &small_first[1].etag),
            ],
            &small_first,
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "EntityTooSmall");
    }

    #[test]
    fn a_part_named_twice_counts_as_its_last_entry() {
        let stored = vec![part(1, MIN_PART_SIZE), part(2, 10)];
        let ok = choose(
            &[
                completed(1, "stale-etag-of-an-overwritten-upload"),
                completed(1, &stored[0].etag),
                completed(2, &stored[1].etag),
            ],
            &stored,
        )
        .unwrap();
        assert_eq!(ok.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
        let err = choose(
            &[completed(1, &stored[0].etag), completed(1, "stale")],
            &stored,
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPart");
    }
}
