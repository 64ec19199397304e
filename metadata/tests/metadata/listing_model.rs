//! ListObjects and ListObjectVersions against a brute-force model, on random histories:
//! prefixes, delimiters (one and several bytes), markers, and pagination through every page.

use std::collections::BTreeMap;

use meridian_metadata::{
    DeleteOptions, ListObjectsQuery, ListVersionsQuery, MetaStore, VersioningState,
};
use proptest::prelude::*;

use crate::support::{inline, make_bucket, TestStore};

const B: &str = "b";

/// One version in the model: (version id, delete marker?).
type History = Vec<(String, bool)>;

#[derive(Clone, Debug)]
enum Op {
    Put(String),
    Delete(String),
    /// Remove the n-th newest version of the key (modulo its count).
    DeleteVersion(String, usize),
}

fn key() -> impl Strategy<Value = String> {
    // A small alphabet so keys share prefixes and delimiters; "\0" and a multi-byte character
    // check the key encoding.
    proptest::collection::vec(
        prop::sample::select(vec!["a", "b", "/", "a/", "\0", "é", "z"]),
        1..5,
    )
    .prop_map(|parts| parts.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => key().prop_map(Op::Put),
        2 => key().prop_map(Op::Delete),
        1 => (key(), 0..3usize).prop_map(|(k, n)| Op::DeleteVersion(k, n)),
    ]
}

fn delimiter() -> impl Strategy<Value = Option<String>> {
    prop::sample::select(vec![
        None,
        Some("/".to_string()),
        Some("a/".to_string()),
        Some("é".to_string()),
    ])
}

fn prefix() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "a/", "b", "é", "\0"]).prop_map(str::to_string)
}

/// Applies `ops` to the store (versioning enabled) and to the model; newest first per key.
fn populate(store: &MetaStore, ops: &[Op]) -> BTreeMap<String, History> {
    let mut model: BTreeMap<String, History> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k) => {
                let v = store.put_version(B, k, inline("x")).unwrap().version;
                model
                    .entry(k.clone())
                    .or_default()
                    .insert(0, (v.version_id, false));
            }
            Op::Delete(k) => {
                let out = store
                    .delete_object(B, k, None, DeleteOptions::default())
                    .unwrap();
                model
                    .entry(k.clone())
                    .or_default()
                    .insert(0, (out.version_id.unwrap(), true));
            }
            Op::DeleteVersion(k, n) => {
                let Some(h) = model.get_mut(k) else { continue };
                let (vid, _) = h.remove(n % h.len());
                store
                    .delete_object(B, k, Some(&vid), DeleteOptions::default())
                    .unwrap();
                if h.is_empty() {
                    model.remove(k);
                }
            }
        }
    }
    model
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Key(String, String, bool, bool),
    Prefix(String),
}

/// The sequence of entries a listing walks, before markers and paging: keys (or versions) not
/// under a common prefix, and each common prefix once, in key order.
fn entries(
    model: &BTreeMap<String, History>,
    prefix: &str,
    delimiter: Option<&str>,
    versions: bool,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for (k, h) in model
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
    {
        if !versions && h[0].1 {
            continue; // ListObjects sees only keys whose latest version is not a marker
        }
        if let Some(d) = delimiter {
            if let Some(at) = k[prefix.len()..].find(d) {
                let cp = k[..prefix.len() + at + d.len()].to_string();
                if out.last() != Some(&Entry::Prefix(cp.clone())) {
                    out.push(Entry::Prefix(cp));
                }
                continue;
            }
        }
        if versions {
            for (i, (vid, marker)) in h.iter().enumerate() {
                out.push(Entry::Key(k.clone(), vid.clone(), *marker, i == 0));
            }
        } else if !h[0].1 {
            out.push(Entry::Key(k.clone(), h[0].0.clone(), false, true));
        }
    }
    out
}

/// Model of ListObjects: entries after `start_after`, at most `max`.
fn model_objects(model: &BTreeMap<String, History>, q: &ListObjectsQuery) -> (Vec<Entry>, bool) {
    let all: Vec<Entry> = entries(model, &q.prefix, q.delimiter.as_deref(), false)
        .into_iter()
        .filter(|e| match (e, &q.start_after) {
            (_, None) => true,
            (Entry::Key(k, ..), Some(m)) | (Entry::Prefix(k), Some(m)) => k > m,
        })
        .collect();
    let truncated = all.len() > q.max_keys;
    (all.into_iter().take(q.max_keys).collect(), truncated)
}

