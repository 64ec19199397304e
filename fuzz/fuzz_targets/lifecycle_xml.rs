//! A `PutBucketLifecycleConfiguration` body: s3s's XML reader, then the same conversion and
//! checks the server runs. A configuration or an AWS error, never a panic; one that passes
//! goes back to XML and reads back as the same model, and its date arithmetic does not
//! overflow for any creation time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_documents::lifecycle::xml::{config_of, dto_of};
use meridian_documents::lifecycle::Day;
use s3s::dto::BucketLifecycleConfiguration;
use s3s::xml::{Deserialize, Deserializer};

fuzz_target!(|data: &[u8]| {
    let mut d = Deserializer::new(data);
    let Ok(dto) = BucketLifecycleConfiguration::deserialize(&mut d) else {
        return;
    };
    let Ok(model) = config_of(dto) else {
        return;
    };
    if model.validate().is_err() {
        return;
    }
    let again = config_of(BucketLifecycleConfiguration {
        rules: dto_of(&model),
    })
    .expect("a stored configuration reads back");
    assert_eq!(again, model);
    for created in [i64::MIN, -1, 0, 1_700_000_000_000_000_000, i64::MAX] {
        for day in [Day::Utc, Day::Debug(1), Day::Debug(i64::MAX)] {
            let _ = model.current_expiry("key", 10, &[], created, day);
            let _ = model.noncurrent_expiry("key", 10, &[], created, day);
            let _ = model.upload_abort("key", created, day);
        }
    }
});
