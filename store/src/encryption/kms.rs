//! Where key-encryption keys live: the [`Kms`] trait seals and opens data keys by key name.
//! The data path only ever sees [`DataKey`]s and sealed blobs, so another key service (a
//! network KMS) is a new implementation of the trait and nothing else.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

use super::package::DataKey;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("no key named {0:?} in the keyring")]
    NoSuchKey(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("a sealed data key is malformed")]
    Sealed,
    #[error("the data key could not be sealed or opened with this key")]
    Crypto,
}

/// A key service: seals a version's data key under a named key (its newest version) and
/// opens what it sealed (whatever version sealed it).
#[async_trait::async_trait]
pub trait Kms: Send + Sync {
    /// Whether `name` can seal.
    async fn has_key(&self, name: &str) -> bool;
    async fn seal(&self, name: &str, data_key: &DataKey) -> Result<Vec<u8>, KmsError>;
    async fn unseal(&self, sealed: &[u8]) -> Result<DataKey, KmsError>;
    /// The key name and version that sealed `sealed`.
    async fn key_of(&self, sealed: &[u8]) -> Result<(String, u32), KmsError>;
    /// The newest version of every key, in name order: when it changes, a key was rotated
    /// and data keys sealed by older versions are due to be sealed again.
    async fn newest_versions(&self) -> Result<Vec<(String, u32)>, KmsError>;
}

const CUSTOMER_V1: u8 = 2;
const CUSTOMER_AAD: &[u8] = b"meridian-sse-c";

/// Seals a data key with an SSE-C customer key (which is never stored).
pub fn seal_with_customer_key(customer: &DataKey, data_key: &DataKey) -> Result<Vec<u8>, KmsError> {
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KmsError::Crypto)?;
    let mut body = data_key.as_bytes().to_vec();
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, customer.as_bytes()).map_err(|_| KmsError::Crypto)?,
    );
    let sealed = key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(CUSTOMER_AAD),
        &mut body,
    );
    let mut out = vec![CUSTOMER_V1];
    out.extend_from_slice(&nonce);
    if sealed.is_ok() {
        out.extend_from_slice(&body);
    }
    body.zeroize();
    sealed.map_err(|_| KmsError::Crypto)?;
    Ok(out)
}

/// Opens a data key sealed by [`seal_with_customer_key`]; a wrong customer key fails.
pub fn open_with_customer_key(customer: &DataKey, sealed: &[u8]) -> Result<DataKey, KmsError> {
    if sealed.len() != 1 + 12 + 32 + 16 || sealed[0] != CUSTOMER_V1 {
        return Err(KmsError::Sealed);
    }
    let nonce: [u8; 12] = sealed[1..13].try_into().expect("12 bytes");
    let mut body = sealed[13..].to_vec();
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, customer.as_bytes()).map_err(|_| KmsError::Crypto)?,
    );
    let opened = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(CUSTOMER_AAD),
            &mut body,
        )
        .map_err(|_| KmsError::Crypto)
        .and_then(|plain| DataKey::from_slice(plain).map_err(|_| KmsError::Crypto));
    body.zeroize();
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_customer_key_opens_its_seal() {
        let (customer, data) = (DataKey::generate().unwrap(), DataKey::generate().unwrap());
        let sealed = seal_with_customer_key(&customer, &data).unwrap();
        assert_eq!(
            open_with_customer_key(&customer, &sealed)
                .unwrap()
                .as_bytes(),
            data.as_bytes()
        );
        assert!(matches!(
            open_with_customer_key(&DataKey::generate().unwrap(), &sealed),
            Err(KmsError::Crypto)
        ));
        assert!(matches!(
            open_with_customer_key(&customer, &sealed[1..]),
            Err(KmsError::Sealed)
        ));
    }
}
