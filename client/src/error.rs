//! Why one S3 operation failed, with the object it concerned, and the short code under which
//! the report counts it (the S3 `<Code>`, `HTTP<status>` when the server sent none, or one of
//! the bench's own codes such as `ContentMismatch`).

/// A failed operation.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The server answered with an error status.
    #[error("{op} {target}: HTTP {status} {code}: {message}")]
    S3 {
        op: &'static str,
        target: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The request could not be sent or the response could not be read.
    #[error("{op} {target}: {detail}")]
    Transport {
        op: &'static str,
        target: String,
        detail: String,
    },
    /// A GET body differed from what the bench wrote under that key.
    #[error("{target}: content differs from what was written, in the chunk at byte {offset}")]
    ContentMismatch { target: String, offset: u64 },
    /// A GET body was shorter or longer than the object size.
    #[error("{target}: expected {expected} bytes, received {received}")]
    SizeMismatch {
        target: String,
        expected: u64,
        received: u64,
    },
    /// A listing did not return the number of keys the bench put under the prefix.
    #[error("listing {target}: expected {expected} keys, found {found}")]
    ListCountMismatch {
        target: String,
        expected: u64,
        found: u64,
    },
    /// A 2xx response whose body lacked what the operation needs (e.g. an UploadId).
    #[error("{op} {target}: malformed response: {detail}")]
    BadResponse {
        op: &'static str,
        target: String,
        detail: String,
    },
    /// The operation did not finish within `--op-timeout`.
    #[error("{op} {target}: no answer within {seconds} s")]
    Timeout {
        op: &'static str,
        target: String,
        seconds: f64,
    },
}

impl OpError {
    /// The code the report counts this error under.
    pub fn code(&self) -> String {
        match self {
            OpError::S3 { code, .. } => code.clone(),
            OpError::Transport { .. } => "TransportError".into(),
            OpError::ContentMismatch { .. } => "ContentMismatch".into(),
            OpError::SizeMismatch { .. } => "SizeMismatch".into(),
            OpError::ListCountMismatch { .. } => "ListCountMismatch".into(),
            OpError::BadResponse { .. } => "BadResponse".into(),
            OpError::Timeout { .. } => "Timeout".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_under_the_s3_code_or_a_bench_code() {
        let s3 = OpError::S3 {
            op: "GetObject",
            target: "b/k".into(),
            status: 404,
            code: "NoSuchKey".into(),
            message: "gone".into(),
        };
        assert_eq!(s3.code(), "NoSuchKey");
        assert_eq!(
            OpError::ContentMismatch {
                target: "b/k".into(),
                offset: 0
            }
            .code(),
            "ContentMismatch"
        );
        assert!(
            s3.to_string().contains("b/k"),
            "messages name the object: {s3}"
        );
    }
}
