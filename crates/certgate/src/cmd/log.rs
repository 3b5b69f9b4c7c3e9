//! `certgate log init|witness-key|migrate|add|checkpoint|verify-note|prove`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
pub(crate) use certgate_log::client::Synced;
use certgate_log::client::{self, ClientIo, SyncError};
use certgate_pki::{Credential, Origin, credential};
use certgate_tlog::checkpoint::{Checkpoint, Policy};
use certgate_tlog::merkle::{self, HashReader as _};
use certgate_tlog::note::{Note, Signer, Verifier, Verifiers};
use certgate_tlog::proof::TlogProof;
use http::Method;

use crate::cli::{LogAddArgs, LogCheckpointArgs, LogCommand, LogProveArgs, LogRemote};
use crate::exit::{self, fail};
use crate::files;

pub fn run(cmd: LogCommand) -> Result<ExitCode> {
    match cmd {
        LogCommand::Init { origin, dir } => init(&origin, &dir),
        LogCommand::WitnessKey { name, out } => witness_key(&name, &out),
        LogCommand::Migrate { from, to } => migrate(&from, &to),
        LogCommand::Add(args) => add(&args),
        LogCommand::Checkpoint(args) => checkpoint(&args),
        LogCommand::VerifyNote { vkey, file } => verify_note(&vkey, &file),
        LogCommand::Prove(args) => prove(&args),
    }
}

