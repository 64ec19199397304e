//! Server-side encryption on the wire: the SSE headers of writes and reads (SSE-S3, SSE-KMS,
//! SSE-C and the copy-source SSE-C headers), the bucket default (Put/Get/DeleteBucketEncryption,
//! stored as the bucket's `encryption` document), and the response headers. The keys and the
//! encryption itself are the store's (`meridian_store::encryption`).

use std::sync::Arc;

use base64::Engine as _;
use md5::Digest as _;
use meridian_metadata::{Encryption, EncryptionMode};
use meridian_store::encryption::{CustomerKey, DataKey, SseError, SseRequest};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use super::MeridianS3;
use crate::s3::errors::{custom_error, IntoS3};

/// The bucket configuration document.
pub const DOCUMENT: &str = "encryption";

/// What the server's `[encryption]` settings say to the S3 front end.
#[derive(Clone, Debug, Default)]
pub struct SseSettings {
    /// SSE-C is accepted: the listener is HTTPS, or `sse_c_over_http` is set.
    pub customer_keys_allowed: bool,
    /// The default encryption of every new bucket (`AES256` or `aws:kms`).
    pub bucket_default: Option<String>,
}

/// A bucket's default encryption, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDefault {
    /// `AES256` or `aws:kms`.
    pub algorithm: String,
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

impl BucketDefault {
    pub fn from_json(doc: &[u8]) -> Result<BucketDefault, serde_json::Error> {
        serde_json::from_slice(doc)
    }

    fn request(&self) -> SseRequest {
        match self.algorithm.as_str() {
            ServerSideEncryption::AWS_KMS => SseRequest::Kms(self.kms_key_id.clone()),
            _ => SseRequest::S3,
        }
    }
}

/// The SSE-C headers of a request (or its copy-source ones).
pub(super) struct CustomerHeaders<'a> {
    pub algorithm: Option<&'a str>,
    pub key: Option<&'a str>,
    pub key_md5: Option<&'a str>,
}

macro_rules! customer_headers {
    ($i:expr) => {
        $crate::s3::encryption::CustomerHeaders {
            algorithm: $i.sse_customer_algorithm.as_deref(),
            key: $i.sse_customer_key.as_deref(),
            key_md5: $i.sse_customer_key_md5.as_deref(),
        }
    };
}
pub(super) use customer_headers;

macro_rules! copy_source_customer_headers {
    ($i:expr) => {
        $crate::s3::encryption::CustomerHeaders {
            algorithm: $i.copy_source_sse_customer_algorithm.as_deref(),
            key: $i.copy_source_sse_customer_key.as_deref(),
            key_md5: $i.copy_source_sse_customer_key_md5.as_deref(),
        }
    };
}
pub(super) use copy_source_customer_headers;

/// The SSE headers of a write (PutObject, CopyObject, CreateMultipartUpload).
pub(super) struct SseHeaders<'a> {
    pub sse: Option<&'a ServerSideEncryption>,
    pub kms_key_id: Option<&'a str>,
    pub customer: CustomerHeaders<'a>,
}

macro_rules! sse_headers {
    ($i:expr) => {
        $crate::s3::encryption::SseHeaders {
            sse: $i.server_side_encryption.as_ref(),
            kms_key_id: $i.ssekms_key_id.as_deref(),
            customer: $crate::s3::encryption::customer_headers!($i),
        }
    };
}
pub(super) use sse_headers;

fn invalid(message: &'static str) -> S3Error {
    custom_error("InvalidArgument", http::StatusCode::BAD_REQUEST, message)
}

impl CustomerHeaders<'_> {
    fn is_empty(&self) -> bool {
        self.algorithm.is_none() && self.key.is_none() && self.key_md5.is_none()
    }

    /// The customer key, checked as S3 does: algorithm AES256, a 256-bit key, its MD5.
    pub fn parse(&self, allowed: bool) -> S3Result<Option<CustomerKey>> {
        if self.is_empty() {
            return Ok(None);
        }
        if !allowed {
            return Err(s3_error!(
                InvalidRequest,
                "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
            ));
        }
        match self.algorithm {
            Some("AES256") => {}
            Some(_) => return Err(invalid("The encryption algorithm specified is not valid.")),
            None => return Err(invalid("Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.")),
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut raw = self
            .key
            .and_then(|k| engine.decode(k).ok())
            .ok_or_else(|| invalid("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."))?;
        let key = DataKey::from_slice(&raw);
        let md5 = engine.encode(md5::Md5::digest(&raw));
        zeroize::Zeroize::zeroize(&mut raw);
        let key =
            key.map_err(|_| invalid("The secret key was invalid for the specified algorithm."))?;
        match self.key_md5 {
            Some(claimed) if claimed == md5 => Ok(Some(CustomerKey { key, md5 })),
            Some(_) => Err(invalid("The calculated MD5 hash of the key did not match the hash that was provided.")),
            None => Err(invalid("Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.")),
        }
    }
}

