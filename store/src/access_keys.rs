//! Access keys managed at run time: made, changed, sealed at rest and applied from peers.
//!
//! A secret is stored only sealed (AES-256-GCM, the access key as associated data, so a
//! sealed secret moved to another key's record does not open) by the node's key-encryption
//! key. That KEK is a random key of its own: sealed by the keyring's `meridian-access-keys`
//! key when a keyring is configured (and kept as the setting `access-keys/kek`), otherwise
//! kept in a key file of mode 0600 beside the metadata directory. Nothing here logs a secret.
//!
//! Records carry when and where they last changed; a peer's change is applied only when it
//! is newer (see `meridian_metadata::access_keys`), so replays and reorderings are harmless.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use meridian_metadata::{AccessKeyRecord, GrantAccess, KeyGrant, MetaStore, Nanos};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::encryption::{DataKey, Sse, ACCESS_KEYS_KEY};

const KEK_SETTING: &str = "access-keys/kek";
const SEALED_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no access key {0:?}")]
    NoSuchKey(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the key-encryption key of access keys: {0}")]
    Kek(String),
    #[error("a sealed secret does not open with this node's key-encryption key")]
    Sealed,
    #[error(transparent)]
    Meta(#[from] meridian_metadata::MetaError),
}

/// A secret in clear, wiped when dropped.
pub type Secret = Zeroizing<String>;

/// A key as the signature check needs it: its record and its secrets in clear.
pub struct OpenKey {
    pub record: AccessKeyRecord,
    pub secret: Secret,
    /// The secret before a rotation, while its grace period lasts.
    pub previous: Option<Secret>,
}

/// A key as one region sends it to another (over the peer link, which TLS protects): the
/// secrets in clear, since each region seals with its own KEK.
#[derive(Serialize, Deserialize)]
pub struct WireKey {
    pub record: AccessKeyRecord,
    pub secret: Secret,
    pub previous: Option<Secret>,
}

impl std::fmt::Debug for WireKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireKey")
            .field("access_key", &self.record.access_key)
            .finish_non_exhaustive()
    }
}

/// The node's access keys.
pub struct AccessKeys {
    meta: MetaStore,
    kek: LessSafeKey,
    region: String,
}

