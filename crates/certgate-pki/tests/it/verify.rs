//! Verification against trust bundles: chains through intermediates, validity, EKU, key usage,
//! path length, CRLs from the root and from intermediates.

use certgate_pki::verify::{self, UnknownRevocation};
use certgate_pki::{Origin, Purpose, Reason, TrustBundle, Verdict};
use certgate_testkit::{Cert, Spec, TestPki, crl, self_signed, serial_of, signed_by};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::Duration;

fn bundle(anchor: &Cert, crls: &[Vec<u8>]) -> TrustBundle {
    let crls = crls
        .iter()
        .map(|c| verify::parse_crl(c, &Origin::other("crl")).unwrap())
        .collect();
    TrustBundle::new(
        "test",
        vec![CertificateDer::from(anchor.der.clone())],
        crls,
        UnknownRevocation::Allow,
    )
    .unwrap()
}

fn chain(certs: &[&Cert]) -> Vec<CertificateDer<'static>> {
    certs
        .iter()
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect()
}

fn reason(v: &Verdict) -> Option<Reason> {
    match v {
        Verdict::Verified(_) => None,
        Verdict::Rejected(r) => Some(r.reason),
    }
}

#[test]
fn verifies_through_an_intermediate() {
    let pki = TestPki::new();
    let b = bundle(&pki.root, &[]);
    let v = b.verify(
        &chain(&[&pki.client, &pki.intermediate]),
        Purpose::Client,
        UnixTime::now(),
    );
    let ok = v.verified().expect("verified");
    assert_eq!(ok.trust(), "test");
    assert_eq!(ok.chain_len(), 3);
    assert_eq!(ok.anchor(), "CN=certgate test root");
    // Without the intermediate the chain cannot be built.
    let v = b.verify(&chain(&[&pki.client]), Purpose::Client, UnixTime::now());
    assert_eq!(reason(&v), Some(Reason::UnknownIssuer));
    // A client certificate is not a server certificate, and vice versa.
    let v = b.verify(
        &chain(&[&pki.client, &pki.intermediate]),
        Purpose::Server,
        UnixTime::now(),
    );
    assert_eq!(reason(&v), Some(Reason::WrongUsage));
    let v = b.verify(
        &chain(&[&pki.server, &pki.intermediate]),
        Purpose::Server,
        UnixTime::now(),
    );
    assert!(v.verified().is_some());
}

#[test]
fn self_signed_and_foreign_certificates_are_unknown_issuer() {
    let pki = TestPki::new();
    let b = bundle(&pki.root, &[]);
    let me = self_signed(&Spec::client("mallory"));
    let v = b.verify(&chain(&[&me]), Purpose::Client, UnixTime::now());
    assert_eq!(reason(&v), Some(Reason::UnknownIssuer));
    if let Verdict::Rejected(r) = v {
        assert!(
            r.detail.contains("not issued by a trusted CA"),
            "{}",
            r.detail
        );
        assert_eq!(r.reason.code(), "unknown_issuer");
    }
    // A self-signed CA certificate (what `openssl req -x509` makes by default) presented as a
    // client certificate: unknown issuer too, not "wrong certificate type".
    let ca_like = self_signed(&Spec::ca("alice", None));
    let v = b.verify(&chain(&[&ca_like]), Purpose::Client, UnixTime::now());
    assert_eq!(reason(&v), Some(Reason::UnknownIssuer), "{v:?}");
    // A CA certificate of the bundle itself used as a client certificate is the wrong type.
    let v = b.verify(&chain(&[&pki.root]), Purpose::Client, UnixTime::now());
    assert_eq!(reason(&v), Some(Reason::WrongCertificateType), "{v:?}");
}

