//! The local keyring: named 256-bit key-encryption keys in one TOML file (mode 0600), each
//! with versions, the newest sealing and every one still opening. It is the first [`Kms`];
//! a network KMS (Vault's transit engine first: it seals and opens by key name and version
//! exactly like this, over HTTPS; KMIP later) implements the same trait.
//!
//! ```toml
//! [[keys]]
//! name = "testkey-1"
//! version = 1
//! created = "2026-12-02T19:30:00Z"
//! material = "<base64 of 32 bytes>"
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::kms::{Kms, KmsError};
use super::package::DataKey;

const SEALED_V1: u8 = 1;
const AAD_PREFIX: &[u8] = b"meridian-data-key";

#[derive(Clone, Serialize, Deserialize)]
struct KeyEntry {
    name: String,
    version: u32,
    created: String,
    material: String,
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        self.material.zeroize();
    }
}

#[derive(Default, Serialize, Deserialize)]
struct KeyringFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

/// Key material by name and version.
type Keys = BTreeMap<String, BTreeMap<u32, DataKey>>;

/// A keyring file, loaded at start and again when it changes on disk (a key added or
/// rotated by `meridian kms` while the server runs).
pub struct Keyring {
    path: PathBuf,
    /// Keys the server adds itself (creating the file if needed) the first time they seal.
    reserved: Vec<String>,
    keys: Mutex<(Keys, Option<std::time::SystemTime>)>,
    /// When the file was last looked at for a rotation before a seal.
    looked: Mutex<Option<std::time::Instant>>,
}

/// A seal looks for a rotation at most this often (a stat of the file); a rotation is in
/// force for new data keys within this time.
const ROTATION_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
}

fn read_file(path: &Path) -> Result<(Keys, std::time::SystemTime), KmsError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KmsError::Keyring(format!(
            "{} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))?;
    let parsed: Result<KeyringFile, _> = toml::from_str(&text);
    text.zeroize();
    let file = parsed.map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))?;
    let mut keys = Keys::new();
    for entry in &file.keys {
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&entry.material)
            .map_err(|_| KmsError::Keyring(format!("key {} is not base64", entry.name)))?;
        let key = DataKey::from_slice(&raw)
            .map_err(|_| KmsError::Keyring(format!("key {} is not 32 bytes", entry.name)));
        raw.zeroize();
        keys.entry(entry.name.clone())
            .or_default()
            .insert(entry.version, key?);
    }
    Ok((keys, meta.modified().unwrap_or(std::time::UNIX_EPOCH)))
}

/// The names of the keys in the keyring file (none when there is no file).
pub fn key_names(path: &Path) -> Result<Vec<String>, KmsError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(read_file(path)?.0.into_keys().collect())
}

/// The newest version of key `name` in the keyring file (0: no such key, or no file).
pub fn key_versions(path: &Path, name: &str) -> Result<u32, KmsError> {
    if !path.exists() {
        return Ok(0);
    }
    let (keys, _) = read_file(path)?;
    Ok(keys
        .get(name)
        .and_then(|v| v.keys().next_back().copied())
        .unwrap_or(0))
}

/// Holds `path.lock` exclusively while the keyring file is rewritten, so `meridian kms` and
/// a server pruning old versions never lose each other's change.
fn locked<R>(path: &Path, f: impl FnOnce() -> Result<R, KmsError>) -> Result<R, KmsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| KmsError::Keyring(e.to_string()))?;
    }
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.with_extension("lock"))
        .map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))?;
    lock.lock()
        .map_err(|e| KmsError::Keyring(format!("locking {}: {e}", path.display())))?;
    f()
}

fn load_file(path: &Path) -> Result<KeyringFile, KmsError> {
    read_file(path)?;
    let mut text = std::fs::read_to_string(path).map_err(|e| KmsError::Keyring(e.to_string()))?;
    let file = toml::from_str(&text).map_err(|e| KmsError::Keyring(e.to_string()));
    text.zeroize();
    file
}

/// Writes the keyring file whole (mode 0600, through a synced temporary file and a rename).
fn write_file(path: &Path, file: &KeyringFile) -> Result<(), KmsError> {
    let mut text = String::from(
        "# Meridian keyring: the keys that seal every encrypted object's data key.\n\
         # Back this file up and keep it secret: without it those objects cannot be read.\n",
    );
    text.push_str(&toml::to_string(file).map_err(|e| KmsError::Keyring(e.to_string()))?);
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    text.zeroize();
    written.map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))
}