impl AccessKeys {
    /// Opens the key-encryption key (making it on first start) and the store of keys.
    pub async fn open(
        meta: MetaStore,
        sse: &Sse,
        kek_file: &Path,
        region: String,
    ) -> Result<AccessKeys, KeyError> {
        let kek = load_kek(&meta, sse, kek_file).await?;
        let kek = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, kek.as_bytes()).map_err(|_| KeyError::Sealed)?,
        );
        Ok(AccessKeys { meta, kek, region })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn seal(&self, access_key: &str, secret: &str) -> Vec<u8> {
        seal_with(&self.kek, access_key, secret.as_bytes())
    }

    fn unseal(&self, access_key: &str, sealed: &[u8]) -> Result<Secret, KeyError> {
        let plain = open_with(&self.kek, access_key, sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| KeyError::Sealed)?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// A stored record with its secrets opened.
    pub fn open_key(&self, record: AccessKeyRecord) -> Result<OpenKey, KeyError> {
        let secret = self.unseal(&record.access_key, &record.sealed_secret)?;
        let previous = match &record.previous_sealed_secret {
            Some(sealed) => Some(self.unseal(&record.access_key, sealed)?),
            None => None,
        };
        Ok(OpenKey {
            record,
            secret,
            previous,
        })
    }

    /// Every live (not deleted) key, opened. A key whose secret does not open is skipped
    /// and logged (by access key only).
    pub fn load_all(&self) -> Result<Vec<OpenKey>, KeyError> {
        let mut out = Vec::new();
        for record in self.meta.access_keys()? {
            if record.deleted {
                continue;
            }
            let access_key = record.access_key.clone();
            match self.open_key(record) {
                Ok(key) => out.push(key),
                Err(e) => {
                    tracing::error!(%access_key, error = %e, "an access key's secret does not open; the key is refused")
                }
            }
        }
        Ok(out)
    }

    /// Every record, tombstones included (secrets stay sealed).
    pub fn records(&self) -> Result<Vec<AccessKeyRecord>, KeyError> {
        Ok(self.meta.access_keys()?)
    }

    pub fn record(&self, access_key: &str) -> Result<Option<AccessKeyRecord>, KeyError> {
        Ok(self.meta.access_key(access_key)?)
    }

    /// A new key with a random access key and secret.
    pub fn create(
        &self,
        name: &str,
        expires: Option<Nanos>,
        by: &str,
    ) -> Result<OpenKey, KeyError> {
        let access_key = new_access_key();
        let secret = new_secret();
        let now = self.now();
        let record = AccessKeyRecord {
            access_key: access_key.clone(),
            name: name.to_owned(),
            sealed_secret: self.seal(&access_key, &secret),
            enabled: true,
            expires,
            created: now,
            changed_by: by.to_owned(),
            changed: now,
            changed_in: self.region.clone(),
            ..AccessKeyRecord::default()
        };
        self.meta.put_access_key(&record)?;
        Ok(OpenKey {
            record,
            secret,
            previous: None,
        })
    }

    /// Changes a live key with `change` and stores it as a new change.
    pub fn change(
        &self,
        access_key: &str,
        by: &str,
        change: impl FnOnce(&mut AccessKeyRecord) -> Result<(), KeyError>,
    ) -> Result<AccessKeyRecord, KeyError> {
        let mut record = self
            .meta
            .access_key(access_key)?
            .filter(|r| !r.deleted)
            .ok_or_else(|| KeyError::NoSuchKey(access_key.to_owned()))?;
        change(&mut record)?;
        // Later than the stored change even if this node's clock is behind the one that
        // made it: a change made here always wins over what this region last saw.
        record.changed = self.now().max(record.changed + 1);
        record.changed_in = self.region.clone();
        record.changed_by = by.to_owned();
        self.meta.put_access_key(&record)?;
        Ok(record)
    }

    pub fn set_enabled(
        &self,
        access_key: &str,
        enabled: bool,
        by: &str,
    ) -> Result<AccessKeyRecord, KeyError> {
        self.change(access_key, by, |r| {
            r.enabled = enabled;
            Ok(())
        })
    }

    /// Deletes a key: a tombstone without secrets or grants.
    pub fn delete(&self, access_key: &str, by: &str) -> Result<AccessKeyRecord, KeyError> {
        self.change(access_key, by, |r| {
            *r = AccessKeyRecord {
                access_key: r.access_key.clone(),
                name: r.name.clone(),
                created: r.created,
                changed: r.changed,
                deleted: true,
                ..AccessKeyRecord::default()
            };
            Ok(())
        })
    }

    /// A new secret; the old one stays valid for `grace` (none: refused at once).
    pub fn rotate(
        &self,
        access_key: &str,
        grace: std::time::Duration,
        by: &str,
    ) -> Result<OpenKey, KeyError> {
        let secret = new_secret();
        let sealed = self.seal(access_key, &secret);
        let now = self.now();
        let record = self.change(access_key, by, |r| {
            let old = std::mem::replace(&mut r.sealed_secret, sealed);
            if grace.is_zero() {
                r.previous_sealed_secret = None;
                r.previous_until = None;
            } else {
                r.previous_sealed_secret = Some(old);
                r.previous_until = Some(now.saturating_add(grace.as_nanos() as i64));
            }
            Ok(())
        })?;
        self.open_key(record)
    }

    pub fn grant(
        &self,
        access_key: &str,
        grant: KeyGrant,
        add: bool,
        by: &str,
    ) -> Result<AccessKeyRecord, KeyError> {
        if grant.bucket.is_empty() {
            return Err(KeyError::Invalid(
                "a grant names a bucket, a prefix* or *".into(),
            ));
        }
        if grant.access == GrantAccess::Admin && grant.bucket != "*" {
            return Err(KeyError::Invalid(
                "the admin grant is on bucket \"*\"".into(),
            ));
        }
        self.change(access_key, by, |r| {
            if add {
                if !r.grants.contains(&grant) {
                    r.grants.push(grant);
                    r.grants.sort();
                }
            } else if let Some(at) = r.grants.iter().position(|g| *g == grant) {
                r.grants.remove(at);
            } else {
                return Err(KeyError::Invalid(format!(
                    "{access_key} has no {} grant on {:?}",
                    grant.access.as_str(),
                    grant.bucket
                )));
            }
            Ok(())
        })
    }

    /// The key as a peer is sent it.
    pub fn wire(&self, record: AccessKeyRecord) -> Result<WireKey, KeyError> {
        if record.deleted {
            return Ok(WireKey {
                record,
                secret: Zeroizing::new(String::new()),
                previous: None,
            });
        }
        let open = self.open_key(record)?;
        Ok(WireKey {
            record: open.record,
            secret: open.secret,
            previous: open.previous,
        })
    }

    /// Applies a key a peer sent: stored (sealed with this node's KEK) when newer than
    /// what is here. Returns the stored record when it was applied.
    pub fn apply(&self, wire: WireKey) -> Result<Option<AccessKeyRecord>, KeyError> {
        let WireKey {
            mut record,
            secret,
            previous,
        } = wire;
        if record.access_key.is_empty() {
            return Err(KeyError::Invalid("a key without an access key".into()));
        }
        if !record.deleted {
            record.sealed_secret = self.seal(&record.access_key, &secret);
            record.previous_sealed_secret = previous.map(|p| self.seal(&record.access_key, &p));
        }
        Ok(self.meta.put_access_key(&record)?.then_some(record))
    }

    fn now(&self) -> Nanos {
        meridian_metadata::now_nanos()
    }
}

