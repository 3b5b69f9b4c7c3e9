//! `certgate check --config FILE`: validate a config and every file it references.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::CheckArgs;
use crate::config::{self, Config};

#[derive(Serialize)]
struct Summary<'a> {
    config: String,
    ok: bool,
    identities: Vec<IdentitySummary<'a>>,
    trusts: Vec<TrustSummary<'a>>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct IdentitySummary<'a> {
    name: &'a str,
    chain_len: usize,
    key_format: &'static str,
    identity: &'a certgate_pki::Identity,
}

#[derive(Serialize)]
struct TrustSummary<'a> {
    name: &'a str,
    cas: usize,
    crls: usize,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            if args.json {
                // Scripts get JSON either way; the exit code still says what kind of failure.
                let doc = serde_json::json!({
                    "config": args.config.display().to_string(),
                    "ok": false,
                    "errors": errors.0,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&doc).context("cannot encode JSON")?
                );
            }
            return Err(errors.into());
        }
    };
    if args.json {
        let s = summary(&cfg);
        println!(
            "{}",
            serde_json::to_string_pretty(&s).context("cannot encode JSON")?
        );
    } else {
        print!("{}", human(&cfg));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(cfg: &Config) -> Summary<'_> {
    Summary {
        config: cfg.path.display().to_string(),
        ok: true,
        identities: cfg
            .identities
            .iter()
            .map(|i| IdentitySummary {
                name: &i.name,
                chain_len: i.credential.chain.len(),
                key_format: i.credential.key.format,
                identity: &i.credential.identity,
            })
            .collect(),
        trusts: cfg
            .trusts
            .iter()
            .map(|t| TrustSummary {
                name: t.name(),
                cas: t.ca_certificates().len(),
                crls: t.crl_count(),
            })
            .collect(),
        notes: &cfg.notes,
    }
}

/// The human summary, shared with `quickstart`.
pub fn human(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}: OK\n", cfg.path.display());
    for i in &cfg.identities {
        let id = &i.credential.identity;
        let _ = writeln!(
            out,
            "  identity `{}`: {} (issuer {}), {} key ({}), chain of {}, expires {}",
            i.name,
            id.subject,
            id.issuer,
            id.key_algorithm,
            i.credential.key.format,
            i.credential.chain.len(),
            id.not_after.date()
        );
    }
    for t in &cfg.trusts {
        let _ = writeln!(
            out,
            "  trust `{}`: {} CA certificate(s), {} CRL(s)",
            t.name(),
            t.ca_certificates().len(),
            t.crl_count()
        );
    }
    for n in &cfg.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    out
}
