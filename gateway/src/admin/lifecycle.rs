//! The lifecycle admin API (root only, JSON):
//!
//! - `GET /_meridian/lifecycle/status[?bucket=B]`: each bucket's rules, indexing passes in
//!   progress, the due backlog, the last run, actions taken and bytes freed;
//! - `GET /_meridian/lifecycle/preview?bucket=B[&at=UNIX_SECONDS]`: what the rules would do
//!   by then (default now), and how many bytes it frees, without acting.

use http::StatusCode;
use meridian_api::{BucketLifecycle, LifecyclePreview, LifecycleStatus, PreviewAction};
use meridian_documents::lifecycle::Day;
use meridian_store::lifecycle::preview;
use s3s::{Body, S3Request};

use super::{error, json, query, AdminApi};

/// Most actions a preview lists.
const PREVIEW_LIMIT: usize = 1000;
const NANOS: i64 = 1_000_000_000;

impl AdminApi {
    pub(super) async fn lifecycle(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let q = query(req);
        let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let action = req.uri.path().trim_start_matches("/_meridian/lifecycle/");
        let store = self.store.clone();
        match (req.method.as_str(), action) {
            ("GET", "status") => {
                let bucket = param("bucket");
                let found = tokio::task::spawn_blocking(move || {
                    lifecycle_status(&store, bucket.as_deref())
                })
                .await;
                match found {
                    Ok(Ok(status)) => json(StatusCode::OK, &status),
                    Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            ("GET", "preview") => {
                let Some(bucket) = param("bucket") else {
                    return error(StatusCode::BAD_REQUEST, "bucket is required");
                };
                let at = match param("at").map(|a| a.parse::<i64>()) {
                    None => meridian_metadata::now_nanos() / NANOS,
                    Some(Ok(a)) if (0..=i64::MAX / NANOS).contains(&a) => a,
                    Some(_) => return error(StatusCode::BAD_REQUEST, "at must be Unix seconds"),
                };
                // In a region of several nodes, each node previews the keys it leads.
                let found = match self.cluster.node() {
                    Some(node) => node.lifecycle_preview(&bucket, at, PREVIEW_LIMIT + 1).await,
                    None => {
                        let b = bucket.clone();
                        tokio::task::spawn_blocking(move || {
                            preview_actions(&store, &b, at, PREVIEW_LIMIT + 1, None)
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                    }
                };
                match found {
                    Ok(mut actions) => {
                        let truncated = actions.len() > PREVIEW_LIMIT;
                        actions.truncate(PREVIEW_LIMIT);
                        json(
                            StatusCode::OK,
                            &LifecyclePreview {
                                bucket,
                                at,
                                truncated,
                                versions: actions
                                    .iter()
                                    .filter(|a| a.action != "abort_upload")
                                    .count() as u64,
                                bytes: actions.iter().map(|a| a.frees).sum(),
                                actions,
                            },
                        )
                    }
                    Err(e) => error(StatusCode::NOT_FOUND, &e),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no such lifecycle endpoint"),
        }
    }
}

/// What the bucket's rules would do by `at` (Unix seconds), of the keys `keep` keeps (all
/// without one), at most `limit` actions (blocking).
pub(crate) fn preview_actions(
    store: &meridian_store::Store,
    bucket: &str,
    at: i64,
    limit: usize,
    keep: Option<meridian_metadata::KeyFilter<'_>>,
) -> Result<Vec<PreviewAction>, String> {
    let actions = preview(store, bucket, at * NANOS, limit, keep).map_err(|e| e.to_string())?;
    Ok(actions
        .into_iter()
        .map(|p| PreviewAction {
            action: p.kind.name().to_owned(),
            key: p.key,
            id: p.id,
            due: p.due / NANOS,
            frees: p.frees,
        })
        .collect())
}

fn lifecycle_status(
    store: &meridian_store::Store,
    only: Option<&str>,
) -> Result<LifecycleStatus, meridian_store::StoreError> {
    let lifecycle = &store.lifecycle;
    let passes = lifecycle.passes();
    let mut buckets = Vec::new();
    for b in store.meta.list_buckets()? {
        if only.is_some_and(|o| o != b.name) {
            continue;
        }
        let Some(config) = lifecycle.rules(&b.name)? else {
            continue;
        };
        buckets.push(BucketLifecycle {
            rules: config
                .rules
                .iter()
                .map(|r| {
                    if r.enabled {
                        r.id.clone()
                    } else {
                        format!("{} (disabled)", r.id)
                    }
                })
                .collect(),
            indexing: passes.get(&b.name).copied(),
            bucket: b.name,
        });
    }
    let now = meridian_metadata::now_nanos();
    let (backlog, oldest) = store.meta.due_backlog(now, 100_000)?;
    let metrics = meridian_store::metrics::global();
    let actions = [
        "expire_current",
        "expire_noncurrent",
        "remove_lone_marker",
        "abort_upload",
    ]
    .into_iter()
    .map(|k| {
        (
            k.to_owned(),
            metrics.lifecycle_actions.with_label_values(&[k]).get(),
        )
    })
    .collect();
    Ok(LifecycleStatus {
        test_day_seconds: match lifecycle.day() {
            Day::Utc => None,
            Day::Debug(len) => Some(len as f64 / NANOS as f64),
        },
        buckets,
        backlog: backlog as u64,
        oldest_due_age_seconds: oldest.map_or(0.0, |t| (now - t).max(0) as f64 / NANOS as f64),
        next_due: store.meta.next_due()?.map(|t| t / NANOS),
        last_run: lifecycle.last_run().map(|t| t / NANOS),
        actions,
        bytes_freed: metrics.lifecycle_bytes_freed.get(),
    })
}
