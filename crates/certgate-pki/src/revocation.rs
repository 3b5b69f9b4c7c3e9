//! Revocation status of a verified path, looked up in certgate's own index of each CRL.
//!
//! Why not webpki's owned CRL: it keeps a `BTreeMap` with two heap allocations per revoked
//! serial. Building one for a 100,000-entry list, and freeing the list it replaces, took most of
//! the CPU of a CRL refresh, and that CPU is taken from handshakes on the same core (a list
//! refreshed every second cost about a tenth of the handshake rate). Here a CRL is parsed by
//! webpki's *borrowed* parser, so it is refused for exactly what webpki refuses (version,
//! extensions, entry extensions, indirect and reason-partitioned lists), and its serials are
//! indexed as `(hash, offset, length)` triples in one sorted array that points into the DER the
//! CRL keeps anyway: one allocation and one sort per list.
//!
//! The check on a path follows webpki's (RFC 5280 §6.3 as webpki implements it), from the
//! anchor down: every certificate below the trust anchor is looked up in the CRLs that are
//! *authoritative* for it (same issuer name, byte for byte; an IssuingDistributionPoint's scope
//! and distribution points must cover it); each one's signature must verify with the issuer's
//! key and its nextUpdate must not have passed (unless the caller's grace period applies); an
//! issuer with a keyUsage extension must assert cRLSign; and no such CRL may list the serial. A
//! certificate no CRL covers is refused or let through by the bundle's policy.
//!
//! Where it is stricter than webpki, on purpose:
//! - webpki consults only the first authoritative CRL, so a partition of a CA's list listed
//!   before the full list (or any covering list without the serial) un-revoked what the full
//!   list revokes; here every covering list is consulted;
//! - webpki lets a partition cover a certificate without distribution points; here only the
//!   full list does;
//! - webpki checks revocation while it builds a path and may fall back to another path when
//!   one is revoked; this check runs on the path webpki chose, so a revoked intermediate refuses
//!   the chain even when a cross-signed alternative exists.

use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::Mutex;

use rustls_pki_types::SignatureVerificationAlgorithm;
use webpki::{BorrowedCertRevocationList, CertRevocationList};
use x509_parser::asn1_rs::{Any, FromDer as _};
use x509_parser::certificate::X509Certificate;

use crate::verify::{Reason, Rejection};

/// One CRL, indexed for lookups.
pub(crate) struct RevocationList {
    der: Vec<u8>,
    /// DER contents of the issuer Name (what webpki compares with a certificate's issuer).
    issuer: Range<usize>,
    /// What the signature covers (tbsCertList, whole).
    tbs: Range<usize>,
    /// DER contents of the signatureAlgorithm SEQUENCE.
    signature_algorithm: Range<usize>,
    /// The signature bits.
    signature: Range<usize>,
    /// The IssuingDistributionPoint's scope, when the list has one.
    scope: Option<Scope>,
    /// `(hash of serial, offset, length)`, sorted: serials are the INTEGER contents, as webpki
    /// compares them.
    serials: Box<[(u64, u32, u32)]>,
    hasher: RandomState,
    /// Issuer public keys (SPKI contents) whose signature on this list verified.
    signed_by: Mutex<Vec<Box<[u8]>>>,
}

/// What a partitioned CRL covers (its IssuingDistributionPoint).
#[derive(Debug)]
struct Scope {
    only_user_certs: bool,
    only_ca_certs: bool,
    /// The URIs of its distribution point's full name.
    uris: Vec<String>,
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList")
            .field("bytes", &self.der.len())
            .field("serials", &self.serials.len())
            .field("scope", &self.scope)
            .finish()
    }
}

/// Where `part` (a sub-slice of `whole`) lies in `whole`.
fn span(whole: &[u8], part: &[u8]) -> Result<Range<usize>, String> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    if start > whole.len() || end > whole.len() || end < start {
        return Err("internal: a parsed field lies outside the CRL".to_owned());
    }
    Ok(start..end)
}

