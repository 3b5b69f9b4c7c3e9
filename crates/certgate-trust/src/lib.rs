//! Content trust, pure: statements a publisher signs about an artifact's digest (`statement`),
//! the verifier's policy (`policy`), the deterministic digest of a directory tree (`tree`), and
//! how the statements in a log decide a status (`decide`).
//!
//! Statements are C2SP signed notes, signed on the publisher's machine; the log only witnesses
//! them. The exit codes of `certgate trust verify` are Codenotary CAS's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod decide;
pub mod keyfile;
pub mod policy;
pub mod statement;
pub mod tree;

pub use decide::{Outcome, Verdict, decide};
pub use policy::Policy;
pub use statement::{Digest, Statement, Status, SubjectKind};

/// What went wrong, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement is malformed or of an unknown version.
    #[error("statement: {0}")]
    Statement(String),
    /// A digest is malformed or of an unsupported algorithm.
    #[error("digest: {0}")]
    Digest(String),
    /// The policy file is wrong.
    #[error("policy: {0}")]
    Policy(String),
    /// A proof bundle is malformed, about another subject, or does not verify.
    #[error("proof bundle: {0}")]
    Bundle(String),
    /// A signing-key file could not be opened (wrong password, damaged).
    #[error("key file: {0}")]
    KeyFile(String),
    /// The transparency-log core refused something.
    #[error(transparent)]
    Log(#[from] certgate_tlog::Error),
}
