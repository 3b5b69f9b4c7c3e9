//! A witness (C2SP tlog-witness): it keeps the latest checkpoint it cosigned for each log it
//! knows, and cosigns a new one (`cosignature/v1`) only when the log proves it consistent with
//! that one. A log that forks, rolls back or signs two trees of one size gets no cosignature.
//!
//! `POST <prefix>/add-checkpoint` carries
//!
//! ```text
//! old <size the log believes the witness has>
//! <base64 consistency-proof hash>        (0 to 63 lines; none when old is 0 or the size)
//!
//! <the signed checkpoint>
//! ```
//!
//! and is answered 200 with the cosignature line(s), or: 400 malformed (or `old` larger than
//! the checkpoint), 403 no valid signature by the log's key, 404 unknown origin, 409 `old` is
//! not the size the witness has (body: that size, `text/x.tlog.size`), 422 a consistency proof
//! that does not verify or a tree of the same size with another root.
//!
//! The state is written through [`WitnessState`] (durably, before the answer) under one lock,
//! so two submissions never both move a log forward from the same size.

use std::sync::Mutex;

use bytes::Bytes;
use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{self, Hash};
use certgate_tlog::note::{Note, NoteSignature, Signer, Verifiers};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

/// Where a witness keeps the last checkpoint it cosigned per log (the binary's files).
pub trait WitnessState: Send + Sync + std::fmt::Debug {
    /// The stored note for `origin`, if any.
    fn load(&self, origin: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores `note` for `origin` durably (synced) before returning.
    fn store(&self, origin: &str, note: &[u8]) -> Result<(), String>;
}

/// A log the witness knows: its origin and the keys its checkpoints must be signed with.
#[derive(Clone, Debug)]
pub struct KnownLog {
    /// The origin (first checkpoint line).
    pub origin: String,
    /// Its signing keys.
    pub keys: Verifiers,
}

/// Why a checkpoint was not cosigned, with the spec's status.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is malformed, or `old` is larger than the checkpoint.
    BadRequest(String),
    /// 403: no valid signature by the log's key.
    Forbidden(String),
    /// 404: the origin is not a log this witness knows.
    UnknownLog(String),
    /// 409: `old` is not the size the witness has; that size.
    Conflict(u64),
    /// 422: the consistency proof does not verify, or the same size has another root.
    Inconsistent(String),
    /// 500: the witness's own state failed.
    State(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnknownLog(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Most hashes a consistency proof can have (two per tree level of a 2^63 tree, and some).
const MAX_PROOF: usize = 63;
/// The largest request the witness reads.
pub const MAX_REQUEST: usize = 16 * 1024;

/// A witness: its cosigning key and the logs it knows.
#[derive(Debug)]
pub struct Witness {
    signer: Signer,
    logs: Vec<KnownLog>,
    state: Box<dyn WitnessState>,
    /// The latest checkpoint cosigned per log in this process, held from reading a log's state
    /// to storing the new one. Once a log's state was read, memory is the truth: a state file
    /// deleted or rolled back while the witness runs cannot make it forget.
    seen: Mutex<std::collections::HashMap<String, Checkpoint>>,
}

/// A parsed `add-checkpoint` request.
struct Submission {
    old: u64,
    proof: Vec<Hash>,
    note: Note,
}

fn parse_request(body: &[u8]) -> Result<Submission, Refusal> {
    let bad = |why: &str| Refusal::BadRequest(why.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| bad("the request is not UTF-8"))?;
    let (head, checkpoint) = text
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line between the proof and the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or_else(|| bad("the first line is not `old <size>`"))?;
    if old.is_empty() || !old.bytes().all(|b| b.is_ascii_digit()) || old.len() > 20 {
        return Err(bad("`old` is not a decimal size"));
    }
    let old: u64 = old.parse().map_err(|_| bad("`old` is not a size"))?;
    let mut proof = Vec::new();
    for l in lines {
        if proof.len() == MAX_PROOF {
            return Err(bad("the consistency proof has more than 63 hashes"));
        }
        proof.push(Hash::from_base64(l).ok_or_else(|| bad("a proof line is not a base64 hash"))?);
    }
    let note = Note::parse(checkpoint.as_bytes())
        .map_err(|e| bad(&format!("the checkpoint is not a signed note: {e}")))?;
    Ok(Submission { old, proof, note })
}

impl Witness {
    /// A witness signing with `signer` (a cosignature key), for `logs`, keeping its state in
    /// `state`.
    pub fn new(
        signer: Signer,
        logs: Vec<KnownLog>,
        state: Box<dyn WitnessState>,
    ) -> Result<Self, certgate_tlog::Error> {
        // A key that cannot cosign is refused now, not at the first submission.
        signer.cosign("check\n", 0)?;
        Ok(Self {
            signer,
            logs,
            state,
            seen: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The latest checkpoint this witness stored for `log`, checked: it must be signed by the
    /// log's key (a state file written by someone else is not the witness's memory).
    fn stored(&self, log: &KnownLog) -> Result<Option<Checkpoint>, Refusal> {
        let origin = &log.origin;
        let Some(bytes) = self.state.load(origin).map_err(Refusal::State)? else {
            return Ok(None);
        };
        let bad = |e: &dyn std::fmt::Display| {
            Refusal::State(format!("the stored checkpoint of `{origin}`: {e}"))
        };
        let (cp, _) = Checkpoint::open(&bytes, origin, &log.keys).map_err(|e| bad(&e))?;
        Ok(Some(cp))
    }

    /// Handles one `add-checkpoint` body at unix time `now`; returns the cosignature line(s).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, Refusal> {
        let sub = parse_request(body)?;
        let cp = Checkpoint::parse(sub.note.text())
            .map_err(|e| Refusal::BadRequest(format!("not a checkpoint: {e}")))?;
        let log = self
            .logs
            .iter()
            .find(|l| l.origin == cp.origin)
            .ok_or_else(|| Refusal::UnknownLog(format!("unknown log `{}`", cp.origin)))?;
        sub.note
            .verify(&log.keys)
            .map_err(|e| Refusal::Forbidden(format!("`{}`: {e}", cp.origin)))?;
        if sub.old > cp.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is larger than the checkpoint's {}",
                sub.old, cp.size
            )));
        }
        let mut memory = self
            .seen
            .lock()
            .map_err(|_| Refusal::State("the witness state lock is poisoned".into()))?;
        // The state is read once per log and process; from then on memory is the truth (one
        // witness per state: the binary locks the directory).
        let seen = match memory.get(&cp.origin) {
            Some(m) => Some(m.clone()),
            None => self.stored(log)?,
        };
        let (seen_size, seen_root) = seen
            .as_ref()
            .map_or((0, merkle::empty_root()), |s| (s.size, s.root));
        if sub.old != seen_size {
            return Err(Refusal::Conflict(seen_size));
        }
        if cp.size == seen_size {
            if cp.root != seen_root {
                return Err(Refusal::Inconsistent(format!(
                    "a tree of size {} with another root than the one cosigned",
                    cp.size
                )));
            }
            if !sub.proof.is_empty() {
                return Err(Refusal::BadRequest(
                    "a proof between trees of one size must be empty".into(),
                ));
            }
        } else if seen_size == 0 {
            if !sub.proof.is_empty() {
                return Err(Refusal::BadRequest(
                    "a proof from the empty tree must be empty".into(),
                ));
            }
        } else {
            merkle::verify_consistency(seen_size, cp.size, &seen_root, &cp.root, &sub.proof)
                .map_err(|e| Refusal::Inconsistent(e.to_string()))?;
        }
        // Durable before anyone hears of the cosignature, and never moved backwards.
        if cp.size > seen_size || seen.is_none() {
            self.state
                .store(&cp.origin, sub.note.to_string().as_bytes())
                .map_err(Refusal::State)?;
        }
        memory.insert(cp.origin.clone(), cp.clone());
        let sig = self
            .signer
            .cosign(sub.note.text(), now)
            .map_err(|e| Refusal::State(e.to_string()))?;
        Ok(sig.to_line())
    }

    /// Answers one HTTP request whose body was read (at most [`MAX_REQUEST`] bytes).
    pub fn call(&self, req: Request<Bytes>, now: u64) -> Response<Bytes> {
        let path = req.uri().path();
        if !path.ends_with("/add-checkpoint") {
            return text(
                StatusCode::NOT_FOUND,
                "the witness answers POST /add-checkpoint",
            );
        }
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /add-checkpoint");
        }
        match self.add_checkpoint(req.body(), now) {
            Ok(lines) => text(StatusCode::OK, lines.trim_end()),
            Err(Refusal::Conflict(size)) => {
                let mut r = Response::new(Bytes::from(format!("{size}\n")));
                *r.status_mut() = StatusCode::CONFLICT;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/x.tlog.size"),
                );
                r
            }
            Err(
                e @ (Refusal::BadRequest(_)
                | Refusal::Forbidden(_)
                | Refusal::UnknownLog(_)
                | Refusal::Inconsistent(_)
                | Refusal::State(_)),
            ) => {
                let status = e.status();
                let why = match e {
                    Refusal::BadRequest(w)
                    | Refusal::Forbidden(w)
                    | Refusal::UnknownLog(w)
                    | Refusal::Inconsistent(w)
                    | Refusal::State(w) => w,
                    Refusal::Conflict(_) => String::new(),
                };
                text(status, &why)
            }
        }
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The body of an `add-checkpoint` request: `old`, the proof from `old` and the checkpoint.
pub fn request_body(old: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&h.to_base64());
        b.push('\n');
    }
    b.push('\n');
    b.push_str(checkpoint);
    b
}

