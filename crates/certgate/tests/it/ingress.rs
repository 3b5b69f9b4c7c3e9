//! The HTTP ingress against real clients on loopback: the client-auth matrix (curl over
//! HTTP/1.1 and HTTP/2, Python requests, openssl s_client), possession (a rustls client whose
//! key does not match its certificate), header spoofing, and resumption.

use std::path::Path;
use std::process::{Command, Output};

use certgate_testkit::{
    Spec, TestPki, crl, require_peer, self_signed, serial_of, signed_by, tempdir,
};
use time::Duration;

use crate::server::{Serve, Upstream};

/// Writes the test PKI and client certificates of every kind into `d`.
pub(crate) fn write_pki(d: &Path) -> TestPki {
    let pki = TestPki::new();
    std::fs::write(d.join("root.pem"), &pki.root.pem).unwrap();
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", pki.server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &pki.server.key_pem).unwrap();
    let write_client = |name: &str, c: &certgate_testkit::Cert, with_intermediate: bool| {
        let chain = if with_intermediate {
            format!("{}{}", c.pem, pki.intermediate.pem)
        } else {
            c.pem.clone()
        };
        std::fs::write(d.join(format!("{name}.pem")), chain).unwrap();
        std::fs::write(d.join(format!("{name}.key")), &c.key_pem).unwrap();
    };
    write_client("good", &pki.client, true);
    let mut expired = Spec::client("expired");
    expired.not_before = Duration::days(-20);
    expired.not_after = Duration::days(-1);
    write_client("expired", &signed_by(&expired, &pki.intermediate), true);
    let revoked = signed_by(&Spec::client("revoked"), &pki.intermediate);
    write_client("revoked", &revoked, true);
    std::fs::write(
        d.join("int.crl"),
        crl(&pki.intermediate, &[serial_of(&revoked)], 7),
    )
    .unwrap();
    write_client(
        "wrong-eku",
        &signed_by(&Spec::server("wrong-eku"), &pki.intermediate),
        true,
    );
    write_client(
        "self-signed",
        &self_signed(&Spec::client("self-signed")),
        false,
    );
    pki
}

const MODES: [&str; 5] = [
    "none",
    "request",
    "require",
    "verify_if_given",
    "require_and_verify",
];

fn matrix_config(upstream: &str) -> String {
    let mut c = String::from(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["int.crl"]
"#,
    );
    for mode in MODES {
        c.push_str(&format!(
            r#"
[[ingress]]
name = "{mode}"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "{mode}"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "{upstream}"
"#
        ));
    }
    c
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Handshake refused.
    Refused,
    /// Request served without a client identity.
    Anonymous,
    /// Served with a verified identity.
    Verified,
    /// Served with an identity that failed verification for this reason.
    Unverified(&'static str),
}

fn expected(mode: &str, client: &str) -> Outcome {
    use Outcome::*;
    let failure = match client {
        "none" => None,
        "good" => Some(None),
        "self-signed" => Some(Some("unknown_issuer")),
        "expired" => Some(Some("expired")),
        "revoked" => Some(Some("revoked")),
        "wrong-eku" => Some(Some("wrong_usage")),
        _ => unreachable!(),
    };
    match (mode, failure) {
        ("none", _) => Anonymous,
        (_, None) if mode.starts_with("require") => Refused,
        (_, None) => Anonymous,
        (_, Some(None)) => Verified,
        ("request" | "require", Some(Some(reason))) => Unverified(reason),
        (_, Some(Some(_))) => Refused,
    }
}

fn curl(curl: &Path, d: &Path, port: u16, client: &str, http2: bool) -> Output {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/");
    let mut cmd = Command::new(curl);
    cmd.current_dir(d)
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "root.pem",
            "--resolve",
            &resolve,
        ])
        .arg(if http2 { "--http2" } else { "--http1.1" });
    if client != "none" {
        cmd.args([
            "--cert",
            &format!("{client}.pem"),
            "--key",
            &format!("{client}.key"),
        ]);
    }
    cmd.arg(&url).output().unwrap()
}

