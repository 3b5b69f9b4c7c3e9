//! Egress against real peers: Python `requests`, `httpx` and `aiohttp` use certgate as
//! `HTTPS_PROXY`/`HTTP_PROXY` to reach real nginx servers (`ssl_verify_client on`) and certgate's
//! own ingress; tunnels to `openssl s_server -Verify 1`; rotation; an upstream that does not
//! verify gets no client certificate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certgate_testkit::{
    Spec, TestPki, encrypt_pkcs8_pem, require_peer, self_signed, signed_by, tempdir,
};

use crate::server::Serve;
use crate::{Peer, free_port, wait_port};

pub(crate) fn write(d: &Path, name: &str, text: &str) {
    std::fs::write(d.join(name), text).unwrap();
}

/// Fails (under CERTGATE_REQUIRE_PEERS=1) or skips loudly without these Python modules.
pub(crate) fn python_with(modules: &[&str]) -> Option<std::path::PathBuf> {
    let python = certgate_testkit::peer("python3")?;
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new(&python)
        .args(["-c", &import])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if certgate_testkit::peers_required() {
            panic!(
                "Python modules {modules:?} are required (CERTGATE_REQUIRE_PEERS=1); .ci/run installs them"
            );
        }
        eprintln!("\n!!!!!!!! SKIPPING: Python modules {modules:?} are not installed !!!!!!!!\n");
        return None;
    }
    Some(python)
}

/// Runs one GET through the proxy with each library; prints `LIB STATUS BODY` lines.
const CLIENTS: &str = r#"
import asyncio, json, os, ssl, sys
lib, url, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
# "env": trust what the environment says (REQUESTS_CA_BUNDLE, SSL_CERT_FILE), as an app would.
env = cafile == "env"
def out(status, body):
    print(json.dumps({"status": status, "body": body}))
try:
    if lib == "requests":
        import requests
        r = requests.get(url, verify=True if env else cafile, timeout=10)
        out(r.status_code, r.text)
    elif lib == "httpx":
        import httpx
        verify = True if env else ssl.create_default_context(cafile=cafile)
        with httpx.Client(verify=verify, trust_env=True, timeout=10) as c:
            r = c.get(url)
            out(r.status_code, r.text)
    else:
        import aiohttp
        async def main():
            ctx = ssl.create_default_context() if env else ssl.create_default_context(cafile=cafile)
            async with aiohttp.ClientSession(trust_env=True) as s:
                async with s.get(url, ssl=ctx, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    out(r.status, await r.text())
        asyncio.run(main())
except Exception as e:
    out(0, f"{type(e).__name__}: {e}")
"#;

pub(crate) fn get(
    python: &Path,
    d: &Path,
    proxy: u16,
    lib: &str,
    url: &str,
    cafile: &str,
) -> (u16, String) {
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let mut cmd = Command::new(python);
    if cafile == "env" {
        cmd.env("REQUESTS_CA_BUNDLE", d.join("egress-ca/ca.pem"))
            .env("SSL_CERT_FILE", d.join("egress-ca/ca.pem"));
    }
    let out = cmd
        .current_dir(d)
        .args(["-c", CLIENTS, lib, url, cafile])
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .env("https_proxy", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "{lib}: no result: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v["status"].as_u64().unwrap_or(0) as u16,
        v["body"].as_str().unwrap_or_default().to_owned(),
    )
}

fn start_nginx(nginx: &Path, d: &Path, servers: &str) -> Peer {
    let dir = d.display();
    let body = format!(
        "  ssl_certificate {dir}/server.pem;\n  ssl_certificate_key {dir}/server.key;\n  default_type text/plain;\n{servers}"
    );
    crate::start_nginx(nginx, d, &body)
}

/// An nginx server on `port` that requires a client certificate from `ca_file` (and names that
/// CA in its CertificateRequest) and answers with the subject it received.
pub(crate) fn nginx_server(port: u16, verify: &str, ca_file: &str) -> String {
    format!(
        "  server {{ listen 127.0.0.1:{port} ssl; ssl_verify_client {verify}; ssl_verify_depth 3; ssl_client_certificate {ca_file}; \
         location / {{ return 200 \"port={port} verify=$ssl_client_verify subject=$ssl_client_s_dn issuer=$ssl_client_i_dn\\n\"; }} }}\n"
    )
}

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    a: TestPki,
    b: TestPki,
}

