//! Bad input: every case gets a clear message naming the file or key and what is wrong, an exit
//! code of 64 or more when certgate could not do its job (1 when a verification said no), and
//! never a crash.

use std::path::{Path, PathBuf};

use certgate_testkit::{Spec, TestPki, signed_by, tempdir};
use time::Duration;

use crate::{certgate, text};

struct Case {
    name: &'static str,
    /// Writes the input files into the directory and returns the certgate arguments.
    setup: fn(&Path, &TestPki) -> Vec<String>,
    code: i32,
    message: &'static str,
}

fn write(d: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    std::fs::write(d.join(name), bytes).unwrap();
    name.to_owned()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// A config with one identity from `cert` and optionally `key`.
fn identity_config(d: &Path, cert: &str, key: Option<&str>) -> Vec<String> {
    let key_line = key.map(|k| format!("key = \"{k}\"\n")).unwrap_or_default();
    write(
        d,
        "c.toml",
        format!("version = 1\n[[identity]]\nname = \"web\"\ncert = \"{cert}\"\n{key_line}"),
    );
    args(&["check", "--config", "c.toml"])
}

/// `inspect LEAF --ca root.pem` for a leaf issued by the test intermediate with `spec`.
fn verify_case(d: &Path, pki: &TestPki, spec: Spec, purpose: &str) -> Vec<String> {
    let leaf = signed_by(&spec, &pki.intermediate);
    write(d, "root.pem", &pki.root.pem);
    write(
        d,
        "leaf.pem",
        format!("{}{}", leaf.pem, pki.intermediate.pem),
    );
    args(&[
        "inspect",
        "leaf.pem",
        "--ca",
        "root.pem",
        "--purpose",
        purpose,
    ])
}

const CASES: &[Case] = &[
    Case {
        name: "empty file",
        setup: |d, _| args(&["inspect", &write(d, "empty.pem", "")]),
        code: 65,
        message: "`empty.pem`: the file is empty",
    },
    Case {
        name: "directory",
        setup: |d, _| {
            std::fs::create_dir(d.join("adir")).unwrap();
            args(&["inspect", "adir"])
        },
        code: 66,
        message: "`adir`: is a directory, expected a file",
    },
    Case {
        name: "missing file",
        setup: |_, _| args(&["inspect", "nope.pem"]),
        code: 66,
        message: "`nope.pem`: no such file",
    },
    Case {
        name: "truncated PEM",
        setup: |d, pki| {
            let cut = &pki.client.pem[..pki.client.pem.len() / 2];
            args(&["inspect", &write(d, "trunc.pem", cut)])
        },
        code: 65,
        message: "`trunc.pem`: truncated PEM: `BEGIN CERTIFICATE` on line 1 has no matching `END CERTIFICATE` line",
    },
    Case {
        name: "DER garbage",
        setup: |d, _| {
            args(&[
                "inspect",
                &write(d, "junk.der", [0x30u8, 0x82, 0xff, 0x00, 0x13, 0x37]),
            ])
        },
        code: 65,
        message: "`junk.der`: not a PEM file and not a DER certificate, key, PKCS#12, CRL or CSR",
    },
    Case {
        name: "corrupt certificate inside valid PEM",
        setup: |d, _| {
            let pem =
                "-----BEGIN CERTIFICATE-----\nMIIBADCBpqADAgECAgEB\n-----END CERTIFICATE-----\n";
            identity_config(d, &write(d, "bad.pem", pem), Some("bad.pem"))
        },
        code: 78,
        message: "`bad.pem`: certificate #1 is not valid X.509",
    },
    Case {
        name: "certificate without key",
        setup: |d, pki| identity_config(d, &write(d, "cert.pem", &pki.client.pem), None),
        code: 78,
        message: "c.toml:2: `identity.web.key`: missing; a certificate needs its private key",
    },
    Case {
        name: "key file where the certificate should be",
        setup: |d, pki| identity_config(d, &write(d, "k.pem", &pki.client.key_pem), Some("k.pem")),
        code: 78,
        message: "`identity.web.cert`: `k.pem`: holds no certificate (it has: PRIVATE KEY)",
    },
    Case {
        name: "mismatched key",
        setup: |d, pki| {
            write(d, "cert.pem", &pki.client.pem);
            write(d, "other.key", &pki.server.key_pem);
            identity_config(d, "cert.pem", Some("other.key"))
        },
        code: 78,
        message: "c.toml:5: `identity.web.key`: the private key in `other.key` does not match the certificate in `cert.pem`",
    },
    Case {
        name: "expired (config)",
        setup: |d, pki| {
            let mut s = Spec::client("old");
            s.not_before = Duration::days(-30);
            s.not_after = Duration::days(-2);
            let c = signed_by(&s, &pki.intermediate);
            c.write(d, "old");
            identity_config(d, "old.pem", Some("old.key"))
        },
        code: 78,
        message: "`identity.web`: the certificate (CN=old) expired on",
    },
    Case {
        name: "expired (verification)",
        setup: |d, pki| {
            let mut s = Spec::client("old");
            s.not_before = Duration::days(-30);
            s.not_after = Duration::days(-2);
            verify_case(d, pki, s, "client")
        },
        code: 1,
        message: "REJECTED (expired): a certificate in the chain expired at",
    },
    Case {
        name: "not yet valid",
        setup: |d, pki| {
            let mut s = Spec::client("future");
            s.not_before = Duration::days(3);
            s.not_after = Duration::days(30);
            verify_case(d, pki, s, "client")
        },
        code: 1,
        message: "REJECTED (not_yet_valid): a certificate in the chain is not valid before",
    },
    Case {
        name: "wrong EKU",
        setup: |d, pki| verify_case(d, pki, Spec::server("srv"), "client"),
        code: 1,
        message: "REJECTED (wrong_usage): the certificate's extended key usage does not allow this purpose",
    },
    Case {
        name: "unknown critical extension",
        setup: |d, pki| {
            let mut s = Spec::client("crit");
            s.unknown_critical = true;
            verify_case(d, pki, s, "client")
        },
        code: 1,
        message: "REJECTED (unsupported_critical_extension)",
    },
    Case {
        name: "100-certificate chain (config)",
        setup: |d, pki| {
            let mut pem = pki.client.pem.clone();
            for _ in 0..99 {
                pem.push_str(&pki.intermediate.pem);
            }
            write(d, "long.pem", pem);
            write(d, "long.key", &pki.client.key_pem);
            identity_config(d, "long.pem", Some("long.key"))
        },
        code: 78,
        message: "`long.pem`: the chain has 100 certificates; at most 16 are supported",
    },
    Case {
        name: "100-certificate chain (verification)",
        setup: |d, pki| {
            let mut pem = pki.client.pem.clone();
            for _ in 0..99 {
                pem.push_str(&pki.intermediate.pem);
            }
            write(d, "root.pem", &pki.root.pem);
            args(&["inspect", &write(d, "long.pem", pem), "--ca", "root.pem"])
        },
        code: 1,
        message: "REJECTED (path_too_long): the chain has 100 certificates; at most 16 are accepted",
    },
    Case {
        name: "encrypted key, no password configured",
        setup: |d, pki| {
            let enc = certgate_testkit::encrypt_pkcs8_pem(&pki.client.key_pem, "s3cret");
            write(d, "cert.pem", &pki.client.pem);
            write(d, "enc.key", enc);
            identity_config(d, "cert.pem", Some("enc.key"))
        },
        code: 78,
        message: "`enc.key`: the private key is encrypted but no password was given (set `password_file` or `password_env`)",
    },
    Case {
        name: "encrypted key, wrong password",
        setup: |d, pki| {
            write(d, "cert.pem", &pki.client.pem);
            write(
                d,
                "enc.key",
                certgate_testkit::encrypt_pkcs8_pem(&pki.client.key_pem, "s3cret"),
            );
            write(d, "pw", "wrong\n");
            write(
                d,
                "c.toml",
                "version = 1\n[[identity]]\nname = \"web\"\ncert = \"cert.pem\"\nkey = \"enc.key\"\npassword_file = \"pw\"\n",
            );
            args(&["check", "--config", "c.toml"])
        },
        code: 78,
        message: "c.toml:5: `identity.web.key`: `enc.key`: wrong password for the private key",
    },
    Case {
        name: "unsupported key algorithm",
        setup: |d, _| {
            // An X25519 key (key agreement only) in PKCS#8: RFC 8410 §10.3 example.
            let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEINR7vTHAMN6jYr6wXeuXUZCgmC7ZRxJcjQvEa/dG/hhS\n-----END PRIVATE KEY-----\n";
            args(&["inspect", &write(d, "x25519.key", pem)])
        },
        code: 65,
        message: "`x25519.key`: unsupported key algorithm X25519",
    },
];

#[test]
fn bad_input_table() {
    let pki = TestPki::new();
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempdir();
        let d = dir.path();
        let a = (case.setup)(d, &pki);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = certgate(d, &refs);
        let t = text(&out);
        let code = out.status.code();
        if code != Some(case.code) || !t.contains(case.message) {
            failures.push(format!(
                "case `{}`: want exit {} and {:?}\n  got exit {code:?}:\n{t}",
                case.name, case.code, case.message
            ));
        }
        assert!(
            !t.contains("panicked"),
            "case `{}` panicked:\n{t}",
            case.name
        );
    }
    assert!(CASES.len() >= 12);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg(unix)]
#[test]
fn non_utf8_paths_are_read_and_named() {
    use std::os::unix::ffi::OsStrExt as _;
    let pki = TestPki::new();
    let dir = tempdir();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.pem");
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, &pki.client.pem).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("caf\u{fffd}.pem: certificate #1"),
        "{}",
        text(&out)
    );
    // And a bad file behind such a path is named in the error.
    std::fs::write(&path, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out).contains("caf\u{fffd}.pem`: the file is empty"),
        "{}",
        text(&out)
    );
}