#[test]
fn validity_eku_key_usage_and_critical_extensions() {
    let pki = TestPki::new();
    let b = bundle(&pki.root, &[]);
    let now = UnixTime::now();
    let make = |f: &dyn Fn(&mut Spec)| {
        let mut s = Spec::client("x");
        f(&mut s);
        signed_by(&s, &pki.intermediate)
    };
    let cases: Vec<(Cert, Reason)> = vec![
        (
            make(&|s| {
                s.not_before = Duration::days(-30);
                s.not_after = Duration::days(-1);
            }),
            Reason::Expired,
        ),
        (
            make(&|s| {
                s.not_before = Duration::days(2);
                s.not_after = Duration::days(30);
            }),
            Reason::NotYetValid,
        ),
        (
            make(&|s| s.eku = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            Reason::WrongUsage,
        ),
        (
            make(&|s| s.key_usage = vec![KeyUsagePurpose::KeyEncipherment]),
            Reason::KeyUsage,
        ),
        (
            make(&|s| s.unknown_critical = true),
            Reason::UnsupportedCriticalExtension,
        ),
    ];
    for (cert, want) in cases {
        let v = b.verify(&chain(&[&cert, &pki.intermediate]), Purpose::Client, now);
        assert_eq!(reason(&v), Some(want));
    }
    // No EKU at all allows any purpose (RFC 5280).
    let any = make(&|s| s.eku = vec![]);
    assert!(
        b.verify(&chain(&[&any, &pki.intermediate]), Purpose::Client, now)
            .verified()
            .is_some()
    );
}

#[test]
fn path_length_is_enforced() {
    let pki = TestPki::new();
    // The intermediate has pathLen 0: it may not issue another CA.
    let sub = signed_by(&Spec::ca("sub", None), &pki.intermediate);
    let leaf = signed_by(&Spec::client("deep"), &sub);
    let b = bundle(&pki.root, &[]);
    let v = b.verify(
        &chain(&[&leaf, &sub, &pki.intermediate]),
        Purpose::Client,
        UnixTime::now(),
    );
    assert_eq!(reason(&v), Some(Reason::PathTooLong));
}

#[test]
fn crls_from_root_and_intermediate() {
    let pki = TestPki::new();
    let now = UnixTime::now();
    let c = chain(&[&pki.client, &pki.intermediate]);
    // The intermediate's CRL revokes the leaf.
    let by_int = crl(&pki.intermediate, &[serial_of(&pki.client)], 7);
    let v = bundle(&pki.root, &[by_int]).verify(&c, Purpose::Client, now);
    assert_eq!(reason(&v), Some(Reason::Revoked));
    // The root's CRL revokes the intermediate: everything under it falls.
    let by_root = crl(&pki.root, &[serial_of(&pki.intermediate)], 7);
    let v = bundle(&pki.root, &[by_root]).verify(&c, Purpose::Client, now);
    assert_eq!(reason(&v), Some(Reason::Revoked));
    // CRLs that list other serials do not affect it.
    let other = crl(&pki.intermediate, &[vec![0x01, 0x02]], 7);
    assert!(
        bundle(&pki.root, &[other])
            .verify(&c, Purpose::Client, now)
            .verified()
            .is_some()
    );
    // An expired CRL fails closed.
    let stale = crl(&pki.intermediate, &[], -0);
    let v = bundle(&pki.root, &[stale]).verify(
        &c,
        Purpose::Client,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() + 3600)),
    );
    assert_eq!(reason(&v), Some(Reason::CrlExpired));
}

#[test]
fn unknown_revocation_status_can_be_denied() {
    let pki = TestPki::new();
    let root_crl = crl(&pki.root, &[], 7);
    let crls = vec![verify::parse_crl(&root_crl, &Origin::other("crl")).unwrap()];
    let strict = TrustBundle::new(
        "strict",
        vec![CertificateDer::from(pki.root.der.clone())],
        crls,
        UnknownRevocation::Deny,
    )
    .unwrap();
    let v = strict.verify(
        &chain(&[&pki.client, &pki.intermediate]),
        Purpose::Client,
        UnixTime::now(),
    );
    assert_eq!(reason(&v), Some(Reason::RevocationUnknown));
}

