//! What operation number `n` does in each workload, and which operation kinds make up each
//! workload's headline figures. Operations cycle over keys `n % keys`, so `--count N` with
//! `N` keys touches every key exactly once.

use std::sync::Arc;
use std::time::Instant;

use crate::bench::driver::{with_timeout, Operation};
use crate::bench::objects::Ctx;
use crate::bench::stats::{OpKind, Recorder};
use crate::error::OpError;

fn record(
    rec: &mut Recorder,
    kind: OpKind,
    began: Instant,
    result: Result<u64, OpError>,
    objects: u64,
) {
    match result {
        Ok(bytes) => rec.ok(kind, began.elapsed(), bytes, objects),
        Err(e) => rec.error(kind, &e),
    }
}

/// Writes object `n` (below `keys`): the untimed pre-population of reading workloads.
pub struct Populate {
    pub ctx: Arc<Ctx>,
    /// Objects larger than this are written as multipart uploads.
    pub multipart_threshold: u64,
}

impl Operation for Populate {
    type State = ();

    async fn run(&self, n: u64, _: &mut (), rec: &mut Recorder) {
        let ctx = &self.ctx;
        let key = ctx.key(n);
        let began = Instant::now();
        let result = if ctx.size > self.multipart_threshold {
            with_timeout(
                ctx.op_timeout,
                "MultipartUpload",
                || ctx.target(&key),
                ctx.put_multipart(&key, rec),
            )
            .await
        } else {
            with_timeout(
                ctx.op_timeout,
                "PutObject",
                || ctx.target(&key),
                ctx.put(&key),
            )
            .await
        };
        record(rec, OpKind::Put, began, result.map(|()| ctx.size), 1);
    }
}

/// `put`: one PutObject per operation.
pub struct Put(pub Arc<Ctx>);

impl Put {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::Put];
}

impl Operation for Put {
    type State = ();

    async fn run(&self, n: u64, _: &mut (), rec: &mut Recorder) {
        let ctx = &self.0;
        let key = ctx.key(n % ctx.keys);
        let began = Instant::now();
        let result = with_timeout(
            ctx.op_timeout,
            "PutObject",
            || ctx.target(&key),
            ctx.put(&key),
        )
        .await;
        record(rec, OpKind::Put, began, result.map(|()| ctx.size), 1);
    }
}

/// `get`: one whole-object read per operation (as parallel ranges when `ranged`).
pub struct Get {
    pub ctx: Arc<Ctx>,
    pub ranged: bool,
}

impl Get {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::Get];

    async fn get(&self, key: &str, rec: &mut Recorder) {
        let ctx = &self.ctx;
        let began = Instant::now();
        let result = with_timeout(
            ctx.op_timeout,
            "GetObject",
            || ctx.target(key),
            ctx.get(key, self.ranged, rec),
        )
        .await;
        record(rec, OpKind::Get, began, result, 1);
    }
}

impl Operation for Get {
    type State = ();

    async fn run(&self, n: u64, _: &mut (), rec: &mut Recorder) {
        let key = self.ctx.key(n % self.ctx.keys);
        self.get(&key, rec).await;
    }
}

/// `mixed`: GETs and PUTs of the same keys; exactly `get_ratio` of any run of operations
/// (to within one) are GETs, spread evenly.
pub struct Mixed {
    pub get: Get,
    pub put: Put,
    /// GETs per million operations.
    pub gets_per_million: u64,
}

impl Mixed {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::Get, OpKind::Put];

    pub fn new(ctx: Arc<Ctx>, get_ratio: f64) -> Mixed {
        Mixed {
            get: Get {
                ctx: ctx.clone(),
                ranged: false,
            },
            put: Put(ctx),
            gets_per_million: (get_ratio.clamp(0.0, 1.0) * 1e6).round() as u64,
        }
    }

    /// Whether operation `n` is a GET: the integer part of `n * ratio` steps up at `n`.
    pub fn is_get(&self, n: u64) -> bool {
        (n + 1) * self.gets_per_million / 1_000_000 > n * self.gets_per_million / 1_000_000
    }
}

impl Operation for Mixed {
    type State = ();

