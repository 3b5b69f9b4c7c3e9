//! The log on PostgreSQL: the same [`LogStorage`] as the embedded store, so any number of
//! processes can serve one log.
//!
//! ```text
//! certgate_log_schema   version                       (the schema version, migrated forward)
//! certgate_log_head     origin, size, checkpoint      (one row: the coordination row)
//! certgate_log_hashes   idx -> hash                   (the stored hashes, append-only)
//! certgate_log_entries  idx -> entry, leaf (unique)   (the entries; leaf hashes deduplicate)
//! ```
//!
//! A batch is one transaction: it locks the head row (`SELECT ... FOR UPDATE`), compares the
//! size with the one the caller expects (compare-and-swap: another process that appended in
//! between makes this one fail with [`Error::Conflict`], and the caller retries on the new
//! size), answers duplicates with their existing index, writes entries and stored hashes in
//! bulk, and commits before anyone hears an index. Stored hashes never change once written, so
//! reads need no snapshot: a reader asks only for hashes of trees no larger than a head it read.
//!
//! The trait is synchronous (the redb store blocks too); the client runs on a small runtime of
//! its own, so calls work from any thread.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use certgate_tlog::merkle::{self, Hash, HashReader};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::Error;
use crate::store::{Committed, LogStorage};

/// The schema version this build writes and reads.
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS certgate_log_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS certgate_log_head (
    origin text PRIMARY KEY,
    size bigint NOT NULL,
    checkpoint text NOT NULL
);
CREATE TABLE IF NOT EXISTS certgate_log_hashes (idx bigint PRIMARY KEY, hash bytea NOT NULL);
CREATE TABLE IF NOT EXISTS certgate_log_entries (
    idx bigint PRIMARY KEY,
    entry bytea NOT NULL,
    leaf bytea NOT NULL UNIQUE
);
";

fn db(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("postgres: {e}"))
}

fn to_i64(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::Storage(format!("{n} does not fit in a bigint")))
}

fn task_ended() -> Error {
    Error::Storage("postgres: the database task ended".into())
}

/// The log in a PostgreSQL database.
pub struct PgStore {
    /// Always `Some` until dropped (then shut down without waiting: a store may be dropped on
    /// an async thread).
    rt: Option<tokio::runtime::Runtime>,
    client: Arc<Mutex<Client>>,
    /// To connect again when the connection was lost (the database restarted).
    config: Arc<Target>,
    origin: String,
    /// Stored hashes seen so far. They never change once written, so a copy is always right;
    /// proofs for a batch just committed are made from memory instead of one query per hash.
    hashes: std::sync::RwLock<HashMap<u64, Hash>>,
}

/// Stored hashes kept in memory (32 bytes each; about two per entry): 64 MiB. Past that the
/// cache starts again empty.
const CACHED_HASHES: usize = 2 << 20;

/// How to reach the database: its address and, when given, the TLS it must speak.
struct Target {
    config: tokio_postgres::Config,
    /// With it, the connection is TLS and the server's certificate must verify; without, plain.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Connects, and drives the connection on the current runtime.
async fn connect(target: &Target) -> Result<Client, Error> {
    fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the PostgreSQL connection ended");
            }
        });
    }
    match &target.tls {
        None => {
            let (client, connection) = target.config.connect(NoTls).await.map_err(db)?;
            drive(connection);
            Ok(client)
        }
        Some(tls) => {
            let mut config = target.config.clone();
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            let (client, connection) = config.connect(make).await.map_err(db)?;
            drive(connection);
            Ok(client)
        }
    }
}