/// Reads the outcome from the certgate-format headers the echo upstream saw.
fn outcome_of(out: &Output) -> Outcome {
    if !out.status.success() {
        return Outcome::Refused;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let verify = v["forwarded_headers"]["x-client-verify"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match verify.as_str() {
        "NONE" => Outcome::Anonymous,
        "SUCCESS" => Outcome::Verified,
        other => {
            let reason = other.strip_prefix("FAILED:").unwrap_or(other);
            for r in ["unknown_issuer", "expired", "revoked", "wrong_usage"] {
                if r == reason {
                    return Outcome::Unverified(r);
                }
            }
            panic!("unexpected X-Client-Verify {other:?}")
        }
    }
}

#[test]
fn client_auth_matrix_with_curl_http1_and_http2() {
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    std::fs::write(d.join("c.toml"), matrix_config("echo")).unwrap();
    let server = Serve::start(d, "c.toml", MODES.len());
    let mut failures = Vec::new();
    for mode in MODES {
        for client in [
            "none",
            "self-signed",
            "good",
            "expired",
            "revoked",
            "wrong-eku",
        ] {
            for http2 in [false, true] {
                let out = curl(&curl_bin, d, server.port(mode), client, http2);
                let got = outcome_of(&out);
                let want = expected(mode, client);
                if got != want {
                    failures.push(format!(
                        "mode {mode}, client {client}, http2 {http2}: want {want:?}, got {got:?} ({})",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const REQUESTS_CLIENT: &str = r#"
import json, sys, requests
port, client = sys.argv[1], sys.argv[2]
cert = None if client == "none" else (client + ".pem", client + ".key")
try:
    r = requests.get("https://localhost:%s/" % port, verify="root.pem", cert=cert, timeout=10)
    print(r.json()["forwarded_headers"]["x-client-verify"])
except requests.exceptions.RequestException as e:
    print("REFUSED")
"#;

#[test]
fn client_auth_with_python_requests_and_openssl_s_client() {
    let python = require_peer!("python3");
    let ossl = require_peer!("openssl");
    let has_requests = Command::new(&python)
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_requests {
        if certgate_testkit::peers_required() {
            panic!("Python `requests` is required (CERTGATE_REQUIRE_PEERS=1); .ci/run installs it");
        }
        eprintln!("!!!!!!!! SKIPPING: Python `requests` is not installed !!!!!!!!");
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    std::fs::write(d.join("c.toml"), matrix_config("echo")).unwrap();
    let server = Serve::start(d, "c.toml", MODES.len());
    for mode in MODES {
        for client in ["none", "self-signed", "good", "revoked"] {
            let out = Command::new(&python)
                .current_dir(d)
                .args([
                    "-c",
                    REQUESTS_CLIENT,
                    &server.port(mode).to_string(),
                    client,
                ])
                .output()
                .unwrap();
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let want = match expected(mode, client) {
                Outcome::Refused => "REFUSED".to_owned(),
                Outcome::Anonymous => "NONE".to_owned(),
                Outcome::Verified => "SUCCESS".to_owned(),
                Outcome::Unverified(r) => format!("FAILED:{r}"),
            };
            assert_eq!(
                got,
                want,
                "requests: mode {mode}, client {client}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // openssl s_client: the CertificateRequest of a verifying mode names the trusted CA; an
    // accept-any mode names none.
    for (mode, names_ca) in [("require_and_verify", true), ("request", false)] {
        let out = Command::new(&ossl)
            .current_dir(d)
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", server.port(mode)),
                "-servername",
                "localhost",
                "-CAfile",
                "root.pem",
                "-cert",
                "good.pem",
                "-key",
                "good.key",
                "-tls1_3",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{mode}: {text}"
        );
        assert_eq!(
            text.contains("Acceptable client certificate CA names\nCN = certgate test root"),
            names_ca,
            "{mode}: {text}"
        );
    }
}

/// Every identity header certgate knows, in odd case, some repeated, all carrying `FORGED`.
fn forged_headers() -> Vec<String> {
    let mut h: Vec<String> = certgate_pki::forward::IDENTITY_HEADERS
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // Alternate upper and mixed case so no case-sensitive comparison slips through.
            let name = if i % 2 == 0 {
                n.to_ascii_uppercase()
            } else {
                mixed_case(n)
            };
            format!("{name}: FORGED-{i}")
        })
        .collect();
    h.push("client-cert: :Rk9SR0VE:".to_owned());
    h.push("Client-Cert: :Rk9SR0VELTI=:".to_owned());
    h.push("X-Forwarded-Client-Cert: By=spiffe://evil;Hash=FORGED".to_owned());
    h.push("x-amzn-mtls-clientcert-leaf: FORGED-alb".to_owned());
    h.push("Cf-Client-Cert-Der-Base64: FORGED-cf".to_owned());
    h
}

fn mixed_case(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    use base64::Engine as _;
    let curl_bin = require_peer!("curl");
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let upstream = Upstream::start(&python);
    let config = format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["rfc9440", "xfcc", "nginx", "traefik", "certgate"]
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
        upstream.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    for with_cert in [false, true] {
        for http2 in [false, true] {
            let resolve = format!("localhost:{port}:127.0.0.1");
            let mut cmd = Command::new(&curl_bin);
            cmd.current_dir(d)
                .args([
                    "-sS",
                    "-i",
                    "--max-time",
                    "10",
                    "--cacert",
                    "root.pem",
                    "--resolve",
                    &resolve,
                ])
                .arg(if http2 { "--http2" } else { "--http1.1" });
            if with_cert {
                cmd.args(["--cert", "good.pem", "--key", "good.key"]);
            }
            for h in forged_headers() {
                cmd.args(["-H", &h]);
            }
            let out = cmd
                .arg(format!("https://localhost:{port}/"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "curl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (head, body) = text.split_once("\r\n\r\n").expect("response head");
            let head = head.to_ascii_lowercase();
            // Responses: Client-Cert removed, Vary on it rewritten to `*`.
            assert!(
                !head.contains("\nclient-cert:"),
                "Client-Cert leaked into the response:\n{head}"
            );
            assert!(head.contains("\nvary: *"), "Vary not rewritten:\n{head}");
            let v: serde_json::Value = serde_json::from_str(body).expect("upstream JSON");
            let headers: Vec<(String, String)> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_ascii_lowercase(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let ctx = format!("with_cert={with_cert} http2={http2}");
            for (n, value) in &headers {
                assert!(
                    !value.contains("FORGED") && !value.contains("Rk9SR0VE"),
                    "{ctx}: forged {n}: {value} reached the upstream"
                );
            }
            let get = |name: &str| -> Vec<&str> {
                headers
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            if !with_cert {
                assert_eq!(get("x-client-verify"), vec!["NONE"], "{ctx}");
                assert_eq!(get("x-ssl-client-verify"), vec!["NONE"], "{ctx}");
                for n in [
                    "client-cert",
                    "client-cert-chain",
                    "x-forwarded-client-cert",
                    "x-forwarded-tls-client-cert",
                    "x-client-cert-sha256",
                ] {
                    assert!(
                        get(n).is_empty(),
                        "{ctx}: {n} present without a certificate"
                    );
                }
                continue;
            }
            // Exactly one of each header certgate sets, and independent decoders agree with them.
            let leaf = &pki.client.der;
            let b64 = base64::engine::general_purpose::STANDARD;
            let cc = get("client-cert");
            assert_eq!(cc.len(), 1, "{ctx}: Client-Cert {cc:?}");
            let inner = cc[0]
                .strip_prefix(':')
                .and_then(|s| s.strip_suffix(':'))
                .expect("sf-binary");
            assert_eq!(
                &b64.decode(inner).unwrap(),
                leaf,
                "{ctx}: RFC 9440 Client-Cert"
            );
            let chain = get("client-cert-chain");
            assert_eq!(chain.len(), 1, "{ctx}");
            let inter = chain[0].trim_matches(':');
            assert_eq!(
                b64.decode(inter).unwrap(),
                pki.intermediate.der,
                "{ctx}: Client-Cert-Chain"
            );
            assert_eq!(get("x-client-verify"), vec!["SUCCESS"], "{ctx}");
            assert_eq!(get("x-ssl-client-verify"), vec!["SUCCESS"], "{ctx}");
            let escaped = get("x-ssl-client-escaped-cert");
            let pem = percent_encoding::percent_decode_str(escaped[0])
                .decode_utf8()
                .unwrap();
            assert_eq!(
                pem,
                pki.client.pem.replace("\r\n", "\n"),
                "{ctx}: nginx escaped cert"
            );
            let xfcc = get("x-forwarded-client-cert");
            assert_eq!(xfcc.len(), 1, "{ctx}");
            let hash = hex_sha256(leaf);
            assert!(
                xfcc[0].contains(&format!("Hash={hash}")),
                "{ctx}: {}",
                xfcc[0]
            );
            assert!(
                xfcc[0].contains("Subject=\"CN=alice\""),
                "{ctx}: {}",
                xfcc[0]
            );
            let traefik = get("x-forwarded-tls-client-cert");
            let first = traefik[0].split(',').next().unwrap();
            assert_eq!(&b64.decode(first).unwrap(), leaf, "{ctx}: Traefik cert");
            assert_eq!(get("x-client-cert-sha256"), vec![hash.as_str()], "{ctx}");
        }
    }
}

fn hex_sha256(data: &[u8]) -> String {
    certgate_pki::CertHash::of(data).to_hex()
}

/// A rustls client that presents `chain` but signs with `key`: it holds someone else's
/// certificate without that certificate's private key.
#[derive(Debug)]
pub(crate) struct Presents(pub(crate) std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(std::sync::Arc::clone(&self.0))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// GET / over TLS with a rustls client; returns the response text or the error.
fn rustls_get(
    port: u16,
    root: &[u8],
    key: std::sync::Arc<rustls::sign::CertifiedKey>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let config = crate::tls::config(
        root,
        &[version],
        crate::tls::Auth::Resolver(std::sync::Arc::new(Presents(key))),
    );
    let mut tls = crate::tls::connect(port, config, std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn possession_is_proven_in_every_mode_tls12_and_tls13() {
    use std::sync::Arc;
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    std::fs::write(d.join("c.toml"), matrix_config("echo")).unwrap();
    let server = Serve::start(d, "c.toml", MODES.len());
    let chain = vec![
        rustls_pki_types::CertificateDer::from(pki.client.der.clone()),
        rustls_pki_types::CertificateDer::from(pki.intermediate.der.clone()),
    ];
    let signer = |pem: &str| {
        let der = rustls_pki_types::PrivateKeyDer::try_from(
            certgate_pki::pem::parse(pem.as_bytes()).unwrap()[0]
                .der
                .clone(),
        )
        .unwrap();
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).unwrap()
    };
    let stolen = Arc::new(rustls::sign::CertifiedKey::new(
        chain.clone(),
        signer(&pki.server.key_pem),
    ));
    let honest = Arc::new(rustls::sign::CertifiedKey::new(
        chain,
        signer(&pki.client.key_pem),
    ));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for mode in MODES {
            let port = server.port(mode);
            let got = rustls_get(port, &pki.root.der, Arc::clone(&stolen), version);
            if mode == "none" {
                // Not asked for a certificate, the client sends none: served anonymously.
                let body = got.expect("mode none serves anonymously");
                assert!(body.contains("\"x-client-verify\": \"NONE\""), "{body}");
            } else {
                assert!(
                    !got.as_deref().is_ok_and(|b| b.contains("200 OK")),
                    "{version:?} mode {mode}: a certificate without its key was accepted: {got:?}"
                );
            }
            // Control: the same certificate with its own key gets in wherever it is acceptable.
            let ok = rustls_get(port, &pki.root.der, Arc::clone(&honest), version)
                .expect("honest client");
            assert!(
                ok.contains("200 OK"),
                "{version:?} mode {mode}: honest client refused: {ok}"
            );
        }
    }
}

#[test]
fn resumption_is_off_when_client_certificates_are_requested() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    std::fs::write(d.join("c.toml"), matrix_config("echo")).unwrap();
    let server = Serve::start(d, "c.toml", MODES.len());
    for mode in ["request", "require_and_verify"] {
        for tls in ["-tls1_2", "-tls1_3"] {
            let connect = format!("127.0.0.1:{}", server.port(mode));
            let run = |extra: &[&str]| {
                let out = Command::new(&ossl)
                    .current_dir(d)
                    .args([
                        "s_client",
                        "-connect",
                        &connect,
                        "-servername",
                        "localhost",
                        "-CAfile",
                        "root.pem",
                        "-cert",
                        "good.pem",
                        "-key",
                        "good.key",
                        tls,
                    ])
                    .args(extra)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let first = run(&["-sess_out", "sess.pem"]);
            assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
            // With neither a session ID nor a ticket, OpenSSL has no session worth saving.
            if !d.join("sess.pem").exists() {
                continue;
            }
            // Even when the client offers its saved session, the server runs a full handshake
            // (and so re-verifies the certificate against the current trust and CRLs).
            let second = run(&["-sess_in", "sess.pem"]);
            assert!(
                !second.contains("Reused, "),
                "{mode} {tls}: session resumed:\n{second}"
            );
            assert!(second.contains("New, "), "{mode} {tls}:\n{second}");
            let _ = std::fs::remove_file(d.join("sess.pem"));
        }
    }
}

#[test]
fn route_policy_401_403_421_end_to_end() {
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let alice_spki = certgate_pki::Identity::from_der(&pki.client.der)
        .unwrap()
        .spki_sha256;
    let config = format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["int.crl"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
  [[ingress.route]]
  path = "/needs-cert"
  upstream = "echo"
  require_client_cert = true
  [[ingress.route]]
  path = "/verified"
  upstream = "echo"
  require_verified = true
  [[ingress.route]]
  path = "/alice"
  upstream = "echo"
  allow = [{{ cn = "alice", issuer = "CN=certgate test intermediate" }}, {{ spki_sha256 = "{alice_spki}" }}]
  [[ingress.route]]
  path = "/bob"
  upstream = "echo"
  allow = [{{ cn = "bob" }}]
"#
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let get = |client: &str, path: &str, host: Option<&str>| -> (u16, String) {
        let host_header = host.map(|h| format!("Host: {h}"));
        let extra: Vec<&str> = host_header
            .iter()
            .flat_map(|h| ["-H", h.as_str()])
            .collect();
        let (code, body) = crate::https_get(&curl_bin, d, port, path, client, &extra);
        (code.parse().unwrap_or(0), body)
    };
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("none", "/", None, 200, "NONE"),
        (
            "none",
            "/needs-cert",
            None,
            401,
            "a client certificate is required",
        ),
        (
            "self-signed",
            "/needs-cert",
            None,
            200,
            "FAILED:unknown_issuer",
        ),
        (
            "self-signed",
            "/verified",
            None,
            403,
            "the client certificate is not verified (unknown_issuer)",
        ),
        (
            "revoked",
            "/verified",
            None,
            403,
            "the client certificate is not verified (revoked)",
        ),
        ("good", "/verified", None, 200, "SUCCESS"),
        ("good", "/alice", None, 200, "SUCCESS"),
        ("good", "/alice/sub/path", None, 200, "SUCCESS"),
        (
            "good",
            "/bob",
            None,
            403,
            "the client certificate is not allowed on this route",
        ),
        (
            "none",
            "/bob",
            None,
            401,
            "a client certificate is required",
        ),
        // Host differs from SNI on a route that needs a certificate: 421.
        (
            "good",
            "/verified",
            Some("other.example"),
            421,
            "misdirected request",
        ),
        // ... and on a public route too: the SNI names the site the client checked.
        (
            "good",
            "/",
            Some("other.example"),
            421,
            "misdirected request",
        ),
        (
            "none",
            "/",
            Some("other.example"),
            421,
            "misdirected request",
        ),
    ];
    for (client, path, host, status, needle) in cases {
        let (code, body) = get(client, path, *host);
        assert_eq!(code, *status, "{client} {path} {host:?}: {body}");
        assert!(
            body.contains(needle),
            "{client} {path} {host:?}: want {needle:?} in {body}"
        );
    }
    // HEAD over HTTP/2 and HTTP/1.1 to answers certgate makes itself (a denial, the echo
    // service): the status and headers only. A body after a HEAD is an HTTP/2 protocol error.
    for (client, path, status) in [
        ("none", "/bob", 401),
        ("good", "/bob", 403),
        ("none", "/", 200),
    ] {
        for version in ["--http2", "--http1.1"] {
            let (code, body) = get(client, path, None);
            assert_eq!(code, status, "GET {client} {path}: {body}");
            let (code, body) =
                crate::https_get(&curl_bin, d, port, path, client, &[version, "--head"]);
            assert_eq!(
                code,
                status.to_string(),
                "HEAD {version} {client} {path}: {body}"
            );
            assert!(
                !body.contains("certificate") && !body.contains("NONE"),
                "HEAD {version} {client} {path} has a body: {body}"
            );
        }
    }
}

/// An X.509 v1 certificate without extensions, self-signed by OpenSSL: the kind Gemini clients
/// make. Accepted with proof of possession in `request` mode; identity by hash.
#[test]
fn transient_v1_certificates_are_accepted_with_proof_of_possession() {
    let ossl = require_peer!("openssl");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    let o = |args: &str| certgate_testkit::openssl(&ossl, d, args);
    o("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out v1.key");
    o("req -new -key v1.key -subj /CN=gemini-user -out v1.csr");
    o("x509 -req -in v1.csr -signkey v1.key -days 30 -out v1.pem");
    let text = String::from_utf8_lossy(&o("x509 -in v1.pem -noout -text").stdout).into_owned();
    assert!(
        text.contains("Version: 1 (0x0)"),
        "OpenSSL did not make a v1 certificate:\n{text}"
    );
    std::fs::write(d.join("c.toml"), matrix_config("echo")).unwrap();
    let server = Serve::start(d, "c.toml", MODES.len());
    for (mode, tls) in [
        ("request", "--tlsv1.3"),
        ("require", "--tlsv1.2"),
        ("request", "--tlsv1.2"),
    ] {
        let port = server.port(mode);
        let resolve = format!("localhost:{port}:127.0.0.1");
        let mut args = vec![
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "root.pem",
            "--resolve",
            &resolve,
            "--cert",
            "v1.pem",
            "--key",
            "v1.key",
            tls,
        ];
        if tls == "--tlsv1.2" {
            args.extend(["--tls-max", "1.2"]);
        }
        let url = format!("https://localhost:{port}/");
        let out = Command::new(&curl_bin)
            .current_dir(d)
            .args(&args)
            .arg(&url)
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode} {tls}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            body.contains("\"x-client-verify\": \"FAILED:"),
            "{mode} {tls}: {body}"
        );
        let der = certgate_pki::credential::parse_certificates(
            &std::fs::read(d.join("v1.pem")).unwrap(),
            &certgate_pki::Origin::other("v1"),
        )
        .unwrap();
        let hash = certgate_pki::CertHash::of(&der[0]).to_hex();
        assert!(
            body.contains(&hash),
            "{mode} {tls}: identity hash missing: {body}"
        );
    }
    // Verifying modes refuse it.
    let port = server.port("require_and_verify");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = Command::new(&curl_bin)
        .current_dir(d)
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "root.pem",
            "--resolve",
            &resolve,
            "--cert",
            "v1.pem",
            "--key",
            "v1.key",
        ])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a v1 self-signed certificate passed require_and_verify"
    );
}

#[test]
fn stalled_handshakes_and_slowloris_are_cut_while_others_are_served() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration as StdDuration, Instant};
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
handshake_timeout_secs = 1
header_timeout_secs = 1
  [[ingress.route]]
  upstream = "echo"
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    // A client that connects and never starts the handshake.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    // A client that completes TLS, then sends its request head one byte at a time, forever.
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    // And one that sends half a head once, then nothing.
    let mut half = crate::tls::connect(port, config.clone(), StdDuration::from_secs(10)).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();
    half.flush().unwrap();
    let mut slow = crate::tls::connect(port, config, StdDuration::from_millis(200)).unwrap();
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut cut = None;
    let mut buf = [0u8; 512];
    for i in 0..50 {
        // One byte of the head every 200 ms (the read timeout paces the loop).
        if slow
            .write_all(&head[i % head.len()..=i % head.len()])
            .and_then(|()| slow.flush())
            .is_err()
        {
            cut = Some(started.elapsed());
            break;
        }
        match slow.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // EOF, a reset, or hyper's 408 before it closes: the server gave up on us.
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(n == 0 || text.contains("408"), "unexpected answer: {text}");
                cut = Some(started.elapsed());
                break;
            }
            Err(_) => {
                cut = Some(started.elapsed());
                break;
            }
        }
        // Meanwhile a normal client is served.
        if i == 2 {
            let resolve = format!("localhost:{port}:127.0.0.1");
            let out = Command::new(&curl_bin)
                .current_dir(d)
                .args([
                    "-sS",
                    "--max-time",
                    "5",
                    "--cacert",
                    "root.pem",
                    "--resolve",
                    &resolve,
                ])
                .arg(format!("https://localhost:{port}/"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "a normal client was not served: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let cut = cut.expect("the slowloris connection was never cut");
    assert!(
        cut < StdDuration::from_secs(5),
        "slowloris cut only after {cut:?}"
    );
    assert!(
        cut >= StdDuration::from_millis(800),
        "cut before the 1 s header timeout: {cut:?}"
    );
    // The half head was cut by the header timeout too (the idle timeout is 120 s).
    match half.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("half-sent head got an answer: {n} bytes"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "half-sent head still open"
        ),
    }
    assert!(
        started.elapsed() < StdDuration::from_secs(6),
        "half-sent head not cut"
    );
    // The stalled handshake was closed too: EOF or reset, well before our 10 s read timeout.
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "stalled connection got data");
    assert!(
        started.elapsed() < StdDuration::from_secs(6),
        "stalled handshake not cut"
    );
}

/// A Python peer run as `python -c SCRIPT ARGS...` in `dir` that prints one line (its port)
/// once ready; killed when dropped.
struct Script {
    child: std::process::Child,
    line: String,
}

impl Script {
    fn start(python: &Path, dir: &Path, script: &str, args: &[&str]) -> Self {
        use std::io::{BufRead as _, BufReader};
        let mut child = Command::new(python)
            .current_dir(dir)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            line: line.trim().to_owned(),
        }
    }

    fn port(&self) -> u16 {
        self.line.parse().unwrap()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const UPGRADE_UPSTREAM: &str = r#"
import socket, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(1024)
        if not chunk:
            return
        head += chunk
    if b"upgrade: echo" not in head.lower():
        c.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        return
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
    while True:
        data = c.recv(1024)
        if not data:
            break
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn upgrades_pass_through_to_the_upstream() {
    use std::io::{Read as _, Write as _};
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let upstream = Script::start(&python, d, UPGRADE_UPSTREAM, &[]);
    let upstream_port = upstream.port();
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
  [[ingress.route]]
  upstream = "echo"
  [[ingress.route]]
  path = "/ws"
  upstream = "http://127.0.0.1:{upstream_port}"
  upgrades = ["echo"]
"#
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut tls = crate::tls::connect(
        server.port("web"),
        config,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    // A request first, then a pause long enough for the connection to be parked: the upgrade
    // comes to a fresh HTTP/1 state on the same connection.
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (head, _) = crate::tls::read_response(&mut tls).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    std::thread::sleep(std::time::Duration::from_millis(800));
    // Bytes sent right behind the upgrade request reach the upstream after the 101.
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    let mut early = [0u8; 5];
    tls.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"early");
    for msg in [&b"hello"[..], b"through the tunnel"] {
        tls.write_all(msg).unwrap();
        tls.flush().unwrap();
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    drop(upstream);
}

const SLOW_UPSTREAM: &str = r#"
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(1.5)
        self.send_response(200)
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"done")
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn sigterm_drains_requests_in_flight() {
    let python = require_peer!("python3");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    let upstream = Script::start(&python, d, SLOW_UPSTREAM, &[]);
    let line = upstream.line.clone();
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
drain_timeout_secs = 5
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
        line.trim()
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let mut server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let dir_path = d.to_owned();
    let request = std::thread::spawn(move || {
        let resolve = format!("localhost:{port}:127.0.0.1");
        Command::new(&curl_bin)
            .current_dir(&dir_path)
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                "root.pem",
                "--resolve",
                &resolve,
            ])
            .arg(format!("https://localhost:{port}/"))
            .output()
            .unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.signal("TERM");
    let out = request.join().unwrap();
    assert!(
        out.status.success(),
        "request in flight was cut: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done");
    let status = server
        .wait_exit(std::time::Duration::from_secs(8))
        .expect("certgate did not exit after draining");
    assert!(status.success(), "{status}");
    // New connections are refused once draining began.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(upstream);
}

const TLS_UPSTREAM: &str = r#"
import ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        cert = self.connection.getpeercert()
        cn = dict(x[0] for x in cert["subject"])["commonName"] if cert else "nobody"
        body = ("upstream saw " + cn).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
ctx.load_verify_locations("root.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

const UNIX_UPSTREAM: &str = r#"
import sys, socketserver
from http.server import BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("unix upstream, host " + self.headers.get("host", "")).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def address_string(self):
        return "unix"
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
s = S(sys.argv[1], H)
print("ready", flush=True)
s.serve_forever()
"#;

#[test]
fn https_upstream_with_client_identity_and_unix_socket_upstream() {
    let python = require_peer!("python3");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    let other = certgate_testkit::self_signed(&Spec::ca("some other CA", None));
    std::fs::write(d.join("other-ca.pem"), &other.pem).unwrap();
    let tls_up = Script::start(&python, d, TLS_UPSTREAM, &[]);
    let tls_port = tls_up.line.clone();
    let sock = d.join("app.sock");
    let unix_up = Script::start(&python, d, UNIX_UPSTREAM, &[sock.to_str().unwrap()]);
    let config = format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[identity]]
name = "alice"
cert = "good.pem"
key = "good.key"
[[trust]]
name = "internal"
ca = ["root.pem"]
[[trust]]
name = "wrong"
ca = ["other-ca.pem"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  path = "/tls"
  upstream = "https://localhost:{tls_port}"
  upstream_trust = "internal"
  upstream_identity = "alice"
  [[ingress.route]]
  path = "/tls-untrusted"
  upstream = "https://localhost:{tls_port}"
  upstream_trust = "wrong"
  upstream_identity = "alice"
  [[ingress.route]]
  path = "/unix"
  upstream = "unix:{}"
"#,
        sock.display()
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let get = |path: &str| {
        let resolve = format!("localhost:{port}:127.0.0.1");
        let out = Command::new(&curl_bin)
            .current_dir(d)
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                "root.pem",
                "--resolve",
                &resolve,
                "-w",
                " %{http_code}",
            ])
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/tls"), "upstream saw alice 200");
    // An upstream whose certificate does not chain to upstream_trust gets no request (and no
    // client certificate): 502.
    assert_eq!(get("/tls-untrusted"), "the upstream is unavailable\n 502");
    assert_eq!(
        get("/unix"),
        format!("unix upstream, host localhost:{port} 200")
    );
    drop((tls_up, unix_up));
}

#[test]
fn server_identity_is_chosen_by_sni() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    for (name, cn, san) in [
        ("api", "api.example.test", "api.example.test"),
        ("apps", "apps wildcard", "*.apps.example.test"),
    ] {
        let mut spec = Spec::server(cn);
        spec.sans = vec![rcgen::SanType::DnsName(san.try_into().unwrap())];
        let c = signed_by(&spec, &pki.intermediate);
        std::fs::write(
            d.join(format!("{name}.pem")),
            format!("{}{}", c.pem, pki.intermediate.pem),
        )
        .unwrap();
        std::fs::write(d.join(format!("{name}.key")), &c.key_pem).unwrap();
    }
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[identity]]
name = "api"
cert = "api.pem"
key = "api.key"
[[identity]]
name = "apps"
cert = "apps.pem"
key = "apps.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
sni = { "api.example.test" = "api", "*.apps.example.test" = "apps" }
  [[ingress.route]]
  upstream = "echo"
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let connect = format!("127.0.0.1:{}", server.port("web"));
    let subject = |sni: Option<&str>| {
        let mut cmd = Command::new(&ossl);
        cmd.current_dir(d)
            .args(["s_client", "-connect", &connect, "-CAfile", "root.pem"]);
        match sni {
            Some(s) => cmd.args(["-servername", s]),
            None => cmd.arg("-noservername"),
        };
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        subject(Some("api.example.test")),
        "subject=CN = api.example.test"
    );
    assert_eq!(
        subject(Some("x.apps.example.test")),
        "subject=CN = apps wildcard"
    );
    // A wildcard covers one label only; unknown names and no SNI get the default.
    assert_eq!(
        subject(Some("a.b.apps.example.test")),
        "subject=CN = localhost"
    );
    assert_eq!(subject(Some("other.test")), "subject=CN = localhost");
    assert_eq!(subject(None), "subject=CN = localhost");
}

/// The value of `certgate_connections_parked{listener="web"}` (0 when absent).
fn parked(admin: u16) -> f64 {
    crate::admin_get(admin, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(r#"certgate_connections_parked{listener="web"} "#))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits up to 5 s for the parked gauge to read `want`.
fn wait_parked(admin: u16, want: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = parked(admin);
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "parked connections: {now}, expected {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Between requests an HTTP/1.1 keep-alive connection is parked (it holds no HTTP state) and
/// the next request wakes it: requests after a pause, a request head split across a pause and
/// pipelined requests are all answered on the same connection, and a connection with a partial
/// head is never parked.
#[test]
fn keep_alive_connections_park_between_requests() {
    use std::io::Write as _;
    use std::time::Duration as StdDuration;
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let config = r#"version = 1
[admin]
listen = "127.0.0.1:0"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  upstream = "echo"
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let admin = server.port("admin");
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut tls =
        crate::tls::connect(server.port("web"), config, StdDuration::from_secs(10)).unwrap();
    let get = b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let ok = |tls: &mut _| {
        let (head, body) = crate::tls::read_response(tls).unwrap();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("/a"), "{head}");
    };
    // A fresh connection is parked from the end of its handshake to its first request.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    wait_parked(admin, 1.0);
    for _ in 0..2 {
        tls.write_all(get).unwrap();
        ok(&mut tls);
        wait_parked(admin, 1.0);
    }
    // A head split across a pause: the connection holds it (not parked) and answers it whole.
    tls.write_all(&get[..20]).unwrap();
    std::thread::sleep(StdDuration::from_millis(800));
    assert_eq!(parked(admin), 0.0, "parked with a partial request head");
    tls.write_all(&get[20..]).unwrap();
    ok(&mut tls);
    // Pipelined requests in one write, the second one's end in a later write after a pause:
    // the first answer is the last thing that moved, so the connection parks, and the part of
    // the second head that hyper had already read is replayed to the next hyper connection.
    let mut two = get.to_vec();
    two.extend_from_slice(&get[..30]);
    tls.write_all(&two).unwrap();
    ok(&mut tls);
    std::thread::sleep(StdDuration::from_millis(800));
    tls.write_all(&get[30..]).unwrap();
    ok(&mut tls);
    wait_parked(admin, 1.0);
    // A parked connection that the client closes is gone.
    drop(tls);
    wait_parked(admin, 0.0);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration as StdDuration, Instant};
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
idle_timeout_secs = 1
  [[ingress.route]]
  upstream = "echo"
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut tls =
        crate::tls::connect(server.port("web"), config, StdDuration::from_secs(10)).unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 16384];
    let n = tls.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Drain the rest of the response, then wait in silence.
    let started = Instant::now();
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= StdDuration::from_millis(800),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after < StdDuration::from_secs(5),
        "idle connection kept for {closed_after:?}"
    );
}

/// `max_body_bytes`: a declared length over the limit is refused with 413 before anything goes
/// upstream; a chunked body that grows past it is cut off with 413; bodies within it pass.
#[test]
fn request_bodies_over_the_limit_get_413() {
    let curl_bin = require_peer!("curl");
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
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
max_body_bytes = 1000
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
        upstream.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    std::fs::write(d.join("small"), vec![b'a'; 1000]).unwrap();
    std::fs::write(d.join("big"), vec![b'b'; 5000]).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let post = |file: &str, chunked: bool| {
        let data = format!("@{file}");
        let mut extra = vec!["--data-binary", data.as_str()];
        if chunked {
            extra.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        crate::https_get(
            &curl_bin,
            d,
            port,
            "/",
            "none",
            &[&extra[..], &["--http1.1"]].concat(),
        )
    };
    let (code, body) = post("small", false);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains(&"a".repeat(1000)), "{body}");
    for chunked in [false, true] {
        let (code, body) = post("big", chunked);
        assert_eq!(code, "413", "chunked={chunked}: {body}");
        assert_eq!(body, "the request body is larger than 1000 bytes\n");
    }
    let (code, _) = post("small", true);
    assert_eq!(code, "200");
}

/// An upstream that numbers its connections and answers every request with the number; with
/// `close` it closes each connection after one answer (without saying so); with `tls` it speaks
/// HTTPS with `server.pem`.
const COUNTING_UPSTREAM: &str = r#"
import socket, ssl, sys, threading
mode = sys.argv[1]
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain("server.pem", "server.key")
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c, k):
    if mode == "tls":
        try:
            c = ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            return
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return
            buf += d
        _, _, buf = buf.partition(b"\r\n\r\n")
        body = b"conn %d" % k
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        if mode == "close":
            c.close()
            return
n = 0
while True:
    c, _ = s.accept()
    n += 1
    threading.Thread(target=serve, args=(c, n), daemon=True).start()
"#;

/// Upstream connections are kept alive and reused; one the upstream closed while idle is
/// noticed and replaced, and the client sees nothing of it.
#[test]
fn upstream_connections_are_reused_and_replaced_when_closed() {
    use std::io::Write as _;
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let upstreams =
        ["keep", "close"].map(|mode| Script::start(&python, d, COUNTING_UPSTREAM, &[mode]));
    let ports = upstreams.each_ref().map(Script::port);
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
  [[ingress.route]]
  path = "/keep"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/close"
  upstream = "http://127.0.0.1:{}"
"#,
        ports[0], ports[1]
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut tls = crate::tls::connect(
        server.port("web"),
        config,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let mut get = |path: &str| -> String {
        write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let (head, body) = crate::tls::read_response(&mut tls).unwrap();
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        String::from_utf8(body).unwrap()
    };
    for _ in 0..5 {
        assert_eq!(
            get("/keep"),
            "conn 1",
            "the upstream connection was not reused"
        );
    }
    for i in 1..=4 {
        assert_eq!(get("/close"), format!("conn {i}"));
        // Let the upstream's FIN arrive before the next request takes the connection.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A reload keeps the upstream connections of routes whose upstream did not change (the same
/// client, its pool and TLS sessions are taken over), and builds a new client when what the
/// upstream connection depends on changed (here the `upstream_trust` bundle's contents).
#[test]
fn reload_keeps_the_connections_of_unchanged_upstreams() {
    let python = require_peer!("python3");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    write_pki(d);
    let other = certgate_testkit::self_signed(&Spec::ca("some other CA", None));
    std::fs::write(d.join("other-ca.pem"), &other.pem).unwrap();
    let plain = Script::start(&python, d, COUNTING_UPSTREAM, &["keep"]);
    let tls = Script::start(&python, d, COUNTING_UPSTREAM, &["tls"]);
    let config = |cas: &str, marker: &str| {
        format!(
            r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "internal"
ca = [{cas}]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  path = "/plain"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/tls"
  upstream = "https://localhost:{}"
  upstream_trust = "internal"
  [[ingress.route]]
  path = "/{marker}"
  upstream = "echo"
"#,
            plain.port(),
            tls.port()
        )
    };
    std::fs::write(d.join("c.toml"), config(r#""root.pem""#, "one")).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    // Each request on a new client connection, so only the upstream side can be reused.
    let get =
        |path: &str| -> (String, String) { crate::https_get(&curl, d, port, path, "none", &[]) };
    let reload_to = |text: String, marker: &str| {
        std::fs::write(d.join("c.toml"), text).unwrap();
        server.signal("HUP");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while get(&format!("/{marker}")).0 != "200" {
            assert!(
                std::time::Instant::now() < deadline,
                "reload to /{marker} not applied"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert_eq!(get("/plain"), ("200".into(), "conn 1".into()));
    assert_eq!(get("/tls"), ("200".into(), "conn 1".into()));
    // A change elsewhere in the config: both upstream connections are kept.
    reload_to(config(r#""root.pem""#, "two"), "two");
    assert_eq!(
        get("/plain"),
        ("200".into(), "conn 1".into()),
        "plain pool lost on reload"
    );
    assert_eq!(
        get("/tls"),
        ("200".into(), "conn 1".into()),
        "https pool lost on reload"
    );
    // The https upstream's trust bundle changes: a new client, so a new connection; the plain
    // upstream still keeps its own.
    reload_to(config(r#""root.pem", "other-ca.pem""#, "three"), "three");
    assert_eq!(
        get("/tls"),
        ("200".into(), "conn 2".into()),
        "https client kept across a trust change"
    );
    assert_eq!(get("/plain"), ("200".into(), "conn 1".into()));
}