#[test]
fn overlong_chains_are_refused_cheaply() {
    let pki = TestPki::new();
    let mut certs = chain(&[&pki.client]);
    for _ in 0..99 {
        certs.push(CertificateDer::from(pki.intermediate.der.clone()));
    }
    let v = bundle(&pki.root, &[]).verify(&certs, Purpose::Client, UnixTime::now());
    assert_eq!(reason(&v), Some(Reason::PathTooLong));
}

#[test]
fn cached_verdicts_expire_with_the_certificate_and_the_crl() {
    let pki = TestPki::new();
    let mut spec = Spec::client("short");
    spec.not_after = Duration::hours(2);
    let leaf = signed_by(&spec, &pki.intermediate);
    let c = chain(&[&leaf, &pki.intermediate]);
    let b = bundle(&pki.root, &[crl(&pki.intermediate, &[], 1)]);
    let now = UnixTime::now();
    let later = |secs: u64| {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() + secs))
    };
    assert!(b.verify(&c, Purpose::Client, now).verified().is_some());
    // Warm: the same answer from the cache.
    assert!(
        b.verify(&c, Purpose::Client, later(60))
            .verified()
            .is_some()
    );
    // Past the leaf's notAfter the cached verdict no longer applies.
    assert_eq!(
        reason(&b.verify(&c, Purpose::Client, later(3 * 3600))),
        Some(Reason::Expired)
    );
    // A long-lived leaf: the CRL's nextUpdate (one day) bounds the cached verdict.
    let c = chain(&[&pki.client, &pki.intermediate]);
    assert!(b.verify(&c, Purpose::Client, now).verified().is_some());
    assert_eq!(
        reason(&b.verify(&c, Purpose::Client, later(2 * 86_400))),
        Some(Reason::CrlExpired)
    );
    // The purpose is part of the key.
    assert_eq!(
        reason(&b.verify(&c, Purpose::Server, now)),
        Some(Reason::WrongUsage)
    );
}

/// Past the earliest nextUpdate, CRLs are refused (`crl_expired`) unless the bundle has a grace
/// period, within which they are used (and counted); after it, refused again. A bundle that
/// must know every certificate's status but has no CRL at all refuses.
#[test]
fn stale_crls_are_refused_or_used_within_the_grace() {
    let pki = TestPki::new();
    let crls = [
        certgate_testkit::crl_numbered(&pki.root, &[], 1, Duration::days(7)),
        certgate_testkit::crl_numbered(&pki.intermediate, &[], 1, Duration::seconds(60)),
    ];
    let c = chain(&[&pki.client, &pki.intermediate]);
    let now = UnixTime::now().as_secs();
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now + 600));
    let strict = bundle(&pki.root, &crls);
    assert_eq!(
        reason(&strict.verify(&c, Purpose::Client, later)),
        Some(Reason::CrlExpired)
    );
    let lenient = bundle(&pki.root, &crls).with_stale_grace(3600);
    assert_eq!(reason(&lenient.verify(&c, Purpose::Client, later)), None);
    assert_eq!(lenient.grace_uses(), 1);
    let much_later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now + 7200));
    assert_eq!(
        reason(&lenient.verify(&c, Purpose::Client, much_later)),
        Some(Reason::CrlExpired)
    );
    let none = TrustBundle::new(
        "test",
        vec![CertificateDer::from(pki.root.der.clone())],
        vec![],
        UnknownRevocation::Deny,
    )
    .unwrap();
    assert_eq!(
        reason(&none.verify(&c, Purpose::Client, UnixTime::now())),
        Some(Reason::RevocationUnknown)
    );
}

/// The grace starts at the very second webpki starts refusing the CRL (its nextUpdate).
#[test]
fn the_grace_starts_at_next_update_itself() {
    let pki = TestPki::new();
    let crls = [
        certgate_testkit::crl_numbered(&pki.root, &[], 1, Duration::days(7)),
        certgate_testkit::crl_numbered(&pki.intermediate, &[], 1, Duration::seconds(60)),
    ];
    let next = verify::parse_crl(&crls[1], &Origin::other("crl"))
        .unwrap()
        .next_update();
    let c = chain(&[&pki.client, &pki.intermediate]);
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(next));
    let lenient = bundle(&pki.root, &crls).with_stale_grace(3600);
    assert_eq!(reason(&lenient.verify(&c, Purpose::Client, at)), None);
    let strict = bundle(&pki.root, &crls);
    assert_eq!(
        reason(&strict.verify(&c, Purpose::Client, at)),
        Some(Reason::CrlExpired)
    );
}

