//! Claims of docs/config.md that need a test of their own: the note for a non-loopback admin
//! address, the 14-day expiry warning, `max_header_bytes`, `x_forwarded = false`, and
//! `min_tls = "1.3"` refusing TLS 1.2.

use std::process::Command;

use certgate_testkit::{Spec, TestPki, require_peer, signed_by, tempdir};

use crate::server::{Serve, Upstream};
use crate::{certgate, text};

fn base(d: &std::path::Path, pki: &TestPki) {
    std::fs::write(d.join("root.pem"), &pki.root.pem).unwrap();
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", pki.server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &pki.server.key_pem).unwrap();
}

#[test]
fn check_notes_public_admin_and_soon_expiring_certificates() {
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    base(d, &pki);
    let mut soon = Spec::server("soon");
    soon.not_after = time::Duration::days(10);
    let soon = signed_by(&soon, &pki.intermediate);
    std::fs::write(d.join("soon.pem"), &soon.pem).unwrap();
    std::fs::write(d.join("soon.key"), &soon.key_pem).unwrap();
    std::fs::write(
        d.join("c.toml"),
        r#"version = 1
[[identity]]
name = "soon"
cert = "soon.pem"
key = "soon.key"
[admin]
listen = "0.0.0.0:0"
"#,
    )
    .unwrap();
    let out = certgate(d, "check --config c.toml");
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("is not a loopback address"), "{t}");
    assert!(
        t.contains("the certificate expires in 9 days")
            || t.contains("the certificate expires in 10 days"),
        "{t}"
    );
}

#[test]
fn header_limit_x_forwarded_off_and_tls13_only() {
    let curl_bin = require_peer!("curl");
    let python = require_peer!("python3");
    let openssl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    base(d, &pki);
    let upstream = Upstream::start(&python);
    let config = format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "none"
min_tls = "1.3"
x_forwarded = false
max_header_bytes = 2048
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
        upstream.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    // No X-Forwarded-* or Forwarded header reaches the upstream.
    let (code, body) = crate::https_get(&curl_bin, d, port, "/", "none", &["--http1.1"]);
    assert_eq!(code, "200", "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(
        !lower.contains("x-forwarded-for") && !lower.contains("\"forwarded\""),
        "{body}"
    );
    // A request head over max_header_bytes is refused.
    let big = format!("X-Big: {}", "a".repeat(4000));
    let (code, body) =
        crate::https_get(&curl_bin, d, port, "/", "none", &["--http1.1", "-H", &big]);
    assert_eq!(code, "431", "{body}");
    // TLS 1.2 is refused at the handshake; TLS 1.3 works.
    let connect = format!("127.0.0.1:{port}");
    let run = |version: &str| {
        Command::new(&openssl)
            .current_dir(d)
            .args([
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                "root.pem",
                version,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let tls12 = run("-tls1_2");
    let t12 = format!(
        "{}{}",
        String::from_utf8_lossy(&tls12.stdout),
        String::from_utf8_lossy(&tls12.stderr)
    );
    assert!(
        !tls12.status.success() || !t12.contains("Protocol  : TLSv1.2"),
        "{t12}"
    );
    assert!(
        t12.contains("alert")
            || t12.contains("no protocols available")
            || t12.contains("handshake failure"),
        "{t12}"
    );
    let tls13 = run("-tls1_3");
    let t13 = String::from_utf8_lossy(&tls13.stdout);
    assert!(t13.contains("TLSv1.3"), "{t13}");
}