/// The client, connected again first if its connection was lost. What was in flight when it
/// was lost failed with its error (an uncommitted batch is rolled back by the server, and its
/// submitters heard nothing but the error); the next call works once the database is back.
async fn connected<'a>(
    client: &'a Mutex<Client>,
    config: &Target,
) -> Result<tokio::sync::MutexGuard<'a, Client>, Error> {
    let mut guard = client.lock().await;
    if guard.is_closed() {
        *guard = connect(config).await?;
        tracing::info!("connected to PostgreSQL again");
    }
    Ok(guard)
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, Error> {
        self.rt.as_ref().ok_or_else(task_ended)
    }

    /// Connects to `url` (a `postgres://` URL or a libpq key=value string; over TLS verified
    /// with `tls` when given, plain otherwise), creates or migrates
    /// the schema, and opens the log there; a database that holds no log yet gets one, with
    /// `origin` and the signed checkpoint of the empty tree. A database that holds another log
    /// is refused.
    pub fn open_or_create(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        origin: &str,
        signed_empty: &str,
    ) -> Result<Self, Error> {
        let config: tokio_postgres::Config = url.parse().map_err(db)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("certgate-pg")
            .enable_all()
            .build()
            .map_err(db)?;
        // Connected on the store's runtime, which also drives the connection from then on;
        // this thread only waits (it may be a thread of another runtime).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let config = Arc::new(Target { config, tls });
        let c = Arc::clone(&config);
        rt.spawn(async move {
            let _ = tx.send(connect(&c).await);
        });
        let client = match rx.recv().map_err(|_| task_ended()).and_then(|c| c) {
            Ok(c) => c,
            Err(e) => {
                // Not dropped in place: this may be an async thread, where a runtime cannot be.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let store = Self {
            rt: Some(rt),
            hashes: std::sync::RwLock::new(HashMap::new()),
            config,
            client: Arc::new(Mutex::new(client)),
            origin: origin.to_owned(),
        };
        let (origin, signed_empty) = (origin.to_owned(), signed_empty.to_owned());
        store.run(move |client, config| async move {
            let mut client = connected(&client, &config).await?;
            let txn = client.transaction().await.map_err(db)?;
            // One migration at a time, whichever process starts first.
            txn.execute("SELECT pg_advisory_xact_lock(7468727)", &[])
                .await
                .map_err(db)?;
            txn.batch_execute(SCHEMA).await.map_err(db)?;
            let version: Option<i32> = txn
                .query_opt("SELECT version FROM certgate_log_schema", &[])
                .await
                .map_err(db)?
                .map(|r| r.get(0));
            match version {
                None => {
                    txn.execute(
                        "INSERT INTO certgate_log_schema (version) VALUES ($1)",
                        &[&SCHEMA_VERSION],
                    )
                    .await
                    .map_err(db)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(Error::Storage(format!(
                        "postgres: the schema is version {v}, newer than this certgate's {SCHEMA_VERSION}; upgrade certgate"
                    )));
                }
                Some(_) => {}
            }
            let held: Option<String> = txn
                .query_opt("SELECT origin FROM certgate_log_head", &[])
                .await
                .map_err(db)?
                .map(|r| r.get(0));
            match held {
                None => {
                    txn.execute(
                        "INSERT INTO certgate_log_head (origin, size, checkpoint) VALUES ($1, 0, $2)",
                        &[&origin, &signed_empty],
                    )
                    .await
                    .map_err(db)?;
                }
                Some(o) if o != origin => {
                    return Err(Error::Storage(format!(
                        "postgres: the database holds the log `{o}`, not `{origin}`"
                    )));
                }
                Some(_) => {}
            }
            txn.commit().await.map_err(db)
        })?;
        Ok(store)
    }

    /// Runs `f` with the client on the store's own runtime and waits for it (from any thread,
    /// inside another runtime or not).
    fn run<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Mutex<Client>>, Arc<Target>) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(Arc::clone(&self.client), Arc::clone(&self.config));
        self.runtime()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| task_ended())?
    }

    fn remember(&self, hashes: impl IntoIterator<Item = (u64, Hash)>) {
        if let Ok(mut cache) = self.hashes.write() {
            if cache.len() > CACHED_HASHES {
                cache.clear();
            }
            cache.extend(hashes);
        }
    }

    fn hash_at(&self, position: u64) -> Result<Hash, Error> {
        if let Some(h) = self
            .hashes
            .read()
            .ok()
            .and_then(|c| c.get(&position).copied())
        {
            return Ok(h);
        }
        let at = to_i64(position)?;
        let bytes: Vec<u8> = self.run(move |client, config| async move {
            let client = connected(&client, &config).await?;
            client
                .query_one(
                    "SELECT hash FROM certgate_log_hashes WHERE idx = $1",
                    &[&at],
                )
                .await
                .map(|r| r.get(0))
                .map_err(db)
        })?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Storage("postgres: a stored hash is not 32 bytes".into()))?;
        self.remember([(position, Hash(array))]);
        Ok(Hash(array))
    }
}

