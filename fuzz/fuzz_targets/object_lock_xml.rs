//! Object Lock documents and headers as a client sends them: a `PutObjectLockConfiguration`,
//! `Retention` or `LegalHold` body through s3s's XML reader and the server's checks, and the
//! `x-amz-object-lock-*` header values of a write. An answer or an AWS error, never a panic;
//! what is accepted goes back to XML and reads back the same, and a default retention's date
//! does not overflow for any write time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_documents::object_lock::{
    config_dto, config_of, legal_hold_dto, legal_hold_of, requested_lock, retention_dto,
    retention_of,
};
use s3s::dto::{
    ObjectLockConfiguration, ObjectLockLegalHold, ObjectLockRetention, Timestamp, TimestampFormat,
};
use s3s::xml::{Deserialize, Deserializer};

const NOW: i64 = 1_800_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(dto) = ObjectLockConfiguration::deserialize(&mut Deserializer::new(body)) else {
                return;
            };
            let Ok(config) = config_of(&dto) else { return };
            assert_eq!(config_of(&config_dto(&config)).expect("reads back"), config);
            if let Some(d) = config.default_retention {
                for now in [i64::MIN, -1, 0, NOW, i64::MAX] {
                    let _ = d.until(now);
                }
            }
        }
        1 => {
            let Ok(dto) = ObjectLockRetention::deserialize(&mut Deserializer::new(body)) else {
                return;
            };
            let Ok(retention) = retention_of(Some(&dto), NOW) else {
                return;
            };
            if let Some(r) = retention {
                assert!(r.until > NOW, "an accepted date is in the future");
            }
            let again = retention_of(Some(&retention_dto(retention)), NOW).expect("reads back");
            assert_eq!(again, retention);
        }
        2 => {
            let Ok(dto) = ObjectLockLegalHold::deserialize(&mut Deserializer::new(body)) else {
                return;
            };
            if let Ok(on) = legal_hold_of(Some(&dto)) {
                assert_eq!(legal_hold_of(Some(&legal_hold_dto(on))), Ok(on));
            }
        }
        _ => {
            // Three header values separated by newlines: mode, retain-until date, legal hold.
            let text = String::from_utf8_lossy(body);
            let mut parts = text.splitn(3, '\n');
            let (mode, date, hold) = (parts.next(), parts.next(), parts.next());
            let date = date.and_then(|d| Timestamp::parse(TimestampFormat::DateTime, d).ok());
            if let Ok(lock) = requested_lock(mode, date.as_ref(), hold, NOW) {
                if let Some(r) = lock.retention {
                    assert!(r.until > NOW);
                }
            }
        }
    }
});
