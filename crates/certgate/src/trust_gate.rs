//! The content-trust decision behind egress gates (`trust_policy` on an `[[egress.rule]]`): the
//! same policy, log sync, state directory and offline grace as `certgate trust verify`, kept in
//! memory so that a verdict at the end of a download costs a lookup, not a round trip.
//!
//! One background thread per distinct policy (file contents, log URL, CA files, state directory)
//! syncs the log every [`SYNC_EVERY`] and on demand; gates built by a reload share it, so a
//! reload neither loses the synced state nor starts a second sync. Every sync goes through
//! `trust verify`'s code: the checkpoint must be signed as the policy says and consistent with
//! the last one seen, and when the log cannot be reached the state synced within the policy's
//! `max_staleness_secs` is used; past that, or on any refusal, every gated download is refused
//! with the reason.
//!
//! A verdict that is not TRUSTED on a state more than [`FRESH_FOR`] old asks for a sync and
//! decides again on the new state (within [`RESYNC_WAIT`]), so an artifact signed a moment ago
//! is not refused for the gate's lag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use certgate_proxy::egress::gate::{ContentTrust, Judgement, Judging};
use certgate_trust::statement::{Digest, Statement};
use certgate_trust::{Outcome, Policy, decide};
use sha2::Digest as _;

use crate::cli::TrustLogAccess;

/// How often a gate's log is synced.
pub const SYNC_EVERY: Duration = Duration::from_secs(10);
/// How old a synced state may be before a refusal asks for a new sync first.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long a refusal waits for that sync.
pub const RESYNC_WAIT: Duration = Duration::from_secs(5);

/// What the sync thread last found.
#[derive(Debug)]
enum State {
    /// No sync has finished yet.
    NotYet,
    /// The log's entries (or the state synced within the policy's grace).
    Synced(Arc<Synced>),
    /// The last sync failed and no state may be used.
    Failed(String),
}

/// The log's entries with an index by subject digest.
#[derive(Debug)]
struct Synced {
    entries: Vec<Vec<u8>>,
    by_digest: HashMap<[u8; 32], Vec<usize>>,
    /// How fresh it is ("synced with the log at size N", or the grace note).
    note: String,
    at: Instant,
}

impl Synced {
    fn new(entries: Vec<Vec<u8>>, note: String, previous: Option<&Synced>) -> Self {
        // The log only grows (the sync proved consistency): index only what is new.
        let (mut by_digest, from) = match previous {
            Some(p)
                if p.entries.len() <= entries.len()
                    && p.entries.iter().zip(&entries).all(|(a, b)| a == b) =>
            {
                (p.by_digest.clone(), p.entries.len())
            }
            _ => (HashMap::new(), 0),
        };
        for (i, e) in entries.iter().enumerate().skip(from) {
            if let Ok((st, _)) = Statement::open(e) {
                by_digest
                    .entry(st.digest.0)
                    .or_insert_with(Vec::new)
                    .push(i);
            }
        }
        Self {
            entries,
            by_digest,
            note,
            at: Instant::now(),
        }
    }

    /// The decision on `digest`: every statement about it and every key revocation of a policy
    /// signer, in log order, through `trust verify`'s `decide`.
    fn decide(&self, digest: &Digest, policy: &Policy) -> certgate_trust::Verdict {
        let mut indices: Vec<usize> = self.by_digest.get(&digest.0).cloned().unwrap_or_default();
        for s in &policy.signers {
            if let Some(found) = self.by_digest.get(&Digest::of_key(&s.key).0) {
                indices.extend(found);
            }
        }
        indices.sort_unstable();
        indices.dedup();
        decide(
            indices
                .into_iter()
                .map(|i| (i as u64, self.entries[i].as_slice())),
            digest,
            policy,
        )
    }
}

/// One policy's synced state, shared by every gate (and reload) that uses it.
struct Shared {
    policy: Policy,
    access: TrustLogAccess,
    state: Mutex<State>,
    /// Bumped after every sync.
    generation: tokio::sync::watch::Sender<u64>,
    /// Wakes the sync thread early.
    wake: Mutex<std::sync::mpsc::Sender<()>>,
    /// The sync thread's end of `wake`, until [`start_syncing`] starts the thread.
    woken: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("origin", &self.policy.origin)
            .finish_non_exhaustive()
    }
}

/// The gates' shared states by key, so that a reload finds its predecessor's.
fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static R: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// A gate's decision: [`ContentTrust`] over a shared synced state.
#[derive(Clone, Debug)]
pub struct TrustGate {
    shared: Arc<Shared>,
}

