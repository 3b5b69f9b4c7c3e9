//! The sequencer: one task that takes entries from any number of submitters, batches them
//! (group commit: whatever queued up while the previous batch was being committed, up to
//! `max_entries`, optionally waiting `max_wait` for more), commits each batch durably, signs one
//! checkpoint per batch, and only then answers every submitter in it with its index, the
//! checkpoint and an inclusion proof.

use std::sync::Arc;
use std::time::Duration;

use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle::{self, Hash};
use certgate_tlog::note::Signer;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::store::{LogStorage, with_hashes};

/// Batching bounds.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Entries per batch at most.
    pub max_entries: usize,
    /// How long a batch waits for more entries after taking what was queued (0: not at all).
    pub max_wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_entries: 1024,
            max_wait: Duration::ZERO,
        }
    }
}

/// An appended entry, durable.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Its index.
    pub index: u64,
    /// Whether it was already in the log (same bytes, same index).
    pub duplicate: bool,
    /// The signed checkpoint it is proven against.
    pub checkpoint: String,
    /// Its inclusion proof in that checkpoint's tree.
    pub proof: Vec<Hash>,
}

struct Job {
    entry: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, Arc<Error>>>,
}

/// Handle to the sequencer task.
#[derive(Clone, Debug)]
pub struct Sequencer {
    tx: mpsc::Sender<Job>,
}

impl Sequencer {
    /// Starts the sequencer over `store`, signing with `signer`.
    pub fn start(store: Arc<dyn LogStorage>, signer: Arc<Signer>, limits: BatchLimits) -> Self {
        let (tx, rx) = mpsc::channel(limits.max_entries.max(1) * 4);
        tokio::spawn(run(store, signer, limits, rx));
        Self { tx }
    }

    /// Appends `entry` and waits until it is durable.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Appended, Arc<Error>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { entry, reply })
            .await
            .map_err(|_| Arc::new(Error::Closed))?;
        rx.await.map_err(|_| Arc::new(Error::Closed))?
    }
}

async fn run(
    store: Arc<dyn LogStorage>,
    signer: Arc<Signer>,
    limits: BatchLimits,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        // Group commit: everything queued while the previous batch was committing goes into
        // this one; then, if asked, wait up to `max_wait` for more.
        let mut jobs = vec![first];
        while jobs.len() < limits.max_entries {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let deadline = tokio::time::Instant::now() + limits.max_wait;
        while jobs.len() < limits.max_entries && !limits.max_wait.is_zero() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) | Err(_) => break,
            }
        }
        let entries: Vec<Vec<u8>> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.entry))
            .collect();
        let (store2, signer2) = (Arc::clone(&store), Arc::clone(&signer));
        let result =
            tokio::task::spawn_blocking(move || commit(store2.as_ref(), &signer2, &entries))
                .await
                .unwrap_or_else(|e| Err(Error::Storage(format!("the sequencer task failed: {e}"))));
        match result {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = jobs.len(), "log batch failed; nothing was appended");
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

/// How many times a batch is recomputed after another writer moved the log.
const MAX_CONFLICTS: u32 = 64;

fn commit(
    store: &dyn LogStorage,
    signer: &Signer,
    entries: &[Vec<u8>],
) -> Result<Vec<Appended>, Error> {
    let origin = store.origin().to_owned();
    // Another process serving the same database may have appended since the head was read:
    // the compare-and-swap refuses the batch, which is computed again on the new size.
    let mut attempts = 0;
    let committed = loop {
        let (size, _) = store.head()?;
        match store.append_batch(size, entries, &mut |size, root| {
            let cp = Checkpoint {
                origin: origin.clone(),
                size,
                root,
                extensions: vec![],
            };
            Ok(cp.sign(&[signer])?.to_string())
        }) {
            Err(Error::Conflict { .. }) if attempts < MAX_CONFLICTS => attempts += 1,
            other => break other?,
        }
    };
    let new_size = committed.size;
    with_hashes(store, |r| {
        committed
            .indexes
            .iter()
            .map(|&(index, duplicate)| {
                Ok(Appended {
                    index,
                    duplicate,
                    checkpoint: committed.checkpoint.clone(),
                    proof: merkle::inclusion_proof(index, new_size, r)?,
                })
            })
            .collect()
    })
}
