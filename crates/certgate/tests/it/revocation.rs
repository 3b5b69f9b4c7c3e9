//! CRLs from URLs, served by a real nginx: fetched, used, refreshed with conditional requests,
//! checked before use (look-alike signer, CRL number going back), cached for a restart without
//! network, denied or used within a grace period once past nextUpdate, and followed from
//! certificates' distribution points (certificates made by OpenSSL).

use std::io::{Read as _, Write as _};
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

/// The sum of the samples of metric `name` whose labels contain `label` (`""`: all).
pub(crate) fn metric(admin: u16, name: &str, label: &str) -> f64 {
    crate::admin_get(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` every 200 ms until it returns true; fails with `what` after `limit`.
pub(crate) fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
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
    // The status document (and page) shows each URL with its last fetch and next update.
    let status = crate::admin_get(admin, "/status");
    let body = status.split("\r\n\r\n").nth(1).unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    let sources = doc["crl_sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{doc}");
    assert!(
        sources
            .iter()
            .all(|s| s["last_success"].is_string() && s["seconds_left"].as_i64() > Some(0)),
        "{doc}"
    );
    let page = crate::admin_get(admin, "/");
    assert!(
        page.contains("CRLs fetched from URLs") && page.contains("/int.crl"),
        "{page}"
    );
    assert!(metric(admin, "certgate_crl_next_update_timestamp_seconds", "") > 0.0);

    // The cached copies vanish while the old list is served: the process remembers the newest
    // list it had, so the old one is still refused and the list in force stays in force; the
    // fetcher stores it again (so that a restart without network has it), and a list at least
    // as new is taken when the CA publishes one.
    std::fs::remove_dir_all(d.join("state/crl")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (code, body) = get(&curl, d, web, "revoked");
    assert_eq!(code, "403", "{body}");
    assert_eq!(get(&curl, d, web, "good").0, "200");
    let stored = || {
        std::fs::read_dir(d.join("state/crl")).map_or(0, |dir| {
            dir.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "crl"))
            })
            .count()
        })
    };
    eventually(
        "the lists in force are stored again",
        Duration::from_secs(30),
        || stored() == 2,
    );
    publish(
        d,
        "int.crl",
        &crl_numbered(
            &pki.intermediate,
            std::slice::from_ref(&revoked_serial),
            4,
            DAY * 7,
        ),
    );
    eventually(
        "the newer list is in force again",
        Duration::from_secs(25),
        || get(&curl, d, web, "good").0 == "200",
    );
    assert_eq!(get(&curl, d, web, "revoked").0, "403");

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
    // The next refresh attempt after the network went away may come a retry interval later.
    eventually(
        "failed refreshes are counted",
        Duration::from_secs(25),
        || metric(admin, "certgate_crl_fetches_total", "result=\"error\"") > 0.0,
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

/// A client's TLS config from `who`.pem/.key in `d`, with `alpn`.
fn client_tls(d: &Path, who: &str, alpn: &[&[u8]]) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::PrivateKeyDer;
    let chain = certgate_pki::credential::parse_certificates(
        &std::fs::read(d.join(format!("{who}.pem"))).unwrap(),
        &certgate_pki::Origin::other(who),
    )
    .unwrap();
    let key = certgate_pki::credential::parse_private_key(
        &std::fs::read(d.join(format!("{who}.key"))).unwrap(),
        &certgate_pki::Origin::other(who),
        None,
    )
    .unwrap();
    let root = std::fs::read(d.join("root.pem")).unwrap();
    let root =
        certgate_pki::credential::parse_certificates(&root, &certgate_pki::Origin::other("root"))
            .unwrap()
            .remove(0);
    let config = crate::tls::config(
        root.as_ref(),
        &[],
        crate::tls::Auth::Cert(
            chain,
            PrivateKeyDer::try_from(key.der.secret_der().to_vec()).unwrap(),
        ),
    );
    let mut config = (*config).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

/// An HTTP/2 connection of `who` to the gateway: its request sender and its driver task.
struct H2 {
    send: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

async fn h2_connect(d: &Path, who: &str, port: u16) -> H2 {
    let config = client_tls(d, who, &[b"h2"]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    H2 { send, driver }
}

async fn h2_get(h2: &mut H2) -> Result<u16, String> {
    let req = http::Request::get("https://localhost/h2")
        .body(http_body_util::Empty::new())
        .unwrap();
    match h2.send.send_request(req).await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

/// A TLS stream of `who` to `port` (HTTP/1.1 or raw TCP), with a short read timeout.
fn raw(
    d: &Path,
    who: &str,
    port: u16,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let config = client_tls(d, who, &[]);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `ping` and reads it back; false when the stream is closed or silent for a second.
fn echoes(s: &mut (impl std::io::Read + std::io::Write)) -> bool {
    if s.write_all(b"ping").and_then(|()| s.flush()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while got.len() < 4 && Instant::now() < deadline {
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    got == b"ping"
}

/// Whether the other side closes `s` within `limit` (EOF or an error).
fn closes_within(s: &mut impl std::io::Read, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Revocation while connected: once a reload brings a CRL that revokes a client, its open
/// HTTP/2 connection, its WebSocket-style upgraded connection and its TCP tunnel are closed
/// within a second and a half of the reload; another client's connections keep working.
#[test]
fn revoked_clients_lose_their_open_connections() {
    use std::io::{Read as _, Write as _};
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let revoker = Revoker::new(d);
    let upgrade_echo = crate::lifetimes::Script::start(&python, crate::lifetimes::UPGRADE_ECHO);
    // The tunnel's target echoes, and records what it receives.
    let received = d.join("target-received");
    let tcp_echo = crate::lifetimes::Script::start_with(
        &python,
        crate::lifetimes::TCP_ECHO,
        &[&received.display().to_string()],
    );
    let routes = format!(
        "  [[ingress.route]]\n  upstream = \"http://127.0.0.1:{}\"\n  upgrades = [\"echo\"]\n  require_verified = true\n  [[ingress.route]]\n  path = \"/h2\"\n  upstream = \"echo\"\n  require_verified = true\n",
        upgrade_echo.1
    );
    std::fs::write(d.join("c.toml"), revocable_config(&routes, tcp_echo.1)).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let (web, tcp) = (server.port("web"), server.port("tcp"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut h2 = std::collections::HashMap::new();
    let mut upgraded = std::collections::HashMap::new();
    let mut tunnels = std::collections::HashMap::new();
    for who in ["revoked", "good"] {
        let mut c = rt.block_on(h2_connect(d, who, web));
        assert_eq!(rt.block_on(h2_get(&mut c)), Ok(200), "{who} over HTTP/2");
        h2.insert(who, c);
        let mut u = raw(d, who, web);
        u.write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !head.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
            let mut b = [0u8; 1];
            if let Ok(1) = u.read(&mut b) {
                head.push(b[0]);
            }
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{who}: {}",
            String::from_utf8_lossy(&head)
        );
        assert!(echoes(&mut u), "{who}: upgraded echo");
        upgraded.insert(who, u);
        let mut t = raw(d, who, tcp);
        assert!(echoes(&mut t), "{who}: tunnel echo");
        tunnels.insert(who, t);
    }

    // A client that keeps opening streams on its open connection after the revocation.
    let (mut lingering, mut lingering_out, line) =
        revoked_client(&python, d, LINGERING_H2, web, &[]);
    assert_eq!(line.trim(), "ready 200", "{line}");
    // A client whose TLS handshake spans the revocation: its certificate is checked before, its
    // Finished goes after, with three requests in the same write.
    let straddle = |port: u16, kind: &str| {
        let (child, out, line) = revoked_client(&python, d, STRADDLING, port, &[kind]);
        assert_eq!(line.trim(), "certificate sent", "{kind}: {line}");
        (child, out)
    };
    // Four through the tunnel: the bug this guards against lost a race there about half the time.
    let mut straddling: Vec<_> = std::iter::once(straddle(web, "http"))
        .chain((0..4).map(|_| straddle(tcp, "tcp")))
        .collect();

    // The CA revokes one client; the new CRL is installed and the config reloaded.
    revoker.revoke(&server);
    lingering
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let limit = Duration::from_millis(1500);
    let started = Instant::now();
    let victim_h2 = h2.remove("revoked").unwrap();
    // Once the revocation is in force (a new connection of the revoked client is refused), the
    // open one serves nothing more: a new stream on it, before the client has read the GOAWAY,
    // is refused (403) or reset, never answered 200 under the old verdict.
    eventually("the revocation is in force", Duration::from_secs(5), || {
        let mut c = rt.block_on(h2_connect(d, "revoked", web));
        rt.block_on(h2_get(&mut c)) == Ok(403)
    });
    // An upgraded connection has no requests in flight to finish: it is cut at once, with no
    // grace in which bytes would still go through.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !echoes(upgraded.get_mut("revoked").unwrap()),
        "bytes sent on the revoked client's upgraded connection after the revocation went through"
    );
    // The handshake that began before the revocation completes now; no request sent with it is
    // served under the old verdict.
    let mut straddled = Vec::new();
    for (child, out) in &mut straddling {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(out, &mut line).unwrap();
        let _ = child.wait();
        straddled.push(serde_json::from_str::<serde_json::Value>(line.trim()).unwrap());
    }
    let [http, tunnelled @ ..] = &straddled[..] else {
        unreachable!()
    };
    assert_eq!(
        http["handshake"], true,
        "the straddling client's handshake did not complete: the test saw nothing ({http})"
    );
    assert!(
        !http["statuses"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(200)),
        "requests sent with a handshake that spanned the revocation were served: {http}"
    );
    for tcp in tunnelled {
        assert_eq!(
            tcp["handshake"], true,
            "the straddling tunnel client's handshake did not complete: the test saw nothing ({tcp})"
        );
        assert_eq!(
            tcp["read"], 0,
            "bytes sent through the tunnel with a handshake that spanned the revocation were echoed: {tcp}"
        );
    }
    let target_got = std::fs::read(&received).unwrap_or_default();
    assert!(
        !target_got.windows(9).any(|w| w == b"straddled"),
        "bytes sent through the tunnel with a handshake that spanned the revocation reached the target"
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lingering_out, &mut line).unwrap();
    let _ = lingering.wait();
    let statuses: Vec<u16> = serde_json::from_str(line.trim()).unwrap();
    assert!(
        !statuses.is_empty(),
        "the client opened no stream after the GOAWAY: the test saw nothing"
    );
    assert!(
        !statuses.contains(&200),
        "streams opened on the revoked client's connection after its GOAWAY were served: {statuses:?}"
    );

    let ended = rt.block_on(async {
        tokio::time::timeout(limit + Duration::from_secs(2), victim_h2.driver)
            .await
            .is_ok()
    });
    assert!(
        ended,
        "the revoked client's HTTP/2 connection is still open"
    );
    assert!(
        closes_within(upgraded.get_mut("revoked").unwrap(), limit),
        "the revoked client's upgraded connection is still open"
    );
    assert!(
        closes_within(tunnels.get_mut("revoked").unwrap(), limit),
        "the revoked client's tunnel is still open"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closing took {took:?}");
    // The other client is untouched, on every connection.
    let good = h2.get_mut("good").unwrap();
    assert_eq!(rt.block_on(h2_get(good)), Ok(200), "good over HTTP/2");
    assert!(
        echoes(upgraded.get_mut("good").unwrap()),
        "good: upgraded echo"
    );
    assert!(
        echoes(tunnels.get_mut("good").unwrap()),
        "good: tunnel echo"
    );
    // A new connection of the revoked client is refused too.
    let mut again = rt.block_on(h2_connect(d, "revoked", web));
    assert_eq!(rt.block_on(h2_get(&mut again)), Ok(403));
}

/// The test PKI written to a directory (`crate::ingress::write_pki`) with empty CRLs for its
/// root (`root.crl`) and intermediate (`cur.crl`); [`Revoker::revoke`] revokes the client
/// `revoked.pem`.
struct Revoker {
    pki: TestPki,
    dir: std::path::PathBuf,
    serial: Vec<u8>,
}

impl Revoker {
    fn new(d: &Path) -> Self {
        let pki = crate::ingress::write_pki(d);
        let victim = certgate_pki::credential::parse_certificates(
            &std::fs::read(d.join("revoked.pem")).unwrap(),
            &certgate_pki::Origin::other("revoked"),
        )
        .unwrap();
        let serial =
            hex::decode(certgate_pki::Identity::from_der(&victim[0]).unwrap().serial).unwrap();
        std::fs::write(d.join("root.crl"), crl_numbered(&pki.root, &[], 1, DAY * 7)).unwrap();
        std::fs::write(
            d.join("cur.crl"),
            crl_numbered(&pki.intermediate, &[], 1, DAY * 7),
        )
        .unwrap();
        Self {
            pki,
            dir: d.to_owned(),
            serial,
        }
    }

    /// Installs a CRL that revokes `revoked.pem` and reloads `server`.
    fn revoke(&self, server: &Serve) {
        std::fs::write(
            self.dir.join("cur.crl"),
            crl_numbered(
                &self.pki.intermediate,
                std::slice::from_ref(&self.serial),
                2,
                DAY * 7,
            ),
        )
        .unwrap();
        server.signal("HUP");
    }
}

/// A config for the [`Revoker`]'s PKI: the trust `clients` with its CRLs, the ingress `web`
/// (`client_auth = "request"`) with `routes`, and the tunnel `tcp` to `target` (verified
/// clients only).
fn revocable_config(routes: &str, target: u16) -> String {
    format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["root.crl", "cur.crl"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
{routes}[[tunnel]]
name = "tcp"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "require_and_verify"
trust = "clients"
target = "127.0.0.1:{target}"
"#
    )
}

/// A revoked client that reads slowly gets nothing more once its connection is cut: what was
/// queued for it in the kernel is dropped (the socket is reset), over HTTPS (a download, cut
/// after the in-flight grace) and through a TCP tunnel (cut at once). Closed the usual way, the
/// megabytes already queued would go on draining to it after the cut.
#[test]
fn a_revoked_client_reading_slowly_gets_nothing_queued_after_the_cut() {
    use std::io::Write as _;
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let revoker = Revoker::new(d);
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/big.bin"), vec![b'x'; 64 << 20]).unwrap();
    let files = d.join("files").display().to_string();
    let http =
        crate::lifetimes::Script::start_with(&python, crate::lifetimes::FILE_SERVER, &[&files]);
    let routes = format!(
        "  [[ingress.route]]\n  upstream = \"http://127.0.0.1:{}\"\n  require_verified = true\n",
        http.1
    );
    std::fs::write(d.join("c.toml"), revocable_config(&routes, http.1)).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let (web, tcp) = (server.port("web"), server.port("tcp"));
    let mut readers: Vec<_> = [("https", web), ("tunnel", tcp)]
        .into_iter()
        .map(|(kind, port)| {
            let (child, out, line) = revoked_client(&python, d, SLOW_READER, port, &[]);
            assert!(line.starts_with("ready"), "{kind}: {line}");
            (kind, child, out)
        })
        .collect();
    revoker.revoke(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    eventually("the revocation is in force", Duration::from_secs(5), || {
        let mut c = rt.block_on(h2_connect(d, "revoked", web));
        rt.block_on(h2_get(&mut c)) == Ok(403)
    });
    // Past the in-flight grace (a second) with a margin: both connections have been cut.
    std::thread::sleep(Duration::from_millis(2500));
    for (kind, child, out) in &mut readers {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(out, &mut line).unwrap();
        let _ = child.wait();
        let got: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            got["end"], "reset",
            "{kind}: the revoked client's connection was not reset: {got}"
        );
        // Its own receive buffer (asked for 32 KiB) is all it may still read.
        let after = got["after"].as_u64().unwrap();
        assert!(
            after < 512 * 1024,
            "{kind}: the revoked client read {after} bytes after its connection was cut"
        );
    }
}

/// Asks for `/big.bin` over TLS with a small receive buffer, reads 256 KiB of it and prints
/// `ready`; then, told `go` on stdin, reads what is left until the end and prints JSON: the
/// bytes it read after `go` and how the stream ended (`reset`, `eof` or `timeout`).
const SLOW_READER: &str = r#"
import json, socket, ssl, sys
port, ca, cert, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
sock.settimeout(10)
sock.connect(("127.0.0.1", int(port)))
# TLS over memory buffers, so that the socket's own errors (a reset) are seen as they are.
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
def send_pending():
    data = outgoing.read()
    if data:
        sock.sendall(data)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        send_pending()
        data = sock.recv(65536)
        if not data:
            print("closed during the handshake", flush=True)
            sys.exit(1)
        incoming.write(data)
send_pending()
tls.write(b"GET /big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n")
send_pending()
def decrypted():
    n = 0
    while True:
        try:
            n += len(tls.read(65536))
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            return n
got = 0
while got < 256 * 1024:
    data = sock.recv(65536)
    if not data:
        print("ended early after", got, flush=True)
        sys.exit(1)
    incoming.write(data)
    got += decrypted()
print("ready", got, flush=True)
sys.stdin.readline()
after, end = 0, "eof"
try:
    while True:
        data = sock.recv(65536)
        if not data:
            break
        incoming.write(data)
        after += decrypted()
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "timeout"
print(json.dumps({"after": after, "end": end}), flush=True)
"#;

/// Starts the Python client `script` (run in `d`) as the revoked client, against `port`, with
/// `extra` arguments after its port, CA, certificate and key; returns it, its output and the
/// first line it printed.
fn revoked_client(
    python: &Path,
    d: &Path,
    script: &str,
    port: u16,
    extra: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    let mut child = Command::new(python)
        .current_dir(d)
        .args(["-c", script, &port.to_string()])
        .args(["root.pem", "revoked.pem", "revoked.key"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    (child, out, line)
}

/// An HTTP/2 client that, once told `go` on stdin, opens a new stream every 30 ms on its open
/// connection (for up to 5 s, until the server closes it), never acknowledges a PING and
/// ignores GOAWAY, as a client bent on using its connection after a revocation would. Prints
/// JSON: the status of each stream it opened after the server's first GOAWAY (0 when reset or
/// unanswered).
const LINGERING_H2: &str = r#"
import json, select, socket, ssl, sys, time
import h2.config, h2.connection, h2.events
port, ca, cert, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.set_alpn_protocols(["h2"])
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=5), server_hostname="localhost")
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
c.initiate_connection()
def flush():
    # Everything but PING acknowledgements (frame type 6).
    out, data = b"", c.data_to_send()
    while data:
        n = int.from_bytes(data[0:3], "big") + 9
        if data[3] != 6:
            out += data[:n]
        data = data[n:]
    if out:
        s.sendall(out)
status, inbox, goaway = {}, b"", [False]
def pump(wait):
    global inbox
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return True
    data = s.recv(65536)
    if not data:
        return False
    inbox += data
    # Whole frames only; a GOAWAY is noted, not shown to h2 (which would stop opening streams).
    while len(inbox) >= 9 and len(inbox) >= 9 + int.from_bytes(inbox[0:3], "big"):
        n = 9 + int.from_bytes(inbox[0:3], "big")
        frame, inbox = inbox[:n], inbox[n:]
        if frame[3] == 7:
            goaway[0] = True
            continue
        for ev in c.receive_data(frame):
            if isinstance(ev, h2.events.ResponseReceived):
                status[ev.stream_id] = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    flush()
    return True
def get():
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/h2")], end_stream=True)
    flush()
    return sid
first = get()
while first not in status:
    if not pump(2):
        break
print("ready", status.get(first), flush=True)
sys.stdin.readline()
after_goaway, end, alive = [], time.time() + 5, True
while alive and time.time() < end:
    try:
        sid = get()
    except Exception:
        break
    if goaway[0]:
        after_goaway.append(sid)
    t = time.time() + 0.03
    while alive and time.time() < t:
        try:
            alive = pump(0.01)
        except Exception:
            alive = False
print(json.dumps([status.get(sid, 0) for sid in after_goaway]), flush=True)
"#;

/// A TLS 1.3 client that sends its second flight in two parts: the record with its Certificate
/// first (then prints `certificate sent` and waits for a line on stdin), then its
/// CertificateVerify and Finished together with three pipelined `GET /h2` (`http`) or the bytes
/// `straddled` (`tcp`). Prints JSON: whether the handshake completed, the status of each response it
/// read within 5 s and how many bytes it read.
const STRADDLING: &str = r#"
import json, re, socket, ssl, sys
port, ca, cert, key, kind = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
if kind == "http":
    ctx.set_alpn_protocols(["http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
def records(b):
    recs = []
    while b:
        n = 5 + int.from_bytes(b[3:5], "big")
        recs.append(b[:n])
        b = b[n:]
    return recs
flights, done = 0, False
while not done:
    try:
        tls.do_handshake()
        done = True
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    if data:
        flights += 1
        if flights == 2:
            # (ChangeCipherSpec,) then Certificate, CertificateVerify and Finished, each in an
            # encrypted record (type 23): only the first of those goes now.
            recs = records(data)
            first = next(i for i, r in enumerate(recs) if r[0] == 23)
            s.sendall(b"".join(recs[:first + 1]))
            print("certificate sent", flush=True)
            sys.stdin.readline()
            if kind == "http":
                tls.write(b"GET /h2 HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3)
            else:
                tls.write(b"straddled")
            s.sendall(b"".join(recs[first + 1:]) + out.read())
        else:
            s.sendall(data)
    if done:
        break
    d = s.recv(65536)
    if not d:
        break
    inc.write(d)
got = b""
s.settimeout(5)
while done:
    try:
        d = s.recv(65536)
    except (socket.timeout, OSError):
        break
    if not d:
        break
    inc.write(d)
    while True:
        try:
            p = tls.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLError):
            break
        if not p:
            break
        got += p
statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", got)]
print(json.dumps({"handshake": done, "statuses": statuses, "read": len(got)}), flush=True)
"#;

/// `[ca]`: a running serve keeps its own CA's CRL signed (a 12 s validity here, so several
/// re-signs happen while the test watches, and the trust never sees it expire), applies `ca
/// revoke` within seconds without anyone running `ca crl`, and publishes the CA and its CRL over
/// HTTP with ETags; `ca issue --crl-url` writes the distribution point that OpenSSL reads.
#[test]
fn serve_keeps_its_own_cas_crl_signed_and_published() {
    let curl = require_peer!("curl");
    let openssl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    let publish = free_port();
    let url = format!("http://127.0.0.1:{publish}/ca.crl");
    crate::certgate_ok(d, &["ca", "init", "--dir", "ca", "--name", "Kept CA"]);
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server localhost --dns localhost --out server",
    );
    crate::certgate_ok(
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
            "--crl-url",
            &url,
        ],
    );
    crate::certgate_ok(d, "ca issue --dir ca --client bob --out bob");
    crate::certgate_ok(d, "ca crl --dir ca");
    std::fs::copy(d.join("ca/ca.pem"), d.join("root.pem")).unwrap();
    let text = Command::new(&openssl)
        .current_dir(d)
        .args(["x509", "-in", "alice.pem", "-noout", "-text"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("URI:{url}")),
        "{}",
        crate::text(&text)
    );
    std::fs::write(
        d.join("c.toml"),
        format!(
            r#"version = 1
[ca]
dir = "ca"
crl_validity_secs = 12
publish = "127.0.0.1:{publish}"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
crl = ["ca/crl.pem"]
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
        ),
    )
    .unwrap();
    let number = || {
        std::fs::read_to_string(d.join("ca/crlnumber"))
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let first = number();
    let server = Serve::start(d, "c.toml", 2);
    let web = server.port("web");
    // Longer than one CRL's validity: re-signed along the way, never expired for the trust.
    let until = Instant::now() + Duration::from_secs(16);
    while Instant::now() < until {
        let (code, body) = get(&curl, d, web, "alice");
        assert_eq!(code, "200", "{body}");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        number() >= first + 2,
        "the CRL was signed {} times in 16 s",
        number() - first
    );
    // Revocation without `ca crl`: serve signs and the trust reloads.
    crate::certgate_ok(d, "ca revoke --dir ca bob.pem");
    eventually("bob's revocation applies", Duration::from_secs(10), || {
        let (code, body) = get(&curl, d, web, "bob");
        code == "403" && body.contains("revoked")
    });
    assert_eq!(get(&curl, d, web, "alice").0, "200");
    // Published over HTTP, with an ETag for conditional requests.
    let fetch = |extra: &[&str]| {
        Command::new(&curl)
            .current_dir(d)
            .args(["-sS", "-o", "fetched.crl", "-D", "-"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let out = fetch(&[]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/pkix-crl"),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_owned();
    let crl = Command::new(&openssl)
        .current_dir(d)
        .args([
            "crl",
            "-inform",
            "DER",
            "-in",
            "fetched.crl",
            "-noout",
            "-text",
        ])
        .output()
        .unwrap();
    let bob = certgate_pki::Identity::from_der(
        &certgate_pki::credential::parse_certificates(
            &std::fs::read(d.join("bob.pem")).unwrap(),
            &certgate_pki::Origin::other("bob"),
        )
        .unwrap()[0],
    )
    .unwrap();
    assert!(
        String::from_utf8_lossy(&crl.stdout)
            .to_ascii_lowercase()
            .contains(&bob.serial.trim_start_matches('0').to_ascii_lowercase()),
        "bob's serial {} is not in the published CRL:\n{}",
        bob.serial,
        crate::text(&crl)
    );
    let again = fetch(&["-H", &format!("If-None-Match: {etag}")]);
    let head = String::from_utf8_lossy(&again.stdout).to_ascii_lowercase();
    // The same CRL is not sent again; a 200 only for one signed in between (another ETag).
    let new_etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(str::trim);
    assert!(
        head.starts_with("http/1.1 304")
            || (head.starts_with("http/1.1 200") && new_etag != Some(etag.as_str())),
        "{head}"
    );
}

/// The first certificate in a PEM file, as an identity.
fn identity_of(path: &Path) -> certgate_pki::Identity {
    certgate_pki::Identity::from_der(
        &certgate_pki::credential::parse_certificates(
            &std::fs::read(path).unwrap(),
            &certgate_pki::Origin::other("pem"),
        )
        .unwrap()[0],
    )
    .unwrap()
}

fn openssl_verifies(openssl: &Path, d: &Path, purpose: &str, cert: &str) {
    let out = Command::new(openssl)
        .current_dir(d)
        .args(["verify", "-purpose", purpose, "-CAfile", "ca/ca.pem", cert])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "openssl verify -purpose {purpose} {cert}: {}",
        crate::text(&out)
    );
}

/// `ca renew` keeps names and (by default) the key, OpenSSL accepts what it makes; a running
/// serve with `[ca]` renews its own server identity before it expires and presents the new
/// certificate on new connections while an open HTTP/2 connection keeps working.
#[test]
fn identities_are_renewed_by_hand_and_by_serve() {
    let openssl = require_peer!("openssl");
    let dir = tempdir();
    let d = dir.path();
    crate::certgate_ok(d, &["ca", "init", "--dir", "ca", "--name", "Renewing CA"]);
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server localhost --dns localhost --days 1 --out server",
    );
    crate::certgate_ok(
        d,
        "ca issue --dir ca --client alice --uri spiffe://test.example/alice --days 30 --out alice",
    );
    crate::certgate_ok(d, "ca crl --dir ca");
    std::fs::copy(d.join("ca/ca.pem"), d.join("root.pem")).unwrap();

    // By hand: same names and key, a new serial and validity; then a new key.
    let before = identity_of(&d.join("alice.pem"));
    crate::certgate_ok(d, "ca renew --dir ca alice.pem --days 90");
    let after = identity_of(&d.join("alice.pem"));
    assert_ne!(after.serial, before.serial);
    assert_eq!(after.subject, before.subject);
    assert_eq!(after.sans, before.sans);
    assert_eq!(after.spki_sha256, before.spki_sha256, "the key is kept");
    assert!(after.not_after > before.not_after + time::Duration::days(50));
    openssl_verifies(&openssl, d, "sslclient", "alice.pem");
    crate::certgate_ok(d, "ca renew --dir ca alice.pem --new-key");
    let rekeyed = identity_of(&d.join("alice.pem"));
    assert_ne!(rekeyed.spki_sha256, after.spki_sha256, "a new key");
    openssl_verifies(&openssl, d, "sslclient", "alice.pem");
    // A certificate from elsewhere is refused.
    let out = crate::certgate(d, &["ca", "init", "--dir", "other", "--name", "Other CA"]);
    assert!(out.status.success());
    crate::certgate_ok(d, "ca issue --dir other --client mallory --out mallory");
    let out = crate::certgate(d, &["ca", "renew", "--dir", "ca", "mallory.pem"]);
    assert!(!out.status.success());
    assert!(
        crate::text(&out).contains("was not issued by the CA"),
        "{}",
        crate::text(&out)
    );

    // A revoked certificate is not renewed: that would undo the revocation under a new serial.
    // Nor is an older copy of it, with its key or with a new one.
    std::fs::copy(d.join("alice.pem"), d.join("alice-prev.pem")).unwrap();
    std::fs::copy(d.join("alice.key"), d.join("alice-prev.key")).unwrap();
    crate::certgate_ok(d, "ca renew --dir ca alice.pem");
    let revoked_alice = identity_of(&d.join("alice.pem"));
    crate::certgate_ok(d, "ca revoke --dir ca alice.pem --reason key-compromise");
    for (args, why) in [
        (vec!["alice.pem"], "it was revoked at"),
        (vec!["alice-prev.pem"], "with the same key was revoked"),
        (
            vec!["alice-prev.pem", "--new-key"],
            "with the same key was revoked",
        ),
    ] {
        let mut argv = vec!["ca", "renew", "--dir", "ca"];
        argv.extend(args.iter().copied());
        let out = crate::certgate(d, &argv);
        assert_eq!(
            out.status.code(),
            Some(65),
            "{argv:?}: {}",
            crate::text(&out)
        );
        assert!(
            crate::text(&out).contains(why) && crate::text(&out).contains("key-compromise"),
            "{argv:?}: {}",
            crate::text(&out)
        );
    }
    assert_eq!(
        identity_of(&d.join("alice.pem")).serial,
        revoked_alice.serial
    );
    assert_eq!(
        identity_of(&d.join("alice-prev.pem")).serial,
        rekeyed.serial
    );
    // A later certificate for the subject revoked (a new key): the older copy stays as it is.
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server web --dns web.localhost --days 30 --out web-old",
    );
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server web --dns web.localhost --days 30 --out web-new",
    );
    crate::certgate_ok(d, "ca revoke --dir ca web-new.pem");
    let out = crate::certgate(d, &["ca", "renew", "--dir", "ca", "web-old.pem"]);
    assert_eq!(out.status.code(), Some(65), "{}", crate::text(&out));
    assert!(
        crate::text(&out).contains("a later certificate for `CN=web`"),
        "{}",
        crate::text(&out)
    );
    crate::certgate_ok(
        d,
        "ca issue --dir ca --client alice --uri spiffe://test.example/alice --days 30 --out alice --force",
    );
    // Nor by serve: `gone`, due like the server identity, was revoked.
    crate::certgate_ok(
        d,
        "ca issue --dir ca --server gone --dns gone.localhost --days 1 --out gone",
    );
    crate::certgate_ok(d, "ca revoke --dir ca gone.pem");
    crate::certgate_ok(d, "ca crl --dir ca");
    let gone = identity_of(&d.join("gone.pem"));
    let index_lines = |d: &Path| {
        std::fs::read_to_string(d.join("ca/index.tsv"))
            .unwrap()
            .lines()
            .count()
    };
    let index_before = index_lines(d);

    // By serve: the one-day server certificate is due (renew_before_days = 2).
    std::fs::write(
        d.join("c.toml"),
        r#"version = 1
[ca]
dir = "ca"
renew_before_days = 2
renew_days = 30
[[identity]]
name = "gone"
cert = "gone.pem"
key = "gone.key"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
crl = ["ca/crl.pem"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  path = "/h2"
  upstream = "echo"
"#,
    )
    .unwrap();
    let old_server = identity_of(&d.join("server.pem"));
    let server = Serve::start(d, "c.toml", 1);
    let web = server.port("web");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut open = rt.block_on(h2_connect(d, "alice", web));
    assert_eq!(rt.block_on(h2_get(&mut open)), Ok(200));
    eventually(
        "serve renewed its identity",
        Duration::from_secs(15),
        || identity_of(&d.join("server.pem")).serial != old_server.serial,
    );
    let renewed = identity_of(&d.join("server.pem"));
    assert_eq!(renewed.spki_sha256, old_server.spki_sha256);
    assert!(renewed.not_after > old_server.not_after + time::Duration::days(25));
    openssl_verifies(&openssl, d, "sslserver", "server.pem");
    assert_eq!(
        identity_of(&d.join("gone.pem")).serial,
        gone.serial,
        "a revoked identity is not renewed"
    );
    assert_eq!(
        index_lines(d),
        index_before + 1,
        "one renewal, the server's"
    );
    // New connections get the new certificate once the reload has run.
    eventually(
        "new connections present it",
        Duration::from_secs(10),
        || {
            let mut s = raw(d, "alice", web);
            let _ =
                s.write_all(b"GET /h2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            s.conn
                .peer_certificates()
                .and_then(|c| c.first().cloned())
                .map(|c| c.to_vec())
                == Some(renewed.der.to_vec())
        },
    );
    // The connection opened before is still served.
    assert_eq!(rt.block_on(h2_get(&mut open)), Ok(200));
}

/// A CRL that cannot be stored is never used, so serve refuses to start when its state
/// directory cannot hold fetched CRLs, rather than leave revocations waiting unnoticed.
#[test]
fn serve_refuses_a_state_directory_it_cannot_write() {
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    std::fs::write(d.join("not-a-dir"), "a file").unwrap();
    let config =
        config(free_port(), "").replace(r#"state_dir = "state""#, r#"state_dir = "not-a-dir""#);
    std::fs::write(d.join("c.toml"), config).unwrap();
    let out = crate::certgate(d, &["serve", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(73), "{}", crate::text(&out));
    assert!(
        crate::text(&out).contains("state_dir: cannot write fetched CRLs"),
        "{}",
        crate::text(&out)
    );
}

fn serial_of(d: &Path, file: &str) -> Vec<u8> {
    hex::decode(identity_of(&d.join(file)).serial).unwrap()
}

/// A fetched CRL is put in force in the running trust, not through a reload: it revokes (and
/// closes the open HTTP/2 connection of the revoked client) while the config on disk no longer
/// loads, and while the state directory can no longer be written.
#[test]
fn a_new_crl_applies_while_the_config_is_broken_and_the_state_dir_unwritable() {
    let nginx = require_peer!("nginx");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let (revoked, good) = (serial_of(d, "revoked.pem"), serial_of(d, "good.pem"));
    let port = free_port();
    let _nginx = crl_server(&nginx, d, port);
    publish(d, "root.crl", &crl_numbered(&pki.root, &[], 1, DAY * 7));
    publish(
        d,
        "int.crl",
        &crl_numbered(&pki.intermediate, &[], 1, DAY * 7),
    );
    let text = config(port, "").replace("crl_refresh_secs = 10", "crl_refresh_secs = 2");
    std::fs::write(d.join("c.toml"), &text).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let (web, admin) = (server.port("web"), server.port("admin"));
    eventually("the fetched CRLs are used", Duration::from_secs(15), || {
        get(&curl, d, web, "revoked").0 == "200"
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let victim = rt.block_on(h2_connect(d, "revoked", web));
    let mut bystander = rt.block_on(h2_connect(d, "good", web));

    // The config breaks (a typo saved by an editor): reloads are refused from now on.
    std::fs::write(d.join("c.toml"), format!("{text}\n[[ingress]\n")).unwrap();
    eventually(
        "the broken config is refused",
        Duration::from_secs(10),
        || metric(admin, "certgate_reloads_total", "result=\"rejected\"") >= 1.0,
    );
    publish(
        d,
        "int.crl",
        &crl_numbered(
            &pki.intermediate,
            std::slice::from_ref(&revoked),
            2,
            DAY * 7,
        ),
    );
    eventually(
        "the revocation applies without a reload",
        Duration::from_secs(15),
        || get(&curl, d, web, "revoked").0 == "403",
    );
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), victim.driver)
            .await
            .is_ok()
    });
    assert!(
        closed,
        "the revoked client's HTTP/2 connection is still open"
    );
    assert_eq!(rt.block_on(h2_get(&mut bystander)), Ok(200));
    assert_eq!(get(&curl, d, web, "good").0, "200");
    // The status document shows the list in force.
    let status = crate::admin_get(admin, "/status");
    assert!(status.contains("\"revoked\": 1"), "{status}");

    // The state directory can no longer be written: the next list is in force all the same,
    // and the failure to store it is counted.
    std::fs::remove_dir_all(d.join("state/crl")).unwrap();
    std::fs::write(d.join("state/crl"), "not a directory").unwrap();
    publish(
        d,
        "int.crl",
        &crl_numbered(&pki.intermediate, &[revoked, good], 3, DAY * 7),
    );
    eventually(
        "the next revocation applies with an unwritable state directory",
        Duration::from_secs(15),
        || get(&curl, d, web, "good").0 == "403",
    );
    assert!(metric(admin, "certgate_crl_store_failures_total", "") >= 1.0);
}

/// A CRL file replaced by an older version of the list (a restored backup, a replayed copy) is
/// not put in force by a reload: the newer list stays, with a warning. A newer CRL file is put
/// in force even while the config does not load.
#[test]
fn a_reload_never_puts_an_older_crl_in_force() {
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    let revoked = serial_of(d, "revoked.pem");
    std::fs::write(d.join("root.crl"), crl_numbered(&pki.root, &[], 1, DAY * 7)).unwrap();
    let old = crl_numbered(&pki.intermediate, &[], 1, DAY * 7);
    let new = crl_numbered(
        &pki.intermediate,
        std::slice::from_ref(&revoked),
        2,
        DAY * 7,
    );
    std::fs::write(d.join("cur.crl"), &new).unwrap();
    std::fs::write(
        d.join("c.toml"),
        r#"version = 1
[admin]
listen = "127.0.0.1:0"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["root.crl", "cur.crl"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
"#,
    )
    .unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let (web, admin) = (server.port("web"), server.port("admin"));
    assert_eq!(get(&curl, d, web, "revoked").0, "403");
    std::fs::write(d.join("cur.crl"), &old).unwrap();
    server.signal("HUP");
    eventually("the reload is done", Duration::from_secs(10), || {
        metric(admin, "certgate_reloads_total", "result=\"ok\"") >= 1.0
    });
    assert_eq!(
        metric(admin, "certgate_crl_rollbacks_refused_total", ""),
        1.0
    );
    assert_eq!(
        get(&curl, d, web, "revoked").0,
        "403",
        "un-revoked by a reload"
    );
    assert_eq!(get(&curl, d, web, "good").0, "200");

    // The config breaks; a newer CRL file is in force all the same.
    let text = std::fs::read_to_string(d.join("c.toml")).unwrap();
    std::fs::write(d.join("c.toml"), format!("{text}\n[[ingress]\n")).unwrap();
    let good = serial_of(d, "good.pem");
    std::fs::write(
        d.join("cur.crl"),
        crl_numbered(&pki.intermediate, &[revoked, good], 3, DAY * 7),
    )
    .unwrap();
    eventually(
        "a newer CRL file applies while the config is broken",
        Duration::from_secs(10),
        || get(&curl, d, web, "good").0 == "403",
    );
    assert!(metric(admin, "certgate_reloads_total", "result=\"rejected\"") >= 1.0);

    // The config is mended and the older list put back (found by an attacker pass: the list
    // put in force while the config was broken was not remembered, so this un-revoked `good`).
    std::fs::write(d.join("c.toml"), &text).unwrap();
    std::fs::write(d.join("cur.crl"), &new).unwrap();
    let ok_reloads = metric(admin, "certgate_reloads_total", "result=\"ok\"");
    server.signal("HUP");
    eventually(
        "the mended config is loaded",
        Duration::from_secs(10),
        || metric(admin, "certgate_reloads_total", "result=\"ok\"") > ok_reloads,
    );
    assert_eq!(
        get(&curl, d, web, "good").0,
        "403",
        "un-revoked by a reload"
    );
}

/// Found by an attacker pass: CRL files and the stored copies of fetched CRLs were used without
/// checking who signed them, so a list made with another key under the CA's name could displace
/// the CA's own (higher number, nothing revoked), or, stored in the state directory, set a
/// rollback floor no genuine list passes. Now a file under the name of a CA or intermediate the
/// trust names must be signed with its key (a forged one is a configuration error naming it),
/// and a stored copy counts only if a CA of the trust signed it (a forged one is ignored and
/// the CA's next list applies).
#[test]
fn crl_files_and_stored_copies_count_only_when_signed_by_the_trust() {
    let nginx = require_peer!("nginx");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let revoked_serial = serial_of(d, "revoked.pem");
    // The same name as the intermediate, another key.
    let impostor = certgate_testkit::self_signed(&certgate_testkit::Spec::ca(
        "certgate test intermediate",
        Some(0),
    ));
    let forged = crl_numbered(&impostor, &[], 999_999, DAY * 7);

    // A forged CRL file: `check` and `serve` refuse the config, naming the file.
    std::fs::write(d.join("forged.crl"), &forged).unwrap();
    let files: Vec<String> = config(free_port(), "")
        .lines()
        .map(|l| match l {
            l if l.starts_with("crl_url") => "crl = [\"forged.crl\"]".to_owned(),
            l if l.starts_with("crl_refresh_secs") => String::new(),
            l => l.to_owned(),
        })
        .collect();
    std::fs::write(d.join("files.toml"), files.join("\n")).unwrap();
    let out = crate::certgate(d, &["check", "--config", "files.toml"]);
    let text = crate::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("trust.clients.crl[0]")
            && text.contains("forged.crl")
            && text.contains("signature"),
        "{text}"
    );

    // A forged stored copy of a fetched list: ignored; the CA's next list applies.
    let port = free_port();
    let _nginx = crl_server(&nginx, d, port);
    publish(d, "root.crl", &crl_numbered(&pki.root, &[], 1, DAY * 7));
    let first = crl_numbered(&pki.intermediate, &[], 1, DAY * 7);
    publish(d, "int.crl", &first);
    std::fs::write(d.join("c.toml"), config(port, "")).unwrap();
    {
        let server = Serve::start(d, "c.toml", 2);
        let web = server.port("web");
        eventually("the fetched CRLs are used", Duration::from_secs(15), || {
            get(&curl, d, web, "good").0 == "200"
        });
        eventually("the list is stored", Duration::from_secs(10), || {
            stored_copy(d, &first).is_some()
        });
    }
    let stored = stored_copy(d, &first).unwrap();
    std::fs::write(&stored, &forged).unwrap();
    publish(
        d,
        "int.crl",
        &crl_numbered(&pki.intermediate, &[revoked_serial], 2, DAY * 7),
    );
    let server = Serve::start(d, "c.toml", 2);
    let web = server.port("web");
    eventually("the CA's list applies", Duration::from_secs(25), || {
        let (code, body) = get(&curl, d, web, "revoked");
        code == "403" && body.contains("revoked")
    });
    assert_eq!(get(&curl, d, web, "good").0, "200");
}

/// The file in the state directory that holds `der`, if any.
fn stored_copy(d: &Path, der: &[u8]) -> Option<std::path::PathBuf> {
    std::fs::read_dir(d.join("state/crl"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::read(p).is_ok_and(|b| b == der))
}