impl SseHeaders<'_> {
    /// What the headers ask for, refused as S3 refuses mixed or malformed requests.
    pub fn request(&self, customer_keys_allowed: bool) -> S3Result<Option<SseRequest>> {
        let customer = self.customer.parse(customer_keys_allowed)?;
        match (self.sse.map(|s| s.as_str()), customer) {
            (Some(_), Some(_)) => Err(invalid(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            )),
            (None, Some(c)) if self.kms_key_id.is_none() => Ok(Some(SseRequest::Customer(c))),
            (Some(ServerSideEncryption::AWS_KMS), None) => {
                Ok(Some(SseRequest::Kms(self.kms_key_id.map(str::to_owned))))
            }
            (Some(ServerSideEncryption::AES256), None) if self.kms_key_id.is_none() => {
                Ok(Some(SseRequest::S3))
            }
            (None, None) if self.kms_key_id.is_none() => Ok(None),
            (Some(ServerSideEncryption::AES256) | None, _) => Err(invalid(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            )),
            (Some(_), _) => Err(invalid(
                "The encryption method specified is not supported",
            )),
        }
    }
}

/// Whether a version's ETag is a keyed digest rather than its MD5 (SSE-KMS, SSE-C).
pub(super) fn keyed_etag(new: &meridian_metadata::NewVersion) -> bool {
    matches!(
        new.encryption.as_ref().and_then(|e| e.mode),
        Some(EncryptionMode::Kms | EncryptionMode::Customer)
    )
}

/// The S3 error of a key that could not be made or opened.
pub(super) fn sse_error(e: SseError) -> S3Error {
    match e {
        SseError::NoSuchKey(name) => {
            tracing::info!(key = %name, "SSE-KMS request names a key the keyring does not have");
            custom_error(
                "KMS.NotFoundException",
                http::StatusCode::BAD_REQUEST,
                "The KMS key does not exist in the keyring.",
            )
        }
        SseError::CustomerKeyRequired => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        ),
        SseError::WrongCustomerKey => s3_error!(
            AccessDenied,
            "The provided customer key does not match the key the object was encrypted with."
        ),
        SseError::NotCustomerEncrypted => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        e => {
            tracing::error!(error = %e, "server-side encryption failed");
            s3_error!(InternalError, "Server-side encryption failed.")
        }
    }
}

/// The SSE response headers of a version (or an upload).
#[derive(Default)]
pub(super) struct SseFields {
    pub server_side_encryption: Option<ServerSideEncryption>,
    pub ssekms_key_id: Option<String>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key_md5: Option<String>,
}

impl SseFields {
    pub fn of(encryption: Option<&Encryption>) -> SseFields {
        let Some(e) = encryption else {
            return SseFields::default();
        };
        match e.mode {
            Some(EncryptionMode::S3) => SseFields {
                server_side_encryption: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AES256,
                )),
                ..SseFields::default()
            },
            Some(EncryptionMode::Kms) => SseFields {
                server_side_encryption: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AWS_KMS,
                )),
                ssekms_key_id: e.kms_key_id.clone(),
                ..SseFields::default()
            },
            Some(EncryptionMode::Customer) => SseFields {
                sse_customer_algorithm: Some("AES256".into()),
                sse_customer_key_md5: e.customer_key_md5.clone(),
                ..SseFields::default()
            },
            None => SseFields::default(),
        }
    }
}

/// Sets the SSE response fields of an output (the output types share the field names).
macro_rules! with_sse_fields {
    ($out:expr, $fields:expr) => {{
        let mut out = $out;
        let f: $crate::s3::encryption::SseFields = $fields;
        out.server_side_encryption = f.server_side_encryption;
        out.ssekms_key_id = f.ssekms_key_id;
        out.sse_customer_algorithm = f.sse_customer_algorithm;
        out.sse_customer_key_md5 = f.sse_customer_key_md5;
        out
    }};
}
pub(super) use with_sse_fields;

