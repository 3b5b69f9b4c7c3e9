//! `certgate egress ca|explain`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use std::path::Path;

use certgate_pki::ca::KeyType;
use certgate_pki::name_constraints::Permitted;
use certgate_proxy::egress::{Destination, HostPattern, select, split_authority, tls_port};
use serde::Serialize;

use crate::ca_store::CaDir;
use crate::cli::{EgressCommand, ExplainArgs};
use crate::config;
use crate::exit::{self, fail};

pub fn run(cmd: EgressCommand) -> Result<ExitCode> {
    match cmd {
        EgressCommand::Ca {
            dir,
            config,
            hosts,
            force,
            name,
            days,
        } => create_ca(&dir, config.as_deref(), &hosts, force, &name, days),
        EgressCommand::Explain(args) => explain(&args),
    }
}

/// The longest an interception CA may live, in days.
const MAX_CA_DAYS: u32 = 365;

fn create_ca(
    dir: &Path,
    config: Option<&Path>,
    hosts: &[String],
    force: bool,
    name: &str,
    days: u32,
) -> Result<ExitCode> {
    if days == 0 || days > MAX_CA_DAYS {
        return Err(fail(
            exit::USAGE,
            format!(
                "--days {days}: an interception CA lives at most {MAX_CA_DAYS} days (rotate it with --force before it expires)"
            ),
        ));
    }
    let mut permitted = Vec::new();
    if let Some(path) = config {
        for (rule, host) in config::egress::rule_hosts(path)
            .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", path.display())))?
        {
            permitted.push(permitted_pattern(&host).map_err(|e| {
                fail(
                    exit::CONFIG,
                    format!("{}: egress.rule.{rule}: {e}", path.display()),
                )
            })?);
        }
    }
    for h in hosts {
        permitted.push(permitted_host(h).map_err(|e| fail(exit::USAGE, format!("--host: {e}")))?);
    }
    permitted.sort();
    permitted.dedup();
    for p in &permitted {
        if let Permitted::Dns(d) = p
            && !d.contains('.')
            && d != "localhost"
        {
            eprintln!(
                "note: `{d}` also permits every name under it (`*.{d}`): a name constraint covers a name's subdomains"
            );
        }
    }
    if permitted.is_empty() {
        return Err(fail(
            exit::USAGE,
            "name the hosts the CA may sign for: --config FILE (the hosts of its [[egress.rule]]s) and/or --host HOST",
        ));
    }
    let ca = CaDir::new(dir);
    let previous = if force && ca.exists() {
        let old = std::fs::read(ca.ca_cert_path())?;
        std::fs::remove_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot remove the old CA in {}: {e}", dir.display()))?;
        Some(old)
    } else {
        None
    };
    let id = ca.init_constrained(name, days, KeyType::EcdsaP256, &permitted)?;
    if let Some(old) = previous {
        crate::files::write_public(&dir.join("previous-ca.pem"), &old)?;
    }
    println!(
        "created interception CA `{}` in {} (valid until {})",
        id.subject,
        dir.display(),
        id.not_after.date()
    );
    println!("  may sign only for:");
    for p in &permitted {
        println!("    {p}");
    }
    println!(
        "  apps must trust:  {} (e.g. REQUESTS_CA_BUNDLE, SSL_CERT_FILE, or the system store)",
        ca.ca_cert_path().display()
    );
    println!(
        "  key:              {} (mode 0600)",
        dir.join("ca.key").display()
    );
    println!(
        "  in the config:    [egress] intercept_ca = \"{}\"",
        dir.display()
    );
    if dir.join("previous-ca.pem").exists() {
        println!(
            "  replaced:         the old key is deleted; its certificate is {} (apps that still trust only it must be given the new ca.pem)",
            dir.join("previous-ca.pem").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--host` value as a name constraint.
fn permitted_host(host: &str) -> std::result::Result<Permitted, String> {
    let host = host.trim().trim_end_matches('.');
    let pattern = HostPattern::parse(host)
        .ok_or_else(|| format!("`{host}` is not a host name, `*.domain` or an IP address"))?;
    permitted_pattern(&pattern)
}

/// A rule's host pattern as a name constraint.
fn permitted_pattern(pattern: &HostPattern) -> std::result::Result<Permitted, String> {
    match pattern {
        HostPattern::Exact(h) => {
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            Ok(match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => Permitted::Ip(ip),
                Err(_) => Permitted::Dns(h.trim_end_matches('.').to_owned()),
            })
        }
        HostPattern::Suffix(s) if !s.trim_start_matches('.').contains('.') => Err(format!(
            "`*{s}` would let the CA sign for every name under a top-level domain; name the hosts"
        )),
        HostPattern::Suffix(s) => Ok(Permitted::Dns(s.trim_start_matches('.').to_owned())),
        HostPattern::Any => Err(
            "`*` matches every host, and a CA that may sign for every host is what name constraints exist to prevent; name the hosts".to_owned(),
        ),
    }
}

#[derive(Debug, Serialize)]
struct Explanation {
    url: String,
    host: String,
    port: u16,
    path: String,
    rule: Option<String>,
    identities: Vec<String>,
    would_send: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<ConnectReport>,
}

#[derive(Debug, Serialize)]
struct ConnectReport {
    handshake: String,
    server_asked_for_certificate: bool,
    ca_hints: Vec<String>,
    candidates: Vec<(String, String)>,
    sent: Option<String>,
    /// Every handshake made, in order (more than one when the server refused an identity and
    /// the next one was tried).
    attempts: Vec<certgate_proxy::egress::fallback::AttemptReport>,
}

fn explain(args: &ExplainArgs) -> Result<ExitCode> {
    let cfg = config::load(&args.config)?;
    let Some(egress) = &cfg.egress else {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{}: the config has no [egress] section",
                args.config.display()
            ),
        ));
    };
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|e| fail(exit::USAGE, format!("`{}` is not a URL: {e}", args.url)))?;
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let Some(authority) = uri.authority() else {
        return Err(fail(
            exit::USAGE,
            format!("`{}` has no host; use https://host[:port]/path", args.url),
        ));
    };
    let default_port = if scheme == "http" { 80 } else { 443 };
    let (host, port) = split_authority(authority, default_port);
    let port = tls_port(&scheme, port);
    let path = uri.path().to_owned();
    let dest = Destination {
        host: &host,
        port,
        path: Some(&path),
    };
    let rule = select(&egress.config.rules, &dest);
    let mut out = Explanation {
        url: args.url.clone(),
        host: host.clone(),
        port,
        path: path.clone(),
        rule: rule.map(|r| r.name.clone()),
        identities: rule.map(|r| r.identities.clone()).unwrap_or_default(),
        would_send: match rule {
            None => "no rule matches: no client certificate; the forward proxy would tunnel CONNECT blindly".into(),
            Some(r) if r.identities.is_empty() => "the rule lists no identity: no client certificate".into(),
            Some(r) if r.identities.len() == 1 => format!(
                "`{}` if the server asks, its key fits and its chain reaches a CA the server names (or the server names none)",
                r.identities[0]
            ),
            Some(r) => format!(
                "the first of {} whose chain reaches a CA the server names and whose key fits (the first that fits if the server names none)",
                r.identities.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ),
        },
        connect: None,
    };
    if args.connect {
        let Some(rule) = rule else {
            return Err(fail(
                exit::USAGE,
                format!("no egress rule matches {host}:{port}{path}; nothing to connect with"),
            ));
        };
        let server_name = rule.server_name(&host).map_err(|e| fail(exit::USAGE, e))?;
        // A fresh configuration and nothing remembered from elsewhere: no session is resumed or
        // left behind, and every attempt this destination needs is shown.
        let mut tls = (*rule.tls).clone();
        tls.resumption = rustls::client::Resumption::disabled();
        let origin = certgate_proxy::egress::fallback::Origin {
            tls: Arc::new(tls),
            remembered: Arc::default(),
            diagnose: true,
            ..rule.origin.clone()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (handshake, attempts) = rt.block_on(async {
            let (connected, attempts) =
                certgate_proxy::egress::fallback::connect(&origin, &host, port, &server_name).await;
            let outcome = match connected {
                Ok(mut stream) => {
                    // A TLS 1.3 server judges the client certificate after the handshake: read
                    // once so that a refusal (an alert) shows here.
                    let mut buf = [0u8; 1];
                    use tokio::io::AsyncReadExt as _;
                    let read =
                        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf))
                            .await;
                    match read {
                        Ok(Err(e)) => format!("failed: {e}"),
                        _ => format!(
                            "ok ({}, server certificate verified)",
                            stream
                                .get_ref()
                                .1
                                .protocol_version()
                                .map_or("?".into(), |v| format!("{v:?}"))
                        ),
                    }
                }
                Err(e) => format!("failed: {e}"),
            };
            (outcome, attempts)
        });
        let last = attempts.last();
        out.connect = Some(ConnectReport {
            handshake,
            server_asked_for_certificate: last.is_some_and(|a| !a.candidates.is_empty()),
            ca_hints: last.map(|a| a.ca_hints.clone()).unwrap_or_default(),
            candidates: last.map(|a| a.candidates.clone()).unwrap_or_default(),
            sent: last.and_then(|a| a.sent.clone()),
            attempts,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(e: &Explanation) {
    println!("destination: {}:{}{}", e.host, e.port, e.path);
    match &e.rule {
        Some(r) => println!("rule:        {r}"),
        None => println!("rule:        (none)"),
    }
    if !e.identities.is_empty() {
        println!("candidates:  {}", e.identities.join(", "));
    }
    println!("would send:  {}", e.would_send);
    if let Some(c) = &e.connect {
        println!("handshake:   {}", c.handshake);
        if !c.server_asked_for_certificate {
            println!(
                "the server did not ask for a client certificate (or the handshake ended before it could)"
            );
            return;
        }
        if c.ca_hints.is_empty() {
            println!("CA hints:    (none)");
        }
        for h in &c.ca_hints {
            println!("CA hint:     {h}");
        }
        for (name, why) in &c.candidates {
            println!("  {name}: {why}");
        }
        match &c.sent {
            Some(n) => println!("sent:        {n}"),
            None => println!("sent:        no client certificate"),
        }
        if c.attempts.len() > 1 {
            for (i, a) in c.attempts.iter().enumerate() {
                let sent = a.sent.as_deref().unwrap_or("no client certificate");
                println!("attempt {}:   {sent}: {}", i + 1, a.outcome);
            }
        }
    }
}