impl RevocationList {
    /// Parses and indexes `der`, a whole CRL.
    pub(crate) fn new(der: Vec<u8>) -> Result<Self, String> {
        let lean = crate::crl::Lean::parse(&der)?;
        // webpki checks everything but the entries (it reads them lazily); the entries are
        // walked here, once, for the index.
        let parsed = BorrowedCertRevocationList::from_der(&der).map_err(|e| format!("{e:?}"))?;
        let hasher = RandomState::new();
        let mut serials = Vec::with_capacity(lean.revoked);
        for serial in Entries(lean.revoked_certs()) {
            let serial = serial.map_err(|e| format!("revoked entry {}: {e}", serials.len()))?;
            let at = span(&der, serial)?;
            let (Ok(start), Ok(len)) = (u32::try_from(at.start), u32::try_from(at.len())) else {
                return Err("the CRL is larger than 4 GiB".to_owned());
            };
            serials.push((hasher.hash_one(serial), start, len));
        }
        serials.sort_unstable();
        let parsed = CertRevocationList::from(parsed);
        let issuer = span(&der, parsed.issuer())?;
        let scope = lean.idp().map(|idp| Scope {
            only_user_certs: idp.only_contains_user_certs,
            only_ca_certs: idp.only_contains_ca_certs,
            uris: full_name_uris(idp.distribution_point.as_ref()),
        });
        let (tbs, signature_algorithm, signature) = lean.signed_parts();
        let (tbs, signature_algorithm, signature) = (
            span(&der, tbs)?,
            span(&der, signature_algorithm)?,
            span(&der, signature)?,
        );
        drop(lean);
        Ok(Self {
            der,
            issuer,
            tbs,
            signature_algorithm,
            signature,
            scope,
            serials: serials.into_boxed_slice(),
            hasher,
            signed_by: Mutex::new(Vec::new()),
        })
    }

    /// The CRL's DER.
    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER contents of the issuer Name, as certificates name their issuer.
    pub(crate) fn issuer_der(&self) -> &[u8] {
        &self.der[self.issuer.clone()]
    }

    /// Whether the list revokes `serial` (INTEGER contents).
    pub(crate) fn revokes(&self, serial: &[u8]) -> bool {
        let h = self.hasher.hash_one(serial);
        let from = self.serials.partition_point(|e| e.0 < h);
        self.serials[from..]
            .iter()
            .take_while(|e| e.0 == h)
            .any(|&(_, start, len)| {
                let start = start as usize;
                self.der.get(start..start + len as usize) == Some(serial)
            })
    }

    /// Whether the list decides about `cert`: same issuer name, byte for byte, and, for a
    /// partition (an IssuingDistributionPoint naming distribution points), a certificate of the
    /// role it covers that names one of its URIs in a distribution point that names neither a
    /// CRL issuer nor reasons. Unlike webpki, a partition never covers a certificate without
    /// distribution points: that one is covered by its CA's full list, and a partition that does
    /// not list its serial must not stand in for it.
    fn authoritative(&self, cert: &webpki::Cert<'_>, role: Role) -> bool {
        if self.der[self.issuer.clone()] != *cert.issuer() {
            return false;
        }
        let Some(scope) = &self.scope else {
            return true;
        };
        if (scope.only_ca_certs && role != Role::Issuer)
            || (scope.only_user_certs && role != Role::EndEntity)
        {
            return false;
        }
        let der = cert.der();
        let Ok((_, parsed)) = X509Certificate::from_der(der.as_ref()) else {
            return false;
        };
        parsed.extensions().iter().any(|ext| {
            let x509_parser::extensions::ParsedExtension::CRLDistributionPoints(points) =
                ext.parsed_extension()
            else {
                return false;
            };
            points.iter().any(|p| {
                p.crl_issuer.is_none()
                    && p.reasons.is_none()
                    && full_name_uris(p.distribution_point.as_ref())
                        .iter()
                        .any(|u| scope.uris.contains(u))
            })
        })
    }

