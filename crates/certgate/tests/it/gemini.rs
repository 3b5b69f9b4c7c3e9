//! The Gemini listener against real clients on loopback: a rustls client, Python's `ssl` with a
//! certificate it made itself, `openssl s_client`; CGI scripts and a Python `http.server` app
//! behind it. Hostile request lines, forged possession, and policy answered as 59/53/60/61/62.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certgate_testkit::{Spec, TestPki, require_peer, self_signed, tempdir};

use crate::ingress::write_pki;
use crate::server::Serve;

/// A CGI script that prints its Gemini variables (and records that it ran).
const ENV_SCRIPT: &str = r#"#!/usr/bin/env python3
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran.log"), "a") as f:
    f.write(os.environ.get("GEMINI_URL", "") + "\n")
print("20 text/plain\r")
for k in sorted(os.environ):
    print(f"{k}={os.environ[k]}")
"#;

/// An HTTP app: each path answers one way; `/app/headers` echoes the request headers as JSON.
const APP: &str = r##"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        p = self.path
        status, headers, body = 200, {"Content-Type": "text/gemini"}, b""
        if p.startswith("/app/headers"):
            body = json.dumps({"path": p, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
            headers = {"Content-Type": "application/json"}
        elif p == "/app/missing": status = 404
        elif p == "/app/gone": status = 410
        elif p == "/app/moved": status, headers = 301, {"Location": "/app/headers"}
        elif p == "/app/found": status, headers = 302, {"Location": "other"}
        elif p == "/app/forbidden": status = 403
        elif p == "/app/login": status = 401
        elif p == "/app/fail": status = 500
        elif p == "/app/busy": status, headers = 429, {"Retry-After": "7"}
        elif p == "/app/ask": headers = {"Gemini-Status": "10 Your name?"}
        elif p == "/app/bad-status": headers = {"Gemini-Status": "99 no such status"}
        elif p == "/app/ask-fr": headers = {"Gemini-Status": "10 Entrez votre âge".encode().decode("latin-1")}
        elif p == "/app/moved-fr": status, headers = 302, {"Location": "/app/b\u00fcro x".encode().decode("latin-1")}
        else: body = b"# hello\n"
        self.send_response(status)
        for k, v in headers.items(): self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"##;

struct Capsule {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    pki: TestPki,
    server: Serve,
    _app: crate::Peer,
    alice: certgate_testkit::Cert,
    bob: certgate_testkit::Cert,
}

impl Capsule {
    fn port(&self) -> u16 {
        self.server.port("capsule")
    }

    fn ran(&self) -> usize {
        std::fs::read_to_string(self.dir.join("bin/ran.log")).map_or(0, |s| s.lines().count())
    }
}

/// The capsule with its scripts and app, or `None` when Python is missing (see `require_peer!`).
fn start() -> Option<Capsule> {
    let python = certgate_testkit::peer("python3")?;
    let dir = tempdir();
    let d = dir.path().to_owned();
    let pki = write_pki(&d);
    let alice = self_signed(&Spec::client("alice"));
    let bob = self_signed(&Spec::client("bob"));
    for (name, c) in [("alice", &alice), ("bob", &bob)] {
        c.write(&d, name);
    }
    std::fs::create_dir_all(d.join("cgi-bin/sub")).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    for script in [
        "bin/env.py",
        "bin/members.py",
        "bin/staff.py",
        "cgi-bin/env.py",
        "cgi-bin/sub/env.py",
    ] {
        std::fs::write(d.join(script), ENV_SCRIPT).unwrap();
        chmod_x(&d.join(script));
    }
    std::fs::write(d.join("cgi-bin/notes.txt"), "not a script").unwrap();
    for (name, body) in [
        (
            "stream.sh",
            "printf '20 text/plain\\r\\n'\ni=0\nwhile [ $i -lt 100 ]; do echo \"tick $i\"; sleep 0.1; i=$((i+1)); done\n",
        ),
        (
            "flood.sh",
            "printf '20 text/plain\\r\\n'\nhead -c 1000000 /dev/zero | tr '\\0' a\n",
        ),
        ("hang.sh", "sleep 30\n"),
        (
            "forks.sh",
            "printf '20 text/plain\\r\\nstarted\\n'\n(sleep 30 &)\n",
        ),
        ("noheader.sh", "echo '<html>'\n"),
    ] {
        let path = d
            .join(if name == "stream.sh" {
                "bin"
            } else {
                "cgi-bin"
            })
            .join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        chmod_x(&path);
    }
    std::fs::write(d.join("app.py"), APP).unwrap();
    let app_port = crate::free_port();
    let app = crate::Peer(
        Command::new(&python)
            .arg(d.join("app.py"))
            .arg(app_port.to_string())
            .spawn()
            .unwrap(),
    );
    crate::wait_port("the Python app", app_port);
    let alice_hash = alice_sha256(&alice);
    std::fs::write(
        d.join("c.toml"),
        format!(
            r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["int.crl"]

[[gemini]]
name = "capsule"
listen = "127.0.0.1:0"
identity = "server"
trust = "clients"
response_timeout_secs = 3
max_response_bytes = 100000
  [[gemini.route]]
  path = "/"
  upstream = "cgi:bin/env.py"
  [[gemini.route]]
  path = "/stream"
  upstream = "cgi:bin/stream.sh"
  allow = [{{ cert_sha256 = "{alice_hash}" }}]
  [[gemini.route]]
  path = "/cgi"
  upstream = "cgi:cgi-bin"
  [[gemini.route]]
  path = "/members"
  upstream = "cgi:bin/members.py"
  require_client_cert = true
  allow = [{{ cert_sha256 = "{alice_hash}" }}]
  [[gemini.route]]
  path = "/staff"
  upstream = "cgi:bin/staff.py"
  require_verified = true
  [[gemini.route]]
  path = "/app"
  upstream = "http://127.0.0.1:{app_port}"
"#
        ),
    )
    .unwrap();
    let server = Serve::start(&d, "c.toml", 1);
    Some(Capsule {
        _dir: dir,
        dir: d,
        pki,
        server,
        _app: app,
        alice,
        bob,
    })
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn alice_sha256(c: &certgate_testkit::Cert) -> String {
    certgate_pki::CertHash::of(&c.der).to_hex()
}

/// A Gemini client with a self-signed certificate (or none), trusting the test root.
fn client(
    pki: &TestPki,
    cert: Option<(&certgate_testkit::Cert, &str)>,
) -> Arc<rustls::ClientConfig> {
    let auth = match cert {
        None => crate::tls::Auth::None,
        Some((c, key_pem)) => {
            let key = rustls_pki_types::PrivateKeyDer::try_from(
                certgate_pki::pem::parse(key_pem.as_bytes()).unwrap()[0]
                    .der
                    .clone(),
            )
            .unwrap();
            crate::tls::Auth::Cert(vec![c.der.clone().into()], key)
        }
    };
    crate::tls::config(&pki.root.der, &[&rustls::version::TLS13], auth)
}

/// Sends raw bytes and returns everything the server answered ("" if the handshake failed).
fn raw(port: u16, cfg: Arc<rustls::ClientConfig>, bytes: &[u8], close_write: bool) -> String {
    let Ok(mut s) = crate::tls::connect(port, cfg, Duration::from_secs(10)) else {
        return String::new();
    };
    if s.write_all(bytes).is_err() {
        return String::new();
    }
    let _ = s.flush();
    if close_write {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(c: &Capsule, cfg: &Arc<rustls::ClientConfig>, url: &str) -> String {
    raw(
        c.port(),
        Arc::clone(cfg),
        format!("{url}\r\n").as_bytes(),
        false,
    )
}

fn status(resp: &str) -> &str {
    resp.get(..2).unwrap_or("")
}

#[test]
fn policy_answers_60_61_62_and_cgi_gets_the_identity() {
    let Some(c) = start() else { return };
    let port = c.port();
    let base = format!("gemini://localhost:{port}");
    let anonymous = client(&c.pki, None);
    let alice = client(&c.pki, Some((&c.alice, &c.alice.key_pem)));
    let bob = client(&c.pki, Some((&c.bob, &c.bob.key_pem)));
    let verified = {
        let key = rustls_pki_types::PrivateKeyDer::try_from(
            certgate_pki::pem::parse(c.pki.client.key_pem.as_bytes()).unwrap()[0]
                .der
                .clone(),
        )
        .unwrap();
        crate::tls::config(
            &c.pki.root.der,
            &[&rustls::version::TLS13],
            crate::tls::Auth::Cert(
                vec![
                    c.pki.client.der.clone().into(),
                    c.pki.intermediate.der.clone().into(),
                ],
                key,
            ),
        )
    };

    let open = get(&c, &anonymous, &format!("{base}/hello?q=a%20b"));
    assert!(open.starts_with("20 text/plain\r\n"), "{open}");
    assert!(
        open.contains(&format!(
            "GEMINI_URL=gemini://localhost:{port}/hello?q=a%20b\n"
        )),
        "{open}"
    );
    assert!(
        open.contains("QUERY_STRING=q=a%20b\n") && open.contains("SERVER_PROTOCOL=GEMINI\n"),
        "{open}"
    );
    assert!(
        !open.contains("TLS_CLIENT_HASH") && !open.contains("AUTH_TYPE"),
        "{open}"
    );
    // Nothing of certgate's own environment reaches a script.
    assert!(!open.contains("CERTGATE_LOG"), "{open}");

    assert_eq!(
        status(&get(&c, &anonymous, &format!("{base}/members"))),
        "60"
    );
    assert_eq!(status(&get(&c, &bob, &format!("{base}/members"))), "61");
    let member = get(&c, &alice, &format!("{base}/members/page"));
    assert!(member.starts_with("20 "), "{member}");
    let hash = alice_sha256(&c.alice).to_ascii_uppercase();
    assert!(
        member.contains(&format!("TLS_CLIENT_HASH=SHA256:{hash}\n")),
        "{member}"
    );
    assert!(
        member.contains("AUTH_TYPE=CERTIFICATE\n") && member.contains("REMOTE_USER=alice\n"),
        "{member}"
    );
    assert!(member.contains("TLS_CLIENT_AUTHORISED=0\n"), "{member}");
    assert!(
        member.contains("SCRIPT_NAME=/members\n") && member.contains("PATH_INFO=/page\n"),
        "{member}"
    );

    // A transient certificate where a verified one is required: 62. A CA-issued one: served.
    assert_eq!(status(&get(&c, &alice, &format!("{base}/staff"))), "62");
    assert_eq!(status(&get(&c, &anonymous, &format!("{base}/staff"))), "60");
    let staff = get(&c, &verified, &format!("{base}/staff"));
    assert!(staff.contains("TLS_CLIENT_AUTHORISED=1\n"), "{staff}");
    let serial = certgate_testkit::serial_of(&c.pki.client)
        .iter()
        .fold(0u128, |n, b| n << 8 | u128::from(*b));
    assert!(
        staff.contains(&format!("TLS_CLIENT_SERIAL_NUMBER={serial}\n")),
        "{staff}"
    );

    // Someone else's certificate without its key (a CertificateVerify made with another key).
    let key_of = |pem: &str| {
        let der = rustls_pki_types::PrivateKeyDer::try_from(
            certgate_pki::pem::parse(pem.as_bytes()).unwrap()[0]
                .der
                .clone(),
        )
        .unwrap();
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).unwrap()
    };
    let stolen = Arc::new(rustls::sign::CertifiedKey::new(
        vec![c.alice.der.clone().into()],
        key_of(&c.bob.key_pem),
    ));
    let forged = crate::tls::config(
        &c.pki.root.der,
        &[&rustls::version::TLS13],
        crate::tls::Auth::Resolver(Arc::new(crate::ingress::Presents(stolen))),
    );
    let got = get(&c, &forged, &format!("{base}/members"));
    assert!(
        !got.starts_with("20"),
        "a certificate without its key was accepted: {got}"
    );
}

#[test]
fn cgi_directories_find_scripts_and_nothing_else() {
    let Some(c) = start() else { return };
    let base = format!("gemini://localhost:{}", c.port());
    let anon = client(&c.pki, None);
    let deep = get(&c, &anon, &format!("{base}/cgi/env.py/extra/path"));
    assert!(deep.starts_with("20 "), "{deep}");
    // A subdirectory is not entered: it may be another route's, with other rules.
    assert!(get(&c, &anon, &format!("{base}/cgi/sub/env.py")).starts_with("51 "));
    assert!(
        deep.contains("SCRIPT_NAME=/cgi/env.py\n") && deep.contains("PATH_INFO=/extra/path\n"),
        "{deep}"
    );
    // Dot segments are resolved before routing: this is `/c.toml`, for the `/` route's script.
    let up = get(&c, &anon, &format!("{base}/cgi/sub/../../c.toml"));
    assert!(
        up.contains(&format!("GEMINI_URL={base}/c.toml\n")) && !up.contains("[[gemini]]"),
        "{up}"
    );
    for path in [
        "/cgi/notes.txt",
        "/cgi/missing.py",
        "/cgi/sub",
        "/cgi/sub/.hidden",
        "/cgi/%252E%252E/c.toml",
    ] {
        let got = get(&c, &anon, &format!("{base}{path}"));
        assert!(
            got.starts_with("51 ") || got.starts_with("59 "),
            "{path}: {got}"
        );
        assert!(!got.contains("[[gemini]]"), "{path}: {got}");
    }
}

#[test]
fn hostile_request_lines_get_59_or_53_and_reach_no_script() {
    let Some(c) = start() else { return };
    let port = c.port();
    let anon = client(&c.pki, None);
    let ok = get(&c, &anon, &format!("gemini://localhost:{port}/"));
    assert!(ok.starts_with("20 "), "{ok}");
    let before = c.ran();
    let long = format!("gemini://localhost:{port}/{}\r\n", "a".repeat(1100));
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "no CRLF",
            format!("gemini://localhost:{port}/").into_bytes(),
            true,
            "59",
        ),
        (
            "bare LF",
            format!("gemini://localhost:{port}/\n").into_bytes(),
            true,
            "59",
        ),
        ("over 1024 bytes", long.into_bytes(), false, "59"),
        ("relative URL", b"/index.gmi\r\n".to_vec(), false, "59"),
        (
            "no scheme",
            b"localhost/index.gmi\r\n".to_vec(),
            false,
            "59",
        ),
        (
            "https scheme",
            format!("https://localhost:{port}/\r\n").into_bytes(),
            false,
            "53",
        ),
        (
            "other host",
            format!("gemini://example.org:{port}/\r\n").into_bytes(),
            false,
            "53",
        ),
        (
            "other port",
            b"gemini://localhost:1/\r\n".to_vec(),
            false,
            "53",
        ),
        (
            "userinfo",
            format!("gemini://a@localhost:{port}/\r\n").into_bytes(),
            false,
            "59",
        ),
        (
            "space",
            format!("gemini://localhost:{port}/a b\r\n").into_bytes(),
            false,
            "59",
        ),
        (
            "encoded slash",
            format!("gemini://localhost:{port}/a%2Fb\r\n").into_bytes(),
            false,
            "59",
        ),
        (
            "NUL",
            format!("gemini://localhost:{port}/a%00\r\n").into_bytes(),
            false,
            "59",
        ),
        (
            "fragment",
            format!("gemini://localhost:{port}/#x\r\n").into_bytes(),
            false,
            "59",
        ),
        (
            "not UTF-8",
            [
                format!("gemini://localhost:{port}/").as_bytes(),
                b"\xff\r\n",
            ]
            .concat(),
            false,
            "59",
        ),
        (
            "CR inside",
            format!("gemini://localhost:{port}/a\rb\r\n").into_bytes(),
            false,
            "59",
        ),
    ];
    for (what, bytes, close, want) in cases {
        let got = raw(port, Arc::clone(&anon), &bytes, close);
        assert_eq!(status(&got), want, "{what}: {got:?}");
        assert!(
            got.ends_with("\r\n") && got.lines().count() == 1,
            "{what}: {got:?}"
        );
    }
    assert_eq!(c.ran(), before, "a refused request reached the CGI script");
    // The normal form is what the script sees.
    let norm = get(&c, &anon, &format!("GEMINI://LOCALHOST.:{port}/a/./b/../c"));
    assert!(
        norm.contains(&format!("GEMINI_URL=gemini://localhost:{port}/a/c\n")),
        "{norm}"
    );
}

#[test]
fn http_upstream_translation_and_identity_headers() {
    let Some(c) = start() else { return };
    let base = format!("gemini://localhost:{}", c.port());
    let alice = client(&c.pki, Some((&c.alice, &c.alice.key_pem)));
    let head = get(&c, &alice, &format!("{base}/app/headers?x=1"));
    assert!(head.starts_with("20 application/json\r\n"), "{head}");
    let body: serde_json::Value = serde_json::from_str(head.split_once("\r\n").unwrap().1).unwrap();
    let h = &body["headers"];
    assert_eq!(body["path"], "/app/headers?x=1");
    assert_eq!(h["x-client-cert-sha256"], alice_sha256(&c.alice));
    // Self-signed: the certgate format says it did not verify.
    assert_ne!(h["x-client-verify"], "SUCCESS", "{h}");
    assert_eq!(h["x-forwarded-proto"], "gemini");
    // Encoded CR LF in the URL stays encoded: no header can be smuggled to the app.
    let smuggle = get(
        &c,
        &alice,
        &format!(
            "{base}/app/headers%0D%0AX-Client-Verify:%20SUCCESS?%0D%0AX-Client-Verify:%20SUCCESS"
        ),
    );
    if smuggle.starts_with("20") {
        let body: serde_json::Value =
            serde_json::from_str(smuggle.split_once("\r\n").unwrap().1).unwrap();
        assert_ne!(body["headers"]["x-client-verify"], "SUCCESS", "{smuggle}");
    }
    let anon = client(&c.pki, None);
    for (path, want) in [
        ("/app/page", "20 text/gemini\r\n# hello\n".to_owned()),
        ("/app/missing", "51 not found\r\n".to_owned()),
        ("/app/gone", "52 gone\r\n".to_owned()),
        ("/app/moved", format!("31 {base}/app/headers\r\n")),
        ("/app/found", format!("30 {base}/app/other\r\n")),
        (
            "/app/login",
            "60 a client certificate is required\r\n".to_owned(),
        ),
        (
            "/app/forbidden",
            "61 the client certificate is not authorised here\r\n".to_owned(),
        ),
        ("/app/busy", "44 7\r\n".to_owned()),
        ("/app/ask", "10 Your name?\r\n".to_owned()),
        ("/app/ask-fr", "10 Entrez votre âge\r\n".to_owned()),
        ("/app/moved-fr", format!("30 {base}/app/b%C3%BCro%20x\r\n")),
    ] {
        assert_eq!(get(&c, &anon, &format!("{base}{path}")), want, "{path}");
    }
    assert_eq!(status(&get(&c, &anon, &format!("{base}/app/fail"))), "42");
    assert_eq!(
        status(&get(&c, &anon, &format!("{base}/app/bad-status"))),
        "42"
    );
}

#[test]
fn python_client_with_its_own_certificate_and_openssl_s_client() {
    let Some(c) = start() else { return };
    let python = require_peer!("python3");
    let ossl = require_peer!("openssl");
    let d = &c.dir;
    // A certificate Python's user made with OpenSSL, as a Gemini client would.
    let made = certgate_testkit::openssl(
        &ossl,
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "mine.key",
            "-out",
            "mine.pem",
            "-days",
            "30",
            "-subj",
            "/CN=made-by-me",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let script = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain("mine.pem", "mine.key")
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    with ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(sys.argv[2].encode() + b"\r\n")
        out = b""
        while True:
            b = t.recv(4096)
            if not b: break
            out += b
print(out.decode())
"#;
    std::fs::write(d.join("client.py"), script).unwrap();
    let url = format!("gemini://localhost:{}/hello", c.port());
    let out = Command::new(&python)
        .current_dir(d)
        .args(["client.py", &c.port().to_string(), &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("20 text/plain"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(d.join("mine.pem")).unwrap();
    let der = certgate_pki::pem::parse(pem.as_bytes()).unwrap()[0]
        .der
        .clone();
    let want = certgate_pki::CertHash::of(&der)
        .to_hex()
        .to_ascii_uppercase();
    assert!(
        text.contains(&format!("TLS_CLIENT_HASH=SHA256:{want}\n")),
        "{text}"
    );
    assert!(text.contains("REMOTE_USER=made-by-me\n"), "{text}");

    let mut s_client = Command::new(&ossl)
        .current_dir(d)
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", c.port()),
            "-servername",
            "localhost",
            "-cert",
            "mine.pem",
            "-key",
            "mine.key",
            "-quiet",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    s_client
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{url}\r\n").as_bytes())
        .unwrap();
    let out = s_client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("20 text/plain"), "{text}");
    assert!(
        text.contains(&format!("TLS_CLIENT_HASH=SHA256:{want}\n")),
        "{text}"
    );
}

/// A CGI script for the differential tests: its status depends on the query and on whether a
/// certificate came, its body lists the variables both servers set.
const DIFF_SCRIPT: &str = r#"#!/bin/sh
case "$QUERY_STRING" in
  status=51) printf '51 Not here\r\n'; exit 0 ;;
  status=10) printf '10 Your name?\r\n'; exit 0 ;;
  status=30) printf '30 gemini://localhost/elsewhere\r\n'; echo "not sent"; exit 0 ;;
esac
if [ -z "$TLS_CLIENT_HASH" ]; then printf '60 Certificate needed\r\n'; exit 0; fi
printf '20 text/plain\r\n'
for v in $VARS; do printf '%s=%s\n' "$v" "$(printenv "$v")"; done
"#;

/// The same requests through certgate and through a real Gemini server running the same script:
/// the same status lines and bodies, and the same identity variables.
fn differential(
    reference: &str,
    vars: &str,
    flavour: &str,
    reference_args: impl FnOnce(&Path, u16) -> Command,
    prefix: &str,
) {
    let Some(c) = start() else { return };
    let d = &c.dir;
    let docs = d.join("docs");
    std::fs::create_dir_all(docs.join("cgi-bin")).unwrap();
    let script = DIFF_SCRIPT.replace("$VARS", vars);
    std::fs::write(docs.join("cgi-bin/show.sh"), script).unwrap();
    chmod_x(&docs.join("cgi-bin/show.sh"));
    let ref_port = crate::free_port();
    let mut cmd = reference_args(d, ref_port);
    let _reference = crate::Peer(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    crate::wait_port(reference, ref_port);
    std::fs::write(
        d.join("diff.toml"),
        format!(
            r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[gemini]]
name = "diff"
listen = "127.0.0.1:0"
identity = "server"
  [[gemini.route]]
  path = "{prefix}"
  upstream = "cgi:docs/cgi-bin"
  cgi_variables = "{flavour}"
"#
        ),
    )
    .unwrap();
    let ours = Serve::start(d, "diff.toml", 1);
    let our_port = ours.port("diff");
    let alice = client(&c.pki, Some((&c.alice, &c.alice.key_pem)));
    let anonymous = client(&c.pki, None);
    let mut compared = 0;
    for who in [&alice, &anonymous] {
        for query in ["", "?status=51", "?status=10", "?status=30", "?a=%20b"] {
            let path = format!("{prefix}/show.sh/extra/path{query}");
            let theirs = raw(
                ref_port,
                Arc::clone(who),
                format!("gemini://localhost:{ref_port}{path}\r\n").as_bytes(),
                false,
            );
            let mine = raw(
                our_port,
                Arc::clone(who),
                format!("gemini://localhost:{our_port}{path}\r\n").as_bytes(),
                false,
            );
            assert!(!theirs.is_empty(), "{reference} answered nothing to {path}");
            // Each URL names its own server's port; everything else must be equal.
            let theirs = theirs.replace(&format!(":{ref_port}/"), ":PORT/");
            let mine = mine.replace(&format!(":{our_port}/"), ":PORT/");
            // One deliberate difference: a body after a header other than 2x is not sent (the
            // protocol has none there; both reference servers pass on what the script printed).
            let theirs = match theirs.split_once("\r\n") {
                Some((head, body)) if !head.starts_with('2') && !body.is_empty() => {
                    format!("{head}\r\n")
                }
                _ => theirs,
            };
            assert_eq!(
                mine, theirs,
                "{path}: certgate (left) and {reference} (right) differ"
            );
            compared += 1;
        }
    }
    let identity = raw(
        our_port,
        Arc::clone(&alice),
        format!("gemini://localhost:{our_port}{prefix}/show.sh\r\n").as_bytes(),
        false,
    );
    let hash = alice_sha256(&c.alice);
    assert!(identity.to_ascii_lowercase().contains(&hash), "{identity}");
    assert_eq!(compared, 10);
}

#[test]
fn cgi_matches_molly_brown() {
    let molly = require_peer!("molly-brown");
    differential(
        "molly-brown",
        "TLS_CLIENT_HASH TLS_CLIENT_SUBJECT TLS_CLIENT_SUBJECT_CN TLS_CLIENT_ISSUER TLS_CLIENT_ISSUER_CN AUTH_TYPE QUERY_STRING PATH_INFO SERVER_NAME SERVER_PROTOCOL GATEWAY_INTERFACE REQUEST_METHOD REMOTE_ADDR",
        "molly-brown",
        |d, port| {
            let docs = d.join("docs");
            std::fs::write(
                d.join("molly.conf"),
                format!(
                    "Port = {port}\nHostname = \"localhost\"\nCertPath = \"{dir}/server.pem\"\nKeyPath = \"{dir}/server.key\"\nDocBase = \"{docs}/\"\nAccessLog = \"{dir}/molly-access.log\"\nErrorLog = \"{dir}/molly-error.log\"\nCGIPaths = [ \"{docs}/cgi-bin/\" ]\n",
                    dir = d.display(),
                    docs = docs.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(&molly);
            cmd.current_dir(d).args(["-c", "molly.conf"]);
            cmd
        },
        "/cgi-bin",
    );
}

#[test]
fn cgi_matches_jetforce() {
    let jetforce = require_peer!("jetforce");
    differential(
        "jetforce",
        "TLS_CLIENT_HASH TLS_CLIENT_HASH_B64 TLS_CLIENT_NOT_BEFORE TLS_CLIENT_NOT_AFTER TLS_CLIENT_SERIAL_NUMBER TLS_CLIENT_AUTHORISED AUTH_TYPE REMOTE_USER QUERY_STRING SCRIPT_NAME PATH_INFO GEMINI_URL SERVER_NAME SERVER_PROTOCOL HOSTNAME REMOTE_ADDR",
        "jetforce",
        |d, port| {
            let mut cmd = Command::new(&jetforce);
            cmd.current_dir(d).args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--hostname",
                "localhost",
                "--tls-certfile",
                "server.pem",
                "--tls-keyfile",
                "server.key",
                "--dir",
                "docs",
                "--cgi-dir",
                "cgi-bin",
            ]);
            cmd
        },
        "/cgi-bin",
    );
}

/// Debian's `amfora` browser in a tmux pane: with its configured client certificate it shows
/// the page and the script's view of the certificate; without one it shows its "certificate
/// required" dialog (status 60).
#[test]
fn amfora_in_tmux_with_and_without_a_client_certificate() {
    let amfora = require_peer!("amfora");
    let tmux = require_peer!("tmux");
    let Some(c) = start() else { return };
    let d = &c.dir;
    let port = c.port();
    for (profile, with_cert) in [("with", true), ("without", false)] {
        let cfg = d.join(format!("amfora-{profile}"));
        std::fs::create_dir_all(cfg.join("amfora")).unwrap();
        let mut text = String::from("[a-general]\nhome = \"about:newtab\"\n");
        if with_cert {
            text.push_str(&format!(
                "[auth]\n[auth.certs]\n\"localhost:{port}\" = '{dir}/alice.pem'\n[auth.keys]\n\"localhost:{port}\" = '{dir}/alice.key'\n",
                dir = d.display()
            ));
        }
        std::fs::write(cfg.join("amfora/config.toml"), text).unwrap();
        // Each run has a tmux server of its own on a socket in the test's directory: a
        // server on the default socket may be shared with other tests or users, and one
        // whose last session was just killed may still be exiting when the next one starts.
        let socket = d.join(format!("tmux-{profile}"));
        let tmux_cmd = || {
            let mut cmd = Command::new(&tmux);
            cmd.arg("-S").arg(&socket);
            cmd
        };
        let session = format!("certgate-amfora-{profile}");
        let command = format!(
            "env HOME={dir} XDG_CONFIG_HOME={cfg} XDG_CACHE_HOME={cfg}/cache XDG_DATA_HOME={cfg}/data TERM=xterm-256color {amfora} gemini://localhost:{port}/members/page",
            dir = d.display(),
            cfg = cfg.display(),
            amfora = amfora.display()
        );
        let started = tmux_cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "140",
                "-y",
                "40",
                &command,
            ])
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "tmux did not start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let want = if with_cert {
            "TLS_CLIENT_HASH=SHA256:"
        } else {
            "Client Certificate Required"
        };
        let mut screen = String::new();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            let out = tmux_cmd()
                .args(["capture-pane", "-p", "-t", &session])
                .output()
                .unwrap();
            screen = String::from_utf8_lossy(&out.stdout).into_owned();
            if screen.contains(want) {
                break;
            }
        }
        let _ = tmux_cmd().arg("kill-server").status();
        assert!(
            screen.contains(want),
            "amfora ({profile} certificate) shows:\n{screen}"
        );
        if with_cert {
            let hash = alice_sha256(&c.alice).to_ascii_uppercase();
            assert!(
                screen.contains(&hash[..40]),
                "amfora shows another certificate hash:\n{screen}"
            );
            assert!(screen.contains("REMOTE_USER=alice"), "{screen}");
        }
    }
}

