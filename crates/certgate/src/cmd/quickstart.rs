//! `certgate quickstart [--dir DIR]`: a dev PKI and a config that work out of the box.
//!
//! Creates (or reuses) a CA, a server certificate for localhost, a client certificate (also as
//! PKCS#12), a CRL and `certgate.toml`, proves they fit together (config check, verification of
//! both certificates against the CA) and prints what it made and how to use it. It also creates
//! a transparency log (`log/`) that the gateway serves next to the HTTP listener.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use certgate_pki::ca::{KeyType, LeafKind, LeafRequest};
use certgate_pki::{Identity, Origin, Purpose, credential};
use rustls_pki_types::UnixTime;
use serde::Serialize;

use crate::ca_store::CaDir;
use crate::cli::QuickstartArgs;
use crate::{config, files};

const CONFIG: &str = r#"# certgate configuration written by `certgate quickstart`.
# Every key is documented in docs/config.md. Paths are relative to this file.
version = 1

# The certificate certgate presents to clients (localhost, 127.0.0.1, ::1).
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

# A client identity, here as a PKCS#12 bundle whose password is in a file.
[[identity]]
name = "client"
pkcs12 = "client.p12"
password_file = "client.p12.password"

# Client certificates are trusted when they chain to the quickstart CA and are not revoked.
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
crl = ["ca/crl.pem"]

# The quickstart CA's CRL is kept signed while certgate runs (a new one every 15 days, and at
# once after `certgate ca revoke --dir ca ...`), so it never runs out.
[ca]
dir = "ca"

# The gateway: TLS on LISTEN, any client certificate accepted at the handshake (possession is
# always proven); the routes decide who gets what.
[[ingress]]
name = "quickstart"
listen = "LISTEN"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["rfc9440", "certgate"]

  # Public: anyone, with or without a certificate. The built-in echo upstream shows the identity
  # headers an app behind certgate would receive.
  [[ingress.route]]
  path = "/"
  upstream = "echo"

  # Private: a certificate from the quickstart CA with a quickstart SPIFFE ID.
  [[ingress.route]]
  path = "/private"
  upstream = "echo"
  require_verified = true
  allow = [{ spiffe = "spiffe://quickstart.certgate.local/*" }]

# Egress: an HTTPS_PROXY for apps that have no certificate of their own. Their requests to
# localhost (the gateway above) are intercepted with a certificate from egress-ca (which those
# apps trust) and sent on as the client identity; every other destination is tunnelled blind.
[egress]
listen = "EGRESS_LISTEN"
intercept_ca = "egress-ca"

  [[egress.rule]]
  name = "quickstart-gateway"
  url = "https://localhost/"
  identity = "client"
  trust = "clients"

# A transparency log: anyone reads checkpoints and tiles; quickstart clients append.
[log]
origin = "quickstart.certgate.local/log"
data_dir = "log"
listen = "LOG_LISTEN"
identity = "server"
trust = "clients"
writers = [{ spiffe = "spiffe://quickstart.certgate.local/*" }]
"#;

const LOG_ORIGIN: &str = "quickstart.certgate.local/log";

/// Certificates closer to expiry than this are re-issued on the next run.
const RENEW_BEFORE_DAYS: i64 = 7;

#[derive(Serialize)]
struct Summary {
    dir: String,
    created: Vec<String>,
    reused: Vec<String>,
    ca: String,
    server: String,
    client: String,
    client_p12: String,
    crl: String,
    config: String,
}

