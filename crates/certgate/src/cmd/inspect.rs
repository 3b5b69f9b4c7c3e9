//! `certgate inspect FILE... [--ca FILE [--crl FILE] [--purpose client|server]] [--json]`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use certgate_pki::forwarded::{self, InputFormat};
use certgate_pki::inspect::{self, Item, KeyInfo};
use certgate_pki::verify::{self, UnknownRevocation};
use certgate_pki::{Identity, Origin, Purpose, TrustBundle, Verdict, credential};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;

use crate::cli::{InspectArgs, PurposeArg};
use crate::{exit, files};

#[derive(Serialize)]
struct FileReport {
    path: String,
    items: Vec<Item>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<VerificationReport>,
}

#[derive(Serialize)]
struct VerificationReport {
    purpose: Purpose,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<certgate_pki::VerifiedChain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<certgate_pki::Rejection>,
}

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let password = match (&args.password_file, &args.password_env) {
        (Some(f), _) => Some(files::password_from_file(f)?),
        (None, Some(v)) => Some(files::password_from_env(v)?),
        (None, None) => None,
    };
    let bundle = if args.ca.is_empty() {
        None
    } else {
        Some(load_bundle(&args.ca, &args.crl)?)
    };
    let purpose = match args.purpose {
        PurposeArg::Client => Purpose::Client,
        PurposeArg::Server => Purpose::Server,
    };
    let mut reports = Vec::new();
    let mut rejected = false;
    let mut inputs: Vec<(String, Origin, Vec<Item>)> = Vec::new();
    if let Some(header) = &args.header {
        inputs.push(header_items(header, args.format.as_deref())?);
    }
    for path in &args.files {
        let bytes = files::read(path)?;
        let origin = Origin::file(path);
        let items =
            inspect::inspect(&bytes, &origin, password.as_deref()).map_err(|e| match e {
                certgate_pki::Error::PasswordRequired { .. } => exit::fail(
                    exit::USAGE,
                    format!("{e}: give it with --password-file FILE or --password-env VAR"),
                ),
                other => other.into(),
            })?;
        inputs.push((path.display().to_string(), origin, items));
    }
    for (name, origin, items) in inputs {
        let verification = match &bundle {
            Some(b) => {
                let chain = chain_of(&items, &origin);
                if chain.is_empty() {
                    return Err(exit::fail(
                        exit::DATAERR,
                        format!("{origin}: holds no certificate to verify"),
                    ));
                }
                let verdict = b.verify(&chain, purpose, UnixTime::now());
                rejected |= verdict.verified().is_none();
                Some(match verdict {
                    Verdict::Verified(v) => VerificationReport {
                        purpose,
                        verified: true,
                        chain: Some(v),
                        rejection: None,
                    },
                    Verdict::Rejected(r) => VerificationReport {
                        purpose,
                        verified: false,
                        chain: None,
                        rejection: Some(r),
                    },
                })
            }
            None => None,
        };
        reports.push(FileReport {
            path: name,
            items,
            verification,
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).context("cannot encode JSON")?
        );
    } else {
        for r in &reports {
            print!("{}", human(r));
        }
    }
    Ok(if rejected {
        ExitCode::from(exit::REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Decodes `Name: value` in the given or guessed format into certificate items.
fn header_items(header: &str, format: Option<&str>) -> Result<(String, Origin, Vec<Item>)> {
    let usage = |m: String| exit::fail(exit::USAGE, m);
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| usage(format!("--header takes `Name: value`, got `{header}`")))?;
    let name = name.trim();
    let names: Vec<&str> = InputFormat::ALL.iter().map(|(n, _)| *n).collect();
    let format = match format {
        Some(f) => InputFormat::parse(f).ok_or_else(|| {
            usage(format!(
                "unknown format `{f}`; use one of {}",
                names.join(", ")
            ))
        })?,
        None => InputFormat::for_header(name).ok_or_else(|| {
            usage(format!(
                "cannot tell the format of header `{name}` from its name; pass --format ({})",
                names.join(", ")
            ))
        })?,
    };
    let origin = Origin::other(format!("header `{name}`"));
    let certs = forwarded::decode(format, value)
        .map_err(|e| exit::fail(exit::DATAERR, format!("{origin}: {e}")))?;
    let mut items = Vec::new();
    for (i, der) in certs.iter().enumerate() {
        let id = Identity::from_der(der).map_err(|e| {
            exit::fail(
                exit::DATAERR,
                format!(
                    "{origin}: certificate #{} is not valid X.509: {}",
                    i + 1,
                    e.0
                ),
            )
        })?;
        items.push(Item::Certificate(Box::new(id)));
    }
    Ok((format!("header {name}"), origin, items))
}

pub(crate) fn load_bundle(
    cas: &[std::path::PathBuf],
    crls: &[std::path::PathBuf],
) -> Result<TrustBundle> {
    let mut anchors = Vec::new();
    for p in cas {
        let bytes = files::read(p)?;
        anchors.extend(credential::parse_certificates(&bytes, &Origin::file(p))?);
    }
    let mut loaded = Vec::new();
    for p in crls {
        let bytes = files::read(p)?;
        loaded.push(verify::parse_crl(&bytes, &Origin::file(p))?);
    }
    Ok(TrustBundle::new(
        "--ca",
        anchors,
        loaded,
        UnknownRevocation::Allow,
    )?)
}

/// The certificates of a file as a leaf-first chain (file order when it cannot be ordered).
fn chain_of(items: &[Item], origin: &Origin) -> Vec<CertificateDer<'static>> {
    let mut ders: Vec<CertificateDer<'static>> = Vec::new();
    let mut key_spki = None;
    for item in items {
        match item {
            Item::Certificate(id) => ders.push(id_der(id)),
            Item::Pkcs12 { key, certificates } => {
                key_spki = Some(key.spki_sha256);
                ders.extend(certificates.iter().map(id_der));
            }
            Item::PrivateKey(k) => key_spki = Some(k.spki_sha256),
            _ => {}
        }
    }
    match credential::order_chain(ders.clone(), origin, key_spki) {
        Ok((chain, _)) => chain,
        Err(_) => ders,
    }
}

fn id_der(id: &Identity) -> CertificateDer<'static> {
    id.der.clone()
}

