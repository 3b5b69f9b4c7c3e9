//! Criterion benchmarks for content trust:
//!
//! - `verify_1000_bundles`: verify 1,000 proof bundles offline (statement signature, checkpoint
//!   signature under the policy, inclusion, decision), one after the other (target: < 1 s);
//! - `sha256_64mib/{sha2,aws-lc}`: hashing throughput of the two SHA-256 implementations at hand
//!   (the file hasher uses the faster).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{MemoryTree, inclusion_proof};
use certgate_tlog::note::Signer;
use certgate_tlog::proof::TlogProof;
use certgate_trust::statement::{Digest, Statement, Status, SubjectKind};
use certgate_trust::{Outcome, Policy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::Digest as _;

fn bundles(c: &mut Criterion) {
    let log = Signer::from_seed("bench.example/log", [1; 32]).unwrap();
    let publisher = Signer::from_seed("publisher.example", [2; 32]).unwrap();
    let v = publisher.verifier();
    let policy = Policy::parse(&format!(
        "version = 1\nlog_keys = [\"{}\"]\n[[signer]]\nkey = \"{v}\"\n",
        log.verifier()
    ))
    .unwrap();
    let mut tree = MemoryTree::new();
    let mut items = Vec::new();
    for i in 0..1000u32 {
        let digest = Digest::of(&i.to_be_bytes());
        let st = Statement {
            kind: SubjectKind::File,
            digest,
            status: Status::Trusted,
            signer: v.name().to_owned(),
            signer_id: v.id(),
            time: 1_700_000_000,
            name: Some(format!("artifact-{i}")),
            version: Some("1.0".into()),
        };
        let signed = st.sign(&publisher).unwrap().to_string().into_bytes();
        tree.append(&signed);
        items.push((digest, signed));
    }
    let cp = Checkpoint {
        origin: "bench.example/log".into(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    }
    .sign(&[&log])
    .unwrap();
    let files: Vec<(Digest, String)> = items
        .iter()
        .enumerate()
        .map(|(i, (d, signed))| {
            let p = TlogProof {
                extra: Some(signed.clone()),
                index: i as u64,
                proof: inclusion_proof(i as u64, tree.size(), &tree).unwrap(),
                checkpoint: cp.clone(),
            };
            (*d, p.to_text())
        })
        .collect();
    let mut group = c.benchmark_group("trust");
    group.sample_size(10);
    group.bench_function("verify_1000_bundles", |b| {
        b.iter(|| {
            for (d, f) in &files {
                let (verdict, _) =
                    certgate_trust::bundle::verify(black_box(f.as_bytes()), d, &policy).unwrap();
                assert_eq!(verdict.outcome, Outcome::Trusted);
            }
        })
    });
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; 64 << 20];
    let mut group = c.benchmark_group("sha256_64mib");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("sha2", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            for chunk in data.chunks(1 << 20) {
                h.update(chunk);
            }
            black_box(h.finalize())
        })
    });
    group.bench_function("aws-lc", |b| {
        b.iter(|| {
            let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            for chunk in data.chunks(1 << 20) {
                h.update(chunk);
            }
            black_box(h.finish())
        })
    });
    group.finish();
}

criterion_group!(benches, bundles, hashing);
criterion_main!(benches);