/// Two CRLs of one CA in a bundle (a file and a URL, or two URLs): the newest decides, in
/// whatever order they come, so an older list cannot un-revoke a certificate.
#[test]
fn the_newest_crl_of_a_ca_decides() {
    let pki = TestPki::new();
    let root_crl = certgate_testkit::crl_numbered(&pki.root, &[], 1, Duration::days(7));
    let old = certgate_testkit::crl_numbered(&pki.intermediate, &[], 5, Duration::days(7));
    let new = certgate_testkit::crl_numbered(
        &pki.intermediate,
        &[serial_of(&pki.client)],
        10,
        Duration::days(7),
    );
    let c = chain(&[&pki.client, &pki.intermediate]);
    for crls in [
        [root_crl.clone(), old.clone(), new.clone()],
        [root_crl.clone(), new.clone(), old.clone()],
    ] {
        let b = bundle(&pki.root, &crls);
        assert_eq!(b.crl_count(), 2, "one CRL per CA");
        assert_eq!(
            reason(&b.verify(&c, Purpose::Client, UnixTime::now())),
            Some(Reason::Revoked)
        );
    }
}

/// A newer CRL put in force in a running bundle decides the next verification (the verdict
/// cached with the old list is not used); an older one, or a list the bundle has no version of,
/// is not taken.
#[test]
fn an_installed_crl_decides_at_once() {
    use certgate_pki::verify::Installed;
    use std::sync::Arc;
    let pki = TestPki::new();
    let root_crl = certgate_testkit::crl_numbered(&pki.root, &[], 1, Duration::days(7));
    let first = certgate_testkit::crl_numbered(&pki.intermediate, &[], 5, Duration::days(7));
    let b = bundle(&pki.root, &[root_crl, first.clone()]);
    let c = chain(&[&pki.client, &pki.intermediate]);
    let now = UnixTime::now();
    assert_eq!(reason(&b.verify(&c, Purpose::Client, now)), None);
    assert_eq!(reason(&b.verify(&c, Purpose::Client, now)), None, "cached");
    let parse = |der: &[u8]| Arc::new(verify::parse_crl(der, &Origin::other("crl")).unwrap());
    let revoking = certgate_testkit::crl_numbered(
        &pki.intermediate,
        &[serial_of(&pki.client)],
        6,
        Duration::days(7),
    );
    assert_eq!(b.install_crl(parse(&revoking)), Installed::Replaced);
    assert_eq!(
        reason(&b.verify(&c, Purpose::Client, now)),
        Some(Reason::Revoked)
    );
    assert_eq!(b.crl_count(), 2);
    // Going back, or the same list again: refused.
    assert_eq!(b.install_crl(parse(&first)), Installed::NotNewer);
    assert_eq!(b.install_crl(parse(&revoking)), Installed::NotNewer);
    assert_eq!(
        reason(&b.verify(&c, Purpose::Client, now)),
        Some(Reason::Revoked)
    );
    // Another CA's list: only a rebuilt bundle may take it.
    let other = TestPki::new();
    let foreign = certgate_testkit::crl_numbered(&other.intermediate, &[], 9, Duration::days(7));
    let alone = bundle(&pki.root, &[]);
    assert_eq!(alone.install_crl(parse(&foreign)), Installed::NoSuchList);
    assert_eq!(alone.crl_count(), 0);
}