/// Two client PKIs (a, b); upstream servers use a's server certificate. The client identities
/// come in three forms: a's as encrypted PKCS#8 with a password file, b's as a legacy PKCS#12,
/// and c's (also issued by a) inline in the config.
pub(crate) fn setup(openssl: &Path) -> Setup {
    let dir = tempdir();
    let d = dir.path();
    let a = TestPki::named("a");
    let b = TestPki::named("b");
    write(d, "a-root.pem", &a.root.pem);
    write(d, "a-int.pem", &a.intermediate.pem);
    write(d, "b-root.pem", &b.root.pem);
    write(
        d,
        "server.pem",
        &format!("{}{}", a.server.pem, a.intermediate.pem),
    );
    write(d, "server.key", &a.server.key_pem);
    write(d, "pw.txt", "s3cret\n");
    write(
        d,
        "a-client.pem",
        &format!("{}{}", a.client.pem, a.intermediate.pem),
    );
    write(
        d,
        "a-client.key",
        &encrypt_pkcs8_pem(&a.client.key_pem, "s3cret"),
    );
    write(d, "b-client.pem", &b.client.pem);
    write(d, "b-int.pem", &b.intermediate.pem);
    write(d, "b-client.key", &b.client.key_pem);
    certgate_testkit::openssl(
        openssl,
        d,
        "pkcs12 -export -legacy -in b-client.pem -certfile b-int.pem -inkey b-client.key -out b-client.p12 -passout pass:s3cret",
    );
    std::fs::remove_file(d.join("b-client.key")).unwrap();
    Setup { dir, a, b }
}

pub(crate) fn egress_config(s: &Setup, extra: &str) -> String {
    let c = signed_by(&Spec::client("carol"), &s.a.intermediate);
    format!(
        r#"version = 1
[[identity]]
name = "a-client"
cert = "a-client.pem"
key = "a-client.key"
password_file = "pw.txt"
[[identity]]
name = "b-client"
pkcs12 = "b-client.p12"
password_file = "pw.txt"
[[identity]]
name = "c-inline"
cert_pem = """
{}{}"""
key_pem = """
{}"""
[[trust]]
name = "servers"
ca = ["a-root.pem"]
[egress]
listen = "127.0.0.1:0"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "local"
  url = "https://localhost"
  identities = ["a-client", "b-client"]
  trust = "servers"
  [[egress.rule]]
  name = "inline"
  url = "https://localhost/inline"
  identity = "c-inline"
  trust = "servers"
{extra}"#,
        c.pem, s.a.intermediate.pem, c.key_pem
    )
}