/// `plain` sealed by `key` (AES-256-GCM, a random nonce, `access_key` as associated data).
fn seal_with(key: &LessSafeKey, access_key: &str, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).expect("the system RNG works");
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(access_key.as_bytes()),
        &mut body,
    )
    .expect("AES-GCM seals any short input");
    let mut out = vec![SEALED_V1];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out
}

/// What [`seal_with`] sealed, in clear (wiped when dropped).
fn open_with(
    key: &LessSafeKey,
    access_key: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let (&version, rest) = sealed.split_first().ok_or(KeyError::Sealed)?;
    if version != SEALED_V1 || rest.len() < 12 + 16 {
        return Err(KeyError::Sealed);
    }
    let (nonce, body) = rest.split_at(12);
    let mut body = Zeroizing::new(body.to_vec());
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Sealed)?;
    let len = key
        .open_in_place(nonce, Aad::from(access_key.as_bytes()), &mut body)
        .map_err(|_| KeyError::Sealed)?
        .len();
    body.truncate(len);
    Ok(body)
}

/// Whole keys sealed with a key every node of one region derives from the region's root
/// secret (which each node has and etcd does not): how a region of several nodes keeps its
/// run-time keys in etcd without the secrets being readable there.
pub struct SharedSeal(LessSafeKey);

impl SharedSeal {
    /// HMAC-SHA256 of the region's name under its root secret, as an AES-256-GCM key.
    pub fn derive(region: &str, root_secret: &str) -> SharedSeal {
        let mac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, root_secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(
            &mac,
            format!("meridian-access-keys-shared\0{region}").as_bytes(),
        );
        SharedSeal(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, tag.as_ref()).expect("HMAC-SHA256 gives 32 bytes"),
        ))
    }

    /// `wire` sealed whole (its record's node-sealed secrets left out: each node seals its own).
    pub fn seal(&self, wire: &WireKey) -> Vec<u8> {
        let mut record = wire.record.clone();
        record.sealed_secret.clear();
        record.previous_sealed_secret = None;
        let plain = Zeroizing::new(
            serde_json::to_vec(&WireKey {
                record,
                secret: wire.secret.clone(),
                previous: wire.previous.clone(),
            })
            .expect("a key serializes"),
        );
        seal_with(&self.0, &wire.record.access_key, &plain)
    }

    /// The key [`SharedSeal::seal`] sealed as `access_key`.
    pub fn open(&self, access_key: &str, sealed: &[u8]) -> Result<WireKey, KeyError> {
        let plain = open_with(&self.0, access_key, sealed)?;
        let wire: WireKey = serde_json::from_slice(&plain).map_err(|_| KeyError::Sealed)?;
        if wire.record.access_key != access_key {
            return Err(KeyError::Sealed);
        }
        Ok(wire)
    }
}

