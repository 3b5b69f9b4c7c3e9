//! `certgate ca init|issue|revoke|renew|crl|audit`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use certgate_pki::ca::{KeyType, LeafKind, LeafRequest, Reason};
use certgate_pki::{Origin, credential};
use certgate_tlog::checkpoint::Policy;
use certgate_trust::statement::Digest;

use crate::ca_record::{Action, Record};
use crate::ca_store::{CaDir, Entry, same_serial};
use crate::cli::{CaCommand, IssueArgs, KeyTypeArg};
use crate::exit::{self, fail};
use crate::files;

pub fn key_type(arg: KeyTypeArg) -> KeyType {
    match arg {
        KeyTypeArg::EcdsaP256 => KeyType::EcdsaP256,
        KeyTypeArg::Ed25519 => KeyType::Ed25519,
        KeyTypeArg::Rsa3072 => KeyType::Rsa3072,
    }
}

pub fn run(cmd: CaCommand) -> Result<ExitCode> {
    match cmd {
        CaCommand::Init {
            dir,
            name,
            days,
            key_type: kt,
        } => {
            let ca = CaDir::new(&dir);
            let id = ca.init(&name, days, key_type(kt))?;
            println!("created CA `{}` in {}", id.subject, dir.display());
            println!("  certificate: {}", ca.ca_cert_path().display());
            println!(
                "  key:         {} (mode 0600)",
                dir.join("ca.key").display()
            );
            println!("  valid until: {}", id.not_after.date());
            println!("  sha256:      {}", id.cert_sha256);
            println!(
                "  CRL:         {} (empty, valid 30 days; `[ca] dir` in a serve config keeps it signed)",
                dir.join("crl.pem").display()
            );
            println!(
                "next: certgate ca issue --dir {} --client alice",
                dir.display()
            );
        }
        CaCommand::Issue(args) => {
            issue(&args)?;
            return send_records(&args.dir);
        }
        CaCommand::Revoke { dir, what, reason } => {
            let reason = Reason::parse(&reason).ok_or_else(|| {
                let names: Vec<&str> = Reason::ALL.iter().map(|(n, _)| *n).collect();
                fail(
                    exit::USAGE,
                    format!(
                        "unknown revocation reason `{reason}`; use one of: {}",
                        names.join(", ")
                    ),
                )
            })?;
            let entry = CaDir::new(&dir).revoke(&what, reason)?;
            println!(
                "revoked serial {} ({}), reason {}",
                entry.serial,
                entry.subject,
                reason.name()
            );
            println!("publish it with: certgate ca crl --dir {}", dir.display());
            return send_records(&dir);
        }
        CaCommand::Renew {
            dir,
            cert,
            key,
            days,
            new_key,
        } => {
            let key = key.unwrap_or_else(|| cert.with_extension("key"));
            let r = CaDir::new(&dir).renew(&cert, &key, days, new_key)?;
            println!(
                "renewed `{}`: serial {} (was {}), valid until {}{}",
                r.subject,
                r.serial,
                r.old_serial,
                r.not_after,
                if new_key {
                    ", with a new key"
                } else {
                    ", same key"
                }
            );
            println!("  certificate: {}", cert.display());
            if new_key {
                println!("  key:         {} (mode 0600)", key.display());
            }
            return send_records(&dir);
        }
        CaCommand::Audit {
            dir,
            log,
            ca,
            vkey,
            state,
            json,
        } => return audit(&dir, log, ca, vkey, state, json),
        CaCommand::Crl { dir, out, days } => {
            let out = out.unwrap_or_else(|| dir.join("crl.pem"));
            let n = CaDir::new(&dir).crl(&out, days)?;
            println!(
                "wrote {} ({n} revoked certificate{}, valid {days} days)",
                out.display(),
                if n == 1 { "" } else { "s" }
            );
            return send_records(&dir);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn issue(args: &IssueArgs) -> Result<()> {
    let kind = if args.server {
        LeafKind::Server
    } else {
        LeafKind::Client
    };
    let req = LeafRequest {
        kind,
        name: args.name.clone(),
        dns: args.dns.clone(),
        ip: args.ip.clone(),
        uri: args.uri.clone(),
        email: args.email.clone(),
        days: args.days,
        key_type: key_type(args.key_type),
        crl_urls: args.crl_url.clone(),
    };
    let prefix = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(safe_file_name(&args.name)));
    let p12 = if args.p12 {
        Some(match &args.password_file {
            Some(f) => Some(files::password_from_file(f)?),
            None => None,
        })
    } else {
        None
    };
    let ca = CaDir::new(&args.dir);
    let out = ca.issue(&req, &prefix, p12, args.force)?;
    println!(
        "issued {} certificate `{}` (serial {})",
        if args.server { "server" } else { "client" },
        args.name,
        out.serial
    );
    println!("  certificate: {}", out.cert.display());
    println!("  key:         {} (mode 0600)", out.key.display());
    if let Some((p12, pass)) = &out.p12 {
        println!("  pkcs12:      {} (mode 0600)", p12.display());
        if args.password_file.is_none() {
            println!("  p12 password: in {} (mode 0600)", pass.display());
        }
    }
    Ok(())
}

/// A file name from a certificate name: keeps letters, digits, `.`, `-`, `_`.
pub fn safe_file_name(name: &str) -> PathBuf {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(s.trim_start_matches('.'))
}

/// Sends the records waiting for the log, after a command that made one. The command's work
/// stands either way; a record the log did not take waits in `records/pending` (exit 75).
fn send_records(dir: &Path) -> Result<ExitCode> {
    let sent = CaDir::new(dir).send_records()?;
    if !sent.indexes.is_empty() {
        let list: Vec<String> = sent.indexes.iter().map(u64::to_string).collect();
        println!("on the record: log index {}", list.join(", "));
    }
    if let Some(why) = sent.failed {
        eprintln!(
            "warning: {} record{} not yet on the log ({why}); kept in {} and sent by the next certgate ca command or a serve with [ca]",
            sent.left,
            if sent.left == 1 { " is" } else { "s are" },
            dir.join("records/pending").display()
        );
        return Ok(ExitCode::from(exit::TEMPFAIL));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ca audit`: the index and the log's records, compared both ways.
fn audit(
    dir: &Path,
    log: Option<String>,
    ca_files: Vec<PathBuf>,
    vkey: Vec<String>,
    state: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let store = CaDir::new(dir);
    let ca = store.open()?;
    let paths = store.records();
    let settings = paths.load_settings()?;
    let url = log
        .or_else(|| settings.as_ref().map(|s| s.remote.url.clone()))
        .ok_or_else(|| {
            fail(
                exit::USAGE,
                format!(
                    "no log: give --log URL, or set [ca] log in `{}`",
                    paths.settings().display()
                ),
            )
        })?;
    let remote = crate::cli::LogRemote {
        url,
        ca: if ca_files.is_empty() {
            settings
                .as_ref()
                .map(|s| s.remote.ca.clone())
                .unwrap_or_default()
        } else {
            ca_files
        },
    };
    let vkey = if vkey.is_empty() {
        settings
            .as_ref()
            .map(|s| s.vkeys.clone())
            .unwrap_or_default()
    } else {
        vkey
    };
    if vkey.is_empty() {
        return Err(fail(
            exit::USAGE,
            format!(
                "the log's verifier key is needed to trust what it serves: give --vkey, or set [ca] log_vkey in `{}`",
                paths.settings().display()
            ),
        ));
    }
    let keys = crate::cmd::log::verifiers(&vkey)?;
    let origin = crate::cmd::log::origin_of(None, &keys)?;
    let policy = Policy {
        logs: keys,
        ..Policy::default()
    };
    let state = state.unwrap_or_else(|| dir.join("records").join("log-state"));
    let tls = crate::cmd::log::client_tls(&remote, None)?;
    let rt = crate::cmd::log::runtime()?;
    let synced = crate::cmd::log::sync_checkpoint(&rt, &remote, &tls, &origin, &policy, &state)?;
    let cp = synced.checkpoint;
    let entries = crate::cmd::log::fetch_entries(&rt, &remote, &tls, Vec::new(), &cp)?;
    let ca_digest = Digest::of(ca.certificate());
    let record_key = paths.verifier()?;
    let (records, forged) = crate::ca_record::records_in(&entries, &ca_digest, record_key.as_ref());
    let index = store.index()?;
    let pending = paths.pending_files()?;
    let problems = compare(dir, &index, &records, &forged, &pending);
    if json {
        let list: Vec<serde_json::Value> = records
            .iter()
            .map(|(i, r)| {
                serde_json::json!({
                    "log_index": i, "action": r.action.name(), "serial": r.serial,
                    "subject": r.subject, "names": r.names, "not_after": r.not_after,
                    "renews": r.renews, "reason": r.reason, "time": r.time,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "log": cp.origin, "size": cp.size, "records": list,
                "index_entries": index.len(), "pending": pending.len(), "problems": problems,
            })
        );
    } else {
        println!(
            "log {} at size {}: {} record{} of this CA; index: {} certificate{}",
            cp.origin,
            cp.size,
            records.len(),
            if records.len() == 1 { "" } else { "s" },
            index.len(),
            if index.len() == 1 { "" } else { "s" }
        );
        for (i, r) in &records {
            let mut extra = String::new();
            if let Some(old) = &r.renews {
                extra = format!(" (renews {old})");
            }
            if let Some(why) = &r.reason {
                extra = format!(" ({why})");
            }
            println!(
                "  {i:>8}  {:<6}  {}  {}{extra}",
                r.action.name(),
                r.serial,
                r.subject
            );
        }
        if problems.is_empty() {
            println!("the index and the log agree");
        } else {
            println!(
                "{} problem{}:",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in &problems {
                println!("  {p}");
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::DATAERR)
    })
}

/// Everything on which the index and the log's records disagree.
fn compare(
    dir: &Path,
    index: &[Entry],
    records: &[(u64, Record)],
    forged: &[(u64, String)],
    pending: &[PathBuf],
) -> Vec<String> {
    let mut problems = Vec::new();
    let waiting = |serial: &str, action: &str| {
        pending.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.contains(&format!("-{action}-")) && n.ends_with(&format!("-{serial}.note"))
            })
        })
    };
    for e in index {
        let of = |a: Action| {
            records
                .iter()
                .filter(move |(_, r)| r.action == a && same_serial(&r.serial, &e.serial))
        };
        let minted: Vec<&(u64, Record)> = of(Action::Issue).chain(of(Action::Renew)).collect();
        if minted.is_empty() {
            let mut p = format!(
                "serial {} ({}): in the index, but no issue record on the log",
                e.serial, e.subject
            );
            if waiting(&e.serial, "issue") || waiting(&e.serial, "renew") {
                p.push_str(" (its record waits in records/pending: the log has not taken it yet)");
            }
            problems.push(p);
        } else if let Some(held) = held_certificate(dir, &e.serial) {
            for (i, r) in &minted {
                if r.cert != Some(held) {
                    problems.push(format!(
                        "serial {}: the certificate in certs/{}.pem is not the one recorded at log index {i}",
                        e.serial, e.serial
                    ));
                }
            }
        }
        let revocations: Vec<&(u64, Record)> = of(Action::Revoke).collect();
        match (&e.revoked, revocations.first()) {
            (Some(_), None) => {
                let mut p = format!(
                    "serial {} ({}): revoked in the index, but no revocation record on the log",
                    e.serial, e.subject
                );
                if waiting(&e.serial, "revoke") {
                    p.push_str(" (its record waits in records/pending)");
                }
                problems.push(p);
            }
            (None, Some((i, _))) => problems.push(format!(
                "serial {} ({}): revoked on the log (index {i}), but valid in the index",
                e.serial, e.subject
            )),
            _ => {}
        }
    }
    // The CA's copies: one per index entry, no more.
    for e in index {
        if held_certificate(dir, &e.serial).is_none() {
            problems.push(format!(
                "serial {} ({}): in the index, but certs/{}.pem is missing or unreadable",
                e.serial, e.subject, e.serial
            ));
        }
    }
    if let Ok(read) = std::fs::read_dir(dir.join("certs")) {
        let mut extra: Vec<String> = read
            .filter_map(|f| f.ok())
            .filter_map(|f| {
                let name = f.file_name().to_string_lossy().into_owned();
                let serial = name.strip_suffix(".pem")?.to_owned();
                (!index.iter().any(|e| same_serial(&e.serial, &serial))).then_some(name)
            })
            .collect();
        extra.sort();
        for name in extra {
            problems.push(format!(
                "certs/{name}: a certificate copy that the index does not list"
            ));
        }
    }
    for (i, r) in records {
        if !index.iter().any(|e| same_serial(&e.serial, &r.serial)) {
            problems.push(format!(
                "log index {i}: {} of serial {} ({}), a certificate the index does not hold",
                r.action.name(),
                r.serial,
                r.subject
            ));
        }
    }
    for (i, why) in forged {
        problems.push(format!("log index {i}: {why}"));
    }
    problems
}

/// The SHA-256 of the copy the CA keeps in `certs/SERIAL.pem`, if it is there.
fn held_certificate(dir: &Path, serial: &str) -> Option<Digest> {
    let path = dir.join("certs").join(format!("{serial}.pem"));
    let bytes = std::fs::read(&path).ok()?;
    let certs = credential::parse_certificates(&bytes, &Origin::file(&path)).ok()?;
    certs.first().map(|c| Digest::of(c))
}
