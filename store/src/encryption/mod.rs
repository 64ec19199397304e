//! Server-side encryption below the API: every encrypted version has its own random data
//! key, sealed by a key-encryption key (a keyring key for SSE-S3 and SSE-KMS, the customer's
//! key for SSE-C) and kept sealed in the version record; its bytes are AEAD packages
//! ([`package`]) sealed before erasure coding. Keys are wiped when dropped and never logged.

pub mod keyring;
pub mod kms;
pub mod package;
pub mod reseal;

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::hmac;
use meridian_metadata::{Encryption, EncryptionMode};

pub use keyring::Keyring;
pub use kms::{Kms, KmsError};
pub use package::DataKey;

/// The keyring key SSE-S3 seals with, created in the keyring on first use.
pub const SSE_S3_KEY: &str = "meridian-sse-s3";
/// The key SSE-KMS uses when neither the request nor the configuration names one (AWS's
/// default is the account's `aws/s3` key).
pub const DEFAULT_KMS_KEY: &str = "meridian-default-kms";

/// Where the keyring is and whether the server may create it.
#[derive(Debug, Clone)]
pub struct KeyringConfig {
    pub path: PathBuf,
    /// The file must exist at start (it was configured); otherwise it is created, with
    /// SSE-S3's key and the default SSE-KMS key, the first time one of them seals.
    pub must_exist: bool,
    /// The key SSE-KMS uses when a request names none.
    pub default_kms_key: String,
}

/// The keyring key that seals the key-encryption key of access key secrets.
pub const ACCESS_KEYS_KEY: &str = "meridian-access-keys";

/// What a write asks for.
#[derive(Debug)]
pub enum SseRequest {
    S3,
    /// SSE-KMS with the named key, or the default one.
    Kms(Option<String>),
    Customer(CustomerKey),
}

/// An SSE-C key as the request gave it, checked against its MD5.
#[derive(Clone, Debug)]
pub struct CustomerKey {
    pub key: DataKey,
    /// Base64 of the key's MD5, as S3 returns it.
    pub md5: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("server-side encryption with a keyring is not configured on this server")]
    NoKeyring,
    #[error("KMS key {0:?} does not exist")]
    NoSuchKey(String),
    #[error("the object was encrypted with a customer key; the request must supply it")]
    CustomerKeyRequired,
    #[error("the customer key does not match the object's")]
    WrongCustomerKey,
    #[error("the object is not encrypted with a customer key")]
    NotCustomerEncrypted,
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Seal(#[from] package::SealError),
}

/// The node's encryption service: makes and opens data keys.
pub struct Sse {
    kms: Option<Arc<dyn Kms>>,
    default_kms_key: String,
}

impl Sse {
    pub fn open(config: Option<&KeyringConfig>) -> Result<Sse, KmsError> {
        let Some(config) = config else {
            return Ok(Sse {
                kms: None,
                default_kms_key: String::new(),
            });
        };
        let reserved = vec![
            SSE_S3_KEY.to_owned(),
            config.default_kms_key.clone(),
            ACCESS_KEYS_KEY.to_owned(),
        ];
        let ring = Keyring::open(config.path.clone(), config.must_exist, reserved)?;
        Ok(Sse {
            kms: Some(Arc::new(ring)),
            default_kms_key: config.default_kms_key.clone(),
        })
    }

    fn kms(&self) -> Result<&Arc<dyn Kms>, SseError> {
        self.kms.as_ref().ok_or(SseError::NoKeyring)
    }

    /// A new data key for a version (or an upload) and its record.
    pub async fn new_key(&self, request: &SseRequest) -> Result<(DataKey, Encryption), SseError> {
        let data = DataKey::generate()?;
        let record = match request {
            SseRequest::S3 => Encryption {
                mode: Some(EncryptionMode::S3),
                sealed_key: self.kms()?.seal(SSE_S3_KEY, &data).await?,
                ..Encryption::default()
            },
            SseRequest::Kms(name) => {
                let name = name.as_deref().unwrap_or(&self.default_kms_key);
                let kms = self.kms()?;
                if !kms.has_key(name).await {
                    return Err(SseError::NoSuchKey(name.to_owned()));
                }
                Encryption {
                    mode: Some(EncryptionMode::Kms),
                    kms_key_id: Some(name.to_owned()),
                    sealed_key: kms.seal(name, &data).await?,
                    ..Encryption::default()
                }
            }
            SseRequest::Customer(customer) => Encryption {
                mode: Some(EncryptionMode::Customer),
                sealed_key: kms::seal_with_customer_key(&customer.key, &data)?,
                customer_key_md5: Some(customer.md5.clone()),
                ..Encryption::default()
            },
        };
        Ok((data, record))
    }

