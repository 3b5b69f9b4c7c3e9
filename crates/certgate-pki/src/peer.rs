//! The client identity of one connection: absent (and why), or presented with its verification
//! state. "Presented" and "verified" never share a type, so an unverified
//! certificate cannot reach code that expects a verified one.

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;

use crate::identity::Identity;
use crate::verify::{Purpose, Rejection, TrustBundle, Verdict, VerifiedChain};

/// Why a connection has no client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoClientCert {
    /// The listener does not ask for one (`client_auth = "none"`).
    NotRequested,
    /// It asked; the client sent none.
    NotSent,
}

/// What is known about a presented certificate's trustworthiness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Verification {
    /// It chains to the named trust bundle (and passed validity, usage and revocation checks).
    Verified(VerifiedChain),
    /// It was checked against a trust bundle and failed.
    Failed {
        /// The bundle it was checked against.
        trust: String,
        /// Why it failed.
        rejection: Rejection,
    },
    /// No trust bundle is configured for this listener: possession was proven, nothing more.
    NoTrustConfigured,
}

/// A client certificate that was presented and whose key the client proved to hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// What the leaf says.
    pub identity: Identity,
    /// The chain as presented, leaf first.
    #[serde(skip)]
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether it is trusted.
    pub verification: Verification,
}

impl PeerIdentity {
    /// Builds the identity of a presented chain and verifies it against `trust`, if any.
    /// Returns `None` when the leaf does not parse.
    pub fn evaluate(
        chain: Vec<CertificateDer<'static>>,
        trust: Option<&TrustBundle>,
        now: UnixTime,
    ) -> Option<Self> {
        let identity = Identity::from_der(chain.first()?).ok()?;
        let verification = match trust {
            None => Verification::NoTrustConfigured,
            Some(bundle) => match bundle.verify(&chain, Purpose::Client, now) {
                Verdict::Verified(v) => Verification::Verified(v),
                Verdict::Rejected(rejection) => Verification::Failed {
                    trust: bundle.name().to_owned(),
                    rejection,
                },
            },
        };
        Some(Self {
            identity,
            chain,
            verification,
        })
    }

    /// The verified chain, when verification succeeded.
    pub fn verified(&self) -> Option<&VerifiedChain> {
        match &self.verification {
            Verification::Verified(v) => Some(v),
            _ => None,
        }
    }
}

/// The client side of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "client_cert", rename_all = "snake_case")]
pub enum ClientCert {
    /// No certificate.
    Absent {
        /// Why.
        reason: NoClientCert,
    },
    /// A certificate whose key the client proved to hold.
    Present(Box<PeerIdentity>),
}

impl ClientCert {
    /// The presented identity, verified or not.
    pub fn presented(&self) -> Option<&PeerIdentity> {
        match self {
            Self::Present(p) => Some(p),
            Self::Absent { .. } => None,
        }
    }
}