impl TrustGate {
    /// The gate for the policy file `policy_path` (already read as `policy_text`), reaching the
    /// log with `ca` and keeping state in `state`. Nothing is synced until [`start_syncing`]
    /// (`certgate check` builds gates too, and must not reach out).
    pub fn new(
        policy_path: &Path,
        policy_text: &str,
        ca: Vec<PathBuf>,
        state: PathBuf,
    ) -> Result<Self, String> {
        let policy = Policy::parse(policy_text).map_err(|e| e.to_string())?;
        if policy.log_url.is_none() {
            return Err(
                "the policy names no log_url: a gate syncs the log by itself and needs one"
                    .to_owned(),
            );
        }
        let key = format!(
            "{}\n{}\n{:?}\n{}",
            hex::encode(sha2::Sha256::digest(policy_text.as_bytes())),
            policy_path.display(),
            ca,
            state.display()
        );
        let mut reg = registry().lock().map_err(|_| "gate registry poisoned")?;
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = reg.get(&key).and_then(Weak::upgrade) {
            return Ok(Self { shared });
        }
        let (wake, woken) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            policy,
            access: TrustLogAccess {
                policy: policy_path.to_owned(),
                log: None,
                ca,
                state,
            },
            state: Mutex::new(State::NotYet),
            generation: tokio::sync::watch::Sender::new(0),
            wake: Mutex::new(wake),
            woken: Mutex::new(Some(woken)),
        });
        reg.insert(key, Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    fn decide_now(&self, digest: &Digest) -> (Judgement, Option<Instant>) {
        let state = self.shared.state.lock().map(|s| match &*s {
            State::NotYet => Err("the log has not been synced yet".to_owned()),
            State::Failed(e) => Err(format!("the log cannot be used: {e}")),
            State::Synced(s) => Ok(Arc::clone(s)),
        });
        let synced = match state {
            Ok(Ok(s)) => s,
            Ok(Err(why)) => {
                return (
                    Judgement {
                        trusted: false,
                        status: Outcome::Unknown.word().to_owned(),
                        reason: why,
                    },
                    None,
                );
            }
            Err(_) => {
                return (
                    Judgement {
                        trusted: false,
                        status: Outcome::Unknown.word().to_owned(),
                        reason: "internal error: the gate's state is poisoned".to_owned(),
                    },
                    None,
                );
            }
        };
        let verdict = synced.decide(digest, &self.shared.policy);
        (
            Judgement {
                trusted: verdict.outcome == Outcome::Trusted,
                status: verdict.outcome.word().to_owned(),
                reason: format!("{} ({})", verdict.reason, synced.note),
            },
            Some(synced.at),
        )
    }
}

impl ContentTrust for TrustGate {
    fn judge(&self, digest: &[u8; 32]) -> Judging {
        let this = self.clone();
        let digest = Digest(*digest);
        Box::pin(async move {
            let (first, at) = this.decide_now(&digest);
            if first.trusted || at.is_some_and(|at| at.elapsed() < FRESH_FOR) {
                return first;
            }
            // Perhaps signed (or the log reached) since the last sync: sync now and decide again.
            let mut generation = this.shared.generation.subscribe();
            if let Ok(wake) = this.shared.wake.lock() {
                let _ = wake.send(());
            }
            let _ = tokio::time::timeout(RESYNC_WAIT, generation.changed()).await;
            this.decide_now(&digest).0
        })
    }
}

/// Starts the sync thread of every gate that has none (serve calls this after each load).
pub fn start_syncing() {
    let Ok(reg) = registry().lock() else {
        return;
    };
    for shared in reg.values().filter_map(Weak::upgrade) {
        let Some(woken) = shared.woken.lock().ok().and_then(|mut w| w.take()) else {
            continue;
        };
        let weak = Arc::downgrade(&shared);
        if let Err(e) = std::thread::Builder::new()
            .name("certgate-trust-gate".to_owned())
            .spawn(move || sync_loop(&weak, &woken))
        {
            tracing::error!(error = %e, "content trust: cannot start the log sync; gated downloads are refused");
        }
    }
}

/// Syncs until every gate of this policy is gone.
fn sync_loop(shared: &Weak<Shared>, woken: &std::sync::mpsc::Receiver<()>) {
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        let synced = crate::cmd::trust::synced_entries(&s.access, &s.policy);
        if let Ok(mut state) = s.state.lock() {
            *state = match synced {
                Ok((entries, note)) => {
                    let previous = match &*state {
                        State::Synced(p) => Some(Arc::clone(p)),
                        _ => None,
                    };
                    State::Synced(Arc::new(Synced::new(entries, note, previous.as_deref())))
                }
                Err(e) => {
                    tracing::warn!(origin = %s.policy.origin, error = %format!("{e:#}"), "content trust: the log cannot be synced; gated downloads are refused until it can");
                    State::Failed(format!("{e:#}"))
                }
            };
        }
        s.generation.send_modify(|g| *g += 1);
        drop(s);
        match woken.recv_timeout(SYNC_EVERY) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Coalesce a burst of wake-ups into one sync.
                while woken.try_recv().is_ok() {}
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