fn human(r: &FileReport) -> String {
    let mut out = String::new();
    let certs: Vec<&Identity> = r
        .items
        .iter()
        .flat_map(|i| match i {
            Item::Certificate(id) => vec![id.as_ref()],
            Item::Pkcs12 { certificates, .. } => certificates.iter().collect(),
            _ => vec![],
        })
        .collect();
    let mut cert_no = 0;
    for item in &r.items {
        match item {
            Item::Certificate(id) => {
                cert_no += 1;
                let _ = writeln!(out, "{}: certificate #{cert_no}", r.path);
                certificate(&mut out, id, "  ");
            }
            Item::PrivateKey(k) => {
                let _ = writeln!(out, "{}: private key", r.path);
                key(&mut out, k, &certs, "  ");
            }
            Item::EncryptedPrivateKey { note } => {
                let _ = writeln!(out, "{}: encrypted private key ({note})", r.path);
            }
            Item::Pkcs12 {
                key: k,
                certificates,
            } => {
                let _ = writeln!(
                    out,
                    "{}: PKCS#12 with a key and {} certificate(s)",
                    r.path,
                    certificates.len()
                );
                key(&mut out, k, &certs, "  ");
                for (i, id) in certificates.iter().enumerate() {
                    let _ = writeln!(out, "  certificate #{}", i + 1);
                    certificate(&mut out, id, "    ");
                }
            }
            Item::Crl(c) => {
                let _ = writeln!(out, "{}: CRL", r.path);
                let _ = writeln!(out, "  issuer:       {}", c.issuer);
                let _ = writeln!(out, "  this update:  {}", rfc3339(c.this_update));
                match c.next_update {
                    Some(t) => {
                        let _ = writeln!(out, "  next update:  {}", rfc3339(t));
                    }
                    None => {
                        let _ = writeln!(out, "  next update:  (none)");
                    }
                }
                if let Some(n) = &c.crl_number {
                    let _ = writeln!(out, "  CRL number:   {n}");
                }
                let _ = writeln!(out, "  revoked:      {}", c.revoked.len());
                for e in c.revoked.iter().take(50) {
                    let _ = writeln!(
                        out,
                        "    {} at {} ({})",
                        e.serial,
                        rfc3339(e.revoked_at),
                        e.reason.unwrap_or("no reason given")
                    );
                }
                if c.revoked.len() > 50 {
                    let _ = writeln!(
                        out,
                        "    ... and {} more (use --json for all)",
                        c.revoked.len() - 50
                    );
                }
            }
            Item::Csr(c) => {
                let _ = writeln!(out, "{}: certificate request", r.path);
                let _ = writeln!(out, "  subject:      {}", c.subject);
                let _ = writeln!(out, "  SANs:         {}", sans(&c.sans));
                let _ = writeln!(out, "  key:          {}", c.key_algorithm);
                let _ = writeln!(out, "  spki sha256:  {}", c.spki_sha256);
                let _ = writeln!(
                    out,
                    "  signature:    {}",
                    if c.signature_valid {
                        "valid (requester holds the key)"
                    } else {
                        "INVALID"
                    }
                );
            }
        }
    }
    if let Some(v) = &r.verification {
        match (&v.chain, &v.rejection) {
            (Some(chain), _) => {
                let _ = writeln!(
                    out,
                    "verification ({} auth): VERIFIED, chain of {} ending at `{}`",
                    v.purpose,
                    chain.chain_len(),
                    chain.anchor()
                );
            }
            (None, Some(rej)) => {
                let _ = writeln!(
                    out,
                    "verification ({} auth): REJECTED ({}): {}",
                    v.purpose,
                    rej.reason.code(),
                    rej.detail
                );
            }
            (None, None) => {}
        }
    }
    out
}

