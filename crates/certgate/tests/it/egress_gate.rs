//! The content-trust gate on egress, against real peers: nginx serves release files over https;
//! `curl` and Python `requests` download them through certgate as `HTTPS_PROXY` (intercepted)
//! and `http_proxy` (originated). The signed file arrives whole; an unsigned one, one whose
//! signer's key was revoked, and one changed on the server after signing are cut short, with the
//! verdict counted; a file outside the gated URLs passes; a range request still gets the whole,
//! checked file; and once the log cannot be reached, even the signed file is refused.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use certgate_testkit::require_peer;
use sha2::Digest as _;

use crate::egress::python_with;
use crate::log::{ORIGIN, log_config, setup, vkey};
use crate::revocation::eventually;
use crate::server::Serve;
use crate::{certgate_ok, free_port, text, wait_port};

fn write(d: &Path, name: &str, bytes: &[u8]) {
    if let Some(parent) = d.join(name).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(d.join(name), bytes).unwrap();
}

fn metric(admin: u16, name: &str, label: &str) -> f64 {
    crate::admin_get(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `curl` through the proxy: its exit code and the bytes it wrote.
fn curl(curl: &Path, d: &Path, proxy: u16, url: &str, extra: &[&str]) -> (i32, Vec<u8>) {
    let out_file = d.join("download.out");
    let _ = std::fs::remove_file(&out_file);
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let out: Output = Command::new(curl)
        .current_dir(d)
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            "egress-ca/ca.pem",
            "-o",
        ])
        .arg(&out_file)
        .args(extra)
        .arg(url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        std::fs::read(&out_file).unwrap_or_default(),
    )
}

/// Python `requests` through the proxy: `ok <sha256>` or the exception's name.
const REQUESTS: &str = r#"
import hashlib, sys, requests
try:
    r = requests.get(sys.argv[1], verify="egress-ca/ca.pem", timeout=20)
    r.raise_for_status()
    print("ok", hashlib.sha256(r.content).hexdigest())
except Exception as e:
    print("failed", type(e).__name__)
"#;

