//! Checking a CRL that came from elsewhere (a URL) before it replaces the one in use.
//!
//! A CRL fetched over plain HTTP is only as good as its signature: anyone on the path can
//! change it. So before a fetched CRL is used or cached it must be signed by one of the trust's
//! CA certificates (the one whose subject is the CRL's issuer), be valid now (`thisUpdate` not in
//! the future, `nextUpdate` not past), and not be older than the CRL it replaces: a CRL number
//! that goes backwards is a replayed old list, which could un-revoke a certificate. The
//! verifier checks signatures again when it uses a CRL; checking here means a bad download
//! never replaces a good list.

use std::fmt;

use rustls_pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, Class, FromDer as _, Tag};
use x509_parser::extensions::X509Extension;
use x509_parser::prelude::X509Certificate;
use x509_parser::time::ASN1Time;
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use crate::error::Origin;

/// Clock skew tolerated on `thisUpdate`, in seconds.
const SKEW_SECS: i64 = 300;

/// What a checked CRL says about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrlFacts {
    /// The issuer (RFC 4514).
    pub issuer: String,
    /// The issuer as encoded: hex of its DER (empty in facts stored by earlier versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_der: String,
    /// The CRL number as lower-case hex without leading zeros, when the CRL has one.
    pub number: Option<String>,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds, when present.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
    /// For a partitioned list, the distribution points its IssuingDistributionPoint names
    /// (space-separated): each partition is its own list, with its own numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl CrlFacts {
    /// Whether `other` describes a version of the same list (issuer as encoded, and scope).
    pub fn same_list(&self, other: &CrlFacts) -> bool {
        self.issuer == other.issuer
            && self.issuer_der == other.issuer_der
            && self.scope == other.scope
    }

    /// A key naming the list (issuer and scope), for maps. The issuer is the name as encoded
    /// (hex of its DER) when known: two names that read alike but are encoded differently are
    /// two lists, as certificates are matched to lists byte for byte, so a list under a
    /// look-alike name can never set the floor of the CA's own.
    pub fn list_key(&self) -> String {
        let issuer = if self.issuer_der.is_empty() {
            &self.issuer
        } else {
            &self.issuer_der
        };
        match &self.scope {
            None => issuer.clone(),
            Some(s) => format!("{issuer} (partition {s})"),
        }
    }
}

/// What a partitioned CRL covers, from its IssuingDistributionPoint (`None` for a CRL that covers
/// all of its issuer's certificates): the kind of certificates when it is limited to one, and the
/// distribution points it names, sorted and quoted (so that no two scopes read alike).
fn scope(extensions: &[X509Extension<'_>]) -> Option<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    extensions.iter().find_map(|ext| {
        let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() else {
            return None;
        };
        let Some(DistributionPointName::FullName(names)) = &idp.distribution_point else {
            return None;
        };
        let mut uris: Vec<String> = names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => (*u).to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        uris.sort();
        let kind = if idp.only_contains_user_certs {
            "end-entity certificates at "
        } else if idp.only_contains_ca_certs {
            "CA certificates at "
        } else {
            ""
        };
        Some(format!("{kind}{uris:?}"))
    })
}

