//! Connection lifetimes: an upgraded (WebSocket) connection and an egress `CONNECT` tunnel hold
//! their connection slot until they end, and meet the idle timeout, the drain on SIGTERM and
//! the removal of their listener by a reload; stalled heads and handshakes are cut; the CLI's
//! client gives up on a server that never answers.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use certgate_testkit::{require_peer, tempdir};

use crate::server::Serve;

/// Answers an upgrade request with 101 and then echoes every byte back (a WebSocket stand-in).
pub(crate) const UPGRADE_ECHO: &str = r#"
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(1024)
        if not chunk:
            return
        head += chunk
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
    while True:
        data = c.recv(1024)
        if not data:
            break
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A TCP echo server; given a file path as its argument, it also appends every byte it receives
/// to that file.
pub(crate) const TCP_ECHO: &str = r#"
import socket, sys, threading
record = open(sys.argv[1], "ab", buffering=0) if len(sys.argv) > 1 else None
lock = threading.Lock()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    while True:
        data = c.recv(1024)
        if not data:
            break
        if record:
            with lock:
                record.write(data)
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A Python peer printing its port on its first line; killed when dropped.
pub(crate) struct Script(std::process::Child, pub(crate) u16);

impl Script {
    pub(crate) fn start(python: &Path, script: &str) -> Self {
        Self::start_with(python, script, &[])
    }

    /// Starts `script` with `args` as its arguments (`sys.argv[1:]`).
    pub(crate) fn start_with(python: &Path, script: &str, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(python)
            .args(["-c", script])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Self(child, port)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ingress_config(upstream: u16, extra_listener: &str) -> String {
    format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
max_connections = 1
idle_timeout_secs = 2
drain_timeout_secs = 2
  [[ingress.route]]
  upstream = "http://127.0.0.1:{upstream}"
  upgrades = ["echo"]
{extra_listener}"#
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the gateway, upgraded through it to the echo upstream.
fn upgraded(port: u16, root: &[u8]) -> Tls {
    let config = crate::tls::config(root, &[], crate::tls::Auth::None);
    let mut tls = crate::tls::connect(port, config, Duration::from_secs(10)).unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    echo(&mut tls, b"ping");
    tls
}

fn echo(s: &mut (impl std::io::Read + std::io::Write), bytes: &[u8]) {
    s.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

/// How long until `s` is closed by the other side (EOF or reset), reading at most `limit`.
fn closed_within(s: &mut impl std::io::Read, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Keeps traffic moving on `s` (so no idle timeout applies) until the other side closes it;
/// returns how long that took, `None` if it was still open after `limit`.
fn busy_until_closed(
    s: &mut (impl std::io::Read + std::io::Write),
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut back = [0u8; 4];
        if s.write_all(b"busy").is_err() || s.flush().is_err() || s.read_exact(&mut back).is_err() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Whether a TLS handshake with the gateway completes within `wait`.
fn handshake_completes(port: u16, root: &[u8], wait: Duration) -> bool {
    let config = crate::tls::config(root, &[], crate::tls::Auth::None);
    let Ok(mut tls) = crate::tls::connect(port, config, wait) else {
        return false;
    };
    // Writing drives the handshake; the response proves the server is serving this connection.
    if tls
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(tls.read(&mut b), Ok(1))
}

#[test]
fn an_upgraded_connection_holds_its_slot_and_meets_the_idle_timeout() {
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    let upstream = Script::start(&python, UPGRADE_ECHO);
    std::fs::write(d.join("c.toml"), ingress_config(upstream.1, "")).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");

    // max_connections = 1: while the upgraded connection is open, no other is served.
    let mut ws = upgraded(port, &pki.root.der);
    assert!(
        !handshake_completes(port, &pki.root.der, Duration::from_millis(1500)),
        "a second connection was served while an upgraded one held the only slot"
    );
    // Traffic keeps it open past the idle timeout (2 s)...
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        echo(&mut ws, b"still here");
    }
    // ...silence closes it, and the slot is free again.
    let closed = closed_within(&mut ws, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500)),
        "an idle upgraded connection was not closed by the idle timeout: {closed:?}"
    );
    assert!(
        handshake_completes(port, &pki.root.der, Duration::from_secs(5)),
        "the slot of the closed upgraded connection was not freed"
    );
}

#[test]
fn an_upgraded_connection_ends_with_the_drain_and_with_its_listener() {
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    let upstream = Script::start(&python, UPGRADE_ECHO);
    let second = format!(
        "[[ingress]]\nname = \"other\"\nlisten = \"127.0.0.1:0\"\nidentity = \"server\"\ndrain_timeout_secs = 2\nidle_timeout_secs = 60\n  [[ingress.route]]\n  upstream = \"http://127.0.0.1:{}\"\n  upgrades = [\"echo\"]\n",
        upstream.1
    );
    std::fs::write(d.join("c.toml"), ingress_config(upstream.1, &second)).unwrap();
    let mut server = Serve::start(d, "c.toml", 2);

    // A reload that removes `other` closes its upgraded connection after its drain timeout.
    let mut ws = upgraded(server.port("other"), &pki.root.der);
    std::fs::write(d.join("c.toml"), ingress_config(upstream.1, "")).unwrap();
    server.signal("HUP");
    let closed = closed_within(&mut ws, Duration::from_secs(8));
    assert!(
        closed.is_some(),
        "a reload removed the listener but its upgraded connection stayed open"
    );

    // SIGTERM: a busy upgraded connection is cut after the drain timeout (2 s), and serve
    // exits.
    let mut ws = upgraded(server.port("web"), &pki.root.der);
    server.signal("TERM");
    let start = Instant::now();
    let closed = busy_until_closed(&mut ws, Duration::from_secs(8));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500)),
        "the upgraded connection was not cut by the drain timeout: {closed:?}"
    );
    let exit = server.wait_exit(Duration::from_secs(8));
    assert!(exit.is_some(), "serve did not exit after the drain");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "the drain took {:?}",
        start.elapsed()
    );
}