impl MeridianS3 {
    /// The data key and encryption record of a new version or upload: what the request's
    /// headers ask for, else the bucket's default encryption; `None` stores it in clear.
    pub(super) async fn encryption_of_write(
        &self,
        bucket: &str,
        request: Option<SseRequest>,
    ) -> S3Result<Option<(DataKey, Encryption)>> {
        let request = match request {
            Some(r) => r,
            None => match self.bucket_encryption(bucket).await? {
                Some(default) => default.request(),
                None => return Ok(None),
            },
        };
        let made = self.store.sse.new_key(&request).await.map_err(sse_error)?;
        Ok(Some(made))
    }

    /// What a write's SSE headers ask for (checked before anything is read or stored).
    pub(super) fn sse_request(&self, headers: &SseHeaders<'_>) -> S3Result<Option<SseRequest>> {
        headers.request(self.sse.customer_keys_allowed)
    }

    /// The data key that opens a version or upload encrypted as `encryption`, with the
    /// request's SSE-C key when it is SSE-C; `None` for data stored in clear (which a request
    /// with SSE-C headers may not read, as on S3).
    pub(super) async fn data_key_of(
        &self,
        encryption: Option<&Encryption>,
        customer: &CustomerHeaders<'_>,
    ) -> S3Result<Option<DataKey>> {
        let customer = customer.parse(self.sse.customer_keys_allowed)?;
        match encryption {
            Some(e) => self
                .store
                .sse
                .data_key(e, customer.as_ref())
                .await
                .map(Some)
                .map_err(sse_error),
            None if customer.is_some() => Err(sse_error(SseError::NotCustomerEncrypted)),
            None => Ok(None),
        }
    }

    /// The data key of a multipart upload, for a part: a part sent with another SSE-C key
    /// than the upload's is bad input (400), not a read that is denied.
    pub(super) async fn upload_data_key(
        &self,
        encryption: Option<&Encryption>,
        customer: &CustomerHeaders<'_>,
    ) -> S3Result<Option<DataKey>> {
        let customer_key = customer.parse(self.sse.customer_keys_allowed)?;
        match encryption {
            Some(e) => match self.store.sse.data_key(e, customer_key.as_ref()).await {
                Ok(key) => Ok(Some(key)),
                Err(SseError::WrongCustomerKey) => Err(invalid(
                    "The customer key does not match the key the multipart upload was initiated with.",
                )),
                Err(e) => Err(sse_error(e)),
            },
            None if customer_key.is_some() => Err(sse_error(SseError::NotCustomerEncrypted)),
            None => Ok(None),
        }
    }

    /// GetObject and HeadObject take no SSE-S3 or SSE-KMS headers (the object says how it
    /// is encrypted): InvalidArgument, as on AWS.
    pub(super) fn refuse_read_sse_headers(headers: &http::HeaderMap) -> S3Result<()> {
        if headers.contains_key("x-amz-server-side-encryption")
            || headers.contains_key("x-amz-server-side-encryption-aws-kms-key-id")
        {
            return Err(invalid(
                "x-amz-server-side-encryption header is not supported for this operation.",
            ));
        }
        Ok(())
    }

    /// The bucket's default encryption, if it has one (from memory after the first ask).
    pub(super) async fn bucket_encryption(
        &self,
        bucket: &str,
    ) -> S3Result<Option<Arc<BucketDefault>>> {
        if let Some(cached) = self.encryption_defaults.cached(bucket) {
            return Ok(cached);
        }
        let (cache, b) = (self.encryption_defaults.clone(), bucket.to_owned());
        self.store.meta(move |_| cache.get(&b)).await.s3()
    }

    /// Stores a bucket default encryption (PutBucketEncryption, and new buckets when the
    /// server has `[encryption] default`).
    pub(super) async fn store_bucket_encryption(
        &self,
        bucket: &str,
        default: &BucketDefault,
    ) -> S3Result<()> {
        let doc = serde_json::to_vec(default).expect("strings serialize");
        self.put_document(bucket, DOCUMENT, doc).await?;
        self.encryption_defaults.invalidate(bucket);
        Ok(())
    }