/// Why a fetched CRL was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrlRefused {
    /// It does not parse as a CRL (PEM or DER).
    Malformed(String),
    /// No CA certificate of the trust has the CRL's issuer as its subject.
    UnknownIssuer(String),
    /// The signature does not verify with the issuer's key (or uses SHA-1).
    BadSignature {
        /// The issuer.
        issuer: String,
        /// What the verifier said.
        detail: String,
    },
    /// `thisUpdate` is in the future.
    NotYetValid {
        /// thisUpdate, unix seconds.
        this_update: i64,
    },
    /// `nextUpdate` has passed.
    Expired {
        /// nextUpdate, unix seconds.
        next_update: i64,
    },
    /// Its CRL number is lower than that of the CRL in use.
    NumberWentBack {
        /// The number in use.
        old: String,
        /// The number fetched.
        new: String,
    },
    /// Issued by another CA than the CRL this source gave before: a source serves one CA's
    /// list, so a switch is a substitution (it would also leave the first CA without a CRL).
    IssuerChanged {
        /// The issuer of the CRL in use.
        old: String,
        /// The issuer of the one fetched.
        new: String,
    },
    /// The CRL in use has a CRL number and this one has none: the numbers could no longer tell
    /// an old list from a new one.
    NumberMissing {
        /// The number in use.
        old: String,
    },
    /// A CRL with the number of the one in use but other contents: a number names one list, so
    /// one of the two is not what the CA published under it (a replay of a discarded list, or
    /// a CA that reused a number); the one in use stays.
    NumberReused {
        /// The number.
        number: String,
    },
    /// A source's list changed scope (a full list became a partition, or the reverse, or
    /// another partition): the lists are not versions of one another.
    ScopeChanged {
        /// The scope of the CRL in use (`None`: the full list).
        old: Option<String>,
        /// The scope of the one fetched.
        new: Option<String>,
    },
    /// A partitioned CRL (its IssuingDistributionPoint names other places than where it came
    /// from): it covers only some of the CA's certificates, so it cannot replace the CA's list.
    Partitioned(String),
    /// Older than the CRL in use (by `thisUpdate`) although the numbers do not say so.
    Older {
        /// thisUpdate of the CRL in use.
        old: i64,
        /// thisUpdate of the one fetched.
        new: i64,
    },
}

fn time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

impl fmt::Display for CrlRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a CRL: {why}"),
            Self::UnknownIssuer(issuer) => write!(
                f,
                "issued by `{issuer}`, which is not a CA certificate of this trust (a CRL of an intermediate CA needs that CA in the trust's `intermediates`)"
            ),
            Self::BadSignature { issuer, detail } => write!(
                f,
                "its signature does not verify with the key of `{issuer}` ({detail})"
            ),
            Self::NotYetValid { this_update } => {
                write!(f, "not valid yet: thisUpdate is {}", time(*this_update))
            }
            Self::Expired { next_update } => {
                write!(f, "expired: nextUpdate was {}", time(*next_update))
            }
            Self::NumberWentBack { old, new } => write!(
                f,
                "its CRL number 0x{new} is lower than that of the CRL in use, 0x{old} (an old list replayed?)"
            ),
            Self::IssuerChanged { old, new } => write!(
                f,
                "issued by `{new}`, but this source's CRL is `{old}`'s (a source serves one CA's list)"
            ),
            Self::NumberMissing { old } => write!(
                f,
                "it has no CRL number, and the CRL in use has 0x{old}: an old list could not be told from a new one"
            ),
            Self::NumberReused { number } => write!(
                f,
                "it has the CRL number 0x{number} of the CRL in use, but other contents (thisUpdate or entries): a CRL number names one list"
            ),
            Self::ScopeChanged { old, new } => {
                let name = |s: &Option<String>| match s {
                    None => "the CA's full list".to_owned(),
                    Some(s) => format!("the partition for {s}"),
                };
                write!(
                    f,
                    "it is {}, but the CRL in use from this source is {}",
                    name(new),
                    name(old)
                )
            }
            Self::Partitioned(why) => write!(f, "a partitioned CRL: {why}"),
            Self::Older { old, new } => write!(
                f,
                "it is older (thisUpdate {}) than the CRL in use (thisUpdate {})",
                time(*new),
                time(*old)
            ),
        }
    }
}

impl std::error::Error for CrlRefused {}

/// The DER of a CRL given as PEM (`X509 CRL`) or DER.
pub fn crl_der(bytes: &[u8], origin: &Origin) -> crate::Result<Vec<u8>> {
    if !crate::pem::looks_like_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    let blocks = crate::pem::parse(bytes).map_err(|error| crate::Error::Pem {
        origin: origin.clone(),
        error,
    })?;
    blocks
        .into_iter()
        .find(|b| b.label == "X509 CRL")
        .map(|b| b.der)
        .ok_or_else(|| crate::Error::BadCrl {
            origin: origin.clone(),
            reason: "no `X509 CRL` PEM block".to_owned(),
        })
}

