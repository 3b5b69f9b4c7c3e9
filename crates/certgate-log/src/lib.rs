//! The transparency log service: durable embedded storage ([`store`]), the batching
//! [`sequencer`], and the tlog-tiles read API plus the write endpoint ([`service`]), on top of the
//! pure core in `certgate-tlog`; the verifying [`client`] that follows a log's checkpoints; and
//! the [`witness`] that cosigns checkpoints of logs it knows only when they grow consistently.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod pg;
pub mod sequencer;
pub mod service;
pub mod store;
pub mod witness;

pub use pg::{Imported, PgStore};
pub use sequencer::{Appended, BatchLimits, Sequencer};
pub use service::LogService;
pub use store::{LogStorage, Store};
pub use witness::Witness;

/// What went wrong in the log service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage failed.
    #[error("log storage: {0}")]
    Storage(String),
    /// Another writer moved the log (compare-and-swap failed).
    #[error("the log has {found} entries, not the expected {expected}: another writer?")]
    Conflict {
        /// The size the sequencer expected.
        expected: u64,
        /// The size found.
        found: u64,
    },
    /// The core refused something (proof, note, tile).
    #[error(transparent)]
    Log(#[from] certgate_tlog::Error),
    /// The sequencer has stopped.
    #[error("the log is shutting down")]
    Closed,
}
