//! Verification of a presented chain against a named trust bundle: chain building with
//! intermediates, validity time, extended key usage, key usage, path length and CRLs (including
//! CRLs issued by intermediates).
//!
//! The result is a [`Verdict`]. A [`VerifiedChain`] can only be made here, so code that demands one
//! cannot be handed an unverified certificate by mistake ("presented" and "verified" never share a type).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::Serialize;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use crate::error::{Error, Origin, Result};
use crate::identity::CertHash;

/// What a certificate is being verified for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// TLS client authentication (EKU clientAuth).
    Client,
    /// TLS server authentication (EKU serverAuth).
    Server,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Server => "server",
        })
    }
}

/// How a missing CRL for some certificate in the chain is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownRevocation {
    /// A certificate whose issuer has no CRL in the bundle is accepted (the default: CRLs are
    /// often published by the root only).
    #[default]
    Allow,
    /// Every certificate in the chain must be covered by a CRL.
    Deny,
}

/// A CRL of a bundle, described (`TrustBundle::crl_summaries`).
#[derive(Clone, Debug, Serialize)]
pub struct CrlSummary {
    /// The CRL's issuer (RFC 4514).
    pub issuer: String,
    /// nextUpdate, unix seconds; `None` when the CRL has none.
    pub next_update: Option<i64>,
    /// Number of revoked certificates.
    pub revoked: usize,
    /// Everything it says about itself (number, thisUpdate), for comparing a newer list.
    #[serde(skip)]
    pub facts: crate::crl::CrlFacts,
}

/// Trust anchors plus CRLs under one name (`[[trust]]` in the config).
pub struct TrustBundle {
    name: String,
    anchors: Vec<TrustAnchor<'static>>,
    anchor_certs: Vec<CertificateDer<'static>>,
    /// Known intermediates: used to build chains, never trusted by themselves.
    extra_intermediates: Vec<CertificateDer<'static>>,
    /// The CRLs in force and the verdicts reached with them. A newer CRL of a list the bundle
    /// holds is swapped in whole ([`TrustBundle::install_crl`]), so a verification sees one set
    /// from start to end, and verdicts cached with the old set die with it.
    crls: ArcSwap<CrlSet>,
    /// Serialises [`TrustBundle::install_crl`] (read, compare, store).
    installing: std::sync::Mutex<()>,
    unknown_revocation: UnknownRevocation,
    /// How long past the earliest nextUpdate the CRLs are still used (0: not at all).
    stale_grace_secs: u64,
    /// Verifications that relied on the grace period.
    grace_uses: std::sync::atomic::AtomicU64,
    /// Distribution-point URLs of certificates whose chain reached an anchor, when the trust
    /// follows them (`None` otherwise).
    learned_crl_urls: Option<std::sync::Mutex<Vec<String>>>,
    /// The provider's algorithms behind one signature cache (see `sigcache`).
    algorithms: Vec<crate::sigcache::Cached>,
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("name", &self.name)
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.load().crls.len())
            .finish()
    }
}

/// A CRL as read from a file, before it joins a bundle.
#[derive(Debug)]
pub struct LoadedCrl {
    /// The list and its index of revoked serials (see `revocation`).
    list: crate::revocation::RevocationList,
    /// nextUpdate, unix seconds (`u64::MAX` when absent).
    next_update: u64,
    /// Number of revoked serials.
    pub revoked: usize,
    /// The issuer (RFC 4514).
    issuer: String,
    /// The CRL number (hex) and thisUpdate, to tell the newest of one issuer's CRLs.
    number: Option<String>,
    this_update: i64,
    /// The distribution points its IssuingDistributionPoint names (a partitioned list).
    scope: Option<String>,
}

impl LoadedCrl {
    /// What it says about itself.
    pub fn facts(&self) -> crate::crl::CrlFacts {
        crate::crl::CrlFacts {
            issuer: self.issuer.clone(),
            issuer_der: hex::encode(self.list.issuer_der()),
            number: self.number.clone(),
            this_update: self.this_update,
            next_update: (self.next_update != u64::MAX)
                .then(|| i64::try_from(self.next_update).ok())
                .flatten(),
            revoked: self.revoked,
            scope: self.scope.clone(),
        }
    }

