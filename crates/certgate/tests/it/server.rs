//! Helpers to run `certgate serve` and a Python upstream on ephemeral loopback ports.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `certgate serve`; killed on drop.
pub struct Serve {
    child: Child,
    /// Listener name → bound port.
    pub ports: HashMap<String, u16>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `certgate serve --config CONFIG` in `dir` and waits for `listeners` lines.
    pub fn start(dir: &Path, config: &str, listeners: usize) -> Self {
        Self::start_with_env(dir, config, listeners, &[])
    }

    /// Like [`Serve::start`], with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        config: &str,
        listeners: usize,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        Self::spawn(dir, config, listeners, env, Stdio::inherit())
    }

    /// Like [`Serve::start`], with the log (stderr) written to `log` for the test to read.
    pub fn start_logging(dir: &Path, config: &str, listeners: usize, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(dir, config, listeners, &[], Stdio::from(file))
    }

    fn spawn(
        dir: &Path,
        config: &str,
        listeners: usize,
        env: &[(&str, &std::ffi::OsStr)],
        stderr: Stdio,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .current_dir(dir)
            .args(["serve", "--config", config])
            .env("CERTGATE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start certgate serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut ports = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ports.len() < listeners {
            assert!(Instant::now() < deadline, "certgate serve did not start");
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read stdout") == 0 {
                let status = child.wait().expect("wait");
                panic!("certgate serve exited early: {status}");
            }
            // listening ingress=NAME addr=IP:PORT (or tunnel=NAME, admin=admin)
            let mut name = None;
            let mut port = None;
            for part in line.split_whitespace() {
                if let Some(n) = [
                    "ingress=",
                    "tunnel=",
                    "gemini=",
                    "admin=",
                    "egress=",
                    "egress-tunnel=",
                    "log=",
                    "witness=",
                    "ca=",
                ]
                .iter()
                .find_map(|p| part.strip_prefix(p))
                {
                    name = Some(n.to_owned());
                }
                if let Some(a) = part.strip_prefix("addr=") {
                    port = a.rsplit(':').next().and_then(|p| p.parse().ok());
                }
            }
            if let (Some(n), Some(p)) = (name, port) {
                ports.insert(n, p);
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Self { child, ports }
    }

    /// Sends `signal` (e.g. `HUP`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the server to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The port of listener `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }
}

/// A Python HTTP/1.1 upstream that answers every request with the header lines it received, as
/// a JSON list of [name, value] pairs (repeats kept, original case).
pub const ECHO_UPSTREAM: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def handle_one(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({"headers": [[k, v] for k, v in self.headers.items()], "body": body.decode("latin-1"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("client-cert", ":bGVhaw==:")
        self.send_header("vary", "Accept, Client-Cert")
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = handle_one
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A running Python upstream; killed on drop.
pub struct Upstream {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    /// Starts [`ECHO_UPSTREAM`] with `python`.
    pub fn start(python: &Path) -> Self {
        let mut child = Command::new(python)
            .args(["-c", ECHO_UPSTREAM])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python upstream");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("upstream printed {line:?}"));
        Self { child, port }
    }
}
