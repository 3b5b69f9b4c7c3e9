//! Embedded durable storage (redb, one file): the log's stored hashes, entries, and the current
//! size and signed checkpoint.
//!
//! Duplicates (the same entry again gets its first index) are found through an index in
//! memory (`Seen`), built from the leaf hashes the file stores on the first append after the
//! store is opened, and updated after each commit. Why not a table in the file, as logs made by
//! earlier versions have (it is left alone and no longer written): a leaf hash is random, so each
//! new entry dirtied another page of that tree; with 64 writers that was about one 4 KiB page
//! written and fsynced per entry, and a third of the append rate. The index costs 20 to 40 bytes
//! of memory per entry (as its hash table grows by doubling), and building it reads every
//! stored hash once: on a log of 1.1 million entries the first append after a start took 0.97 s
//! (a log of tens of millions belongs on PostgreSQL).
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
    /// The leaf hashes appended so far, once the first append built it.
    seen: std::sync::Mutex<Option<Seen>>,
}

/// Which leaf hashes the log holds, by their first 8 bytes: a hit is confirmed against the
/// full leaf hash the file stores. Leaves whose first 8 bytes another leaf already took (chance,
/// or an entry made to collide, which takes about 2^32 tries) are kept whole in `overflow`.
#[derive(Default)]
struct Seen {
    by_prefix: HashMap<u64, u64>,
    overflow: HashMap<Hash, u64>,
}

fn prefix(leaf: &Hash) -> u64 {
    let mut p = [0; 8];
    p.copy_from_slice(&leaf.0[..8]);
    u64::from_le_bytes(p)
}

impl Seen {
    /// Reads every leaf hash of a tree of `size` leaves (one pass over the hashes table, in key
    /// order: leaf `i` is stored at `stored_hash_index(0, i)`, the subtrees it completes after
    /// it).
    fn load(hashes: &impl ReadableTable<u64, &'static [u8; 32]>, size: u64) -> Result<Self, Error> {
        let mut seen = Self::default();
        let mut next = 0u64;
        for row in hashes.iter().map_err(storage)? {
            if next == size {
                break;
            }
            let (k, v) = row.map_err(storage)?;
            if k.value() == merkle::stored_hash_index(0, next) {
                seen.insert(Hash(*v.value()), next);
                next += 1;
            }
        }
        if next != size {
            return Err(Error::Storage(format!(
                "the hashes table holds {next} leaf hashes; the log has {size} entries"
            )));
        }
        Ok(seen)
    }

    /// The index of `leaf`, if the log holds it; `stored(i)` reads leaf `i`'s hash.
    fn find(
        &self,
        leaf: &Hash,
        stored: impl Fn(u64) -> Result<Option<Hash>, Error>,
    ) -> Result<Option<u64>, Error> {
        let Some(&i) = self.by_prefix.get(&prefix(leaf)) else {
            return Ok(None);
        };
        if stored(i)?.as_ref() == Some(leaf) {
            return Ok(Some(i));
        }
        Ok(self.overflow.get(leaf).copied())
    }

    /// Notes `leaf` (not held yet) at `index`.
    fn insert(&mut self, leaf: Hash, index: u64) {
        match self.by_prefix.entry(prefix(&leaf)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(index);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(leaf, index);
            }
        }
    }
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
        }
        txn.commit().map_err(storage)?;
        Ok(Self {
            db,
            origin: origin.to_owned(),
            seen: std::sync::Mutex::new(None),
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
        Ok(Self {
            db,
            origin,
            seen: std::sync::Mutex::new(None),
        })
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
        // Held for the whole batch: appends are one at a time anyway (one write transaction).
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| storage("the index of entries was poisoned"))?;
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
            if seen.is_none() {
                *seen = Some(Seen::load(&hashes, stored_size)?);
            }
            let known = seen.as_ref().ok_or_else(|| storage("no index"))?;
            let mut size = stored_size;
            let mut in_batch: HashMap<Hash, u64> = HashMap::new();
            let mut indexes = Vec::with_capacity(entries.len());
            for entry in entries {
                let leaf = merkle::leaf_hash(entry);
                if let Some(i) = in_batch.get(&leaf) {
                    indexes.push((*i, true));
                    continue;
                }
                let stored_leaf = |i: u64| {
                    Ok(hashes
                        .get(merkle::stored_hash_index(0, i))
                        .map_err(storage)?
                        .map(|v| Hash(*v.value())))
                };
                if let Some(i) = known.find(&leaf, stored_leaf)? {
                    indexes.push((i, true));
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
            (
                Committed {
                    indexes,
                    size,
                    checkpoint,
                },
                in_batch,
            )
        };
        let (committed, added) = committed;
        txn.commit().map_err(storage)?;
        // Only what is durable joins the index.
        if let Some(known) = seen.as_mut() {
            for (leaf, index) in added {
                known.insert(leaf, index);
            }
        }
        Ok(committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaves sharing their first 8 bytes are told apart by the full hash.
    #[test]
    fn leaves_with_the_same_prefix_are_told_apart() {
        let leaf = |tail: u8| {
            let mut h = [7u8; 32];
            h[31] = tail;
            Hash(h)
        };
        let stored = [leaf(1), leaf(2), leaf(3)];
        let mut seen = Seen::default();
        for (i, l) in stored.iter().enumerate() {
            seen.insert(*l, i as u64);
        }
        let read = |i: u64| Ok(stored.get(i as usize).copied());
        for (i, l) in stored.iter().enumerate() {
            assert_eq!(seen.find(l, read).unwrap(), Some(i as u64));
        }
        assert_eq!(seen.find(&leaf(4), read).unwrap(), None);
        assert_eq!(seen.find(&Hash([9; 32]), read).unwrap(), None);
    }
}
