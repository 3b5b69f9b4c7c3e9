//! The admin listener: health, readiness, Prometheus metrics and the status document.

use std::process::Command;

use certgate_testkit::{TestPki, require_peer, tempdir};

use crate::server::Serve;

#[test]
fn health_ready_metrics_and_status() {
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    std::fs::write(d.join("root.pem"), &pki.root.pem).unwrap();
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", pki.server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &pki.server.key_pem).unwrap();
    let config = r#"version = 1
[admin]
listen = "127.0.0.1:0"
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
  [[ingress.route]]
  upstream = "echo"
  [[ingress.route]]
  path = "/private"
  upstream = "echo"
  require_client_cert = true
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    // Two listeners report: the admin one and `web`.
    let server = Serve::start(d, "c.toml", 2);
    let web = server.port("web");
    let admin = server.port("admin");
    let curl = |args: &[&str]| -> String {
        let out = Command::new(&curl_bin)
            .current_dir(d)
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let resolve = format!("localhost:{web}:127.0.0.1");
    let base = format!("https://localhost:{web}");
    curl(&[
        "--cacert",
        "root.pem",
        "--resolve",
        &resolve,
        &format!("{base}/"),
    ]);
    curl(&[
        "--cacert",
        "root.pem",
        "--resolve",
        &resolve,
        &format!("{base}/private"),
    ]);
    // A failed handshake: the client does not trust certgate's certificate.
    curl(&["--resolve", &resolve, &format!("{base}/")]);
    let a = format!("http://127.0.0.1:{admin}");
    assert_eq!(curl(&[&format!("{a}/healthz")]), "ok\n");
    assert_eq!(curl(&[&format!("{a}/readyz")]), "ready\n");
    let metrics = curl(&[&format!("{a}/metrics")]);
    for want in [
        r#"certgate_requests_total{listener="web",route="*/",status="200"} 1"#,
        r#"certgate_requests_total{listener="web",route="*/private",status="401"} 1"#,
        r#"certgate_handshakes_total{listener="web",result="ok",reason=""} 2"#,
        r#"certgate_handshakes_total{listener="web",result="failed""#,
        r#"certgate_certificate_expiry_seconds{identity="server"}"#,
        "certgate_connections_open",
    ] {
        assert!(metrics.contains(want), "missing {want} in:\n{metrics}");
    }
    let status: serde_json::Value = serde_json::from_str(&curl(&[&format!("{a}/status")])).unwrap();
    assert_eq!(status["listeners"][0]["name"], "web");
    assert_eq!(status["listeners"][0]["client_auth"], "request");
    assert_eq!(status["certificates"][0]["subject"], "CN=localhost");
    assert!(status["certificates"][0]["seconds_left"].as_i64().unwrap() > 3600);
}
