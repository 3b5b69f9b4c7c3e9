//! `certgate ca init|issue|revoke|crl`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use certgate_pki::ca::{KeyType, LeafKind, LeafRequest, Reason};

use crate::ca_store::CaDir;
use crate::cli::{CaCommand, IssueArgs, KeyTypeArg};
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
        CaCommand::Issue(args) => issue(&args)?,
        CaCommand::Revoke { dir, what, reason } => {
            let reason = Reason::parse(&reason).ok_or_else(|| {
                let names: Vec<&str> = Reason::ALL.iter().map(|(n, _)| *n).collect();
                crate::exit::fail(
                    crate::exit::USAGE,
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
        }
        CaCommand::Crl { dir, out, days } => {
            let out = out.unwrap_or_else(|| dir.join("crl.pem"));
            let n = CaDir::new(&dir).crl(&out, days)?;
            println!(
                "wrote {} ({n} revoked certificate{}, valid {days} days)",
                out.display(),
                if n == 1 { "" } else { "s" }
            );
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
