//! Content trust through a running `certgate serve` with a log: sign, verify, untrust, offline
//! bundles, unknown and revoked signers, a forked log, log key rotation, and bad input.

use std::path::Path;
use std::process::Output;

use crate::log::{ORIGIN, log_config, setup, vkey};
use crate::server::Serve;
use crate::{certgate, certgate_ok, text};

fn write(d: &Path, name: &str, text: &str) {
    std::fs::write(d.join(name), text).unwrap();
}

fn run(d: &Path, args: &[&str]) -> Output {
    certgate(d, args)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn sign_verify_untrust_revoke_fork_rotate() {
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    write(d, "c.toml", &log_config("logdata"));
    let mut server = Serve::start(d, "c.toml", 1);
    let url = format!("https://localhost:{}", server.port("log"));
    let log_key = vkey(d, "logdata");
    // Publishers: alice (trusted for my-*), bob (trusted, later revoked), eve (not in the policy).
    for who in ["alice", "bob", "eve"] {
        let out = certgate_ok(
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
        assert!(out.contains("verifier key:"), "{out}");
    }
    let pubkey = |who: &str| {
        std::fs::read_to_string(d.join(format!("{who}.key.pub")))
            .unwrap()
            .trim()
            .to_owned()
    };
    let policy = |log_keys: &[&str]| {
        format!(
            "version = 1\nlog_keys = [{}]\nlog_url = \"{url}\"\n[[signer]]\nkey = \"{}\"\nnames = [\"my-*\"]\n[[signer]]\nkey = \"{}\"\n",
            log_keys
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", "),
            pubkey("alice"),
            pubkey("bob")
        )
    };
    write(d, "policy.toml", &policy(&[&log_key]));
    write(d, "addon.tar", "release 1.0 bytes\n");
    let submit = |who: &str| {
        vec![
            "--key".to_owned(),
            format!("{who}.key"),
            "--log".to_owned(),
            url.clone(),
            "--ca".to_owned(),
            "root.pem".to_owned(),
            "--tls-cert".to_owned(),
            "publisher.pem".to_owned(),
            "--tls-key".to_owned(),
            "publisher.key".to_owned(),
        ]
    };
    let trust = |verb: &str, subject: &[&str], who: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec!["trust".into(), verb.into()];
        args.extend(subject.iter().map(|s| (*s).to_owned()));
        args.extend(submit(who));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = run(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "trust {verb}: {}", text(&out));
        out
    };
    let verify = |subject: &[&str], extra: &[&str]| {
        let mut args = vec!["trust", "verify"];
        args.extend_from_slice(subject);
        args.extend_from_slice(&[
            "--policy",
            "policy.toml",
            "--ca",
            "root.pem",
            "--state",
            "st",
        ]);
        args.extend_from_slice(extra);
        run(d, &args)
    };

    // sign -> TRUSTED.
    trust(
        "sign",
        &["addon.tar"],
        "alice",
        &["--name", "my-addon", "--version", "1.0"],
    );
    assert!(d.join("addon.tar.tlog-proof").exists());
    std::fs::copy(d.join("addon.tar.tlog-proof"), d.join("trusted.tlog-proof")).unwrap();
    let out = verify(&["addon.tar"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("TRUSTED"), "{}", text(&out));
    // untrust -> UNTRUSTED online; the old bundle offline still says TRUSTED, and not fresh.
    trust(
        "untrust",
        &["addon.tar"],
        "alice",
        &["--name", "my-addon", "--proof-out", "untrusted.tlog-proof"],
    );
    let out = verify(&["addon.tar"], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("UNTRUSTED"), "{}", text(&out));
    let out = verify(
        &["addon.tar"],
        &["--offline", "--proof", "trusted.tlog-proof"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("freshness unknown"), "{}", text(&out));
    // --force: the true status, loudly, and exit 0.
    let out = verify(&["addon.tar"], &["--force"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("FORCED: the true status is UNTRUSTED"),
        "{}",
        text(&out)
    );
    // A tampered artifact: nothing vouches for it online; offline the bundle does not match it.
    write(d, "addon.tar", "release 1.0 bytes, modified\n");
    let out = verify(&["addon.tar"], &[]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = verify(
        &["addon.tar"],
        &["--offline", "--proof", "trusted.tlog-proof"],
    );
    assert!(code(&out) >= 64, "{}", text(&out));
    assert!(
        text(&out).contains("a different or modified artifact"),
        "{}",
        text(&out)
    );
    // A signer the policy does not know -> UNKNOWN; status shows the ignored statement.
    write(d, "other.bin", "other artifact\n");
    trust("sign", &["other.bin"], "eve", &["--name", "my-other"]);
    let out = verify(&["other.bin"], &[]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = run(
        d,
        &[
            "trust",
            "status",
            "other.bin",
            "--policy",
            "policy.toml",
            "--ca",
            "root.pem",
            "--state",
            "st",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ignored: signer not in the policy"),
        "{}",
        text(&out)
    );
    // A password-protected publisher key: signs with its password, refuses a wrong one.
    write(d, "pw", "s3cret\n");
    write(d, "wrong-pw", "guess\n");
    certgate_ok(
        d,
        [
            "trust",
            "keygen",
            "--name",
            "carol.example",
            "--out",
            "carol.key",
            "--password-file",
            "pw",
        ]
        .as_slice(),
    );
    assert!(
        std::fs::read_to_string(d.join("carol.key"))
            .unwrap()
            .starts_with("ENCRYPTED+KEY+")
    );
    write(d, "carol.bin", "carol's release\n");
    let mut args: Vec<String> = ["trust", "sign", "carol.bin"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(submit("carol"));
    let plain: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(d, &plain);
    assert_eq!(code(&out), 64, "{}", text(&out));
    assert!(
        text(&out).contains("is encrypted: give --key-password-file"),
        "{}",
        text(&out)
    );
    let out = run(
        d,
        &[plain.as_slice(), &["--key-password-file", "wrong-pw"]].concat(),
    );
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert!(text(&out).contains("wrong password"), "{}", text(&out));
    let out = run(
        d,
        &[plain.as_slice(), &["--key-password-file", "pw"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    // A revoked signer -> REVOKED.
    trust(
        "sign",
        &[
            "--digest",
            &format!("sha256:{}", "ab".repeat(32)),
            "--kind",
            "oci",
        ],
        "bob",
        &[],
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let out = verify(&["--digest", &digest], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let mut args: Vec<String> = vec!["trust".into(), "revoke-key".into()];
    args.extend(submit("bob"));
    let out = run(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(&["--digest", &digest], &[]);
    assert_eq!(code(&out), 4, "{}", text(&out));
    // Wrong digest algorithm and broken bundles: clear errors, exit >= 64.
    let out = verify(&["--digest", "sha1:0000"], &[]);
    assert_eq!(code(&out), 64, "{}", text(&out));
    assert!(text(&out).contains("only sha256"), "{}", text(&out));
    let bundle = std::fs::read_to_string(d.join("trusted.tlog-proof")).unwrap();
    write(d, "truncated.tlog-proof", &bundle[..bundle.len() / 2]);
    write(d, "addon2.tar", "release 1.0 bytes\n");
    let out = verify(
        &["addon2.tar"],
        &["--offline", "--proof", "truncated.tlog-proof"],
    );
    assert_eq!(code(&out), 65, "{}", text(&out));
    let extra_line = bundle.lines().find(|l| l.starts_with("extra ")).unwrap();
    use base64::Engine as _;
    let statement = base64::engine::general_purpose::STANDARD
        .decode(extra_line.trim_start_matches("extra "))
        .unwrap();
    let v2 = String::from_utf8(statement)
        .unwrap()
        .replace("content-trust/v1", "content-trust/v2");
    let forged = bundle.replace(
        extra_line,
        &format!(
            "extra {}",
            base64::engine::general_purpose::STANDARD.encode(v2)
        ),
    );
    write(d, "v2.tlog-proof", &forged);
    let out = verify(&["addon2.tar"], &["--offline", "--proof", "v2.tlog-proof"]);
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert!(
        text(&out).contains("content-trust/v2` is not supported"),
        "{}",
        text(&out)
    );

    // A directory is signed by its tree digest; changing one file changes it.
    std::fs::create_dir_all(d.join("pkg/sub")).unwrap();
    write(d, "pkg/manifest.json", "{}\n");
    write(d, "pkg/sub/run.sh", "echo hi\n");
    trust("sign", &["pkg"], "alice", &["--name", "my-pkg"]);
    let out = verify(&["pkg"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    write(d, "pkg/sub/run.sh", "echo pwned\n");
    let out = verify(&["pkg"], &[]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    write(d, "addon.tar", "release 1.0 bytes\n");

    // The log goes away: a policy with a staleness bound answers from the synced state, and
    // says so; one without refuses to guess.
    server.signal("TERM");
    let _ = server.wait_exit(std::time::Duration::from_secs(10));
    drop(server);
    write(
        d,
        "stale.toml",
        &policy(&[&log_key]).replace("version = 1\n", "version = 1\nmax_staleness_secs = 3600\n"),
    );
    let out = run(
        d,
        &[
            "trust",
            "verify",
            "addon.tar",
            "--policy",
            "stale.toml",
            "--ca",
            "root.pem",
            "--state",
            "st",
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("could not be reached"),
        "{}",
        text(&out)
    );
    // ...but only entries that still hash to the checkpoint they were verified against.
    let cache = d.join("st/log.test.example_certgate.entries");
    let good = std::fs::read(&cache).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 3;
    bad[last] ^= 1;
    std::fs::write(&cache, &bad).unwrap();
    let out = run(
        d,
        &[
            "trust",
            "verify",
            "addon.tar",
            "--policy",
            "stale.toml",
            "--ca",
            "root.pem",
            "--state",
            "st",
        ],
    );
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert!(text(&out).contains("do not match"), "{}", text(&out));
    std::fs::write(&cache, &good).unwrap();
    let out = verify(&["addon.tar"], &[]);
    assert_eq!(code(&out), 75, "{}", text(&out));
    assert!(text(&out).contains("cannot connect"), "{}", text(&out));

    // Log key rotation: the log now signs with a new key (same origin). A policy listing both
    // keys accepts it; one listing only the retired key says so plainly.
    certgate_ok(
        d,
        ["trust", "keygen", "--name", ORIGIN, "--out", "newlog.key"].as_slice(),
    );
    std::fs::copy(d.join("newlog.key"), d.join("logdata/log.key")).unwrap();
    let new_log_key = std::fs::read_to_string(d.join("newlog.key.pub"))
        .unwrap()
        .trim()
        .to_owned();
    let server = Serve::start(d, "c.toml", 1);
    let url2 = format!("https://localhost:{}", server.port("log"));
    write(d, "addon.tar", "release 1.0 bytes\n");
    let with_log = |p: &str| {
        run(
            d,
            &[
                "trust",
                "verify",
                "addon.tar",
                "--policy",
                p,
                "--ca",
                "root.pem",
                "--state",
                "st",
                "--log",
                &url2,
            ],
        )
    };
    // A new append so the new key signs a checkpoint.
    trust_after_rotation(d, &url2);
    write(
        d,
        "both.toml",
        &policy(&[&log_key, &new_log_key]).replace(&url, &url2),
    );
    let out = with_log("both.toml");
    assert_eq!(code(&out), 1, "{}", text(&out));
    let out = with_log("policy.toml");
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert!(
        text(&out).contains("no signature by a known key"),
        "{}",
        text(&out)
    );
    drop(server);

    // A log serving a forked history (same origin and key, other entries): fail closed.
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "forked"].as_slice(),
    );
    std::fs::copy(d.join("logdata/log.key"), d.join("forked/log.key")).unwrap();
    write(d, "f.toml", &log_config("forked"));
    let fork = Serve::start(d, "f.toml", 1);
    let fork_url = format!("https://localhost:{}", fork.port("log"));
    for i in 0..20 {
        write(d, "junk", &format!("junk {i}\n"));
        certgate_ok(
            d,
            [
                "log",
                "add",
                "junk",
                "--url",
                &fork_url,
                "--ca",
                "root.pem",
                "--cert",
                "publisher.pem",
                "--key",
                "publisher.key",
            ]
            .as_slice(),
        );
    }
    let out = run(
        d,
        &[
            "trust",
            "verify",
            "addon.tar",
            "--policy",
            "both.toml",
            "--ca",
            "root.pem",
            "--state",
            "st",
            "--log",
            &fork_url,
        ],
    );
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert!(text(&out).contains("NOT consistent"), "{}", text(&out));
}

/// Appends one statement so that the rotated log key signs a fresh checkpoint.
fn trust_after_rotation(d: &Path, url: &str) {
    write(d, "later.bin", "a later release\n");
    let out = run(
        d,
        &[
            "trust",
            "sign",
            "later.bin",
            "--name",
            "my-later",
            "--key",
            "alice.key",
            "--log",
            url,
            "--ca",
            "root.pem",
            "--tls-cert",
            "publisher.pem",
            "--tls-key",
            "publisher.key",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}