#[test]
fn python_clients_through_the_forward_proxy() {
    let python = match python_with(&["requests", "httpx", "aiohttp"]) {
        Some(p) => p,
        None => return,
    };
    let nginx = require_peer!("nginx");
    let openssl = require_peer!("openssl");
    let s = setup(&openssl);
    let d = s.dir.path();
    let status = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(["egress", "ca", "--dir", "egress-ca", "--host", "localhost"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // nginx: A names CA a, B names CA b, O only asks (blind CONNECT target).
    let (pa, pb, po) = (free_port(), free_port(), free_port());
    let servers = format!(
        "{}{}{}",
        nginx_server(pa, "on", "a-root.pem"),
        nginx_server(pb, "on", "b-root.pem"),
        nginx_server(po, "optional_no_ca", "a-root.pem"),
    );
    let _nginx = start_nginx(&nginx, d, &servers);
    // certgate's own ingress as an upstream: verified clients of CA b only.
    write(
        d,
        "ingress.toml",
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "b"
ca = ["b-root.pem"]
[[ingress]]
name = "app"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "require_and_verify"
trust = "b"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
"#,
    );
    let ingress = Serve::start(d, "ingress.toml", 1);
    let pi = ingress.port("app");
    // An upstream whose certificate does not verify (self-signed): it must see no certificate.
    let rogue = self_signed(&Spec::server("localhost"));
    write(d, "rogue.pem", &rogue.pem);
    write(d, "rogue.key", &rogue.key_pem);
    let px = free_port();
    let rogue_log = std::fs::File::create(d.join("rogue.log")).unwrap();
    let _rogue = Peer(
        Command::new(&openssl)
            .current_dir(d)
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{px}"),
                "-cert",
                "rogue.pem",
                "-key",
                "rogue.key",
                "-Verify",
                "1",
                "-www",
            ])
            .stdout(rogue_log.try_clone().unwrap())
            .stderr(rogue_log)
            .spawn()
            .unwrap(),
    );
    write(d, "egress.toml", &egress_config(&s, ""));
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    for port in [pa, pb, po, px] {
        wait_port("upstream", port);
    }
    for lib in ["requests", "httpx", "aiohttp"] {
        // Unchanged https:// URLs, intercepted: each upstream gets the identity its CA asks for.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{pa}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(
            body.contains("verify=SUCCESS subject=CN=alice"),
            "{lib}: {body}"
        );
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{pb}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("issuer=CN=b intermediate"), "{lib}: {body}");
        // Back to A on the same host name: a's identity again, never a resumed b session.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{pa}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("issuer=CN=a intermediate"), "{lib}: {body}");
        // certgate's ingress asks for CA b: b's identity, verified there.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{pi}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(
            body.contains("\"x-client-verify\": \"SUCCESS\""),
            "{lib}: {body}"
        );
        // The interception CA trusted through the environment, as the guide says.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{pa}/"),
            "env",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("verify=SUCCESS"), "{lib}: {body}");
        // http:// URLs: originated over mTLS https.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("http://localhost:{pa}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("verify=SUCCESS"), "{lib}: {body}");
        // A longer path prefix picks its own rule: the inline identity.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{po}/inline/x"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("subject=CN=carol"), "{lib}: {body}");
        // A host without a rule: blind CONNECT. The client verifies the upstream's real
        // certificate against a's root (an intercepted one would fail) and nothing is attached.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://127.0.0.1:{po}/"),
            "a-root.pem",
        );
        assert_eq!(code, 200, "{lib}: {body}");
        assert!(body.contains("verify=NONE"), "{lib}: {body}");
        // The rogue upstream: 502 naming the reason.
        let (code, body) = get(
            &python,
            d,
            pp,
            lib,
            &format!("https://localhost:{px}/"),
            "egress-ca/ca.pem",
        );
        assert_eq!(code, 502, "{lib}: {body}");
        assert!(
            body.contains("invalid peer certificate") && body.contains("UnknownIssuer"),
            "{lib}: {body}"
        );
    }
    // Verified with the real CA instead of the interception CA, an intercepted host fails:
    // proof that interception happened where a rule matches.
    let (code, body) = get(
        &python,
        d,
        pp,
        "requests",
        &format!("https://localhost:{pa}/"),
        "a-root.pem",
    );
    assert_eq!(code, 0, "{body}");
    let rogue_said = std::fs::read_to_string(d.join("rogue.log")).unwrap();
    assert!(
        !rogue_said.contains("CN = alice")
            && !rogue_said.contains("CN=alice")
            && !rogue_said.contains("carol"),
        "the rogue server saw a client certificate:\n{rogue_said}"
    );
    assert!(
        rogue_said.contains("alert"),
        "the rogue server should log the client's alert:\n{rogue_said}"
    );
}

/// Two identities for one host pattern, each upstream asking for a different CA: `egress explain
/// --connect` reports the hints and the choice.
#[test]
fn explain_reports_hints_and_choice() {
    let nginx = require_peer!("nginx");
    let openssl = require_peer!("openssl");
    let s = setup(&openssl);
    let d = s.dir.path();
    let (pa, pb) = (free_port(), free_port());
    let _nginx = start_nginx(
        &nginx,
        d,
        &format!(
            "{}{}",
            nginx_server(pa, "on", "a-root.pem"),
            nginx_server(pb, "on", "b-root.pem")
        ),
    );
    let cfg = egress_config(&s, "").replace("intercept_ca = \"egress-ca\"\n", "");
    write(d, "egress.toml", &cfg);
    wait_port("nginx", pa);
    wait_port("nginx", pb);
    let explain_with = |url: &str, connect: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .current_dir(d)
            .args([
                "egress",
                "explain",
                url,
                "--config",
                "egress.toml",
                "--json",
            ])
            .args(connect)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let explain = |url: &str| explain_with(url, &["--connect"]);
    let v = explain(&format!("https://localhost:{pa}/"));
    assert_eq!(v["rule"], "local");
    assert_eq!(v["connect"]["sent"], "a-client", "{v:#}");
    assert_eq!(v["connect"]["ca_hints"][0], "CN=a root", "{v:#}");
    let v = explain(&format!("https://localhost:{pb}/"));
    assert_eq!(v["connect"]["sent"], "b-client", "{v:#}");
    assert!(
        v["connect"]["candidates"][0][1]
            .as_str()
            .unwrap()
            .contains("reaches none of the CAs"),
        "{v:#}"
    );
    let v = explain(&format!("https://localhost:{pb}/inline/"));
    assert_eq!(v["rule"], "inline");
    // c-inline is issued by a; the server asks for b: nothing is sent, and it says why.
    assert_eq!(v["connect"]["sent"], serde_json::Value::Null, "{v:#}");
    let v = explain_with("https://example.com/", &[]);
    assert_eq!(v["rule"], serde_json::Value::Null);
}