fn certificate(out: &mut String, id: &Identity, pad: &str) {
    let now = time::OffsetDateTime::now_utc();
    let days = (id.not_after - now).whole_days();
    let state = if id.not_after < now {
        "EXPIRED".to_owned()
    } else if id.not_before > now {
        "NOT YET VALID".to_owned()
    } else {
        format!("{days} days left")
    };
    let _ = writeln!(out, "{pad}subject:       {}", id.subject);
    let _ = writeln!(out, "{pad}issuer:        {}", id.issuer);
    let _ = writeln!(out, "{pad}serial:        {}", id.serial);
    let _ = writeln!(
        out,
        "{pad}valid:         {} .. {} ({state})",
        rfc3339(id.not_before),
        rfc3339(id.not_after)
    );
    let _ = writeln!(out, "{pad}key:           {}", id.key_algorithm);
    if !id.sans.is_empty() {
        let _ = writeln!(out, "{pad}SANs:          {}", sans(&id.sans));
    }
    if let Some(s) = &id.spiffe_id {
        let _ = writeln!(out, "{pad}SPIFFE ID:     {s}");
    }
    if !id.key_usage.is_empty() {
        let _ = writeln!(out, "{pad}key usage:     {}", id.key_usage.join(", "));
    }
    if !id.extended_key_usage.is_empty() {
        let _ = writeln!(
            out,
            "{pad}ext key usage: {}",
            id.extended_key_usage.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{pad}CA:            {}",
        if id.is_ca { "yes" } else { "no" }
    );
    let _ = writeln!(out, "{pad}sha256:        {}", id.cert_sha256);
    let _ = writeln!(out, "{pad}spki sha256:   {}", id.spki_sha256);
}

fn key(out: &mut String, k: &KeyInfo, certs: &[&Identity], pad: &str) {
    let _ = writeln!(out, "{pad}format:        {}", k.format);
    let _ = writeln!(out, "{pad}algorithm:     {}", k.algorithm);
    let _ = writeln!(out, "{pad}spki sha256:   {}", k.spki_sha256);
    if !certs.is_empty() {
        match certs.iter().position(|c| c.spki_sha256 == k.spki_sha256) {
            Some(i) => {
                let _ = writeln!(
                    out,
                    "{pad}matches:       certificate #{} ({})",
                    i + 1,
                    certs[i].subject
                );
            }
            None => {
                let _ = writeln!(out, "{pad}matches:       NO certificate in this file");
            }
        }
    }
}

fn sans(s: &certgate_pki::Sans) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(s.dns.iter().map(|d| format!("DNS:{d}")));
    parts.extend(s.ip.iter().map(|i| format!("IP:{i}")));
    parts.extend(s.uri.iter().map(|u| format!("URI:{u}")));
    parts.extend(s.email.iter().map(|e| format!("email:{e}")));
    if parts.is_empty() {
        "(none)".to_owned()
    } else {
        parts.join(", ")
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
