//! certgate checks revocation with its own CRL index (webpki's owned CRL costs too much to
//! build for large lists refreshed often). For generated PKIs, CRL sets and policies, its
//! verdict must be the one the rules give (`model`, written from the rules and knowing who
//! signed what), and must agree with webpki's own revocation check wherever webpki's rules are
//! the same: webpki consults only the first CRL that covers a certificate and lets a partition
//! cover a certificate without distribution points, which certgate refuses to do (a partition
//! that does not list a serial could outvote the full list that does), so webpki is the oracle
//! for sets without partitions. Every certificate here has one possible issuer, so the paths
//! webpki builds and the one certgate checks are the same.

use std::sync::OnceLock;

use certgate_pki::verify::{self, UnknownRevocation};
use certgate_pki::{Origin, Purpose, Reason, TrustBundle, Verdict};
use certgate_testkit::{Cert, Spec, self_signed, serial_of, signed_by};
use proptest::prelude::*;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    KeyIdMethod, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::{Duration, OffsetDateTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

const URI_A: &str = "http://crl.example/a.crl";
const URI_B: &str = "http://crl.example/b.crl";

/// The certificates every case draws from (made once: key generation is the slow part).
struct World {
    root: Cert,
    /// An intermediate whose keyUsage allows CRL signing.
    int_crl: Cert,
    /// An intermediate whose keyUsage lacks cRLSign.
    int_no_crl: Cert,
    /// Same name as `int_crl`, another key: CRLs it signs claim to be `int_crl`'s.
    impostor: Cert,
    /// Leaves under `int_crl`: without distribution points, with A, with B.
    leaves: Vec<Cert>,
    /// A leaf under `int_no_crl`.
    leaf_no_crl: Cert,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let root = self_signed(&Spec::ca("oracle root", Some(1)));
        let int_crl = signed_by(&Spec::ca("oracle intermediate", Some(0)), &root);
        let int_no_crl = signed_by(
            &Spec {
                key_usage: vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::DigitalSignature,
                ],
                ..Spec::ca("oracle intermediate without crl", Some(0))
            },
            &root,
        );
        let impostor = self_signed(&Spec::ca("oracle intermediate", Some(0)));
        let leaf_with = |points: &[&str]| {
            let mut c = signed_by(&Spec::client("alice"), &int_crl);
            if !points.is_empty() {
                // Re-issue with distribution points (the testkit's Spec has none).
                let mut params = c.params.clone();
                params.crl_distribution_points = vec![CrlDistributionPoint {
                    uris: points.iter().map(|u| (*u).to_owned()).collect(),
                }];
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                let cert = params.signed_by(&key, &int_crl.issuer()).unwrap();
                c = Cert {
                    der: cert.der().to_vec(),
                    pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                    key,
                    params,
                };
            }
            c
        };
        let leaves = vec![leaf_with(&[]), leaf_with(&[URI_A]), leaf_with(&[URI_B])];
        let leaf_no_crl = signed_by(&Spec::client("bob"), &int_no_crl);
        World {
            root,
            int_crl,
            int_no_crl,
            impostor,
            leaves,
            leaf_no_crl,
        }
    })
}

/// One generated CRL.
#[derive(Clone, Debug)]
struct CrlCase {
    /// 0 root, 1 int_crl, 2 int_no_crl, 3 impostor.
    signer: usize,
    /// Bits: 0 the leaf, 1 int_crl, 2 int_no_crl, 3 leaf_no_crl, 4 an unrelated serial.
    revokes: u8,
    expired: bool,
    /// 0 none, 1 A, 2 B, 3 A users only, 4 A CAs only.
    idp: usize,
    number: u64,
}

