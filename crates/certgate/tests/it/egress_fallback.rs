//! Identity fallback against servers that name no CAs: a Python `ssl` server (which never sends
//! a CA list) trusting only CA b, reached by Python `requests` through the forward proxy, by a
//! tunnel and by `egress explain --connect`, in TLS 1.3 and TLS 1.2; nginx, which names its CA,
//! gets the right identity at once.

use std::path::Path;
use std::process::{Command, Stdio};

use certgate_testkit::require_peer;

use crate::egress::{Setup, egress_config, get, python_with, setup, write};
use crate::server::Serve;
use crate::{Peer, free_port, wait_port};

/// An HTTPS server on `port` that requires a client certificate from `b-root.pem` and names no
/// CA (Python's `ssl` never sends a list). It answers `issuer=<the client certificate's issuer
/// CN>` and closes the connection,
/// counts handshakes that failed, and answers `/failures` with that count.
const SERVER: &str = r#"
import socket, ssl, sys, threading
port, tls = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
ctx.load_verify_locations("b-root.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
if tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
failures = 0
lock = threading.Lock()
def serve(conn):
    global failures
    try:
        s = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        with lock:
            failures += 1
        print("handshake failed:", e, flush=True)
        conn.close()
        return
    try:
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("closed before a request: " + repr(head))
            head += chunk
        path = head.split(b" ")[1].decode()
        issuer = dict(x[0] for x in s.getpeercert()["issuer"])
        body = str(failures) if path == "/failures" else "issuer=" + issuer["commonName"]
        s.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode())
        s.close()
    except (ssl.SSLError, OSError) as e:
        with lock:
            failures += 1
        print("after the handshake:", e, flush=True)
        conn.close()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

