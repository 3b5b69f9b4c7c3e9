//! `certgate trust keygen|sign|untrust|unsupport|revoke-key|verify|status`.
//!
//! Statements are signed here, on the publisher's machine, then appended to the log over mTLS;
//! the log's tlog-proof, with the statement in its `extra` field, is the proof bundle.
//! Verification syncs the log's entries (checked against its signed, consistent checkpoint) into
//! a local state directory and decides from every statement about the subject; `--offline`
//! uses the proof bundle alone.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use certgate_pki::{Credential, Origin, credential};
use certgate_tlog::merkle::MemoryTree;
use certgate_tlog::note::Signer;
use certgate_tlog::proof::TlogProof;
use certgate_trust::statement::{Digest, Statement, Status, SubjectKind};
use certgate_trust::tree::{self, Entry};
use certgate_trust::{Outcome, Policy, Verdict, decide};
use sha2::{Digest as _, Sha256};

use crate::cli::{
    LogRemote, TrustCommand, TrustLogAccess, TrustRevokeArgs, TrustSignArgs, TrustStatusArgs,
    TrustSubject, TrustSubmit, TrustVerifyArgs,
};
use crate::cmd::log::{self as logcmd, Synced};
use crate::exit::{self, fail};
use crate::files;

pub fn run(cmd: TrustCommand) -> Result<ExitCode> {
    match cmd {
        TrustCommand::Keygen {
            name,
            out,
            password_file,
        } => keygen(&name, &out, password_file.as_deref()),
        TrustCommand::Sign(a) => sign(&a, Status::Trusted),
        TrustCommand::Untrust(a) => sign(&a, Status::Untrusted),
        TrustCommand::Unsupport(a) => sign(&a, Status::Unsupported),
        TrustCommand::RevokeKey(a) => revoke(&a),
        TrustCommand::Verify(a) => verify(&a),
        TrustCommand::Status(a) => status(&a),
    }
}

fn keygen(name: &str, out: &Path, password_file: Option<&Path>) -> Result<ExitCode> {
    let password = password_file.map(files::password_from_file).transpose()?;
    let vkey = create_key(name, out, password.as_deref())?;
    let public = pub_path(out);
    println!(
        "signing key:  {} (mode 0600; keep it secret)",
        out.display()
    );
    println!("verifier key: {vkey}");
    println!(
        "  (also in {}; put it in verifiers' policy as a [[signer]])",
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a new signing key to `out` (0600) and its verifier key to `out.pub`; returns the
/// verifier key text.
pub fn create_key(name: &str, out: &Path, password: Option<&str>) -> Result<String> {
    if out.exists() {
        return Err(fail(
            exit::CANTCREAT,
            format!("{} exists; a key is never overwritten", out.display()),
        ));
    }
    let key = Signer::generate(name).map_err(|e| fail(exit::USAGE, format!("--name: {e}")))?;
    let secret = match password {
        Some(p) => certgate_trust::keyfile::encrypt(
            &key.to_secret_text(),
            p,
            certgate_trust::keyfile::ITERATIONS,
        )
        .map_err(|e| fail(exit::USAGE, e.to_string()))?,
        None => key.to_secret_text(),
    };
    files::write_secret(out, format!("{secret}\n").as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let vkey = key.verifier().to_string();
    let public = pub_path(out);
    files::write_public(&public, format!("{vkey}\n").as_bytes())
        .with_context(|| format!("cannot write {}", public.display()))?;
    Ok(vkey)
}

fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn load_signer(path: &Path, password_file: Option<&Path>) -> Result<Signer> {
    let mut text = String::from_utf8(files::read(path)?).map_err(|_| {
        fail(
            exit::DATAERR,
            format!("{}: not a signing key", path.display()),
        )
    })?;
    if certgate_trust::keyfile::is_encrypted(&text) {
        let Some(pf) = password_file else {
            return Err(fail(
                exit::USAGE,
                format!("{} is encrypted: give --key-password-file", path.display()),
            ));
        };
        let password = files::password_from_file(pf)?;
        text = certgate_trust::keyfile::decrypt(&text, &password)
            .map_err(|e| fail(exit::DATAERR, format!("{}: {e}", path.display())))?;
    }
    Signer::parse(&text).map_err(|e| fail(exit::DATAERR, format!("{}: {e}", path.display())))
}

/// Files larger than this show progress on a terminal.
const PROGRESS_FROM: u64 = 64 << 20;

/// SHA-256 of a file, streamed; progress on stderr when it is a terminal and the file is big.
fn hash_file(path: &Path) -> Result<Digest> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", path.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = std::io::stderr().is_terminal() && len >= PROGRESS_FROM;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut shown) = (0u64, Instant::now());
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        if progress && shown.elapsed() > Duration::from_millis(200) {
            shown = Instant::now();
            eprint!("\rhashing {}: {}%", path.display(), done * 100 / len.max(1));
        }
    }
    if progress {
        eprintln!("\rhashing {}: 100%", path.display());
    }
    Ok(Digest(h.finalize().into()))
}

/// The tree digest of a directory (see `certgate_trust::tree`); symlinks are not followed.
fn hash_tree(root: &Path) -> Result<Digest> {
    let mut entries = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let read = std::fs::read_dir(&dir)
            .map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", dir.display())))?;
        for item in read {
            let item = item.map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", dir.display())))?;
            let rel_path = rel.join(item.file_name());
            let name = rel_path.to_str().ok_or_else(|| {
                fail(
                    exit::DATAERR,
                    format!("{}: not a UTF-8 path", rel_path.display()),
                )
            })?;
            let full = root.join(&rel_path);
            let meta = std::fs::symlink_metadata(&full)
                .map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", full.display())))?;
            if meta.is_symlink() {
                let target = std::fs::read_link(&full)
                    .map_err(|e| fail(exit::NOINPUT, format!("{}: {e}", full.display())))?;
                entries.push((
                    name.to_owned(),
                    Entry::Link(target.to_string_lossy().into_owned()),
                ));
            } else if meta.is_dir() {
                entries.push((name.to_owned(), Entry::Dir));
                stack.push(rel_path);
            } else if meta.is_file() {
                entries.push((name.to_owned(), Entry::File(hash_file(&full)?)));
            } else {
                return Err(fail(
                    exit::DATAERR,
                    format!("{}: neither a file, a directory nor a link", full.display()),
                ));
            }
        }
    }
    Ok(tree::digest(entries))
}

