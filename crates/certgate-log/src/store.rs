//! Embedded durable storage (redb, one file): the log's stored hashes, entries, a
//! leaf-hash → index map for deduplication, and the current size and signed checkpoint.
//!
//! A batch is one write transaction committed with `Durability::Immediate` (fsync) before any
//! submitter hears its index. The transaction first compares the stored size with the size the
//! sequencer expects (compare-and-swap), so two writers can never fork the log; redb's file lock
//! already keeps a second process out.

use std::collections::HashMap;
use std::path::Path;

use certgate_tlog::merkle::{self, Hash, HashReader};
use redb::{Database, Durability, ReadableDatabase as _, ReadableTable, TableDefinition};

use crate::Error;

const HASHES: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("hashes");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const DEDUP: TableDefinition<&[u8; 32], u64> = TableDefinition::new("dedup");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// What the sequencer and the read API need from storage. The embedded [`Store`] implements
/// it; a database backend (one logical writer with compare-and-swap, as PostgreSQL gives) would
/// implement the same four methods, and nothing in `certgate-tlog` changes.
pub trait LogStorage: Send + Sync + std::fmt::Debug {
    /// The log's origin.
    fn origin(&self) -> &str;
    /// The current size and signed checkpoint.
    fn head(&self) -> Result<(u64, String), Error>;
    /// Runs `f` with a consistent snapshot of the stored hashes.
    fn read_hashes(
        &self,
        f: &mut dyn FnMut(&dyn HashReader) -> Result<(), certgate_tlog::Error>,
    ) -> Result<(), Error>;
    /// Entries `[start, end)`.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error>;
    /// Appends a batch durably if the log still has `expected_size` entries (compare-and-swap);
    /// `sign(size, root)` returns the signed checkpoint stored with it.
    fn append_batch(
        &self,
        expected_size: u64,
        entries: &[Vec<u8>],
        sign: &mut dyn FnMut(u64, Hash) -> Result<String, Error>,
    ) -> Result<Committed, Error>;
}

/// Runs `f` over a storage's hash snapshot and returns its result.
pub fn with_hashes<R>(
    storage: &dyn LogStorage,
    f: impl FnOnce(&dyn HashReader) -> Result<R, certgate_tlog::Error>,
) -> Result<R, Error> {
    let mut f = Some(f);
    let mut out = None;
    storage.read_hashes(&mut |r| {
        if let Some(f) = f.take() {
            out = Some(f(r)?);
        }
        Ok(())
    })?;
    out.ok_or_else(|| Error::Storage("no snapshot was read".into()))
}

/// The embedded log storage: one redb file.
pub struct Store {
    db: Database,
    origin: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// What one committed batch did.
#[derive(Debug)]
pub struct Committed {
    /// Per submitted entry: its index and whether it was already in the log.
    pub indexes: Vec<(u64, bool)>,
    /// The tree size after the batch.
    pub size: u64,
    /// The signed checkpoint of that size.
    pub checkpoint: String,
}

/// The stored tree size (0 before the first batch).
fn read_size(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, Error> {
    match meta.get("size").map_err(storage)? {
        Some(v) => {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| Error::Storage("the stored size is not 8 bytes".into()))?;
            Ok(u64::from_be_bytes(bytes))
        }
        None => Ok(0),
    }
}

/// Reads complete-subtree hashes out of a redb table.
struct TableReader<'t, T>(&'t T);

impl<T: ReadableTable<u64, &'static [u8; 32]>> HashReader for TableReader<'_, T> {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, certgate_tlog::Error> {
        let i = merkle::stored_hash_index(level, index);
        match self.0.get(i) {
            Ok(Some(v)) => Ok(Hash(*v.value())),
            Ok(None) => Err(certgate_tlog::Error::Proof(format!(
                "hash ({level}, {index}) is not stored"
            ))),
            Err(e) => Err(certgate_tlog::Error::Proof(format!("storage: {e}"))),
        }
    }
}