/// `MK` and 18 characters of base32: as long as an AWS access key id, told apart by its start.
fn new_access_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; 18];
    aws_lc_rs::rand::fill(&mut random).expect("the system RNG works");
    let mut key = String::from("MK");
    key.extend(random.iter().map(|b| ALPHABET[(b & 31) as usize] as char));
    key
}

/// 30 random bytes as 40 base64 characters, like an AWS secret access key.
fn new_secret() -> Secret {
    let mut random = Zeroizing::new([0u8; 30]);
    aws_lc_rs::rand::fill(random.as_mut()).expect("the system RNG works");
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(random.as_ref()))
}

/// The KEK: the setting sealed by the keyring if one was made so, else the key file; made
/// on first start (by the keyring when there is one).
async fn load_kek(meta: &MetaStore, sse: &Sse, file: &Path) -> Result<DataKey, KeyError> {
    let kek_err = |e: &dyn std::fmt::Display| KeyError::Kek(e.to_string());
    if let Some(sealed) = meta.setting(KEK_SETTING)? {
        return sse
            .open_with_keyring(&sealed)
            .await
            .map_err(|e| kek_err(&e));
    }
    if file.exists() {
        return read_kek_file(file);
    }
    let kek = DataKey::generate().map_err(|e| kek_err(&e))?;
    match sse
        .seal_with_keyring(ACCESS_KEYS_KEY, &kek)
        .await
        .map_err(|e| kek_err(&e))?
    {
        Some(sealed) => meta.put_setting(KEK_SETTING, Some(&sealed))?,
        None => write_kek_file(file, &kek)?,
    }
    Ok(kek)
}

/// Where the key file goes by default: beside the metadata directory.
pub fn default_kek_file(metadata_path: &Path) -> PathBuf {
    match metadata_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("access-keys.key"),
        _ => PathBuf::from("access-keys.key"),
    }
}

fn read_kek_file(file: &Path) -> Result<DataKey, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |m: String| KeyError::Kek(format!("{}: {m}", file.display()));
    let mode = std::fs::metadata(file)
        .map_err(|e| err(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {:o} lets others read it; chmod 600 it",
            mode & 0o777
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?);
    let bytes =
        Zeroizing::new(hex::decode(text.trim()).map_err(|_| err("not 64 hex digits".into()))?);
    DataKey::from_slice(&bytes).map_err(|e| err(e.to_string()))
}

