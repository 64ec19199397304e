//! A bucket policy document, as any principal with PutBucketPolicy can send it: parsing must
//! answer Ok or MalformedPolicy, never panic; a policy that parses must evaluate without
//! panicking for any request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_policy::{resource_of, Policy, RequestContext};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, "data", &|key| key.len() < 8) else {
        return;
    };
    for (action, key) in [("s3:GetObject", Some("a/b")), ("s3:ListBucket", None)] {
        let _ = policy.evaluate(&RequestContext {
            principal: Some("alice"),
            action,
            resource: resource_of("data", key),
            secure: false,
            source_ip: Some("10.1.2.3".parse().expect("an address")),
            prefix: Some("a/"),
            object_tags: Some(&[("t".to_owned(), "v".to_owned())]),
            encryption: meridian_policy::EncryptionHeaders {
                server_side_encryption: Some("AES256"),
                kms_key_id: None,
                customer_algorithm: None,
                others: &[("x-amz-copy-source", "data/a/b")],
            },
        });
    }
});
