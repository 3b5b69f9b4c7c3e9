//! The client-certificate verifier for all five modes.
//!
//! Possession is always proven: both signature methods verify the CertificateVerify signature
//! with the provider's algorithms. Where webpki refuses to parse the certificate (X.509 v1,
//! unusual extensions, common for self-made "transient" certificates), the signature is checked
//! against the raw SubjectPublicKeyInfo instead; it is never skipped.

use std::sync::Arc;

use certgate_pki::{Purpose, Reason, TrustBundle, Verdict};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use x509_parser::prelude::FromDer as _;

use crate::ClientAuth;

/// See the module documentation.
#[derive(Debug)]
pub struct ClientVerifier {
    mode: ClientAuth,
    trust: Option<Arc<TrustBundle>>,
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl ClientVerifier {
    /// A verifier for `mode`; verifying modes check against `trust`.
    pub fn new(
        mode: ClientAuth,
        trust: Option<Arc<TrustBundle>>,
        provider: &CryptoProvider,
    ) -> Self {
        // Verifying modes name their CAs in the CertificateRequest so clients can pick the right
        // certificate; accept-any modes send no names ("send whatever you have").
        let hints = match (&trust, mode.verifies()) {
            (Some(t), true) => t
                .ca_certificates()
                .iter()
                .filter_map(|ca| subject_der(ca).map(DistinguishedName::from))
                .collect(),
            _ => Vec::new(),
        };
        Self {
            mode,
            trust,
            algorithms: provider.signature_verification_algorithms,
            hints,
        }
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let parsed = if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        };
        match parsed {
            // webpki could not parse the certificate itself: verify against the raw key.
            Err(Error::InvalidCertificate(CertificateError::BadEncoding))
            | Err(Error::InvalidCertificate(CertificateError::Other(_))) => {
                let spki = spki_der(cert)
                    .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
                raw_key_signature(message, &spki, dss, &self.algorithms, tls13)
            }
            other => other,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.mode.requests()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode.mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Every mode needs a certificate we can read an identity from.
        if spki_der(end_entity).is_none() {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        }
        if !self.mode.verifies() {
            return Ok(ClientCertVerified::assertion());
        }
        let Some(trust) = &self.trust else {
            // Unreachable: `server_config` refuses verifying modes without trust.
            return Err(Error::General("no trust bundle configured".into()));
        };
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        match trust.verify(&chain, Purpose::Client, now) {
            Verdict::Verified(_) => Ok(ClientCertVerified::assertion()),
            Verdict::Rejected(r) => {
                tracing::debug!(trust = trust.name(), reason = r.reason.code(), detail = %r.detail, "client certificate rejected");
                Err(Error::InvalidCertificate(certificate_error(r.reason)))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Maps a verification failure to the TLS alert rustls sends.
fn certificate_error(reason: Reason) -> CertificateError {
    match reason {
        Reason::Expired => CertificateError::Expired,
        Reason::NotYetValid => CertificateError::NotValidYet,
        Reason::Revoked => CertificateError::Revoked,
        Reason::UnknownIssuer => CertificateError::UnknownIssuer,
        Reason::WrongUsage | Reason::KeyUsage => CertificateError::InvalidPurpose,
        Reason::BadSignature => CertificateError::BadSignature,
        Reason::RevocationUnknown => CertificateError::UnknownRevocationStatus,
        Reason::CrlExpired => CertificateError::ExpiredRevocationList,
        _ => CertificateError::BadEncoding,
    }
}

/// Verifies a handshake signature against a raw SubjectPublicKeyInfo, with the same algorithm
/// selection rustls uses: for TLS 1.3 the scheme must be TLS 1.3-capable and only its first
/// mapped algorithm is tried; for TLS 1.2 every mapped algorithm is tried.
fn raw_key_signature(
    message: &[u8],
    spki: &SubjectPublicKeyInfoDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, Error> {
    if tls13 {
        return rustls::crypto::verify_tls13_signature_with_raw_key(message, spki, dss, algorithms);
    }
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or(Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))?;
    let key = webpki::RawPublicKeyEntity::try_from(spki)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    for alg in candidates {
        match key.verify_signature(*alg, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            // Another algorithm of this scheme may fit the key (e.g. another curve).
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => return Err(Error::InvalidCertificate(CertificateError::BadSignature)),
        }
    }
    Err(Error::InvalidCertificate(CertificateError::BadSignature))
}

/// The SubjectPublicKeyInfo of a certificate, read leniently (v1 and odd extensions allowed).
fn spki_der(cert: &CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'static>> {
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(SubjectPublicKeyInfoDer::from(c.public_key().raw.to_vec()))
}

fn subject_der(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(c.subject().as_raw().to_vec())
}
