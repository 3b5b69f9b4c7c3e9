//! rustls server configurations for certgate: the five client-auth modes, the client-certificate
//! verifier that always checks possession, and SNI-selected server identities.
//!
//! This is the only crate that builds rustls `ServerConfig`s. It never accepts a client
//! certificate without the handshake signature proving the client holds its key, in every mode,
//! including "accept any certificate": a certificate is public, so presenting one proves nothing
//! by itself.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod egress;
mod resolver;
mod verifier;

use std::fmt;
use std::sync::Arc;

use certgate_pki::{ClientCert, Credential, NoClientCert, PeerIdentity, TrustBundle};
use rustls::server::NoServerSessionStorage;
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::UnixTime;

pub use resolver::{SniIdentities, SniPattern};
pub use verifier::ClientVerifier;

/// The client-auth modes (names as Caddy's; what each accepts is tabled in `docs/config.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// No CertificateRequest; every client is anonymous.
    #[default]
    None,
    /// Ask; accept none, or any certificate whose key the client holds (verified if it chains).
    Request,
    /// Ask; demand a certificate, any one whose key the client holds (verified if it chains).
    Require,
    /// Ask; accept none, or a certificate that verifies against the trust bundle.
    VerifyIfGiven,
    /// Ask; demand a certificate that verifies against the trust bundle.
    RequireAndVerify,
}

impl ClientAuth {
    /// Every mode with its config spelling.
    pub const ALL: [(&'static str, ClientAuth); 5] = [
        ("none", ClientAuth::None),
        ("request", ClientAuth::Request),
        ("require", ClientAuth::Require),
        ("verify_if_given", ClientAuth::VerifyIfGiven),
        ("require_and_verify", ClientAuth::RequireAndVerify),
    ];

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("none", |(n, _)| n)
    }

    /// Whether a CertificateRequest is sent.
    pub fn requests(self) -> bool {
        self != Self::None
    }

    /// Whether a client without a certificate is refused in the handshake.
    pub fn mandatory(self) -> bool {
        matches!(self, Self::Require | Self::RequireAndVerify)
    }

    /// Whether a presented certificate must verify against the trust bundle.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyIfGiven | Self::RequireAndVerify)
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lowest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Why a listener's TLS settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A verifying mode without a trust bundle.
    #[error("client_auth = \"{0}\" verifies client certificates, so it needs `trust`")]
    TrustRequired(ClientAuth),
    /// rustls refused the configuration or a key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// No server identity.
    #[error("a listener needs at least one server identity")]
    NoIdentity,
}

/// What a listener needs to build its TLS configuration.
#[derive(Debug)]
pub struct ListenerTls {
    /// Server identities by SNI, with a default.
    pub identities: SniIdentities,
    /// Client-auth mode.
    pub client_auth: ClientAuth,
    /// Trust bundle for client certificates (required by verifying modes, optional otherwise:
    /// with it, `request`/`require` still report whether a certificate verified).
    pub trust: Option<Arc<TrustBundle>>,
    /// Minimum TLS version.
    pub min_version: MinVersion,
    /// ALPN protocols to offer, most preferred first.
    pub alpn: Vec<Vec<u8>>,
}

/// The provider every configuration uses: aws-lc-rs, installed explicitly so two providers can
/// never collide.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Turns a loaded credential into a key rustls can serve.
pub fn certified_key(credential: &Credential) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::new(
        credential.chain.clone(),
        Arc::clone(&credential.key.signer),
    ))
}

/// Builds the `ServerConfig` of a listener.
///
/// Resumption: listeners that request client certificates neither keep a session cache nor
/// issue tickets, so every connection runs the full handshake and the verifier sees the current
/// trust and CRLs. rustls restores a resumed session's peer certificates
/// without re-running the verifier, so resumption would let a revoked certificate back in.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, Error> {
    if tls.client_auth.verifies() && tls.trust.is_none() {
        return Err(Error::TrustRequired(tls.client_auth));
    }
    let provider = provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let verifier = ClientVerifier::new(tls.client_auth, tls.trust.clone(), &provider);
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(tls.identities.clone()));
    config.alpn_protocols = tls.alpn.clone();
    if tls.client_auth.requests() {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// Derives the client identity of an established connection: absent (and why), or presented
/// with its verification state against `trust`.
///
/// In verifying modes the verifier already refused certificates that do not verify; this
/// re-evaluation is cheap (the trust bundle caches signature checks) and yields the
/// [`certgate_pki::VerifiedChain`] that later stages demand.
pub fn client_cert(
    conn: &ServerConnection,
    mode: ClientAuth,
    trust: Option<&TrustBundle>,
    now: UnixTime,
) -> ClientCert {
    let Some(chain) = conn.peer_certificates().filter(|c| !c.is_empty()) else {
        return ClientCert::Absent {
            reason: if mode.requests() {
                NoClientCert::NotSent
            } else {
                NoClientCert::NotRequested
            },
        };
    };
    let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
    match PeerIdentity::evaluate(chain, trust, now) {
        Some(p) => ClientCert::Present(Box::new(p)),
        // The verifier parsed the leaf before accepting it, so this does not happen; treat an
        // unreadable certificate as no certificate rather than as an identity.
        None => ClientCert::Absent {
            reason: NoClientCert::NotSent,
        },
    }
}

/// A `ClientConfig` for connecting to an upstream: its server certificate must verify against
/// `trust` (CRLs included), and `identity`, when given, is presented if the upstream asks.
pub fn upstream_client_config(
    trust: &TrustBundle,
    identity: Option<&Credential>,
) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in trust.ca_certificates() {
        roots.add(ca.clone())?;
    }
    let crls = trust
        .crl_ders()
        .into_iter()
        .map(rustls_pki_types::CertificateRevocationListDer::from);
    let mut verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .with_crls(crls);
    if trust.unknown_revocation() == certgate_pki::verify::UnknownRevocation::Allow {
        verifier = verifier.allow_unknown_revocation_status();
    }
    let verifier = verifier
        .build()
        .map_err(|e| Error::Rustls(rustls::Error::General(e.to_string())))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    Ok(match identity {
        Some(c) => builder.with_client_auth_cert(c.chain.clone(), c.key.der.clone_key())?,
        None => builder.with_no_client_auth(),
    })
}