    async fn run(&self, n: u64, state: &mut (), rec: &mut Recorder) {
        if self.is_get(n) {
            self.get.run(n, state, rec).await;
        } else {
            self.put.run(n, state, rec).await;
        }
    }
}

/// `list`: each operation is one ListObjectsV2 page; each worker walks the whole prefix over
/// and over. Under `--verify` every complete walk must see exactly `keys` keys.
pub struct List {
    pub ctx: Arc<Ctx>,
    pub max_keys: u32,
}

impl List {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::List];
}

/// Where a worker's listing walk is.
#[derive(Default)]
pub struct ListCursor {
    token: Option<String>,
    seen: u64,
}

impl Operation for List {
    type State = ListCursor;

    async fn run(&self, _: u64, cursor: &mut ListCursor, rec: &mut Recorder) {
        let ctx = &self.ctx;
        let began = Instant::now();
        let page = ctx
            .client
            .list_page(&ctx.prefix, cursor.token.as_deref(), self.max_keys);
        match with_timeout(
            ctx.op_timeout,
            "ListObjectsV2",
            || ctx.target(&ctx.prefix),
            page,
        )
        .await
        {
            Ok(page) => {
                rec.ok(OpKind::List, began.elapsed(), 0, page.keys);
                cursor.seen += page.keys;
                cursor.token = page.next;
                if cursor.token.is_none() {
                    if ctx.verify && cursor.seen != ctx.keys {
                        let e = OpError::ListCountMismatch {
                            target: ctx.target(&ctx.prefix),
                            expected: ctx.keys,
                            found: cursor.seen,
                        };
                        rec.error(OpKind::List, &e);
                    }
                    cursor.seen = 0;
                }
            }
            Err(e) => {
                rec.error(OpKind::List, &e);
                *cursor = ListCursor::default();
            }
        }
    }
}

/// `multipart`: one whole multipart upload per operation.
pub struct Multipart(pub Arc<Ctx>);

impl Multipart {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::Multipart];
}

impl Operation for Multipart {
    type State = ();

    async fn run(&self, n: u64, _: &mut (), rec: &mut Recorder) {
        let ctx = &self.0;
        let key = ctx.key(n % ctx.keys);
        let began = Instant::now();
        let upload = ctx.put_multipart(&key, rec);
        let result = with_timeout(
            ctx.op_timeout,
            "MultipartUpload",
            || ctx.target(&key),
            upload,
        )
        .await;
        record(rec, OpKind::Multipart, began, result.map(|()| ctx.size), 1);
    }
}

/// `delete`: DeleteObject of key `n`; the driver runs at most `keys` operations.
pub struct Delete(pub Arc<Ctx>);

impl Delete {
    pub const PRIMARY: &'static [OpKind] = &[OpKind::Delete];
}

impl Operation for Delete {
    type State = ();

    async fn run(&self, n: u64, _: &mut (), rec: &mut Recorder) {
        let ctx = &self.0;
        let key = ctx.key(n);
        let began = Instant::now();
        let result = with_timeout(
            ctx.op_timeout,
            "DeleteObject",
            || ctx.target(&key),
            ctx.client.delete_object(&key),
        )
        .await;
        record(rec, OpKind::Delete, began, result.map(|()| 0), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixed(ratio: f64) -> Mixed {
        let ctx = Arc::new(crate::bench::run::test_ctx());
        Mixed::new(ctx, ratio)
    }

    #[test]
    fn mixed_runs_exactly_the_get_ratio_spread_evenly() {
        let m = mixed(0.7);
        let gets = (0..1000).filter(|&n| m.is_get(n)).count();
        assert_eq!(gets, 700);
        for window in 0..90 {
            let in_window = (window * 10..window * 10 + 10)
                .filter(|&n| m.is_get(n))
                .count();
            assert_eq!(in_window, 7, "every 10 operations hold 7 GETs");
        }
        assert_eq!((0..100).filter(|&n| mixed(0.0).is_get(n)).count(), 0);
        assert_eq!((0..100).filter(|&n| mixed(1.0).is_get(n)).count(), 100);
        assert_eq!((0..4).filter(|&n| mixed(0.25).is_get(n)).count(), 1);
    }
}
