//! The transparency log's pure core: RFC 6962 Merkle trees and proofs (`merkle`), C2SP
//! signed notes with Ed25519 (`note`), checkpoints (`checkpoint`), tlog-tiles coordinates and
//! entry bundles (`tile`), and tlog-proof files (`proof`).
//!
//! No I/O: callers pass bytes and hash readers; storage, HTTP and the clock live elsewhere.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tile;

pub use checkpoint::Checkpoint;
pub use merkle::{Hash, HashReader, MemoryTree};
pub use note::{Note, Signer, Verifier, Verifiers};

/// What went wrong, in words a person can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A signed note is malformed.
    #[error("malformed note: {0}")]
    Note(String),
    /// A note is well-formed but its signatures do not check out.
    #[error("note not verified: {0}")]
    Signature(String),
    /// A key text is malformed.
    #[error("malformed key: {0}")]
    Key(String),
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    /// A tile path, tile or entry bundle is malformed.
    #[error("malformed tile: {0}")]
    Tile(String),
    /// A proof does not verify, or cannot be made.
    #[error("proof: {0}")]
    Proof(String),
    /// A tlog-proof file is malformed.
    #[error("malformed tlog-proof: {0}")]
    ProofFile(String),
}