    /// An indexed CRL, described by `facts` (from the same DER).
    pub(crate) fn from_parts(
        list: crate::revocation::RevocationList,
        facts: &crate::crl::CrlFacts,
    ) -> Self {
        Self {
            list,
            next_update: facts
                .next_update
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(u64::MAX),
            revoked: facts.revoked,
            issuer: facts.issuer.clone(),
            number: facts.number.clone(),
            this_update: facts.this_update,
            scope: facts.scope.clone(),
        }
    }

    /// The CRL's DER.
    pub fn der(&self) -> &[u8] {
        self.list.der()
    }

    /// Whether the list names `serial` (the INTEGER's contents, as in the certificate).
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.list.revokes(serial)
    }

    /// The list, for revocation checks.
    pub(crate) fn list(&self) -> &crate::revocation::RevocationList {
        &self.list
    }

    /// Whether `other` is a version of the same list: the same issuer and scope. Issuers are
    /// compared as encoded, byte for byte, as certificates are matched to lists: two names that
    /// read alike but are encoded differently (PrintableString and UTF8String) are two lists, so
    /// one can never displace the other as "newer".
    fn same_list(&self, other: &LoadedCrl) -> bool {
        self.list.issuer_der() == other.list.issuer_der() && self.scope == other.scope
    }
}

/// A bundle's CRLs at one moment.
struct CrlSet {
    crls: Vec<Arc<LoadedCrl>>,
    /// The earliest nextUpdate of the CRLs (unix seconds; `u64::MAX` without CRLs).
    valid_until: u64,
    verdicts: VerdictCache,
}

impl CrlSet {
    /// Keeps one CRL per list (issuer and scope), the newest: webpki uses the first CRL that is
    /// authoritative for a certificate, so an older version of a list (from another file or URL)
    /// must not come first and un-revoke what the newer one revokes.
    fn new(crls: Vec<Arc<LoadedCrl>>) -> Self {
        let mut newest: Vec<Arc<LoadedCrl>> = Vec::with_capacity(crls.len());
        for c in crls {
            match newest.iter().position(|k| k.same_list(&c)) {
                None => newest.push(c),
                Some(i) => {
                    if crate::crl::not_older(&c.facts(), &newest[i].facts()).is_ok() {
                        newest[i] = c;
                    }
                }
            }
        }
        Self {
            valid_until: newest
                .iter()
                .map(|c| c.next_update)
                .min()
                .unwrap_or(u64::MAX),
            crls: newest,
            verdicts: VerdictCache::default(),
        }
    }
}

/// What [`TrustBundle::install_crl`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// The CRL replaced an older version of its list; verifications from now on use it.
    Replaced,
    /// The bundle already holds this version of the list, or a newer one.
    NotNewer,
    /// The bundle holds no version of this list: only a rebuilt bundle can take it (how a
    /// missing list is treated is decided when a bundle is built).
    NoSuchList,
}

impl LoadedCrl {
    /// nextUpdate, unix seconds (`u64::MAX` when the CRL has none).
    pub fn next_update(&self) -> u64 {
        self.next_update
    }
}

/// The signature algorithms chains and CRLs are verified with (the TLS provider's).
pub(crate) fn signature_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
}

/// Parses a CRL (PEM `X509 CRL` or DER).
pub fn parse_crl(bytes: &[u8], origin: &Origin) -> Result<LoadedCrl> {
    let der = crate::crl::crl_der(bytes, origin)?;
    let bad = |reason: String| Error::BadCrl {
        origin: origin.clone(),
        reason,
    };
    let facts = crate::crl::facts_of(&der).map_err(bad)?;
    let list = crate::revocation::RevocationList::new(der).map_err(bad)?;
    Ok(LoadedCrl::from_parts(list, &facts))
}

