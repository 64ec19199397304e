//! Request headers read the way the server answers them: `Range` and
//! `x-amz-copy-source-range`.

use std::ops::Range;

/// The bytes a `Range` header selects from an object of `size` bytes, or `None` when it is
/// not satisfiable (416 InvalidRange). A range that selects nothing — any range on an empty
/// object, such as the suffix `bytes=-500` — is not satisfiable (RFC 9110 §14.1.1), though
/// s3s's own check lets it through as `0..0`.
pub fn byte_range(range: &s3s::dto::Range, size: u64) -> Option<Range<u64>> {
    range.check(size).ok().filter(|r| r.start < r.end)
}

/// Why an `x-amz-copy-source-range` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyRangeError {
    /// Not `bytes=first-last` with `first <= last` (InvalidArgument).
    Malformed,
    /// Past the end of the source (InvalidRange).
    NotSatisfiable,
}

/// `x-amz-copy-source-range: bytes=first-last` (both required, inclusive, as S3 demands)
/// within a source of `size` bytes.
pub fn copy_source_range(value: &str, size: u64) -> Result<Range<u64>, CopyRangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(CopyRangeError::Malformed)?;
    let (a, b) = spec.split_once('-').ok_or(CopyRangeError::Malformed)?;
    let first: u64 = a.parse().map_err(|_| CopyRangeError::Malformed)?;
    let last: u64 = b.parse().map_err(|_| CopyRangeError::Malformed)?;
    if first > last {
        return Err(CopyRangeError::Malformed);
    }
    if last >= size {
        return Err(CopyRangeError::NotSatisfiable);
    }
    // last < size <= u64::MAX, so last + 1 does not overflow.
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::Range as Header;

    #[test]
    fn copy_source_ranges_are_inclusive_and_bounded() {
        assert_eq!(copy_source_range("bytes=0-9", 100), Ok(0..10));
        assert_eq!(copy_source_range("bytes=99-99", 100), Ok(99..100));
        assert_eq!(
            copy_source_range("bytes=5-", 100),
            Err(CopyRangeError::Malformed)
        );
        assert_eq!(
            copy_source_range("bytes=9-5", 100),
            Err(CopyRangeError::Malformed)
        );
        assert_eq!(
            copy_source_range("bytes=0-100", 100),
            Err(CopyRangeError::NotSatisfiable)
        );
        assert_eq!(
            copy_source_range("bytes=0-0", 0),
            Err(CopyRangeError::NotSatisfiable)
        );
    }

    #[test]
    fn nothing_selected_is_not_satisfiable() {
        let suffix = Header::parse("bytes=-500").unwrap();
        assert_eq!(byte_range(&suffix, 0), None);
        assert_eq!(byte_range(&suffix, 1000), Some(500..1000));
        assert_eq!(byte_range(&suffix, 10), Some(0..10));
        let open = Header::parse("bytes=0-").unwrap();
        assert_eq!(byte_range(&open, 0), None);
        assert_eq!(
            byte_range(&Header::parse("bytes=5-9").unwrap(), 7),
            Some(5..7)
        );
    }
}
