//! The store handle: opening the database, the column families, and the few primitives every
//! operation is built from — typed point reads, bounded iterators, and the commit of one
//! WriteBatch (optionally carrying its replication outbox entry).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{
    Cache, ColumnFamily, DBPinnableSlice, DBRawIterator, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::locks::Locks;
use crate::outbox_entry::{last_u64_key, OutboxDraft, OutboxEntry, Sequencer};
use crate::record::ReclaimRecord;
use crate::record::Storage;
use crate::schema::{self, VersionSummary};
use crate::tuning;
use crate::version_id::now_nanos;

/// How the store is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaOptions {
    /// Sync the WAL on every commit (default): an acknowledged commit survives kill -9 and
    /// power loss. Concurrent commits share one sync (group commit).
    pub sync_writes: bool,
}

impl Default for MetaOptions {
    fn default() -> Self {
        MetaOptions { sync_writes: true }
    }
}

/// Every bucket, object version, multipart upload and bucket configuration of a node, plus
/// the replication outbox and the reclaim queue, in one RocksDB database.
///
/// Cheap to clone (an `Arc` inside); all methods are blocking and safe to call concurrently.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: DB,
    pub write_opts: WriteOptions,
    pub locks: Locks,
    pub outbox: Sequencer,
    pub reclaim_seq: AtomicU64,
    /// The next sequence number of the admin outbox; held while an access key changes, so
    /// a change and its outbox entry are decided and written one at a time.
    pub access_keys: std::sync::Mutex<u64>,
    /// Says when lifecycle obligations fall due (none until the store installs one).
    pub planner: std::sync::RwLock<Option<std::sync::Weak<dyn crate::lifecycle::DuePlanner>>>,
    /// Reads of the lifecycle index start here (see `MetaStore::due_caught_up`).
    pub due_floor: std::sync::atomic::AtomicI64,
    _cache: Cache,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.inner.db.path())
            .finish()
    }
}

impl MetaStore {
    /// Opens (creating if missing) the database at `path`. Refuses a database written with a
    /// newer schema version.
    pub fn open(path: &Path, opts: MetaOptions) -> Result<MetaStore, MetaError> {
        let cache = Cache::new_lru_cache(tuning::BLOCK_CACHE_BYTES);
        let mut families = tuning::column_families(&cache);
        // A newer schema may have added column families; RocksDB refuses to open a database
        // without naming all of them, so open them as they are and let the schema version
        // below say what is wrong.
        if let Ok(existing) = DB::list_cf(&rocksdb::Options::default(), path) {
            for name in existing {
                if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME
                    && !schema::ALL.contains(&name.as_str())
                {
                    families.push(rocksdb::ColumnFamilyDescriptor::new(
                        name,
                        rocksdb::Options::default(),
                    ));
                }
            }
        }
        let db =
            DB::open_cf_descriptors(&tuning::db_options(), path, families).map_err(|source| {
                MetaError::Db {
                    context: format!("opening {}", path.display()),
                    source,
                }
            })?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.sync_writes);
        let schema_cf = db
            .cf_handle(schema::META)
            .expect("meta column family exists");
        match db
            .get_cf(schema_cf, schema::META_SCHEMA)
            .map_err(MetaError::db("reading the schema version"))?
        {
            Some(v) => {
                let found = u32::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                    MetaError::corrupt(
                        schema::META,
                        schema::META_SCHEMA,
                        "schema version is not 4 bytes",
                    )
                })?);
                if found > schema::SCHEMA_VERSION {
                    return Err(MetaError::UnsupportedSchema {
                        path: path.display().to_string(),
                        found,
                        supported: schema::SCHEMA_VERSION,
                    });
                }
                if found < schema::SCHEMA_VERSION {
                    // Every upgrade so far only added column families (created at open) and
                    // record fields with defaults: recording the new version is the migration.
                    db.put_cf_opt(
                        schema_cf,
                        schema::META_SCHEMA,
                        schema::SCHEMA_VERSION.to_be_bytes(),
                        &write_opts,
                    )
                    .map_err(MetaError::db("upgrading the schema version"))?;
                }
            }
            None => db
                .put_cf_opt(
                    schema_cf,
                    schema::META_SCHEMA,
                    schema::SCHEMA_VERSION.to_be_bytes(),
                    &write_opts,
                )
                .map_err(MetaError::db("writing the schema version"))?,
        }
        let next_outbox = crate::outbox_entry::next_sequence_at_open(&db)?;
        let next_reclaim = last_u64_key(&db, schema::RECLAIM)?.map_or(1, |s| s + 1);
        let next_admin = last_u64_key(&db, schema::ADMIN_OUTBOX)?.map_or(1, |s| s + 1);
        let inner = Inner {
            db,
            write_opts,
            locks: Locks::new(),
            outbox: Sequencer::new(next_outbox),
            reclaim_seq: AtomicU64::new(next_reclaim),
            access_keys: std::sync::Mutex::new(next_admin),
            planner: std::sync::RwLock::new(None),
            due_floor: std::sync::atomic::AtomicI64::new(i64::MIN),
            _cache: cache,
        };
        Ok(MetaStore {
            inner: Arc::new(inner),
        })
    }

    /// Cheap health check for readiness: a point read of the schema version succeeds.
    pub fn check(&self) -> Result<(), MetaError> {
        self.inner
            .get(schema::META, schema::META_SCHEMA)?
            .map(|_| ())
            .ok_or_else(|| {
                MetaError::corrupt(schema::META, schema::META_SCHEMA, "schema version missing")
            })
    }
}