    /// Verifies the list's signature with `issuer_spki` (SPKI contents), once per key.
    fn check_signature(
        &self,
        issuer_spki: &[u8],
        algorithms: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<(), String> {
        if let Ok(done) = self.signed_by.lock()
            && done.iter().any(|k| **k == *issuer_spki)
        {
            return Ok(());
        }
        verify_signature(
            issuer_spki,
            &self.der[self.signature_algorithm.clone()],
            &self.der[self.tbs.clone()],
            &self.der[self.signature.clone()],
            algorithms,
        )?;
        self.signed_with(issuer_spki);
        Ok(())
    }

    /// Notes that the list's signature verified with `issuer_spki` (SPKI contents), checked
    /// by [`verify_signature`] with the same algorithms a bundle uses.
    pub(crate) fn signed_with(&self, issuer_spki: &[u8]) {
        if let Ok(mut done) = self.signed_by.lock()
            && !done.iter().any(|k| **k == *issuer_spki)
        {
            done.push(issuer_spki.into());
        }
    }
}

/// Verifies a signature over `message` made with the key `spki` (SPKI contents), with the
/// algorithm `algorithm` names (AlgorithmIdentifier contents), as webpki matches them: the
/// algorithm must be one of `algorithms` and fit the key's algorithm and curve.
pub(crate) fn verify_signature(
    spki: &[u8],
    algorithm: &[u8],
    message: &[u8],
    signature: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), String> {
    let (key_algorithm, key) = spki_parts(spki)?;
    let mut for_other_key = false;
    for alg in algorithms
        .iter()
        .filter(|a| a.signature_alg_id().as_ref() == algorithm)
    {
        if alg.public_key_alg_id().as_ref() != key_algorithm {
            for_other_key = true;
            continue;
        }
        return alg
            .verify_signature(key, message, signature)
            .map_err(|_| "its signature does not verify with the issuer's key".to_owned());
    }
    Err(if for_other_key {
        "it is signed with an algorithm that does not fit the issuer's key".to_owned()
    } else {
        "it is signed with an algorithm certgate does not accept".to_owned()
    })
}

/// One DER element at the start of `input`: its tag, contents and what follows. Only what a
/// CRL entry uses: low tag numbers and definite, minimally encoded lengths.
pub(crate) fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let [tag, first, rest @ ..] = input else {
        return Err("truncated");
    };
    if tag & 0x1f == 0x1f {
        return Err("high tag number");
    }
    let (len, rest) = match *first {
        n @ 0..=0x7f => (usize::from(n), rest),
        0x81 => match rest {
            [n @ 0x80..=0xff, rest @ ..] => (usize::from(*n), rest),
            _ => return Err("length not minimally encoded"),
        },
        0x82 => match rest {
            [a @ 1..=0xff, b, rest @ ..] => (usize::from(*a) << 8 | usize::from(*b), rest),
            _ => return Err("length not minimally encoded"),
        },
        0x83 => match rest {
            [a @ 1..=0xff, b, c, rest @ ..] => (
                usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
                rest,
            ),
            _ => return Err("length not minimally encoded"),
        },
        _ => return Err("unsupported length"),
    };
    if rest.len() < len {
        return Err("truncated");
    }
    let (contents, rest) = rest.split_at(len);
    Ok((*tag, contents, rest))
}

/// The serials of a CRL's revokedCertificates (the SEQUENCE's contents), each entry checked
/// the way webpki checks it: `SEQUENCE { serial INTEGER, revocationDate Time,
/// crlEntryExtensions SEQUENCE OF Extension OPTIONAL }` and nothing more; the reasonCode and
/// invalidityDate extensions at most once each; a certificateIssuer extension (an indirect
/// CRL) or any other critical extension refuses the list (RFC 5280 §5.3: a CRL with a critical
/// extension the reader cannot process must not be used).
struct Entries<'a>(&'a [u8]);

impl<'a> Iterator for Entries<'a> {
    type Item = Result<&'a [u8], &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = entry(self.0).map(|(serial, rest)| {
            self.0 = rest;
            serial
        });
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

const SEQUENCE: u8 = 0x30;

