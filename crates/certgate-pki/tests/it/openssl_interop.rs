//! Files made by the real OpenSSL CLI at test time load correctly, and wrong passwords are
//! reported as wrong passwords, not parse errors.

use std::path::Path;

use certgate_pki::credential::{self, Credential};
use certgate_pki::{Error, Origin};
use certgate_testkit::{openssl, require_peer, tempdir};

const EC_P256: &str = "-algorithm EC -pkeyopt ec_paramgen_curve:P-256";
const EC_P384: &str = "-algorithm EC -pkeyopt ec_paramgen_curve:P-384";
const RSA_2048: &str = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048";
const ED25519: &str = "-algorithm ED25519";

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// Makes `NAME.key` (OpenSSL 3 default: PKCS#8) and a self-signed `NAME.pem` with `req -x509`.
fn genpair(ossl: &Path, dir: &Path, name: &str, alg: &str) {
    openssl(ossl, dir, format!("genpkey {alg} -out {name}.key").as_str());
    openssl(
        ossl,
        dir,
        format!("req -x509 -key {name}.key -out {name}.pem -days 30 -subj /CN={name}").as_str(),
    );
}

fn assemble(
    dir: &Path,
    name: &str,
    key_file: &str,
    password: Option<&str>,
) -> Result<Credential, Error> {
    let cert_origin = Origin::file(dir.join(format!("{name}.pem")));
    let key_origin = Origin::file(dir.join(key_file));
    let certs = credential::parse_certificates(&read(dir, &format!("{name}.pem")), &cert_origin)?;
    let key = credential::parse_private_key(&read(dir, key_file), &key_origin, password)?;
    Credential::assemble(certs, &cert_origin, key, &key_origin)
}

#[test]
fn plain_keys_of_every_algorithm_and_format() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    for (name, alg) in [
        ("ec", EC_P256),
        ("ec384", EC_P384),
        ("rsa", RSA_2048),
        ("ed", ED25519),
    ] {
        genpair(&ossl, d, name, alg);
        let c = assemble(d, name, &format!("{name}.key"), None).unwrap();
        assert_eq!(c.key.format, "PKCS#8", "{name}");
        assert_eq!(c.identity.subject, format!("CN={name}"));
        // DER forms of the same key and certificate.
        let der_key = format!("{name}.key.der");
        let der_cert = format!("{name}.der");
        openssl(
            &ossl,
            d,
            &[
                "pkey",
                "-in",
                &format!("{name}.key"),
                "-outform",
                "DER",
                "-out",
                &der_key,
            ],
        );
        openssl(
            &ossl,
            d,
            &[
                "x509",
                "-in",
                &format!("{name}.pem"),
                "-outform",
                "DER",
                "-out",
                &der_cert,
            ],
        );
        let certs =
            credential::parse_certificates(&read(d, &der_cert), &Origin::other("der")).unwrap();
        let key =
            credential::parse_private_key(&read(d, &der_key), &Origin::other("der"), None).unwrap();
        Credential::assemble(certs, &Origin::other("c"), key, &Origin::other("k")).unwrap();
    }
    // SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`), PEM and DER.
    openssl(&ossl, d, "ec -in ec.key -out ec.sec1");
    assert!(String::from_utf8_lossy(&read(d, "ec.sec1")).contains("BEGIN EC PRIVATE KEY"));
    assert_eq!(
        assemble(d, "ec", "ec.sec1", None).unwrap().key.format,
        "SEC1"
    );
    openssl(&ossl, d, "ec -in ec.key -outform DER -out ec.sec1.der");
    assert_eq!(
        assemble(d, "ec", "ec.sec1.der", None).unwrap().key.format,
        "SEC1"
    );
    openssl(&ossl, d, "rsa -in rsa.key -traditional -out rsa.pkcs1");
    assert!(String::from_utf8_lossy(&read(d, "rsa.pkcs1")).contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(
        assemble(d, "rsa", "rsa.pkcs1", None).unwrap().key.format,
        "PKCS#1"
    );
    openssl(
        &ossl,
        d,
        "rsa -in rsa.key -traditional -outform DER -out rsa.pkcs1.der",
    );
    assert_eq!(
        assemble(d, "rsa", "rsa.pkcs1.der", None)
            .unwrap()
            .key
            .format,
        "PKCS#1"
    );
}

#[test]
fn encrypted_pkcs8_right_and_wrong_password() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    genpair(&ossl, d, "ec", EC_P256);
    genpair(&ossl, d, "ed", ED25519);
    for name in ["ec", "ed"] {
        let enc = format!("{name}.enc");
        openssl(
            &ossl,
            d,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                &format!("{name}.key"),
                "-out",
                &enc,
                "-passout",
                "pass:s3cret",
            ],
        );
        assert!(String::from_utf8_lossy(&read(d, &enc)).contains("BEGIN ENCRYPTED PRIVATE KEY"));
        let c = assemble(d, name, &enc, Some("s3cret")).unwrap();
        assert_eq!(c.key.format, "PKCS#8 (encrypted)");
        for wrong in ["wrong", "s3creT", ""] {
            let err = assemble(d, name, &enc, Some(wrong)).unwrap_err();
            assert!(
                matches!(err, Error::WrongPassword { .. }),
                "{name}/{wrong}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("wrong password for the private key"),
                "{err}"
            );
        }
        let err = assemble(d, name, &enc, None).unwrap_err();
        assert!(matches!(err, Error::PasswordRequired { .. }), "{err}");
        assert!(err.to_string().contains("no password was given"), "{err}");
    }
    // scrypt-based PBES2 as well.
    openssl(
        &ossl,
        d,
        "pkcs8 -topk8 -scrypt -in ec.key -out ec.scrypt -passout pass:s3cret",
    );
    assemble(d, "ec", "ec.scrypt", Some("s3cret")).unwrap();
    let err = assemble(d, "ec", "ec.scrypt", Some("nope")).unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err}");
}