/// Adds a version of key `name` (version 1 when new) to the keyring file, creating the file
/// with mode 0600 if needed; returns the version. Used by `meridian kms add-key` and
/// `rotate`, and by the server the first time it seals with a keyring that does not exist.
pub fn add_key(path: &Path, name: &str) -> Result<u32, KmsError> {
    if !is_valid_name(name) {
        return Err(KmsError::Keyring(format!(
            "{name:?} is not a key name (letters, digits and -_./: only)"
        )));
    }
    locked(path, || {
        let mut file = if path.exists() {
            load_file(path)?
        } else {
            KeyringFile::default()
        };
        let version = file
            .keys
            .iter()
            .filter(|k| k.name == name)
            .map(|k| k.version)
            .max()
            .unwrap_or(0)
            + 1;
        let material = DataKey::generate().map_err(|e| KmsError::Keyring(e.to_string()))?;
        file.keys.push(KeyEntry {
            name: name.to_owned(),
            version,
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            material: base64::engine::general_purpose::STANDARD.encode(material.as_bytes()),
        });
        write_file(path, &file)?;
        Ok(version)
    })
}

impl Keyring {
    /// Opens the keyring at `path`. A missing file is an error if `must_exist`; otherwise it
    /// is created the first time a `reserved` key (SSE-S3's, the default SSE-KMS key) seals.
    pub fn open(
        path: PathBuf,
        must_exist: bool,
        reserved: Vec<String>,
    ) -> Result<Keyring, KmsError> {
        let loaded = if path.exists() {
            let (keys, mtime) = read_file(&path)?;
            (keys, Some(mtime))
        } else if !must_exist {
            (Keys::new(), None)
        } else {
            return Err(KmsError::Keyring(format!(
                "{} does not exist",
                path.display()
            )));
        };
        Ok(Keyring {
            path,
            reserved,
            keys: Mutex::new(loaded),
            looked: Mutex::new(None),
        })
    }

    /// Re-reads the file if it changed since it was loaded.
    fn refresh(&self) -> Result<(), KmsError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if mtime.is_some() && mtime != keys.1 {
            let (k, m) = read_file(&self.path)?;
            *keys = (k, Some(m));
        }
        Ok(())
    }

    fn with_key<R>(
        &self,
        name: &str,
        version: Option<u32>,
        f: impl FnOnce(u32, &DataKey) -> R,
    ) -> Result<R, KmsError> {
        let find = |keys: &Keys| {
            let versions = keys.get(name)?;
            match version {
                Some(v) => versions.get_key_value(&v),
                None => versions.iter().next_back(),
            }
            .map(|(v, k)| (*v, k.clone()))
        };
        if version.is_none() {
            // Sealing uses the newest version: look for a rotation first (one stat, at most
            // every ROTATION_CHECK).
            let mut looked = self.looked.lock().unwrap_or_else(|p| p.into_inner());
            if looked.is_none_or(|t| t.elapsed() >= ROTATION_CHECK) {
                *looked = Some(std::time::Instant::now());
                drop(looked);
                self.refresh()?;
            }
        }
        let mut found = find(&self.keys.lock().unwrap_or_else(|p| p.into_inner()).0);
        if found.is_none() {
            self.refresh()?;
            found = find(&self.keys.lock().unwrap_or_else(|p| p.into_inner()).0);
        }
        if found.is_none() && version.is_none() && self.reserved.iter().any(|r| r == name) {
            // One creator at a time; a concurrent one finds the key on its second look.
            static CREATING: Mutex<()> = Mutex::new(());
            let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
            self.refresh()?;
            if find(&self.keys.lock().unwrap_or_else(|p| p.into_inner()).0).is_none() {
                add_key(&self.path, name)?;
                tracing::warn!(path = %self.path.display(), key = name, "added the server-side encryption key to the keyring: BACK THE KEYRING UP, encrypted objects cannot be read without it");
            }
            self.refresh()?;
            found = find(&self.keys.lock().unwrap_or_else(|p| p.into_inner()).0);
        }
        let (v, key) = found.ok_or_else(|| KmsError::NoSuchKey(name.to_owned()))?;
        Ok(f(v, &key))
    }
}

fn cipher(key: &DataKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("32-byte key"))
}

fn aad(name: &str, version: u32) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[async_trait::async_trait]
impl Kms for Keyring {
    async fn has_key(&self, name: &str) -> bool {
        self.with_key(name, None, |_, _| ()).is_ok()
    }

