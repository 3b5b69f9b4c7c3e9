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
use crate::revocation::{eventually, metric};
use crate::server::Serve;
use crate::{certgate_ok, free_port, text, wait_port};

fn write(d: &Path, name: &str, bytes: &[u8]) {
    if let Some(parent) = d.join(name).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(d.join(name), bytes).unwrap();
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

/// A log served by certgate, alice's and bob's signing keys, and `policy.toml` trusting both.
struct Published {
    dir: tempfile::TempDir,
    log: Option<Serve>,
    log_url: String,
}

fn publish_setup() -> Published {
    let (dir, _pki) = setup();
    let d = dir.path();
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
    Published {
        dir,
        log: Some(log),
        log_url,
    }
}

/// `certgate trust VERB ARGS --key WHO.key ...` against the log; fails the test on failure.
fn trust(d: &Path, log_url: &str, verb: &str, args: &[&str], who: &str) {
    let key = format!("{who}.key");
    let mut all = vec!["trust", verb];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--key",
        &key,
        "--log",
        log_url,
        "--ca",
        "root.pem",
        "--tls-cert",
        "publisher.pem",
        "--tls-key",
        "publisher.key",
    ]);
    let out = crate::certgate(d, all.as_slice());
    assert!(out.status.success(), "trust {verb}: {}", text(&out));
}

#[test]
fn downloads_through_the_gate_are_delivered_only_when_trusted() {
    let Some(python) = python_with(&["requests"]) else {
        return;
    };
    let nginx = require_peer!("nginx");
    let curl_bin = require_peer!("curl");
    let mut p = publish_setup();
    let d = p.dir.path();
    let log_url = p.log_url.clone();
    // The release files: 1 MiB so that they stream in many chunks.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    write(d, "www/releases/good.tar", &big);
    write(d, "www/releases/unsigned.tar", b"never signed\n");
    write(d, "www/releases/bobs.tar", b"signed by bob\n");
    write(d, "www/releases/changed.tar", b"the signed bytes\n");
    write(d, "www/other/free.txt", b"not gated\n");
    let sign = |file: &str, who: &str| {
        trust(
            d,
            &log_url,
            "sign",
            &[&format!("www/releases/{file}"), "--name", file],
            who,
        );
    };
    sign("good.tar", "alice");
    sign("bobs.tar", "bob");
    sign("changed.tar", "alice");
    trust(d, &log_url, "revoke-key", &[], "bob");
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
    // An upstream that answers HTTP/1.0 and ends each body by closing (no length, no chunks).
    let openssl = require_peer!("openssl");
    let ps = free_port();
    let _s_server = crate::Peer(
        Command::new(&openssl)
            .current_dir(d.join("www"))
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{ps}"))
            .args(["-cert", "../server.pem", "-key", "../server.key"])
            .args(["-cert_chain", "../server.pem"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port("openssl s_server", ps);
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
  [[egress.rule]]
  name = "close-delimited"
  url = "https://localhost:{ps}/"
  trust = "servers"
  trust_policy = "policy.toml"
  trust_log_ca = ["root.pem"]
  verify = ["https://localhost:{ps}/releases/*"]
"#
        )
        .as_bytes(),
    );
    let proxy = Serve::start_logging(d, "egress.toml", 2, &d.join("egress.log"));
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
    // From an upstream that ends bodies by closing: a refusal must still show as a failure.
    let closing = |path: &str| format!("https://localhost:{ps}{path}");
    let (code, got) = curl(&curl_bin, d, pp, &closing("/releases/good.tar"), &[]);
    assert_eq!(
        (code, got.len()),
        (0, big.len()),
        "{}",
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
    let (code, got) = curl(&curl_bin, d, pp, &closing("/releases/changed.tar"), &[]);
    assert_ne!(code, 0, "a refused close-delimited download must fail");
    assert!(got.len() < 30);
    // An HTTP/1.0 app could not tell a cut download from a complete one: 505.
    let (code, _) = curl(
        &curl_bin,
        d,
        pp,
        &plain("/releases/good.tar"),
        &["-0", "-f"],
    );
    assert_eq!(code, 22, "HTTP/1.0 to a gated URL is refused");
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
    // And certgate's log says which download was refused, and why.
    let log = std::fs::read_to_string(d.join("egress.log")).unwrap();
    let refusal = |file: &str, status: &str, why: &str| {
        log.lines().any(|l| {
            l.contains("content trust: download refused")
                && l.contains(&format!("/releases/{file}"))
                && l.contains(&format!("\"status\":\"{status}\""))
                && l.contains(why)
        })
    };
    assert!(
        refusal("unsigned.tar", "UNKNOWN", "no statement about it"),
        "{log}"
    );
    assert!(
        refusal("bobs.tar", "REVOKED", "revoked their keys"),
        "{log}"
    );
    assert!(
        refusal("changed.tar", "UNKNOWN", "no statement about it"),
        "{log}"
    );

    // The log goes away: once the gate's sync fails (no max_staleness in the policy), even the
    // signed file is refused.
    drop(p.log.take());
    eventually(
        "the gate refuses without its log",
        Duration::from_secs(30),
        || curl(&curl_bin, d, pp, &url("/releases/good.tar"), &[]).0 != 0,
    );
}

/// Writes an OCI image layout in `dir` (tag `latest`) whose one layer holds a file saying
/// `text`.
const OCI_LAYOUT: &str = r#"
import gzip, hashlib, io, json, os, sys, tarfile
out, text = sys.argv[1], sys.argv[2].encode()
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(data)
    return "sha256:" + d, len(data)
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w") as t:
    info = tarfile.TarInfo("hello.txt"); info.size = len(text); info.mtime = 0
    t.addfile(info, io.BytesIO(text))
layer = gzip.compress(raw.getvalue(), mtime=0)
layer_digest, layer_size = blob(layer)
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}).encode()
config_digest, config_size = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}]}).encode()
manifest_digest, manifest_size = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": manifest_digest, "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
    open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