    pub(super) async fn put_bucket_encryption_impl(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let rules = input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "The server-side encryption configuration must have exactly one rule."
            ));
        };
        let Some(by_default) = &rule.apply_server_side_encryption_by_default else {
            return Err(s3_error!(
                MalformedXML,
                "The rule must have ApplyServerSideEncryptionByDefault."
            ));
        };
        let algorithm = by_default.sse_algorithm.as_str();
        let kms_key_id = by_default.kms_master_key_id.clone();
        match algorithm {
            ServerSideEncryption::AES256 if kms_key_id.is_some() => return Err(invalid(
                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
            )),
            ServerSideEncryption::AES256 => {}
            ServerSideEncryption::AWS_KMS => {
                let name = kms_key_id
                    .as_deref()
                    .unwrap_or(self.store.sse.default_kms_key());
                if !self.store.sse.has_kms_key(name).await {
                    return Err(sse_error(SseError::NoSuchKey(name.to_owned())));
                }
            }
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The SSEAlgorithm must be AES256 or aws:kms."
                ))
            }
        }
        let default = BucketDefault {
            algorithm: algorithm.to_owned(),
            kms_key_id,
            bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
        };
        self.store_bucket_encryption(&input.bucket, &default)
            .await?;
        tracing::info!(bucket = %input.bucket, ?default, "bucket default encryption stored");
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    pub(super) async fn get_bucket_encryption_impl(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let Some(default) = self.bucket_encryption(bucket).await? else {
            return Err(custom_error(
                "ServerSideEncryptionConfigurationNotFoundError",
                http::StatusCode::NOT_FOUND,
                "The server side encryption configuration was not found",
            ));
        };
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from(default.algorithm.clone()),
                kms_master_key_id: default.kms_key_id.clone(),
            }),
            bucket_key_enabled: Some(default.bucket_key_enabled),
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        }))
    }

    pub(super) async fn delete_bucket_encryption_impl(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let name = &req.input.bucket;
        self.bucket(name).await?;
        self.delete_document(name, DOCUMENT).await?;
        self.encryption_defaults.invalidate(name);
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn customer(key: &[u8]) -> (String, String) {
        let engine = base64::engine::general_purpose::STANDARD;
        (engine.encode(key), engine.encode(md5::Md5::digest(key)))
    }

    #[test]
    fn customer_keys_are_checked_as_s3_does() {
        let (key, md5) = customer(&[7u8; 32]);
        let ok = CustomerHeaders {
            algorithm: Some("AES256"),
            key: Some(&key),
            key_md5: Some(&md5),
        };
        assert_eq!(ok.parse(true).unwrap().unwrap().md5, md5);
        assert_eq!(
            ok.parse(false).unwrap_err().code(),
            &S3ErrorCode::InvalidRequest
        );
        let bad_md5 = CustomerHeaders {
            key_md5: Some("AAAA"),
            ..ok
        };
        assert_eq!(
            bad_md5.parse(true).unwrap_err().status_code(),
            Some(http::StatusCode::BAD_REQUEST)
        );
        let (short, short_md5) = customer(&[7u8; 16]);
        let short = CustomerHeaders {
            algorithm: Some("AES256"),
            key: Some(&short),
            key_md5: Some(&short_md5),
        };
        assert!(short.parse(true).is_err());
        let no_algorithm = CustomerHeaders {
            algorithm: None,
            key: Some(&key),
            key_md5: Some(&md5),
        };
        assert!(no_algorithm.parse(true).is_err());
    }

    #[test]
    fn sse_headers_refuse_mixed_requests() {
        let aes = ServerSideEncryption::from_static(ServerSideEncryption::AES256);
        let kms = ServerSideEncryption::from_static(ServerSideEncryption::AWS_KMS);
        let none = || CustomerHeaders {
            algorithm: None,
            key: None,
            key_md5: None,
        };
        let h = |sse, kms_key_id| SseHeaders {
            sse,
            kms_key_id,
            customer: none(),
        };
        assert!(matches!(
            h(Some(&aes), None).request(true),
            Ok(Some(SseRequest::S3))
        ));
        assert!(matches!(
            h(Some(&kms), Some("k")).request(true),
            Ok(Some(SseRequest::Kms(Some(_))))
        ));
        assert!(matches!(
            h(Some(&kms), None).request(true),
            Ok(Some(SseRequest::Kms(None)))
        ));
        assert!(h(Some(&aes), Some("k")).request(true).is_err());
        assert!(h(None, Some("k")).request(true).is_err());
        let odd = ServerSideEncryption::from("aws:kms:dsse".to_string());
        assert!(h(Some(&odd), None).request(true).is_err());
        assert!(matches!(h(None, None).request(true), Ok(None)));
    }
}