/// The subject's kind and digest.
fn subject(s: &TrustSubject) -> Result<(SubjectKind, Digest)> {
    match (&s.path, &s.digest) {
        (_, Some(d)) => Ok((
            if s.kind.as_deref() == Some("oci") {
                SubjectKind::Oci
            } else {
                SubjectKind::Digest
            },
            Digest::parse(d).map_err(|e| fail(exit::USAGE, format!("--digest: {e}")))?,
        )),
        (Some(p), None) if p.is_dir() => Ok((SubjectKind::Tree, hash_tree(p)?)),
        (Some(p), None) => Ok((SubjectKind::File, hash_file(p)?)),
        (None, None) => Err(fail(exit::USAGE, "give a PATH or --digest sha256:HEX")),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends a signed statement over mTLS and returns the proof bundle (the statement in `extra`).
fn submit(sub: &TrustSubmit, signed: &[u8]) -> Result<TlogProof> {
    let (co, ko) = (Origin::file(&sub.tls_cert), Origin::file(&sub.tls_key));
    let certs = credential::parse_certificates(&files::read(&sub.tls_cert)?, &co)?;
    let key = credential::parse_private_key(&files::read(&sub.tls_key)?, &ko, None)?;
    let identity = Credential::assemble(certs, &co, key, &ko)?;
    let remote = LogRemote {
        url: sub.log.clone(),
        ca: sub.ca.clone(),
    };
    let (mut proof, _) = logcmd::append(&remote, &identity, signed)?;
    proof.extra = Some(signed.to_vec());
    Ok(proof)
}

fn sign(args: &TrustSignArgs, status: Status) -> Result<ExitCode> {
    let key = load_signer(&args.key, args.key_password_file.as_deref())?;
    let (kind, digest) = subject(&args.subject)?;
    let v = key.verifier();
    let st = Statement {
        kind,
        digest,
        status,
        signer: v.name().to_owned(),
        signer_id: v.id(),
        time: now(),
        name: args.name.clone(),
        version: args.version.clone(),
    };
    let signed = st
        .sign(&key)
        .map_err(|e| fail(exit::USAGE, e.to_string()))?
        .to_string();
    let proof = submit(&args.submit, signed.as_bytes())?;
    let out = args
        .proof_out
        .clone()
        .unwrap_or_else(|| match &args.subject.path {
            Some(p) => {
                let mut o = p.as_os_str().to_owned();
                o.push(".tlog-proof");
                PathBuf::from(o)
            }
            None => PathBuf::from(format!(
                "{}.tlog-proof",
                digest.to_string().replace(':', "-")
            )),
        });
    files::write_public(&out, proof.to_text().as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "digest": digest.to_string(), "status": status.name(), "index": proof.index, "proof": out.display().to_string() })
        );
    } else {
        println!(
            "{} {digest}: {} (log index {})",
            kind_word(kind),
            status.name(),
            proof.index
        );
        println!("proof bundle: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_word(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::File => "file",
        SubjectKind::Tree => "tree",
        SubjectKind::Oci => "oci",
        SubjectKind::Digest => "digest",
        SubjectKind::Key => "key",
    }
}