"#;

fn skopeo(skopeo: &Path, d: &Path, args: &[&str], proxy: Option<u16>) -> Output {
    let mut cmd = Command::new(skopeo);
    cmd.current_dir(d)
        .arg("--insecure-policy")
        .args(args)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    if let Some(p) = proxy {
        cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{p}"));
    }
    cmd.output().unwrap()
}

/// skopeo pulls from a real registry (Debian's `docker-registry`) through certgate as its
/// `HTTPS_PROXY`: the image whose manifest digest was signed copies; an unsigned one gets 403;
/// once the tag is moved to the unsigned manifest, pulling the tag fails too.
#[test]
fn oci_pulls_through_the_gate_need_a_trusted_manifest() {
    let Some(python) = python_with(&["json"]) else {
        return;
    };
    let registry = require_peer!("docker-registry");
    let skopeo_bin = require_peer!("skopeo");
    let p = publish_setup();
    let d = p.dir.path();
    let pr = free_port();
    write(
        d,
        "registry.yml",
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {dir}/registry-data\nhttp:\n  addr: 127.0.0.1:{pr}\n  tls:\n    certificate: {dir}/server.pem\n    key: {dir}/server.key\n",
            dir = d.display()
        )
        .as_bytes(),
    );
    let registry_log = std::fs::File::create(d.join("registry.log")).unwrap();
    let _registry = crate::Peer(
        Command::new(&registry)
            .current_dir(d)
            .args(["serve", "registry.yml"])
            .stdout(registry_log.try_clone().unwrap())
            .stderr(registry_log)
            .spawn()
            .unwrap(),
    );
    wait_port("docker-registry", pr);
    // Two images, pushed straight to the registry (trusting its CA).
    write(
        d,
        "certs/ca.crt",
        &std::fs::read(d.join("root.pem")).unwrap(),
    );
    for (name, says) in [("one", "signed image"), ("two", "unsigned image")] {
        let made = Command::new(&python)
            .current_dir(d)
            .args(["-c", OCI_LAYOUT, &format!("img-{name}"), says])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let pushed = skopeo(
            &skopeo_bin,
            d,
            &[
                "copy",
                "--dest-cert-dir",
                "certs",
                &format!("oci:img-{name}:latest"),
                &format!("docker://127.0.0.1:{pr}/app:{name}"),
            ],
            None,
        );
        assert!(pushed.status.success(), "push {name}: {}", text(&pushed));
    }
    let manifest_digest = |tag: &str| {
        let raw = skopeo(
            &skopeo_bin,
            d,
            &[
                "inspect",
                "--raw",
                "--cert-dir",
                "certs",
                &format!("docker://127.0.0.1:{pr}/app:{tag}"),
            ],
            None,
        );
        assert!(raw.status.success(), "{}", text(&raw));
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw.stdout)))
    };
    let one = manifest_digest("one");
    trust(
        d,
        &p.log_url,
        "sign",
        &["--digest", &one, "--kind", "oci", "--name", "app"],
        "alice",
    );

    // certgate in front: the registry is `registry.test` to skopeo (a name Go proxies; it never
    // resolves it), reached at 127.0.0.1 and verified as `localhost`.
    write(
        d,
        "egress.toml",
        format!(
            r#"version = 1
[[trust]]
name = "servers"
ca = ["root.pem"]
[egress]
listen = "127.0.0.1:0"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "registry"
  url = "https://registry.test:{pr}/"
  trust = "servers"
  sni = "localhost"
  connect_to = "127.0.0.1:{pr}"
  trust_policy = "policy.toml"
  trust_log_ca = ["root.pem"]
  oci = ["registry.test:{pr}"]
"#
        )
        .as_bytes(),
    );
    certgate_ok(
        d,
        [
            "egress",
            "ca",
            "--dir",
            "egress-ca",
            "--config",
            "egress.toml",
        ]
        .as_slice(),
    );
    write(
        d,
        "egress-certs/ca.crt",
        &std::fs::read(d.join("egress-ca/ca.pem")).unwrap(),
    );
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let pull = |tag: &str, to: &str| {
        skopeo(
            &skopeo_bin,
            d,
            &[
                "copy",
                "--src-cert-dir",
                "egress-certs",
                &format!("docker://registry.test:{pr}/app:{tag}"),
                &format!("dir:{to}"),
            ],
            Some(pp),
        )
    };
    let out = pull("one", "pulled-one");
    assert!(out.status.success(), "the signed image: {}", text(&out));
    assert!(d.join("pulled-one/manifest.json").exists());
    // Untrusting the image stops its layers too, not only its manifest.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("pulled-one/manifest.json")).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |what: &str| {
        let out = Command::new("curl")
            .current_dir(d)
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                "egress-ca/ca.pem",
                "-x",
            ])
            .arg(format!("http://127.0.0.1:{pp}"))
            .arg(format!("https://registry.test:{pr}/v2/app/blobs/{layer}"))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{what}: layer {code}");
        code
    };
    assert_eq!(blob("trusted"), "200");
    trust(
        d,
        &p.log_url,
        "untrust",
        &["--digest", &one, "--kind", "oci", "--name", "app"],
        "alice",
    );
    eventually(
        "the untrusted image's layer is refused",
        Duration::from_secs(30),
        || blob("untrusted") == "403",
    );
    let out = pull("two", "pulled-two");
    assert!(!out.status.success(), "the unsigned image must fail");
    let said = text(&out);
    assert!(
        said.contains("403") || said.contains("Forbidden") || said.contains("denied"),
        "{said}"
    );
    // The tag `one` moved to the unsigned manifest: refused.
    let moved = skopeo(
        &skopeo_bin,
        d,
        &[
            "copy",
            "--dest-cert-dir",
            "certs",
            "oci:img-two:latest",
            &format!("docker://127.0.0.1:{pr}/app:one"),
        ],
        None,
    );
    assert!(moved.status.success(), "{}", text(&moved));
    let out = pull("one", "pulled-moved");
    assert!(
        !out.status.success(),
        "a moved tag must fail: {}",
        text(&out)
    );
}