fn write_kek_file(file: &Path, kek: &DataKey) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| KeyError::Kek(format!("{}: {e}", file.display()));
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = Zeroizing::new(hex::encode(kek.as_bytes()) + "\n");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn keys(dir: &Path, region: &str) -> AccessKeys {
        let meta = MetaStore::open(&dir.join("meta"), Default::default()).unwrap();
        let sse = Sse::open(None).unwrap();
        AccessKeys::open(meta, &sse, &dir.join("access-keys.key"), region.into())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_shared_seal_opens_on_another_node_of_the_region_only() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, two) = (keys(a.path(), "east").await, keys(b.path(), "east").await);
        let made = one.create("job", None, "root").unwrap();
        let ak = made.record.access_key.clone();
        let wire = one.wire(one.record(&ak).unwrap().unwrap()).unwrap();
        let sealed = SharedSeal::derive("east", "root-secret").seal(&wire);
        // Neither the secret nor the node's sealed copy of it is in what etcd would hold.
        let needle = made.secret.as_bytes();
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
        // Another node of the region (its own KEK) opens it and stores it, usable there.
        let opened = SharedSeal::derive("east", "root-secret")
            .open(&ak, &sealed)
            .unwrap();
        assert!(opened.record.sealed_secret.is_empty());
        two.apply(opened).unwrap().expect("applied");
        let there = two.open_key(two.record(&ak).unwrap().unwrap()).unwrap();
        assert_eq!(*there.secret, *made.secret);
        // Another root secret, another region, or another key's name: it does not open.
        assert!(SharedSeal::derive("east", "other")
            .open(&ak, &sealed)
            .is_err());
        assert!(SharedSeal::derive("west", "root-secret")
            .open(&ak, &sealed)
            .is_err());
        assert!(SharedSeal::derive("east", "root-secret")
            .open("MKOTHER", &sealed)
            .is_err());
    }

    #[tokio::test]
    async fn secrets_are_sealed_and_open_only_for_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path(), "east").await;
        let made = keys.create("job", None, "root").unwrap();
        assert!(made.record.access_key.starts_with("MK") && made.record.access_key.len() == 20);
        assert_eq!(made.secret.len(), 40);
        let stored = keys.record(&made.record.access_key).unwrap().unwrap();
        let needle = made.secret.as_bytes();
        assert!(!stored
            .sealed_secret
            .windows(needle.len())
            .any(|w| w == needle));
        let opened = keys.open_key(stored.clone()).unwrap();
        assert_eq!(*opened.secret, *made.secret);
        // Moved to another key's record, the sealed secret does not open.
        assert!(keys.unseal("MKOTHER", &stored.sealed_secret).is_err());
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.path().join("access-keys.key"))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn rotation_keeps_the_old_secret_for_its_grace_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path(), "east").await;
        let made = keys.create("job", None, "root").unwrap();
        let ak = made.record.access_key.clone();
        let rotated = keys
            .rotate(&ak, std::time::Duration::from_secs(60), "root")
            .unwrap();
        assert_ne!(*rotated.secret, *made.secret);
        assert_eq!(
            rotated.previous.as_deref().map(|s| s.as_str()),
            Some(made.secret.as_str())
        );
        let again = keys.rotate(&ak, std::time::Duration::ZERO, "root").unwrap();
        assert!(again.previous.is_none());
    }

    #[tokio::test]
    async fn a_peer_change_applies_only_when_newer_and_a_deletion_wins() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let east = keys(d1.path(), "east").await;
        let west = keys(d2.path(), "west").await;
        let made = east.create("job", None, "root").unwrap();
        let ak = made.record.access_key.clone();
        let sent = east.wire(east.record(&ak).unwrap().unwrap()).unwrap();
        assert!(west.apply(sent).unwrap().is_some());
        let on_west = west.open_key(west.record(&ak).unwrap().unwrap()).unwrap();
        assert_eq!(
            *on_west.secret, *made.secret,
            "the same secret, sealed by west's KEK"
        );
        // The same change again changes nothing.
        let again = east.wire(east.record(&ak).unwrap().unwrap()).unwrap();
        assert!(west.apply(again).unwrap().is_none());
        // A deletion on east, then an older disable arriving late from elsewhere: the
        // deletion stays.
        let stale = west.wire(west.record(&ak).unwrap().unwrap()).unwrap();
        east.delete(&ak, "root").unwrap();
        assert!(east.apply(stale).unwrap().is_none());
        assert!(east.record(&ak).unwrap().unwrap().deleted);
        let tomb = east.wire(east.record(&ak).unwrap().unwrap()).unwrap();
        assert!(west.apply(tomb).unwrap().is_some());
        assert!(west.load_all().unwrap().is_empty());
        assert!(matches!(
            east.set_enabled(&ak, true, "root"),
            Err(KeyError::NoSuchKey(_))
        ));
    }

    #[tokio::test]
    async fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(keys(dir.path(), "east").await);
        let file = dir.path().join("access-keys.key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = MetaStore::open(&dir.path().join("meta2"), Default::default()).unwrap();
        let sse = Sse::open(None).unwrap();
        let err = AccessKeys::open(meta, &sse, &file, "east".into())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
