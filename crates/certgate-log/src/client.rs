//! The log's verifying client: fetch a log's checkpoint, check it under a policy (log keys,
//! witnesses), prove it consistent with the one stored before (from the log's tiles), and store
//! it. A log that shrank or forked fails closed, and both signed checkpoints are kept.
//!
//! I/O goes through [`ClientIo`] (the binary's implementation speaks HTTPS and writes state
//! files; tests use a log in the same process), so the decisions here are testable without a
//! network.

use certgate_tlog::checkpoint::{Checkpoint, Policy};
use certgate_tlog::merkle;
use certgate_tlog::note::Note;
use certgate_tlog::tile::{Tile, TileReader};

/// What the client needs from outside: the log's read API and the verifier's state.
pub trait ClientIo {
    /// The body of `GET <log>/<path>` (`checkpoint`, a tile path) when the log answered 200.
    fn fetch(&mut self, path: &str) -> Result<Vec<u8>, String>;
    /// The stored state item `what` (e.g. `checkpoint`), if there is one.
    fn load(&mut self, what: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores state item `what`, replacing any earlier one whole.
    fn store(&mut self, what: &str, bytes: &[u8]) -> Result<(), String>;
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The log could not be read (a temporary failure: try again).
    #[error("{0}")]
    Unreachable(String),
    /// The log's checkpoint or the stored one is not valid under the policy.
    #[error("{0}")]
    Invalid(String),
    /// The verifier's state could not be read or written.
    #[error("{0}")]
    State(String),
    /// The log is not consistent with the checkpoint stored before: it shrank or forked.
    #[error(
        "{origin}: the fetched checkpoint (size {fetched}) is NOT consistent with the stored one (size {stored}): {why}; both kept as evidence: {evidence_stored} and {evidence_fetched}"
    )]
    Inconsistent {
        /// The log's origin.
        origin: String,
        /// Size of the stored checkpoint.
        stored: u64,
        /// Size of the fetched one.
        fetched: u64,
        /// What the check found.
        why: String,
        /// The state item the stored checkpoint was copied to.
        evidence_stored: String,
        /// The state item the fetched checkpoint was written to.
        evidence_fetched: String,
    },
}

/// A checkpoint fetched, verified and stored as the new state for its origin.
#[derive(Clone, Debug)]
pub struct Synced {
    /// The new checkpoint.
    pub checkpoint: Checkpoint,
    /// The size of the checkpoint stored before, if any.
    pub previous_size: Option<u64>,
    /// What the consistency check said, for people.
    pub verdict: String,
}

/// Fetches and opens the log's checkpoint under `policy`.
pub fn fetch_checkpoint(
    io: &mut impl ClientIo,
    origin: &str,
    policy: &Policy,
) -> Result<(Checkpoint, Note), SyncError> {
    let body = io
        .fetch("checkpoint")
        .map_err(|e| SyncError::Unreachable(format!("checkpoint: {e}")))?;
    let (cp, note, witnesses) = policy
        .open(&body, origin)
        .map_err(|e| SyncError::Invalid(format!("checkpoint: {e}")))?;
    if !witnesses.is_empty() {
        tracing::info!(?witnesses, "checkpoint cosigned");
    }
    Ok((cp, note))
}

/// The tree of `size` entries, read from the log's tiles through `io`.
pub fn tiles<I: ClientIo>(
    io: &mut I,
    size: u64,
) -> TileReader<impl FnMut(&Tile) -> Result<Vec<u8>, certgate_tlog::Error> + '_> {
    TileReader::new(size, move |tile: &Tile| {
        let path = tile.path();
        io.fetch(&path)
            .map_err(|e| certgate_tlog::Error::Tile(format!("{path}: {e}")))
    })
}

/// Fetches the log's checkpoint, verifies it under `policy` and its consistency with the one
/// stored under `checkpoint` (from the log's tiles), and stores it. An inconsistent or shrunk
/// log fails closed: the stored checkpoint stays, and both are also kept as
/// `conflict-<stamp>.stored` and `conflict-<stamp>.fetched`.
pub fn sync_checkpoint(
    io: &mut impl ClientIo,
    origin: &str,
    policy: &Policy,
    stamp: i64,
) -> Result<Synced, SyncError> {
    let (new, new_note) = fetch_checkpoint(io, origin, policy)?;
    let old = match io.load("checkpoint").map_err(SyncError::State)? {
        Some(bytes) => {
            let bad =
                |e: certgate_tlog::Error| SyncError::Invalid(format!("the stored checkpoint: {e}"));
            let note = Note::parse(&bytes).map_err(bad)?;
            let cp = Checkpoint::parse(note.text()).map_err(bad)?;
            Some((cp, note))
        }
        None => None,
    };
    let mut verdict = "first checkpoint stored (nothing to compare with)".to_owned();
    if let Some((old, old_note)) = &old {
        let check = if new.size < old.size {
            Err(format!(
                "the log went back from size {} to {}",
                old.size, new.size
            ))
        } else {
            let reader = tiles(io, new.size);
            merkle::consistency_proof(old.size, new.size, &reader)
                .and_then(|p| {
                    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &p)
                })
                .map_err(|e| e.to_string())
        };
        if let Err(why) = check {
            let evidence_stored = format!("conflict-{stamp}.stored");
            let evidence_fetched = format!("conflict-{stamp}.fetched");
            io.store(&evidence_stored, old_note.to_string().as_bytes())
                .map_err(SyncError::State)?;
            io.store(&evidence_fetched, new_note.to_string().as_bytes())
                .map_err(SyncError::State)?;
            return Err(SyncError::Inconsistent {
                origin: origin.to_owned(),
                stored: old.size,
                fetched: new.size,
                why,
                evidence_stored,
                evidence_fetched,
            });
        }
        verdict = format!("consistent with the stored checkpoint of size {}", old.size);
    }
    io.store("checkpoint", new_note.to_string().as_bytes())
        .map_err(SyncError::State)?;
    Ok(Synced {
        checkpoint: new,
        previous_size: old.map(|(o, _)| o.size),
        verdict,
    })
}