/// A hostile upstream (registry and download server in one): every trick answers with bytes
/// that were never signed. `/v2/...` paths play a registry; the rest a download server.
const HOSTILE: &str = r#"
import hashlib, json, socket, ssl, sys, threading
port = int(sys.argv[1])
evil = b"EVIL payload never signed\n"
evil_layer = b"EVIL layer bytes\n"
layer_digest = "sha256:" + hashlib.sha256(evil_layer).hexdigest()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer_digest, "size": len(evil_layer)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(evil_layer)}]}).encode()
def answer(path):
    if path.startswith("/v2/redir/app/manifests/"):
        return "302 Found", [("Location", "/files/manifest")], evil
    if path == "/files/manifest":
        return "200 OK", [("Content-Type", "application/vnd.oci.image.manifest.v1+json")], manifest
    if path.startswith("/v2/redir/app/blobs/"):
        return "307 Temporary Redirect", [("Location", "/files/blob")], b""
    if path == "/files/blob" or "/blobs/" in path:
        return "200 OK", [], evil_layer
    if path == "/releases/dot.tar":
        return "302 Found", [("Location", "https://localhost.:%d/releases/evil.tar" % port)], b""
    if path == "/releases/plain.tar":
        return "302 Found", [("Location", "http://localhost:%d/releases/evil.tar" % port)], b""
    if path == "/releases/away.tar":
        return "302 Found", [("Location", "https://elsewhere.example/evil.tar")], evil
    if path == "/releases/r404.tar":
        return "404 Not Found", [], evil
    if path == "/releases/query.tar":
        return "302 Found", [("Location", "/files/evil?v=%7e")], b""
    if path == "/releases/two.tar":
        return "302 Found", [("Location", "/releases/evil.tar"), ("Location", "/files/evil")], b""
    if path == "/releases/encodings.tar":
        return "200 OK", [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")], evil
    if path == "/releases/empty.tar":
        return "200 OK", [], b""
    return "200 OK", [], evil
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
def serve(conn):
    try:
        s = ctx.wrap_socket(conn, server_side=True)
        s.settimeout(5)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1].decode().split("?")[0]
            status, headers, body = answer(path)
            out = "HTTP/1.1 %s\r\nContent-Length: %d\r\n" % (status, len(body))
            out += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
            # The last byte alone: what a gate holds back is as small as the server likes.
            s.sendall(out.encode() + body[:-1])
            s.sendall(body[-1:])
    except Exception:
        pass
    finally:
        conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// The tricks a black-box attack found, against a hostile upstream: each must end in a refusal