fn entry(input: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (tag, body, rest) = tlv(input)?;
    if tag != SEQUENCE {
        return Err("an entry is not a SEQUENCE");
    }
    let (tag, serial, body) = tlv(body)?;
    if tag != 0x02 {
        return Err("the serial is not an INTEGER");
    }
    let (tag, _, body) = tlv(body)?;
    if tag != 0x17 && tag != 0x18 {
        return Err("the revocation date is not a time");
    }
    if body.is_empty() {
        return Ok((serial, rest));
    }
    let (tag, mut extensions, after) = tlv(body)?;
    if tag != SEQUENCE || !after.is_empty() {
        return Err("bytes after the entry's extensions");
    }
    let (mut reason, mut invalidity) = (false, false);
    while !extensions.is_empty() {
        let (tag, ext, next) = tlv(extensions)?;
        extensions = next;
        if tag != SEQUENCE {
            return Err("an entry extension is not a SEQUENCE");
        }
        let (tag, oid, ext) = tlv(ext)?;
        if tag != 0x06 {
            return Err("an entry extension has no OID");
        }
        let (critical, ext) = match tlv(ext)? {
            (0x01, [0xff], ext) => (true, ext),
            (0x01, [0x00], ext) => (false, ext),
            (0x01, _, _) => return Err("a bad criticality flag"),
            _ => (false, ext),
        };
        let (tag, _, ext) = tlv(ext)?;
        if tag != 0x04 || !ext.is_empty() {
            return Err("an entry extension's value is not one OCTET STRING");
        }
        match oid {
            // id-ce-cRLReasons, id-ce-invalidityDate: informational.
            [0x55, 0x1d, 0x15] if !std::mem::replace(&mut reason, true) => {}
            [0x55, 0x1d, 0x18] if !std::mem::replace(&mut invalidity, true) => {}
            [0x55, 0x1d, 0x15] | [0x55, 0x1d, 0x18] => return Err("an entry extension twice"),
            [0x55, 0x1d, 0x1d] => return Err("an indirect CRL (certificateIssuer), not supported"),
            _ if critical => return Err("an unknown critical entry extension"),
            _ => {}
        }
    }
    Ok((serial, rest))
}

/// The URIs of a distribution point's full name.
fn full_name_uris(
    name: Option<&x509_parser::extensions::DistributionPointName<'_>>,
) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName};
    match name {
        Some(DistributionPointName::FullName(names)) => names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The algorithm (AlgorithmIdentifier contents) and key bits of an SPKI given as its contents.
fn spki_parts(contents: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let bad = |e: String| format!("the issuer's public key does not parse: {e}");
    let (rest, algorithm) = Any::from_der(contents).map_err(|e| bad(e.to_string()))?;
    let (rest, key) = Any::from_der(rest).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() || key.data.first() != Some(&0) {
        return Err(bad("trailing bytes or unused bits".to_owned()));
    }
    Ok((algorithm.data, &key.data[1..]))
}

/// A certificate's place in the path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    EndEntity,
    Issuer,
}

/// How a path is checked.
pub(crate) struct Policy<'a> {
    /// The CRLs in force, one per list.
    pub(crate) crls: &'a [std::sync::Arc<crate::verify::LoadedCrl>],
    /// Whether a certificate no CRL covers is refused.
    pub(crate) deny_unknown: bool,
    /// Whether a CRL past its nextUpdate is refused (`false` within the grace period).
    pub(crate) enforce_next_update: bool,
    /// The verification time, unix seconds.
    pub(crate) now: u64,
    /// The bundle's signature algorithms.
    pub(crate) algorithms: &'a [&'a dyn SignatureVerificationAlgorithm],
}

/// Checks every certificate of `path` below its anchor, from the anchor down (a revoked CA is
/// what explains a refusal, before anything about the certificates under it), as webpki does.
pub(crate) fn check_path(
    policy: &Policy<'_>,
    path: &webpki::VerifiedPath<'_>,
) -> Result<(), Rejection> {
    let intermediates: Vec<&webpki::Cert<'_>> = path.intermediate_certificates().collect();
    for i in (0..=intermediates.len()).rev() {
        // Position 0 is the end entity; position i > 0 the i-th intermediate. The issuer of
        // each is the next one up, or the anchor.
        let (cert, role) = match i {
            0 => (&**path.end_entity(), Role::EndEntity),
            i => (intermediates[i - 1], Role::Issuer),
        };
        check_one(
            policy,
            cert,
            role,
            intermediates.get(i).copied(),
            path.anchor(),
        )?;
    }
    Ok(())
}