impl Inner {
    pub fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every column family in `schema::ALL` is created at open.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub fn get(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>, MetaError> {
        self.db
            .get_pinned_cf(self.cf(cf), key)
            .map_err(|source| MetaError::Db {
                context: format!("reading {cf}/{}", hex::encode(key)),
                source,
            })
    }

    pub fn get_record<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<(T, u8)>, MetaError> {
        match self.get(cf, key)? {
            Some(v) => codec::decode(cf, key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// A raw iterator over `[lower, upper)` of `cf`, positioned at `lower`.
    pub fn iter(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
    ) -> DBRawIterator<'_> {
        let mut ro = ReadOptions::default();
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(lower);
        it
    }

    /// An iterator over every entry of `cf` whose key starts with `prefix`.
    pub fn iter_prefix(&self, cf: &'static str, prefix: &[u8]) -> DBRawIterator<'_> {
        self.iter(cf, prefix, keys::successor(prefix))
    }

    /// The newest `n` entries of the history of one key, newest first.
    pub fn newest_versions(
        &self,
        bucket: &str,
        key: &str,
        n: usize,
    ) -> Result<Vec<VersionSummary>, MetaError> {
        let mut it = self.iter_prefix(schema::HISTORY, &keys::object_prefix(bucket, key));
        let mut out = Vec::with_capacity(n.min(16));
        while out.len() < n && it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            out.push(codec::decode(schema::HISTORY, k, v)?.0);
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading version history"))?;
        Ok(out)
    }

    /// Writes `batch` durably (per the sync option). With `outbox`, the entry is added to the
    /// same batch under a fresh sequence number: the WriteBatch makes change + outbox entry
    /// atomic, and the sequencer keeps readers from seeing it before every earlier sequence
    /// number has committed or failed.
    pub fn commit(
        &self,
        mut batch: WriteBatch,
        outbox: Option<OutboxDraft>,
        context: &'static str,
    ) -> Result<Option<u64>, MetaError> {
        let Some(draft) = outbox else {
            self.db
                .write_opt(batch, &self.write_opts)
                .map_err(MetaError::db(context))?;
            return Ok(None);
        };
        let ticket = self.outbox.begin();
        let entry = OutboxEntry {
            seq: ticket.seq(),
            bucket: draft.bucket,
            key: draft.key,
            version_id: draft.version_id,
            kind: draft.kind,
            committed: now_nanos(),
            origin: draft.origin,
            peers: draft.peers,
            size: draft.size,
        };
        batch.put_cf(
            self.cf(schema::OUTBOX),
            entry.seq.to_be_bytes(),
            codec::encode(&entry),
        );
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(MetaError::db(context))?;
        Ok(Some(ticket.seq()))
    }

    /// Adds `storage` to the reclaim queue in `batch`, if it names data outside the record
    /// (inline bytes vanish with the record itself).
    pub fn queue_reclaim(&self, batch: &mut WriteBatch, storage: &Storage) {
        if let Storage::Layout(blob) = storage {
            self.queue_reclaim_layout(batch, blob.clone());
        }
    }

    pub fn queue_reclaim_layout(&self, batch: &mut WriteBatch, blob: Vec<u8>) {
        let seq = self.reclaim_seq.fetch_add(1, Ordering::Relaxed);
        let record = ReclaimRecord {
            storage: Storage::Layout(blob),
            queued: now_nanos(),
        };
        batch.put_cf(
            self.cf(schema::RECLAIM),
            seq.to_be_bytes(),
            codec::encode(&record),
        );
    }
}
