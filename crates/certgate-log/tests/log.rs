//! The log end to end in-process: concurrent appends, proofs against the signed checkpoint,
//! tiles that rebuild the tree, persistence across reopen, and compare-and-swap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use certgate_log::{BatchLimits, LogService, LogStorage, Sequencer, Store};
use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{leaf_hash, verify_inclusion};
use certgate_tlog::note::{Signer, Verifiers};
use certgate_tlog::proof::TlogProof;
use certgate_tlog::tile;

fn new_log(dir: &std::path::Path) -> (Arc<dyn LogStorage>, Arc<Signer>) {
    let signer = Signer::generate("test.example/log").unwrap();
    let empty = Checkpoint {
        origin: "test.example/log".into(),
        size: 0,
        root: certgate_tlog::merkle::empty_root(),
        extensions: vec![],
    };
    let note = empty.sign(&[&signer]).unwrap().to_string();
    let store = Store::create(&dir.join("log.redb"), "test.example/log", &note).unwrap();
    (Arc::new(store), Arc::new(signer))
}

async fn get(svc: &LogService, path: &str) -> (u16, Bytes) {
    let req = http::Request::get(path).body(Bytes::new()).unwrap();
    let resp = svc.call(req).await;
    (resp.status().as_u16(), resp.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_prove_and_tile() {
    let dir = certgate_testkit::tempdir();
    let (store, signer) = new_log(dir.path());
    let keys = Verifiers(vec![signer.verifier()]);
    let seq = Sequencer::start(
        Arc::clone(&store),
        Arc::clone(&signer),
        BatchLimits::default(),
    );
    let svc = LogService::new(Arc::clone(&store), seq.clone(), "/");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..70 {
                let entry = format!("entry {t}-{i}");
                let req = http::Request::post("/add")
                    .body(Bytes::from(entry.clone()))
                    .unwrap();
                let resp = svc.call(req).await;
                assert_eq!(resp.status(), 200);
                out.push((entry, resp.into_body()));
            }
            out
        }));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        for (entry, body) in t.await.unwrap() {
            let p = TlogProof::parse(&body).unwrap();
            let cp = p
                .verify(&leaf_hash(entry.as_bytes()), "test.example/log", &keys)
                .unwrap();
            assert!(p.index < cp.size);
            assert!(seen.insert(p.index), "index {} handed out twice", p.index);
        }
    }
    assert_eq!(seen.len(), 560);
    // The same bytes again: the same index.
    let again = seq.append(b"entry 0-0".to_vec()).await.unwrap();
    assert!(again.duplicate);
    // The read API: the checkpoint verifies; tiles and bundles rebuild every hash and entry.
    let (code, cp) = get(&svc, "/checkpoint").await;
    assert_eq!(code, 200);
    let (cp, _) = Checkpoint::open(&cp, "test.example/log", &keys).unwrap();
    assert_eq!(cp.size, 560);
    let (code, full) = get(&svc, "/tile/0/000").await;
    assert_eq!((code, full.len()), (200, 256 * 32));
    let (code, partial) = get(&svc, "/tile/0/002.p/48").await;
    assert_eq!((code, partial.len()), (200, 48 * 32));
    let (code, _) = get(&svc, "/tile/0/002.p/49").await;
    assert_eq!(code, 404);
    let (code, bundle) = get(&svc, "/tile/entries/001").await;
    assert_eq!(code, 200);
    let entries = tile::parse_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 256);
    let (code, _) = get(&svc, "/tile/0/x1/000").await;
    assert_eq!(code, 404);
    // A client that has only tiles recomputes the root and a proof.
    let mut fetch = |level: u8, n: u64| -> Result<Vec<u8>, certgate_tlog::Error> {
        let t = tile::tile_for(level, n * 256, cp.size).unwrap();
        Ok(svc.read(&t.path()).into_body().to_vec())
    };
    struct Tiles<'a, F>(std::cell::RefCell<&'a mut F>);
    impl<F: FnMut(u8, u64) -> Result<Vec<u8>, certgate_tlog::Error>> certgate_tlog::HashReader
        for Tiles<'_, F>
    {
        fn hash(&self, level: u8, index: u64) -> Result<certgate_tlog::Hash, certgate_tlog::Error> {
            tile::hash_from_tiles(level, index, &mut *self.0.borrow_mut())
        }
    }
    let reader = Tiles(std::cell::RefCell::new(&mut fetch));
    assert_eq!(
        certgate_tlog::merkle::tree_hash(cp.size, &reader).unwrap(),
        cp.root
    );
    let leaf = leaf_hash(entries[3]);
    let proof = certgate_tlog::merkle::inclusion_proof(259, cp.size, &reader).unwrap();
    verify_inclusion(259, cp.size, &leaf, &proof, &cp.root).unwrap();
    // Too large, empty, wrong method.
    let big = Bytes::from(vec![b'x'; 65_536]);
    let resp = svc
        .call(http::Request::post("/add").body(big).unwrap())
        .await;
    assert_eq!(resp.status(), 413);
    let resp = svc
        .call(http::Request::post("/add").body(Bytes::new()).unwrap())
        .await;
    assert_eq!(resp.status(), 400);
    let resp = svc
        .call(http::Request::get("/add").body(Bytes::new()).unwrap())
        .await;
    assert_eq!(resp.status(), 405);
}

