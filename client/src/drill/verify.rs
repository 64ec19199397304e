//! Comparing two regions version for version. Both buckets' version listings are read page by
//! page, side by side, a key at a time (memory holds one key's versions, whatever the bucket
//! size); versions are matched by id. Versions on both sides are compared by ETag, size and
//! delete-marker flag, then — with HEAD and GetObjectTagging, a few at a time — field by
//! field, with the comparison the replicator itself verifies every transfer with
//! ([`meridian_api::version::differences`]): headers, metadata, checksums, tags, parts.

use std::collections::VecDeque;

use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use futures::StreamExt;
use meridian_api::version::{differences, Fidelity, ObservedVersion};
use serde::Serialize;

use super::sites::BucketPair;

/// Deep comparisons in flight.
const DEEP_IN_FLIGHT: usize = 16;
/// Differences kept verbatim in the report.
const EXAMPLES: usize = 20;

/// One version or delete marker as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    version_id: String,
    etag: Option<String>,
    size: Option<i64>,
    marker: bool,
}

/// Reads a bucket's versions a key at a time.
struct KeyStream<'a> {
    client: &'a Client,
    bucket: &'a str,
    prefix: Option<&'a str>,
    /// Listed entries not handed out yet, in key order.
    buffered: VecDeque<(String, Listed)>,
    next: Option<(Option<String>, Option<String>)>,
    done: bool,
}

impl<'a> KeyStream<'a> {
    fn new(client: &'a Client, bucket: &'a str, prefix: Option<&'a str>) -> KeyStream<'a> {
        KeyStream {
            client,
            bucket,
            prefix,
            buffered: VecDeque::new(),
            next: Some((None, None)),
            done: false,
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let Some((key_marker, version_marker)) = self.next.take() else {
            self.done = true;
            return Ok(());
        };
        let page = self
            .client
            .list_object_versions()
            .bucket(self.bucket)
            .set_prefix(self.prefix.map(str::to_owned))
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await?;
        let mut entries: Vec<(String, Listed)> = page
            .versions()
            .iter()
            .map(|v| {
                (
                    v.key().unwrap_or_default().to_owned(),
                    Listed {
                        version_id: v.version_id().unwrap_or_default().to_owned(),
                        etag: v.e_tag().map(|e| e.trim_matches('"').to_owned()),
                        size: v.size(),
                        marker: false,
                    },
                )
            })
            .chain(page.delete_markers().iter().map(|m| {
                (
                    m.key().unwrap_or_default().to_owned(),
                    Listed {
                        version_id: m.version_id().unwrap_or_default().to_owned(),
                        etag: None,
                        size: None,
                        marker: true,
                    },
                )
            }))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.buffered.extend(entries);
        self.next = (page.is_truncated() == Some(true)).then(|| {
            (
                page.next_key_marker().map(str::to_owned),
                page.next_version_id_marker().map(str::to_owned),
            )
        });
        if self.next.is_none() {
            self.done = true;
        }
        Ok(())
    }

    /// The next key and all its versions, or `None` at the end.
    async fn next_key(&mut self) -> anyhow::Result<Option<(String, Vec<Listed>)>> {
        loop {
            // A key is complete once a later key is buffered, or the listing is done.
            let first = self.buffered.front().map(|(k, _)| k.clone());
            if let Some(k) = &first {
                let complete = self.done || self.buffered.iter().any(|(other, _)| other != k);
                if complete {
                    let mut versions = Vec::new();
                    while self.buffered.front().is_some_and(|(x, _)| x == k) {
                        versions.push(self.buffered.pop_front().expect("front").1);
                    }
                    return Ok(Some((k.clone(), versions)));
                }
            } else if self.done {
                return Ok(None);
            }
            self.fill().await?;
        }
    }
}

/// What a comparison found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    pub buckets: Vec<BucketPair>,
    /// Versions (and markers) present on both sides and equal.
    pub matching: u64,
    /// On the source, not on the target.
    pub missing: u64,
    /// On the target, not on the source.
    pub extra: u64,
    /// On both, but not the same.
    pub different: u64,
    /// The first differences, as readable lines.
    pub examples: Vec<String>,
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0
    }

    fn note(&mut self, line: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(line);
        }
    }
}

/// One version as a client observes it: HEAD with checksum mode, a HEAD of part 1 for a
/// multipart ETag, and the tag set.
async fn details(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> anyhow::Result<ObservedVersion> {
    let head = |part: Option<i32>| {
        client
            .head_object()
            .bucket(bucket)
            .key(key)
            .version_id(version_id)
            .checksum_mode(ChecksumMode::Enabled)
            .set_part_number(part)
            .customize()
            .mutate_request(crate::s3::own_copy_only)
            .send()
    };
    let whole = match head(None).await {
        Ok(h) => h,
        // An SSE-C version answers HEAD only with its customer's key: its listing (ETag,
        // size, version) was compared already, and nothing more can be without the key.
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 400) => {
            return Ok(ObservedVersion {
                version_id: Some(version_id.to_owned()),
                server_side_encryption: Some("SSE-C".to_owned()),
                ..ObservedVersion::default()
            })
        }
        Err(e) => return Err(e.into()),
    };
    let part1 = match whole.e_tag() {
        Some(e) if e.contains('-') => Some(head(Some(1)).await?),
        _ => None,
    };
    let t = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .send()
        .await?;
    let tags = t
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    Ok(ObservedVersion::from_head(
        &whole,
        part1.as_ref(),
        Some(tags),
    ))
}