impl TrustBundle {
    /// Builds a bundle from CA certificates and CRLs. Every CA must be usable as an anchor.
    pub fn new(
        name: &str,
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<LoadedCrl>,
        unknown_revocation: UnknownRevocation,
    ) -> Result<Self> {
        if cas.is_empty() {
            return Err(Error::Trust {
                name: name.to_owned(),
                reason: "no CA certificates".to_owned(),
            });
        }
        let mut anchors = Vec::with_capacity(cas.len());
        for (i, ca) in cas.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| Error::Trust {
                name: name.to_owned(),
                reason: format!("CA certificate #{} cannot be a trust anchor: {e:?}", i + 1),
            })?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self {
            name: name.to_owned(),
            anchors,
            anchor_certs: cas,
            extra_intermediates: Vec::new(),
            crls: ArcSwap::from_pointee(CrlSet::new(crls.into_iter().map(Arc::new).collect())),
            installing: std::sync::Mutex::new(()),
            unknown_revocation,
            stale_grace_secs: 0,
            grace_uses: std::sync::atomic::AtomicU64::new(0),
            learned_crl_urls: None,
            algorithms: crate::sigcache::wrap(signature_algorithms()),
        })
    }

    /// The CRLs in force as DER, for TLS libraries that take them raw.
    pub fn crl_ders(&self) -> Vec<Vec<u8>> {
        self.crls
            .load()
            .crls
            .iter()
            .map(|c| c.der().to_vec())
            .collect()
    }

    /// The CRLs in force.
    pub fn crls(&self) -> Vec<Arc<LoadedCrl>> {
        self.crls.load().crls.clone()
    }

    /// Puts `crl` in force in place of an older version of the same list (issuer and scope),
    /// at once for every holder of this bundle. The caller has checked the CRL's signature
    /// against this bundle's CAs ([`crate::crl::check`]); verification checks it again.
    pub fn install_crl(&self, crl: Arc<LoadedCrl>) -> Installed {
        let Ok(_one_at_a_time) = self.installing.lock() else {
            return Installed::NotNewer;
        };
        let set = self.crls.load();
        let Some(i) = set.crls.iter().position(|c| c.same_list(&crl)) else {
            return Installed::NoSuchList;
        };
        let old = &set.crls[i];
        if old.der() == crl.der() || crate::crl::not_older(&crl.facts(), &old.facts()).is_err() {
            return Installed::NotNewer;
        }
        let mut crls = set.crls.clone();
        crls[i] = crl;
        self.crls.store(Arc::new(CrlSet::new(crls)));
        Installed::Replaced
    }

    /// How a missing CRL is treated.
    pub fn unknown_revocation(&self) -> UnknownRevocation {
        self.unknown_revocation
    }

    /// Adds intermediates that help build chains (they are not trust anchors).
    pub fn with_intermediates(mut self, intermediates: Vec<CertificateDer<'static>>) -> Self {
        self.extra_intermediates = intermediates;
        self
    }

    /// SHA-256 over everything that decides a verdict (anchors, intermediates, CRLs, the
    /// missing-CRL rule), not the name: two bundles with equal contents verify alike, so a client
    /// built from one can stand in for a client built from the other.
    pub fn contents_sha256(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut part = |tag: u8, der: &[u8]| {
            h.update([tag]);
            h.update((der.len() as u64).to_be_bytes());
            h.update(der);
        };
        for c in &self.anchor_certs {
            part(b'a', c);
        }
        for c in &self.extra_intermediates {
            part(b'i', c);
        }
        for c in &self.crls.load().crls {
            part(b'c', c.der());
        }
        let rule = match self.unknown_revocation {
            UnknownRevocation::Allow => b"allow".as_slice(),
            UnknownRevocation::Deny => b"deny".as_slice(),
        };
        part(b'u', rule);
        h.finalize().into()
    }

    /// The bundle's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificates.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.anchor_certs
    }

    /// What each CRL says about itself, for status pages: issuer, nextUpdate, revoked count.
    pub fn crl_summaries(&self) -> Vec<CrlSummary> {
        self.crls
            .load()
            .crls
            .iter()
            .map(|c| CrlSummary {
                issuer: c.issuer.clone(),
                next_update: (c.next_update != u64::MAX)
                    .then(|| i64::try_from(c.next_update).ok())
                    .flatten(),
                revoked: c.revoked,
                facts: c.facts(),
            })
            .collect()
    }

    /// Keeps using the CRLs for `secs` after the earliest nextUpdate passed (a CRL that could
    /// not be refreshed), instead of failing every verification at once. Bounded by the caller.
    pub fn with_stale_grace(mut self, secs: u64) -> Self {
        self.stale_grace_secs = secs;
        self
    }

    /// How many verifications used a CRL past its nextUpdate, within the grace period.
    pub fn grace_uses(&self) -> u64 {
        self.grace_uses.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers the `http://` CRL distribution points of certificates whose chain reached one
    /// of this bundle's anchors (verified, or refused only for revocation reasons), so a
    /// fetcher can follow them. Only CA-signed certificates count: a URL from a certificate
    /// anybody made could point the fetcher anywhere.
    pub fn with_learned_crl_urls(mut self) -> Self {
        self.learned_crl_urls = Some(std::sync::Mutex::new(Vec::new()));
        self
    }

    /// The distribution points learned so far (see [`Self::with_learned_crl_urls`]).
    pub fn learned_crl_urls(&self) -> Vec<String> {
        self.learned_crl_urls
            .as_ref()
            .and_then(|m| m.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    /// The certificates that may sign this bundle's CRLs: the CAs and known intermediates.
    pub fn issuer_certificates(&self) -> Vec<CertificateDer<'static>> {
        self.anchor_certs
            .iter()
            .chain(&self.extra_intermediates)
            .cloned()
            .collect()
    }

    /// Number of CRLs.
    pub fn crl_count(&self) -> usize {
        self.crls.load().crls.len()
    }

    /// Verifies `chain` (leaf first, then any intermediates the peer sent) for `purpose` at `now`.
    ///
    /// Successful verdicts are cached (bounded) by the hash of the presented chain and the
    /// purpose, for as long as every certificate of the chain and every CRL of the bundle stays
    /// valid; a new CRL (installed, or in a bundle rebuilt on reload) starts with an empty cache.
    /// Failures are never cached.
    pub fn verify(&self, chain: &[CertificateDer<'_>], purpose: Purpose, now: UnixTime) -> Verdict {
        let key = chain_key(chain, purpose);
        let set = self.crls.load_full();
        if let Some(v) = set.verdicts.get(&key, now) {
            return Verdict::Verified(v);
        }
        let verdict = self.verify_uncached(&set, chain, purpose, now);
        if let Some(learned) = &self.learned_crl_urls {
            self.learn(learned, chain, &verdict);
        }
        if let Verdict::Verified(v) = &verdict
            && let Some(window) = validity_window(chain, set.valid_until)
        {
            set.verdicts.put(key, v.clone(), window);
        }
        verdict
    }

    /// Notes the distribution points of a chain that reached an anchor.
    fn learn(
        &self,
        learned: &std::sync::Mutex<Vec<String>>,
        chain: &[CertificateDer<'_>],
        verdict: &Verdict,
    ) {
        /// Distinct URLs kept: CAs have a handful; more is a sign of abuse.
        const MAX_LEARNED: usize = 64;
        let reached_anchor = match verdict {
            Verdict::Verified(_) => true,
            Verdict::Rejected(r) => {
                matches!(r.reason, Reason::RevocationUnknown | Reason::CrlExpired)
            }
        };
        if !reached_anchor {
            return;
        }
        let Ok(mut known) = learned.lock() else {
            return;
        };
        for cert in chain {
            for url in crate::crl::distribution_points(cert) {
                if known.len() < MAX_LEARNED && !known.contains(&url) {
                    known.push(url);
                }
            }
        }
    }

    fn verify_uncached(
        &self,
        set: &CrlSet,
        chain: &[CertificateDer<'_>],
        purpose: Purpose,
        now: UnixTime,
    ) -> Verdict {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return reject(Reason::Malformed, "no certificate was presented".to_owned());
        };
        if intermediates.len() >= crate::credential::MAX_CHAIN_LEN {
            return reject(
                Reason::PathTooLong,
                format!(
                    "the chain has {} certificates; at most {} are accepted",
                    chain.len(),
                    crate::credential::MAX_CHAIN_LEN
                ),
            );
        }
        // Peers that send only their leaf (front proxies forwarding one certificate) still
        // verify when the bundle knows the intermediates.
        let owned;
        let intermediates: &[CertificateDer<'_>] = if self.extra_intermediates.is_empty() {
            intermediates
        } else {
            owned = intermediates
                .iter()
                .cloned()
                .chain(self.extra_intermediates.iter().cloned())
                .collect::<Vec<_>>();
            &owned
        };
        let ee = match EndEntityCert::try_from(leaf) {
            Ok(ee) => ee,
            Err(e) => return reject_webpki(&e),
        };
        let usage = match purpose {
            Purpose::Client => KeyUsage::client_auth(),
            Purpose::Server => KeyUsage::server_auth(),
        };
        // Within the grace period after the earliest nextUpdate, CRLs are used as they are;
        // before it they are fresh, and after it they are refused (`crl_expired`), from the
        // second of nextUpdate on.
        let stale = now.as_secs() >= set.valid_until;
        let in_grace = stale
            && self.stale_grace_secs > 0
            && now.as_secs() <= set.valid_until.saturating_add(self.stale_grace_secs);
        let algorithms: Vec<&dyn SignatureVerificationAlgorithm> = self
            .algorithms
            .iter()
            .map(|a| a as &dyn SignatureVerificationAlgorithm)
            .collect();
        let path = match ee.verify_for_usage(
            &algorithms,
            &self.anchors,
            intermediates,
            now,
            usage,
            // Revocation is checked below, on the path found (see `revocation`).
            None,
            None,
        ) {
            Ok(path) => path,
            // A self-issued CA certificate that is not one of the bundle's CAs (what `openssl
            // req -x509` makes by default) fails webpki's end-entity check before its issuer is
            // looked at; the truth a user needs is that nobody trusted issued it.
            Err(webpki::Error::CaUsedAsEndEntity)
                if is_self_issued(leaf) && !self.anchor_certs.iter().any(|a| a == leaf) =>
            {
                return reject(
                    Reason::UnknownIssuer,
                    "the certificate is self-signed (a CA certificate), not issued by a trusted CA"
                        .to_owned(),
                );
            }
            Err(e) => return reject_webpki(&e),
        };
        // A bundle that must know the status of every certificate but has no CRL at all (none
        // fetched yet) knows nothing.
        if set.crls.is_empty() && self.unknown_revocation == UnknownRevocation::Deny {
            return reject(
                Reason::RevocationUnknown,
                "the trust has no CRL yet, and a certificate no CRL covers is refused".to_owned(),
            );
        }
        if in_grace {
            self.grace_uses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let policy = crate::revocation::Policy {
            crls: &set.crls,
            deny_unknown: self.unknown_revocation == UnknownRevocation::Deny,
            enforce_next_update: !in_grace,
            now: now.as_secs(),
            algorithms: &algorithms,
        };
        if let Err(r) = crate::revocation::check_path(&policy, &path) {
            return Verdict::Rejected(r);
        }
        // webpki checks EKU but not the keyUsage bits; RFC 5280 §4.2.1.3 says they bind too.
        if let Err(r) = check_key_usage(leaf, purpose) {
            return Verdict::Rejected(r);
        }
        for ca in path.intermediate_certificates() {
            if let Err(r) = check_ca_key_usage(ca.der().as_ref()) {
                return Verdict::Rejected(r);
            }
        }
        let anchor_subject = anchor_name(path.anchor());
        Verdict::Verified(VerifiedChain {
            trust: self.name.clone(),
            chain_len: 2 + path.intermediate_certificates().count(),
            anchor: anchor_subject,
            leaf: CertHash::of(leaf.as_ref()),
        })
    }
}

/// Whether the certificate names itself as its issuer.
fn is_self_issued(der: &CertificateDer<'_>) -> bool {
    X509Certificate::from_der(der.as_ref())
        .is_ok_and(|(_, c)| c.issuer().as_raw() == c.subject().as_raw())
}

fn anchor_name(anchor: &TrustAnchor<'_>) -> String {
    // The anchor subject is the DER *contents* of the Name SEQUENCE; wrap it to parse it.
    let content = anchor.subject.as_ref();
    let mut der = vec![0x30];
    let len = content.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        der.push(0x80 | (bytes.len() - skip) as u8);
        der.extend_from_slice(&bytes[skip..]);
    }
    der.extend_from_slice(content);
    x509_parser::x509::X509Name::from_der(&der)
        .map(|(_, n)| crate::dn::rfc4514(&n))
        .unwrap_or_default()
}

fn check_key_usage(leaf: &CertificateDer<'_>, purpose: Purpose) -> Result<(), Rejection> {
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Err(Rejection::new(
            Reason::Malformed,
            "the certificate does not parse".to_owned(),
        ));
    };
    let ku = match cert.key_usage() {
        Ok(Some(ku)) => *ku.value,
        Ok(None) => return Ok(()),
        Err(e) => {
            return Err(Rejection::new(
                Reason::Malformed,
                format!("bad keyUsage extension: {e}"),
            ));
        }
    };
    let ok = match purpose {
        Purpose::Client => ku.digital_signature(),
        Purpose::Server => ku.digital_signature() || ku.key_encipherment() || ku.key_agreement(),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            Reason::KeyUsage,
            format!(
                "the certificate's keyUsage does not allow TLS {purpose} authentication (needs digitalSignature)"
            ),
        ))
    }
}

