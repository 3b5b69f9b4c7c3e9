//! Certificates from `certgate ca issue` work in a real mutual-TLS handshake: a Python `ssl`
//! server with a certgate server certificate that requires client certificates, reached by curl
//! with a certgate client certificate (PEM pair and PKCS#12).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use certgate_testkit::{require_peer, tempdir};

use crate::make_ca;

const SERVER: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
ctx.load_verify_locations("ca/ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(8)
print(sock.getsockname()[1], flush=True)
for _ in range(int(sys.argv[1])):
    conn, _ = sock.accept()
    conn.settimeout(10)
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.recv(4096)
        cn = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
        body = ("hello " + cn).encode()
        tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        tls.close()
    except Exception as e:
        print("handshake refused:", e, file=sys.stderr, flush=True)
        conn.close()
"#;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(python: &Path, dir: &Path, connections: u32) -> Server {
    let mut child = Command::new(python)
        .current_dir(dir)
        .args(["-c", SERVER, &connections.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("server did not print a port: {line:?}"));
    Server { child, port }
}

fn curl(curl: &Path, dir: &Path, port: u16, extra: &[&str]) -> std::process::Output {
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    Command::new(curl)
        .current_dir(dir)
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "ca/ca.pem",
            "--resolve",
            &resolve,
        ])
        .args(extra)
        .arg(&url)
        .output()
        .unwrap()
}

#[test]
fn python_ssl_server_and_curl_with_certgate_certificates() {
    let python = require_peer!("python3");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    make_ca(d);
    let server = start(&python, d, 3);

    let out = curl(
        &curl_bin,
        d,
        server.port,
        &["--cert", "alice.pem", "--key", "alice.key"],
    );
    assert!(
        out.status.success(),
        "curl with PEM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello alice");

    let password = std::fs::read_to_string(d.join("alice.p12.password")).unwrap();
    let p12 = format!("alice.p12:{}", password.trim());
    let out = curl(
        &curl_bin,
        d,
        server.port,
        &["--cert-type", "P12", "--cert", &p12],
    );
    assert!(
        out.status.success(),
        "curl with PKCS#12: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello alice");

    // Without a client certificate the server refuses the handshake.
    let out = curl(&curl_bin, d, server.port, &[]);
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
}