/// A CRL read without parsing its revoked entries one by one (a 100,000-entry list is read in
/// a few milliseconds instead of most of a second); webpki, which uses the list, parses every
/// entry, and a list it refuses is refused.
pub(crate) struct Lean<'a> {
    /// The DER of tbsCertList, what the signature covers.
    tbs: &'a [u8],
    signature_algorithm: AlgorithmIdentifier<'a>,
    /// The DER contents of the signatureAlgorithm SEQUENCE.
    signature_algorithm_der: &'a [u8],
    /// The signature bits (the BIT STRING without its unused-bits octet, which must be 0).
    signature_bits: &'a [u8],
    pub(crate) issuer: X509Name<'a>,
    /// The contents of revokedCertificates (empty when absent).
    revoked_certs: &'a [u8],
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    /// The number of revoked entries.
    pub(crate) revoked: usize,
    extensions: Vec<X509Extension<'a>>,
}

impl<'a> Lean<'a> {
    /// Reads `der`, a whole CRL (nothing may follow it).
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, String> {
        fn any(i: &[u8]) -> Result<(&[u8], Any<'_>), String> {
            Any::from_der(i).map_err(|e| e.to_string())
        }
        fn is_time(a: &Any<'_>) -> bool {
            a.class() == Class::Universal
                && (a.tag() == Tag::UtcTime || a.tag() == Tag::GeneralizedTime)
        }
        let (rest, outer) = any(der)?;
        if !rest.is_empty() {
            return Err("bytes after the CRL".to_owned());
        }
        if outer.tag() != Tag::Sequence {
            return Err("not a SEQUENCE".to_owned());
        }
        let content = outer.data;
        let (after_tbs, tbs) = any(content)?;
        let tbs_der = &content[..content.len() - after_tbs.len()];
        let (after_alg, signature_algorithm) =
            AlgorithmIdentifier::from_der(after_tbs).map_err(|e| e.to_string())?;
        let signature_algorithm_der = any(after_tbs)?.1.data;
        let (rest, signature) = any(after_alg)?;
        if !rest.is_empty() {
            return Err("bytes after the signature".to_owned());
        }
        if signature.tag() != Tag::BitString {
            return Err("the signature is not a BIT STRING".to_owned());
        }
        let signature_bits = match signature.data.split_first() {
            Some((0, bits)) => bits,
            _ => return Err("the signature BIT STRING has unused bits".to_owned()),
        };
        if tbs.tag() != Tag::Sequence {
            return Err("tbsCertList is not a SEQUENCE".to_owned());
        }
        let mut i = tbs.data;
        if any(i)?.1.tag() == Tag::Integer {
            i = any(i)?.0;
        }
        let (i, _) = AlgorithmIdentifier::from_der(i).map_err(|e| e.to_string())?;
        let (i, issuer) = X509Name::from_der(i).map_err(|e| e.to_string())?;
        let (mut i, this_update) = ASN1Time::from_der(i).map_err(|e| e.to_string())?;
        let mut next_update = None;
        if !i.is_empty() && is_time(&any(i)?.1) {
            let (rest, t) = ASN1Time::from_der(i).map_err(|e| e.to_string())?;
            next_update = Some(t.timestamp());
            i = rest;
        }
        let mut revoked = 0;
        let mut revoked_certs: &[u8] = &[];
        if !i.is_empty() {
            let (rest, a) = any(i)?;
            if a.class() == Class::Universal && a.tag() == Tag::Sequence {
                revoked_certs = a.data;
                let mut entries = a.data;
                while !entries.is_empty() {
                    entries = crate::revocation::tlv(entries)
                        .map_err(|e| format!("revoked entry {revoked}: {e}"))?
                        .2;
                    revoked += 1;
                }
                i = rest;
            }
        }
        let mut extensions = Vec::new();
        if !i.is_empty() {
            let (rest, a) = any(i)?;
            if a.class() != Class::ContextSpecific || a.tag() != Tag(0) {
                return Err("unexpected field after the revoked certificates".to_owned());
            }
            let (inner_rest, list) = any(a.data)?;
            if !inner_rest.is_empty() || list.tag() != Tag::Sequence {
                return Err("crlExtensions is not one SEQUENCE".to_owned());
            }
            let mut e = list.data;
            while !e.is_empty() {
                let (r, ext) = X509Extension::from_der(e).map_err(|e| e.to_string())?;
                extensions.push(ext);
                e = r;
            }
            i = rest;
        }
        if !i.is_empty() {
            return Err("bytes after crlExtensions".to_owned());
        }
        Ok(Self {
            tbs: tbs_der,
            signature_algorithm,
            signature_algorithm_der,
            signature_bits,
            issuer,
            revoked_certs,
            this_update: this_update.timestamp(),
            next_update,
            revoked,
            extensions,
        })
    }