fn check_one(
    policy: &Policy<'_>,
    cert: &webpki::Cert<'_>,
    role: Role,
    issuer: Option<&webpki::Cert<'_>>,
    anchor: &rustls_pki_types::TrustAnchor<'_>,
) -> Result<(), Rejection> {
    let mut covering = policy
        .crls
        .iter()
        .filter(|c| c.list().authoritative(cert, role))
        .peekable();
    if covering.peek().is_none() {
        if policy.deny_unknown {
            return Err(Rejection::new(
                Reason::RevocationUnknown,
                "no CRL covers a certificate in the chain".to_owned(),
            ));
        }
        return Ok(());
    }
    let spki_full;
    let issuer_spki: &[u8] = match issuer {
        Some(c) => {
            spki_full = c.subject_public_key_info();
            der_contents(spki_full.as_ref()).ok_or_else(|| {
                Rejection::new(
                    Reason::Malformed,
                    "an issuer's public key does not parse".to_owned(),
                )
            })?
        }
        None => anchor.subject_public_key_info.as_ref(),
    };
    if let Some(issuer) = issuer {
        check_crl_sign(issuer)?;
    }
    // Every list that covers the certificate is consulted (webpki stops at the first): a
    // partition of a CA's list, or an older copy from elsewhere, that does not name a serial
    // must not outvote the list that does.
    for crl in covering {
        let issuer_name = || crl.facts().issuer;
        crl.list()
            .check_signature(issuer_spki, policy.algorithms)
            .map_err(|why| {
                Rejection::new(
                    Reason::BadSignature,
                    format!("the CRL of {} is not usable: {why}", issuer_name()),
                )
            })?;
        if policy.enforce_next_update && policy.now >= crl.next_update() {
            return Err(Rejection::new(
                Reason::CrlExpired,
                format!(
                    "the CRL of {} expired at {}; publish a new one",
                    issuer_name(),
                    crate::verify::fmt_time(rustls_pki_types::UnixTime::since_unix_epoch(
                        std::time::Duration::from_secs(crl.next_update())
                    ))
                ),
            ));
        }
        if crl.list().revokes(cert.serial()) {
            return Err(Rejection::new(
                Reason::Revoked,
                match role {
                    Role::EndEntity => format!(
                        "the certificate (serial {}) is revoked by the CRL of {}",
                        hex::encode(cert.serial()),
                        issuer_name()
                    ),
                    Role::Issuer => format!(
                        "an intermediate CA of the chain (serial {}) is revoked by the CRL of {}",
                        hex::encode(cert.serial()),
                        issuer_name()
                    ),
                },
            ));
        }
    }
    Ok(())
}

/// An issuer with a keyUsage extension must assert cRLSign for its CRLs to count.
fn check_crl_sign(issuer: &webpki::Cert<'_>) -> Result<(), Rejection> {
    crate::verify::check_ca_key_usage_allows(
        issuer.der().as_ref(),
        |ku| ku.crl_sign(),
        "cRLSign (it cannot sign the CRLs that cover the chain)",
    )
}