fn check_ca_key_usage(der: &[u8]) -> Result<(), Rejection> {
    check_ca_key_usage_allows(der, |ku| ku.key_cert_sign(), "keyCertSign")
}

/// An intermediate CA whose keyUsage extension is present must assert the bit `allows`
/// tests (named `bit` in the refusal); without the extension any use is allowed, as webpki has
/// it (RFC 5280 §4.2.1.3).
pub(crate) fn check_ca_key_usage_allows(
    der: &[u8],
    allows: fn(&x509_parser::extensions::KeyUsage) -> bool,
    bit: &str,
) -> Result<(), Rejection> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Err(Rejection::new(
            Reason::Malformed,
            "an intermediate does not parse".to_owned(),
        ));
    };
    match cert.key_usage() {
        Ok(Some(ku)) if !allows(ku.value) => Err(Rejection::new(
            Reason::KeyUsage,
            format!(
                "intermediate CA {} has a keyUsage without {bit}",
                crate::dn::rfc4514(cert.subject())
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(Rejection::new(
            Reason::Malformed,
            format!("bad keyUsage extension: {e}"),
        )),
    }
}

/// The outcome of [`TrustBundle::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The chain verified.
    Verified(VerifiedChain),
    /// It did not, and why.
    Rejected(Rejection),
}

impl Verdict {
    /// The verified chain, if any.
    pub fn verified(&self) -> Option<&VerifiedChain> {
        match self {
            Self::Verified(v) => Some(v),
            Self::Rejected(_) => None,
        }
    }
}

/// Proof that a chain verified against a trust bundle. Only this module constructs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedChain {
    trust: String,
    chain_len: usize,
    anchor: String,
    leaf: CertHash,
}

