//! Certificates and CRLs from `certgate ca` are accepted by the real OpenSSL CLI.

use certgate_testkit::{openssl, require_peer, tempdir};

use crate::{certgate, certgate_ok, make_ca, text};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn openssl_verifies_issued_certificates_for_their_purpose() {
    let ossl = require_peer!("openssl");
    for key_type in ["ecdsa-p256", "ed25519", "rsa3072"] {
        let dir = tempdir();
        let d = dir.path();
        certgate_ok(d, &["ca", "init", "--dir", "ca", "--key-type", key_type]);
        certgate_ok(
            d,
            &[
                "ca",
                "issue",
                "--dir",
                "ca",
                "--server",
                "localhost",
                "--out",
                "server",
                "--key-type",
                key_type,
            ],
        );
        certgate_ok(
            d,
            &[
                "ca",
                "issue",
                "--dir",
                "ca",
                "--client",
                "alice",
                "--out",
                "alice",
                "--key-type",
                key_type,
            ],
        );
        openssl(
            &ossl,
            d,
            "verify -CAfile ca/ca.pem -purpose sslserver server.pem",
        );
        openssl(
            &ossl,
            d,
            "verify -CAfile ca/ca.pem -purpose sslclient alice.pem",
        );
        // And not for the other purpose.
        let out = std::process::Command::new(&ossl)
            .current_dir(d)
            .args([
                "verify",
                "-CAfile",
                "ca/ca.pem",
                "-purpose",
                "sslserver",
                "alice.pem",
            ])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{key_type}: a client certificate passed as a server certificate"
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
            assert_eq!(mode(&d.join("alice.key")), 0o600);
            assert_eq!(mode(&d.join("ca/ca.pem")), 0o644);
        }
    }
}

#[test]
fn pkcs12_output_opens_in_openssl() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    #[cfg(unix)]
    assert_eq!(mode(&d.join("alice.p12")), 0o600);
    let out = openssl(
        &ossl,
        d,
        "pkcs12 -in alice.p12 -passin file:alice.p12.password -nokeys -clcerts",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
    // An explicit password file.
    std::fs::write(d.join("pw"), "hunter2\n").unwrap();
    certgate_ok(
        d,
        "ca issue --dir ca --client bob --out bob --p12 --password-file pw",
    );
    openssl(&ossl, d, "pkcs12 -in bob.p12 -passin pass:hunter2 -noout");
    assert!(!d.join("bob.p12.password").exists());
}

#[test]
fn crls_verify_in_openssl_and_revocation_is_seen_by_both() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    certgate_ok(d, "ca crl --dir ca");
    openssl(
        &ossl,
        d,
        "crl -in ca/crl.pem -CAfile ca/ca.pem -noout -verify",
    );
    openssl(
        &ossl,
        d,
        "verify -crl_check -CAfile ca/ca.pem -CRLfile ca/crl.pem alice.pem",
    );
    let ok = certgate_ok(d, "inspect alice.pem --ca ca/ca.pem --crl ca/crl.pem");
    assert!(ok.contains("VERIFIED"), "{ok}");

    // Revoke by certificate file, publish, and both verifiers now refuse it.
    let out = certgate_ok(d, "ca revoke --dir ca alice.pem --reason key-compromise");
    assert!(out.contains("revoked serial"), "{out}");
    certgate_ok(d, "ca crl --dir ca");
    openssl(
        &ossl,
        d,
        "crl -in ca/crl.pem -CAfile ca/ca.pem -noout -verify",
    );
    let out = std::process::Command::new(&ossl)
        .current_dir(d)
        .args([
            "verify",
            "-crl_check",
            "-CAfile",
            "ca/ca.pem",
            "-CRLfile",
            "ca/crl.pem",
            "alice.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
    let out = certgate(d, "inspect alice.pem --ca ca/ca.pem --crl ca/crl.pem");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("REJECTED (revoked)"), "{}", text(&out));
    let crl = certgate_ok(d, "inspect ca/crl.pem --json");
    let json: serde_json::Value = serde_json::from_str(&crl).unwrap();
    assert_eq!(json[0]["items"][0]["revoked"][0]["reason"], "keyCompromise");

    // The index is plain text a person can read.
    let index = std::fs::read_to_string(d.join("ca/index.tsv")).unwrap();
    assert!(
        index
            .lines()
            .any(|l| l.starts_with("R\t") && l.ends_with("CN=alice")),
        "{index}"
    );
    assert!(
        index
            .lines()
            .any(|l| l.starts_with("V\t") && l.ends_with("CN=localhost")),
        "{index}"
    );

    // Revoking twice, or an unknown serial, is an error that says so.
    let out = certgate(d, "ca revoke --dir ca alice.pem");
    assert!(text(&out).contains("already revoked"), "{}", text(&out));
    let out = certgate(d, "ca revoke --dir ca deadbeef");
    assert!(
        text(&out).contains("was not issued by the CA"),
        "{}",
        text(&out)
    );
    assert!(out.status.code().unwrap() >= 64);
}