/// What [`PgStore::import`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The entries were copied.
    Copied,
    /// The database already held this log at this size: nothing was copied, only checked.
    AlreadyThere,
}

impl PgStore {
    /// Copies a whole log (`entries`, with the signed `checkpoint` of their tree) into this
    /// database, which must hold no entries yet, or exactly this log at this size (then nothing
    /// is written). One transaction: a failed copy leaves the database as it was.
    pub fn import(&self, entries: Vec<Vec<u8>>, checkpoint: &str) -> Result<Imported, Error> {
        let size = to_i64(entries.len() as u64)?;
        let checkpoint = checkpoint.to_owned();
        let (stored, _) = expected_hashes(&entries)?;
        self.run(move |client, config| async move {
            let mut client = connected(&client, &config).await?;
            let txn = client.transaction().await.map_err(db)?;
            let (held, held_cp): (i64, String) = txn
                .query_one("SELECT size, checkpoint FROM certgate_log_head FOR UPDATE", &[])
                .await
                .map(|r| (r.get(0), r.get(1)))
                .map_err(db)?;
            if held == size && held_cp == checkpoint {
                return Ok(Imported::AlreadyThere);
            }
            if held != 0 {
                return Err(Error::Storage(format!(
                    "postgres: the database already holds {held} entries of this log (a different tree head); copy into an empty database"
                )));
            }
            for (n, chunk) in entries.chunks(1000).enumerate() {
                let first = n * 1000;
                let idx: Vec<i64> = (first..first + chunk.len())
                    .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
                    .collect();
                let leaf: Vec<Vec<u8>> =
                    chunk.iter().map(|e| merkle::leaf_hash(e).0.to_vec()).collect();
                txn.execute(
                    "INSERT INTO certgate_log_entries (idx, entry, leaf) \
                     SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[])",
                    &[&idx, &chunk.to_vec(), &leaf],
                )
                .await
                .map_err(db)?;
            }
            for (n, chunk) in stored.chunks(2000).enumerate() {
                let first = n * 2000;
                let idx: Vec<i64> = (first..first + chunk.len())
                    .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
                    .collect();
                let hashes: Vec<Vec<u8>> = chunk.iter().map(|h| h.0.to_vec()).collect();
                txn.execute(
                    "INSERT INTO certgate_log_hashes (idx, hash) \
                     SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
                    &[&idx, &hashes],
                )
                .await
                .map_err(db)?;
            }
            txn.execute(
                "UPDATE certgate_log_head SET size = $1, checkpoint = $2",
                &[&size, &checkpoint],
            )
            .await
            .map_err(db)?;
            txn.commit().await.map_err(db)?;
            Ok(Imported::Copied)
        })
    }