#[test]
fn reopen_keeps_everything_and_cas_refuses_a_stale_writer() {
    let dir = certgate_testkit::tempdir();
    let (store, signer) = new_log(dir.path());
    let mut sign = |size, root| {
        let cp = Checkpoint {
            origin: "test.example/log".into(),
            size,
            root,
            extensions: vec![],
        };
        Ok(cp.sign(&[&*signer])?.to_string())
    };
    let c = store
        .append_batch(0, &[b"a".to_vec(), b"b".to_vec()], &mut sign)
        .unwrap();
    assert_eq!(c.size, 2);
    // A writer that still believes the log is empty is refused: no fork.
    let err = store
        .append_batch(0, &[b"c".to_vec()], &mut sign)
        .unwrap_err();
    assert!(err.to_string().contains("not the expected 0"), "{err}");
    drop(store);
    let store = Store::open(&dir.path().join("log.redb")).unwrap();
    let (size, cp) = store.head().unwrap();
    assert_eq!(size, 2);
    assert_eq!(cp, c.checkpoint);
    assert_eq!(
        store.entries(0, 2).unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert!(Store::create(&dir.path().join("log.redb"), "x", "y").is_err());

    // After a reopen, duplicates of entries from before (the index is rebuilt from the file)
    // and of the same batch get their first index; new entries follow.
    let more: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let c = store.append_batch(2, &more, &mut sign).unwrap();
    assert_eq!(c.size, 302);
    drop(store);
    let store = Store::open(&dir.path().join("log.redb")).unwrap();
    let again = [
        b"b".to_vec(),
        b"new".to_vec(),
        299u32.to_be_bytes().to_vec(),
        b"new".to_vec(),
        b"a".to_vec(),
    ];
    let c = store.append_batch(302, &again, &mut sign).unwrap();
    assert_eq!(
        c.indexes,
        vec![(1, true), (302, false), (301, true), (302, true), (0, true)]
    );
    assert_eq!(c.size, 303);
    // And without a reopen, from the index kept up to date after each commit.
    let c = store
        .append_batch(303, &[b"new".to_vec(), b"newer".to_vec()], &mut sign)
        .unwrap();
    assert_eq!(c.indexes, vec![(302, true), (303, false)]);
}

/// Counts the reads that reach the real store under it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn LogStorage>,
    reads: std::sync::atomic::AtomicUsize,
}

impl LogStorage for Counting {
    fn origin(&self) -> &str {
        self.inner.origin()
    }
    fn head(&self) -> Result<(u64, String), certgate_log::Error> {
        self.inner.head()
    }
    fn read_hashes(
        &self,
        f: &mut dyn FnMut(
            &dyn certgate_tlog::merkle::HashReader,
        ) -> Result<(), certgate_tlog::Error>,
    ) -> Result<(), certgate_log::Error> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_hashes(f)
    }
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, certgate_log::Error> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.entries(start, end)
    }
    fn append_batch(
        &self,
        expected_size: u64,
        entries: &[Vec<u8>],
        sign: &mut dyn FnMut(u64, certgate_tlog::Hash) -> Result<String, certgate_log::Error>,
    ) -> Result<certgate_log::store::Committed, certgate_log::Error> {
        self.inner.append_batch(expected_size, entries, sign)
    }
}

/// Full tiles and entry bundles are read from storage once, then answered from memory with
/// the same bytes; partial ones (which grow) are read every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tiles_are_read_from_storage_once() {
    let dir = certgate_testkit::tempdir();
    let (inner, signer) = new_log(dir.path());
    let store = Arc::new(Counting {
        inner,
        reads: std::sync::atomic::AtomicUsize::new(0),
    });
    let dyn_store: Arc<dyn LogStorage> = store.clone();
    let seq = Sequencer::start(Arc::clone(&dyn_store), signer, BatchLimits::default());
    let svc = LogService::new(dyn_store, seq, "/");
    for i in 0..300 {
        let req = http::Request::post("/add")
            .body(Bytes::from(format!("entry {i}")))
            .unwrap();
        assert_eq!(svc.call(req).await.status(), 200);
    }
    let reads = || store.reads.load(std::sync::atomic::Ordering::SeqCst);
    for path in ["/tile/0/000", "/tile/entries/000"] {
        let (code, first) = get(&svc, path).await;
        assert_eq!(code, 200, "{path}");
        let before = reads();
        for _ in 0..5 {
            let (code, again) = get(&svc, path).await;
            assert_eq!((code, &again), (200, &first), "{path}");
        }
        assert_eq!(reads(), before, "{path} was read from storage again");
    }
    let (code, _) = get(&svc, "/tile/entries/001.p/44").await;
    assert_eq!(code, 200);
    let before = reads();
    let (code, _) = get(&svc, "/tile/entries/001.p/44").await;
    assert_eq!(code, 200);
    assert_eq!(reads(), before + 1, "a partial bundle is read each time");
}
