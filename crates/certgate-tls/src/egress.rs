//! The client side of egress: which certificate certgate presents to a server, and the rule that
//! it presents one only to a server whose own certificate verified: a client certificate
//! names its holder, and is not for whoever answers.
//!
//! rustls asks the resolver for a client certificate when the server's CertificateRequest
//! arrives, but only *sends* it after the server's Certificate and CertificateVerify have been
//! checked by the verifier built here: a server that fails verification ends the handshake
//! before a single byte of the client certificate leaves, in TLS 1.2 and 1.3 alike.
//!
//! Choosing among several identities: an identity fits when its chain reaches one of the CA names
//! the server sent (the issuer of any certificate in the chain, or the subject of a CA
//! certificate in it) and its key can sign with one of the server's signature schemes. The first
//! fitting identity, in config order, is sent; with no CA names, the first whose key fits. When
//! none fits, no certificate is sent and the reason is logged.
//!
//! Servers that name no CAs (Python's `ssl`, many embedded servers) leave the choice blind. Each
//! connection therefore resolves through its own [`Attempt`], which records what it sent and
//! which other identities would fit, so the connecting code can try the next one when the server
//! answers with an alert that refuses the certificate ([`refuses_client_certificate`]).
//!
//! Session resumption: every rule has its own `ClientConfig`, so its own session cache; a
//! reload builds new configs, so a rotated certificate never resumes a session of the old one.
//! A rule with several identities does not resume at all: rustls keys sessions by server name
//! only, and a resumed session carries the identity of its first handshake.

use std::fmt;
use std::sync::{Arc, Mutex};

use certgate_pki::{Credential, SpkiHash, TrustBundle};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::{Error, certified_key, provider};

/// A client certificate egress may present.
pub struct ClientIdentity {
    /// Its `[[identity]]` name.
    pub name: String,
    /// Its leaf's subject (RFC 4514), for logs.
    pub subject: String,
    key: Arc<CertifiedKey>,
    /// DER `Name`s (outer SEQUENCE included, as in a CertificateRequest) of every CA its chain
    /// reaches.
    ca_names: Vec<Vec<u8>>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// An identity from a loaded credential.
    pub fn new(name: &str, credential: &Credential) -> Self {
        let mut ca_names = Vec::new();
        for (i, der) in credential.chain.iter().enumerate() {
            let Ok((_, cert)) = X509Certificate::from_der(der) else {
                continue;
            };
            ca_names.push(cert.issuer().as_raw().to_vec());
            if i > 0 {
                ca_names.push(cert.subject().as_raw().to_vec());
            }
        }
        Self {
            name: name.to_owned(),
            subject: credential.identity.subject.clone(),
            key: certified_key(credential),
            ca_names,
        }
    }

    fn reaches(&self, hint: &[u8]) -> bool {
        self.ca_names.iter().any(|n| n == hint)
    }
}

/// Why each candidate was or was not sent, for logs and `egress explain`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// The CA names the server sent (RFC 4514), empty when it sent none.
    pub hints: Vec<String>,
    /// Every candidate identity by name, with the verdict on it.
    pub candidates: Vec<(String, String)>,
    /// The identity sent, if any.
    pub chosen: Option<String>,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chosen {
            Some(name) => write!(f, "sent identity `{name}`")?,
            None => f.write_str("sent no client certificate")?,
        }
        if self.hints.is_empty() {
            f.write_str(" (the server named no CAs)")?;
        } else {
            write!(f, " (the server asked for: {})", self.hints.join("; "))?;
        }
        for (name, why) in &self.candidates {
            write!(f, "; `{name}`: {why}")?;
        }
        Ok(())
    }
}

/// Picks the identity to send for a CertificateRequest naming `hints` and `schemes`, trying
/// identities in config order.
pub fn choose(
    identities: &[ClientIdentity],
    hints: &[&[u8]],
    schemes: &[SignatureScheme],
) -> (Option<usize>, Choice) {
    let order: Vec<usize> = (0..identities.len()).collect();
    let picked = choose_in_order(identities, &order, hints, schemes);
    (picked.index, picked.choice)
}