/// Tunnel mode against `openssl s_server -Verify 1`, then rotation: replacing the client
/// certificate file makes the next connection use the new certificate, in a new session.
#[test]
fn tunnel_to_openssl_s_server_and_rotation() {
    let openssl = require_peer!("openssl");
    let s = setup(&openssl);
    let d = s.dir.path();
    let rot = signed_by(&Spec::client("rot-1"), &s.b.intermediate);
    write(
        d,
        "rot.pem",
        &format!("{}{}", rot.pem, s.b.intermediate.pem),
    );
    write(d, "rot.key", &rot.key_pem);
    let ps = free_port();
    let _server = Peer(
        Command::new(&openssl)
            .current_dir(d)
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{ps}"),
                "-cert",
                "server.pem",
                "-cert_chain",
                "a-int.pem",
                "-key",
                "server.key",
                "-Verify",
                "1",
                "-CAfile",
                "b-root.pem",
                "-verify_return_error",
                "-www",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let extra = format!(
        r#"[[identity]]
name = "rot"
cert = "rot.pem"
key = "rot.key"
[[egress.tunnel]]
name = "t"
listen = "127.0.0.1:0"
target = "127.0.0.1:{ps}"
sni = "localhost"
identities = ["rot"]
trust = "servers"
"#
    );
    let cfg = egress_config(&s, &extra).replace("intercept_ca = \"egress-ca\"\n", "");
    write(d, "egress.toml", &cfg);
    wait_port("s_server", ps);
    let proxy = Serve::start(d, "egress.toml", 2);
    let pt = proxy.port("t");
    let page = || {
        use std::io::{Read as _, Write as _};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", pt)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out);
        out
    };
    let first = page();
    assert!(first.contains("Subject: CN=rot-1"), "{first}");
    assert!(first.contains("New,"), "{first}");
    // Resumption is on: the next connection resumes (so the check after rotation means something).
    let second = page();
    assert!(second.contains("Reused,"), "{second}");
    // Rotate: a new certificate and key in the same files.
    let rot2 = signed_by(&Spec::client("rot-2"), &s.b.intermediate);
    write(d, "rot.key", &rot2.key_pem);
    write(
        d,
        "rot.pem",
        &format!("{}{}", rot2.pem, s.b.intermediate.pem),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = page();
        if p.contains("Subject: CN=rot-2") {
            assert!(
                p.contains("New,"),
                "the first connection after rotation must not resume: {p}"
            );
            break;
        }
        assert!(p.contains("Subject: CN=rot-1"), "{p}");
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never used"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Start-up ordering: `wait-ready` started before `serve` returns once serve is ready, and
/// `serve --ready-file` writes its file only then (and removes it on exit).
#[test]
fn wait_ready_and_ready_file() {
    let openssl = require_peer!("openssl");
    let s = setup(&openssl);
    let d = s.dir.path();
    let admin = free_port();
    let cfg = egress_config(&s, &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n"))
        .replace("intercept_ca = \"egress-ca\"\n", "");
    write(d, "egress.toml", &cfg);
    let bin = env!("CARGO_BIN_EXE_certgate");
    // Nothing running: a clear timeout, exit 75.
    let out = Command::new(bin)
        .current_dir(d)
        .args(["wait-ready", "--config", "egress.toml", "--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/readyz not ready"),
        "{out:?}"
    );
    let waiter = Command::new(bin)
        .current_dir(d)
        .args(["wait-ready", "--config", "egress.toml", "--timeout", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!d.join("ready").exists());
    // Links planted where the ready file and a predictable temporary file would go are replaced,
    // never followed.
    write(d, "victim", "untouched");
    std::os::unix::fs::symlink(d.join("victim"), d.join("ready")).unwrap();
    std::os::unix::fs::symlink(d.join("victim"), d.join("ready.tmp")).unwrap();
    std::os::unix::fs::symlink(d.join("victim"), d.join(".ready.tmp")).unwrap();
    let mut serve = Peer(
        Command::new(bin)
            .current_dir(d)
            .args(["serve", "--config", "egress.toml", "--ready-file", "ready"])
            .env("CERTGATE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let ready = std::fs::read_to_string(d.join("ready")).unwrap();
    assert!(ready.starts_with("egress 127.0.0.1:"), "{ready}");
    assert!(
        std::fs::symlink_metadata(d.join("ready"))
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("victim")).unwrap(),
        "untouched"
    );
    // /status lists the egress listener and its rules; /metrics exports every identity's expiry.
    let http_get = |path: &str| {
        use std::io::{Read as _, Write as _};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        write!(tcp, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    };
    let status = http_get("/status");
    let body = status.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let egress = &v["listeners"][0];
    assert_eq!(egress["kind"], "egress", "{v:#}");
    assert_eq!(
        egress["rules"][0]["identities"],
        serde_json::json!(["a-client", "b-client"]),
        "{v:#}"
    );
    // One plain request through the proxy to a closed port: a 502, counted.
    let proxy_addr: std::net::SocketAddr = ready
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let closed = crate::free_port();
    {
        use std::io::{Read as _, Write as _};
        let mut tcp = std::net::TcpStream::connect(proxy_addr).unwrap();
        write!(
            tcp,
            "GET http://127.0.0.1:{closed}/ HTTP/1.1\r\nHost: 127.0.0.1:{closed}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(answer.contains(&format!("127.0.0.1:{closed}")), "{answer}");
    }
    let metrics = http_get("/metrics");
    assert!(
        metrics.contains("certgate_egress_requests_total{mode=\"plain\",status=\"502\"} 1"),
        "{metrics}"
    );
    for id in ["a-client", "b-client", "c-inline"] {
        assert!(
            metrics.contains(&format!(
                "certgate_certificate_expiry_seconds{{identity=\"{id}\"}}"
            )),
            "{metrics}"
        );
    }
    let pid = serve.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = serve.0.wait();
    assert!(!d.join("ready").exists(), "the ready file outlived serve");
}

/// Unsafe or broken egress configs are refused with every error named by key.
#[test]
fn bad_egress_configs_are_refused() {
    let dir = tempdir();
    let d = dir.path();
    crate::make_ca(d);
    write(
        d,
        "c.toml",
        r#"version = 1
[[identity]]
name = "me"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "t"
ca = ["ca/ca.pem"]
[egress]
listen = "0.0.0.0:3128"
intercept_ca = "nowhere"
allow = ["bad host!"]
  [[egress.rule]]
  name = "no-trust"
  url = "https://a.example"
  identity = "me"
  [[egress.rule]]
  name = "bad-url"
  url = "http://b.example"
  identity = "ghost"
  trust = "t"
  pin_spki_sha256 = "xyz"
  [[egress.tunnel]]
  name = "tun"
  listen = "127.0.0.1:0"
  target = "nowhere"
  trust = "t"
"#,
    );
    let out = crate::certgate(d, "check --config c.toml");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = crate::text(&out);
    for expected in [
        "`egress.listen`: 0.0.0.0:3128 is not a loopback address",
        "allow_non_loopback = true",
        "`egress.intercept_ca`",
        "certgate egress ca --dir nowhere",
        "`egress.allow`: `bad host!` is not a host name",
        "`egress.rule.no-trust.trust`: missing: the server's certificate must verify before a client certificate is sent",
        "`egress.rule.bad-url.url`: `http://b.example` must start with `https://`",
        "`egress.rule.bad-url.identity`: no [[identity]] named `ghost`",
        "`egress.rule.bad-url.pin_spki_sha256`: `xyz` is not 64 hex digits",
        "`egress.tunnel.tun.target`: `nowhere` is not host:port",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// `intercept_ca` is relative to the config file, also when the config is named by a relative
/// path with a directory part (it was joined to that directory twice).
#[test]
fn intercept_ca_is_relative_to_the_config_file() {
    let dir = tempdir();
    let d = dir.path();
    crate::make_ca(d);
    std::fs::create_dir(d.join("conf")).unwrap();
    crate::certgate_ok(d, "egress ca --dir conf/eca --host localhost");
    write(
        d,
        "conf/c.toml",
        r#"version = 1
[[identity]]
name = "me"
cert = "../server.pem"
key = "../server.key"
[[trust]]
name = "t"
ca = ["../ca/ca.pem"]
[egress]
listen = "127.0.0.1:0"
intercept_ca = "eca"
  [[egress.rule]]
  name = "r"
  url = "https://a.example"
  identity = "me"
  trust = "t"
"#,
    );
    crate::certgate_ok(d, "check --config conf/c.toml");
}

/// Per-rule SPKI pin and SNI override, and the allow list, through the proxy with curl.
#[test]
fn pins_sni_and_allow_list() {
    let nginx = require_peer!("nginx");
    let openssl = require_peer!("openssl");
    let curl = require_peer!("curl");
    let s = setup(&openssl);
    let d = s.dir.path();
    let (pa, pb, po) = (free_port(), free_port(), free_port());
    let _nginx = start_nginx(
        &nginx,
        d,
        &format!(
            "{}{}{}",
            nginx_server(pa, "on", "a-root.pem"),
            nginx_server(pb, "on", "a-root.pem"),
            nginx_server(po, "optional_no_ca", "a-root.pem")
        ),
    );
    let pin = certgate_pki::Identity::from_der(&s.a.server.der)
        .unwrap()
        .spki_sha256
        .to_hex();
    let other_pin = "00".repeat(32);
    let rules = format!(
        r#"
  [[egress.rule]]
  name = "pinned"
  url = "https://localhost:{pa}"
  identity = "a-client"
  trust = "servers"
  pin_spki_sha256 = "{pin}"
  [[egress.rule]]
  name = "mispinned"
  url = "https://localhost:{pb}"
  identity = "a-client"
  trust = "servers"
  pin_spki_sha256 = "{other_pin}"
  [[egress.rule]]
  name = "by-ip-as-localhost"
  url = "https://127.0.0.1:{pa}"
  identity = "a-client"
  trust = "servers"
  sni = "localhost"
  [[egress.rule]]
  name = "by-ip-wrong-name"
  url = "https://127.0.0.1:{pb}"
  identity = "a-client"
  trust = "servers"
  sni = "wrong.example"
"#
    );
    // Only the rules' own destinations and 127.0.0.1:PO are reachable.
    let cfg = egress_config(&s, &rules).replace(
        "intercept_ca = \"egress-ca\"\n",
        &format!("allow = [\"127.0.0.1:{po}\"]\n"),
    );
    write(d, "egress.toml", &cfg);
    for p in [pa, pb, po] {
        wait_port("nginx", p);
    }
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let via_proxy = |url: &str| {
        let out = Command::new(&curl)
            .current_dir(d)
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                "a-root.pem",
                "-w",
                "\n%{http_code}",
                "-x",
            ])
            .arg(format!("http://127.0.0.1:{pp}"))
            .arg(url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (
            code.to_owned(),
            format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (code, body) = via_proxy(&format!("http://localhost:{pa}/"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("verify=SUCCESS"), "{body}");
    let (code, body) = via_proxy(&format!("http://localhost:{pb}/"));
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("is not the pinned"), "{body}");
    let (code, body) = via_proxy(&format!("http://127.0.0.1:{pa}/"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("verify=SUCCESS"), "{body}");
    let (code, body) = via_proxy(&format!("http://127.0.0.1:{pb}/"));
    assert_eq!(code, "502", "{body}");
    assert!(
        body.contains("not valid for name \"wrong.example\""),
        "{body}"
    );
    // Not on the allow list: refused, both blind CONNECT and plain http.
    let elsewhere = free_port();
    let (_, body) = via_proxy(&format!("https://127.0.0.1:{elsewhere}/"));
    assert!(body.contains("403"), "{body}");
    let (code, body) = via_proxy(&format!("http://127.0.0.1:{elsewhere}/"));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("is not on the egress allow list"), "{body}");
    // On it: a blind tunnel to the real server.
    let (code, body) = via_proxy(&format!("https://127.0.0.1:{po}/"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("verify=NONE"), "{body}");
}
