//! Node-wide settings an operator changes at run time and that must survive a restart (a
//! fence put up for a failover), stored in the `meta` column family under `setting/<name>`.

use rocksdb::WriteBatch;

use crate::error::MetaError;
use crate::schema;
use crate::store::MetaStore;

fn key(name: &str) -> Vec<u8> {
    let mut k = b"setting/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl MetaStore {
    /// Stores (or, with `None`, removes) the setting `name`, durably.
    pub fn put_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), MetaError> {
        let inner = &self.inner;
        let mut batch = WriteBatch::default();
        match value {
            Some(v) => batch.put_cf(inner.cf(schema::META), key(name), v),
            None => batch.delete_cf(inner.cf(schema::META), key(name)),
        }
        inner.commit(batch, None, "storing a setting")?;
        Ok(())
    }

    /// Every setting whose name starts with `prefix`, with its value.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let start = key(prefix);
        let mut it = self.inner.iter_prefix(schema::META, &start);
        let mut out = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            // Every key here starts with "setting/" (the prefix above includes it).
            let name = String::from_utf8_lossy(&k[b"setting/".len()..]).into_owned();
            out.push((name, v.to_vec()));
            it.next();
        }
        it.status().map_err(MetaError::db("reading settings"))?;
        Ok(out)
    }

    /// The setting `name`, if set.
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self
            .inner
            .get(schema::META, &key(name))?
            .map(|v| v.to_vec()))
    }
}
