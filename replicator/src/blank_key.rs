//! Keys the AWS SDK refuses. The SDK takes a key that is only whitespace (`" "`, `"\t"`) for
//! a missing one and will not build the request, yet S3 stores such keys, and so does
//! Meridian: without this, a version under one could never reach a peer region or another
//! node of the region (whose copies then mark that node down for good).
//!
//! Such a key goes to the SDK as a stand-in that carries it (`\u{1}meridian-blank-key\u{1}`
//! and its bytes in hex), and [`BlankKeys`], an interceptor on every peer's client, puts the
//! real key back into the request's path before the request is signed.

use std::borrow::Cow;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};

const STAND_IN: &str = "\u{1}meridian-blank-key\u{1}";
/// The stand-in as the SDK writes it into a path.
const STAND_IN_IN_PATH: &str = "%01meridian-blank-key%01";

/// The key to give the SDK for `key`.
pub fn sdk_key(key: &str) -> Cow<'_, str> {
    if !key.is_empty() && key.trim().is_empty() {
        Cow::Owned(format!("{STAND_IN}{}", hex::encode(key)))
    } else {
        Cow::Borrowed(key)
    }
}

/// `uri` with a stand-in put back to the key it carries (`None`: it has none).
fn restored(uri: &str) -> Option<String> {
    let at = uri.find(STAND_IN_IN_PATH)?;
    let rest = &uri[at + STAND_IN_IN_PATH.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(rest.len());
    let key = String::from_utf8(hex::decode(&rest[..end]).ok()?).ok()?;
    if key.is_empty() || !key.trim().is_empty() {
        return None;
    }
    let encoded = percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC);
    Some(format!("{}{encoded}{}", &uri[..at], &rest[end..]))
}

/// Puts blank keys back into request paths (see the module's comment).
#[derive(Debug)]
pub(crate) struct BlankKeys;

impl Intercept for BlankKeys {
    fn name(&self) -> &'static str {
        "meridian-blank-keys"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request_mut();
        if let Some(uri) = restored(request.uri()) {
            request.set_uri(uri)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blank_keys_get_a_stand_in_and_it_comes_back_in_the_path() {
        assert_eq!(sdk_key("a b"), "a b");
        assert_eq!(sdk_key(""), "");
        let stand_in = sdk_key(" \t");
        assert_ne!(stand_in, " \t");
        // The SDK percent-encodes the stand-in's control characters in the path.
        let path = format!(
            "http://127.0.0.1:9000/b/{}?partNumber=2&uploadId=u",
            stand_in.replace('\u{1}', "%01")
        );
        assert_eq!(
            restored(&path).as_deref(),
            Some("http://127.0.0.1:9000/b/%20%09?partNumber=2&uploadId=u")
        );
        assert_eq!(restored("http://h/b/%20"), None);
        // A stand-in that does not carry a blank key is left alone.
        let not_blank = format!("http://h/b/{STAND_IN_IN_PATH}{}", hex::encode("x"));
        assert_eq!(restored(&not_blank), None);
    }
}