fn revoke(args: &TrustRevokeArgs) -> Result<ExitCode> {
    let key = load_signer(&args.key, args.key_password_file.as_deref())?;
    let v = key.verifier();
    let st = Statement {
        kind: SubjectKind::Key,
        digest: Digest::of_key(&v),
        status: Status::RevokedKey,
        signer: v.name().to_owned(),
        signer_id: v.id(),
        time: now(),
        name: None,
        version: None,
    };
    let signed = st
        .sign(&key)
        .map_err(|e| fail(exit::USAGE, e.to_string()))?
        .to_string();
    let proof = submit(&args.submit, signed.as_bytes())?;
    println!("revoked {v} (log index {})", proof.index);
    Ok(ExitCode::SUCCESS)
}

fn load_policy(path: &Path) -> Result<Policy> {
    let text = String::from_utf8(files::read(path)?)
        .map_err(|_| fail(exit::CONFIG, format!("{}: not UTF-8", path.display())))?;
    Policy::parse(&text).map_err(|e| fail(exit::CONFIG, format!("{}: {e}", path.display())))
}

/// The log's entries, synced into the state directory and checked against its signed,
/// consistent checkpoint. When the log cannot be reached, the synced state is used if the
/// policy allows it to be that old.
pub(crate) fn synced_entries(
    access: &TrustLogAccess,
    policy: &Policy,
) -> Result<(Vec<Vec<u8>>, String)> {
    let url = access
        .log
        .clone()
        .or_else(|| policy.log_url.clone())
        .ok_or_else(|| fail(exit::USAGE, "no log URL: give --log or set log_url in the policy (or use --offline with a proof bundle)"))?;
    let remote = LogRemote {
        url,
        ca: access.ca.clone(),
    };
    let cache = logcmd::state_file(&access.state, &policy.origin, "entries");
    let fetched = (|| -> Result<(Vec<Vec<u8>>, String)> {
        let tls = logcmd::client_tls(&remote, None)?;
        let rt = logcmd::runtime()?;
        let Synced { checkpoint: cp, .. } = logcmd::sync_checkpoint(
            &rt,
            &remote,
            &tls,
            &policy.origin,
            &policy.log,
            &access.state,
        )?;
        let mut entries: Vec<Vec<u8>> = match std::fs::read(&cache) {
            Ok(bytes) => decode_cache(&bytes).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if entries.len() as u64 > cp.size {
            entries.clear();
        }
        let entries = logcmd::fetch_entries(&rt, &remote, &tls, entries, &cp)?;
        files::write_public(&cache, &encode_cache(&entries))
            .with_context(|| format!("cannot write {}", cache.display()))?;
        let checkpoint = logcmd::state_file(&access.state, &policy.origin, "checkpoint");
        let verified_at = logcmd::state_file(&access.state, &policy.origin, "entries-checkpoint");
        files::write_public(&verified_at, &files::read(&checkpoint)?)
            .with_context(|| format!("cannot write {}", verified_at.display()))?;
        Ok((entries, format!("synced with the log at size {}", cp.size)))
    })();
    match fetched {
        Ok(x) => Ok(x),
        Err(e) => {
            // A log outage must not block everything: use the synced state within the policy's
            // staleness bound. A refusal (fork, bad signature) is never papered over.
            let unreachable = e
                .downcast_ref::<crate::exit::Failure>()
                .is_none_or(|f| f.code == exit::TEMPFAIL);
            let age = std::fs::metadata(&cache)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok());
            match (unreachable, policy.max_staleness, age) {
                (true, Some(max), Some(age)) if age <= max => {
                    let entries = decode_cache(&files::read(&cache)?).map_err(|why| {
                        fail(exit::DATAERR, format!("{}: {why}", cache.display()))
                    })?;
                    // The synced entries must still hash to the checkpoint they were verified
                    // against when they were saved.
                    let stored =
                        logcmd::state_file(&access.state, &policy.origin, "entries-checkpoint");
                    let (cp, _, _) = policy
                        .log
                        .open(&files::read(&stored)?, &policy.origin)
                        .map_err(|why| {
                            fail(exit::DATAERR, format!("{}: {why}", stored.display()))
                        })?;
                    let mut t = MemoryTree::new();
                    for entry in &entries {
                        t.append(entry);
                    }
                    if t.size() != cp.size || t.root() != cp.root {
                        return Err(fail(
                            exit::DATAERR,
                            format!(
                                "{}: the synced entries do not match the stored checkpoint; refusing them",
                                cache.display()
                            ),
                        ));
                    }
                    eprintln!(
                        "warning: the log could not be reached ({e:#}); using the state synced {} s ago (policy allows {} s)",
                        age.as_secs(),
                        max.as_secs()
                    );
                    Ok((
                        entries,
                        format!("log unreachable; state synced {} s ago", age.as_secs()),
                    ))
                }
                _ => Err(e),
            }
        }
    }
}