fn init(origin: &str, dir: &Path) -> Result<ExitCode> {
    let vkey = create(origin, dir)?;
    let key_path = dir.join("log.key");
    println!("created log `{origin}` in {}", dir.display());
    println!(
        "  signing key:  {} (mode 0600; keep it secret)",
        key_path.display()
    );
    println!("  verifier key: {vkey}");
    println!("  (also in {})", dir.join("log.vkey").display());
    println!(
        "next: add a [log] section with data_dir = \"{}\" and run certgate serve",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn witness_key(name: &str, out: &Path) -> Result<ExitCode> {
    if out.exists() {
        return Err(fail(
            exit::CANTCREAT,
            format!("{} exists; a key is never overwritten", out.display()),
        ));
    }
    let mut seed = [0u8; 32];
    certgate_pki::ca::random_bytes(&mut seed)?;
    let key = Signer::witness(name, seed).map_err(|e| fail(exit::USAGE, format!("--name: {e}")))?;
    files::write_secret(out, format!("{}\n", key.to_secret_text()).as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let vkey = key.verifier().to_string();
    let mut public = out.as_os_str().to_owned();
    public.push(".vkey");
    let public = PathBuf::from(public);
    files::write_public(&public, format!("{vkey}\n").as_bytes())
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "witness key:  {} (mode 0600; keep it secret)",
        out.display()
    );
    println!("verifier key: {vkey}");
    println!("  (also in {})", public.display());
    Ok(ExitCode::SUCCESS)
}

fn migrate(from: &Path, to: &str) -> Result<ExitCode> {
    use certgate_log::LogStorage as _;
    let store = certgate_log::Store::open(&from.join("log.redb")).map_err(|e| {
        fail(
            exit::TEMPFAIL,
            format!("--from: {e} (a running serve holds the log: stop it first)"),
        )
    })?;
    let key_path = from.join("log.key");
    let signer = Signer::parse(
        &String::from_utf8(files::read(&key_path)?)
            .map_err(|_| fail(exit::DATAERR, format!("{}: not UTF-8", key_path.display())))?,
    )
    .map_err(|e| fail(exit::DATAERR, format!("{}: {e}", key_path.display())))?;
    let origin = store.origin().to_owned();
    let (size, checkpoint) = store
        .head()
        .map_err(|e| fail(exit::DATAERR, format!("--from: {e}")))?;
    let keys = Verifiers(vec![signer.verifier()]);
    let (cp, _) = Checkpoint::open(checkpoint.as_bytes(), &origin, &keys).map_err(|e| {
        fail(
            exit::DATAERR,
            format!("--from: the stored checkpoint does not verify with log.key: {e}"),
        )
    })?;
    let entries = store
        .entries(0, size)
        .map_err(|e| fail(exit::DATAERR, format!("--from: {e}")))?;
    drop(store);
    let empty = Checkpoint {
        origin: origin.clone(),
        size: 0,
        root: merkle::empty_root(),
        extensions: vec![],
    }
    .sign(&[&signer])?
    .to_string();
    let pg = certgate_log::PgStore::open_or_create(to, None, &origin, &empty)
        .map_err(|e| fail(exit::TEMPFAIL, format!("--to: {e}")))?;
    let done = pg
        .import(entries, &checkpoint)
        .map_err(|e| fail(exit::DATAERR, format!("--to: {e}")))?;
    // Proven, not assumed: everything read back from the database.
    pg.verify_all(size, &cp.root)
        .map_err(|e| fail(exit::DATAERR, format!("--to: the copy does not match: {e}")))?;
    let (pg_size, pg_checkpoint) = certgate_log::LogStorage::head(&pg)
        .map_err(|e| fail(exit::DATAERR, format!("--to: {e}")))?;
    if pg_size != size || pg_checkpoint != checkpoint {
        return Err(fail(
            exit::DATAERR,
            format!(
                "--to: the database's tree head (size {pg_size}) is not the embedded log's (size {size})"
            ),
        ));
    }
    println!(
        "{} {origin}: {size} entries; root {} and the signed checkpoint are identical in the database",
        match done {
            certgate_log::Imported::Copied => "copied",
            certgate_log::Imported::AlreadyThere => "checked",
        },
        cp.root
    );
    println!("next: set storage = \"postgres\" and postgres_url in [log], then start serve");
    Ok(ExitCode::SUCCESS)
}

/// Creates a log in `dir`: signing key (0600), verifier key, store with the signed empty tree.
/// Returns the verifier key text.
pub fn create(origin: &str, dir: &Path) -> Result<String> {
    let store_path = dir.join("log.redb");
    let key_path = dir.join("log.key");
    if store_path.exists() || key_path.exists() {
        return Err(fail(
            exit::CANTCREAT,
            format!(
                "{} already holds a log; a log is created once (its key and history cannot be replaced)",
                dir.display()
            ),
        ));
    }
    let signer =
        Signer::generate(origin).map_err(|e| fail(exit::USAGE, format!("--origin: {e}")))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    files::write_secret(
        &key_path,
        format!("{}\n", signer.to_secret_text()).as_bytes(),
    )
    .with_context(|| format!("cannot write {}", key_path.display()))?;
    let vkey = signer.verifier().to_string();
    files::write_public(&dir.join("log.vkey"), format!("{vkey}\n").as_bytes())
        .with_context(|| format!("cannot write {}", dir.join("log.vkey").display()))?;
    let empty = Checkpoint {
        origin: origin.to_owned(),
        size: 0,
        root: merkle::empty_root(),
        extensions: vec![],
    };
    let note = empty.sign(&[&signer])?.to_string();
    certgate_log::Store::create(&store_path, origin, &note)?;
    Ok(vkey)
}

/// `--vkey` values: key text, or a file that holds key text (one per line).
pub(crate) fn verifiers(args: &[String]) -> Result<Verifiers> {
    let mut out = Vec::new();
    for a in args {
        match Verifier::parse(a) {
            Ok(v) => out.push(v),
            Err(parse_err) => {
                let path = Path::new(a);
                if !path.exists() {
                    return Err(fail(exit::USAGE, format!("--vkey `{a}`: {parse_err}")));
                }
                let text = String::from_utf8(files::read(path)?)
                    .map_err(|_| fail(exit::DATAERR, format!("{a}: not UTF-8")))?;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    out.push(
                        Verifier::parse(line)
                            .map_err(|e| fail(exit::DATAERR, format!("{a}: {e}")))?,
                    );
                }
            }
        }
    }
    Ok(Verifiers(out))
}

fn verify_note(vkeys: &[String], file: &Path) -> Result<ExitCode> {
    let keys = verifiers(vkeys)?;
    let bytes = files::read(file)?;
    let note =
        Note::parse(&bytes).map_err(|e| fail(exit::DATAERR, format!("{}: {e}", file.display())))?;
    let ok = note
        .verify(&keys)
        .map_err(|e| fail(exit::DATAERR, format!("{}: {e}", file.display())))?;
    for v in ok {
        println!("verified: signed by {}+{:08x}", v.name(), v.id());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn client_tls(
    remote: &LogRemote,
    identity: Option<&Credential>,
) -> Result<Arc<rustls::ClientConfig>> {
    if remote.ca.is_empty() {
        return Err(fail(
            exit::USAGE,
            format!(
                "{}: --ca FILE is needed: the CA that issued the log's server certificate",
                remote.url
            ),
        ));
    }
    let bundle = crate::cmd::inspect::load_bundle(&remote.ca, &[])?;
    Ok(Arc::new(certgate_tls::upstream_client_config(
        &bundle, identity,
    )?))
}

pub(crate) fn url(remote: &LogRemote, path: &str) -> String {
    format!("{}/{path}", remote.url.trim_end_matches('/'))
}

/// Appends `entry` to the log as the writer `identity`; returns the log's tlog-proof and its
/// checkpoint, after checking that the proof really puts the entry in that tree.
pub(crate) fn append(
    remote: &LogRemote,
    identity: &Credential,
    entry: &[u8],
) -> Result<(TlogProof, Checkpoint)> {
    let tls = client_tls(remote, Some(identity))?;
    let target = url(remote, "add");
    let (status, body) = runtime()?.block_on(crate::http_client::request(
        &target,
        Method::POST,
        entry.to_vec(),
        tls,
    ))?;
    if status != 200 {
        return Err(fail(
            exit::for_http_status(status),
            format!(
                "{target}: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        ));
    }
    let proof = TlogProof::parse(&body).map_err(|e| {
        fail(
            exit::DATAERR,
            format!("{target}: the answer is not a tlog-proof: {e}"),
        )
    })?;
    let cp = Checkpoint::parse(proof.checkpoint.text())
        .map_err(|e| fail(exit::DATAERR, format!("{target}: {e}")))?;
    merkle::verify_inclusion(
        proof.index,
        cp.size,
        &merkle::leaf_hash(entry),
        &proof.proof,
        &cp.root,
    )
    .map_err(|e| {
        fail(
            exit::DATAERR,
            format!("{target}: the log's proof does not verify: {e}"),
        )
    })?;
    Ok((proof, cp))
}

fn add(args: &LogAddArgs) -> Result<ExitCode> {
    let password = args
        .password_file
        .as_deref()
        .map(files::password_from_file)
        .transpose()?;
    let cert_bytes = files::read(&args.cert)?;
    let key_bytes = files::read(&args.key)?;
    let (co, ko) = (Origin::file(&args.cert), Origin::file(&args.key));
    let certs = credential::parse_certificates(&cert_bytes, &co)?;
    let key = credential::parse_private_key(&key_bytes, &ko, password.as_deref())?;
    let identity = Credential::assemble(certs, &co, key, &ko)?;
    let entry = files::read(&args.file)?;
    if entry.len() > certgate_tlog::tile::MAX_ENTRY {
        return Err(fail(
            exit::DATAERR,
            format!(
                "{}: {} bytes; a log entry is at most {}",
                args.file.display(),
                entry.len(),
                certgate_tlog::tile::MAX_ENTRY
            ),
        ));
    }
    let (proof, cp) = append(&args.remote, &identity, &entry)?;
    let out = args.proof_out.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".tlog-proof");
        PathBuf::from(p)
    });
    files::write_public(&out, proof.to_text().as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "index": proof.index, "tree_size": cp.size, "origin": cp.origin, "proof": out.display().to_string() })
        );
    } else {
        println!(
            "appended at index {} (tree size {}, log {})",
            proof.index, cp.size, cp.origin
        );
        println!("proof: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The log client's I/O for the CLI: HTTPS to the log, state files in a directory.
pub(crate) struct HttpLog<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub remote: &'a LogRemote,
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Where the verifier's state for `origin` lives (`None`: nothing is stored).
    pub state: Option<(&'a Path, &'a str)>,
}

impl ClientIo for HttpLog<'_> {
    fn fetch(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let target = url(self.remote, path);
        match self.rt.block_on(crate::http_client::request(
            &target,
            Method::GET,
            Vec::new(),
            Arc::clone(self.tls),
        )) {
            Ok((200, body)) => Ok(body.to_vec()),
            Ok((status, _)) => Err(format!("{target}: {status}")),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    fn load(&mut self, what: &str) -> Result<Option<Vec<u8>>, String> {
        let Some((dir, origin)) = self.state else {
            return Ok(None);
        };
        let file = state_file(dir, origin, what);
        if !file.exists() {
            return Ok(None);
        }
        files::read(&file).map(Some).map_err(|e| format!("{e:#}"))
    }

    fn store(&mut self, what: &str, bytes: &[u8]) -> Result<(), String> {
        let Some((dir, origin)) = self.state else {
            return Err("no state directory".to_owned());
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let file = state_file(dir, origin, what);
        files::write_public(&file, bytes)
            .map_err(|e| format!("cannot write {}: {e:#}", file.display()))
    }
}

/// A client failure as a command failure with its exit code.
fn sync_failed(e: SyncError) -> anyhow::Error {
    let code = match &e {
        SyncError::Unreachable(_) => exit::TEMPFAIL,
        SyncError::Invalid(_) | SyncError::Inconsistent { .. } => exit::DATAERR,
        SyncError::State(_) => exit::CANTCREAT,
    };
    fail(code, e.to_string())
}

/// Fetches the log's checkpoint, verifies it under `policy` and its consistency with the one
/// stored for `origin` in `state_dir`, and stores it (see `certgate_log::client`).
pub(crate) fn sync_checkpoint(
    rt: &tokio::runtime::Runtime,
    remote: &LogRemote,
    tls: &Arc<rustls::ClientConfig>,
    origin: &str,
    policy: &Policy,
    state_dir: &Path,
) -> Result<Synced> {
    let mut io = HttpLog {
        rt,
        remote,
        tls,
        state: Some((state_dir, origin)),
    };
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    client::sync_checkpoint(&mut io, origin, policy, stamp).map_err(|e| match e {
        // Name the evidence by its file.
        SyncError::Inconsistent {
            origin,
            stored,
            fetched,
            why,
            evidence_stored,
            evidence_fetched,
        } => sync_failed(SyncError::Inconsistent {
            evidence_stored: state_file(state_dir, &origin, &evidence_stored)
                .display()
                .to_string(),
            evidence_fetched: state_file(state_dir, &origin, &evidence_fetched)
                .display()
                .to_string(),
            origin,
            stored,
            fetched,
            why,
        }),
        e => sync_failed(e),
    })
}

pub(crate) fn origin_of(origin: Option<&String>, keys: &Verifiers) -> Result<String> {
    match origin {
        Some(o) => Ok(o.clone()),
        None => keys
            .0
            .first()
            .map(|k| k.name().to_owned())
            .ok_or_else(|| fail(exit::USAGE, "--vkey: no key given")),
    }
}

fn state_name(origin: &str) -> String {
    origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The state file of `origin` under `state_dir`.
pub(crate) fn state_file(state_dir: &Path, origin: &str, what: &str) -> PathBuf {
    state_dir.join(format!("{}.{what}", state_name(origin)))
}

fn checkpoint(args: &LogCheckpointArgs) -> Result<ExitCode> {
    let keys = verifiers(&args.vkey)?;
    let origin = origin_of(args.origin.as_ref(), &keys)?;
    let witnesses = verifiers(&args.witness)?;
    let policy = Policy {
        logs: keys,
        quorum: args.quorum.unwrap_or(witnesses.0.len()),
        witnesses,
    };
    let remote = LogRemote {
        url: args.url.clone(),
        ca: args.ca.clone(),
    };
    let tls = client_tls(&remote, None)?;
    let rt = runtime()?;
    let Synced {
        checkpoint: new,
        previous_size,
        verdict,
        ..
    } = sync_checkpoint(&rt, &remote, &tls, &origin, &policy, &args.state)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "origin": new.origin, "size": new.size, "root": new.root.to_base64(), "previous_size": previous_size, "verdict": verdict })
        );
    } else {
        println!("{}: size {}, root {}", new.origin, new.size, new.root);
        println!("{verdict}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prove(args: &LogProveArgs) -> Result<ExitCode> {
    let keys = verifiers(&args.vkey)?;
    let origin = origin_of(args.origin.as_ref(), &keys)?;
    let policy = Policy {
        logs: keys,
        ..Policy::default()
    };
    let tls = client_tls(&args.remote, None)?;
    let rt = runtime()?;
    let mut io = HttpLog {
        rt: &rt,
        remote: &args.remote,
        tls: &tls,
        state: None,
    };
    let (cp, note) = client::fetch_checkpoint(&mut io, &origin, &policy).map_err(sync_failed)?;
    let reader = client::tiles(&mut io, cp.size);
    let bad = |e: certgate_tlog::Error| fail(exit::DATAERR, e.to_string());
    match (args.index, &args.consistency) {
        (Some(index), _) => {
            if index >= cp.size {
                return Err(fail(
                    exit::USAGE,
                    format!("index {index} is not in the log (size {})", cp.size),
                ));
            }
            let proof = merkle::inclusion_proof(index, cp.size, &reader).map_err(bad)?;
            let leaf = reader.hash(0, index).map_err(bad)?;
            merkle::verify_inclusion(index, cp.size, &leaf, &proof, &cp.root).map_err(bad)?;
            let out = TlogProof {
                extra: None,
                index,
                proof,
                checkpoint: note,
            };
            print!("{}", out.to_text());
        }
        (None, Some(sizes)) => {
            let (old, new) = (sizes[0], sizes[1]);
            if old > new || new > cp.size {
                return Err(fail(
                    exit::USAGE,
                    format!(
                        "--consistency {old} {new}: need OLD <= NEW <= {} (the log's size)",
                        cp.size
                    ),
                ));
            }
            let proof = merkle::consistency_proof(old, new, &reader).map_err(bad)?;
            let (old_root, new_root) = (
                merkle::tree_hash(old, &reader).map_err(bad)?,
                merkle::tree_hash(new, &reader).map_err(bad)?,
            );
            merkle::verify_consistency(old, new, &old_root, &new_root, &proof).map_err(bad)?;
            println!("old {old} {old_root}");
            println!("new {new} {new_root}");
            for h in proof {
                println!("{h}");
            }
        }
        (None, None) => {
            return Err(fail(exit::USAGE, "give --index N or --consistency OLD NEW"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every entry of the log up to the checkpoint `cp` (already verified), read from its entry
/// bundles after the `known` entries a caller kept from before; the whole list must hash to the
/// checkpoint's root, or nothing is returned.
pub(crate) fn fetch_entries(
    rt: &tokio::runtime::Runtime,
    remote: &LogRemote,
    tls: &Arc<rustls::ClientConfig>,
    mut entries: Vec<Vec<u8>>,
    cp: &Checkpoint,
) -> Result<Vec<Vec<u8>>> {
    use certgate_tlog::tile::{self, Tile};
    if entries.len() as u64 > cp.size {
        entries.clear();
    }
    let mut n = entries.len() as u64 / tile::WIDTH;
    while n * tile::WIDTH < cp.size {
        let width = u16::try_from((cp.size - n * tile::WIDTH).min(tile::WIDTH)).unwrap_or(0);
        let t = Tile {
            level: None,
            index: n,
            width,
        };
        let target = url(remote, &t.path());
        let (code, body) = rt.block_on(crate::http_client::request(
            &target,
            Method::GET,
            Vec::new(),
            Arc::clone(tls),
        ))?;
        if code != 200 {
            return Err(fail(
                exit::for_http_status(code),
                format!("{target}: {code}"),
            ));
        }
        let bundle =
            tile::parse_bundle(&body).map_err(|e| fail(exit::DATAERR, format!("{target}: {e}")))?;
        let skip = (entries.len() as u64).saturating_sub(n * tile::WIDTH) as usize;
        entries.extend(bundle.iter().skip(skip).map(|e| e.to_vec()));
        n += 1;
    }
    // Every entry, old and new, must hash to the signed root.
    let mut t = certgate_tlog::merkle::MemoryTree::new();
    for e in &entries {
        t.append(e);
    }
    if t.size() != cp.size || t.root() != cp.root {
        return Err(fail(
            exit::DATAERR,
            format!(
                "{}: the log's entries do not match its signed checkpoint (size {}): refusing them",
                cp.origin, cp.size
            ),
        ));
    }
    Ok(entries)
}