    async fn seal(&self, name: &str, data_key: &DataKey) -> Result<Vec<u8>, KmsError> {
        self.with_key(name, None, |version, kek| {
            let mut nonce = [0u8; 12];
            aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KmsError::Crypto)?;
            let mut out = vec![SEALED_V1, name.len() as u8];
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&nonce);
            let mut body = data_key.as_bytes().to_vec();
            let sealed = cipher(kek).seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name, version)),
                &mut body,
            );
            if sealed.is_err() {
                body.zeroize();
                return Err(KmsError::Crypto);
            }
            out.extend_from_slice(&body);
            Ok(out)
        })?
    }

    async fn unseal(&self, sealed: &[u8]) -> Result<DataKey, KmsError> {
        let (name, version, nonce, body) = parse_sealed(sealed)?;
        self.with_key(&name, Some(version), |_, kek| {
            let mut body = body.to_vec();
            let opened = cipher(kek)
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad(&name, version)),
                    &mut body,
                )
                .map_err(|_| KmsError::Crypto)
                .and_then(|plain| DataKey::from_slice(plain).map_err(|_| KmsError::Crypto));
            body.zeroize();
            opened
        })?
    }

    async fn key_of(&self, sealed: &[u8]) -> Result<(String, u32), KmsError> {
        let (name, version, ..) = parse_sealed(sealed)?;
        Ok((name, version))
    }

    async fn newest_versions(&self) -> Result<Vec<(String, u32)>, KmsError> {
        self.refresh()?;
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Ok(keys
            .0
            .iter()
            .filter_map(|(name, versions)| Some((name.clone(), *versions.keys().next_back()?)))
            .collect())
    }
}

/// A sealed data key taken apart: key name, key version, nonce, ciphertext with tag.
type SealedParts<'a> = (String, u32, [u8; 12], &'a [u8]);

fn parse_sealed(sealed: &[u8]) -> Result<SealedParts<'_>, KmsError> {
    let bad = || KmsError::Sealed;
    let (&format, rest) = sealed.split_first().ok_or_else(bad)?;
    let (&len, rest) = rest.split_first().ok_or_else(bad)?;
    if format != SEALED_V1 || rest.len() < len as usize + 4 + 12 + 32 + 16 {
        return Err(bad());
    }
    let (name, rest) = rest.split_at(len as usize);
    let name = std::str::from_utf8(name).map_err(|_| bad())?.to_owned();
    let (version, rest) = rest.split_at(4);
    let (nonce, body) = rest.split_at(12);
    Ok((
        name,
        u32::from_be_bytes(version.try_into().expect("4 bytes")),
        nonce.try_into().expect("12 bytes"),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seals_opens_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        assert!(Keyring::open(path.clone(), true, vec![]).is_err());
        assert_eq!(add_key(&path, "testkey-1").unwrap(), 1);
        assert_eq!(add_key(&path, "testkey-2").unwrap(), 1);
        assert!(add_key(&path, "bad name").is_err());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let ring = Keyring::open(path.clone(), true, vec![]).unwrap();
        let data = DataKey::generate().unwrap();
        let sealed = ring.seal("testkey-1", &data).await.unwrap();
        assert!(!sealed.windows(32).any(|w| w == data.as_bytes()));
        assert_eq!(
            ring.unseal(&sealed).await.unwrap().as_bytes(),
            data.as_bytes()
        );
        assert!(matches!(
            ring.seal("nope", &data).await,
            Err(KmsError::NoSuchKey(_))
        ));

        // A rotation by another process: new seals use version 2, version 1 still opens.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(add_key(&path, "testkey-1").unwrap(), 2);
        let filetime = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(filetime)
            .unwrap();
        let _ = ring.refresh();
        let resealed = ring.seal("testkey-1", &data).await.unwrap();
        assert_eq!(
            ring.key_of(&resealed).await.unwrap(),
            ("testkey-1".into(), 2)
        );
        assert_eq!(
            ring.unseal(&sealed).await.unwrap().as_bytes(),
            data.as_bytes()
        );

        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            ring.unseal(&tampered).await,
            Err(KmsError::Crypto)
        ));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Keyring::open(path, true, vec![]).is_err());
    }

    #[tokio::test]
    async fn the_embedded_default_creates_its_keyring_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keyring.toml");
        let ring = Keyring::open(path.clone(), false, vec!["sse-s3".into()]).unwrap();
        assert!(!path.exists());
        let data = DataKey::generate().unwrap();
        let sealed = ring.seal("sse-s3", &data).await.unwrap();
        assert!(path.exists());
        assert_eq!(
            ring.unseal(&sealed).await.unwrap().as_bytes(),
            data.as_bytes()
        );
    }
}
