//! The log on a real PostgreSQL server (a fresh cluster per test): two stores on one database
//! stand for two certgate instances, each with its own sequencer, both appending at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use certgate_log::{BatchLimits, LogService, LogStorage, PgStore, Sequencer};
use certgate_testkit::Postgres;
use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{self, leaf_hash, verify_inclusion};
use certgate_tlog::note::{Signer, Verifiers};
use certgate_tlog::proof::TlogProof;

const ORIGIN: &str = "pg.test.example/log";

fn empty(signer: &Signer) -> String {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: merkle::empty_root(),
        extensions: vec![],
    }
    .sign(&[signer])
    .unwrap()
    .to_string()
}

async fn get(svc: &LogService, path: &str) -> (u16, Bytes) {
    let req = http::Request::get(path).body(Bytes::new()).unwrap();
    let resp = svc.call(req).await;
    (resp.status().as_u16(), resp.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_never_fork() {
    let Some(pg) = Postgres::start() else { return };
    let pg = Arc::new(pg);
    let signer = Arc::new(Signer::generate(ORIGIN).unwrap());
    let keys = Verifiers(vec![signer.verifier()]);
    let mut services = Vec::new();
    let mut stores: Vec<Arc<dyn LogStorage>> = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn LogStorage> =
            Arc::new(PgStore::open_or_create(&pg.url(), None, ORIGIN, &empty(&signer)).unwrap());
        let seq = Sequencer::start(
            Arc::clone(&store),
            Arc::clone(&signer),
            BatchLimits::default(),
        );
        services.push(LogService::new(Arc::clone(&store), seq, "/"));
        stores.push(store);
    }
    // Another log's name is refused on this database.
    let other = PgStore::open_or_create(&pg.url(), None, "other.example/log", &empty(&signer));
    assert!(format!("{:?}", other.unwrap_err()).contains("holds the log"));

    // 8 writers on each instance, plus one entry that both instances are given.
    let mut tasks = Vec::new();
    for (n, svc) in services.iter().enumerate() {
        for w in 0..8 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..25 {
                    let entry = if i == 12 {
                        "the same entry".to_owned()
                    } else {
                        format!("instance {n} writer {w} entry {i}")
                    };
                    let req = http::Request::post("/add")
                        .body(Bytes::from(entry.clone()))
                        .unwrap();
                    let resp = svc.call(req).await;
                    assert_eq!(resp.status(), 200, "{entry}");
                    out.push((entry, resp.into_body()));
                }
                out
            }));
        }
    }
    let mut by_index: BTreeMap<u64, String> = BTreeMap::new();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut same_entry = HashSet::new();
    for t in tasks {
        for (entry, body) in t.await.unwrap() {
            let proof = TlogProof::parse(&body).unwrap();
            let (cp, _) =
                Checkpoint::open(proof.checkpoint.to_string().as_bytes(), ORIGIN, &keys).unwrap();
            verify_inclusion(
                proof.index,
                cp.size,
                &leaf_hash(entry.as_bytes()),
                &proof.proof,
                &cp.root,
            )
            .unwrap();
            if entry == "the same entry" {
                same_entry.insert(proof.index);
            } else {
                assert!(
                    by_index.insert(proof.index, entry.clone()).is_none(),
                    "index {} given twice",
                    proof.index
                );
            }
            checkpoints.push(cp);
        }
    }
    assert_eq!(same_entry.len(), 1, "one entry, one index: {same_entry:?}");
    let size = (by_index.len() + 1) as u64;
    assert_eq!(size, 2 * 8 * 24 + 1);
    let (head_size, _) = stores[0].head().unwrap();
    assert_eq!(head_size, size, "every index below the size, none lost");

    // Every checkpoint handed out is consistent with the final tree.
    let root = certgate_log::store::with_hashes(stores[1].as_ref(), |r| merkle::tree_hash(size, r))
        .unwrap();
    for cp in &checkpoints {
        let proof = certgate_log::store::with_hashes(stores[0].as_ref(), |r| {
            merkle::consistency_proof(cp.size, size, r)
        })
        .unwrap();
        merkle::verify_consistency(cp.size, size, &cp.root, &root, &proof).unwrap();
    }
    // Both instances serve the same tiles and bundles.
    for path in [
        "/tile/0/000",
        "/tile/0/001.p/129",
        "/tile/1/000.p/1",
        "/tile/entries/001.p/129",
    ] {
        let (a, b) = (get(&services[0], path).await, get(&services[1], path).await);
        assert_eq!(a.0, 200, "{path}");
        assert_eq!(a, b, "{path}");
    }

    // A writer that commits on a stale size is refused (compare-and-swap).
    let stale =
        stores[0].append_batch(size - 1, &[b"late".to_vec()], &mut |_, _| Ok(String::new()));
    assert!(
        matches!(stale, Err(certgate_log::Error::Conflict { expected, found }) if expected == size - 1 && found == size),
        "{stale:?}"
    );
    assert_eq!(stores[1].head().unwrap().0, size);

    // The database stops: an append is answered 503 with the reason, and nothing is appended.
    let stop = tokio::task::spawn_blocking({
        let pg = Arc::clone(&pg);
        move || pg.ctl("stop")
    });
    stop.await.unwrap();
    let req = http::Request::post("/add")
        .body(Bytes::from_static(b"while the database is down"))
        .unwrap();
    let resp = services[0].call(req).await;
    assert_eq!(resp.status(), 503);
    assert!(String::from_utf8_lossy(resp.body()).contains("postgres"));
    let start = tokio::task::spawn_blocking({
        let pg = Arc::clone(&pg);
        move || pg.ctl("start")
    });
    start.await.unwrap();
    // Back: both instances connect again, and the next entry lands at the end.
    let req = http::Request::post("/add")
        .body(Bytes::from_static(b"after the restart"))
        .unwrap();
    let resp = services[1].call(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(TlogProof::parse(resp.body()).unwrap().index, size);
    let size = size + 1;

    // A restart in the middle of appends: every acknowledged entry is at its index.
    let mut writers = Vec::new();
    for (n, svc) in services.iter().enumerate() {
        for w in 0..4 {
            let svc = svc.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..40 {
                    let entry = format!("restart round: instance {n} writer {w} entry {i}");
                    let req = http::Request::post("/add")
                        .body(Bytes::from(entry.clone()))
                        .unwrap();
                    let resp = svc.call(req).await;
                    if resp.status() == 200 {
                        acked.push((entry, TlogProof::parse(resp.body()).unwrap().index));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                acked
            }));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let restart = tokio::task::spawn_blocking({
        let pg = Arc::clone(&pg);
        move || pg.ctl("restart")
    });
    restart.await.unwrap();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let (end, _) = stores[0].head().unwrap();
    assert!(
        acked.len() > 100,
        "only {} appends went through",
        acked.len()
    );
    for (entry, index) in &acked {
        assert!(*index >= size && *index < end);
        assert_eq!(
            stores[1].entries(*index, index + 1).unwrap(),
            vec![entry.as_bytes().to_vec()],
            "index {index}"
        );
    }
    let req = http::Request::post("/add")
        .body(Bytes::from_static(b"the next one"))
        .unwrap();
    let resp = services[0].call(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(TlogProof::parse(resp.body()).unwrap().index, end);
}
