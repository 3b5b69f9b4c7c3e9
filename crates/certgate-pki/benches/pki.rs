//! Criterion benchmarks for the PKI hot paths.
//!
//! - `load_chain_and_identity`: parse a 3-certificate PEM chain and derive the identity of each.
//! - `verify_with_1000_crl`: verify a client chain (leaf + intermediate) against a cached trust
//!   bundle whose intermediate CRL lists 1,000 revoked serials (target: under 50 µs).
//! - `crl_100k`: what a fetched 100,000-entry CRL costs before it is in force: the check and
//!   parse (`crl::check_and_load`: both parsers, the signature); for comparison, webpki's
//!   parser alone and `parse_crl` (what a CRL file costs).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use certgate_pki::verify::{self, UnknownRevocation};
use certgate_pki::{Identity, Origin, Purpose, TrustBundle, credential};
use certgate_testkit::{TestPki, crl};
use criterion::{Criterion, criterion_group, criterion_main};
use rustls_pki_types::{CertificateDer, UnixTime};

fn load_chain_and_identity(c: &mut Criterion) {
    let pki = TestPki::new();
    let pem = format!("{}{}{}", pki.client.pem, pki.intermediate.pem, pki.root.pem);
    let origin = Origin::other("bench");
    c.bench_function("load_chain_and_identity", |b| {
        b.iter(|| {
            let certs = credential::parse_certificates(black_box(pem.as_bytes()), &origin).unwrap();
            let ids: Vec<Identity> = certs
                .iter()
                .map(|c| Identity::from_der(c).unwrap())
                .collect();
            black_box(ids)
        })
    });
}

fn bundle_with_crl(pki: &TestPki, crl_der: &[u8]) -> TrustBundle {
    let loaded = verify::parse_crl(crl_der, &Origin::other("crl")).unwrap();
    assert_eq!(loaded.revoked, 1000);
    TrustBundle::new(
        "bench",
        vec![CertificateDer::from(pki.root.der.clone())],
        vec![loaded],
        UnknownRevocation::Allow,
    )
    .unwrap()
}

fn verify_with_1000_crl(c: &mut Criterion) {
    let pki = TestPki::new();
    let serials: Vec<Vec<u8>> = (0u32..1000)
        .map(|i| (0x1000_0000 + i).to_be_bytes().to_vec())
        .collect();
    let crl_der = crl(&pki.intermediate, &serials, 30);
    let chain_of = |leaf: &certgate_testkit::Cert| {
        vec![
            CertificateDer::from(leaf.der.clone()),
            CertificateDer::from(pki.intermediate.der.clone()),
        ]
    };
    let chain = chain_of(&pki.client);
    let now = UnixTime::now();
    let mut group = c.benchmark_group("verify_1000_crl");

    // A returning client: every signature already verified once against this bundle.
    let bundle = bundle_with_crl(&pki, &crl_der);
    assert!(
        bundle
            .verify(&chain, Purpose::Client, now)
            .verified()
            .is_some()
    );
    group.bench_function("returning_client", |b| {
        b.iter(|| black_box(bundle.verify(black_box(&chain), Purpose::Client, now)))
    });

    // A client never seen before: its leaf signature is verified, the intermediate's and the
    // CRL's come from the cache.
    let leaves: Vec<Vec<CertificateDer<'static>>> = (0..500)
        .map(|i| {
            chain_of(&certgate_testkit::signed_by(
                &certgate_testkit::Spec::client(&format!("c{i}")),
                &pki.intermediate,
            ))
        })
        .collect();
    group.bench_function("new_client", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut bundle = bundle_with_crl(&pki, &crl_der);
            for i in 0..iters as usize {
                if i % leaves.len() == 0 {
                    bundle = bundle_with_crl(&pki, &crl_der);
                    assert!(
                        bundle
                            .verify(&chain, Purpose::Client, now)
                            .verified()
                            .is_some()
                    );
                }
                let leaf = &leaves[i % leaves.len()];
                let start = std::time::Instant::now();
                black_box(bundle.verify(black_box(leaf), Purpose::Client, now));
                total += start.elapsed();
            }
            total
        })
    });

    // Nothing cached: a fresh bundle per verification (leaf, intermediate and CRL signatures).
    group.bench_function("cold", |b| {
        b.iter_batched(
            || bundle_with_crl(&pki, &crl_der),
            |bundle| black_box(bundle.verify(&chain, Purpose::Client, now)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn crl_100k(c: &mut Criterion) {
    let pki = TestPki::new();
    let serials: Vec<Vec<u8>> = (0u32..100_000)
        .map(|i| {
            let mut s = vec![0x42; 12];
            s.extend_from_slice(&i.to_be_bytes());
            s
        })
        .collect();
    let crl_der = crl(&pki.intermediate, &serials, 30);
    let issuers = [CertificateDer::from(pki.intermediate.der.clone())];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut group = c.benchmark_group("crl_100k");
    group.sample_size(10);
    group.bench_function("check_and_load", |b| {
        b.iter(|| {
            certgate_pki::crl::check_and_load(black_box(&crl_der), &issuers, now, None, None)
                .unwrap()
        })
    });
    group.bench_function("webpki_parse", |b| {
        b.iter(|| webpki::OwnedCertRevocationList::from_der(black_box(&crl_der)).unwrap())
    });
    let pem = certgate_pki::pem::encode("X509 CRL", &crl_der);
    group.bench_function("pem_decode", |b| {
        b.iter(|| {
            certgate_pki::crl::crl_der(black_box(pem.as_bytes()), &Origin::other("crl")).unwrap()
        })
    });
    group.bench_function("parse_crl_for_files", |b| {
        b.iter(|| verify::parse_crl(black_box(&crl_der), &Origin::other("crl")).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    load_chain_and_identity,
    verify_with_1000_crl,
    crl_100k
);
criterion_main!(benches);
