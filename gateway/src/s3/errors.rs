//! The one place where storage errors become S3 errors: [`s3_error_of`], and `.s3()?` on a
//! store result (the orphan rule keeps `?` from converting a store error by itself).

use meridian_erasure::ErasureError;
use meridian_metadata::MetaError;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use meridian_store::ingest::BodyError;
use meridian_store::StoreError;

/// A store result as an S3 result.
pub(crate) trait IntoS3<T> {
    fn s3(self) -> S3Result<T>;
}

impl<T, E: Into<StoreError>> IntoS3<T> for Result<T, E> {
    fn s3(self) -> S3Result<T> {
        self.map_err(|e| s3_error_of(e.into()))
    }
}

/// The S3 error a store error is answered with.
pub(crate) fn s3_error_of(e: StoreError) -> S3Error {
    match e {
        StoreError::Meta(e) => meta_error(e),
        StoreError::Erasure(e) => erasure_error(e),
        StoreError::Body(BodyError::SignatureMismatch) => s3_error!(
            SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided."
        ),
        StoreError::Body(BodyError::ContentSha256Mismatch) => custom_error(
            "XAmzContentSHA256Mismatch",
            http::StatusCode::BAD_REQUEST,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ),
        StoreError::Body(BodyError::Incomplete(detail)) => {
            tracing::debug!(%detail, "request body incomplete");
            s3_error!(IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
        }
        other => internal(other),
    }
}

/// The S3 error of a refused document or header (its code is S3's own name, so it parses).
/// Codes s3s does not know (`InvalidRetentionPeriod`) are client errors too: 400.
pub(super) fn document_error(e: meridian_documents::DocumentError) -> S3Error {
    let code = S3ErrorCode::from_bytes(e.code.as_bytes()).unwrap_or(S3ErrorCode::InvalidArgument);
    let known = code.status_code().is_some();
    let mut err = S3Error::with_message(code, e.message);
    if !known {
        err.set_status_code(http::StatusCode::BAD_REQUEST);
    }
    err
}

fn meta_error(e: MetaError) -> S3Error {
    match e {
        MetaError::NoSuchBucket { .. } => s3_error!(NoSuchBucket, "The specified bucket does not exist"),
        MetaError::BucketExists { .. } => s3_error!(
            BucketAlreadyExists,
            "The requested bucket name is not available. Please select a different name and try again."
        ),
        MetaError::BucketNotEmpty { .. } => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"),
        MetaError::NoSuchKey { .. } => s3_error!(NoSuchKey, "The specified key does not exist."),
        MetaError::NoSuchVersion { .. } => {
            s3_error!(NoSuchVersion, "The specified version does not exist.")
        }
        MetaError::NoSuchUpload { .. } => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        MetaError::InvalidArgument(msg) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
        MetaError::PreconditionFailed { current_exists: false, .. } => {
            s3_error!(NoSuchKey, "The specified key does not exist.")
        }
        MetaError::PreconditionFailed { .. } => s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ),
        MetaError::IsDeleteMarker { .. } => s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        ),
        MetaError::ObjectLocked { reason, .. } => S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!("Access Denied because object protected by object lock: {reason}"),
        ),
        MetaError::InvalidBucketState { reason, .. } => {
            S3Error::with_message(S3ErrorCode::InvalidBucketState, reason)
        }
        MetaError::InvalidPart { .. } => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        ),
        other => internal(other),
    }
}

fn erasure_error(e: ErasureError) -> S3Error {
    match e {
        e @ ErasureError::WriteQuorum {
            storage_full: true, ..
        } => {
            tracing::error!(error = %e, "write quorum lost: disks full");
            custom_error(
                "InsufficientStorage",
                http::StatusCode::INSUFFICIENT_STORAGE,
                "Not enough free space on the disks to store the object.",
            )
        }
        e @ ErasureError::WriteQuorum { .. } => {
            tracing::error!(error = %e, "write quorum lost");
            s3_error!(
                ServiceUnavailable,
                "Not enough disks are available to store the object. Please retry later."
            )
        }
        e @ ErasureError::NotEnoughShards { .. } => {
            tracing::error!(error = %e, "object unreadable: too few good shards");
            s3_error!(
                ServiceUnavailable,
                "Not enough disks are available to read the object. Please retry later."
            )
        }
        other => internal(other),
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> S3Error {
    tracing::error!(error = %e, "internal error");
    let mut err = s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    );
    err.set_source(Box::new(e));
    err
}

/// An S3 error code that s3s does not know (it still serialises like any other).
pub fn custom_error(code: &str, status: http::StatusCode, message: &'static str) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes()).expect("error codes are UTF-8");
    let mut err = S3Error::with_message(code, message);
    err.set_status_code(status);
    err
}
