//! CRLs from URLs, served by a real nginx: fetched, used, refreshed with conditional requests,
//! checked before use (look-alike signer, CRL number going back), cached for a restart without
//! network, denied or used within a grace period once past nextUpdate, and followed from
//! certificates' distribution points (certificates made by OpenSSL).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use certgate_testkit::{TestPki, crl_numbered, require_peer, tempdir};

use crate::server::Serve;
use crate::{Peer, free_port, https_get, start_nginx, wait_port};

/// nginx serving `d/www` on `port`, logging status codes to `d/crl-access.log`.
fn crl_server(nginx: &Path, d: &Path, port: u16) -> Peer {
    std::fs::create_dir_all(d.join("www")).unwrap();
    let dir = d.display();
    let peer = start_nginx(
        nginx,
        d,
        &format!(
            r#"
  log_format st '$request $status';
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    access_log {dir}/crl-access.log st;
  }}
"#
        ),
    );
    wait_port("nginx", port);
    peer
}

/// Replaces a file the way a publisher would: a new file renamed into place.
fn publish(d: &Path, name: &str, bytes: &[u8]) {
    let tmp = d.join("www").join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, d.join("www").join(name)).unwrap();
}

fn admin_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    out
}

/// The sum of the samples of metric `name` whose labels contain `label` (`""`: all).
fn metric(admin: u16, name: &str, label: &str) -> f64 {
    admin_get(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` every 200 ms until it returns true; fails with `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `curl` of `path` on `port` as `client`: (status, body).
fn get(curl: &Path, d: &Path, port: u16, client: &str) -> (String, String) {
    https_get(curl, d, port, "/", client, &[])
}

const DAY: time::Duration = time::Duration::days(1);

fn config(crl_port: u16, extra_trust: &str) -> String {
    format!(
        r#"version = 1
state_dir = "state"
[admin]
listen = "127.0.0.1:0"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
intermediates = ["int.pem"]
crl_url = ["http://127.0.0.1:{crl_port}/root.crl", "http://127.0.0.1:{crl_port}/int.crl"]
crl_refresh_secs = 10
{extra_trust}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
"#
    )
}

#[test]
fn crl_urls_are_fetched_refreshed_checked_and_cached() {
    let nginx = require_peer!("nginx");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let revoked = certgate_pki::Identity::from_der(
        &certgate_pki::credential::parse_certificates(
            &std::fs::read(d.join("revoked.pem")).unwrap(),
            &certgate_pki::Origin::inline("revoked.pem"),
        )
        .unwrap()[0],
    )
    .unwrap();
    let revoked_serial = hex::decode(&revoked.serial).unwrap();
    let port = free_port();
    let _nginx = crl_server(&nginx, d, port);
    publish(d, "root.crl", &crl_numbered(&pki.root, &[], 1, DAY * 7));
    let empty = crl_numbered(&pki.intermediate, &[], 1, DAY * 7);
    publish(d, "int.crl", &empty);
    std::fs::write(d.join("c.toml"), config(port, "")).unwrap();

    // `check` says no copy is there yet, and what that means.
    let out = crate::certgate(d, &["check", "--config", "c.toml"]);
    let text = crate::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no copy yet of the CRL"), "{text}");

    let server = Serve::start(d, "c.toml", 2);
    let (web, admin) = (server.port("web"), server.port("admin"));
    eventually("the fetched CRLs are used", Duration::from_secs(15), || {
        get(&curl, d, web, "good").0 == "200"
    });
    assert_eq!(get(&curl, d, web, "revoked").0, "200", "not revoked yet");
    // A refresh of an unchanged file is a conditional request: nginx answers 304.
    eventually("nginx answered 304", Duration::from_secs(25), || {
        std::fs::read_to_string(d.join("crl-access.log"))
            .unwrap_or_default()
            .contains("GET /int.crl HTTP/1.1 304")
    });

    // The CA revokes a certificate and publishes: the next refresh applies it.
    publish(
        d,
        "int.crl",
        &crl_numbered(
            &pki.intermediate,
            std::slice::from_ref(&revoked_serial),
            2,
            DAY * 7,
        ),
    );
    eventually("the revocation applies", Duration::from_secs(25), || {
        let (code, body) = get(&curl, d, web, "revoked");
        code == "403" && body.contains("revoked")
    });
    assert_eq!(get(&curl, d, web, "good").0, "200");

    // A CRL signed by a look-alike CA (same name, other key), then the older list again: both
    // refused, and the last good list stays in force.
    let refused_before = metric(admin, "certgate_crl_fetches_total", "result=\"refused\"");
    let fake = TestPki::new();
    publish(
        d,
        "int.crl",
        &crl_numbered(&fake.intermediate, &[], 3, DAY * 7),
    );
    eventually(
        "the look-alike CRL is refused",
        Duration::from_secs(25),
        || metric(admin, "certgate_crl_fetches_total", "result=\"refused\"") > refused_before,
    );
    publish(d, "int.crl", &empty);
    eventually("the older CRL is refused", Duration::from_secs(25), || {
        metric(admin, "certgate_crl_fetches_total", "result=\"refused\"") > refused_before + 1.0
    });
    assert_eq!(get(&curl, d, web, "revoked").0, "403");
    assert_eq!(get(&curl, d, web, "good").0, "200");
    assert!(metric(admin, "certgate_crl_last_success_timestamp_seconds", "") > 0.0);
    assert!(metric(admin, "certgate_crl_next_update_timestamp_seconds", "") > 0.0);

    // No network, a restart: the cached lists are in force from the first request.
    drop(server);
    drop(_nginx);
    let server = Serve::start(d, "c.toml", 2);
    let web = server.port("web");
    assert_eq!(get(&curl, d, web, "revoked").0, "403");
    assert_eq!(get(&curl, d, web, "good").0, "200");
}

#[test]
fn a_crl_that_cannot_be_refreshed_is_denied_at_next_update_or_used_within_grace() {
    let nginx = require_peer!("nginx");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let port = free_port();
    let nginx_peer = crl_server(&nginx, d, port);
    publish(d, "root.crl", &crl_numbered(&pki.root, &[], 1, DAY * 7));
    // The intermediate's list runs out 8 s from now.
    publish(
        d,
        "int.crl",
        &crl_numbered(&pki.intermediate, &[], 1, time::Duration::seconds(8)),
    );
    let lenient = format!(
        r#"[[trust]]
name = "lenient"
ca = ["root.pem"]
intermediates = ["int.pem"]
crl_url = ["http://127.0.0.1:{port}/root.crl", "http://127.0.0.1:{port}/int.crl"]
on_stale = "grace"
stale_grace_secs = 3600
[[ingress]]
name = "graceful"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "lenient"
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
"#
    );
    std::fs::write(d.join("c.toml"), config(port, &lenient)).unwrap();
    let server = Serve::start(d, "c.toml", 3);
    let (web, graceful, admin) = (
        server.port("web"),
        server.port("graceful"),
        server.port("admin"),
    );
    eventually("both trusts use the CRLs", Duration::from_secs(15), || {
        get(&curl, d, web, "good").0 == "200" && get(&curl, d, graceful, "good").0 == "200"
    });
    // The network goes away before the list runs out.
    drop(nginx_peer);
    eventually("the strict trust denies", Duration::from_secs(20), || {
        let (code, body) = get(&curl, d, web, "good");
        code == "403" && body.contains("crl_expired")
    });
    let (code, body) = get(&curl, d, graceful, "good");
    assert_eq!(code, "200", "within the grace: {body}");
    eventually(
        "grace verifications are counted",
        Duration::from_secs(25),
        || {
            metric(
                admin,
                "certgate_crl_stale_grace_verifications_total",
                "trust=\"lenient\"",
            ) > 0.0
        },
    );
    assert!(
        metric(admin, "certgate_crl_fetches_total", "result=\"error\"") > 0.0,
        "failed refreshes are counted"
    );
}

/// A CA made with certgate, a client certificate signed by OpenSSL with a CRL distribution
/// point: the trust learns the URL from the first certificate it sees, fetches the CRL, and
/// from then on decides with it.
#[test]
fn distribution_points_of_openssl_certificates_are_followed() {
    let nginx = require_peer!("nginx");
    let curl = require_peer!("curl");
    let openssl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    let _nginx = crl_server(&nginx, d, port);
    crate::certgate_ok(d, &["ca", "init", "--dir", "ca", "--name", "CDP CA"]);
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server localhost --dns localhost --out server",
    );
    std::fs::copy(d.join("ca/ca.pem"), d.join("root.pem")).unwrap();
    // OpenSSL signs alice with the CA's key, with a distribution point; certgate issues bob.
    std::fs::write(
        d.join("ext.cnf"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = clientAuth\ncrlDistributionPoints = URI:http://127.0.0.1:{port}/cdp.crl\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(d)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            crate::text(&out)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "alice.key",
        "-subj",
        "/CN=alice",
        "-out",
        "alice.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "alice.csr",
        "-CA",
        "ca/ca.pem",
        "-CAkey",
        "ca/ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-out",
        "alice.pem",
    ]);
    let text = Command::new(&openssl)
        .current_dir(d)
        .args(["x509", "-in", "alice.pem", "-noout", "-text"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("http://127.0.0.1:{port}/cdp.crl")),
        "{}",
        crate::text(&text)
    );
    // The CA revokes bob (by his certificate file) and publishes its CRL where alice's
    // certificate says.
    crate::certgate_ok(d, "ca issue --dir ca --client bob --out bob");
    crate::certgate_ok(d, &["ca", "revoke", "--dir", "ca", "bob.pem"]);
    crate::certgate_ok(d, &["ca", "crl", "--dir", "ca", "--out", "www/cdp.crl"]);
    std::fs::write(
        d.join("c.toml"),
        r#"version = 1
state_dir = "state"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
crl_from_certificates = true
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
"#,
    )
    .unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let web = server.port("web");
    // Before any CRL: refused as unknown, never waved through.
    let (code, body) = get(&curl, d, web, "alice");
    assert!(
        code == "200" || (code == "403" && body.contains("revocation_unknown")),
        "{code} {body}"
    );
    eventually(
        "alice is allowed once the CRL is in",
        Duration::from_secs(15),
        || get(&curl, d, web, "alice").0 == "200",
    );
    let (code, body) = get(&curl, d, web, "bob");
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("revoked"), "{body}");
    let learned = std::fs::read_to_string(d.join("state/crl/learned-clients.txt")).unwrap();
    assert_eq!(learned.trim(), format!("http://127.0.0.1:{port}/cdp.crl"));
}
