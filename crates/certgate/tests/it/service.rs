//! Running as a service: the systemd readiness protocol, spoken by certgate itself.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use certgate_testkit::tempdir;

use crate::server::Serve;

const CONFIG: &str = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  upstream = "echo"
"#;

/// The next notification, or a failure naming what was awaited.
fn next(socket: &UnixDatagram, awaiting: &str) -> String {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no notification while awaiting {awaiting}: {e}"),
    }
}

/// Reads notifications until one contains `want` (reloads may also be triggered by the file
/// watcher, so the same sequence can repeat); fails if `STOPPING=1` or a timeout comes first.
fn until(socket: &UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = next(socket, want);
        seen.push(m.clone());
        if m.contains(want) {
            return seen;
        }
        assert!(
            !m.contains("STOPPING=1") || want.contains("STOPPING"),
            "stopped while awaiting {want}: {seen:?}"
        );
    }
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let dir = tempdir();
    let d = dir.path();
    crate::ingress::write_pki(d);
    std::fs::write(d.join("c.toml"), CONFIG).unwrap();
    let path = d.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut server = Serve::start_with_env(d, "c.toml", 1, &[("NOTIFY_SOCKET", path.as_os_str())]);
    let first = next(&socket, "READY=1");
    assert!(first.starts_with("READY=1\n"), "{first:?}");
    assert!(first.contains("STATUS=serving 1 listener"), "{first:?}");
    // A good reload: RELOADING=1, then READY=1 saying it was applied.
    server.signal("HUP");
    let m = next(&socket, "RELOADING=1");
    assert!(m.starts_with("RELOADING=1\n"), "{m:?}");
    let m = next(&socket, "READY=1 after a reload");
    assert!(
        m.starts_with("READY=1\n") && m.contains("; reloaded"),
        "{m:?}"
    );
    // A refused reload still ends in READY=1: the old configuration keeps serving.
    std::fs::write(
        d.join("c.toml"),
        "version = 1\n[[ingress]]\nname = \"web\"\n",
    )
    .unwrap();
    server.signal("HUP");
    let seen = until(&socket, "reload refused");
    let reloading = seen
        .iter()
        .position(|m| m.starts_with("RELOADING=1"))
        .unwrap();
    assert!(
        seen[reloading + 1..]
            .iter()
            .any(|m| m.starts_with("READY=1")),
        "{seen:?}"
    );
    // Shutdown.
    server.signal("TERM");
    until(&socket, "STOPPING=1");
    let status = server.wait_exit(Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "{status}");
}

#[test]
fn the_abstract_notify_socket_namespace_is_understood() {
    use std::os::linux::net::SocketAddrExt as _;
    let dir = tempdir();
    let d = dir.path();
    crate::ingress::write_pki(d);
    std::fs::write(d.join("c.toml"), CONFIG).unwrap();
    let name = format!("certgate-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let at = std::ffi::OsString::from(format!("@{name}"));
    let _server = Serve::start_with_env(d, "c.toml", 1, &[("NOTIFY_SOCKET", at.as_os_str())]);
    assert!(next(&socket, "READY=1").starts_with("READY=1\n"));
}
