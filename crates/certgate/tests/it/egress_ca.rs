//! The constrained interception CA: OpenSSL and Python's `ssl` refuse a certificate it signed for
//! a host outside its name constraints; certgate tunnels a rule host outside them blind instead of
//! intercepting it; lifetimes, refusals and rotation of `certgate egress ca`.

use std::process::Command;

use certgate_testkit::{require_peer, tempdir};

use crate::egress::{egress_config, get, nginx_server, python_with, setup, write};
use crate::server::Serve;
use crate::{free_port, wait_port};

fn certgate(d: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(args)
        .output()
        .unwrap()
}

fn ossl(openssl: &std::path::Path, d: &std::path::Path, args: &str) -> String {
    let out = certgate_testkit::openssl(openssl, d, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python: a TLS server presenting `cert`/`key` and a client that trusts only `ca` and expects
/// `host`; prints `ok` or the client's error.
const HANDSHAKE: &str = r#"
import socket, ssl, sys, threading
cert, key, ca, host = sys.argv[1:5]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(cert, key)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
def serve():
    conn, _ = listener.accept()
    try:
        server.wrap_socket(conn, server_side=True).close()
    except Exception:
        conn.close()
threading.Thread(target=serve, daemon=True).start()
client = ssl.create_default_context(cafile=ca)
try:
    with socket.create_connection(listener.getsockname()) as raw:
        with client.wrap_socket(raw, server_hostname=host):
            print("ok")
except ssl.SSLError as e:
    print("refused:", e)
"#;

#[test]
fn openssl_and_python_refuse_a_leaf_outside_the_constraints() {
    let openssl = require_peer!("openssl");
    let Some(python) = python_with(&["ssl"]) else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let made = certgate(
        d,
        &[
            "egress",
            "ca",
            "--dir",
            "eca",
            "--host",
            "ha.example",
            "--host",
            "*.internal.test",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let out = String::from_utf8_lossy(&made.stdout);
    assert!(out.contains("ha.example (and names under it)"), "{out}");
    assert!(out.contains("internal.test (and names under it)"), "{out}");
    // The CA's certificate: critical name constraints, at most a year.
    let text = ossl(&openssl, d, "x509 -in eca/ca.pem -noout -text");
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(text.contains("DNS:ha.example"), "{text}");
    assert!(text.contains("IP:0.0.0.0/0.0.0.0"), "excluded IPs: {text}");
    assert!(text.contains("email:invalid"), "no mailbox: {text}");
    assert!(
        text.contains("TLS Web Server Authentication"),
        "the CA is for TLS servers only: {text}"
    );
    // Its key cannot make certificates apps accept for anything else: S/MIME, client auth.
    for (name, args, purpose) in [
        (
            "mail",
            vec!["--client", "--email", "ceo@bank.example"],
            "smimesign",
        ),
        (
            "client",
            vec!["--client", "--uri", "spiffe://prod.example/admin"],
            "sslclient",
        ),
    ] {
        let mut all = vec!["ca", "issue", "--dir", "eca", "--out", name];
        all.extend(args);
        all.push(if name == "mail" { "ceo" } else { "admin" });
        let issued = certgate(d, &all);
        assert!(issued.status.success(), "{issued:?}");
        let verify = Command::new(&openssl)
            .current_dir(d)
            .args(["verify", "-CAfile", "eca/ca.pem", "-purpose", purpose])
            .arg(format!("{name}.pem"))
            .output()
            .unwrap();
        assert!(
            !verify.status.success(),
            "{name} must not verify for {purpose}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    // Leaves minted with the CA's key (as an attacker holding it would), inside and outside.
    for (name, host) in [
        ("inside", "api.ha.example"),
        ("deep", "a.b.internal.test"),
        ("outside", "bank.example"),
        ("lookalike", "evilha.example"),
        ("ip", "127.0.0.1"),
    ] {
        let issued = certgate(
            d,
            &[
                "ca", "issue", "--dir", "eca", "--server", host, "--out", name,
            ],
        );
        assert!(issued.status.success(), "{issued:?}");
        let verify = Command::new(&openssl)
            .current_dir(d)
            .args(["verify", "-CAfile", "eca/ca.pem", &format!("{name}.pem")])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        let py = Command::new(&python)
            .current_dir(d)
            .args([
                "-c",
                HANDSHAKE,
                &format!("{name}.pem"),
                &format!("{name}.key"),
                "eca/ca.pem",
                host,
            ])
            .output()
            .unwrap();
        let py = String::from_utf8_lossy(&py.stdout).trim().to_owned();
        if matches!(name, "inside" | "deep") {
            assert!(verify.status.success(), "{host}: {said}");
            assert_eq!(py, "ok", "{host}");
        } else {
            assert!(!verify.status.success(), "{host} must be refused: {said}");
            assert!(
                said.contains("subtree violation") || said.contains("name constraint"),
                "{host}: {said}"
            );
            assert!(py.starts_with("refused:"), "{host}: {py}");
        }
    }
}

#[test]
fn egress_ca_refusals_and_rotation() {
    let openssl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    let refused = |args: &[&str], expected: &str| {
        let out = certgate(d, args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    refused(
        &[
            "egress",
            "ca",
            "--dir",
            "x",
            "--host",
            "a.example",
            "--days",
            "400",
        ],
        "at most 365 days",
    );
    refused(
        &["egress", "ca", "--dir", "x"],
        "name the hosts the CA may sign for",
    );
    refused(
        &["egress", "ca", "--dir", "x", "--host", "*"],
        "a CA that may sign for every host",
    );
    refused(
        &["egress", "ca", "--dir", "x", "--host", "*.com"],
        "every name under a top-level domain",
    );
    write(
        d,
        "any.toml",
        "version = 1\n[egress]\nlisten = \"127.0.0.1:0\"\n  [[egress.rule]]\n  name = \"all\"\n  url = \"https://*/\"\n",
    );
    refused(
        &["egress", "ca", "--dir", "x", "--config", "any.toml"],
        "egress.rule.all: `*` matches every host",
    );
    assert!(!d.join("x").exists(), "nothing is created on a refusal");

    // From a config's rules; then a second run without --force refuses, with it rotates.
    write(
        d,
        "rules.toml",
        "version = 1\n[egress]\nlisten = \"127.0.0.1:0\"\nintercept_ca = \"eca\"\n  [[egress.rule]]\n  name = \"ha\"\n  url = \"https://ha.example/\"\n  [[egress.rule]]\n  name = \"lan\"\n  url = \"https://192.168.1.20:8443/api\"\n",
    );
    let made = certgate(
        d,
        &["egress", "ca", "--dir", "eca", "--config", "rules.toml"],
    );
    assert!(made.status.success(), "{made:?}");
    let out = String::from_utf8_lossy(&made.stdout);
    assert!(out.contains("ha.example (and names under it)"), "{out}");
    assert!(out.contains("192.168.1.20"), "{out}");
    let text = ossl(&openssl, d, "x509 -in eca/ca.pem -noout -text");
    assert!(text.contains("IP:192.168.1.20/255.255.255.255"), "{text}");
    // A leaf for the IP rule (its common name is the address) verifies in OpenSSL, which checks
    // a dotted common name against the DNS constraints.
    let ip_leaf = certgate(
        d,
        &[
            "ca",
            "issue",
            "--dir",
            "eca",
            "--server",
            "192.168.1.20",
            "--out",
            "lan",
        ],
    );
    assert!(ip_leaf.status.success(), "{ip_leaf:?}");
    let verified = Command::new(&openssl)
        .current_dir(d)
        .args(["verify", "-CAfile", "eca/ca.pem", "lan.pem"])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let old_cert = std::fs::read_to_string(d.join("eca/ca.pem")).unwrap();
    let old_key = std::fs::read_to_string(d.join("eca/ca.key")).unwrap();
    refused(
        &["egress", "ca", "--dir", "eca", "--config", "rules.toml"],
        "refusing to overwrite",
    );
    let rotated = certgate(
        d,
        &[
            "egress",
            "ca",
            "--dir",
            "eca",
            "--config",
            "rules.toml",
            "--force",
        ],
    );
    assert!(rotated.status.success(), "{rotated:?}");
    assert_eq!(
        std::fs::read_to_string(d.join("eca/previous-ca.pem")).unwrap(),
        old_cert
    );
    let new_key = std::fs::read_to_string(d.join("eca/ca.key")).unwrap();
    assert_ne!(new_key, old_key, "rotation makes a new key");
    let all = std::fs::read_dir(d.join("eca"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(
        !all.iter().any(|f| f == old_key.as_bytes()),
        "the old key is gone from the directory"
    );
    let end = ossl(&openssl, d, "x509 -in eca/ca.pem -noout -enddate");
    let not_after = end.trim().trim_start_matches("notAfter=");
    let year = not_after.split_whitespace().nth(3).unwrap();
    let this_year = time::OffsetDateTime::now_utc().year();
    assert!(
        year.parse::<i32>().unwrap() <= this_year + 1,
        "at most a year: {end}"
    );
}

/// A rule host outside the CA's constraints is tunneled blind: the app sees the real server, which
/// gets no client certificate, and `certgate check` says so. A rule host inside is intercepted.
#[test]
fn a_rule_host_outside_the_constraints_is_tunneled_blind() {
    let Some(python) = python_with(&["requests"]) else {
        return;
    };
    let nginx = require_peer!("nginx");
    let openssl = require_peer!("openssl");
    let s = setup(&openssl);
    let d = s.dir.path();
    // The CA may sign for other.example only; the rules are for localhost.
    let made = certgate(
        d,
        &[
            "egress",
            "ca",
            "--dir",
            "egress-ca",
            "--host",
            "other.example",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let pn = free_port();
    let _nginx = crate::start_nginx(
        &nginx,
        d,
        &format!(
            "  ssl_certificate {dir}/server.pem;\n  ssl_certificate_key {dir}/server.key;\n  default_type text/plain;\n{}",
            nginx_server(pn, "optional_no_ca", "a-root.pem"),
            dir = d.display()
        ),
    );
    wait_port("nginx", pn);
    write(d, "egress.toml", &egress_config(&s, ""));
    let check = certgate(d, &["check", "--config", "egress.toml"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        said.contains(
            "egress.rule.local: its hosts are outside the interception CA's name constraints"
        ),
        "{said}"
    );
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let url = format!("https://localhost:{pn}/");
    // Trusting the interception CA only: the real server's certificate shows, so it fails.
    let (code, body) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
    assert_eq!(code, 0, "not intercepted: {body}");
    assert!(body.contains("CERTIFICATE_VERIFY_FAILED"), "{body}");
    // Trusting the real server's CA: it answers, and it got no client certificate.
    let (code, body) = get(&python, d, pp, "requests", &url, "a-root.pem");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("verify=NONE"), "{body}");

    // The same rules with a CA made from them: intercepted, with the rule's identity.
    drop(proxy);
    let made = certgate(
        d,
        &[
            "egress",
            "ca",
            "--dir",
            "egress-ca",
            "--config",
            "egress.toml",
            "--force",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let (code, body) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("verify=SUCCESS"), "{body}");
}
