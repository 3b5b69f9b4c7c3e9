//! Issuance on the record: with `[ca] log` in the CA directory's `ca.toml`, `ca issue`, `renew`
//! and `revoke` append signed records to a certgate log (through `certgate serve`), a log
//! outage delays a record without losing it, and `ca audit` compares the log with the CA's
//! index both ways.

use std::path::Path;

use certgate_tlog::note::{Note, Signer};

use crate::log::{ORIGIN, log_config, setup, vkey};
use crate::server::Serve;
use crate::{certgate, certgate_ok, text};

fn serial(d: &Path, file: &str) -> String {
    let bytes = std::fs::read(d.join(file)).unwrap();
    let certs =
        certgate_pki::credential::parse_certificates(&bytes, &certgate_pki::Origin::other("pem"))
            .unwrap();
    certgate_pki::Identity::from_der(&certs[0]).unwrap().serial
}

fn ca_toml(url: &str, log_vkey: &str) -> String {
    format!(
        r#"# Every certificate this CA issues, renews or revokes goes on this log.
[ca]
log = "{url}"
log_ca = ["../root.pem"]
log_cert = "../publisher.pem"
log_key = "../publisher.key"
log_vkey = ["{log_vkey}"]
"#
    )
}

fn audit(d: &Path, dir: &str) -> (Option<i32>, String) {
    let out = certgate(d, ["ca", "audit", "--dir", dir].as_slice());
    (out.status.code(), text(&out))
}

