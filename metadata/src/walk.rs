//! The walk behind every listing: the keys of one bucket that start with a prefix, in order,
//! with keys that contain the delimiter after the prefix rolled up into common prefixes.
//!
//! A common prefix costs one seek: after reporting it the iterator seeks to the first key
//! after everything that starts with it, never visiting the keys under it. So a page of n
//! entries touches O(n) rows, whatever lies under its common prefixes.

use rocksdb::DBRawIterator;

use crate::error::MetaError;
use crate::keys;
use crate::store::Inner;

/// One step of a walk.
pub(crate) enum Step {
    /// A row whose object key has no delimiter after the prefix.
    Row { key: String, value: Vec<u8> },
    /// A common prefix (prefix up to and including the first delimiter after it).
    Prefix(String),
}

pub(crate) struct Walk<'a> {
    it: DBRawIterator<'a>,
    cf: &'static str,
    bucket_prefix: Vec<u8>,
    prefix: String,
    delimiter: Option<String>,
    /// Common prefixes `<=` this marker were reported by an earlier page: skip them.
    marker: Option<String>,
    /// Only keys it keeps are walked (and roll up into common prefixes); all when `None`.
    keep: Option<KeyFilter<'a>>,
}

/// Which object keys a listing shows (a node of a cluster shows the keys it answers for).
pub type KeyFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

impl<'a> Walk<'a> {
    /// Walks `cf` (keys `esc(bucket) esc(key) suffix`) from the row key `start` (or the start
    /// of the prefix, whichever is later).
    pub fn new(
        inner: &'a Inner,
        cf: &'static str,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<Vec<u8>>,
        marker: Option<&str>,
    ) -> Self {
        let range_start = keys::key_range_start(bucket, prefix);
        let upper = keys::successor(&range_start);
        let lower = match start {
            Some(s) if s > range_start => s,
            _ => range_start,
        };
        Walk {
            it: inner.iter(cf, &lower, upper),
            cf,
            bucket_prefix: keys::bucket_prefix(bucket),
            prefix: prefix.to_owned(),
            delimiter: delimiter.filter(|d| !d.is_empty()).map(str::to_owned),
            marker: marker.map(str::to_owned),
            keep: None,
        }
    }

    /// The same walk over only the keys `keep` keeps.
    pub fn keeping(self, keep: Option<KeyFilter<'a>>) -> Self {
        Walk { keep, ..self }
    }

    pub fn next_step(&mut self) -> Result<Option<Step>, MetaError> {
        loop {
            let Some(row_key) = self.it.key() else {
                self.it
                    .status()
                    .map_err(MetaError::db("walking a listing"))?;
                return Ok(None);
            };
            let rest = row_key
                .strip_prefix(self.bucket_prefix.as_slice())
                .ok_or_else(|| MetaError::corrupt(self.cf, row_key, "row outside its bucket"))?;
            let (raw, _suffix) = keys::read_component(rest)
                .ok_or_else(|| MetaError::corrupt(self.cf, row_key, "malformed key component"))?;
            let key =
                String::from_utf8(raw).map_err(|e| MetaError::corrupt(self.cf, row_key, e))?;
            if self.keep.is_some_and(|keep| !keep(&key)) {
                self.it.next();
                continue;
            }
            if let Some(common) = self.common_prefix(&key) {
                let mut under = self.bucket_prefix.clone();
                keys::push_escaped(&mut under, common.as_bytes());
                match keys::successor(&under) {
                    Some(next) => self.it.seek(next),
                    None => return Ok(None),
                }
                if self.marker.as_deref().is_some_and(|m| common.as_str() <= m) {
                    continue;
                }
                return Ok(Some(Step::Prefix(common)));
            }
            let step = Step::Row {
                key,
                value: self.it.value().unwrap_or_default().to_vec(),
            };
            self.it.next();
            return Ok(Some(step));
        }
    }

    fn common_prefix(&self, key: &str) -> Option<String> {
        let d = self.delimiter.as_deref()?;
        let after = key.get(self.prefix.len()..)?;
        let at = after.find(d)?;
        Some(key[..self.prefix.len() + at + d.len()].to_owned())
    }
}
