//! ListObjects and ListObjectVersions.
//!
//! ListObjects walks `listing` (only keys whose latest version is not a delete marker);
//! ListObjectVersions walks `history` (every version and marker, newest first per key). Both
//! count objects and common prefixes together against `max_keys`, report a common prefix
//! only if it sorts after the marker (so a page that ended on a common prefix continues after
//! it), and touch O(page) rows.

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::record::{ChecksumAlgorithm, Nanos};
use crate::schema::{self, VersionSummary};
use crate::store::MetaStore;
use crate::walk::{KeyFilter, Step, Walk};

/// A ListObjects request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListObjectsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive; serves marker, start-after and continuation token alike.
    pub start_after: Option<String>,
    pub max_keys: usize,
}

impl Default for ListObjectsQuery {
    fn default() -> Self {
        ListObjectsQuery {
            prefix: String::new(),
            delimiter: None,
            start_after: None,
            max_keys: 1000,
        }
    }
}

/// One version as listings show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectSummary {
    pub key: String,
    pub version_id: String,
    pub mtime: Nanos,
    pub size: u64,
    pub etag: String,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub is_delete_marker: bool,
    pub is_latest: bool,
}

impl ObjectSummary {
    fn new(key: String, s: VersionSummary, is_latest: bool) -> Self {
        ObjectSummary {
            key,
            version_id: s.version_id,
            mtime: s.mtime,
            size: s.size,
            etag: s.etag,
            checksum_algorithm: s.checksum_algorithm,
            is_delete_marker: s.delete_marker,
            is_latest,
        }
    }
}

/// A page of ListObjects.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListObjectsPage {
    pub objects: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix returned, when truncated: pass it as `start_after`.
    pub next_marker: Option<String>,
}

/// A ListObjectVersions request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListVersionsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    /// Only with `key_marker`: continue after this version of that key.
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
}

impl Default for ListVersionsQuery {
    fn default() -> Self {
        ListVersionsQuery {
            prefix: String::new(),
            delimiter: None,
            key_marker: None,
            version_id_marker: None,
            max_keys: 1000,
        }
    }
}

/// A page of ListObjectVersions.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListVersionsPage {
    /// Versions and delete markers, keys ascending, newest first per key.
    pub versions: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    /// `None` when the page ended on a common prefix.
    pub next_version_id_marker: Option<String>,
}

/// What the last entry of a page was, for the next markers.
enum Last {
    Row(String, String),
    Prefix(String),
}

impl MetaStore {
    /// One page of the bucket's latest, non-deleted versions. `Err(NoSuchBucket)`.
    pub fn list_objects(
        &self,
        bucket: &str,
        q: &ListObjectsQuery,
    ) -> Result<ListObjectsPage, MetaError> {
        self.list_objects_keeping(bucket, q, None)
    }

    /// [`MetaStore::list_objects`] of the keys `keep` keeps.
    pub fn list_objects_keeping(
        &self,
        bucket: &str,
        q: &ListObjectsQuery,
        keep: Option<KeyFilter<'_>>,
    ) -> Result<ListObjectsPage, MetaError> {
        self.require_bucket(bucket)?;
        let mut page = ListObjectsPage::default();
        if q.max_keys == 0 {
            return Ok(page);
        }
        let start = q
            .start_after
            .as_deref()
            .map(|s| keys::just_after(&keys::object_prefix(bucket, s)));
        let mut walk = Walk::new(
            &self.inner,
            schema::LISTING,
            bucket,
            &q.prefix,
            q.delimiter.as_deref(),
            start,
            q.start_after.as_deref(),
        )
        .keeping(keep);
        let mut last = None;
        while let Some(step) = walk.next_step()? {
            if page.objects.len() + page.common_prefixes.len() == q.max_keys {
                page.is_truncated = true;
                page.next_marker = last;
                break;
            }
            match step {
                Step::Row { key, value, .. } => {
                    let summary: VersionSummary =
                        codec::decode(schema::LISTING, key.as_bytes(), &value)?.0;
                    last = Some(key.clone());
                    page.objects.push(ObjectSummary::new(key, summary, true));
                }
                Step::Prefix(p) => {
                    last = Some(p.clone());
                    page.common_prefixes.push(p);
                }
            }
        }
        Ok(page)
    }

    /// One page of every version and delete marker. `Err(InvalidArgument)` for a version-id
    /// marker without key marker, `Err(NoSuchBucket)`. A version-id marker that no longer
    /// exists restarts at the newest version of the key marker (repeating rather than
    /// skipping entries).
    pub fn list_versions(
        &self,
        bucket: &str,
        q: &ListVersionsQuery,
    ) -> Result<ListVersionsPage, MetaError> {
        self.list_versions_keeping(bucket, q, None)
    }

    /// [`MetaStore::list_versions`] of the keys `keep` keeps.
    pub fn list_versions_keeping(
        &self,
        bucket: &str,
        q: &ListVersionsQuery,
        keep: Option<KeyFilter<'_>>,
    ) -> Result<ListVersionsPage, MetaError> {
        self.require_bucket(bucket)?;
        let mut page = ListVersionsPage::default();
        if q.version_id_marker.is_some() && q.key_marker.is_none() {
            return Err(MetaError::InvalidArgument(
                "a version-id marker needs a key marker".into(),
            ));
        }
        if q.max_keys == 0 {
            return Ok(page);
        }
        // Where to start, and whether we start in the middle of a key's versions (then none of
        // the rows of that key is its latest).
        let (start, mut previous_key) = match (&q.key_marker, &q.version_id_marker) {
            (Some(km), Some(vid)) => {
                match self.read_version(&schema::version_key(bucket, km, vid))? {
                    Some(v) => (
                        Some(keys::just_after(&schema::history_key(
                            bucket, km, v.mtime, vid,
                        ))),
                        Some(km.clone()),
                    ),
                    None => (Some(keys::object_prefix(bucket, km)), None),
                }
            }
            (Some(km), None) => (keys::successor(&keys::object_prefix(bucket, km)), None),
            _ => (None, None),
        };
        let mut walk = Walk::new(
            &self.inner,
            schema::HISTORY,
            bucket,
            &q.prefix,
            q.delimiter.as_deref(),
            start,
            q.key_marker.as_deref(),
        )
        .keeping(keep);
        let mut last = None;
        while let Some(step) = walk.next_step()? {
            if page.versions.len() + page.common_prefixes.len() == q.max_keys {
                page.is_truncated = true;
                match last {
                    Some(Last::Row(k, v)) => {
                        (page.next_key_marker, page.next_version_id_marker) = (Some(k), Some(v))
                    }
                    Some(Last::Prefix(p)) => page.next_key_marker = Some(p),
                    None => {}
                }
                break;
            }
            match step {
                Step::Row { key, value, .. } => {
                    let summary: VersionSummary =
                        codec::decode(schema::HISTORY, key.as_bytes(), &value)?.0;
                    let is_latest = previous_key.as_deref() != Some(key.as_str());
                    previous_key = Some(key.clone());
                    last = Some(Last::Row(key.clone(), summary.version_id.clone()));
                    page.versions
                        .push(ObjectSummary::new(key, summary, is_latest));
                }
                Step::Prefix(p) => {
                    last = Some(Last::Prefix(p.clone()));
                    page.common_prefixes.push(p);
                }
            }
        }
        Ok(page)
    }
}
