//! Why sending a change to a peer failed, and whether the peer may fix it by itself.
//!
//! Transient failures (outages, timeouts, 5xx, throttling, a body damaged on the way) keep
//! the version PENDING, as on AWS. Failures the peer will not fix alone (credentials or grants
//! it refuses, a missing or unversioned destination bucket, a version id that exists there
//! with other content) make it FAILED. Both are retried, on a capped backoff, forever.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Whether a failure can heal by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Transient,
    Permanent,
}

/// A failed attempt to send a change to a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub class: ErrorClass,
    pub message: String,
    /// The peer could not be reached at all (connect failure or timeout).
    pub unreachable: bool,
    /// The S3 error code the peer answered, if it answered one.
    pub code: Option<String>,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError {
            class: ErrorClass::Transient,
            message: message.into(),
            unreachable: false,
            code: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            class: ErrorClass::Permanent,
            message: message.into(),
            unreachable: false,
            code: None,
        }
    }

    /// A failed SDK call `what` (e.g. "PutObject models/a"), classified.
    pub fn from_sdk<E>(what: &str, err: SdkError<E, HttpResponse>) -> SendError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::TimeoutError(_) => SendError {
                unreachable: true,
                ..SendError::transient(format!("{what}: timed out"))
            },
            SdkError::DispatchFailure(f) => SendError {
                unreachable: f.is_io() || f.is_timeout(),
                ..SendError::transient(format!("{what}: {}", chain(&err)))
            },
            SdkError::ResponseError(_) => {
                SendError::transient(format!("{what}: bad response: {}", chain(&err)))
            }
            SdkError::ServiceError(service) => {
                let code = err.code().map(str::to_owned);
                let status = service.raw().status().as_u16();
                let message = err.message().unwrap_or_default();
                let label = code.clone().unwrap_or_else(|| format!("HTTP {status}"));
                SendError {
                    class: classify(code.as_deref(), status),
                    message: format!("{what}: {label}: {message}"),
                    unreachable: false,
                    code,
                }
            }
            _ => SendError::permanent(format!("{what}: {}", chain(&err))),
        }
    }

    /// Whether the peer answered with this S3 error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// The error and its causes, on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn classify(code: Option<&str>, status: u16) -> ErrorClass {
    match code {
        Some(
            "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "BadDigest"
            | "IncompleteBody"
            | "XAmzContentSHA256Mismatch"
            | "OperationAborted",
        ) => ErrorClass::Transient,
        Some(_) => ErrorClass::Permanent,
        None if status >= 500 || status == 429 || status == 0 => ErrorClass::Transient,
        None => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_the_peer_will_not_fix_are_permanent() {
        for code in [
            "AccessDenied",
            "NoSuchBucket",
            "InvalidRequest",
            "InvalidAccessKeyId",
        ] {
            assert_eq!(classify(Some(code), 403), ErrorClass::Permanent, "{code}");
        }
        for code in [
            "SlowDown",
            "InternalError",
            "BadDigest",
            "ServiceUnavailable",
        ] {
            assert_eq!(classify(Some(code), 503), ErrorClass::Transient, "{code}");
        }
        assert_eq!(classify(None, 502), ErrorClass::Transient);
        assert_eq!(classify(None, 404), ErrorClass::Permanent);
    }
}