/// or a failed download, never in unsigned bytes delivered as a success.
#[test]
fn a_hostile_upstream_cannot_get_unsigned_bytes_through() {
    let Some(python) = python_with(&["json", "requests"]) else {
        return;
    };
    let curl_bin = require_peer!("curl");
    let p = publish_setup();
    let d = p.dir.path();
    let ph = free_port();
    let _hostile = crate::Peer(
        Command::new(&python)
            .current_dir(d)
            .args(["-c", HOSTILE, &ph.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port("hostile upstream", ph);
    // A port a verify pattern names but no rule intercepts (nothing listens there).
    let unruled = free_port();
    write(
        d,
        "egress.toml",
        format!(
            r#"version = 1
[[trust]]
name = "servers"
ca = ["root.pem"]
[egress]
listen = "127.0.0.1:0"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "hostile"
  url = "https://localhost:{ph}/"
  trust = "servers"
  trust_policy = "policy.toml"
  trust_log_ca = ["root.pem"]
  verify = ["https://localhost:{ph}/releases/*", "https://localhost:{unruled}/*"]
  oci = ["localhost:{ph}"]
  # A more specific rule without a gate, under the gated prefix: the gate still applies.
  [[egress.rule]]
  name = "special"
  url = "https://localhost:{ph}/releases/special/"
  trust = "servers"
"#
        )
        .as_bytes(),
    );
    certgate_ok(
        d,
        [
            "egress",
            "ca",
            "--dir",
            "egress-ca",
            "--config",
            "egress.toml",
        ]
        .as_slice(),
    );
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let url = |path: &str| format!("https://localhost:{ph}{path}");
    let evil = b"EVIL payload never signed\n".as_slice();
    for path in [
        "/releases/evil.tar",
        "/releases/special/evil.tar",
        "/releases/empty.tar",
        "/releases/%72eleases/../evil.tar",
    ] {
        let (code, got) = curl(&curl_bin, d, pp, &url(path), &[]);
        assert_ne!(code, 0, "{path}: unsigned bytes delivered as a success");
        assert!(got.len() < evil.len(), "{path}");
    }
    // Redirects: to a host certgate would not see, refused; to `host.`, followed and judged.
    let (code, _) = curl(&curl_bin, d, pp, &url("/releases/away.tar"), &["-f"]);
    assert_eq!(code, 22, "a redirect to an unchecked host is refused");
    // Inside CONNECT, a redirect to http:// is refused: an app with only HTTPS_PROXY would
    // fetch it without certgate.
    let (code, _) = curl(&curl_bin, d, pp, &url("/releases/plain.tar"), &["-f"]);
    assert_eq!(
        code, 22,
        "a redirect to http:// from an intercepted download is refused"
    );
    let (code, got) = curl(&curl_bin, d, pp, &url("/releases/dot.tar"), &["-L"]);
    assert!(
        code != 0 && got.len() < evil.len(),
        "followed redirect delivered unsigned bytes"
    );
    // `https://localhost.:port` asked directly: the same host, intercepted and judged.
    let (code, got) = curl(
        &curl_bin,
        d,
        pp,
        &format!("https://localhost.:{ph}/releases/evil.tar"),
        &[],
    );
    assert!(
        code != 0 && got.len() < evil.len(),
        "a trailing dot must not skip the gate"
    );
    // A client that rewrites the query it follows (requests turns `%7e` into `~`) is still
    // judged; two Locations are refused; so is a second, non-identity Content-Encoding.
    let followed = python_get(&python, d, pp, &url("/releases/query.tar"));
    assert!(followed.starts_with("failed"), "{followed}");
    for path in ["/releases/two.tar", "/releases/encodings.tar"] {
        let (code, got) = curl(&curl_bin, d, pp, &url(path), &["-L", "-f"]);
        assert_ne!(code, 0, "{path}");
        assert!(!got.windows(4).any(|w| w == b"EVIL"), "{path}");
    }
    // A gated origin that no rule intercepts is never tunneled blind: the CONNECT is refused.
    let out = Command::new(&curl_bin)
        .current_dir(d)
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_connect}", "-x"])
        .arg(format!("http://127.0.0.1:{pp}"))
        .arg(format!("https://localhost:{unruled}/x"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
    // Schemes other than http and https are not proxied (they were sent on, unjudged).
    let out = Command::new(&curl_bin)
        .current_dir(d)
        .args(["-sS", "-o", "ftp.out", "-w", "%{http_code}"])
        .arg(format!("ftp://localhost:{ph}/releases/evil.tar"))
        .env("ftp_proxy", format!("http://127.0.0.1:{pp}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400", "{out:?}");
    // An error status keeps its status, never the unsigned body.
    let (code, got) = curl(&curl_bin, d, pp, &url("/releases/r404.tar"), &[]);
    assert_eq!(code, 0);
    assert!(
        !got.windows(4).any(|w| w == b"EVIL"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Registry: a manifest answered by a redirect to a path outside the API is still judged;
    // blobs in odd spellings or never named by a trusted manifest are refused.
    for path in [
        "/v2/redir/app/manifests/evil",
        "/v2/app/blobs/sha256%3Aa9c6e1d5b1a4f5c8e2d3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
        "/v2/app/blobs/SHA256:A9C6E1D5B1A4F5C8E2D3B4A5968778695A4B3C2D1E0F9A8B7C6D5E4F3A2B1C0D",
        "/v2/app/blobs/sha512:00",
        "/v2/app/blobs/foo",
    ] {
        let (code, got) = curl(&curl_bin, d, pp, &url(path), &["-L", "-f"]);
        assert_ne!(code, 0, "{path}");
        assert!(!got.windows(4).any(|w| w == b"EVIL"), "{path}");
    }
    drop(p);
}