/// What [`choose_in_order`] decided.
#[derive(Clone, Debug, Default)]
pub struct Picked {
    /// The identity sent (an index into the rule's identities).
    pub index: Option<usize>,
    /// Why, candidate by candidate.
    pub choice: Choice,
    /// When the server named no CAs: the other identities in `order` whose key fits, in order
    /// (what a fallback would try next).
    pub alternatives: Vec<usize>,
}

/// Picks the identity to send. With CA names from the server, the first identity in config order
/// whose chain reaches one of them; without, the first in `order` whose key fits (identities not
/// in `order` were refused by this server in an earlier attempt).
pub fn choose_in_order(
    identities: &[ClientIdentity],
    order: &[usize],
    hints: &[&[u8]],
    schemes: &[SignatureScheme],
) -> Picked {
    let mut picked = Picked {
        choice: Choice {
            hints: hints.iter().map(|h| dn_text(h)).collect(),
            ..Choice::default()
        },
        ..Picked::default()
    };
    let fits = |id: &ClientIdentity| id.key.key.choose_scheme(schemes).is_some();
    let cannot_sign = |id: &ClientIdentity| {
        format!(
            "its {:?} key cannot sign with any scheme the server offers",
            id.key.key.algorithm()
        )
    };
    if hints.is_empty() {
        for &i in order {
            let id = &identities[i];
            let verdict = if !fits(id) {
                cannot_sign(id)
            } else if picked.index.is_some() {
                picked.alternatives.push(i);
                "fits; kept for a fallback".to_owned()
            } else {
                picked.index = Some(i);
                picked.choice.chosen = Some(id.name.clone());
                "chosen (the server named no CAs; first untried identity whose key fits)".to_owned()
            };
            picked.choice.candidates.push((id.name.clone(), verdict));
        }
        for (i, id) in identities.iter().enumerate() {
            if !order.contains(&i) {
                picked.choice.candidates.push((
                    id.name.clone(),
                    "refused by this server in an earlier attempt".to_owned(),
                ));
            }
        }
        return picked;
    }
    for (i, id) in identities.iter().enumerate() {
        let verdict = if picked.index.is_some() {
            "fits, but an earlier identity was chosen".to_owned()
        } else if !hints.iter().any(|h| id.reaches(h)) {
            "its chain reaches none of the CAs the server named".to_owned()
        } else if !fits(id) {
            cannot_sign(id)
        } else {
            picked.index = Some(i);
            picked.choice.chosen = Some(id.name.clone());
            "chosen (its chain reaches a CA the server named)".to_owned()
        };
        picked.choice.candidates.push((id.name.clone(), verdict));
    }
    picked
}

fn dn_text(der: &[u8]) -> String {
    match X509Name::from_der(der) {
        Ok((_, name)) => certgate_pki::dn::rfc4514(&name),
        Err(_) => format!("(undecodable name, {} bytes)", der.len()),
    }
}

/// The identities of one rule. Each connection gets its own [`Attempt`], which decides and
/// records what it sent.
pub struct ChooseIdentity {
    rule: String,
    identities: Vec<ClientIdentity>,
}

impl fmt::Debug for ChooseIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChooseIdentity")
            .field("rule", &self.rule)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

impl ChooseIdentity {
    /// How many identities the rule has.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether the rule has no identity.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// An identity's name.
    pub fn name(&self, index: usize) -> &str {
        &self.identities[index].name
    }

    /// The rule's name.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// A resolver for one connection: when the server names no CAs, identities are offered in
    /// `order` (indices; an identity left out is not offered).
    pub fn attempt(self: &Arc<Self>, order: Vec<usize>) -> Arc<Attempt> {
        Arc::new(Attempt {
            rule: Arc::clone(self),
            order,
            picked: Mutex::new(None),
            ticket: Arc::new(TicketSeen::default()),
        })
    }
}