/// Compares every version of each bucket pair under `prefix`; `progress` is told how many
/// versions were looked at.
pub async fn compare(
    source: &Client,
    target: &Client,
    pairs: &[BucketPair],
    prefix: Option<&str>,
    deep: bool,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Comparison> {
    let mut c = Comparison {
        buckets: pairs.to_vec(),
        ..Comparison::default()
    };
    let mut looked = 0u64;
    for pair in pairs {
        let mut src = KeyStream::new(source, &pair.source, prefix);
        let mut dst = KeyStream::new(target, &pair.target, prefix);
        let (mut a, mut b) = (src.next_key().await?, dst.next_key().await?);
        loop {
            let mut deep_checks = Vec::new();
            match (&a, &b) {
                (None, None) => break,
                (Some((ka, va)), Some((kb, _))) if ka < kb => {
                    for v in va {
                        c.missing += 1;
                        c.note(format!(
                            "missing on target: {}/{ka} {}",
                            pair.target, v.version_id
                        ));
                    }
                    looked += va.len() as u64;
                    a = src.next_key().await?;
                }
                (Some((_, va)), None) => {
                    let ka = a.as_ref().map(|x| x.0.clone()).unwrap_or_default();
                    for v in va {
                        c.missing += 1;
                        c.note(format!(
                            "missing on target: {}/{ka} {}",
                            pair.target, v.version_id
                        ));
                    }
                    looked += va.len() as u64;
                    a = src.next_key().await?;
                }
                (Some((ka, _)), Some((kb, vb))) if kb < ka => {
                    for v in vb {
                        c.extra += 1;
                        c.note(format!(
                            "extra on target: {}/{kb} {}",
                            pair.target, v.version_id
                        ));
                    }
                    looked += vb.len() as u64;
                    b = dst.next_key().await?;
                }
                (None, Some((kb, vb))) => {
                    for v in vb {
                        c.extra += 1;
                        c.note(format!(
                            "extra on target: {}/{kb} {}",
                            pair.target, v.version_id
                        ));
                    }
                    looked += vb.len() as u64;
                    b = dst.next_key().await?;
                }
                (Some((key, va)), Some((_, vb))) => {
                    for v in va {
                        match vb.iter().find(|w| w.version_id == v.version_id) {
                            None => {
                                c.missing += 1;
                                c.note(format!(
                                    "missing on target: {}/{key} {}",
                                    pair.target, v.version_id
                                ));
                            }
                            Some(w) if w != v => {
                                c.different += 1;
                                c.note(format!(
                                    "different: {}/{key} {}: source {:?}/{:?}{}, target {:?}/{:?}{}",
                                    pair.target, v.version_id, v.etag, v.size,
                                    if v.marker { " (marker)" } else { "" },
                                    w.etag, w.size,
                                    if w.marker { " (marker)" } else { "" },
                                ));
                            }
                            Some(_) if deep && !v.marker => {
                                deep_checks.push((key.clone(), v.version_id.clone()))
                            }
                            Some(_) => c.matching += 1,
                        }
                    }
                    for w in vb
                        .iter()
                        .filter(|w| !va.iter().any(|v| v.version_id == w.version_id))
                    {
                        c.extra += 1;
                        c.note(format!(
                            "extra on target: {}/{key} {}",
                            pair.target, w.version_id
                        ));
                    }
                    looked += va.len().max(vb.len()) as u64;
                    a = src.next_key().await?;
                    b = dst.next_key().await?;
                }
            }
            let results: Vec<_> = futures::stream::iter(deep_checks)
                .map(|(key, vid)| async move {
                    let (x, y) = tokio::join!(
                        details(source, &pair.source, &key, &vid),
                        details(target, &pair.target, &key, &vid)
                    );
                    (key, vid, x, y)
                })
                .buffer_unordered(DEEP_IN_FLIGHT)
                .collect()
                .await;
            for (key, vid, x, y) in results {
                match (x, y) {
                    (Ok(x), Ok(y)) => {
                        let d = differences(&x, &y, Fidelity::Exact);
                        if d.is_empty() {
                            c.matching += 1;
                        } else {
                            c.different += 1;
                            c.note(format!(
                                "different: {}/{key} {vid}: {}",
                                pair.target,
                                d.join("; ")
                            ));
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        c.different += 1;
                        c.note(format!(
                            "could not compare {}/{key} {vid}: {e}",
                            pair.target
                        ));
                    }
                }
            }
            progress(looked);
        }
    }
    Ok(c)
}
