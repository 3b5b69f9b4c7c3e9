//! `certgate check` and the config loader: every error at once, with file, line and key; and a
//! good config (including inline PEM, PKCS#12 and env passwords) resolves.

use certgate_testkit::tempdir;

use crate::{certgate, certgate_ok, make_ca, text};

#[test]
fn a_good_config_resolves_in_every_credential_form() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    let cert_pem = std::fs::read_to_string(d.join("server.pem")).unwrap();
    let key_pem = std::fs::read_to_string(d.join("server.key")).unwrap();
    let config = format!(
        r#"version = 1
[[identity]]
name = "files"
cert = "server.pem"
key = "server.key"

[[identity]]
name = "inline"
cert_pem = """
{cert_pem}"""
key_pem = """
{key_pem}"""

[[identity]]
name = "bundle"
pkcs12 = "alice.p12"
password_env = "CG_TEST_P12_PASSWORD"

[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
"#
    );
    std::fs::write(d.join("certgate.toml"), config).unwrap();
    let password = std::fs::read_to_string(d.join("alice.p12.password")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(["check", "--config", "certgate.toml", "--json"])
        .env("CG_TEST_P12_PASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["identities"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["identities"][2]["identity"]["spiffe_id"],
        "spiffe://test.example/alice"
    );
    assert_eq!(json["identities"][2]["chain_len"], 2);
    assert_eq!(json["trusts"][0]["cas"], 1);
}

#[test]
fn every_error_is_reported_at_once_with_line_and_key() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    std::fs::write(d.join("wrong-pass"), "not-it\n").unwrap();
    let config = r#"version = 1

[[identity]]
name = "web"
cert = "server.pem"
key = "alice.key"

[[identity]]
name = "nokey"
cert = "server.pem"

[[identity]]
name = "p12"
pkcs12 = "alice.p12"
password_file = "wrong-pass"

[[identity]]
name = "inline-pass"
cert = "server.pem"
key = "server.key"
password = "hunter2"

[[trust]]
name = "clients"
ca = ["missing-ca.pem"]
crl = ["server.pem"]
crl_unknown_status = "maybe"

[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
"#;
    std::fs::write(d.join("certgate.toml"), config).unwrap();
    let out = certgate(d, "check --config certgate.toml");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    for want in [
        "certgate.toml:6: `identity.web.key`: the private key in",
        "does not match the certificate in",
        "certgate.toml:8: `identity.nokey.key`: missing; a certificate needs its private key",
        "certgate.toml:14: `identity.p12.pkcs12`:",
        "wrong password for the PKCS#12 file",
        "certgate.toml:21: `identity.inline-pass.password`: inline passwords are not accepted",
        "certgate.toml:25: `trust.clients.ca[0]`:",
        "missing-ca.pem`: no such file",
        "certgate.toml:26: `trust.clients.crl[0]`:",
        "not a valid CRL",
        "certgate.toml:27: `trust.clients.crl_unknown_status`: `maybe` is not one of",
        "certgate.toml:30: `trust.clients.name`: another [[trust]] is already named `clients`",
        "8 errors in the configuration",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn syntax_errors_and_versions_name_the_line() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(
        d.join("a.toml"),
        "version = 1\n[[identity]]\nname = \"x\"\ncert = \n",
    )
    .unwrap();
    let out = certgate(d, "check --config a.toml");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("a.toml:4:"), "{}", text(&out));
    std::fs::write(d.join("b.toml"), "version = 2\n").unwrap();
    let out = certgate(d, "check --config b.toml");
    assert!(
        text(&out).contains("b.toml:1: `version`: unsupported version 2"),
        "{}",
        text(&out)
    );
    std::fs::write(d.join("c.toml"), "[[identity]]\nnmae = \"x\"\n").unwrap();
    let out = certgate(d, "check --config c.toml");
    assert!(
        text(&out).contains("c.toml:2:") && text(&out).contains("unknown field `nmae`"),
        "{}",
        text(&out)
    );
    let out = certgate(d, "check --config missing.toml");
    assert_eq!(
        out.status.code(),
        Some(66),
        "a missing config is a missing input"
    );
    assert!(
        text(&out).contains("missing.toml: `missing.toml`: no such file"),
        "{}",
        text(&out)
    );
}

#[test]
fn quickstart_creates_then_reuses_and_its_config_checks() {
    let dir = tempdir();
    let d = dir.path();
    let first = certgate_ok(d, "quickstart --dir qs --no-serve");
    assert!(
        first.contains(
            "created CA, server certificate, client certificate, log, content trust, egress CA, config"
        ),
        "{first}"
    );
    let ca_before = std::fs::read(d.join("qs/ca/ca.pem")).unwrap();
    let second = certgate_ok(d, "quickstart --dir qs --no-serve");
    assert!(
        second.contains(
            "reused CA, server certificate, client certificate, log, content trust, egress CA, config"
        ),
        "{second}"
    );
    assert_eq!(std::fs::read(d.join("qs/ca/ca.pem")).unwrap(), ca_before);
    let check = certgate_ok(d, "check --config qs/certgate.toml");
    assert!(
        check.contains("identity `client`: CN=quickstart-client"),
        "{check}"
    );
    let inspect = certgate_ok(
        d,
        "inspect qs/client.pem --ca qs/ca/ca.pem --crl qs/ca/crl.pem",
    );
    assert!(inspect.contains("VERIFIED"), "{inspect}");
}

#[test]
fn quickstart_runs_a_gateway_that_curl_can_use() {
    use std::io::{BufRead as _, BufReader};
    let curl = certgate_testkit::require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(["quickstart", "--dir", "qs", "--listen", "127.0.0.1:0"])
        .env("CERTGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = None;
    let mut commands = Vec::new();
    let mut log_commands = Vec::new();
    let mut trust_commands = Vec::new();
    let mut egress_commands = Vec::new();
    let me = env!("CARGO_BIN_EXE_certgate");
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Gateway running on https://localhost:") {
            port = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        } else if port.is_some() && line.trim_start().starts_with("curl ") {
            commands.push(line.trim().to_owned());
        } else if line.trim_start().starts_with(&format!("{me} log ")) {
            log_commands.push(line.trim().to_owned());
        } else if line.trim_start().starts_with(&format!("{me} trust ")) {
            trust_commands.push(line.trim().to_owned());
        } else if line.trim_start().starts_with("HTTPS_PROXY=") {
            egress_commands.push(line.trim().to_owned());
        }
        if commands.len() == 3
            && log_commands.len() == 2
            && trust_commands.len() == 4
            && egress_commands.len() == 2
        {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        port.is_some() && commands.len() == 3,
        "quickstart printed no curl lines"
    );
    // The running gateway keeps the quickstart CA's CRL signed (`[ca]`): the 30-day CRL that
    // quickstart made is replaced by one serve signed, so nobody has to run `ca crl` by hand.
    let crl_number = || {
        std::fs::read_to_string(d.join("qs/ca/crlnumber"))
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crl_number() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not sign the quickstart CA's CRL (crlnumber {})",
            crl_number()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Run the printed commands as a user would paste them.
    let results: Vec<String> = commands
        .iter()
        .map(|c| {
            let args: Vec<&str> = c
                .split_whitespace()
                .skip(1)
                .take_while(|a| *a != "#")
                .collect();
            let out = std::process::Command::new(&curl)
                .current_dir(d)
                .arg("-sS")
                .args(&args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    // The printed log commands: append the config file, then check the log's checkpoint.
    let log_results: Vec<std::process::Output> = log_commands
        .iter()
        .chain(&trust_commands)
        .map(|c| {
            let mut words = c.split_whitespace().take_while(|w| *w != "#");
            let program = words.next().unwrap();
            std::process::Command::new(program)
                .current_dir(d)
                .args(words)
                .output()
                .unwrap()
        })
        .collect();
    // The printed egress commands, pasted into a shell: curl and Python requests, with no
    // certificate of their own, reach /private as the quickstart client through HTTPS_PROXY.
    let egress_results: Vec<std::process::Output> = egress_commands
        .iter()
        .map(|c| {
            std::process::Command::new("bash")
                .current_dir(d)
                .args(["-c", c])
                .output()
                .unwrap()
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(egress_commands.len(), 2, "{egress_commands:?}");
    assert!(egress_commands[0].contains(" curl "), "{egress_commands:?}");
    assert!(
        egress_commands[1].contains("python3 -c"),
        "{egress_commands:?}"
    );
    for (c, out) in egress_commands.iter().zip(&egress_results) {
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && body.contains("\"x-client-verify\": \"SUCCESS\"")
                && body.contains("spiffe://quickstart.certgate.local/client"),
            "{c}: {}",
            crate::text(out)
        );
    }
    assert_eq!(log_commands.len(), 2, "{log_commands:?}");
    assert_eq!(trust_commands.len(), 4, "{trust_commands:?}");
    // sign, verify (TRUSTED, 0), untrust, verify (UNTRUSTED, 1).
    let expected = [0, 0, 0, 0, 0, 1];
    for ((c, out), want) in log_commands
        .iter()
        .chain(&trust_commands)
        .zip(&log_results)
        .zip(expected)
    {
        assert_eq!(out.status.code(), Some(want), "{c}: {}", crate::text(out));
    }
    assert!(
        String::from_utf8_lossy(&log_results[0].stdout).contains("appended at index 0"),
        "{}",
        crate::text(&log_results[0])
    );
    assert!(
        results[0].contains("\"x-client-verify\": \"NONE\""),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("\"x-client-verify\": \"SUCCESS\""),
        "{}",
        results[1]
    );
    assert!(
        results[1].contains("spiffe://quickstart.certgate.local/client"),
        "{}",
        results[1]
    );
    assert_eq!(results[2], "a client certificate is required\n");
}

#[test]
fn gemini_sections_report_each_error_with_line_and_key() {
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    std::fs::write(d.join("not-executable.sh"), "#!/bin/sh\n").unwrap();
    std::fs::create_dir_all(d.join("scripts")).unwrap();
    std::fs::write(d.join("scripts/admin.sh"), "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            d.join("scripts/admin.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("other")).unwrap();
        std::fs::write(d.join("other/tool.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            d.join("other/tool.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // The protected tool, hard-linked into the open directory under another name.
        std::fs::hard_link(d.join("other/tool.sh"), d.join("scripts/innocent.sh")).unwrap();
    }
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[gemini]]
name = "capsule"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "require_and_verify"
  [[gemini.route]]
  upstream = "cgi:missing-dir"
  [[gemini.route]]
  path = "/x"
  upstream = "cgi:not-executable.sh"
  [[gemini.route]]
  path = "/y"
  upstream = "echo"
  [[gemini.route]]
  path = "z"
  upstream = "cgi:."
  cgi_variables = "apache"
  [[gemini.route]]
  path = "/app"
  upstream = "http://127.0.0.1:8080"
  cgi_variables = "jetforce"
  [[gemini.route]]
  path = "/q?x=1"
  upstream = "http://127.0.0.1:8080"

[[gemini]]
name = "overlap"
listen = "127.0.0.1:0"
identity = "server"
  [[gemini.route]]
  path = "/"
  upstream = "cgi:scripts"
  [[gemini.route]]
  path = "/admin"
  upstream = "cgi:scripts/admin.sh"
  require_client_cert = true
  [[gemini.route]]
  path = "/adm"
  upstream = "cgi:./scripts/"
  require_client_cert = true
  [[gemini.route]]
  path = "/tool"
  upstream = "cgi:other/tool.sh"
  require_client_cert = true

[[gemini]]
name = "empty"
listen = "127.0.0.1:0"
identity = "server"
"#;
    std::fs::write(d.join("certgate.toml"), config).unwrap();
    let out = certgate(d, "check --config certgate.toml");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    for want in [
        "certgate.toml:11: `gemini.capsule.client_auth`: `require_and_verify` verifies client certificates, so it needs `trust",
        "certgate.toml:13: `gemini.capsule.route[0].upstream`:",
        "missing-dir: No such file",
        "certgate.toml:16: `gemini.capsule.route[1].upstream`:",
        "not-executable.sh is not executable (chmod +x it)",
        "certgate.toml:19: `gemini.capsule.route[2].upstream`: `echo` is not a Gemini upstream",
        "certgate.toml:21: `gemini.capsule.route[3].path`: `z` must start with `/`",
        "certgate.toml:23: `gemini.capsule.route[3].cgi_variables`: `apache` is not `jetforce` or `molly-brown`",
        "certgate.toml:27: `gemini.capsule.route[4].cgi_variables`: applies to `cgi:` upstreams only",
        "certgate.toml:29: `gemini.capsule.route[5].path`: `/q?x=1`: a route path matches a path only",
        "`gemini.overlap.route[1].upstream`:",
        "admin.sh is also reachable under other rules: it is `/admin.sh` in route `*/`'s directory",
        "`gemini.overlap.route[2].upstream`:",
        "scripts is also reachable under other rules: route `*/` names it too",
        "tool.sh is also reachable under other rules: it is `/innocent.sh` in route `*/`'s directory",
        "`gemini.empty.route`: no routes; add at least one [[gemini.route]]",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}