impl VerifiedChain {
    /// Name of the trust bundle it verified against.
    pub fn trust(&self) -> &str {
        &self.trust
    }

    /// Length of the verified path including the anchor.
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }

    /// RFC 4514 subject of the trust anchor that the chain ends in.
    pub fn anchor(&self) -> &str {
        &self.anchor
    }

    /// Hash of the verified leaf.
    pub fn leaf(&self) -> CertHash {
        self.leaf
    }
}

/// Why verification failed: a machine-readable [`Reason`] and a human sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Machine-readable reason.
    pub reason: Reason,
    /// A sentence for people.
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, detail: String) -> Self {
        Self { reason, detail }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

/// Machine-readable verification failure reasons (stable strings via [`Reason::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotYetValid,
    /// The chain does not reach a trust anchor (self-signed or unknown issuer).
    UnknownIssuer,
    /// A certificate in the chain is revoked.
    Revoked,
    /// No CRL covers a certificate and the bundle requires one.
    RevocationUnknown,
    /// A CRL in the bundle is past its nextUpdate.
    CrlExpired,
    /// The extended key usage does not allow this purpose.
    WrongUsage,
    /// The keyUsage bits do not allow this purpose.
    KeyUsage,
    /// The chain is longer than allowed, or a pathLenConstraint is violated.
    PathTooLong,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A critical extension we do not understand.
    UnsupportedCriticalExtension,
    /// A CA certificate was presented as the leaf, or a leaf used as a CA.
    WrongCertificateType,
    /// An algorithm we do not support.
    UnsupportedAlgorithm,
    /// The certificate does not parse.
    Malformed,
    /// Anything else webpki reports.
    Other,
}