fn egress_config(extra: &str) -> String {
    format!(
        r#"version = 1
[egress]
listen = "127.0.0.1:0"
max_connections = 1
header_timeout_secs = 1
idle_timeout_secs = 2
drain_timeout_secs = 2
{extra}"#
    )
}

fn egress_port(server: &Serve) -> u16 {
    server.port("egress")
}

/// `CONNECT` through the forward proxy to `target`; returns the tunnel after its 200.
fn tunnel(proxy: u16, target: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}

/// Whether the proxy answers a request on a new connection within `wait`.
fn proxy_answers(proxy: u16, wait: Duration) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", proxy)) else {
        return false;
    };
    tcp.set_read_timeout(Some(wait)).unwrap();
    let closed = crate::free_port();
    if write!(
        tcp,
        "GET http://127.0.0.1:{closed}/ HTTP/1.1\r\nHost: 127.0.0.1:{closed}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(tcp.read(&mut b), Ok(1))
}

#[test]
fn an_egress_tunnel_holds_its_slot_and_meets_the_idle_timeout_and_the_drain() {
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    let target = Script::start(&python, TCP_ECHO);
    std::fs::write(d.join("e.toml"), egress_config("")).unwrap();
    let mut server = Serve::start(d, "e.toml", 1);
    let proxy = egress_port(&server);

    let mut t = tunnel(proxy, target.1);
    echo(&mut t, b"ping");
    assert!(
        !proxy_answers(proxy, Duration::from_millis(1500)),
        "a second connection was served while a tunnel held the only slot"
    );
    // Traffic at once: 1.5 s of that check plus a 0.5 s pause would reach the 2 s idle timeout.
    echo(&mut t, b"still here");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        echo(&mut t, b"still here");
    }
    let closed = closed_within(&mut t, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500)),
        "an idle tunnel was not closed by the idle timeout: {closed:?}"
    );
    assert!(
        proxy_answers(proxy, Duration::from_secs(5)),
        "the closed tunnel's slot was not freed"
    );

    // A stalled request head is cut at the header timeout (1 s).
    let mut slow = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    slow.write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
        .unwrap();
    let cut = closed_within(&mut slow, Duration::from_secs(6));
    assert!(cut.is_some(), "a stalled request head was not cut");
    drop(slow);

    // SIGTERM: a busy tunnel is cut after the drain timeout (2 s), and serve exits.
    let mut t = tunnel(proxy, target.1);
    server.signal("TERM");
    let closed = busy_until_closed(&mut t, Duration::from_secs(8));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500)),
        "the tunnel was not cut by the drain timeout: {closed:?}"
    );
    assert!(
        server.wait_exit(Duration::from_secs(8)).is_some(),
        "serve did not exit after the drain"
    );
}