fn make_crl(c: &CrlCase, leaf: &Cert) -> Vec<u8> {
    let w = world();
    let signer = [&w.root, &w.int_crl, &w.int_no_crl, &w.impostor][c.signer];
    let candidates = [
        serial_of(leaf),
        serial_of(&w.int_crl),
        serial_of(&w.int_no_crl),
        serial_of(&w.leaf_no_crl),
        vec![0x7f, 0x01, 0x02, 0x03],
    ];
    let now = OffsetDateTime::now_utc();
    let idp = |uri: &str, scope| {
        Some(CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![uri.to_owned()],
            },
            scope,
        })
    };
    CertificateRevocationListParams {
        this_update: now - Duration::hours(2),
        next_update: if c.expired {
            now - Duration::hours(1)
        } else {
            now + Duration::days(7)
        },
        crl_number: SerialNumber::from(c.number),
        issuing_distribution_point: match c.idp {
            1 => idp(URI_A, None),
            2 => idp(URI_B, None),
            3 => idp(URI_A, Some(CrlScope::UserCertsOnly)),
            4 => idp(URI_A, Some(CrlScope::CaCertsOnly)),
            _ => None,
        },
        revoked_certs: candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| c.revokes & (1 << i) != 0)
            .map(|(_, s)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::from_params(
        &crl_signing(&signer.params),
        &signer.key,
    ))
    .unwrap()
    .der()
    .to_vec()
}

/// `params` allowed to sign CRLs: rcgen refuses to sign one for an issuer whose keyUsage lacks
/// cRLSign, and the verifier must be shown such a CRL (name and key are what it checks).
fn crl_signing(params: &rcgen::CertificateParams) -> rcgen::CertificateParams {
    let mut p = params.clone();
    if !p.key_usages.contains(&KeyUsagePurpose::CrlSign) {
        p.key_usages.push(KeyUsagePurpose::CrlSign);
    }
    p
}

/// What webpki's own revocation check says about the same chain and CRLs.
fn oracle(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'static>],
    deny_unknown: bool,
    in_grace: bool,
) -> Option<Reason> {
    let root = CertificateDer::from(world().root.der.clone());
    let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
    let owned: Vec<CertRevocationList<'static>> = bundle
        .crls()
        .iter()
        .map(|c| OwnedCertRevocationList::from_der(c.der()).unwrap().into())
        .collect();
    let refs: Vec<&CertRevocationList<'_>> = owned.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(if deny_unknown {
                UnknownStatusPolicy::Deny
            } else {
                UnknownStatusPolicy::Allow
            })
            .with_expiration_policy(if in_grace {
                ExpirationPolicy::Ignore
            } else {
                ExpirationPolicy::Enforce
            })
            .build()
    });
    if revocation.is_none() && deny_unknown {
        return Some(Reason::RevocationUnknown);
    }
    let ee = EndEntityCert::try_from(&chain[0]).unwrap();
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    match ee.verify_for_usage(
        algs,
        &anchors,
        &chain[1..],
        UnixTime::now(),
        KeyUsage::client_auth(),
        revocation,
        None,
    ) {
        Ok(_) => None,
        Err(webpki::Error::CertRevoked) => Some(Reason::Revoked),
        Err(webpki::Error::UnknownRevocationStatus) => Some(Reason::RevocationUnknown),
        Err(webpki::Error::CrlExpired { .. }) => Some(Reason::CrlExpired),
        Err(webpki::Error::InvalidCrlSignatureForPublicKey) => Some(Reason::BadSignature),
        Err(webpki::Error::IssuerNotCrlSigner) => Some(Reason::KeyUsage),
        Err(e) => panic!("webpki refused for another reason: {e:?}"),
    }
}

fn reason(v: &Verdict) -> Option<Reason> {
    match v {
        Verdict::Verified(_) => None,
        Verdict::Rejected(r) => Some(r.reason),
    }
}

fn crl_case() -> impl Strategy<Value = CrlCase> {
    (
        0..4usize,
        0..32u8,
        prop::bool::weighted(0.2),
        0..5usize,
        1..4u64,
    )
        .prop_map(|(signer, revokes, expired, idp, number)| CrlCase {
            signer,
            revokes,
            expired,
            idp,
            number,
        })
}