#[test]
fn scripts_that_hang_flood_or_misbehave_are_bounded() {
    let Some(c) = start() else { return };
    let base = format!("gemini://localhost:{}", c.port());
    let anon = client(&c.pki, None);
    let t = std::time::Instant::now();
    assert_eq!(
        get(&c, &anon, &format!("{base}/cgi/hang.sh")),
        "42 the response took too long\r\n"
    );
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let flood = get(&c, &anon, &format!("{base}/cgi/flood.sh"));
    assert_eq!(
        flood.len(),
        "20 text/plain\r\n".len() + 100_000,
        "cut at max_response_bytes"
    );
    // A script's child that keeps its output open holds the response only until the time-out.
    let t = std::time::Instant::now();
    let forks = get(&c, &anon, &format!("{base}/cgi/forks.sh"));
    assert!(forks.starts_with("20 text/plain\r\nstarted\n"), "{forks}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(
        get(&c, &anon, &format!("{base}/cgi/noheader.sh")),
        "42 the CGI script failed\r\n"
    );
}

#[test]
fn a_reload_that_refuses_the_client_cuts_its_response() {
    let Some(c) = start() else { return };
    let base = format!("gemini://localhost:{}", c.port());
    let alice = client(&c.pki, Some((&c.alice, &c.alice.key_pem)));
    let mut s = crate::tls::connect(c.port(), alice, Duration::from_secs(10)).unwrap();
    s.write_all(format!("{base}/stream\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("20 text/plain"));
    // The pin now names bob: alice's open response must end within about a second.
    let config = std::fs::read_to_string(c.dir.join("c.toml")).unwrap();
    let config = config.replace(&alice_sha256(&c.alice), &alice_sha256(&c.bob));
    std::fs::write(c.dir.join("c.toml"), config).unwrap();
    let t = std::time::Instant::now();
    c.server.signal("HUP");
    let mut rest = Vec::new();
    let ended = s.read_to_end(&mut rest);
    let elapsed = t.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "the response went on for {elapsed:?}"
    );
    // Reset, not closed: nothing still queued for the client reaches it.
    assert!(
        matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the cut response ended with {ended:?}, not a reset"
    );
    let ticks = String::from_utf8_lossy(&rest).matches("tick").count();
    assert!(ticks < 40, "{ticks} ticks after the reload");
}

/// A protected route's path in every spelling a client can send (raw UTF-8, its escapes in
/// either case, escaped segment characters, escaped unreserved ones) reaches that route, never
/// the open one beside it; so does a route path written in any spelling in the config.
#[test]
fn route_paths_in_any_spelling_keep_their_policy() {
    let Some(c) = start() else { return };
    let d = &c.dir;
    std::fs::create_dir_all(d.join("secret")).unwrap();
    std::fs::write(d.join("secret/env.py"), ENV_SCRIPT).unwrap();
    chmod_x(&d.join("secret/env.py"));
    let mut config = String::from(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[gemini]]
name = "spell"
listen = "127.0.0.1:0"
identity = "server"
  [[gemini.route]]
  path = "/"
  upstream = "cgi:bin/env.py"
"#,
    );
    for path in ["/büro", "/p+q", "/%7Ebob", "/a b", "/b%C3%A4r", "/@me"] {
        config.push_str(&format!(
            "  [[gemini.route]]\n  path = \"{path}\"\n  upstream = \"cgi:secret/env.py\"\n  require_client_cert = true\n"
        ));
    }
    std::fs::write(d.join("spell.toml"), config).unwrap();
    let server = Serve::start(d, "spell.toml", 1);
    let port = server.port("spell");
    let anon = client(&c.pki, None);
    for path in [
        "/büro/x",
        "/b%C3%BCro/x",
        "/b%c3%bcro/x",
        "/p+q/z",
        "/p%2Bq/z",
        "/p%2bq",
        "/~bob/s",
        "/%7Ebob/s",
        "/%7ebob",
        "/a%20b/x",
        "/bär/s",
        "/b%C3%A4r/s",
        "/@me",
        "/%40me/x",
        "/./b%C3%BCro/../büro/x",
    ] {
        let got = raw(
            port,
            Arc::clone(&anon),
            format!("gemini://localhost:{port}{path}\r\n").as_bytes(),
            false,
        );
        assert!(
            got.starts_with("60 "),
            "{path} reached the open route: {got}"
        );
    }
    let open = raw(
        port,
        Arc::clone(&anon),
        format!("gemini://localhost:{port}/bureau\r\n").as_bytes(),
        false,
    );
    assert!(open.starts_with("20 "), "{open}");
}