/// The signatures in a witness's 200 answer to a request for `checkpoint` (a note's text).
pub fn parse_cosignatures(
    checkpoint_text: &str,
    body: &[u8],
) -> Result<Vec<NoteSignature>, String> {
    let body = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let note = Note::parse(format!("{checkpoint_text}\n{}\n", body.trim_end()).as_bytes())
        .map_err(|e| format!("the answer is not signature lines: {e}"))?;
    Ok(note.signatures().to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use certgate_tlog::checkpoint::Policy;
    use certgate_tlog::merkle::MemoryTree;

    use super::*;

    #[derive(Debug, Default, Clone)]
    struct Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>);

    impl WitnessState for Memory {
        fn load(&self, origin: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().unwrap().get(origin).cloned())
        }
        fn store(&self, origin: &str, note: &[u8]) -> Result<(), String> {
            self.0.lock().unwrap().insert(origin.into(), note.to_vec());
            Ok(())
        }
    }

    const ORIGIN: &str = "example.com/log";

    struct Log {
        key: Signer,
        tree: MemoryTree,
        leaves: Vec<Vec<u8>>,
    }

    impl Log {
        fn new(key: Signer) -> Self {
            Self {
                key,
                tree: MemoryTree::new(),
                leaves: Vec::new(),
            }
        }
        fn add(&mut self, what: &str) {
            self.tree.append(what.as_bytes());
            self.leaves.push(what.as_bytes().to_vec());
        }
        fn checkpoint(&self) -> String {
            Checkpoint {
                origin: ORIGIN.into(),
                size: self.tree.size(),
                root: self.tree.root(),
                extensions: vec![],
            }
            .sign(&[&self.key])
            .unwrap()
            .to_string()
        }
        fn proof(&self, old: u64) -> Vec<Hash> {
            let mut t = MemoryTree::new();
            for l in &self.leaves {
                t.append(l);
            }
            merkle::consistency_proof(old, t.size(), &t).unwrap()
        }
    }

    fn witness(log_key: &Signer, state: Memory) -> Witness {
        Witness::new(
            Signer::witness("witness.example", [7; 32]).unwrap(),
            vec![KnownLog {
                origin: ORIGIN.into(),
                keys: Verifiers(vec![log_key.verifier()]),
            }],
            Box::new(state),
        )
        .unwrap()
    }

    #[test]
    fn cosigns_consistent_growth_and_refuses_rollbacks_and_forks() {
        let key = Signer::from_seed(ORIGIN, [1; 32]).unwrap();
        let state = Memory::default();
        let w = witness(&key, state.clone());
        let mut log = Log::new(Signer::from_seed(ORIGIN, [1; 32]).unwrap());
        for i in 0..5 {
            log.add(&format!("entry {i}"));
        }
        let cp5 = log.checkpoint();
        let line = w
            .add_checkpoint(request_body(0, &[], &cp5).as_bytes(), 100)
            .unwrap();
        // The cosignature verifies under a policy with the witness.
        let sigs = parse_cosignatures(Note::parse(cp5.as_bytes()).unwrap().text(), line.as_bytes())
            .unwrap();
        let mut note = Note::parse(cp5.as_bytes()).unwrap();
        for s in sigs {
            note.add_signature(s);
        }
        let policy = Policy {
            logs: Verifiers(vec![key.verifier()]),
            witnesses: Verifiers(vec![
                Signer::witness("witness.example", [7; 32])
                    .unwrap()
                    .verifier(),
            ]),
            quorum: 1,
        };
        policy.open(note.to_string().as_bytes(), ORIGIN).unwrap();

        // Growth with a proof from 5.
        for i in 5..12 {
            log.add(&format!("entry {i}"));
        }
        let cp12 = log.checkpoint();
        assert_eq!(
            w.add_checkpoint(request_body(0, &[], &cp12).as_bytes(), 101),
            Err(Refusal::Conflict(5)),
            "the witness has 5"
        );
        w.add_checkpoint(request_body(5, &log.proof(5), &cp12).as_bytes(), 101)
            .unwrap();
        // A rollback to 5 is a conflict (the witness has 12), never a cosignature.
        assert_eq!(
            w.add_checkpoint(request_body(5, &log.proof(5), &cp5).as_bytes(), 102),
            Err(Refusal::Conflict(12))
        );
        // The same tree again is cosigned; the same size with another root is not.
        w.add_checkpoint(request_body(12, &[], &cp12).as_bytes(), 103)
            .unwrap();
        let mut fork = Log::new(Signer::from_seed(ORIGIN, [1; 32]).unwrap());
        for i in 0..12 {
            fork.add(&format!("forked {i}"));
        }
        assert!(matches!(
            w.add_checkpoint(request_body(12, &[], &fork.checkpoint()).as_bytes(), 104),
            Err(Refusal::Inconsistent(_))
        ));
        fork.add("more");
        // A fork that grows: its proof from 12 does not lead from the cosigned root.
        assert!(matches!(
            w.add_checkpoint(
                request_body(12, &fork.proof(12), &fork.checkpoint()).as_bytes(),
                105
            ),
            Err(Refusal::Inconsistent(_))
        ));
        // A new witness on the same state has the same view.
        let again = witness(&key, state.clone());
        assert_eq!(
            again.add_checkpoint(request_body(5, &log.proof(5), &cp12).as_bytes(), 106),
            Err(Refusal::Conflict(12))
        );
        // Deleting the state file while it runs does not make it forget; a state file not
        // signed by the log is not its state.
        state.0.lock().unwrap().clear();
        assert_eq!(
            w.add_checkpoint(request_body(0, &[], &cp5).as_bytes(), 107),
            Err(Refusal::Conflict(12))
        );
        let stranger = Signer::from_seed(ORIGIN, [9; 32]).unwrap();
        let planted = Checkpoint::parse(Note::parse(cp12.as_bytes()).unwrap().text())
            .unwrap()
            .sign(&[&stranger])
            .unwrap()
            .to_string();
        state.store(ORIGIN, planted.as_bytes()).unwrap();
        assert!(matches!(
            witness(&key, state).add_checkpoint(request_body(0, &[], &cp5).as_bytes(), 108),
            Err(Refusal::State(_))
        ));
    }

    #[test]
    fn strangers_and_malformed_requests_are_refused() {
        let key = Signer::from_seed(ORIGIN, [1; 32]).unwrap();
        let w = witness(&key, Memory::default());
        let mut log = Log::new(Signer::from_seed(ORIGIN, [2; 32]).unwrap());
        log.add("a");
        assert!(matches!(
            w.add_checkpoint(request_body(0, &[], &log.checkpoint()).as_bytes(), 1),
            Err(Refusal::Forbidden(_))
        ));
        let other = Signer::from_seed("other.example/log", [1; 32]).unwrap();
        let cp = Checkpoint {
            origin: "other.example/log".into(),
            size: 1,
            root: merkle::leaf_hash(b"a"),
            extensions: vec![],
        }
        .sign(&[&other])
        .unwrap()
        .to_string();
        assert!(matches!(
            w.add_checkpoint(request_body(0, &[], &cp).as_bytes(), 1),
            Err(Refusal::UnknownLog(_))
        ));
        let mut good = Log::new(Signer::from_seed(ORIGIN, [1; 32]).unwrap());
        good.add("a");
        let cp = good.checkpoint();
        for bad in [
            format!("old x\n\n{cp}"),
            format!("old 2\n\n{cp}"),
            format!("old 0\n{cp}"),
            format!("old 0\nnot-base64\n\n{cp}"),
            format!("new 0\n\n{cp}"),
            "old 0\n\n".to_owned(),
            format!(
                "old 0\n{}\n{cp}",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)
            ),
            format!("old 0\n{}\n{cp}", merkle::empty_root().to_base64()),
        ] {
            assert!(
                matches!(
                    w.add_checkpoint(bad.as_bytes(), 1),
                    Err(Refusal::BadRequest(_))
                ),
                "{bad:?}: {:?}",
                w.add_checkpoint(bad.as_bytes(), 1)
            );
        }
        // An empty tree must have the empty root.
        let wrong_empty = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: merkle::leaf_hash(b"x"),
            extensions: vec![],
        }
        .sign(&[&key])
        .unwrap()
        .to_string();
        assert!(matches!(
            w.add_checkpoint(request_body(0, &[], &wrong_empty).as_bytes(), 1),
            Err(Refusal::Inconsistent(_))
        ));
    }
}