    /// The CRL number as lower-case hex without leading zeros.
    pub(crate) fn number(&self) -> Option<String> {
        self.extensions.iter().find_map(|ext| {
            let x509_parser::extensions::ParsedExtension::CRLNumber(n) = ext.parsed_extension()
            else {
                return None;
            };
            let s = hex::encode(n.to_bytes_be());
            let s = s.trim_start_matches('0');
            Some(if s.is_empty() { "0" } else { s }.to_owned())
        })
    }

    /// The partition it is, if any (see [`CrlFacts::scope`]).
    pub(crate) fn scope(&self) -> Option<String> {
        scope(&self.extensions)
    }

    /// What it says about itself.
    pub(crate) fn facts(&self) -> CrlFacts {
        CrlFacts {
            issuer: crate::dn::rfc4514(&self.issuer),
            issuer_der: self.issuer_der_hex(),
            number: self.number(),
            this_update: self.this_update,
            next_update: self.next_update,
            revoked: self.revoked,
            scope: self.scope(),
        }
    }

    /// The issuer Name's DER contents as hex (what [`CrlFacts::issuer_der`] holds).
    pub(crate) fn issuer_der_hex(&self) -> String {
        hex::encode(crate::revocation::der_contents(self.issuer.as_raw()).unwrap_or_default())
    }

    /// The contents of revokedCertificates (empty when the list revokes nothing).
    pub(crate) fn revoked_certs(&self) -> &'a [u8] {
        self.revoked_certs
    }

    /// Its IssuingDistributionPoint, if any.
    pub(crate) fn idp(&self) -> Option<&x509_parser::extensions::IssuingDistributionPoint<'a>> {
        self.extensions
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::IssuingDistributionPoint(idp) => {
                    Some(idp)
                }
                _ => None,
            })
    }

    /// What the signature covers, the signatureAlgorithm's DER contents and the signature bits.
    pub(crate) fn signed_parts(&self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        (self.tbs, self.signature_algorithm_der, self.signature_bits)
    }
}