#[test]
fn a_stalled_intercepted_handshake_is_cut() {
    let dir = tempdir();
    let d = dir.path();
    crate::make_ca(d);
    crate::certgate_ok(d, "egress ca --dir eca --host localhost");
    let rule = r#"intercept_ca = "eca"
[[identity]]
name = "alice"
cert = "alice.pem"
key = "alice.key"
[[trust]]
name = "servers"
ca = ["ca/ca.pem"]
  [[egress.rule]]
  name = "local"
  url = "https://localhost"
  identity = "alice"
  trust = "servers"
"#;
    // `[[identity]]` and `[[trust]]` after `[egress]` keys: TOML puts them at the top level.
    std::fs::write(d.join("e.toml"), egress_config(rule)).unwrap();
    let server = Serve::start(d, "e.toml", 1);
    let proxy = egress_port(&server);
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    write!(
        tcp,
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // No ClientHello: the interception handshake is cut at the header timeout (1 s), well
    // before the idle timeout (2 s) would.
    let start = Instant::now();
    let closed = closed_within(&mut tcp, Duration::from_secs(6));
    assert!(
        closed.is_some(),
        "a stalled intercepted handshake was never cut"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "the stalled handshake was cut only after {:?}",
        start.elapsed()
    );
}

#[test]
fn trust_verify_gives_up_on_a_log_that_never_answers() {
    let dir = tempdir();
    let d = dir.path();
    crate::make_ca(d);
    crate::certgate_ok(
        d,
        [
            "log",
            "init",
            "--origin",
            "stall.example/log",
            "--dir",
            "logdata",
        ]
        .as_slice(),
    );
    crate::certgate_ok(
        d,
        [
            "trust",
            "keygen",
            "--name",
            "alice.example",
            "--out",
            "alice-sign.key",
        ]
        .as_slice(),
    );
    let log_key = crate::log::vkey(d, "logdata");
    let signer = std::fs::read_to_string(d.join("alice-sign.key.pub")).unwrap();
    // Accepts connections (the kernel does, into the backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "version = 1\nlog_keys = [\"{log_key}\"]\nlog_url = \"https://localhost:{port}\"\n[[signer]]\nkey = \"{}\"\n",
            signer.trim()
        ),
    )
    .unwrap();
    std::fs::write(d.join("addon.tar"), "bytes\n").unwrap();
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args([
            "trust",
            "verify",
            "addon.tar",
            "--policy",
            "policy.toml",
            "--ca",
            "ca/ca.pem",
            "--state",
            "st",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            panic!("trust verify still waits for a silent log after 40 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let text = crate::text(&out);
    assert_eq!(out.status.code(), Some(75), "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(
        took < Duration::from_secs(20),
        "gave up only after {took:?}"
    );
    drop(silent);
}

/// The start of a config: its version and the test PKI's server identity.
const SERVER: &str =
    "version = 1\n[[identity]]\nname = \"server\"\ncert = \"server.pem\"\nkey = \"server.key\"\n";

/// An `[[ingress]]` called `name`, with `keys` (TOML lines), whose one route goes to the HTTP
/// upstream on `upstream`.
fn listener(name: &str, upstream: u16, keys: &str) -> String {
    format!(
        "[[ingress]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nidentity = \"server\"\n{keys}\n  [[ingress.route]]\n  upstream = \"http://127.0.0.1:{upstream}\"\n"
    )
}

/// An upstream that hangs on `/hang`, and answers a `POST` with the size of the body it read
/// (Python's `http.server`, HTTP/1.1 keep-alive).
const SLOW_UPSTREAM: &str = r#"
import http.server, time
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/hang":
            time.sleep(6)
        self.answer(b"ok")
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(b"got %d" % len(body))
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// An upstream that takes a request and goes silent is given up after
/// `upstream_timeout_secs`: curl gets 504 with the reason, and the listener goes on serving.
/// An upload that is slow on the client's side keeps the upstream waiting, not the other way
/// round, and is served however long it takes.
#[test]
fn a_silent_upstream_gets_504_and_a_slow_upload_does_not() {
    let python = require_peer!("python3");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = crate::ingress::write_pki(d);
    let upstream = Script::start(&python, SLOW_UPSTREAM);
    let config = [
        listener("web", upstream.1, "upstream_timeout_secs = 1"),
        listener(
            "tight",
            upstream.1,
            "idle_timeout_secs = 1\nupstream_timeout_secs = 2",
        ),
    ]
    .concat();
    std::fs::write(d.join("c.toml"), format!("{SERVER}{config}")).unwrap();
    // No limit at all is not a limit: the check names the key.
    let zero = listener("zero", upstream.1, "upstream_timeout_secs = 0");
    std::fs::write(d.join("zero.toml"), format!("{SERVER}{zero}")).unwrap();
    let checked = crate::certgate(d, &["check", "--config", "zero.toml"]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{said}");
    assert!(
        said.contains("ingress.zero.upstream_timeout_secs") && said.contains("greater than 0"),
        "{said}"
    );
    let server = Serve::start(d, "c.toml", 2);
    let get = |listener: &str, path: &str, version: &str| {
        let port = server.port(listener);
        let out = std::process::Command::new(&curl)
            .current_dir(d)
            .args(["-sS", version, "--max-time", "10", "--cacert", "root.pem"])
            .arg("--resolve")
            .arg(format!("localhost:{port}:127.0.0.1"))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (listener, limit, version) in [
        ("web", 1, "--http1.1"),
        ("tight", 2, "--http1.1"),
        ("tight", 2, "--http2"),
    ] {
        let started = Instant::now();
        let hung = get(listener, "/hang", version);
        let took = started.elapsed();
        assert!(hung.ends_with("\n504"), "{listener} {version}: {hung}");
        assert!(
            hung.contains(&format!("nothing moved for {limit} s")),
            "{listener} {version}: {hung}"
        );
        assert!(
            took >= Duration::from_secs(limit) && took < Duration::from_secs(limit + 3),
            "{listener} {version}: 504 after {took:?}"
        );
        assert_eq!(get(listener, "/", version), "ok\n200");
    }
    // A client that stops sending its body holds the request up, not the upstream: it meets
    // the idle timeout (1 s), however long the upstream would wait.
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut stalled =
        crate::tls::connect(server.port("tight"), config, Duration::from_secs(10)).unwrap();
    stalled
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
    let closed = closed_within(&mut stalled, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(3)),
        "a request whose body stalled held its connection: {closed:?}"
    );
    let port = server.port("web");

    // Three bytes of body, one every 1.3 s: each pause longer than the upstream's limit.
    let config = crate::tls::config(&pki.root.der, &[], crate::tls::Auth::None);
    let mut tls = crate::tls::connect(port, config, Duration::from_secs(10)).unwrap();
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    for b in b"abc" {
        std::thread::sleep(Duration::from_millis(1300));
        tls.write_all(&[*b]).unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"got 3") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Serves the directory given as its argument over HTTP/1.0 (Python's `http.server`).
pub(crate) const FILE_SERVER: &str = r#"
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.log_message = lambda *a: None
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// An HTTP/2 client (Python `h2`) that downloads `/big.bin` from port `argv[1]` (CA `argv[2]`)
/// through a small receive buffer at `argv[3]` bytes/s, acknowledging each DATA frame as it
/// reads it (WINDOW_UPDATE), with HTTP/2's default 64 KiB windows or, given `big` as `argv[4]`,
/// the largest (as browsers open theirs); prints `started` after 128 KiB, then JSON: the body
/// bytes it received, whether the stream ended, and how the connection ended.
const H2_DOWNLOAD: &str = r#"
import json, socket, ssl, sys, time
import h2.config, h2.connection, h2.events, h2.settings
port, ca, rate, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.set_alpn_protocols(["h2"])
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
raw.settimeout(10)
raw.connect(("127.0.0.1", int(port)))
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
c.initiate_connection()
if window == "big":
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    c.increment_flow_control_window(2**31 - 1 - 65535)
sid = c.get_next_available_stream_id()
c.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/big.bin")], end_stream=True)
s.sendall(c.data_to_send())
got, ended, end, started, inbox = 0, False, "open", False, b""
def frames(data):
    # Whole frames, GOAWAY left out: this client's `h2` closes its state on a GOAWAY and would
    # then refuse the frames that still come for the stream in flight.
    global inbox
    inbox += data
    out = b""
    while len(inbox) >= 9 and len(inbox) >= 9 + int.from_bytes(inbox[0:3], "big"):
        n = 9 + int.from_bytes(inbox[0:3], "big")
        frame, inbox = inbox[:n], inbox[n:]
        if frame[3] != 7:
            out += frame
    return out
try:
    while not ended:
        data = s.recv(16384)
        if not data:
            end = "closed"
            break
        for ev in c.receive_data(frames(data)):
            if isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
                if ev.flow_controlled_length:
                    c.increment_flow_control_window(ev.flow_controlled_length)
                    if not ev.stream_ended:
                        c.increment_flow_control_window(ev.flow_controlled_length, stream_id=ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
        out = c.data_to_send()
        if out:
            s.sendall(out)
        if got >= 128 * 1024 and not started:
            started = True
            print("started", flush=True)
        time.sleep(len(data) / rate)
except Exception as e:
    end = repr(e)
print(json.dumps({"got": got, "ended": ended, "end": end}), flush=True)
"#;

/// A drain (SIGTERM) lets an HTTP/2 download in flight finish whole. The client goes on
/// acknowledging data (WINDOW_UPDATE) to the end; closing the socket with those frames unread
/// would make the kernel reset the connection and drop the tail of the response still queued
/// for the client. With a large window, megabytes are still queued when certgate is done
/// writing, and the client acknowledges them for seconds.
#[test]
fn a_drain_lets_an_http2_download_finish_whole() {
    use std::io::BufRead as _;
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    crate::ingress::write_pki(d);
    std::fs::create_dir_all(d.join("files")).unwrap();
    let files = d.join("files").display().to_string();
    let http = Script::start_with(&python, FILE_SERVER, &[&files]);
    let config = listener("web", http.1, "drain_timeout_secs = 20");
    std::fs::write(d.join("c.toml"), format!("{SERVER}{config}")).unwrap();
    for (size, rate, window) in [
        (1usize << 20, "300000", "small"),
        (8 << 20, "1000000", "big"),
    ] {
        std::fs::write(d.join("files/big.bin"), vec![b'x'; size]).unwrap();
        let mut server = Serve::start(d, "c.toml", 1);
        let port = server.port("web");
        let mut client = std::process::Command::new(&python)
            .current_dir(d)
            .args([
                "-c",
                H2_DOWNLOAD,
                &port.to_string(),
                "root.pem",
                rate,
                window,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "started", "{window} window: {line}");
        server.signal("TERM");
        line.clear();
        out.read_line(&mut line).unwrap();
        let _ = client.wait();
        let result: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            result["got"], size,
            "{window} window: the download in flight at the drain was cut short: {result}"
        );
        assert_eq!(result["ended"], true, "{window} window: {result}");
        assert!(
            server.wait_exit(Duration::from_secs(10)).is_some(),
            "serve did not exit after the drain"
        );
    }
}

/// An HTTP/2 client (Python `h2` for the request, then frames read by hand) that makes one
/// request to port `argv[1]` (CA `argv[2]`), then waits, answering PINGs, until the server
/// closes; prints JSON: whether a GOAWAY came, and how the connection ended (`close_notify`
/// for a clean TLS end, `eof` without it, `reset`).
const H2_IDLE: &str = r#"
import json, socket, ssl, sys
import h2.config, h2.connection, h2.events
port, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10), server_hostname="localhost", suppress_ragged_eofs=False)
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
c.initiate_connection()
c.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")], end_stream=True)
s.sendall(c.data_to_send())
done, inbox = False, b""
while not done:
    for ev in c.receive_data(s.recv(65536)):
        if isinstance(ev, h2.events.StreamEnded):
            done = True
    s.sendall(c.data_to_send())
goaway, end = False, "open"
try:
    while True:
        data = s.recv(65536)
        if not data:
            end = "close_notify"
            break
        inbox += data
        while len(inbox) >= 9 and len(inbox) >= 9 + int.from_bytes(inbox[0:3], "big"):
            n = 9 + int.from_bytes(inbox[0:3], "big")
            frame, inbox = inbox[:n], inbox[n:]
            if frame[3] == 7:
                goaway = True
            elif frame[3] == 6 and not frame[4] & 1:
                s.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + frame[9:17])
except ConnectionResetError:
    end = "reset"
except ssl.SSLEOFError:
    end = "eof"
except socket.timeout:
    end = "timeout"
print(json.dumps({"goaway": goaway, "end": end}), flush=True)
"#;

/// An idle HTTP/2 connection closed by the idle timeout is closed like any other: GOAWAY (the
/// client learns which streams were taken), then close_notify, never a bare FIN or a reset.
#[test]
fn an_idle_http2_connection_ends_with_goaway_and_close_notify() {
    let python = require_peer!("python3");
    let dir = tempdir();
    let d = dir.path();
    crate::ingress::write_pki(d);
    let upstream = Script::start(&python, SLOW_UPSTREAM);
    let config = listener("web", upstream.1, "idle_timeout_secs = 1");
    std::fs::write(d.join("c.toml"), format!("{SERVER}{config}")).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let out = std::process::Command::new(&python)
        .current_dir(d)
        .args(["-c", H2_IDLE, &server.port("web").to_string(), "root.pem"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let got: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(got["goaway"], true, "{got}");
    assert_eq!(got["end"], "close_notify", "{got}");
}