#[test]
fn legacy_pem_encryption_says_how_to_convert() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    genpair(&ossl, d, "rsa", RSA_2048);
    openssl(
        &ossl,
        d,
        "rsa -in rsa.key -traditional -aes256 -passout pass:x -out rsa.legacy",
    );
    assert!(String::from_utf8_lossy(&read(d, "rsa.legacy")).contains("Proc-Type: 4,ENCRYPTED"));
    let err = assemble(d, "rsa", "rsa.legacy", Some("x")).unwrap_err();
    assert!(matches!(err, Error::LegacyPemEncryption { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"),
        "{err}"
    );
}

fn p12(ossl: &Path, d: &Path, name: &str, out: &str, pass: &str, legacy: bool) {
    let legacy = if legacy { "-legacy" } else { "" };
    let args = format!(
        "pkcs12 -export -inkey {name}.key -in {name}.pem -out {out} -passout {pass} {legacy}"
    );
    openssl(ossl, d, args.as_str());
}

#[test]
fn pkcs12_modern_and_legacy_with_and_without_password() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    genpair(&ossl, d, "ec", EC_P256);
    genpair(&ossl, d, "rsa", RSA_2048);
    // `-legacy` needs OpenSSL's legacy provider; skip only that half when it is unavailable.
    let legacy_ok = std::process::Command::new(&ossl)
        .args(["list", "-providers", "-provider", "legacy"])
        .output()
        .is_ok_and(|o| o.status.success());
    for name in ["ec", "rsa"] {
        for legacy in [false, true] {
            if legacy && !legacy_ok {
                if certgate_testkit::peers_required() {
                    panic!("OpenSSL legacy provider missing (CERTGATE_REQUIRE_PEERS=1)");
                }
                eprintln!(
                    "!!!!!!!! SKIPPING -legacy PKCS#12: OpenSSL legacy provider missing !!!!!!!!"
                );
                continue;
            }
            let out = format!("{name}-{legacy}.p12");
            p12(&ossl, d, name, &out, "pass:pw", legacy);
            let origin = Origin::file(d.join(&out));
            let bytes = read(d, &out);
            let c = credential::parse_pkcs12(&bytes, &origin, Some("pw")).unwrap();
            let id = certgate_pki::Identity::from_der(&c.certs[0]).unwrap();
            assert_eq!(id.subject, format!("CN={name}"));
            let cred = Credential::assemble(c.certs, &origin, c.key, &origin).unwrap();
            assert_eq!(cred.chain.len(), 1);
            let err = credential::parse_pkcs12(&bytes, &origin, Some("wrong")).unwrap_err();
            assert!(
                matches!(err, Error::WrongPassword { .. }),
                "{name} legacy={legacy}: {err}"
            );
            let err = credential::parse_pkcs12(&bytes, &origin, None).unwrap_err();
            assert!(matches!(err, Error::PasswordRequired { .. }), "{err}");
            // Without a password (OpenSSL's empty password).
            let out = format!("{name}-{legacy}-nopass.p12");
            p12(&ossl, d, name, &out, "pass:", legacy);
            let bytes = read(d, &out);
            credential::parse_pkcs12(&bytes, &Origin::file(d.join(&out)), None).unwrap();
        }
    }
}

#[test]
fn chain_in_wrong_order_is_fixed_and_unrelated_certificates_refused() {
    let pki = certgate_testkit::TestPki::new();
    let wrong = format!("{}{}{}", pki.root.pem, pki.client.pem, pki.intermediate.pem);
    let origin = Origin::other("chain.pem");
    let certs = credential::parse_certificates(wrong.as_bytes(), &origin).unwrap();
    let key = credential::parse_private_key(pki.client.key_pem.as_bytes(), &origin, None).unwrap();
    let c = Credential::assemble(certs, &origin, key, &origin).unwrap();
    assert_eq!(c.chain[0].as_ref(), &pki.client.der[..]);
    assert_eq!(c.chain[1].as_ref(), &pki.intermediate.der[..]);
    assert_eq!(c.chain[2].as_ref(), &pki.root.der[..]);
    assert!(
        c.notes[0].contains("not in leaf-first order; using the order #2, #3, #1"),
        "{:?}",
        c.notes
    );

    let other = certgate_testkit::self_signed(&certgate_testkit::Spec::client("stranger"));
    let mixed = format!("{}{}", pki.client.pem, other.pem);
    let certs = credential::parse_certificates(mixed.as_bytes(), &origin).unwrap();
    let key = credential::parse_private_key(pki.client.key_pem.as_bytes(), &origin, None).unwrap();
    let err = Credential::assemble(certs, &origin, key, &origin).unwrap_err();
    assert!(
        err.to_string()
            .contains("#2 (CN=stranger) are not part of the chain"),
        "{err}"
    );
}

#[test]
fn openssl_trusted_certificate_form_loads() {
    let ossl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    genpair(&ossl, d, "ec", EC_P256);
    openssl(
        &ossl,
        d,
        "x509 -in ec.pem -addtrust clientAuth -trustout -out trusted.pem",
    );
    assert!(String::from_utf8_lossy(&read(d, "trusted.pem")).contains("BEGIN TRUSTED CERTIFICATE"));
    let plain = credential::parse_certificates(&read(d, "ec.pem"), &Origin::other("p")).unwrap();
    let trusted =
        credential::parse_certificates(&read(d, "trusted.pem"), &Origin::other("t")).unwrap();
    assert_eq!(plain, trusted);
}