/// Compares two CRL numbers given as hex without leading zeros.
fn number_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Checks `der` (a CRL) against the trust's CA certificates (`issuers`: anchors and known
/// intermediates) at `now` (unix seconds), and against the facts of the CRL it would replace.
pub fn check(
    der: &[u8],
    issuers: &[CertificateDer<'_>],
    now: i64,
    previous: Option<&CrlFacts>,
) -> Result<CrlFacts, CrlRefused> {
    check_from(der, issuers, now, previous, None)
}

/// [`check`] for a CRL fetched from `source` (its URL): a CRL whose IssuingDistributionPoint
/// names distribution points must name `source` among them. `previous` is the newest CRL known
/// for this source or for its issuer, whichever is newer.
pub fn check_from(
    der: &[u8],
    issuers: &[CertificateDer<'_>],
    now: i64,
    previous: Option<&CrlFacts>,
    source: Option<&str>,
) -> Result<CrlFacts, CrlRefused> {
    check_and_load(der, issuers, now, previous, source).map(|(facts, _)| facts)
}

/// The facts of a CRL that was checked before (a stored copy), read from the CRL itself,
/// without checking it again: what a newer list is compared with.
pub fn facts_of(der: &[u8]) -> Result<CrlFacts, String> {
    let crl = Lean::parse(der)?;
    Ok(crl.facts())
}

/// The facts of `der` (a CRL) once its signature verified with the key of one of `issuers`
/// (the trust's CAs and known intermediates): the one whose subject is the CRL's issuer, byte
/// for byte. No time or number checks: for CRL files and stored copies, whose contents must
/// come from the CA as much as a fetched list's, before they count or set a rollback floor.
pub fn verify_signed(der: &[u8], issuers: &[CertificateDer<'_>]) -> Result<CrlFacts, CrlRefused> {
    let crl = Lean::parse(der).map_err(CrlRefused::Malformed)?;
    signed_by_issuer(&crl, issuers)?;
    Ok(crl.facts())
}

/// Finds the CRL's signer among `issuers` and verifies its signature (SHA-1 refused); returns
/// the signer's SPKI contents.
fn signed_by_issuer(crl: &Lean<'_>, issuers: &[CertificateDer<'_>]) -> Result<Vec<u8>, CrlRefused> {
    let issuer = crate::dn::rfc4514(&crl.issuer);
    let signer = issuers.iter().find_map(|der| {
        X509Certificate::from_der(der.as_ref())
            .ok()
            .filter(|(_, c)| c.subject().as_raw() == crl.issuer.as_raw())
            .and_then(|(_, c)| {
                crate::revocation::der_contents(c.public_key().raw).map(<[u8]>::to_vec)
            })
    });
    let Some(signer_spki) = signer else {
        return Err(CrlRefused::UnknownIssuer(issuer));
    };
    let alg = &crl.signature_algorithm.algorithm;
    if *alg == x509_parser::oid_registry::OID_PKCS1_SHA1WITHRSA
        || *alg == x509_parser::oid_registry::OID_SHA1_WITH_RSA
    {
        return Err(CrlRefused::BadSignature {
            issuer,
            detail: "signed with SHA-1, which is not accepted".to_owned(),
        });
    }
    // With the algorithms (and key-size floors) a bundle verifies with, so a list accepted
    // here is one the verifier accepts too.
    let (tbs, algorithm, signature) = crl.signed_parts();
    let algorithms = crate::verify::signature_algorithms();
    crate::revocation::verify_signature(&signer_spki, algorithm, tbs, signature, algorithms)
        .map_err(|detail| CrlRefused::BadSignature { issuer, detail })?;
    Ok(signer_spki)
}

/// [`check_from`], keeping the parsed CRL ready to put in force: a large CRL is parsed once
/// by each of the two parsers, never more.
pub fn check_and_load(
    der: &[u8],
    issuers: &[CertificateDer<'_>],
    now: i64,
    previous: Option<&CrlFacts>,
    source: Option<&str>,
) -> Result<(CrlFacts, crate::verify::LoadedCrl), CrlRefused> {
    let crl = Lean::parse(der).map_err(CrlRefused::Malformed)?;
    let signer_spki = signed_by_issuer(&crl, issuers)?;
    let (this_update, next_update) = (crl.this_update, crl.next_update);
    if this_update > now + SKEW_SECS {
        return Err(CrlRefused::NotYetValid { this_update });
    }
    if let Some(next) = next_update
        && next <= now
    {
        return Err(CrlRefused::Expired { next_update: next });
    }
    for ext in &crl.extensions {
        use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
        let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() else {
            continue;
        };
        if idp.indirect_crl || idp.only_some_reasons.is_some() || idp.only_contains_attribute_certs
        {
            return Err(CrlRefused::Partitioned(
                "it covers only some reasons or is indirect".to_owned(),
            ));
        }
        if let Some(DistributionPointName::FullName(names)) = &idp.distribution_point {
            let named: Vec<&str> = names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect();
            if source.is_none_or(|s| !named.contains(&s)) {
                return Err(CrlRefused::Partitioned(format!(
                    "it is the list for {} only",
                    if named.is_empty() {
                        "other distribution points".to_owned()
                    } else {
                        named.join(", ")
                    }
                )));
            }
        }
    }
    let facts = crl.facts();
    if let Some(prev) = previous {
        if prev.issuer != facts.issuer {
            return Err(CrlRefused::IssuerChanged {
                old: prev.issuer.clone(),
                new: facts.issuer,
            });
        }
        if prev.scope != facts.scope {
            return Err(CrlRefused::ScopeChanged {
                old: prev.scope.clone(),
                new: facts.scope,
            });
        }
        not_older(&facts, prev)?;
    }
    // The index parses every entry with webpki's parser: a list webpki would refuse is refused.
    let list =
        crate::revocation::RevocationList::new(der.to_vec()).map_err(CrlRefused::Malformed)?;
    list.signed_with(&signer_spki);
    let loaded = crate::verify::LoadedCrl::from_parts(list, &facts);
    Ok((facts, loaded))
}

/// Whether `new` (a CRL of the same issuer as `old`) may replace `old`: its CRL number is not
/// lower, it has one when `old` has, and without numbers it is not older by `thisUpdate`.
pub fn not_older(new: &CrlFacts, old: &CrlFacts) -> Result<(), CrlRefused> {
    match (&old.number, &new.number) {
        (Some(o), Some(n)) if number_cmp(n, o).is_lt() => Err(CrlRefused::NumberWentBack {
            old: o.clone(),
            new: n.clone(),
        }),
        (Some(o), Some(n))
            if number_cmp(n, o).is_eq()
                && (new.this_update != old.this_update || new.revoked != old.revoked) =>
        {
            Err(CrlRefused::NumberReused { number: n.clone() })
        }
        (Some(_), Some(_)) => Ok(()),
        (Some(o), None) => Err(CrlRefused::NumberMissing { old: o.clone() }),
        _ if new.this_update < old.this_update => Err(CrlRefused::Older {
            old: old.this_update,
            new: new.this_update,
        }),
        _ => Ok(()),
    }
}

/// The `http://` URLs in a certificate's CRL distribution points (full names only; RFC 5280
/// §4.2.1.13). Other schemes (LDAP, HTTPS) are skipped: a CRL is signed, so plain HTTP is what
/// RFC 5280 intends, and fetching over TLS would need the very revocation being checked.
pub fn distribution_points(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let Ok((_, c)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ext in c.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for p in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &p.distribution_point else {
                continue;
            };
            for n in names {
                if let GeneralName::URI(uri) = n
                    && plain_http_url(uri)
                    && !out.iter().any(|u| u == uri)
                {
                    out.push((*uri).to_owned());
                }
            }
        }
    }
    out
}

/// An `http://` URL a fetcher may follow: printable ASCII without spaces, and no user
/// information (a distribution point is a public place, never a login).
pub fn plain_http_url(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    !authority.is_empty() && !authority.contains('@') && uri.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Ca, KeyType, create_root};

    fn ca(name: &str) -> (Ca, CertificateDer<'static>) {
        let now = time::OffsetDateTime::now_utc();
        let root = create_root(name, 30, KeyType::EcdsaP256, now).unwrap();
        let ca = Ca::new(root.cert_der.clone(), &root.key_pem).unwrap();
        (ca, root.cert_der)
    }

    fn crl(ca: &Ca, number: u64, days: u32) -> Vec<u8> {
        let pem = ca
            .crl(&[], number, time::OffsetDateTime::now_utc(), days)
            .unwrap();
        crl_der(pem.as_bytes(), &Origin::inline("test")).unwrap()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn a_crl_of_a_trusted_ca_passes_and_says_what_it_is() {
        let (a, a_cert) = ca("CA A");
        let facts = check(&crl(&a, 7, 3), &[a_cert], now(), None).unwrap();
        assert_eq!(facts.issuer, "CN=CA A");
        assert_eq!(facts.number.as_deref(), Some("7"));
        assert_eq!(facts.revoked, 0);
        assert!(facts.next_update.unwrap() > now() + 2 * 86400);
    }

    #[test]
    fn a_look_alike_issuer_is_a_bad_signature_and_a_stranger_unknown() {
        let (a, _) = ca("CA A");
        let (_, look_alike) = ca("CA A");
        let (_, b_cert) = ca("CA B");
        let der = crl(&a, 1, 3);
        assert!(matches!(
            check(&der, &[look_alike], now(), None),
            Err(CrlRefused::BadSignature { .. })
        ));
        assert_eq!(
            check(&der, &[b_cert], now(), None),
            Err(CrlRefused::UnknownIssuer("CN=CA A".to_owned()))
        );
    }

    #[test]
    fn a_tampered_crl_is_refused() {
        let (a, a_cert) = ca("CA A");
        let mut der = crl(&a, 1, 3);
        // Flip a bit in the signature (the last byte).
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(check(&der, &[a_cert], now(), None).is_err());
    }

    #[test]
    fn numbers_never_go_back_and_expired_lists_are_refused() {
        let (a, a_cert) = ca("CA A");
        let issuers = [a_cert];
        let newer = check(&crl(&a, 0x100, 3), &issuers, now(), None).unwrap();
        assert_eq!(
            check(&crl(&a, 0xff, 3), &issuers, now(), Some(&newer)),
            Err(CrlRefused::NumberWentBack {
                old: "100".to_owned(),
                new: "ff".to_owned()
            })
        );
        assert!(check(&crl(&a, 0x100, 3), &issuers, now(), Some(&newer)).is_ok());
        assert!(check(&crl(&a, 0x101, 3), &issuers, now(), Some(&newer)).is_ok());
        // Valid for one day, checked three days later.
        let der = crl(&a, 0x102, 1);
        assert!(matches!(
            check(&der, &issuers, now() + 3 * 86400, Some(&newer)),
            Err(CrlRefused::Expired { .. })
        ));
        // Checked two days before it was issued.
        assert!(matches!(
            check(&der, &issuers, now() - 2 * 86400, None),
            Err(CrlRefused::NotYetValid { .. })
        ));
        assert!(matches!(
            check(b"not a crl", &issuers, now(), None),
            Err(CrlRefused::Malformed(_))
        ));
    }

    /// Found by an attacker pass: a source that switched to another CA's list and back could
    /// replay an old list; a partitioned list could stand in for the whole one; a URL with a
    /// newline or user information could be learned.
    #[test]
    fn a_source_keeps_its_ca_and_partitioned_lists_are_refused() {
        let (a, a_cert) = ca("CA A");
        let (b, b_cert) = ca("CA B");
        let issuers = [a_cert, b_cert];
        let first = check(&crl(&a, 10, 3), &issuers, now(), None).unwrap();
        assert!(matches!(
            check(&crl(&b, 500, 3), &issuers, now(), Some(&first)),
            Err(CrlRefused::IssuerChanged { .. })
        ));
        // Partitioned: an IssuingDistributionPoint naming another URL.
        let params = rcgen::CertificateRevocationListParams {
            this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
            next_update: time::OffsetDateTime::now_utc() + time::Duration::days(3),
            crl_number: rcgen::SerialNumber::from(11u64),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://elsewhere.example/part2.crl".to_owned()],
                },
                scope: None,
            }),
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let der = params.signed_by(&a.issuer).unwrap().der().to_vec();
        assert!(matches!(
            check_from(
                &der,
                &issuers,
                now(),
                Some(&first),
                Some("http://pki.example/a.crl")
            ),
            Err(CrlRefused::Partitioned(_))
        ));
        // The same list is fine where it says it comes from, as a list of its own; it never
        // follows the full list from one source.
        let part = check_from(
            &der,
            &issuers,
            now(),
            None,
            Some("http://elsewhere.example/part2.crl"),
        )
        .unwrap();
        assert_eq!(
            part.scope.as_deref(),
            Some(r#"["http://elsewhere.example/part2.crl"]"#)
        );
        assert!(!part.same_list(&first));
        assert!(matches!(
            check_from(
                &der,
                &issuers,
                now(),
                Some(&first),
                Some("http://elsewhere.example/part2.crl")
            ),
            Err(CrlRefused::ScopeChanged { .. })
        ));
        // A list without a number may not follow one with a number.
        let numbered = CrlFacts {
            number: Some("a".to_owned()),
            ..first.clone()
        };
        let bare = CrlFacts {
            number: None,
            this_update: first.this_update + 10,
            ..first.clone()
        };
        assert_eq!(
            not_older(&bare, &numbered),
            Err(CrlRefused::NumberMissing {
                old: "a".to_owned()
            })
        );
        // One number, other contents: refused; the same list again is fine.
        let reissued = CrlFacts {
            this_update: numbered.this_update - 60,
            revoked: numbered.revoked + 1,
            ..numbered.clone()
        };
        assert_eq!(
            not_older(&reissued, &numbered),
            Err(CrlRefused::NumberReused {
                number: "a".to_owned()
            })
        );
        assert_eq!(not_older(&numbered.clone(), &numbered), Ok(()));
        assert!(plain_http_url("http://pki.example/a.crl"));
        assert!(!plain_http_url("http://pki.example/a\nhttp://evil/"));
        assert!(!plain_http_url("http://u:p@pki.example/a.crl"));
        assert!(!plain_http_url("https://pki.example/a.crl"));
        assert!(!plain_http_url("http:///a.crl"));
    }

    /// The lean reader says what the full parser says, for lists with and without entries,
    /// numbers and partitions; and refuses what is not one whole CRL.
    #[test]
    fn the_lean_reader_agrees_with_the_full_parser() {
        use x509_parser::revocation_list::CertificateRevocationList;
        let (a, _) = ca("CA A");
        let now = time::OffsetDateTime::now_utc();
        let revoked: Vec<rcgen::RevokedCertParams> = (0u8..50)
            .map(|i| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&[1, i]),
                revocation_time: now,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let idp = rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: vec![
                    "http://b.example/2.crl".to_owned(),
                    "http://a.example/1.crl".to_owned(),
                ],
            },
            scope: None,
        };
        let mut lists = vec![crl(&a, 0, 3), crl(&a, 0x1234, 3)];
        for (entries, idp) in [
            (revoked.clone(), None),
            (vec![], Some(idp.clone())),
            (revoked, Some(idp)),
        ] {
            let params = rcgen::CertificateRevocationListParams {
                this_update: now - time::Duration::minutes(1),
                next_update: now + time::Duration::days(3),
                crl_number: rcgen::SerialNumber::from(0xabcdefu64),
                issuing_distribution_point: idp,
                revoked_certs: entries,
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            };
            lists.push(params.signed_by(&a.issuer).unwrap().der().to_vec());
        }
        for der in &lists {
            let lean = Lean::parse(der).unwrap();
            let (_, full) = CertificateRevocationList::from_der(der).unwrap();
            assert_eq!(lean.tbs, full.tbs_cert_list.as_ref());
            assert_eq!(lean.issuer.as_raw(), full.issuer().as_raw());
            assert_eq!(lean.this_update, full.last_update().timestamp());
            assert_eq!(lean.next_update, full.next_update().map(|t| t.timestamp()));
            assert_eq!(lean.revoked, full.iter_revoked_certificates().count());
            let number = full.crl_number().map(|n| {
                let s = hex::encode(n.to_bytes_be());
                let s = s.trim_start_matches('0').to_owned();
                if s.is_empty() { "0".to_owned() } else { s }
            });
            assert_eq!(lean.number(), number);
            assert_eq!(lean.signature_bits, full.signature_value.data.as_ref());
        }
        assert_eq!(Lean::parse(&lists[2]).unwrap().revoked, 50);
        assert_eq!(
            Lean::parse(&lists[3]).unwrap().scope().as_deref(),
            Some(r#"["http://a.example/1.crl", "http://b.example/2.crl"]"#)
        );
        let mut trailing = lists[1].clone();
        trailing.push(0);
        assert!(Lean::parse(&trailing).is_err());
        assert!(Lean::parse(&lists[1][..lists[1].len() - 1]).is_err());
        assert!(Lean::parse(b"").is_err());
    }

    #[test]
    fn numbers_compare_as_integers() {
        use std::cmp::Ordering::*;
        assert_eq!(number_cmp("ff", "100"), Less);
        assert_eq!(number_cmp("100", "ff"), Greater);
        assert_eq!(number_cmp("1a", "1a"), Equal);
        assert_eq!(number_cmp("1b", "1a"), Greater);
    }
}