    /// Reads the whole log back and checks it: the entries hash to the stored hashes, every
    /// stored hash is the one the entries make, and the tree's root is `root` at `size`.
    pub fn verify_all(&self, size: u64, root: &Hash) -> Result<(), Error> {
        let entries = self.entries(0, size)?;
        if entries.len() as u64 != size {
            return Err(Error::Storage(format!(
                "postgres: {} entries read back, not {size}",
                entries.len()
            )));
        }
        let (expected, computed_root) = expected_hashes(&entries)?;
        if computed_root != *root {
            return Err(Error::Storage(format!(
                "postgres: the entries read back hash to {computed_root}, not the checkpoint's root {root}"
            )));
        }
        let count = to_i64(expected.len() as u64)?;
        let stored: Vec<(i64, Vec<u8>)> = self.run(move |client, config| async move {
            let client = connected(&client, &config).await?;
            let rows = client
                .query(
                    "SELECT idx, hash FROM certgate_log_hashes WHERE idx < $1 ORDER BY idx",
                    &[&count],
                )
                .await
                .map_err(db)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        if stored.len() != expected.len() {
            return Err(Error::Storage(format!(
                "postgres: {} stored hashes read back, not {}",
                stored.len(),
                expected.len()
            )));
        }
        for ((idx, hash), want) in stored.iter().zip(&expected) {
            if hash.as_slice() != want.0.as_slice() {
                return Err(Error::Storage(format!(
                    "postgres: stored hash {idx} is not the one the entries make"
                )));
            }
        }
        let served = merkle::tree_hash(size, &Reader(self)).map_err(Error::Log)?;
        if served != *root {
            return Err(Error::Storage(format!(
                "postgres: the stored hashes give the root {served}, not {root}"
            )));
        }
        Ok(())
    }
}

/// Every stored hash of the tree of `entries`, in storage order, and its root.
fn expected_hashes(entries: &[Vec<u8>]) -> Result<(Vec<Hash>, Hash), Error> {
    let mut stored: Vec<Hash> = Vec::new();
    struct Seq<'a>(&'a [Hash]);
    impl HashReader for Seq<'_> {
        fn hash(&self, level: u8, index: u64) -> Result<Hash, certgate_tlog::Error> {
            let at = merkle::stored_hash_index(level, index);
            usize::try_from(at)
                .ok()
                .and_then(|i| self.0.get(i))
                .copied()
                .ok_or_else(|| certgate_tlog::Error::Proof(format!("no stored hash {at}")))
        }
    }
    for (i, e) in entries.iter().enumerate() {
        let new = merkle::hashes_to_store(i as u64, merkle::leaf_hash(e), &Seq(&stored))
            .map_err(Error::Log)?;
        stored.extend(new);
    }
    let root = merkle::tree_hash(entries.len() as u64, &Seq(&stored)).map_err(Error::Log)?;
    Ok((stored, root))
}

/// Hashes read one by one from the database.
struct Reader<'a>(&'a PgStore);

impl HashReader for Reader<'_> {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, certgate_tlog::Error> {
        self.0
            .hash_at(merkle::stored_hash_index(level, index))
            .map_err(|e| certgate_tlog::Error::Proof(e.to_string()))
    }
}

/// Stored hashes during a batch: those it made, then the tree's edge read before.
struct BatchReader<'a> {
    new: &'a HashMap<u64, Hash>,
    old: &'a HashMap<u64, Hash>,
}

impl HashReader for BatchReader<'_> {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, certgate_tlog::Error> {
        let at = merkle::stored_hash_index(level, index);
        self.new
            .get(&at)
            .or_else(|| self.old.get(&at))
            .copied()
            .ok_or_else(|| certgate_tlog::Error::Proof(format!("stored hash {at} was not read")))
    }
}

/// The stored-hash positions of the maximal complete subtrees of a tree of `size` leaves (its
/// right edge): all that appending to it and hashing the new tree read of the old one.
fn edge(size: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut start, mut rest) = (0u64, size);
    while rest > 0 {
        let level = 63 - rest.leading_zeros();
        let width = 1u64 << level;
        out.push(merkle::stored_hash_index(
            u8::try_from(level).unwrap_or(63),
            start >> level,
        ));
        start += width;
        rest -= width;
    }
    out
}

impl LogStorage for PgStore {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn head(&self) -> Result<(u64, String), Error> {
        self.run(|client, config| async move {
            let client = connected(&client, &config).await?;
            let row = client
                .query_one("SELECT size, checkpoint FROM certgate_log_head", &[])
                .await
                .map_err(db)?;
            let size: i64 = row.get(0);
            Ok((u64::try_from(size).unwrap_or(0), row.get(1)))
        })
    }