/// The entries cache: u32 count, then uint16-length-prefixed entries (as in entry bundles).
fn encode_cache(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_be_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn decode_cache(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let (count, mut rest) = bytes.split_first_chunk::<4>().ok_or("truncated cache")?;
    let count = u32::from_be_bytes(*count) as usize;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<2>().ok_or("truncated cache")?;
        let len = usize::from(u16::from_be_bytes(*len));
        let body = tail.get(..len).ok_or("truncated cache")?;
        out.push(body.to_vec());
        rest = &tail[len..];
    }
    Ok(out)
}

fn report(
    verdict: &Verdict,
    digest: &Digest,
    note: &str,
    json: bool,
    force: bool,
) -> Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::json!({ "digest": digest.to_string(), "status": verdict.outcome, "reason": verdict.reason, "freshness": note, "history": verdict.history })
        );
    } else {
        println!("{} {digest}: {}", verdict.outcome.word(), verdict.reason);
        println!("({note})");
    }
    if force {
        if verdict.outcome != Outcome::Trusted {
            eprintln!(
                "!!!!!!!! FORCED: the true status is {}; exiting 0 because --force was given !!!!!!!!",
                verdict.outcome.word()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(verdict.outcome.code()))
}

fn verify(args: &TrustVerifyArgs) -> Result<ExitCode> {
    let policy = load_policy(&args.access.policy)?;
    let (_, digest) = subject(&args.subject)?;
    if args.offline {
        let path = args.proof.clone().or_else(|| {
            args.subject.path.as_ref().map(|p| {
                let mut o = p.as_os_str().to_owned();
                o.push(".tlog-proof");
                PathBuf::from(o)
            })
        });
        let path = path.ok_or_else(|| fail(exit::USAGE, "--offline needs --proof FILE"))?;
        let (verdict, size) = verify_bundle(&path, &digest, &policy)?;
        let note = format!(
            "offline: included in the log at size {size}; freshness unknown (a later statement may have changed this)"
        );
        return report(&verdict, &digest, &note, args.json, args.force);
    }
    let (verdict, note) = decide_online(&args.access, &policy, &digest)?;
    report(&verdict, &digest, &note, args.json, args.force)
}

/// Syncs the log and decides `digest` from all of its statements.
fn decide_online(
    access: &TrustLogAccess,
    policy: &Policy,
    digest: &Digest,
) -> Result<(Verdict, String)> {
    let (entries, note) = synced_entries(access, policy)?;
    let indexed = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e.as_slice()));
    Ok((decide(indexed, digest, policy), note))
}

/// Verifies a proof bundle file (see `certgate_trust::bundle`).
fn verify_bundle(path: &Path, digest: &Digest, policy: &Policy) -> Result<(Verdict, u64)> {
    let bytes = files::read(path)?;
    certgate_trust::bundle::verify(&bytes, digest, policy)
        .map_err(|e| fail(exit::DATAERR, format!("{}: {e}", path.display())))
}

fn status(args: &TrustStatusArgs) -> Result<ExitCode> {
    let policy = load_policy(&args.access.policy)?;
    let (_, digest) = subject(&args.subject)?;
    let (verdict, note) = decide_online(&args.access, &policy, &digest)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{digest}: {} ({note})", verdict.outcome.word())?;
    if verdict.history.is_empty() {
        writeln!(out, "  no statements")?;
    }
    for f in &verdict.history {
        let when = time::OffsetDateTime::from_unix_timestamp(f.time as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| f.time.to_string());
        let what = [f.name.as_deref(), f.version.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let counted = match &f.counted {
            Ok(()) => String::new(),
            Err(why) => format!("  (ignored: {why})"),
        };
        writeln!(
            out,
            "  #{} {when} {} {} {what}{counted}",
            f.index, f.signer, f.status
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