impl Reason {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Revoked => "revoked",
            Self::RevocationUnknown => "revocation_unknown",
            Self::CrlExpired => "crl_expired",
            Self::WrongUsage => "wrong_usage",
            Self::KeyUsage => "key_usage",
            Self::PathTooLong => "path_too_long",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedCriticalExtension => "unsupported_critical_extension",
            Self::WrongCertificateType => "wrong_certificate_type",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::Malformed => "malformed",
            Self::Other => "other",
        }
    }
}

fn reject(reason: Reason, detail: String) -> Verdict {
    Verdict::Rejected(Rejection::new(reason, detail))
}

pub(crate) fn fmt_time(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (unix)"))
}

#[allow(deprecated)] // webpki still returns the context-free variants in some paths.
fn reject_webpki(e: &webpki::Error) -> Verdict {
    use webpki::Error as E;
    let (reason, detail) = match e {
        E::CertExpired { not_after, .. } => (
            Reason::Expired,
            format!(
                "a certificate in the chain expired at {}",
                fmt_time(*not_after)
            ),
        ),
        E::CertNotValidYet { not_before, .. } => (
            Reason::NotYetValid,
            format!(
                "a certificate in the chain is not valid before {}",
                fmt_time(*not_before)
            ),
        ),
        E::UnknownIssuer => (
            Reason::UnknownIssuer,
            "the certificate is not issued by a trusted CA (self-signed or unknown issuer)"
                .to_owned(),
        ),
        E::CertRevoked => (
            Reason::Revoked,
            "the certificate or one of its issuers is revoked".to_owned(),
        ),
        E::UnknownRevocationStatus => (
            Reason::RevocationUnknown,
            "no CRL covers a certificate in the chain".to_owned(),
        ),
        E::CrlExpired { next_update, .. } => (
            Reason::CrlExpired,
            format!(
                "the CRL expired at {}; publish a new one",
                fmt_time(*next_update)
            ),
        ),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => (
            Reason::WrongUsage,
            "the certificate's extended key usage does not allow this purpose".to_owned(),
        ),
        E::PathLenConstraintViolated
        | E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded => (
            Reason::PathTooLong,
            format!("the chain is too long ({e:?})"),
        ),
        E::InvalidSignatureForPublicKey | E::InvalidCrlSignatureForPublicKey => (
            Reason::BadSignature,
            "a signature in the chain does not verify".to_owned(),
        ),
        E::UnsupportedCriticalExtension => (
            Reason::UnsupportedCriticalExtension,
            "a certificate has a critical extension certgate does not understand".to_owned(),
        ),
        E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => (
            Reason::WrongCertificateType,
            format!("wrong certificate type: {e:?}"),
        ),
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => (
            Reason::UnsupportedAlgorithm,
            format!("unsupported signature algorithm ({e:?})"),
        ),
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::UnsupportedCertVersion => (
            Reason::Malformed,
            format!("the certificate is malformed or of an unsupported version ({e:?})"),
        ),
        other => (Reason::Other, format!("{other:?}")),
    };
    reject(reason, detail)
}

