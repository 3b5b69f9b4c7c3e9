//! certgate's PKI toolkit: load credentials in every common form, derive identities, verify chains
//! against named trust bundles with CRLs, describe files for `inspect`, and issue certificates and
//! CRLs for the small CA.
//!
//! This crate never reads files, the environment or the clock by itself: callers pass bytes, an
//! [`Origin`] for messages, passwords and the time. That keeps it usable from the CLI, the config
//! loader and (later) hot reload alike.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod credential;
pub mod crl;
pub mod dn;
mod error;
pub mod forward;
pub mod forwarded;
pub mod identity;
pub mod inspect;
pub mod name_constraints;
pub mod peer;
pub mod pem;
mod revocation;
mod sigcache;
pub mod verify;

pub use credential::{Credential, LoadedKey};
pub use error::{Error, Origin, Result};
pub use identity::{CertHash, Identity, Sans, SpiffeId, SpkiHash};
pub use peer::{ClientCert, NoClientCert, PeerIdentity, Verification};
pub use verify::{Purpose, Reason, Rejection, TrustBundle, Verdict, VerifiedChain};