/// What the rules say, for the leaf `leaf_index` and the CRLs `kept` (the ones the bundle
/// keeps, in its order), without looking at certgate's code.
fn model(
    kept: &[&CrlCase],
    leaf_index: usize,
    deny_unknown: bool,
    in_grace: bool,
) -> Option<Reason> {
    // Names: 0 root, 1 "oracle intermediate" (int_crl and the impostor), 2 int_no_crl.
    let name_of_signer = |signer: usize| [0, 1, 2, 1][signer];
    // Top down: the intermediate (issued by the root), then the leaf.
    let (int_bit, leaf_issuer_name) = if leaf_index == 3 { (2, 2) } else { (1, 1) };
    let leaf_points: &[usize] = match leaf_index {
        1 => &[1],
        2 => &[2],
        _ => &[],
    };
    let certs = [
        // (issuer name, is end entity, revocation bits naming it, its distribution points)
        (0, false, 1u8 << int_bit, &[][..]),
        (
            leaf_issuer_name,
            true,
            if leaf_index == 3 { 0b1001 } else { 0b0001 },
            leaf_points,
        ),
    ];
    for (issuer_name, end_entity, bits, points) in certs {
        let covering: Vec<&&CrlCase> = kept
            .iter()
            .filter(|c| name_of_signer(c.signer) == issuer_name)
            .filter(|c| match c.idp {
                0 => true,
                1 => points.contains(&1),
                2 => points.contains(&2),
                3 => end_entity && points.contains(&1),
                _ => !end_entity && points.contains(&1),
            })
            .collect();
        if covering.is_empty() {
            if deny_unknown {
                return Some(Reason::RevocationUnknown);
            }
            continue;
        }
        // The issuer that signs the CRLs must be allowed to: int_no_crl is not.
        if issuer_name == 2 {
            return Some(Reason::KeyUsage);
        }
        for c in covering {
            // Same name, other key: only the impostor.
            if c.signer == 3 {
                return Some(Reason::BadSignature);
            }
            if c.expired && !in_grace {
                return Some(Reason::CrlExpired);
            }
            if c.revokes & bits != 0 {
                return Some(Reason::Revoked);
            }
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn certgate_follows_the_rules_and_agrees_with_webpki(
        leaf_index in 0..4usize,
        crls in prop::collection::vec(crl_case(), 0..4),
        deny_unknown in any::<bool>(),
        grace in any::<bool>(),
    ) {
        let w = world();
        let (leaf, issuer) = match leaf_index {
            3 => (&w.leaf_no_crl, &w.int_no_crl),
            i => (&w.leaves[i], &w.int_crl),
        };
        let chain = vec![
            CertificateDer::from(leaf.der.clone()),
            CertificateDer::from(issuer.der.clone()),
        ];
        let made: Vec<(Vec<u8>, &CrlCase)> = crls.iter().map(|c| (make_crl(c, leaf), c)).collect();
        let parsed = made
            .iter()
            .map(|(der, _)| verify::parse_crl(der, &Origin::other("crl")).unwrap())
            .collect();
        let unknown = if deny_unknown { UnknownRevocation::Deny } else { UnknownRevocation::Allow };
        let mut bundle = TrustBundle::new(
            "oracle",
            vec![CertificateDer::from(w.root.der.clone())],
            parsed,
            unknown,
        )
        .unwrap();
        // Expired CRLs were due an hour ago: a two-hour grace covers them.
        let in_grace = grace && bundle.crls().iter().any(|c| c.next_update() <= UnixTime::now().as_secs());
        if grace {
            bundle = bundle.with_stale_grace(7200);
        }
        let kept: Vec<&CrlCase> = bundle
            .crls()
            .iter()
            .map(|k| made.iter().find(|(der, _)| der.as_slice() == k.der()).unwrap().1)
            .collect();
        let ours = reason(&bundle.verify(&chain, Purpose::Client, UnixTime::now()));
        prop_assert_eq!(ours, model(&kept, leaf_index, deny_unknown, in_grace), "rules");
        if kept.iter().all(|c| c.idp == 0) {
            // webpki checks signature and nextUpdate before the issuer's keyUsage, certgate
            // after: with several faults the reasons may differ, never the outcome.
            let theirs = oracle(&bundle, &chain, deny_unknown, in_grace);
            prop_assert_eq!(ours.is_none(), theirs.is_none(), "webpki said {:?}", theirs);
            if ours != Some(Reason::KeyUsage) && theirs != Some(Reason::KeyUsage) {
                prop_assert_eq!(ours, theirs, "webpki");
            }
        }
    }
}