/// The cache key of a presented chain: SHA-256 over the purpose and each certificate.
fn chain_key(chain: &[CertificateDer<'_>], purpose: Purpose) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([purpose as u8]);
    for c in chain {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c.as_ref());
    }
    h.finalize().into()
}

/// The time window (unix seconds, inclusive start, exclusive end) in which a successful
/// verification of `chain` stays true: every certificate valid and every CRL current.
fn validity_window(chain: &[CertificateDer<'_>], crls_valid_until: u64) -> Option<(u64, u64)> {
    let mut start = 0u64;
    let mut end = u64::MAX;
    for c in chain {
        let (_, cert) = X509Certificate::from_der(c.as_ref()).ok()?;
        let v = cert.validity();
        start = start.max(u64::try_from(v.not_before.timestamp()).ok()?);
        end = end.min(
            u64::try_from(v.not_after.timestamp())
                .ok()?
                .saturating_add(1),
        );
    }
    end = end.min(crls_valid_until);
    (start < end).then_some((start, end))
}

/// A cached verdict and the window (unix seconds) in which it holds.
type Cached = (VerifiedChain, (u64, u64));

/// Successful verdicts by chain hash. Cleared when full.
#[derive(Default)]
struct VerdictCache {
    inner: std::sync::RwLock<std::collections::HashMap<[u8; 32], Cached>>,
}

const MAX_VERDICTS: usize = 16_384;

impl VerdictCache {
    fn get(&self, key: &[u8; 32], now: UnixTime) -> Option<VerifiedChain> {
        let map = self.inner.read().ok()?;
        let (v, (start, end)) = map.get(key)?;
        let t = now.as_secs();
        (*start <= t && t < *end).then(|| v.clone())
    }

    fn put(&self, key: [u8; 32], v: VerifiedChain, window: (u64, u64)) {
        if let Ok(mut map) = self.inner.write() {
            if map.len() >= MAX_VERDICTS {
                map.clear();
            }
            map.insert(key, (v, window));
        }
    }
}