#[test]
fn init_refuses_to_overwrite_a_ca() {
    let dir = tempdir();
    let d = dir.path();
    certgate_ok(d, "ca init --dir ca");
    let before = std::fs::read(d.join("ca/ca.key")).unwrap();
    let out = certgate(d, "ca init --dir ca");
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds a CA"), "{}", text(&out));
    assert_eq!(out.status.code(), Some(73));
    assert_eq!(std::fs::read(d.join("ca/ca.key")).unwrap(), before);
}

#[test]
fn inspect_reads_openssl_csrs_and_reports_json() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    openssl(
        &ossl,
        d,
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem",
    );
    openssl(
        &ossl,
        d,
        "req -new -key k.pem -subj /O=Home/CN=bob -addext subjectAltName=DNS:bob.example,IP:10.0.0.7 -out bob.csr",
    );
    let out = certgate_ok(d, "inspect bob.csr k.pem --json");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let csr = &json[0]["items"][0];
    assert_eq!(csr["kind"], "csr");
    assert_eq!(csr["subject"], "CN=bob,O=Home");
    assert_eq!(csr["sans"]["dns"][0], "bob.example");
    assert_eq!(csr["sans"]["ip"][0], "10.0.0.7");
    assert_eq!(csr["signature_valid"], true);
    let key = &json[1]["items"][0];
    assert_eq!(key["kind"], "private_key");
    assert_eq!(key["algorithm"], "ECDSA P-256");
    assert_eq!(key["spki_sha256"], csr["spki_sha256"]);
    let text = certgate_ok(d, "inspect bob.csr");
    assert!(text.contains("valid (requester holds the key)"), "{text}");
    // Tamper with the CSR's signed content: the signature no longer verifies.
    openssl(&ossl, d, "req -in bob.csr -outform DER -out bob.der");
    let mut der = std::fs::read(d.join("bob.der")).unwrap();
    let at = der.windows(3).position(|w| w == b"bob").unwrap();
    der[at + 2] = b'd';
    std::fs::write(d.join("bod.der"), der).unwrap();
    let out = certgate_ok(d, "inspect bod.der --json");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["items"][0]["subject"], "CN=bod,O=Home");
    assert_eq!(json[0]["items"][0]["signature_valid"], false);
}

/// `inspect --header` decodes every forwarded format, values produced independently by Python.
#[test]
fn inspect_decodes_forwarded_headers_made_by_python() {
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    let script = r#"
import base64, ssl, sys, urllib.parse
pem = open("alice.pem").read()
der = ssl.PEM_cert_to_DER_cert(pem)
b64 = base64.b64encode(der).decode()
print("Client-Cert: :" + b64 + ":")
print("X-SSL-Client-Escaped-Cert: " + urllib.parse.quote(pem, safe=""))
print("X-Forwarded-Tls-Client-Cert: " + b64)
print("Cf-Client-Cert-Der-Base64: " + b64)
print("X-Amzn-Mtls-Clientcert: " + urllib.parse.quote(pem, safe="+=/"))
print('X-Forwarded-Client-Cert: By=spiffe://front;Hash=00,By=spiffe://edge;Cert="' + urllib.parse.quote(pem, safe="") + '";Subject="CN=alice"')
"#;
    let out = std::process::Command::new(&python)
        .current_dir(d)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = String::from_utf8(out.stdout).unwrap();
    for header in headers.lines() {
        let out = certgate(
            d,
            &["inspect", "--header", header, "--ca", "ca/ca.pem", "--json"],
        );
        assert!(out.status.success(), "{header}: {}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json[0]["items"][0]["subject"], "CN=alice", "{header}");
        assert_eq!(json[0]["verification"]["verified"], true, "{header}");
    }
    // An explicit format for a header name certgate does not know, and a wrong value.
    let b64_line = headers.lines().find(|l| l.starts_with("Cf-")).unwrap();
    let value = b64_line.split_once(": ").unwrap().1;
    let custom = format!("X-Custom: {value}");
    certgate_ok(
        d,
        &["inspect", "--header", &custom, "--format", "base64-der"],
    );
    let out = certgate(d, &["inspect", "--header", &custom]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out).contains("cannot tell the format of header `X-Custom`"),
        "{}",
        text(&out)
    );
    let out = certgate(d, &["inspect", "--header", "Client-Cert: nonsense"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out).contains("header `Client-Cert`: an RFC 9440 value is a byte sequence"),
        "{}",
        text(&out)
    );
}