impl Store {
    /// Creates a new log file for `origin`; refuses an existing one.
    pub fn create(path: &Path, origin: &str, signed_empty: &str) -> Result<Self, Error> {
        if path.exists() {
            return Err(Error::Storage(format!(
                "{} already exists; a log is created once",
                path.display()
            )));
        }
        let db = Database::create(path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert("origin", origin.as_bytes()).map_err(storage)?;
            meta.insert("size", 0u64.to_be_bytes().as_slice())
                .map_err(storage)?;
            meta.insert("checkpoint", signed_empty.as_bytes())
                .map_err(storage)?;
            txn.open_table(HASHES).map_err(storage)?;
            txn.open_table(ENTRIES).map_err(storage)?;
            txn.open_table(DEDUP).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(Self {
            db,
            origin: origin.to_owned(),
        })
    }

    /// Opens an existing log file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            return Err(Error::Storage(format!(
                "{} does not exist; create the log with `certgate log init`",
                path.display()
            )));
        }
        let db =
            Database::open(path).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        let origin = {
            let txn = db.begin_read().map_err(storage)?;
            let meta = txn.open_table(META).map_err(storage)?;
            let v = meta
                .get("origin")
                .map_err(storage)?
                .ok_or_else(|| Error::Storage("no origin recorded".into()))?;
            String::from_utf8(v.value().to_vec()).map_err(storage)?
        };
        Ok(Self { db, origin })
    }
}

impl LogStorage for Store {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn head(&self) -> Result<(u64, String), Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let size = read_size(&meta)?;
        let cp = meta
            .get("checkpoint")
            .map_err(storage)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned())
            .unwrap_or_default();
        Ok((size, cp))
    }

    fn read_hashes(
        &self,
        f: &mut dyn FnMut(&dyn HashReader) -> Result<(), certgate_tlog::Error>,
    ) -> Result<(), Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(HASHES).map_err(storage)?;
        f(&TableReader(&table)).map_err(Error::Log)
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let mut out = Vec::new();
        for item in table.range(start..end).map_err(storage)? {
            let (_, v) = item.map_err(storage)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn append_batch(
        &self,
        expected_size: u64,
        entries: &[Vec<u8>],
        sign: &mut dyn FnMut(u64, Hash) -> Result<String, Error>,
    ) -> Result<Committed, Error> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let committed = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let stored_size = read_size(&meta)?;
            if stored_size != expected_size {
                return Err(Error::Conflict {
                    expected: expected_size,
                    found: stored_size,
                });
            }
            let mut hashes = txn.open_table(HASHES).map_err(storage)?;
            let mut stored_entries = txn.open_table(ENTRIES).map_err(storage)?;
            let mut dedup = txn.open_table(DEDUP).map_err(storage)?;
            let mut size = stored_size;
            let mut in_batch: HashMap<Hash, u64> = HashMap::new();
            let mut indexes = Vec::with_capacity(entries.len());
            for entry in entries {
                let leaf = merkle::leaf_hash(entry);
                if let Some(i) = in_batch.get(&leaf) {
                    indexes.push((*i, true));
                    continue;
                }
                if let Some(i) = dedup.get(&leaf.0).map_err(storage)? {
                    indexes.push((i.value(), true));
                    continue;
                }
                let new = merkle::hashes_to_store(size, leaf, &TableReader(&hashes))
                    .map_err(Error::Log)?;
                for (at, h) in (merkle::stored_hash_count(size)..).zip(&new) {
                    hashes.insert(at, &h.0).map_err(storage)?;
                }
                stored_entries
                    .insert(size, entry.as_slice())
                    .map_err(storage)?;
                dedup.insert(&leaf.0, size).map_err(storage)?;
                in_batch.insert(leaf, size);
                indexes.push((size, false));
                size += 1;
            }
            let root = merkle::tree_hash(size, &TableReader(&hashes)).map_err(Error::Log)?;
            let checkpoint = sign(size, root)?;
            meta.insert("size", size.to_be_bytes().as_slice())
                .map_err(storage)?;
            meta.insert("checkpoint", checkpoint.as_bytes())
                .map_err(storage)?;
            Committed {
                indexes,
                size,
                checkpoint,
            }
        };
        txn.commit().map_err(storage)?;
        Ok(committed)
    }
}