pub fn run(args: &QuickstartArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut created = Vec::new();
    let mut reused = Vec::new();

    let ca = CaDir::new(&dir.join("ca"));
    if ca.exists() {
        reused.push("CA".to_owned());
    } else {
        ca.init("certgate quickstart CA", 3650, KeyType::EcdsaP256)?;
        created.push("CA".to_owned());
    }
    let server_prefix = dir.join("server");
    if usable(&server_prefix, Purpose::Server, &ca)? {
        reused.push("server certificate".to_owned());
    } else {
        let req = LeafRequest {
            kind: LeafKind::Server,
            name: "localhost".to_owned(),
            dns: vec!["localhost".to_owned()],
            ip: vec!["127.0.0.1".parse()?, "::1".parse()?],
            uri: vec![],
            email: vec![],
            days: 365,
            key_type: KeyType::EcdsaP256,
            crl_urls: Vec::new(),
        };
        ca.issue(&req, &server_prefix, None, true)?;
        created.push("server certificate".to_owned());
    }
    let client_prefix = dir.join("client");
    if usable(&client_prefix, Purpose::Client, &ca)? && client_prefix.with_extension("p12").exists()
    {
        reused.push("client certificate".to_owned());
    } else {
        let req = LeafRequest {
            kind: LeafKind::Client,
            name: "quickstart-client".to_owned(),
            dns: vec![],
            ip: vec![],
            uri: vec!["spiffe://quickstart.certgate.local/client".to_owned()],
            email: vec![],
            days: 365,
            key_type: KeyType::EcdsaP256,
            crl_urls: Vec::new(),
        };
        // Remove a stale password file so a fresh one is generated with the new bundle.
        let _ = std::fs::remove_file(client_prefix.with_extension("p12.password"));
        ca.issue(&req, &client_prefix, Some(None), true)?;
        created.push("client certificate".to_owned());
    }
    // A fresh CRL every run: it is cheap and keeps nextUpdate in the future.
    let crl = ca.dir().join("crl.pem");
    ca.crl(&crl, 30)?;

    let log_dir = dir.join("log");
    if log_dir.join("log.redb").exists() {
        reused.push("log".to_owned());
    } else {
        crate::cmd::log::create(LOG_ORIGIN, &log_dir)?;
        created.push("log".to_owned());
    }
    // Content trust: a publisher key, a policy trusting it and the log, a file to sign.
    let publisher = dir.join("publisher.key");
    let policy = dir.join("trust-policy.toml");
    if publisher.exists() && policy.exists() {
        reused.push("content trust".to_owned());
    } else {
        let _ = std::fs::remove_file(&publisher);
        let _ = std::fs::remove_file(dir.join("publisher.key.pub"));
        let signer =
            crate::cmd::trust::create_key("quickstart.certgate.local/publisher", &publisher, None)?;
        let log_key = std::fs::read_to_string(log_dir.join("log.vkey"))
            .with_context(|| format!("cannot read {}", log_dir.join("log.vkey").display()))?;
        let text = format!(
            "# Who the verifier trusts; written by `certgate quickstart`.\nversion = 1\nlog_keys = [\"{}\"]\n\n[[signer]]\nkey = \"{signer}\"\nnames = [\"quickstart-*\"]\n",
            log_key.trim()
        );
        files::write_public(&policy, text.as_bytes())
            .with_context(|| format!("cannot write {}", policy.display()))?;
        files::write_public(&dir.join("release.txt"), b"an example release\n")?;
        created.push("content trust".to_owned());
    }
    // The interception CA of the egress proxy (what apps behind HTTPS_PROXY trust).
    let egress_ca = CaDir::new(&dir.join("egress-ca"));
    if egress_ca.ca_cert_path().exists() {
        reused.push("egress CA".to_owned());
    } else {
        // It may sign for the one rule host only (name constraints), so its key cannot
        // impersonate any other site to apps that trust it.
        egress_ca.init_constrained(
            "certgate quickstart egress interception CA",
            365,
            KeyType::EcdsaP256,
            &[certgate_pki::name_constraints::Permitted::Dns(
                "localhost".to_owned(),
            )],
        )?;
        created.push("egress CA".to_owned());
    }
    let config_path = dir.join("certgate.toml");
    if config_path.exists() {
        reused.push("config".to_owned());
    } else {
        let text = CONFIG
            .replace("LOG_LISTEN", &next_to(&args.listen, 1))
            .replace("EGRESS_LISTEN", &next_to(&args.listen, 2))
            .replace("LISTEN", &args.listen);
        files::write_public(&config_path, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", config_path.display()))?;
        created.push("config".to_owned());
    }
    // Prove the pieces fit: the config resolves (files load, keys decrypt and match).
    let cfg = config::load(&config_path)?;

    let summary = Summary {
        dir: dir.display().to_string(),
        created,
        reused,
        ca: ca.ca_cert_path().display().to_string(),
        server: server_prefix.with_extension("pem").display().to_string(),
        client: client_prefix.with_extension("pem").display().to_string(),
        client_p12: client_prefix.with_extension("p12").display().to_string(),
        crl: crl.display().to_string(),
        config: config_path.display().to_string(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_human(&summary, dir, &cfg);
    }
    if args.no_serve {
        if !args.json {
            println!(
                "\nnot started (--no-serve). Start the gateway with:\n  certgate serve --config {}\nor run `certgate quickstart --dir {}` again (it reuses what is there).",
                config_path.display(),
                dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.ingresses.is_empty() {
        return Err(crate::exit::fail(
            crate::exit::CONFIG,
            format!(
                "{} has no [[ingress]] (it predates the gateway); delete it and run quickstart again",
                config_path.display()
            ),
        ));
    }
    let d = dir.display().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = args.json;
    let me = me();
    runtime.block_on(crate::cmd::serve::serve(cfg, |bound| {
        let gateway = bound.iter().find(|(n, _)| n == "quickstart").map(|(_, a)| a.port());
        for (name, addr) in bound.iter().filter(|_| !json) {
            let port = addr.port();
            let url = format!("https://localhost:{port}");
            let resolve = if addr.ip().is_loopback() { String::new() } else { format!(" --resolve localhost:{port}:{}", addr.ip()) };
            println!();
            if name == "log" {
                println!("Transparency log running on {url}. Try:");
                println!("  {me} log add {d}/certgate.toml --url {url} --ca {d}/ca/ca.pem --cert {d}/client.pem --key {d}/client.key");
                println!("  {me} log checkpoint {url} --ca {d}/ca/ca.pem --vkey {d}/log/log.vkey --state {d}/log-state");
                let submit = format!("--key {d}/publisher.key --log {url} --ca {d}/ca/ca.pem --tls-cert {d}/client.pem --tls-key {d}/client.key");
                let verify = format!("--policy {d}/trust-policy.toml --log {url} --ca {d}/ca/ca.pem --state {d}/trust-state");
                println!("Content trust against it (sign, verify, untrust, verify again):");
                println!("  {me} trust sign {d}/release.txt --name quickstart-release {submit}");
                println!("  {me} trust verify {d}/release.txt {verify}      # TRUSTED, exit 0");
                println!("  {me} trust untrust {d}/release.txt --name quickstart-release {submit}");
                println!("  {me} trust verify {d}/release.txt {verify}      # UNTRUSTED, exit 1");
                continue;
            }
            if name == "egress" {
                let Some(gw) = gateway else { continue };
                let proxy = format!("HTTPS_PROXY=http://{addr}");
                let target = format!("https://localhost:{gw}/private");
                println!("Egress proxy on http://{addr}: an app with no certificate of its own reaches {target} as quickstart-client. Try:");
                println!("  {proxy} curl --cacert {d}/egress-ca/ca.pem {target}");
                println!("  {proxy} REQUESTS_CA_BUNDLE={d}/egress-ca/ca.pem python3 -c 'import requests; print(requests.get(\"{target}\").text)'");
                continue;
            }
            println!("Gateway running on {url} (Ctrl-C to stop). Try:");
            println!("  curl --cacert {d}/ca/ca.pem{resolve} {url}/");
            println!("  curl --cacert {d}/ca/ca.pem{resolve} --cert {d}/client.pem --key {d}/client.key {url}/private");
            println!("  curl --cacert {d}/ca/ca.pem{resolve} {url}/private        # 401: no certificate");
        }
    }))
}

/// The log and the egress proxy listen next to the gateway: `offset` ports up, or on an
/// ephemeral port when the gateway's is. The egress proxy is for local apps: always loopback.
fn next_to(listen: &str, offset: u16) -> String {
    let mut a = listen
        .parse::<std::net::SocketAddr>()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 8443)));
    let port = match a.port() {
        0 => 0,
        p => p.checked_add(offset).unwrap_or(0),
    };
    a.set_port(port);
    if offset == 2 {
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    a.to_string()
}

/// The binary as it was invoked (e.g. `target/release/certgate` under `cargo run`).
fn me() -> String {
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "certgate".to_owned())
}

/// True when `PREFIX.pem`/`PREFIX.key` exist, load, match, verify against the CA for `purpose`
/// and are not about to expire.
fn usable(prefix: &Path, purpose: Purpose, ca: &CaDir) -> Result<bool> {
    let cert_path = prefix.with_extension("pem");
    let key_path = prefix.with_extension("key");
    if !cert_path.exists() || !key_path.exists() {
        return Ok(false);
    }
    let load = || -> Result<bool> {
        let certs =
            credential::parse_certificates(&files::read(&cert_path)?, &Origin::file(&cert_path))?;
        let key = credential::parse_private_key(
            &files::read(&key_path)?,
            &Origin::file(&key_path),
            None,
        )?;
        let cred = credential::Credential::assemble(
            certs,
            &Origin::file(&cert_path),
            key,
            &Origin::file(&key_path),
        )?;
        let ca_path = ca.ca_cert_path();
        let anchors =
            credential::parse_certificates(&files::read(&ca_path)?, &Origin::file(&ca_path))?;
        let bundle =
            certgate_pki::TrustBundle::new("quickstart", anchors, vec![], Default::default())?;
        let fresh = (cred.identity.not_after - time::OffsetDateTime::now_utc()).whole_days()
            >= RENEW_BEFORE_DAYS;
        Ok(fresh
            && bundle
                .verify(&cred.chain, purpose, UnixTime::now())
                .verified()
                .is_some())
    };
    Ok(load().unwrap_or(false))
}

fn print_human(s: &Summary, dir: &Path, cfg: &config::Config) {
    let rel = |p: &str| -> PathBuf { PathBuf::from(p) };
    if !s.created.is_empty() {
        println!(
            "certgate quickstart: created {} in {}",
            s.created.join(", "),
            s.dir
        );
    }
    if !s.reused.is_empty() {
        println!(
            "certgate quickstart: reused {} in {}",
            s.reused.join(", "),
            s.dir
        );
    }
    let describe = |name: &str| -> String {
        cfg.identities
            .iter()
            .find(|i| i.name == name)
            .map(|i| describe_identity(&i.credential.identity))
            .unwrap_or_default()
    };
    println!();
    println!("  CA certificate      {}", s.ca);
    println!("  server certificate  {}  {}", s.server, describe("server"));
    println!(
        "  server key          {}",
        rel(&s.server).with_extension("key").display()
    );
    println!("  client certificate  {}  {}", s.client, describe("client"));
    println!(
        "  client key          {}",
        rel(&s.client).with_extension("key").display()
    );
    println!(
        "  client PKCS#12      {}  (password in {}.password)",
        s.client_p12, s.client_p12
    );
    println!("  CRL                 {}", s.crl);
    println!("  config              {}", s.config);
    println!();
    print!("{}", crate::cmd::check::human(cfg));
    let d = dir.display();
    let me = me();
    println!();
    println!("Try:");
    println!("  {me} inspect {d}/client.pem --ca {d}/ca/ca.pem --crl {d}/ca/crl.pem");
    println!("  {me} check --config {d}/certgate.toml");
    println!("  openssl verify -CAfile {d}/ca/ca.pem -purpose sslclient {d}/client.pem");
    println!("  {me} ca issue --dir {d}/ca --client alice --out {d}/alice");
}

fn describe_identity(id: &Identity) -> String {
    let mut names: Vec<String> = id.sans.dns.iter().map(|d| format!("DNS:{d}")).collect();
    names.extend(id.sans.ip.iter().map(|i| format!("IP:{i}")));
    names.extend(id.sans.uri.iter().map(|u| format!("URI:{u}")));
    format!(
        "({}; {}; until {})",
        id.subject,
        names.join(", "),
        id.not_after.date()
    )
}