fn start_server(python: &Path, d: &Path, port: u16, tls: &str) -> Peer {
    let log = std::fs::File::create(d.join(format!("server-{tls}.log"))).unwrap();
    let peer = Peer(
        Command::new(python)
            .current_dir(d)
            .args(["-c", SERVER, &port.to_string(), tls])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port("python ssl server", port);
    peer
}

/// `egress explain --connect --json` for `url`.
fn explain(d: &Path, url: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args([
            "egress",
            "explain",
            url,
            "--config",
            "egress.toml",
            "--json",
            "--connect",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The number of failed handshakes the server counted, asked through the proxy (with the
/// identity the proxy remembers, so asking adds none).
fn failures(python: &Path, d: &Path, proxy: u16, port: u16) -> String {
    let (code, body) = get(
        python,
        d,
        proxy,
        "requests",
        &format!("https://localhost:{port}/failures"),
        "egress-ca/ca.pem",
    );
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn falls_back_to_the_identity_a_silent_server_accepts() {
    let Some(python) = python_with(&["requests"]) else {
        return;
    };
    let nginx = require_peer!("nginx");
    let openssl = require_peer!("openssl");
    let s: Setup = setup(&openssl);
    let d = s.dir.path();
    let made = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(["egress", "ca", "--dir", "egress-ca", "--host", "localhost"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (p13, p12, pn, pt) = (free_port(), free_port(), free_port(), free_port());
    let _s13 = start_server(&python, d, p13, "1.3");
    let _s12 = start_server(&python, d, p12, "1.2");
    let _nginx = crate::start_nginx(
        &nginx,
        d,
        &format!(
            "  ssl_certificate {dir}/server.pem;\n  ssl_certificate_key {dir}/server.key;\n  default_type text/plain;\n{}",
            crate::egress::nginx_server(pn, "on", "b-root.pem"),
            dir = d.display()
        ),
    );
    wait_port("nginx", pn);
    // A tunnel with the same two identities, to the TLS 1.3 server.
    let tunnel = format!(
        r#"  [[egress.tunnel]]
  name = "silent"
  listen = "127.0.0.1:{pt}"
  target = "localhost:{p13}"
  identities = ["a-client", "b-client"]
  trust = "servers"
"#
    );
    write(d, "egress.toml", &egress_config(&s, &tunnel));
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");

    for (port, version) in [(p13, "TLSv1_3"), (p12, "TLSv1_2")] {
        // explain shows both attempts: a refused, then b accepted.
        let v = explain(d, &format!("https://localhost:{port}/"));
        let attempts = v["connect"]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{version}: {v:#}");
        assert_eq!(attempts[0]["sent"], "a-client", "{v:#}");
        let refused = attempts[0]["outcome"].as_str().unwrap();
        assert!(
            refused.starts_with("refused (UnknownCA)")
                || refused.starts_with("refused (HandshakeFailure)")
                || refused.starts_with("refused (BadCertificate)"),
            "{version}: {v:#}"
        );
        assert_eq!(attempts[1]["sent"], "b-client", "{v:#}");
        assert_eq!(attempts[1]["outcome"], "accepted", "{v:#}");
        assert!(
            v["connect"]["handshake"]
                .as_str()
                .unwrap()
                .starts_with(&format!("ok ({version}")),
            "{v:#}"
        );
        assert_eq!(v["connect"]["ca_hints"], serde_json::json!([]), "{v:#}");

        // Through the proxy, as an unmodified app: the first request costs one refused
        // handshake and gets b; the next (a new upstream connection: the server closes each)
        // goes straight to b.
        let before: u32 = failures(&python, d, pp, port).parse().unwrap();
        let url = format!("https://localhost:{port}/");
        let (code, body) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
        assert_eq!(
            (code, body.as_str()),
            (200, "issuer=b intermediate"),
            "{version}"
        );
        let (code, body) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
        assert_eq!(
            (code, body.as_str()),
            (200, "issuer=b intermediate"),
            "{version}"
        );
        let after: u32 = failures(&python, d, pp, port).parse().unwrap();
        // The first `failures` request made the proxy learn b (one refusal); nothing since.
        assert_eq!(
            after, before,
            "{version}: the remembered identity must be used without a failed attempt"
        );
    }

    // The tunnel falls back too.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", pt)).unwrap();
    use std::io::{Read as _, Write as _};
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("issuer=b intermediate"), "{answer}");

    // nginx names CA b: b at once, in one attempt.
    let v = explain(d, &format!("https://localhost:{pn}/"));
    let attempts = v["connect"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{v:#}");
    assert_eq!(attempts[0]["sent"], "b-client", "{v:#}");
    assert_eq!(v["connect"]["ca_hints"][0], "CN=b root", "{v:#}");
    let (code, body) = get(
        &python,
        d,
        pp,
        "requests",
        &format!("https://localhost:{pn}/"),
        "egress-ca/ca.pem",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("verify=SUCCESS"), "{body}");
    assert!(body.contains("issuer=CN=b intermediate"), "{body}");
}

/// A TLS 1.3 server that judges the client certificate slowly (after `delay` seconds, longer
/// than certgate waits) and sends no tickets: the first request fails, and certgate must then
/// try the next identity instead of insisting on the one refused. Counts refusals at `/failures`
/// like [`SERVER`].
const SLOW_SERVER: &str = r#"
import socket, ssl, sys, threading, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
ctx.load_verify_locations("b-root.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.num_tickets = 0
failures = 0
def serve(conn):
    global failures
    conn.settimeout(10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_side=True)
    flights = 0
    try:
        while True:
            try:
                s.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    conn.sendall(pending)
                    flights += 1
                    if flights == 1:
                        time.sleep(delay)
                data = conn.recv(65536)
                if not data:
                    return
                inc.write(data)
    except ssl.SSLError:
        failures += 1
        conn.sendall(out.read())
        conn.close()
        return
    conn.sendall(out.read())
    head = b""
    while b"\r\n\r\n" not in head:
        try:
            head += s.read(4096)
        except ssl.SSLWantReadError:
            data = conn.recv(65536)
            if not data:
                return
            inc.write(data)
    path = head.split(b" ")[1].decode()
    issuer = dict(x[0] for x in s.getpeercert()["issuer"])
    body = str(failures) if path == "/failures" else "issuer=" + issuer["commonName"]
    s.write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode())
    conn.sendall(out.read())
    conn.close()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

#[test]
fn a_server_that_refuses_late_gets_the_next_identity_next_time() {
    let Some(python) = python_with(&["requests"]) else {
        return;
    };
    let openssl = require_peer!("openssl");
    let s: Setup = setup(&openssl);
    let d = s.dir.path();
    let made = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(d)
        .args(["egress", "ca", "--dir", "egress-ca", "--host", "localhost"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let port = free_port();
    let log = std::fs::File::create(d.join("slow.log")).unwrap();
    let _server = Peer(
        Command::new(&python)
            .current_dir(d)
            .args(["-c", SLOW_SERVER, &port.to_string(), "1.5"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_port("slow TLS 1.3 server", port);
    write(d, "egress.toml", &egress_config(&s, ""));
    let proxy = Serve::start(d, "egress.toml", 1);
    let pp = proxy.port("egress");
    let url = format!("https://localhost:{port}/");
    // The first request goes out under a (the server judged too late to fall back): it fails.
    let (code, _) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
    assert_ne!(
        code, 200,
        "a refused late cannot be recovered on the same connection"
    );
    // The next one starts with b.
    let (code, body) = get(&python, d, pp, "requests", &url, "egress-ca/ca.pem");
    assert_eq!((code, body.as_str()), (200, "issuer=b intermediate"));
}