/// Clients that stop reading give their connection slot back once the response time is up, and
/// processes a script leaves behind are killed with it.
#[test]
fn stalled_readers_and_left_behind_processes_are_cleaned_up() {
    let Some(c) = start() else { return };
    let d = &c.dir;
    std::fs::write(
        d.join("cgi-bin/orphan.sh"),
        "#!/bin/sh\nprintf '20 text/plain\\r\\n'\n(exec sleep 4321) >/dev/null 2>&1 &\necho started\n",
    )
    .unwrap();
    chmod_x(&d.join("cgi-bin/orphan.sh"));
    std::fs::write(
        d.join("cgi-bin/big.sh"),
        "#!/bin/sh\nprintf '20 text/plain\\r\\n'\nhead -c 50000000 /dev/zero | tr '\\0' a\n",
    )
    .unwrap();
    chmod_x(&d.join("cgi-bin/big.sh"));
    std::fs::write(
        d.join("small.toml"),
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[gemini]]
name = "small"
listen = "127.0.0.1:0"
identity = "server"
max_connections = 2
response_timeout_secs = 2
  [[gemini.route]]
  path = "/"
  upstream = "cgi:cgi-bin"
"#,
    )
    .unwrap();
    let server = Serve::start(d, "small.toml", 1);
    let port = server.port("small");
    let anon = client(&c.pki, None);
    let got = raw(
        port,
        Arc::clone(&anon),
        format!("gemini://localhost:{port}/orphan.sh\r\n").as_bytes(),
        false,
    );
    assert!(got.contains("started"), "{got}");
    let mut left = true;
    for _ in 0..50 {
        let found = Command::new("pgrep")
            .args(["-f", "sleep 4321"])
            .output()
            .unwrap();
        left = found.status.success();
        if !left {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !left,
        "the script's background process outlived its response"
    );

    // Two clients take both slots with a 50 MB response they never read.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = crate::tls::connect(port, Arc::clone(&anon), Duration::from_secs(30)).unwrap();
        s.write_all(format!("gemini://localhost:{port}/big.sh\r\n").as_bytes())
            .unwrap();
        s.flush().unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    // Both slots are taken: a third client waits (its connection sits in the accept queue)
    // until the response time-out and the close allowance free one, then is served.
    let t = std::time::Instant::now();
    let served = raw(
        port,
        Arc::clone(&anon),
        format!("gemini://localhost:{port}/env.py\r\n").as_bytes(),
        false,
    );
    let waited = t.elapsed();
    assert!(
        waited > Duration::from_secs(1),
        "served at once ({waited:?}): the slots were not held"
    );
    assert!(served.starts_with("20 "), "no slot came free: {served:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    drop(stalled);
}

/// A client that sends no request line gets `59` after `request_timeout_secs`; what a script
/// writes to standard error reaches the log; the admin status document lists the listener and
/// its routes.
#[test]
fn request_timeout_script_errors_and_status() {
    let Some(c) = start() else { return };
    let d = &c.dir;
    std::fs::write(
        d.join("cgi-bin/complain.sh"),
        "#!/bin/sh\necho 'disk on fire' >&2\nprintf '20 text/plain\\r\\nok\\n'\n",
    )
    .unwrap();
    chmod_x(&d.join("cgi-bin/complain.sh"));
    std::fs::write(
        d.join("t.toml"),
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[admin]
listen = "127.0.0.1:0"

[[gemini]]
name = "timed"
listen = "127.0.0.1:0"
identity = "server"
request_timeout_secs = 1
  [[gemini.route]]
  path = "/"
  upstream = "cgi:cgi-bin"
"#,
    )
    .unwrap();
    let log = d.join("serve.log");
    let server = Serve::start_logging(d, "t.toml", 2, &log);
    let port = server.port("timed");
    let anon = client(&c.pki, None);
    let t = std::time::Instant::now();
    let got = raw(port, Arc::clone(&anon), b"", false);
    assert_eq!(got, "59 no complete request line in time\r\n");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    let got = raw(
        port,
        Arc::clone(&anon),
        format!("gemini://localhost:{port}/complain.sh\r\n").as_bytes(),
        false,
    );
    assert_eq!(got, "20 text/plain\r\nok\n");
    let mut logged = String::new();
    for _ in 0..50 {
        logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.contains("disk on fire") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        logged.contains("disk on fire") && logged.contains("complain.sh"),
        "{logged}"
    );

    let status = crate::admin_get(server.port("admin"), "/status");
    let body: serde_json::Value =
        serde_json::from_str(status.split_once("\r\n\r\n").unwrap().1).unwrap();
    let listener = body["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["kind"] == "gemini"))
        .unwrap_or_else(|| panic!("no gemini listener in {body}"));
    assert_eq!(listener["name"], "timed");
    let upstream = listener["routes"][0]["upstream"]
        .as_str()
        .unwrap_or_default();
    assert!(
        upstream.starts_with("cgi:") && upstream.ends_with("cgi-bin"),
        "{listener}"
    );
}
