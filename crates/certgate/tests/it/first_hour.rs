//! The rough edges a new user hits in the first hour, each pinned: usage errors look like usage
//! errors, permanent refusals are permanent, one mistake gives one error, scripts get JSON and
//! the right exit code, nothing is overwritten silently.

use crate::{certgate, certgate_ok, make_ca, text};
use certgate_testkit::tempdir;

#[test]
fn trust_verify_without_the_log_ca_is_a_usage_error_not_unknown() {
    let dir = tempdir();
    let d = dir.path();
    certgate_ok(d, "log init --origin first.test/log --dir log");
    certgate_ok(d, "trust keygen --name first.test/pub --out pub.key");
    let policy = format!(
        "version = 1\nlog_keys = [\"{}\"]\nlog_url = \"https://127.0.0.1:1\"\n[[signer]]\nkey = \"{}\"\nnames = [\"*\"]\n",
        std::fs::read_to_string(d.join("log/log.vkey"))
            .unwrap()
            .trim(),
        std::fs::read_to_string(d.join("pub.key.pub"))
            .unwrap()
            .trim(),
    );
    std::fs::write(d.join("policy.toml"), policy).unwrap();
    std::fs::write(d.join("file"), "x").unwrap();
    let out = certgate(d, "trust verify file --policy policy.toml");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--ca FILE is needed"), "{}", text(&out));
    assert!(!text(&out).contains("UNKNOWN"), "{}", text(&out));
}

#[test]
fn a_section_that_failed_gives_its_own_error_only() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    std::fs::write(
        d.join("c.toml"),
        r#"version = 1
[[identity]]
name = "server"
cert = "missing-server.pem"
key = "missing-server.key"
[[trust]]
name = "clients"
ca = ["missing-ca.pem"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
trust = "clients"
  [[ingress.route]]
  upstream = "echo"
  upstream_trust = "nowhere"
"#,
    )
    .unwrap();
    let out = certgate(d, "check --config c.toml");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("missing-server.pem`: no such file"), "{t}");
    assert!(t.contains("missing-ca.pem`: no such file"), "{t}");
    assert!(
        !t.contains("no [[identity]] named `server`"),
        "follow-on error:\n{t}"
    );
    assert!(
        !t.contains("no [[trust]] named `clients`"),
        "follow-on error:\n{t}"
    );
}

#[test]
fn check_json_reports_bad_configs_as_json_with_the_exit_code() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "version = 1\n[[trust]]\nname = \"t\"\n").unwrap();
    let out = certgate(d, "check --config bad.toml --json");
    assert_eq!(out.status.code(), Some(78));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"][0]["key"], "trust.t.ca", "{doc:#}");
    assert_eq!(doc["errors"][0]["line"], 2, "{doc:#}");
    let out = certgate(d, "check --config missing.toml --json");
    assert_eq!(out.status.code(), Some(66));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let out = certgate(d, "serve --config missing.toml");
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
}

#[test]
fn inspecting_an_encrypted_p12_says_which_flag_gives_the_password() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    let out = certgate(d, "inspect alice.p12");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("--password-file FILE"), "{t}");
    assert!(
        !t.contains("password_file`"),
        "config keys suggested on the command line: {t}"
    );
    let out = certgate(d, "inspect alice.p12 --password-file alice.p12.password");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn ca_issue_does_not_overwrite_without_force() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    let before = std::fs::read_to_string(d.join("ca/index.tsv")).unwrap();
    let key_before = std::fs::read(d.join("alice.key")).unwrap();
    let out = certgate(d, "ca issue --dir ca --client alice --out alice");
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read(d.join("alice.key")).unwrap(), key_before);
    assert_eq!(
        std::fs::read_to_string(d.join("ca/index.tsv")).unwrap(),
        before,
        "a refused issue left a certificate in the index"
    );
    certgate_ok(d, "ca issue --dir ca --client alice --out alice --force");
    assert_ne!(std::fs::read(d.join("alice.key")).unwrap(), key_before);
}

#[test]
fn quickstart_no_serve_says_how_to_start_later() {
    let dir = tempdir();
    let d = dir.path();
    let out = certgate_ok(d, "quickstart --dir qs --no-serve");
    assert!(
        out.contains("certgate serve --config qs/certgate.toml"),
        "{out}"
    );
}