    /// Opens a version's data key; SSE-C needs the customer's key, and only SSE-C takes one.
    pub async fn data_key(
        &self,
        record: &Encryption,
        customer: Option<&CustomerKey>,
    ) -> Result<DataKey, SseError> {
        match (record.mode, customer) {
            (Some(EncryptionMode::Customer), None) => Err(SseError::CustomerKeyRequired),
            (Some(EncryptionMode::Customer), Some(c)) => {
                if record.customer_key_md5.as_deref() != Some(c.md5.as_str()) {
                    return Err(SseError::WrongCustomerKey);
                }
                kms::open_with_customer_key(&c.key, &record.sealed_key)
                    .map_err(|_| SseError::WrongCustomerKey)
            }
            (_, Some(_)) => Err(SseError::NotCustomerEncrypted),
            (_, None) => Ok(self.kms()?.unseal(&record.sealed_key).await?),
        }
    }

    /// The newest version of every keyring key, as one string (`name:version,...`); it
    /// changes when a key is rotated. `None` without a keyring.
    pub async fn fingerprint(&self) -> Result<Option<String>, SseError> {
        let Some(kms) = &self.kms else {
            return Ok(None);
        };
        let newest = kms.newest_versions().await?;
        Ok(Some(
            newest
                .iter()
                .map(|(name, v)| format!("{name}:{v}"))
                .collect::<Vec<_>>()
                .join(","),
        ))
    }

    /// Seals `key` under the keyring key `name`; `None` without a keyring.
    pub async fn seal_with_keyring(
        &self,
        name: &str,
        key: &DataKey,
    ) -> Result<Option<Vec<u8>>, SseError> {
        match &self.kms {
            Some(kms) => Ok(Some(kms.seal(name, key).await?)),
            None => Ok(None),
        }
    }

    /// Opens what [`Sse::seal_with_keyring`] sealed.
    pub async fn open_with_keyring(&self, sealed: &[u8]) -> Result<DataKey, SseError> {
        Ok(self.kms()?.unseal(sealed).await?)
    }

    /// Whether `name` is a keyring key SSE-KMS can use.
    pub async fn has_kms_key(&self, name: &str) -> bool {
        match &self.kms {
            Some(kms) => kms.has_key(name).await,
            None => false,
        }
    }

    pub fn default_kms_key(&self) -> &str {
        &self.default_kms_key
    }

    /// Seals `data` again under the newest version of the keyring key that sealed `record`
    /// (a rotation); `None` when it already is, or the record is SSE-C.
    pub async fn reseal(&self, record: &Encryption) -> Result<Option<Encryption>, SseError> {
        if record.mode == Some(EncryptionMode::Customer) {
            return Ok(None);
        }
        let kms = self.kms()?;
        let (name, version) = kms.key_of(&record.sealed_key).await?;
        let data = kms.unseal(&record.sealed_key).await?;
        let sealed = kms.seal(&name, &data).await?;
        if kms.key_of(&sealed).await?.1 == version {
            return Ok(None);
        }
        Ok(Some(Encryption {
            sealed_key: sealed,
            ..record.clone()
        }))
    }
}

/// The ETag S3 gives a version: the plaintext's MD5 for SSE-S3 (and no encryption); for
/// SSE-KMS and SSE-C, which must not reveal the plaintext's digest, a keyed digest of it.
pub fn etag_of(mode: Option<EncryptionMode>, key: Option<&DataKey>, md5: &[u8; 16]) -> String {
    match (mode, key) {
        (Some(EncryptionMode::Kms | EncryptionMode::Customer), Some(key)) => {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), md5);
            hex::encode(&tag.as_ref()[..16])
        }
        _ => hex::encode(md5),
    }
}
