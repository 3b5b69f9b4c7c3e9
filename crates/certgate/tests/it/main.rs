//! End-to-end tests of the `certgate` binary against real peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod adversarial;
mod bad_input;
mod ca_audit;
mod ca_interop;
mod check;
mod egress;
mod egress_ca;
mod egress_fallback;
mod egress_gate;
mod first_hour;
mod front;
mod gemini;
mod guides;
mod handshake;
mod ingress;
mod lifetimes;
mod limits;
mod log;
mod package;
mod reload;
mod revocation;
mod server;
mod service;
mod status_page;
mod tls;
mod trust;
mod tunnel;
mod witness;

use std::path::Path;
use std::process::{Command, Output};

use certgate_testkit::Argv;

/// Runs the certgate binary with `args` in `dir`.
pub fn certgate(dir: &Path, args: impl Argv) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
        .current_dir(dir)
        .args(args.argv())
        .env_remove("CERTGATE_LOG")
        .output()
        .expect("run certgate")
}

/// Runs certgate and asserts success; returns stdout.
pub fn certgate_ok(dir: &Path, args: impl Argv) -> String {
    let args = args.argv();
    let out = certgate(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "certgate {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// stdout and stderr together, for message checks.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CA in `dir/ca` with a server certificate for localhost and a client certificate `alice`.
pub fn make_ca(dir: &Path) {
    certgate_ok(dir, &["ca", "init", "--dir", "ca", "--name", "Test CA"]);
    certgate_ok(
        dir,
        "ca issue --dir ca --server localhost --dns localhost --ip 127.0.0.1 --out server",
    );
    certgate_ok(
        dir,
        "ca issue --dir ca --client alice --uri spiffe://test.example/alice --out alice --p12",
    );
}

/// `curl https://localhost:PORT{path}` from `dir` trusting `root.pem`, presenting `client`.pem/.key
/// unless `client` is "none"; returns (HTTP status, body). Status "000" when no response came.
pub fn https_get(
    curl: &Path,
    dir: &Path,
    port: u16,
    path: &str,
    client: &str,
    extra: &[&str],
) -> (String, String) {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut cmd = Command::new(curl);
    cmd.current_dir(dir)
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "root.pem",
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
        ])
        .args(extra);
    if client != "none" {
        cmd.args([
            "--cert",
            &format!("{client}.pem"),
            "--key",
            &format!("{client}.key"),
        ]);
    }
    let out = cmd
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    if code == "000" {
        // No HTTP answer: say why in the body, for the failing assertion to show.
        return (
            code.to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
    }
    (code.to_owned(), body.to_owned())
}

/// A peer process (nginx, HAProxy, openssl s_server), killed on drop.
#[derive(Debug)]
pub struct Peer(pub std::process::Child);

impl Drop for Peer {
    /// SIGTERM first, so that a master process (nginx, HAProxy) stops its workers; SIGKILL
    /// when it has not exited within 2 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on the admin listener at `port` (HTTP/1.0): the whole answer, head and body.
pub fn admin_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    out
}

/// A loopback port that was free a moment ago (for peers that cannot report the port they got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 10 s for something to listen on 127.0.0.1:`port`.
pub fn wait_port(what: &str, port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts nginx in `d` (pid, logs and temp files there) with `http_body` inside its `http {}`
/// block.
pub fn start_nginx(nginx: &Path, d: &Path, http_body: &str) -> Peer {
    let dir = d.display();
    let conf = format!(
        r#"
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
{http_body}
}}
"#
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx)
        .args([
            "-p",
            &dir.to_string(),
            "-c",
            &d.join("nginx.conf").display().to_string(),
            "-g",
            "daemon off;",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    Peer(child)
}