/// Found by an attacker pass: a partition of a CA's list (its IssuingDistributionPoint names a
/// URL) is a list of its own; it never stands in for the CA's full list, whatever its number.
#[test]
fn a_partition_never_replaces_the_full_list() {
    let pki = TestPki::new();
    let full = certgate_testkit::crl_numbered(
        &pki.intermediate,
        &[serial_of(&pki.client)],
        5,
        Duration::days(7),
    );
    let now = time::OffsetDateTime::now_utc();
    let partition = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(7),
        crl_number: rcgen::SerialNumber::from(500u64),
        issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: vec!["http://pki.example/part2.crl".to_owned()],
            },
            scope: None,
        }),
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&pki.intermediate.issuer())
    .unwrap()
    .der()
    .to_vec();
    let c = chain(&[&pki.client, &pki.intermediate]);
    // In either order: a partition that does not list the serial never outvotes the full list
    // (found by a second attacker pass: webpki's rule, "the first list that covers it", let a
    // partition listed first un-revoke a certificate without distribution points).
    for crls in [
        [full.clone(), partition.clone()],
        [partition.clone(), full.clone()],
    ] {
        let b = bundle(&pki.root, &crls);
        assert_eq!(
            b.crl_count(),
            2,
            "the full list and the partition both stay"
        );
        assert_eq!(
            reason(&b.verify(&c, Purpose::Client, UnixTime::now())),
            Some(Reason::Revoked)
        );
    }
    let b = bundle(&pki.root, &[full]);
    let p = verify::parse_crl(&partition, &Origin::other("crl")).unwrap();
    assert_eq!(
        b.install_crl(std::sync::Arc::new(p)),
        verify::Installed::NoSuchList
    );
    assert_eq!(
        reason(&b.verify(&c, Purpose::Client, UnixTime::now())),
        Some(Reason::Revoked)
    );
}

/// Found by an attacker pass: partitions with the same distribution point, one for end-entity
/// certificates and one for CA certificates, are two lists (one could displace the other as
/// "newer" and leave the end-entity certificates uncovered); and a list under a name that reads
/// like the CA's but is encoded differently is a list of its own, never the CA's.
#[test]
fn lists_are_told_apart_by_scope_kind_and_by_encoded_issuer() {
    let pki = TestPki::new();
    let now = time::OffsetDateTime::now_utc();
    let partition = |scope, number: u64, revoked: &[Vec<u8>]| {
        rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(7),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://pki.example/p.crl".to_owned()],
                },
                scope: Some(scope),
            }),
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&pki.intermediate.issuer())
        .unwrap()
        .der()
        .to_vec()
    };
    let users = partition(rcgen::CrlScope::UserCertsOnly, 5, &[serial_of(&pki.client)]);
    let cas = partition(rcgen::CrlScope::CaCertsOnly, 9, &[]);
    let b = bundle(&pki.root, &[users.clone(), cas.clone()]);
    assert_eq!(b.crl_count(), 2, "two lists, not two versions of one");
    let facts = |der: &[u8]| certgate_pki::crl::facts_of(der).unwrap();
    assert_ne!(facts(&users).list_key(), facts(&cas).list_key());

    // The intermediate's name as a PrintableString, under another key.
    let mut look_alike = rcgen::CertificateParams::default();
    look_alike.distinguished_name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::PrintableString("certgate test intermediate".try_into().unwrap()),
    );
    look_alike.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    look_alike.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::KeyCertSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let forged = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(7),
        crl_number: rcgen::SerialNumber::from(999_999u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::from_params(&look_alike, &key))
    .unwrap()
    .der()
    .to_vec();
    let genuine = crl(&pki.intermediate, &[serial_of(&pki.client)], 7);
    let (f, g) = (facts(&forged), facts(&genuine));
    assert_eq!(f.issuer, g.issuer, "they read alike");
    assert_ne!(f.list_key(), g.list_key());
    assert!(!f.same_list(&g));
    for crls in [
        [forged.clone(), genuine.clone()],
        [genuine.clone(), forged.clone()],
    ] {
        let b = bundle(&pki.root, &crls);
        let c = chain(&[&pki.client, &pki.intermediate]);
        assert_eq!(
            reason(&b.verify(&c, Purpose::Client, UnixTime::now())),
            Some(Reason::Revoked)
        );
    }
}
