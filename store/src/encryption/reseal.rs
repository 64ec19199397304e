//! Re-sealing after a key rotation: every version whose data key is sealed by an older
//! version of its keyring key gets the same data key sealed by the newest one. The data is
//! never touched (the data key does not change), so a pass costs one small metadata write
//! per version, whatever the objects' sizes. Older key versions stay in the keyring: they
//! still open backups of the metadata taken before the pass.

use std::time::Duration;

use tokio::sync::watch;

use crate::{Store, StoreError};

/// Versions examined per metadata call.
const PAGE: usize = 500;
/// How often the keyring is looked at for a rotation.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    /// Versions sealed by a keyring key.
    pub examined: u64,
    /// Of them, sealed again with a newer key version.
    pub resealed: u64,
}

/// One pass over every bucket.
pub async fn reseal_all(store: &Store) -> Result<ResealReport, StoreError> {
    let mut report = ResealReport::default();
    let buckets = store.meta(|m| m.list_buckets()).await?;
    for bucket in buckets {
        let mut from = None;
        loop {
            let (name, start) = (bucket.name.clone(), from.take());
            let page = store
                .meta(move |m| m.sealed_versions(&name, start, PAGE))
                .await?;
            for (key, version_id, encryption) in page.versions {
                report.examined += 1;
                let resealed = store
                    .sse
                    .reseal(&encryption)
                    .await
                    .map_err(|e| StoreError::Internal(format!("re-sealing a data key: {e}")))?;
                let Some(resealed) = resealed else { continue };
                let (b, previous) = (bucket.name.clone(), encryption.sealed_key);
                let changed = store
                    .meta(move |m| m.reseal_version(&b, &key, &version_id, &previous, resealed))
                    .await?;
                report.resealed += u64::from(changed);
            }
            match page.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
    }
    Ok(report)
}

/// The setting that records the keyring state the last complete pass sealed for.
const DONE_SETTING: &str = "encryption.resealed-for";

/// Runs a pass whenever the keyring's newest key versions differ from those the last
/// complete pass sealed for (recorded in the metadata, so a rotation made while the server
/// was down is caught at start, and a start without one scans nothing; the very first start
/// with a keyring makes one pass to record the state), until `shutdown`.
pub async fn run_resealer(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = reseal_if_rotated(&store).await {
            tracing::warn!(error = %e, "re-sealing data keys failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A pass if a key was rotated since the last one; `None` when none was due.
pub async fn reseal_if_rotated(store: &Store) -> Result<Option<ResealReport>, StoreError> {
    let fingerprint = store
        .sse
        .fingerprint()
        .await
        .map_err(|e| StoreError::Internal(format!("reading the keyring: {e}")))?;
    let Some(fingerprint) = fingerprint.filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let done = store.meta(|m| m.setting(DONE_SETTING)).await?;
    if done.as_deref() == Some(fingerprint.as_bytes()) {
        return Ok(None);
    }
    let report = reseal_all(store).await?;
    if report.resealed > 0 {
        tracing::info!(
            examined = report.examined,
            resealed = report.resealed,
            keys = %fingerprint,
            "re-sealed data keys with the newest keyring key versions"
        );
    }
    store
        .meta(move |m| m.put_setting(DONE_SETTING, Some(fingerprint.as_bytes())))
        .await?;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::{keyring, KeyringConfig, SseRequest};
    use meridian_metadata::{BucketRecord, NewVersion, Storage, VersioningState};

    #[tokio::test]
    async fn a_rotation_reseals_every_version_once_and_old_data_keys_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        keyring::add_key(&path, "k1").unwrap();
        let mut config = crate::StoreConfig::in_dir(dir.path(), 1, 0);
        config.keyring = Some(KeyringConfig {
            path: path.clone(),
            must_exist: true,
            default_kms_key: "k1".into(),
        });
        let store = Store::open(&config).await.unwrap();
        store
            .meta(|m| {
                m.create_bucket(BucketRecord {
                    name: "b".into(),
                    versioning: VersioningState::Enabled,
                    ..BucketRecord::default()
                })
            })
            .await
            .unwrap();
        let mut keys = Vec::new();
        for i in 0..1200 {
            let (data_key, encryption) = store
                .sse
                .new_key(&SseRequest::Kms(Some("k1".into())))
                .await
                .unwrap();
            keys.push(data_key.as_bytes().to_vec());
            let new = NewVersion {
                encryption: Some(encryption),
                storage: Storage::Inline(Vec::new()),
                ..NewVersion::default()
            };
            store
                .meta(move |m| m.put_version("b", &format!("o{i:04}"), new))
                .await
                .unwrap();
        }
        // The first look records the state: nothing to do before a rotation.
        assert_eq!(
            reseal_if_rotated(&store).await.unwrap().unwrap().resealed,
            0
        );
        assert_eq!(reseal_if_rotated(&store).await.unwrap(), None);

        keyring::add_key(&path, "k1").unwrap();
        let report = reseal_if_rotated(&store).await.unwrap().unwrap();
        assert_eq!((report.examined, report.resealed), (1200, 1200));
        assert_eq!(reseal_if_rotated(&store).await.unwrap(), None);
        let record = store
            .meta(|m| m.get_version("b", "o0007", None))
            .await
            .unwrap()
            .unwrap();
        let encryption = record.encryption.unwrap();
        let opened = store.sse.data_key(&encryption, None).await.unwrap();
        assert_eq!(opened.as_bytes().to_vec(), keys[7]);
        let ring = keyring::Keyring::open(path, true, vec![]).unwrap();
        use crate::encryption::Kms;
        assert_eq!(
            ring.key_of(&encryption.sealed_key).await.unwrap(),
            ("k1".to_owned(), 2)
        );
    }
}
