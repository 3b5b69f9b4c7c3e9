//! Criterion benchmarks for the log:
//!
//! - `durable_appends`: 64 concurrent submitters append 256-byte entries through the sequencer;
//!   every entry is fsync'd in its batch before its submitter hears back (throughput in
//!   entries/s);
//! - `inclusion_proof`: an inclusion proof for a random index of a 100,000-entry log, read from
//!   the store (target: ≥ 100,000/s);
//! - `verify_tlog_proof`: parse and verify a tlog-proof file (checkpoint signature + inclusion)
//!   (target: < 100 µs).
//!
//! Also prints the bytes stored per entry.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_log::{BatchLimits, LogStorage, Sequencer, Store};
use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{self, leaf_hash};
use certgate_tlog::note::{Note, Signer, Verifiers};
use certgate_tlog::proof::TlogProof;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ORIGIN: &str = "bench.example/log";

fn new_store(dir: &std::path::Path) -> (Arc<dyn LogStorage>, Arc<Signer>) {
    let signer = Signer::generate(ORIGIN).unwrap();
    let empty = Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: merkle::empty_root(),
        extensions: vec![],
    };
    let note = empty.sign(&[&signer]).unwrap().to_string();
    let store = Store::create(&dir.join("log.redb"), ORIGIN, &note).unwrap();
    (Arc::new(store), Arc::new(signer))
}

fn durable_appends(c: &mut Criterion) {
    let dir = certgate_testkit::tempdir();
    let (store, signer) = new_store(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seq = rt.block_on(async {
        Sequencer::start(
            Arc::clone(&store),
            Arc::clone(&signer),
            BatchLimits::default(),
        )
    });
    const PER_ITER: u64 = 64 * 64;
    let mut counter = 0u64;
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Elements(PER_ITER));
    group.sample_size(10);
    group.bench_function("durable_appends", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = counter;
                counter += PER_ITER;
                let seq = seq.clone();
                total += rt.block_on(async move {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for t in 0..64u64 {
                        let seq = seq.clone();
                        tasks.push(tokio::spawn(async move {
                            for i in 0..64u64 {
                                let mut entry = vec![0u8; 256];
                                entry[..8].copy_from_slice(&(base + t * 64 + i).to_be_bytes());
                                seq.append(entry).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                });
            }
            total
        })
    });
    group.finish();
    let (size, _) = store.head().unwrap();
    let bytes = std::fs::metadata(dir.path().join("log.redb"))
        .unwrap()
        .len();
    println!(
        "log: {size} entries of 256 bytes in {bytes} bytes on disk: {} bytes per entry",
        bytes / size.max(1)
    );
}

fn proofs(c: &mut Criterion) {
    let dir = certgate_testkit::tempdir();
    let (store, signer) = new_store(dir.path());
    let mut size = 0u64;
    let mut last = String::new();
    for chunk in 0..100u64 {
        let entries: Vec<Vec<u8>> = (0..1000u64)
            .map(|i| (chunk * 1000 + i).to_be_bytes().to_vec())
            .collect();
        let c = store
            .append_batch(size, &entries, &mut |s, root| {
                let cp = Checkpoint {
                    origin: ORIGIN.into(),
                    size: s,
                    root,
                    extensions: vec![],
                };
                Ok(cp.sign(&[&*signer]).unwrap().to_string())
            })
            .unwrap();
        size = c.size;
        last = c.checkpoint;
    }
    let mut i = 0u64;
    c.bench_function("inclusion_proof", |b| {
        b.iter(|| {
            i = (i * 6364136223846793005 + 1442695040888963407) % size;
            certgate_log::store::with_hashes(store.as_ref(), |r| {
                merkle::inclusion_proof(black_box(i), size, r)
            })
            .unwrap()
        })
    });
    let index = 77_777u64;
    let proof = certgate_log::store::with_hashes(store.as_ref(), |r| {
        merkle::inclusion_proof(index, size, r)
    })
    .unwrap();
    let file = TlogProof {
        extra: None,
        index,
        proof,
        checkpoint: Note::parse(last.as_bytes()).unwrap(),
    }
    .to_text();
    let keys = Verifiers(vec![signer.verifier()]);
    let leaf = leaf_hash(&index.to_be_bytes());
    c.bench_function("verify_tlog_proof", |b| {
        b.iter(|| {
            TlogProof::parse(black_box(file.as_bytes()))
                .unwrap()
                .verify(&leaf, ORIGIN, &keys)
                .unwrap()
        })
    });
}

criterion_group!(benches, durable_appends, proofs);
criterion_main!(benches);
