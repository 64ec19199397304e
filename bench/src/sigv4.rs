//! AWS Signature Version 4 for request headers (`Authorization: AWS4-HMAC-SHA256 ...`).
//!
//! The bench signs only what it needs: `host`, `x-amz-date`, `x-amz-content-sha256` and any
//! extra headers the caller names (e.g. `range`). Bodies are sent as `UNSIGNED-PAYLOAD`, so
//! signing costs a few microseconds per request and never reads the payload. The signing key
//! is derived once per UTC day and cached.

use std::sync::Mutex;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The `x-amz-content-sha256` value for bodies that are not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Characters SigV4 leaves unencoded: `A-Z a-z 0-9 - _ . ~`.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`QUERY_ENCODE`], and `/` separates path segments.
const PATH_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// URI-encodes an object path (`/bucket/key`) the way S3 canonicalises it (no double encoding).
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ENCODE).to_string()
}

/// Builds the canonical query string from unencoded pairs: each name and value URI-encoded,
/// sorted by name then value, joined with `&`. The same string is used on the wire.
pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, QUERY_ENCODE).to_string(),
                utf8_percent_encode(v, QUERY_ENCODE).to_string(),
            )
        })
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// What is signed: method, encoded path, canonical query, the signed headers (lower-case
/// names, any order) and the payload hash that is also sent as `x-amz-content-sha256`.
pub struct CanonicalRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// The canonical request text and the `;`-joined signed header names.
    pub fn to_text(&self) -> (String, String) {
        let mut headers = self.headers.clone();
        headers.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = String::with_capacity(256);
        for part in [self.method, "\n", self.path, "\n", self.query, "\n"] {
            text.push_str(part);
        }
        for (name, value) in &headers {
            text.push_str(name);
            text.push(':');
            text.push_str(value.trim());
            text.push('\n');
        }
        text.push('\n');
        let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        let signed = signed.join(";");
        text.push_str(&signed);
        text.push('\n');
        text.push_str(self.payload_hash);
        (text, signed)
    }
}

/// HMAC-SHA256 (RFC 2104) over `sha2`'s SHA-256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The SigV4 signing key for one day (`YYYYMMDD`), region and service.
pub fn signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The string to sign for a canonical request at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hash}")
}

/// Signs requests for one set of credentials, region and service.
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    service: String,
    /// (date, signing key) of the last request: recomputed only when the UTC day changes.
    cached_key: Mutex<Option<(String, [u8; 32])>>,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str, service: &str) -> Self {
        Signer {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            cached_key: Mutex::new(None),
        }
    }

    fn key_for(&self, date: &str) -> [u8; 32] {
        let mut cached = self.cached_key.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((d, key)) if d == date => *key,
            _ => {
                let key = signing_key(&self.secret_key, date, &self.region, &self.service);
                *cached = Some((date.to_string(), key));
                key
            }
        }
    }

    /// The hex signature of `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
    pub fn signature(&self, request: &CanonicalRequest<'_>, amz_date: &str) -> (String, String) {
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let (canonical, signed_headers) = request.to_text();
        let to_sign = string_to_sign(amz_date, &scope, &canonical);
        let signature = hex::encode(hmac_sha256(&self.key_for(date), to_sign.as_bytes()));
        (signature, signed_headers)
    }

    /// The `Authorization` header value for `request` at `amz_date`.
    pub fn authorization(&self, request: &CanonicalRequest<'_>, amz_date: &str) -> String {
        let (signature, signed_headers) = self.signature(request, amz_date);
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key,
            &amz_date[..8],
            self.region,
            self.service
        )
    }
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date_now() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .expect("formatting a UTC timestamp cannot fail")
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's published SigV4 examples (the aws-sig-v4-test-suite `get-vanilla`
    //! case, the IAM signing-key example, and the S3 "GET object" / "list objects" examples).
    use super::*;

    /// SHA-256 of the empty string: the payload hash of a request without a body.
    const EMPTY_PAYLOAD_SHA256: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const S3_ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn hmac_matches_rfc4231_test_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_keys_longer_than_a_block() {
        // RFC 4231 test case 6: a 131-byte key.
        let key = [0xaau8; 131];
        assert_eq!(
            hex::encode(hmac_sha256(
                &key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signing_key_matches_aws_iam_example() {
        assert_eq!(
            hex::encode(signing_key(SUITE_SECRET, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn get_vanilla_from_the_test_suite_signs_as_published() {
        let request = CanonicalRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: vec![
                ("x-amz-date", "20150830T123600Z"),
                ("host", "example.amazonaws.com"),
            ],
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        let (canonical, signed) = request.to_text();
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            string_to_sign(
                "20150830T123600Z",
                "20150830/us-east-1/service/aws4_request",
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let signer = Signer::new("AKIDEXAMPLE", SUITE_SECRET, "us-east-1", "service");
        assert_eq!(
            signer.authorization(&request, "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn s3_get_object_with_range_signs_as_published() {
        let request = CanonicalRequest {
            method: "GET",
            path: &encode_path("/test.txt"),
            query: "",
            headers: vec![
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        let signer = Signer::new(S3_ACCESS, S3_SECRET, "us-east-1", "s3");
        let (signature, signed) = signer.signature(&request, "20130524T000000Z");
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn s3_list_objects_with_query_signs_as_published() {
        let query = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let request = CanonicalRequest {
            method: "GET",
            path: "/",
            query: &query,
            headers: vec![
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        let signer = Signer::new(S3_ACCESS, S3_SECRET, "us-east-1", "s3");
        let (signature, _) = signer.signature(&request, "20130524T000000Z");
        assert_eq!(
            signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn paths_and_queries_are_encoded_like_s3_canonicalises_them() {
        assert_eq!(
            encode_path("/bucket/dir/test$file.text"),
            "/bucket/dir/test%24file.text"
        );
        assert_eq!(encode_path("/b/a b~c_d-e.f"), "/b/a%20b~c_d-e.f");
        assert_eq!(
            canonical_query(&[("uploadId", "a/b+c="), ("partNumber", "3")]),
            "partNumber=3&uploadId=a%2Fb%2Bc%3D"
        );
        assert_eq!(canonical_query(&[("uploads", "")]), "uploads=");
    }

    #[test]
    fn amz_date_has_the_basic_iso8601_shape() {
        let now = amz_date_now();
        assert_eq!(now.len(), 16);
        assert_eq!(&now[8..9], "T");
        assert!(now.ends_with('Z'));
    }
}