/// The contents of a DER TLV.
pub(crate) fn der_contents(der: &[u8]) -> Option<&[u8]> {
    let (rest, any) = Any::from_der(der).ok()?;
    rest.is_empty().then_some(any.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_stay_inside() {
        let whole = [1u8, 2, 3, 4];
        assert_eq!(span(&whole, &whole[1..3]).unwrap(), 1..3);
        assert_eq!(span(&whole, &whole[4..]).unwrap(), 4..4);
    }

    /// DER of one element (short lengths only).
    fn el(tag: u8, contents: &[u8]) -> Vec<u8> {
        assert!(contents.len() < 0x80);
        let mut v = vec![tag, contents.len() as u8];
        v.extend_from_slice(contents);
        v
    }

    /// An entry revoking serial `[0x0a, 0x0b]`, with `extensions` (each a whole Extension).
    fn revoked(extensions: Option<&[Vec<u8>]>) -> Vec<u8> {
        let mut body = el(0x02, &[0x0a, 0x0b]);
        body.extend(el(0x17, b"260101000000Z"));
        if let Some(exts) = extensions {
            body.extend(el(SEQUENCE, &exts.concat()));
        }
        el(SEQUENCE, &body)
    }

    fn ext(oid_last: u8, critical: Option<bool>) -> Vec<u8> {
        let mut body = el(0x06, &[0x55, 0x1d, oid_last]);
        if let Some(c) = critical {
            body.extend(el(0x01, &[if c { 0xff } else { 0x00 }]));
        }
        body.extend(el(0x04, &[0x0a, 0x01, 0x01]));
        el(SEQUENCE, &body)
    }

    fn serials(list: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
        Entries(list).map(|s| s.map(<[u8]>::to_vec)).collect()
    }

    #[test]
    fn entries_yield_serials_and_refuse_what_webpki_refuses() {
        let serial = vec![0x0a, 0x0b];
        let ok = [
            revoked(None),
            revoked(Some(&[])),
            revoked(Some(&[ext(0x15, None), ext(0x18, Some(false))])),
            // An unknown extension that is not critical is ignored.
            revoked(Some(&[ext(0x63, Some(false))])),
        ];
        for e in &ok {
            assert_eq!(serials(e).unwrap(), vec![serial.clone()]);
        }
        assert_eq!(serials(&ok.concat()).unwrap().len(), ok.len());
        assert_eq!(serials(&[]).unwrap().len(), 0);
        let refused = [
            (
                revoked(Some(&[ext(0x63, Some(true))])),
                "an unknown critical entry extension",
            ),
            (
                revoked(Some(&[ext(0x1d, None)])),
                "an indirect CRL (certificateIssuer), not supported",
            ),
            (
                revoked(Some(&[ext(0x15, None), ext(0x15, None)])),
                "an entry extension twice",
            ),
            (el(0x31, &revoked(None)[2..]), "an entry is not a SEQUENCE"),
            (
                el(
                    SEQUENCE,
                    &[el(0x04, &[1]), el(0x17, b"260101000000Z")].concat(),
                ),
                "the serial is not an INTEGER",
            ),
            (
                el(
                    SEQUENCE,
                    &[el(0x02, &[1]), el(0x04, b"260101000000Z")].concat(),
                ),
                "the revocation date is not a time",
            ),
            (
                el(
                    SEQUENCE,
                    &[
                        el(0x02, &[1]),
                        el(0x17, b"260101000000Z"),
                        el(SEQUENCE, &[]),
                        vec![0x05, 0x00],
                    ]
                    .concat(),
                ),
                "bytes after the entry's extensions",
            ),
            (revoked(None)[..6].to_vec(), "truncated"),
            (
                vec![0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
                "length not minimally encoded",
            ),
            (vec![0x30, 0x84, 0, 0, 0, 1, 0], "unsupported length"),
        ];
        for (bytes, why) in &refused {
            assert_eq!(serials(bytes), Err(*why), "{bytes:02x?}");
            // After the first error the walk stops.
            let mut walk = Entries(bytes);
            assert!(walk.next().unwrap().is_err());
            assert!(walk.next().is_none());
        }
    }

    #[test]
    fn spki_parts_need_whole_bytes() {
        // SEQUENCE { OID 1.2 } BIT STRING { 0 unused, 0xAB }
        let contents = [0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x02, 0x00, 0xab];
        let (alg, key) = spki_parts(&contents).unwrap();
        assert_eq!(alg, &[0x06, 0x01, 0x2a]);
        assert_eq!(key, &[0xab]);
        let unused = [0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x02, 0x01, 0xab];
        assert!(spki_parts(&unused).is_err());
        assert!(spki_parts(&contents[..5]).is_err());
    }
}
