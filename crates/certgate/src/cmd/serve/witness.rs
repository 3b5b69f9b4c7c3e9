//! Witnessing inside serve: `[witness]` answers `POST /add-checkpoint` for the logs it lists
//! (its state in files, one per log); a `[log]` with `[[log.witness]]` submits each new
//! checkpoint to its witnesses with the consistency proof from the size each last cosigned, and
//! serves the newest checkpoint that got its quorum of cosignatures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use certgate_log::LogStorage;
use certgate_log::witness::{self as protocol, Witness, WitnessState};
use certgate_tlog::note::{Note, NoteSignature, Verifiers};
use http::Method;
use sha2::{Digest as _, Sha256};

use crate::config::witness::{LogWitness, WitnessSection};
use crate::exit::{self, fail};
use crate::files;

/// How often the log looks for a new checkpoint to have witnessed.
const SUBMIT_EVERY: Duration = Duration::from_secs(1);
/// How long the other witnesses may still answer once the quorum cosigned a checkpoint.
const STRAGGLERS: Duration = Duration::from_millis(500);
/// How long one witness may take to answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The witness's state: `STATE_DIR/<hex SHA-256 of the origin>.checkpoint`, the last note it
/// cosigned for that log, replaced atomically and synced before the cosignature is sent.
#[derive(Debug)]
struct Files(PathBuf);

impl Files {
    fn path(&self, origin: &str) -> PathBuf {
        self.0.join(format!(
            "{}.checkpoint",
            hex::encode(Sha256::digest(origin))
        ))
    }
}

impl WitnessState for Files {
    fn load(&self, origin: &str) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.path(origin)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path(origin).display())),
        }
    }

    fn store(&self, origin: &str, note: &[u8]) -> Result<(), String> {
        let path = self.path(origin);
        files::write_public(&path, note).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The witness, opened once per process.
pub(super) struct RunningWitness {
    witness: Arc<Witness>,
    /// Held while the process runs: two witnesses on one state directory could each cosign a
    /// different fork.
    _lock: std::fs::File,
    /// What it was started with; a reload that changes it is refused.
    pub(super) fingerprint: String,
}

fn fingerprint(section: &WitnessSection) -> String {
    let logs: Vec<String> = section
        .logs
        .iter()
        .flat_map(|l| l.keys.0.iter().map(ToString::to_string))
        .collect();
    format!(
        "{}|{}|{}",
        section.signer.verifier(),
        section.state_dir.display(),
        logs.join(",")
    )
}

impl RunningWitness {
    pub(super) fn start(section: &WitnessSection) -> Result<Self> {
        std::fs::create_dir_all(&section.state_dir).map_err(|e| {
            fail(
                exit::CANTCREAT,
                format!(
                    "witness.state_dir: cannot create {}: {e}",
                    section.state_dir.display()
                ),
            )
        })?;
        check_writable(&section.state_dir)?;
        let lock_path = section.state_dir.join("witness.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                fail(
                    exit::CANTCREAT,
                    format!(
                        "witness.state_dir: cannot open {}: {e}",
                        lock_path.display()
                    ),
                )
            })?;
        lock.try_lock().map_err(|_| {
            fail(
                exit::TEMPFAIL,
                format!(
                    "witness.state_dir: {} is in use by another witness process; one state directory, one witness",
                    section.state_dir.display()
                ),
            )
        })?;
        let signer = certgate_tlog::note::Signer::parse(&section.signer.to_secret_text())
            .map_err(|e| fail(exit::CONFIG, format!("witness.key: {e}")))?;
        let witness = Witness::new(
            signer,
            section.logs.clone(),
            Box::new(Files(section.state_dir.clone())),
        )
        .map_err(|e| fail(exit::CONFIG, format!("witness.key: {e}")))?;
        Ok(Self {
            witness: Arc::new(witness),
            _lock: lock,
            fingerprint: fingerprint(section),
        })
    }

    pub(super) fn same_as(&self, section: &WitnessSection) -> bool {
        self.fingerprint == fingerprint(section)
    }

    /// The witness's HTTPS listener: `POST /add-checkpoint` for anyone (logs are known by their
    /// keys, not by their connections).
    pub(super) fn ingress(&self, section: &WitnessSection) -> Arc<certgate_proxy::IngressConfig> {
        let svc: Arc<dyn certgate_proxy::local::LocalService> =
            Arc::new(WitnessApi(Arc::clone(&self.witness)));
        Arc::new(certgate_proxy::IngressConfig {
            name: "witness".to_owned(),
            tls: Arc::clone(&section.tls),
            client_auth: certgate_tls::ClientAuth::None,
            trust: None,
            routes: vec![certgate_proxy::Route {
                name: "witness".to_owned(),
                host: None,
                path: "/".to_owned(),
                upstream: certgate_proxy::Upstream::Local(svc),
                access: certgate_proxy::Access::default(),
                forward: vec![],
                front: None,
                encoded_slashes: certgate_proxy::normal::EncodedSlashes::Reject,
                upgrades: vec![],
            }],
            proxy_info: certgate_pki::forward::ProxyInfo::default(),
            x_forwarded: false,
            forward_unverified: false,
            limits: certgate_proxy::Limits::default(),
            underscores: certgate_proxy::normal::Underscores::Drop,
            front_headers: Vec::new(),
            recheck_connections: false,
            require_sni: false,
        })
    }
}