    fn read_hashes(
        &self,
        f: &mut dyn FnMut(&dyn HashReader) -> Result<(), certgate_tlog::Error>,
    ) -> Result<(), Error> {
        f(&Reader(self)).map_err(Error::Log)
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
        let (s, e) = (to_i64(start)?, to_i64(end)?);
        self.run(move |client, config| async move {
            let client = connected(&client, &config).await?;
            let rows = client
                .query(
                    "SELECT entry FROM certgate_log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&s, &e],
                )
                .await
                .map_err(db)?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn append_batch(
        &self,
        expected_size: u64,
        entries: &[Vec<u8>],
        sign: &mut dyn FnMut(u64, Hash) -> Result<String, Error>,
    ) -> Result<Committed, Error> {
        // In one transaction on the store's runtime: lock the head, compare, find duplicates
        // and read the tree's edge (phase 1); here: compute the batch and sign (phase 2); in
        // the same transaction: write and commit (phase 3). The two sides talk over channels.
        let (to_db, from_here) = tokio::sync::mpsc::channel::<Write>(1);
        let (to_here, from_db) = std::sync::mpsc::sync_channel::<Result<Read, Error>>(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Result<(), Error>>(1);
        let leaves: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| merkle::leaf_hash(e).0.to_vec())
            .collect();
        let expected = to_i64(expected_size)?;
        self.runtime()?.spawn(transaction(
            Arc::clone(&self.client),
            Arc::clone(&self.config),
            expected,
            leaves,
            to_here,
            from_here,
            done_tx,
        ));
        let read = from_db.recv().map_err(|_| task_ended())??;
        let mut size = expected_size;
        let mut new_hashes: HashMap<u64, Hash> = HashMap::new();
        let mut in_batch: HashMap<Hash, u64> = HashMap::new();
        let mut indexes = Vec::with_capacity(entries.len());
        let mut rows = Rows::default();
        for entry in entries {
            let leaf = merkle::leaf_hash(entry);
            if let Some(i) = in_batch.get(&leaf) {
                indexes.push((*i, true));
                continue;
            }
            if let Some(i) = read.duplicates.get(leaf.0.as_slice()) {
                indexes.push((*i, true));
                continue;
            }
            let reader = BatchReader {
                new: &new_hashes,
                old: &read.edge,
            };
            let stored = merkle::hashes_to_store(size, leaf, &reader).map_err(Error::Log)?;
            for (at, h) in (merkle::stored_hash_count(size)..).zip(stored) {
                new_hashes.insert(at, h);
            }
            rows.idx.push(to_i64(size)?);
            rows.entry.push(entry.clone());
            rows.leaf.push(leaf.0.to_vec());
            in_batch.insert(leaf, size);
            indexes.push((size, false));
            size += 1;
        }
        let reader = BatchReader {
            new: &new_hashes,
            old: &read.edge,
        };
        let root = merkle::tree_hash(size, &reader).map_err(Error::Log)?;
        let checkpoint = sign(size, root)?;
        let (mut hash_idx, mut hashes) = (Vec::new(), Vec::new());
        for (at, h) in &new_hashes {
            hash_idx.push(to_i64(*at)?);
            hashes.push(h.0.to_vec());
        }
        to_db
            .blocking_send(Write {
                rows,
                hash_idx,
                hashes,
                size: to_i64(size)?,
                checkpoint: checkpoint.clone(),
            })
            .map_err(|_| task_ended())?;
        done_rx.recv().map_err(|_| task_ended())??;
        // Committed: what this batch wrote and read is the database's now, and stays so.
        self.remember(new_hashes.into_iter().chain(read.edge));
        Ok(Committed {
            indexes,
            size,
            checkpoint,
        })
    }
}

/// What phase 1 read.
struct Read {
    /// Leaf hash -> index, for the batch's entries already in the log.
    duplicates: HashMap<Vec<u8>, u64>,
    /// The stored hashes on the tree's right edge.
    edge: HashMap<u64, Hash>,
}

/// New entries, column by column (written with one `UNNEST` insert).
#[derive(Default)]
struct Rows {
    idx: Vec<i64>,
    entry: Vec<Vec<u8>>,
    leaf: Vec<Vec<u8>>,
}

/// What phase 3 writes.
struct Write {
    rows: Rows,
    hash_idx: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    size: i64,
    checkpoint: String,
}

async fn transaction(
    client: Arc<Mutex<Client>>,
    config: Arc<Target>,
    expected: i64,
    leaves: Vec<Vec<u8>>,
    to_here: std::sync::mpsc::SyncSender<Result<Read, Error>>,
    mut from_here: tokio::sync::mpsc::Receiver<Write>,
    done: std::sync::mpsc::SyncSender<Result<(), Error>>,
) {
    let mut phase1_answered = false;
    let outcome = async {
        let mut client = connected(&client, &config).await?;
        let txn = client.transaction().await.map_err(db)?;
        let found: i64 = txn
            .query_one("SELECT size FROM certgate_log_head FOR UPDATE", &[])
            .await
            .map_err(db)?
            .get(0);
        if found != expected {
            return Err(Error::Conflict {
                expected: u64::try_from(expected).unwrap_or(0),
                found: u64::try_from(found).unwrap_or(0),
            });
        }
        let mut duplicates = HashMap::new();
        for row in txn
            .query(
                "SELECT leaf, idx FROM certgate_log_entries WHERE leaf = ANY($1)",
                &[&leaves],
            )
            .await
            .map_err(db)?
        {
            let idx: i64 = row.get(1);
            duplicates.insert(row.get::<_, Vec<u8>>(0), u64::try_from(idx).unwrap_or(0));
        }
        let positions: Vec<i64> = edge(u64::try_from(expected).unwrap_or(0))
            .into_iter()
            .filter_map(|p| i64::try_from(p).ok())
            .collect();
        let mut edge_hashes = HashMap::new();
        for row in txn
            .query(
                "SELECT idx, hash FROM certgate_log_hashes WHERE idx = ANY($1)",
                &[&positions],
            )
            .await
            .map_err(db)?
        {
            let idx: i64 = row.get(0);
            if let Ok(h) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(1)) {
                edge_hashes.insert(u64::try_from(idx).unwrap_or(0), Hash(h));
            }
        }
        phase1_answered = true;
        if to_here
            .send(Ok(Read {
                duplicates,
                edge: edge_hashes,
            }))
            .is_err()
        {
            return Err(Error::Closed);
        }
        // The caller gave up (its computation failed): nothing is written.
        let Some(w) = from_here.recv().await else {
            return Err(Error::Closed);
        };
        if !w.rows.idx.is_empty() {
            txn.execute(
                "INSERT INTO certgate_log_entries (idx, entry, leaf) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[])",
                &[&w.rows.idx, &w.rows.entry, &w.rows.leaf],
            )
            .await
            .map_err(db)?;
            txn.execute(
                "INSERT INTO certgate_log_hashes (idx, hash) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
                &[&w.hash_idx, &w.hashes],
            )
            .await
            .map_err(db)?;
        }
        txn.execute(
            "UPDATE certgate_log_head SET size = $1, checkpoint = $2",
            &[&w.size, &w.checkpoint],
        )
        .await
        .map_err(db)?;
        txn.commit().await.map_err(db)
    }
    .await;
    match outcome {
        Ok(()) => {
            let _ = done.send(Ok(()));
        }
        Err(e) if !phase1_answered => {
            let _ = to_here.send(Err(e));
        }
        Err(e) => {
            let _ = done.send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_is_the_maximal_complete_subtrees() {
        assert!(edge(0).is_empty());
        assert_eq!(edge(1), vec![merkle::stored_hash_index(0, 0)]);
        assert_eq!(
            edge(3),
            vec![
                merkle::stored_hash_index(1, 0),
                merkle::stored_hash_index(0, 2)
            ]
        );
        assert_eq!(
            edge(6),
            vec![
                merkle::stored_hash_index(2, 0),
                merkle::stored_hash_index(1, 2)
            ]
        );
    }
}
