//! The verifying client against logs in this process: a log that grows is followed, one that
//! forks (same key, other entries) or shrinks is refused, the stored checkpoint stays, and both
//! checkpoints are kept as evidence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use certgate_log::client::{self, ClientIo, SyncError};
use certgate_log::{BatchLimits, LogService, LogStorage, Sequencer, Store};
use certgate_tlog::checkpoint::{Checkpoint, Policy};
use certgate_tlog::note::{Signer, Verifiers};

const ORIGIN: &str = "client.example/log";

/// A log in this process, its read API called directly.
struct Log {
    svc: LogService,
}

impl Log {
    fn new(dir: &std::path::Path, name: &str, signer: &Arc<Signer>) -> Self {
        let empty = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: certgate_tlog::merkle::empty_root(),
            extensions: vec![],
        };
        let note = empty.sign(&[signer]).unwrap().to_string();
        let store: Arc<dyn LogStorage> =
            Arc::new(Store::create(&dir.join(format!("{name}.redb")), ORIGIN, &note).unwrap());
        let seq = Sequencer::start(
            Arc::clone(&store),
            Arc::clone(signer),
            BatchLimits::default(),
        );
        Self {
            svc: LogService::new(store, seq, "/"),
        }
    }

    async fn add(&self, entry: &str) {
        let req = http::Request::post("/add")
            .body(Bytes::from(entry.to_owned()))
            .unwrap();
        assert_eq!(self.svc.call(req).await.status(), 200);
    }
}

/// The client's I/O: a log (which can be swapped, as a log server that forked would be) and
/// the state in memory.
struct Io<'a> {
    rt: &'a tokio::runtime::Runtime,
    log: &'a Log,
    state: HashMap<String, Vec<u8>>,
}

impl ClientIo for Io<'_> {
    fn fetch(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let req = http::Request::get(format!("/{path}"))
            .body(Bytes::new())
            .unwrap();
        let resp = self.rt.block_on(self.log.svc.call(req));
        match resp.status().as_u16() {
            200 => Ok(resp.into_body().to_vec()),
            s => Err(format!("{path}: {s}")),
        }
    }

    fn load(&mut self, what: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.state.get(what).cloned())
    }

    fn store(&mut self, what: &str, bytes: &[u8]) -> Result<(), String> {
        self.state.insert(what.to_owned(), bytes.to_vec());
        Ok(())
    }
}

#[test]
fn follows_a_growing_log_and_refuses_a_fork_or_a_shrink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let dir = certgate_testkit::tempdir();
    let signer = Arc::new(Signer::generate(ORIGIN).unwrap());
    let policy = Policy {
        logs: Verifiers(vec![signer.verifier()]),
        ..Policy::default()
    };
    let honest = Log::new(dir.path(), "honest", &signer);
    let forked = Log::new(dir.path(), "forked", &signer);
    let shrunk = Log::new(dir.path(), "shrunk", &signer);
    rt.block_on(async {
        for i in 0..300 {
            honest.add(&format!("entry {i}")).await;
        }
        for i in 0..250 {
            forked.add(&format!("entry {i}")).await;
        }
        for i in 250..400 {
            forked.add(&format!("other entry {i}")).await;
        }
        for i in 0..10 {
            shrunk.add(&format!("entry {i}")).await;
        }
    });

    let mut io = Io {
        rt: &rt,
        log: &honest,
        state: HashMap::new(),
    };
    let first = client::sync_checkpoint(&mut io, ORIGIN, &policy, 1).unwrap();
    assert_eq!(first.checkpoint.size, 300);
    assert_eq!(first.previous_size, None);
    let stored = io.state["checkpoint"].clone();
    let stored_at_300 = stored.clone();

    // The honest log grows: consistent, followed.
    rt.block_on(async {
        for i in 300..520 {
            honest.add(&format!("entry {i}")).await;
        }
    });
    let grown = client::sync_checkpoint(&mut io, ORIGIN, &policy, 2).unwrap();
    assert_eq!(grown.checkpoint.size, 520);
    assert_eq!(grown.previous_size, Some(300));
    assert!(grown.verdict.contains("consistent"), "{}", grown.verdict);
    assert_ne!(io.state["checkpoint"], stored);
    let stored = io.state["checkpoint"].clone();

    // The same key signs a log with other entries after 250: seen from a verifier that stored
    // the honest checkpoint of size 300, the forked one of size 400 is inconsistent with it.
    let mut at_300 = Io {
        rt: &rt,
        log: &forked,
        state: HashMap::from([("checkpoint".to_owned(), stored_at_300.clone())]),
    };
    let err = client::sync_checkpoint(&mut at_300, ORIGIN, &policy, 3).unwrap_err();
    match &err {
        SyncError::Inconsistent {
            stored, fetched, ..
        } => assert_eq!((*stored, *fetched), (300, 400)),
        e => panic!("a fork was not refused as inconsistent: {e}"),
    }
    assert_eq!(at_300.state["checkpoint"], stored_at_300);
    assert!(at_300.state.contains_key("conflict-3.stored"));
    assert!(at_300.state.contains_key("conflict-3.fetched"));

    // A log that went back in size.
    io.log = &shrunk;
    let err = client::sync_checkpoint(&mut io, ORIGIN, &policy, 4).unwrap_err();
    assert!(
        matches!(&err, SyncError::Inconsistent { why, .. } if why.contains("went back")),
        "{err}"
    );
    assert_eq!(io.state["checkpoint"], stored);

    // A checkpoint signed by another key is not the log's.
    let other = Arc::new(Signer::generate(ORIGIN).unwrap());
    let impostor = Log::new(dir.path(), "impostor", &other);
    io.log = &impostor;
    let err = client::sync_checkpoint(&mut io, ORIGIN, &policy, 5).unwrap_err();
    assert!(matches!(err, SyncError::Invalid(_)), "{err}");
    assert_eq!(io.state["checkpoint"], stored);
}