/// A witness whose state cannot be written would refuse every checkpoint: refuse to start.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(".certgate-write-test");
    files::write_public(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            fail(
                exit::CANTCREAT,
                format!("witness.state_dir: cannot write {}: {e}", dir.display()),
            )
        })
}

#[derive(Debug)]
struct WitnessApi(Arc<Witness>);

impl certgate_proxy::local::LocalService for WitnessApi {
    fn max_body(&self) -> usize {
        protocol::MAX_REQUEST
    }

    fn call(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<bytes::Bytes>> + Send + '_>> {
        let witness = Arc::clone(&self.0);
        Box::pin(async move {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            // The state is written and synced before the answer: off the async threads.
            let origin_status = tokio::task::spawn_blocking(move || {
                witness.call(req, u64::try_from(now).unwrap_or(0))
            })
            .await;
            match origin_status {
                Ok(r) => {
                    metrics::counter!("certgate_witness_requests_total", "status" => r.status().as_u16().to_string()).increment(1);
                    r
                }
                Err(_) => {
                    let mut r = http::Response::new(bytes::Bytes::from_static(b"witness failed\n"));
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                }
            }
        })
    }
}

/// Where a log keeps the last checkpoint that had its quorum: `DATA_DIR/witnessed.checkpoint`.
fn witnessed_path(data_dir: &Path) -> PathBuf {
    data_dir.join("witnessed.checkpoint")
}

/// The last witnessed checkpoint a log stored, if it is the log's own (signed with its key).
pub(super) fn load_witnessed(section: &crate::config::log::LogSection) -> Option<String> {
    let bytes = std::fs::read(witnessed_path(&section.data_dir)).ok()?;
    let keys = Verifiers(vec![section.signer.verifier()]);
    certgate_tlog::checkpoint::Checkpoint::open(&bytes, &section.origin, &keys).ok()?;
    String::from_utf8(bytes).ok()
}

/// Submits every new checkpoint of the log to its witnesses until the process ends; publishes
/// the newest checkpoint with at least `quorum` valid cosignatures (and stores it in
/// `data_dir`, so a restart serves it, not an unwitnessed one).
pub(super) async fn submit_forever(
    store: Arc<dyn LogStorage>,
    service: Arc<certgate_log::LogService>,
    witnesses: Vec<LogWitness>,
    quorum: usize,
    data_dir: PathBuf,
) {
    // The size each witness last cosigned, as far as the log knows (a 409 corrects it).
    let mut known = vec![0u64; witnesses.len()];
    let mut published = None;
    loop {
        let s = Arc::clone(&store);
        let head = tokio::task::spawn_blocking(move || s.head()).await;
        let (size, text) = match head {
            Ok(Ok((size, text))) => (size, text),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "witnessing: cannot read the log's checkpoint");
                tokio::time::sleep(SUBMIT_EVERY).await;
                continue;
            }
            Err(_) => return,
        };
        if published != Some(size) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, w) in witnesses.iter().enumerate() {
                let (w, store, text, old) = (w.clone(), Arc::clone(&store), text.clone(), known[i]);
                tasks.spawn(async move { (i, submit(&w, store, old, size, &text).await) });
            }
            let mut note = match Note::parse(text.as_bytes()) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "witnessing: the log's own checkpoint does not parse");
                    return;
                }
            };
            let mut cosigned = 0;
            // Once the quorum is in, the others get a moment to add theirs; a witness slower
            // than that is asked again with the next checkpoint (its task is dropped here), so
            // one slow witness never holds back what the others already cosigned.
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                let next = match deadline {
                    None => tasks.join_next().await,
                    Some(d) => match tokio::time::timeout_at(d, tasks.join_next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    },
                };
                let Some(done) = next else { break };
                let Ok((i, outcome)) = done else { continue };
                let w = &witnesses[i];
                match outcome {
                    Ok((sigs, seen)) => {
                        known[i] = seen;
                        cosigned += 1;
                        for s in sigs {
                            note.add_signature(s);
                        }
                        metrics::counter!("certgate_log_cosignatures_total", "witness" => w.url.clone(), "result" => "ok").increment(1);
                        // Served as soon as it has its quorum, not after the slowest witness.
                        if cosigned == quorum {
                            publish(&note, &data_dir, &service).await;
                            metrics::gauge!("certgate_log_witnessed_size").set(size as f64);
                            deadline = Some(tokio::time::Instant::now() + STRAGGLERS);
                        }
                    }
                    Err((why, seen)) => {
                        // A size beyond the log's own is not believed: next time the witness is
                        // asked from 0 again and tells its size anew.
                        known[i] = seen.filter(|s| *s <= size).unwrap_or(0);
                        metrics::counter!("certgate_log_cosignatures_total", "witness" => w.url.clone(), "result" => "failed").increment(1);
                        tracing::warn!(witness = %w.url, size, error = %why, "witness did not cosign the checkpoint");
                    }
                }
            }
            // Published already when the quorum was reached; again with every cosignature.
            if cosigned > quorum {
                publish(&note, &data_dir, &service).await;
            }
            if cosigned >= quorum {
                published = Some(size);
                tracing::info!(size, cosigned, "checkpoint witnessed and published");
            } else {
                tracing::warn!(
                    size,
                    cosigned,
                    quorum,
                    "checkpoint not published: too few witnesses cosigned it; trying again"
                );
            }
        }
        tokio::time::sleep(SUBMIT_EVERY).await;
    }
}

