//! A `PutBucketReplication` body: s3s's XML reader, then the same conversion and checks the
//! server runs. Must answer a configuration or an AWS error, never panic; a configuration
//! that passes goes back to XML and reads back as the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_documents::replication::xml::{config_of, dto_of};
use s3s::dto::ReplicationConfiguration;
use s3s::xml::{Deserialize, Deserializer};

const PEERS: [&str; 2] = ["west", "south"];

fuzz_target!(|data: &[u8]| {
    let mut d = Deserializer::new(data);
    let Ok(dto) = ReplicationConfiguration::deserialize(&mut d) else {
        return;
    };
    let Ok(model) = config_of(dto, &PEERS) else {
        return;
    };
    if model.validate().is_err() {
        return;
    }
    let again = config_of(dto_of(&model), &PEERS).expect("a stored configuration reads back");
    assert_eq!(again, model);
    let json = model.to_json();
    assert_eq!(
        meridian_documents::replication::ReplicationConfig::from_json(&json).unwrap(),
        model
    );
});