/// Model of ListObjectVersions: entries after (key marker, version id marker), at most `max`.
fn model_versions(model: &BTreeMap<String, History>, q: &ListVersionsQuery) -> (Vec<Entry>, bool) {
    let all = entries(model, &q.prefix, q.delimiter.as_deref(), true);
    let start = match (&q.key_marker, &q.version_id_marker) {
        (None, _) => 0,
        (Some(km), None) => all
            .iter()
            .position(|e| match e {
                Entry::Key(k, ..) | Entry::Prefix(k) => k > km,
            })
            .unwrap_or(all.len()),
        (Some(km), Some(vm)) => {
            let at = all
                .iter()
                .position(|e| matches!(e, Entry::Key(k, v, ..) if k == km && v == vm))
                .unwrap();
            at + 1
        }
    };
    let rest: Vec<Entry> = all[start..].to_vec();
    let truncated = rest.len() > q.max_keys;
    (rest.into_iter().take(q.max_keys).collect(), truncated)
}

fn store_objects(store: &MetaStore, q: &ListObjectsQuery) -> (Vec<Entry>, bool, Option<String>) {
    let page = store.list_objects(B, q).unwrap();
    let mut out: Vec<Entry> = page
        .objects
        .iter()
        .map(|o| {
            Entry::Key(
                o.key.clone(),
                o.version_id.clone(),
                o.is_delete_marker,
                o.is_latest,
            )
        })
        .chain(page.common_prefixes.iter().cloned().map(Entry::Prefix))
        .collect();
    out.sort_by(|a, b| entry_key(a).cmp(entry_key(b)));
    (out, page.is_truncated, page.next_marker)
}

fn entry_key(e: &Entry) -> &str {
    match e {
        Entry::Key(k, ..) | Entry::Prefix(k) => k,
    }
}

/// Store page entries in listing order: versions keep their order (newest first per key),
/// common prefixes are merged in by key.
fn store_versions(
    store: &MetaStore,
    q: &ListVersionsQuery,
) -> (Vec<Entry>, bool, Option<String>, Option<String>) {
    let page = store.list_versions(B, q).unwrap();
    let versions: Vec<Entry> = page
        .versions
        .iter()
        .map(|o| {
            Entry::Key(
                o.key.clone(),
                o.version_id.clone(),
                o.is_delete_marker,
                o.is_latest,
            )
        })
        .collect();
    let mut out = Vec::new();
    let mut prefixes = page
        .common_prefixes
        .iter()
        .cloned()
        .map(Entry::Prefix)
        .peekable();
    for v in versions {
        while prefixes
            .peek()
            .is_some_and(|p| entry_key(p) < entry_key(&v))
        {
            out.push(prefixes.next().unwrap());
        }
        out.push(v);
    }
    out.extend(prefixes);
    (
        out,
        page.is_truncated,
        page.next_key_marker,
        page.next_version_id_marker,
    )
}