impl ResolvesClientCert for ChooseIdentity {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let (index, choice) = choose(&self.identities, root_hint_subjects, sigschemes);
        self.record(index, choice)
    }

    fn has_certs(&self) -> bool {
        !self.identities.is_empty()
    }
}

impl ChooseIdentity {
    fn record(&self, index: Option<usize>, choice: Choice) -> Option<Arc<CertifiedKey>> {
        match index {
            Some(_) => tracing::debug!(rule = %self.rule, "{choice}"),
            None => tracing::warn!(rule = %self.rule, "{choice}"),
        }
        index.map(|i| Arc::clone(&self.identities[i].key))
    }
}

/// One connection's resolver: chooses like the rule, in the attempt's order, and remembers what
/// it chose and what else would have fitted, so that the connection can fall back to the next
/// identity when the server refuses this one.
pub struct Attempt {
    rule: Arc<ChooseIdentity>,
    order: Vec<usize>,
    picked: Mutex<Option<Picked>>,
    ticket: Arc<TicketSeen>,
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("rule", &self.rule.rule)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl Attempt {
    /// What was chosen, once the server asked for a certificate (`None` if it never did).
    pub fn picked(&self) -> Option<Picked> {
        self.picked.lock().ok().and_then(|p| p.clone())
    }

    /// Whether the server sent a TLS 1.3 session ticket on this connection. OpenSSL and rustls
    /// servers send tickets only after the client's certificate and Finished were accepted, so a
    /// ticket is the earliest sign that the server took the certificate.
    pub fn ticket_seen(&self) -> bool {
        self.ticket.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `base` with this attempt as its certificate resolver. With several identities, sessions
    /// are never resumed (a resumed session carries the identity of its first handshake); the
    /// attempt only notes that a ticket arrived.
    pub fn config(self: &Arc<Self>, base: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
        let mut config = (**base).clone();
        config.client_auth_cert_resolver = Arc::clone(self) as Arc<dyn ResolvesClientCert>;
        if self.rule.identities.len() > 1 {
            config.resumption = rustls::client::Resumption::store(
                Arc::clone(&self.ticket) as Arc<dyn rustls::client::ClientSessionStore>
            )
            .tls12_resumption(rustls::client::Tls12Resumption::Disabled);
        }
        Arc::new(config)
    }
}

impl ResolvesClientCert for Attempt {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let picked = choose_in_order(
            &self.rule.identities,
            &self.order,
            root_hint_subjects,
            sigschemes,
        );
        let (index, choice) = (picked.index, picked.choice.clone());
        if let Ok(mut p) = self.picked.lock() {
            *p = Some(picked);
        }
        self.rule.record(index, choice)
    }

    fn has_certs(&self) -> bool {
        !self.rule.identities.is_empty()
    }
}

/// A session store that stores nothing and notes that a TLS 1.3 ticket arrived.
#[derive(Debug, Default)]
struct TicketSeen(std::sync::atomic::AtomicBool);

impl rustls::client::ClientSessionStore for TicketSeen {
    fn set_kx_hint(&self, _: ServerName<'static>, _: rustls::NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        None
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

/// Whether a TLS alert from the server says it refused the client certificate (rather than
/// anything else about the connection): what makes trying another identity worthwhile.
pub fn refuses_client_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::UnknownCA
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateUnknown
            | A::CertificateRequired
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied
            // TLS 1.2 servers (OpenSSL among them) answer a refused certificate with
            // handshake_failure; a fallback is only tried when a certificate was sent.
            | A::HandshakeFailure
    )
}

/// What one egress rule needs for its TLS client.
#[derive(Debug, Default)]
pub struct EgressTls {
    /// The rule's name, for logs.
    pub rule: String,
    /// Private trust anchors (and CRLs) for the server's certificate.
    pub trust: Option<Arc<TrustBundle>>,
    /// More trust anchors: the operating system's roots, when the rule asks for them.
    pub system_roots: Vec<CertificateDer<'static>>,
    /// The server's SPKI must also be this one.
    pub pin: Option<SpkiHash>,
    /// Client identities, in order of preference.
    pub identities: Vec<ClientIdentity>,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// The TLS server configuration egress interception presents for one host: `chain` (the minted
/// leaf, then the interception CA) and its PKCS#8 key; no client authentication, HTTP/1.1.
pub fn intercept_server_config(
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key_pkcs8.into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rule's client configuration and its resolver.
pub fn egress_client_config(
    tls: EgressTls,
) -> Result<(Arc<rustls::ClientConfig>, Arc<ChooseIdentity>), Error> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    let mut crls = Vec::new();
    let mut allow_unknown = false;
    if let Some(trust) = &tls.trust {
        for ca in trust.ca_certificates() {
            roots.add(ca.clone())?;
        }
        crls.extend(
            trust
                .crl_ders()
                .into_iter()
                .map(rustls_pki_types::CertificateRevocationListDer::from),
        );
        allow_unknown =
            trust.unknown_revocation() == certgate_pki::verify::UnknownRevocation::Allow;
    }
    // Unparseable system roots are skipped, as every TLS client does.
    let _ = roots.add_parsable_certificates(tls.system_roots);
    if roots.is_empty() {
        return Err(Error::Rustls(rustls::Error::General(
            "no trust anchors for the server's certificate".into(),
        )));
    }
    let mut builder =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .with_crls(crls);
    if allow_unknown {
        builder = builder.allow_unknown_revocation_status();
    }
    let webpki = builder
        .build()
        .map_err(|e| Error::Rustls(rustls::Error::General(e.to_string())))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.pin {
        Some(pin) => Arc::new(PinnedServer { inner: webpki, pin }),
        None => webpki,
    };
    let resolver = Arc::new(ChooseIdentity {
        rule: tls.rule,
        identities: tls.identities,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesClientCert>);
    config.alpn_protocols = tls.alpn;
    if resolver.identities.len() > 1 {
        // A resumed session keeps the client identity of its first handshake, and rustls keys
        // sessions by server name alone: two servers under one name (different ports) asking for
        // different CAs could otherwise get each other's identity.
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok((Arc::new(config), resolver))
}

/// Full WebPKI verification, then the server's SPKI must equal the pin.
#[derive(Debug)]
struct PinnedServer {
    inner: Arc<WebPkiServerVerifier>,
    pin: SpkiHash,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let got = certgate_pki::Identity::from_der(end_entity)
            .map(|i| i.spki_sha256)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if got != self.pin {
            return Err(rustls::Error::General(format!(
                "the server's key {got} is not the pinned {}",
                self.pin
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_pki::Origin;
    use certgate_testkit::{Spec, TestPki, self_signed};

    fn identity(
        name: &str,
        cert: &certgate_testkit::Cert,
        chain: &[&certgate_testkit::Cert],
    ) -> ClientIdentity {
        let mut pem = cert.pem.clone();
        for c in chain {
            pem.push_str(&c.pem);
        }
        let o = Origin::other(name);
        let certs = certgate_pki::credential::parse_certificates(pem.as_bytes(), &o).unwrap();
        let key =
            certgate_pki::credential::parse_private_key(cert.key_pem.as_bytes(), &o, None).unwrap();
        let cred = Credential::assemble(certs, &o, key, &o).unwrap();
        ClientIdentity::new(name, &cred)
    }

    fn name_der(cert: &certgate_testkit::Cert) -> Vec<u8> {
        let der =
            certgate_pki::credential::parse_certificates(cert.pem.as_bytes(), &Origin::other("x"))
                .unwrap()
                .remove(0);
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        c.subject().as_raw().to_vec()
    }

    #[test]
    fn chooses_by_the_ca_the_server_names() {
        let a = TestPki::named("a");
        let b = TestPki::named("b");
        let other = self_signed(&Spec::ca("other", None));
        let ids = [
            identity("a", &a.client, &[&a.intermediate]),
            identity("b", &b.client, &[&b.intermediate]),
        ];
        let schemes = [
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA256,
        ];
        // The root of b, or b's intermediate: b.
        for hint in [name_der(&b.root), name_der(&b.intermediate)] {
            let (i, choice) = choose(&ids, &[&hint], &schemes);
            assert_eq!(i, Some(1), "{choice}");
            assert_eq!(choice.chosen.as_deref(), Some("b"));
        }
        // Both named: the first in config order.
        let (ra, rb) = (name_der(&a.root), name_der(&b.root));
        assert_eq!(choose(&ids, &[&rb, &ra], &schemes).0, Some(0));
        // No names: the first whose key fits.
        assert_eq!(choose(&ids, &[], &schemes).0, Some(0));
        // A CA neither reaches: none, and it says why.
        let (i, choice) = choose(&ids, &[&name_der(&other)], &schemes);
        assert_eq!(i, None);
        assert!(
            choice
                .to_string()
                .contains("reaches none of the CAs the server named"),
            "{choice}"
        );
        assert!(choice.to_string().contains("CN=other"), "{choice}");
        // A key that cannot sign with what the server offers.
        let (i, choice) = choose(&ids, &[], &[SignatureScheme::RSA_PKCS1_SHA256]);
        assert_eq!(i, None);
        assert!(choice.to_string().contains("cannot sign"), "{choice}");
    }

    #[test]
    fn without_ca_names_the_order_decides_and_the_rest_are_alternatives() {
        let a = TestPki::named("a");
        let b = TestPki::named("b");
        let c = TestPki::named("c");
        let ids = [
            identity("a", &a.client, &[&a.intermediate]),
            identity("b", &b.client, &[&b.intermediate]),
            identity("c", &c.client, &[&c.intermediate]),
        ];
        let schemes = [SignatureScheme::ECDSA_NISTP256_SHA256];
        let picked = choose_in_order(&ids, &[0, 1, 2], &[], &schemes);
        assert_eq!((picked.index, picked.alternatives), (Some(0), vec![1, 2]));
        // a was refused: b next, c still an alternative, a said to be refused.
        let picked = choose_in_order(&ids, &[1, 2], &[], &schemes);
        assert_eq!(
            (picked.index, picked.alternatives.clone()),
            (Some(1), vec![2])
        );
        assert!(
            picked
                .choice
                .to_string()
                .contains("`a`: refused by this server"),
            "{}",
            picked.choice
        );
        // Remembered c first.
        let picked = choose_in_order(&ids, &[2, 0, 1], &[], &schemes);
        assert_eq!((picked.index, picked.alternatives), (Some(2), vec![0, 1]));
        // With CA names, the order and the refusals do not matter and there is no fallback.
        let hint = name_der(&b.root);
        let picked = choose_in_order(&ids, &[2], &[&hint], &schemes);
        assert_eq!((picked.index, picked.alternatives), (Some(1), vec![]));
        // No key fits: nothing, no alternatives.
        let picked = choose_in_order(&ids, &[0, 1, 2], &[], &[SignatureScheme::ED448]);
        assert_eq!((picked.index, picked.alternatives), (None, vec![]));
    }

    #[test]
    fn only_alerts_about_the_certificate_start_a_fallback() {
        use rustls::AlertDescription as A;
        for a in [
            A::UnknownCA,
            A::BadCertificate,
            A::CertificateRequired,
            A::AccessDenied,
        ] {
            assert!(refuses_client_certificate(a), "{a:?}");
        }
        for a in [
            A::ProtocolVersion,
            A::DecodeError,
            A::InternalError,
            A::UnrecognisedName,
        ] {
            assert!(!refuses_client_certificate(a), "{a:?}");
        }
    }
}