/// Stores `note` as the last witnessed checkpoint and serves it.
async fn publish(note: &Note, data_dir: &Path, service: &certgate_log::LogService) {
    let text = note.to_string();
    let (path, stored) = (witnessed_path(data_dir), text.clone());
    match tokio::task::spawn_blocking(move || files::write_public(&path, stored.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot store the witnessed checkpoint; a restart would serve none until the next one")
        }
        Err(_) => {}
    }
    service.publish_witnessed(text);
}

/// One witness, one checkpoint: the cosignatures that verify under its key and the size it now
/// has; or why not (with the size it said it has, on a conflict).
async fn submit(
    w: &LogWitness,
    store: Arc<dyn LogStorage>,
    mut old: u64,
    size: u64,
    text: &str,
) -> Result<(Vec<NoteSignature>, u64), (String, Option<u64>)> {
    let checkpoint_text = Note::parse(text.as_bytes())
        .map(|n| n.text().to_owned())
        .map_err(|e| (e.to_string(), None))?;
    let target = format!("{}/add-checkpoint", w.url);
    // A conflict tells the witness's size; one more try from there.
    for _ in 0..2 {
        if old > size {
            return Err((
                format!(
                    "the witness has a larger tree ({old}) than the log ({size}): a fork or another log with this origin?"
                ),
                Some(old),
            ));
        }
        let s = Arc::clone(&store);
        let proof = tokio::task::spawn_blocking(move || {
            certgate_log::store::with_hashes(s.as_ref(), |r| {
                certgate_tlog::merkle::consistency_proof(old, size, r)
            })
        })
        .await
        .map_err(|e| (e.to_string(), None))?
        .map_err(|e| (e.to_string(), None))?;
        let body = protocol::request_body(old, &proof, text);
        let answer = tokio::time::timeout(
            WITNESS_TIMEOUT,
            crate::http_client::request(
                &target,
                Method::POST,
                body.into_bytes(),
                Arc::clone(&w.tls),
            ),
        )
        .await;
        let (status, body) = match answer {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err((format!("{target}: {e:#}"), None)),
            Err(_) => {
                return Err((
                    format!("{target}: no answer within {} s", WITNESS_TIMEOUT.as_secs()),
                    None,
                ));
            }
        };
        match status {
            200 => {
                let sigs = protocol::parse_cosignatures(&checkpoint_text, &body)
                    .map_err(|e| (format!("{target}: {e}"), None))?;
                // Only the witness's own, valid cosignatures go on the checkpoint.
                let keys = Verifiers(vec![w.vkey.clone()]);
                let mine: Vec<NoteSignature> = sigs
                    .into_iter()
                    .filter(|s| {
                        Note::sign(&checkpoint_text, &[]).is_ok_and(|mut n| {
                            n.add_signature(s.clone());
                            n.verify(&keys).is_ok()
                        })
                    })
                    .collect();
                if mine.is_empty() {
                    return Err((
                        format!("{target}: no valid cosignature by {}", w.vkey),
                        None,
                    ));
                }
                return Ok((mine, size));
            }
            409 => {
                let said = String::from_utf8_lossy(&body);
                old = said.trim().parse().map_err(|_| {
                    (
                        format!("{target}: 409 without a size: {}", said.trim()),
                        None,
                    )
                })?;
            }
            _ => {
                return Err((
                    format!(
                        "{target}: {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ),
                    None,
                ));
            }
        }
    }
    Err((
        format!("{target}: the witness's size kept changing"),
        Some(old),
    ))
}