proptest! {
    // PROPTEST_CASES=5000 for a deeper search; CI keeps it quick.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn listings_match_a_brute_force_model(
        ops in proptest::collection::vec(op(), 1..120),
        prefix in prefix(),
        delimiter in delimiter(),
        max_keys in 1..7usize,
        marker in proptest::option::of(key()),
    ) {
        let s = TestStore::new();
        make_bucket(&s, B, VersioningState::Enabled);
        let model = populate(&s, &ops);

        // One page from an arbitrary marker.
        let q = ListObjectsQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), start_after: marker.clone(), max_keys };
        let (got, truncated, _) = store_objects(&s, &q);
        prop_assert_eq!((got, truncated), model_objects(&model, &q));
        let vq = ListVersionsQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), key_marker: marker, version_id_marker: None, max_keys };
        let (got, truncated, ..) = store_versions(&s, &vq);
        prop_assert_eq!((got, truncated), model_versions(&model, &vq));

        // Every page, following the markers the store hands out.
        let mut q = ListObjectsQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), start_after: None, max_keys };
        let mut all = Vec::new();
        loop {
            let (got, truncated, next) = store_objects(&s, &q);
            prop_assert_eq!((got.clone(), truncated), model_objects(&model, &q));
            all.extend(got);
            if !truncated { break; }
            q.start_after = Some(next.expect("a truncated page names its next marker"));
        }
        prop_assert_eq!(all, entries(&model, &prefix, delimiter.as_deref(), false));

        let mut vq = ListVersionsQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), key_marker: None, version_id_marker: None, max_keys };
        let mut all = Vec::new();
        loop {
            let (got, truncated, next_key, next_version) = store_versions(&s, &vq);
            prop_assert_eq!((got.clone(), truncated), model_versions(&model, &vq));
            all.extend(got);
            if !truncated { break; }
            vq.key_marker = Some(next_key.expect("a truncated page names its next key marker"));
            vq.version_id_marker = next_version;
        }
        prop_assert_eq!(all, entries(&model, &prefix, delimiter.as_deref(), true));
    }
}

#[test]
fn common_prefix_counts_once_and_the_next_page_continues_after_it() {
    // 2,000 keys under "big/" and a handful around it: with a delimiter they are one entry.
    // (That the walk seeks past them rather than iterating is measured by the bench.)
    let s = TestStore::new();
    make_bucket(&s, B, VersioningState::Unversioned);
    for i in 0..2000 {
        s.put_version(B, &format!("big/{i:05}"), inline("x"))
            .unwrap();
    }
    for k in ["a", "big", "big0", "c/d", "z"] {
        s.put_version(B, k, inline("x")).unwrap();
    }
    let q = ListObjectsQuery {
        delimiter: Some("/".into()),
        max_keys: 4,
        ..Default::default()
    };
    let page = s.list_objects(B, &q).unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a", "big", "big0"]);
    assert_eq!(page.common_prefixes, ["big/"]);
    assert!(page.is_truncated);
    assert_eq!(page.next_marker.as_deref(), Some("big0"));
    let q = ListObjectsQuery {
        start_after: Some("big/".into()),
        ..q
    };
    let page = s.list_objects(B, &q).unwrap();
    assert_eq!(
        page.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["big0", "z"]
    );
    assert_eq!(page.common_prefixes, ["c/"]);
}

#[test]
fn version_listing_markers_follow_s3_rules() {
    use meridian_metadata::MetaError;
    let s = TestStore::new();
    make_bucket(&s, B, VersioningState::Enabled);
    let v: Vec<String> = (0..3)
        .map(|_| {
            s.put_version(B, "k", inline("x"))
                .unwrap()
                .version
                .version_id
        })
        .collect();
    s.put_version(B, "l", inline("x")).unwrap();
    let q = ListVersionsQuery {
        version_id_marker: Some(v[0].clone()),
        ..Default::default()
    };
    assert!(matches!(
        s.list_versions(B, &q),
        Err(MetaError::InvalidArgument(_))
    ));
    // After the middle version of "k": the oldest one (not latest), then "l".
    let q = ListVersionsQuery {
        key_marker: Some("k".into()),
        version_id_marker: Some(v[1].clone()),
        ..Default::default()
    };
    let page = s.list_versions(B, &q).unwrap();
    let got: Vec<(&str, &str, bool)> = page
        .versions
        .iter()
        .map(|o| (o.key.as_str(), o.version_id.as_str(), o.is_latest))
        .collect();
    assert_eq!(got[0], ("k", v[0].as_str(), false));
    assert_eq!((got[1].0, got[1].2, got.len()), ("l", true, 2));
    // A version-id marker that no longer exists restarts at the key's newest version.
    let q = ListVersionsQuery {
        key_marker: Some("k".into()),
        version_id_marker: Some("0GONE".into()),
        ..Default::default()
    };
    assert_eq!(s.list_versions(B, &q).unwrap().versions.len(), 4);
    // max-keys 0 is an empty, untruncated page.
    let page = s
        .list_objects(
            B,
            &ListObjectsQuery {
                max_keys: 0,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(page.objects.is_empty() && !page.is_truncated);
}