#[test]
fn every_issuance_is_on_the_record_and_audit_finds_what_is_not() {
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    // The serve that runs the log also keeps the CA: it sends records a `ca` command left.
    certgate_ok(d, "ca init --dir ca --name Recorded");
    std::fs::write(
        d.join("c.toml"),
        format!("{}[ca]\ndir = \"ca\"\n", log_config("logdata")),
    )
    .unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let url = format!("https://localhost:{}", server.port("log"));
    let log_key = vkey(d, "logdata");
    std::fs::write(d.join("ca/ca.toml"), ca_toml(&url, &log_key)).unwrap();

    // Issue, renew and revoke: each one on the record at once.
    let out = certgate_ok(d, "ca issue --dir ca --client alice --out alice");
    assert!(out.contains("on the record: log index 0"), "{out}");
    certgate_ok(
        d,
        "ca issue --dir ca --server web --dns web.localhost --out web",
    );
    let first_alice = serial(d, "alice.pem");
    certgate_ok(d, "ca renew --dir ca alice.pem");
    let out = certgate_ok(d, "ca revoke --dir ca web.pem --reason superseded");
    assert!(out.contains("on the record: log index 3"), "{out}");
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("4 records of this CA; index: 3 certificates"),
        "{out}"
    );
    assert!(out.contains("the index and the log agree"), "{out}");
    assert!(
        out.contains(&format!("renew   {}", serial(d, "alice.pem")))
            && out.contains(&format!("(renews {first_alice})"))
            && out.contains("(superseded)"),
        "{out}"
    );
    assert!(std::fs::read_to_string(d.join("ca/record.key")).is_ok());

    // The log is down: the certificate is handed out, its record waits (exit 75) and audit
    // says so; serve sends it once the log is back.
    let dead = format!("https://localhost:{}", crate::free_port());
    std::fs::write(d.join("ca/ca.toml"), ca_toml(&dead, &log_key)).unwrap();
    let out = certgate(d, "ca issue --dir ca --client bob --out bob");
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("1 record is not yet on the log"),
        "{}",
        text(&out)
    );
    assert!(d.join("bob.pem").exists() && d.join("bob.key").exists());
    let pending: Vec<_> = std::fs::read_dir(d.join("ca/records/pending"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pending.len(), 1);
    let bob_record = std::fs::read_to_string(&pending[0]).unwrap();
    let out = certgate(
        d,
        [
            "ca", "audit", "--dir", "ca", "--log", &url, "--ca", "root.pem", "--vkey", &log_key,
        ]
        .as_slice(),
    );
    let (code, out) = (out.status.code(), text(&out));
    assert_eq!(code, Some(65), "{out}");
    assert!(
        out.contains(&format!(
            "serial {} (CN=bob): in the index, but no issue record on the log (its record waits in records/pending",
            serial(d, "bob.pem")
        )),
        "{out}"
    );
    std::fs::write(d.join("ca/ca.toml"), ca_toml(&url, &log_key)).unwrap();
    crate::revocation::eventually(
        "serve sent the pending record",
        std::time::Duration::from_secs(15),
        || {
            std::fs::read_dir(d.join("ca/records/pending"))
                .unwrap()
                .count()
                == 0
        },
    );
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(0), "{out}");
    let out = certgate_ok(d, "ca issue --dir ca --client carol --out carol");
    assert!(out.contains("on the record: log index 5"), "{out}");

    // A certificate written into the index by hand, never on the log.
    let index = std::fs::read_to_string(d.join("ca/index.tsv")).unwrap();
    std::fs::write(
        d.join("ca/index.tsv"),
        format!("{index}V\t0badc0de\t2030-01-01T00:00:00Z\t-\t-\tclient\tCN=ghost\n"),
    )
    .unwrap();
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(65), "{out}");
    assert!(
        out.contains("serial 0badc0de (CN=ghost): in the index, but no issue record on the log"),
        "{out}"
    );
    // A revocation taken back by hand in the index.
    let web = serial(d, "web.pem");
    let unrevoked: String = index
        .lines()
        .map(|l| {
            if l.contains(&web) {
                let f: Vec<&str> = l.split('\t').collect();
                format!("V\t{}\t{}\t-\t-\t{}\t{}\n", f[1], f[2], f[5], f[6])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(d.join("ca/index.tsv"), &unrevoked).unwrap();
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(65), "{out}");
    assert!(
        out.contains(&format!(
            "serial {web} (CN=web): revoked on the log (index 3), but valid in the index"
        )),
        "{out}"
    );
    std::fs::write(d.join("ca/index.tsv"), &index).unwrap();

    // A copy of the CA directory issuing on the side: its record is on the log, the
    // certificate is not in this index.
    let copied = std::process::Command::new("cp")
        .current_dir(d)
        .args(["-a", "ca", "ca-copy"])
        .status()
        .unwrap();
    assert!(copied.success());
    certgate_ok(d, "ca issue --dir ca-copy --client mallory --out mallory");
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(65), "{out}");
    assert!(
        out.contains(&format!(
            "issue of serial {} (CN=mallory), a certificate the index does not hold",
            serial(d, "mallory.pem")
        )),
        "{out}"
    );

    // A record of this CA signed by another key, added to the log by a writer.
    let note = Note::parse(bob_record.as_bytes()).unwrap();
    let forged_text = note.text().replace(&serial(d, "bob.pem"), "0f0f0f0f");
    let other = Signer::generate("certgate-ca-record").unwrap();
    std::fs::write(
        d.join("forged.note"),
        Note::sign(&forged_text, &[&other]).unwrap().to_string(),
    )
    .unwrap();
    crate::log::log_add(d, &url, "forged.note");
    let (code, out) = audit(d, "ca");
    assert_eq!(code, Some(65), "{out}");
    assert!(
        out.contains("a record of serial 0f0f0f0f (issue) that the CA's record key did not sign"),
        "{out}"
    );
    assert!(!out.contains("serial 0f0f0f0f (CN=bob)"), "{out}");

    // An answer that is not the log's own (its checkpoint not signed with log_vkey: here the
    // real log, but ca.toml names another log's key) does not take a record off pending.
    certgate_ok(
        d,
        [
            "log",
            "init",
            "--origin",
            "other.example/log",
            "--dir",
            "otherlog",
        ]
        .as_slice(),
    );
    certgate_ok(d, "ca init --dir ca2 --name Second");
    std::fs::write(d.join("ca2/ca.toml"), ca_toml(&url, &vkey(d, "otherlog"))).unwrap();
    let out = certgate(d, "ca issue --dir ca2 --client erin --out erin");
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("not the log `other.example/log` of ca.log_vkey"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(d.join("ca2/records/pending"))
            .unwrap()
            .count(),
        1
    );

    // A CA that keeps records does not issue off the record when ca.toml goes missing.
    std::fs::remove_file(d.join("ca2/ca.toml")).unwrap();
    let out = certgate(d, "ca issue --dir ca2 --client frank --out frank");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("is missing, but this CA keeps its issuance on a log"),
        "{}",
        text(&out)
    );
    assert!(!d.join("frank.pem").exists());

    // Settings that cannot be used are named with their file and field.
    std::fs::write(
        d.join("ca/ca.toml"),
        "[ca]\nlog = \"http://x\"\nlog_ca = [\"a\"]\nlog_cert = \"c\"\nlog_key = \"k\"\nlog_vkey = [\"k\"]\n",
    )
    .unwrap();
    let out = certgate(d, "ca issue --dir ca --client dave --out dave");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("ca.toml`: ca.log `http://x` must be an https:// URL"),
        "{}",
        text(&out)
    );
    assert!(
        !d.join("dave.pem").exists(),
        "nothing is issued without its record"
    );
    std::fs::write(d.join("ca/ca.toml"), "[ca]\nlgo = 1\n").unwrap();
    let out = certgate(d, "ca revoke --dir ca alice.pem");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("unknown field `lgo`"), "{}", text(&out));
}