fn python_get(python: &Path, d: &Path, proxy: u16, url: &str) -> String {
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let out = Command::new(python)
        .current_dir(d)
        .args(["-c", REQUESTS, url])
        .env("HTTPS_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn downloads_through_the_gate_are_delivered_only_when_trusted() {
    let Some(python) = python_with(&["requests"]) else {
        return;
    };
    let nginx = require_peer!("nginx");
    let curl_bin = require_peer!("curl");
    let (dir, _pki) = setup();
    let d = dir.path();
    // The log, and two publishers: alice, and bob (whose key is revoked below).
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    write(d, "log.toml", log_config("logdata").as_bytes());
    let log = Serve::start(d, "log.toml", 1);
    let log_url = format!("https://localhost:{}", log.port("log"));
    for who in ["alice", "bob"] {
        certgate_ok(
            d,
            [
                "trust",
                "keygen",
                "--name",
                &format!("{who}.example"),
                "--out",
                &format!("{who}.key"),
            ]
            .as_slice(),
        );
    }
    let pubkey = |who: &str| {
        std::fs::read_to_string(d.join(format!("{who}.key.pub")))
            .unwrap()
            .trim()
            .to_owned()
    };
    write(
        d,
        "policy.toml",
        format!(
            "version = 1\nlog_keys = [\"{}\"]\nlog_url = \"{log_url}\"\n[[signer]]\nkey = \"{}\"\nnames = [\"*\"]\n[[signer]]\nkey = \"{}\"\nnames = [\"*\"]\n",
            vkey(d, "logdata"),
            pubkey("alice"),
            pubkey("bob")
        )
        .as_bytes(),
    );
    // The release files: 1 MiB so that they stream in many chunks.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    write(d, "www/releases/good.tar", &big);
    write(d, "www/releases/unsigned.tar", b"never signed\n");
    write(d, "www/releases/bobs.tar", b"signed by bob\n");
    write(d, "www/releases/changed.tar", b"the signed bytes\n");
    write(d, "www/other/free.txt", b"not gated\n");
    let sign = |file: &str, who: &str| {
        let out = crate::certgate(
            d,
            [
                "trust",
                "sign",
                &format!("www/releases/{file}"),
                "--name",
                file,
                "--key",
                &format!("{who}.key"),
                "--log",
                &log_url,
                "--ca",
                "root.pem",
                "--tls-cert",
                "publisher.pem",
                "--tls-key",
                "publisher.key",
            ]
            .as_slice(),
        );
        assert!(out.status.success(), "sign {file}: {}", text(&out));
    };
    sign("good.tar", "alice");
    sign("bobs.tar", "bob");
    sign("changed.tar", "alice");
    let out = crate::certgate(
        d,
        [
            "trust",
            "revoke-key",
            "--key",
            "bob.key",
            "--log",
            &log_url,
            "--ca",
            "root.pem",
            "--tls-cert",
            "publisher.pem",
            "--tls-key",
            "publisher.key",
        ]
        .as_slice(),
    );
    assert!(out.status.success(), "{}", text(&out));
    write(
        d,
        "www/releases/changed.tar",
        b"the bytes a mirror swapped in\n",
    );

    let pn = free_port();
    let _nginx = crate::start_nginx(
        &nginx,
        d,
        &format!(
            "  server {{ listen 127.0.0.1:{pn} ssl; ssl_certificate {dir}/server.pem; ssl_certificate_key {dir}/server.key; root {dir}/www; }}\n",
            dir = d.display()
        ),
    );
    wait_port("nginx", pn);
    certgate_ok(
        d,
        ["egress", "ca", "--dir", "egress-ca", "--host", "localhost"].as_slice(),
    );
    write(
        d,
        "egress.toml",
        format!(
            r#"version = 1
[[trust]]
name = "servers"
ca = ["root.pem"]
[admin]
listen = "127.0.0.1:0"
[egress]
listen = "127.0.0.1:0"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "releases"
  url = "https://localhost:{pn}/"
  trust = "servers"
  trust_policy = "policy.toml"
  trust_log_ca = ["root.pem"]
  verify = ["https://localhost:{pn}/releases/*"]
"#
        )
        .as_bytes(),
    );
    let proxy = Serve::start(d, "egress.toml", 2);
    let (pp, admin) = (proxy.port("egress"), proxy.port("admin"));
    let url = |path: &str| format!("https://localhost:{pn}{path}");

    // The signed file, intercepted: whole and identical.
    let (code, got) = curl(&curl_bin, d, pp, &url("/releases/good.tar"), &[]);
    assert_eq!(code, 0);
    assert!(got == big, "{} bytes of {}", got.len(), big.len());
    // Everything else under /releases is cut short: curl fails, with less than the file.
    for (path, size) in [
        ("/releases/unsigned.tar", 13),
        ("/releases/bobs.tar", 14),
        ("/releases/changed.tar", 30),
    ] {
        let (code, got) = curl(&curl_bin, d, pp, &url(path), &[]);
        assert_ne!(code, 0, "{path} must fail");
        assert!(got.len() < size, "{path}: {} bytes delivered", got.len());
    }
    // Another spelling of a gated path is gated too.
    let (code, _) = curl(
        &curl_bin,
        d,
        pp,
        &url("/other/../releases/unsigned.tar"),
        &["--path-as-is"],
    );
    assert_ne!(code, 0, "a dot-segment spelling must not pass the gate");
    let (code, _) = curl(&curl_bin, d, pp, &url("/%72eleases/unsigned.tar"), &[]);
    assert_ne!(code, 0, "a percent-encoded spelling must not pass the gate");
    // Outside the gated URLs: delivered.
    let (code, got) = curl(&curl_bin, d, pp, &url("/other/free.txt"), &[]);
    assert_eq!((code, got.as_slice()), (0, b"not gated\n".as_slice()));
    // A range request gets the whole file, checked (a part could not be).
    let (code, got) = curl(
        &curl_bin,
        d,
        pp,
        &url("/releases/good.tar"),
        &["-r", "0-99"],
    );
    assert_eq!((code, got.len()), (0, big.len()));
    // Originated (plain http:// to the proxy) is gated the same way.
    let plain = |path: &str| format!("http://localhost:{pn}{path}");
    let (code, got) = curl(&curl_bin, d, pp, &plain("/releases/good.tar"), &[]);
    assert_eq!((code, got.len()), (0, big.len()));
    let (code, _) = curl(&curl_bin, d, pp, &plain("/releases/unsigned.tar"), &[]);
    assert_ne!(code, 0);
    // Python requests: the same.
    let good = hex::encode(sha2::Sha256::digest(&big));
    assert_eq!(
        python_get(&python, d, pp, &url("/releases/good.tar")),
        format!("ok {good}")
    );
    let failed = python_get(&python, d, pp, &url("/releases/changed.tar"));
    assert!(failed.starts_with("failed"), "{failed}");

    // The verdicts are counted by status.
    let verdicts = |status: &str| {
        metric(
            admin,
            "certgate_egress_trust_verdicts_total",
            &format!("status=\"{status}\""),
        )
    };
    assert!(verdicts("TRUSTED") >= 4.0, "{}", verdicts("TRUSTED"));
    assert!(verdicts("REVOKED") >= 1.0);
    assert!(verdicts("UNKNOWN") >= 3.0);

    // The log goes away: once the gate's sync fails (no max_staleness in the policy), even the
    // signed file is refused.
    drop(log);
    eventually(
        "the gate refuses without its log",
        Duration::from_secs(30),
        || curl(&curl_bin, d, pp, &url("/releases/good.tar"), &[]).0 != 0,
    );
}
