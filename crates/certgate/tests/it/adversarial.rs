//! Adversarial requests against `certgate serve` in front of real upstreams that interpret
//! requests the way real apps do: Python's `http.server` file server and `wsgiref` (which maps
//! `_` and `-` in header names to one CGI variable), hypercorn (which accepts an h2c upgrade),
//! and nginx (which picks a virtual host by the request line's authority or `Host`).
//!
//! Every case of a table runs, failures are collected, and each test asserts once at the end
//! with the whole list, so one run shows every failing spelling.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certgate_testkit::{Cert, Spec, TestPki, require_peer, self_signed, signed_by, tempdir};
use rcgen::SanType;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::server::Serve;

const SECRET: &str = "ADMIN-SECRET";

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/// Python 3 with the `h2` and `hypercorn` modules the suite's HTTP/2 client and h2c upstream
/// need; a missing module fails the test with the command that installs it.
fn python_with_h2() -> Option<PathBuf> {
    let python = certgate_testkit::peer("python3")?;
    let ok = Command::new(&python)
        .args(["-c", "import h2, hypercorn"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the adversarial suite needs the Python modules h2 and hypercorn: python3 -m pip install h2 hypercorn"
    );
    Some(python)
}

/// A Python peer run as `python -c SCRIPT ARGS...` in `dir` that prints one line (its port)
/// once ready; killed when dropped.
#[derive(Debug)]
struct Script {
    child: std::process::Child,
    port: u16,
}

impl Script {
    fn start(python: &Path, dir: &Path, script: &str, args: &[&str]) -> Self {
        use std::io::{BufRead as _, BufReader};
        let mut child = Command::new(python)
            .current_dir(dir)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python peer printed {line:?}"));
        Self { child, port }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http.server.SimpleHTTPRequestHandler` serving `argv[1]`; it percent-decodes and normalises
/// paths itself (`translate_path`). Each request target is appended to `argv[2]`.
const FILE_UPSTREAM: &str = r#"
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a", buffering=1)
class H(SimpleHTTPRequestHandler):
    def parse_request(self):
        ok = super().parse_request()
        log.write(repr(getattr(self, "path", None)) + "\n")
        return ok
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
s = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A `wsgiref` app that answers with its environ (`HTTP_*`, `PATH_INFO`, `QUERY_STRING`,
/// `REQUEST_METHOD`, and `RAW_URI`, the target as received) as JSON. `wsgiref` maps `_` and `-`
/// in header names to the same variable, as CGI, PHP and most WSGI servers do.
const WSGI_UPSTREAM: &str = r#"
import json
from socketserver import ThreadingMixIn
from wsgiref.simple_server import make_server, WSGIServer, WSGIRequestHandler
class Handler(WSGIRequestHandler):
    def get_environ(self):
        env = super().get_environ()
        env["RAW_URI"] = self.path
        return env
    def log_message(self, *a):
        pass
class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
def app(env, start):
    keep = ("PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "RAW_URI")
    out = {k: v for k, v in env.items() if k.startswith("HTTP_") or k in keep}
    body = json.dumps(out).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
s = make_server("127.0.0.1", 0, app, server_class=Server, handler_class=Handler)
print(s.server_port, flush=True)
s.serve_forever()
"#;

/// Differential upstream `argv[1]`: answers with its name, the raw target it received, its own
/// reading of the path, `posixpath.normpath(urllib.parse.unquote(path))`, and any header whose
/// value says `FORGED`.
const DIFF_UPSTREAM: &str = r#"
import json, posixpath, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name = sys.argv[1]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        raw = self.path
        path = raw.split("?", 1)[0]
        interp = posixpath.normpath(urllib.parse.unquote(path))
        forged = ["%s: %s" % (k, v) for k, v in self.headers.items() if "FORGED" in v]
        out = json.dumps({"name": name, "raw": raw, "interp": interp, "forged": forged}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// Counts requests: appends `REQ METHOD TARGET` to `argv[1]` for every request it parses, then
/// `HDR TARGET te=[...] cl=[...]` (its framing headers); bodies read by Content-Length or
/// chunked, trailer fields logged as `TRL TARGET FIELD`; answers `counted TARGET`.
const COUNTING_UPSTREAM: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[1], "a", buffering=1)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def any(self):
        log.write("REQ %s %s\n" % (self.command, self.path))
        log.write("HDR %s te=%r cl=%r\n" % (self.path, self.headers.get_all("transfer-encoding"), self.headers.get_all("content-length")))
        n = 0
        try:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                while True:
                    line = self.rfile.readline()
                    if not line:
                        break
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:
                            t = self.rfile.readline()
                            if t in (b"\r\n", b"\n", b""):
                                break
                            log.write("TRL %s %s\n" % (self.path, t.decode("latin-1").strip()))
                        break
                    n += len(self.rfile.read(size))
                    self.rfile.readline()
            else:
                size = int(self.headers.get("content-length") or 0)
                n = len(self.rfile.read(size)) if size else 0
        except Exception as e:
            log.write("ERR %s %r\n" % (self.path, e))
            self.close_connection = True
            return
        out = ("counted %s %d" % (self.path, n)).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = any
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A raw upgrade upstream. `honest`: 101 when the request has an `Upgrade` header (then echoes
/// bytes; `X-Seen-Upgrade` and `X-Seen-Settings` say what it received), otherwise 200 with the
/// request head as body. `always`: 101 to every request. `h2c`: 101 `Upgrade: h2c` to every
/// request.
const UPGRADE_UPSTREAM: &str = r#"
import socket, sys, threading
mode = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(4096)
        if not chunk:
            return
        head += chunk
    head = head.split(b"\r\n\r\n", 1)[0]
    up = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")[1:] if l.lower().startswith(b"upgrade:")]
    if up or mode in ("always", "h2c"):
        proto = b"h2c" if mode == "h2c" else (up[0] if up else b"foo")
        settings = b"yes" if b"\r\nhttp2-settings:" in head.lower() else b"no"
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + proto + b"\r\nConnection: Upgrade\r\nX-Seen-Upgrade: " + b", ".join(up) + b"\r\nX-Seen-Settings: " + settings + b"\r\n\r\n")
        while True:
            data = c.recv(4096)
            if not data:
                break
            c.sendall(data)
        return
    body = b"NO-UPGRADE\n" + head
    c.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The ASGI app hypercorn runs: logs every request (path, HTTP version, headers; WebSocket
/// handshakes too, which it then refuses) as a JSON line to `$HYPER_LOG` and answers
/// `HYPERCORN-OK PATH`.
const HYPERCORN_APP: &str = r#"
import json, os
LOG = os.environ["HYPER_LOG"]
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] not in ("http", "websocket"):
        return
    with open(LOG, "a") as f:
        f.write(json.dumps({
            "path": scope["path"],
            "version": scope["http_version"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }) + "\n")
    if scope["type"] == "websocket":
        await send({"type": "websocket.close"})
        return
    while True:
        m = await receive()
        if not m.get("more_body"):
            break
    body = ("HYPERCORN-OK " + scope["path"]).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"#;

/// An HTTP/2 client (Python `h2` over `ssl`, ALPN h2) with outbound validation off, so any
/// `:path`, `:authority` and header spelling goes out as given. `argv[1]` is JSON
/// `{port, ca, cert?, key?, one_connection?, requests: [{sni, headers: [[name, value], ...],
/// body?, trailers?}]}`; one connection per request, or all on one (streams 1, 3, 5, ...; the
/// first request's SNI) with `one_connection`. Prints a JSON list of `{status, headers, body, reset, goaway, error}`.
const H2_CLIENT: &str = r#"
import json, socket, ssl, sys
import h2.config, h2.connection, h2.events
spec = json.loads(sys.argv[1])

def connect(sni):
    ctx = ssl.create_default_context(cafile=spec["ca"])
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    if spec.get("cert"):
        ctx.load_cert_chain(spec["cert"], spec["key"])
    raw = socket.create_connection(("127.0.0.1", spec["port"]), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    if s.selected_alpn_protocol() != "h2":
        raise RuntimeError("no h2: %r" % s.selected_alpn_protocol())
    cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
        validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c

def request(s, c, sid, req):
    res = {"status": 0, "headers": [], "body": "", "reset": None, "goaway": None, "error": None}
    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req["headers"]]
    data = req.get("body")
    trailers = req.get("trailers")
    c.send_headers(sid, hdrs, end_stream=data is None and not trailers)
    if data is not None:
        c.send_data(sid, data.encode("latin-1"), end_stream=not trailers)
    if trailers:
        c.send_headers(sid, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailers], end_stream=True)
    s.sendall(c.data_to_send())
    body = b""
    done = False
    while not done:
        data = s.recv(65536)
        if not data:
            res["error"] = "eof"
            break
        for ev in c.receive_data(data):
            if getattr(ev, "stream_id", sid) not in (sid, 0):
                continue
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    if k == b":status":
                        res["status"] = int(v)
                    else:
                        res["headers"].append([k.decode("latin-1"), v.decode("latin-1")])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
            elif isinstance(ev, h2.events.StreamReset):
                res["reset"] = int(ev.error_code)
                done = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                res["goaway"] = int(ev.error_code)
                done = True
        s.sendall(c.data_to_send())
    res["body"] = body.decode("latin-1")
    return res

out = []
shared = None
for i, req in enumerate(spec["requests"]):
    try:
        if spec.get("one_connection"):
            if shared is None:
                shared = connect(req.get("sni"))
            s, c = shared
            out.append(request(s, c, 1 + 2 * i, req))
        else:
            s, c = connect(req.get("sni"))
            out.append(request(s, c, 1, req))
            s.close()
    except Exception as e:
        out.append({"status": 0, "headers": [], "body": "", "reset": None, "goaway": None, "error": repr(e)})
print(json.dumps(out))
"#;

/// Header fields in order, pseudo-headers included.
type Headers = Vec<(String, String)>;

/// An HTTP/2 request for [`h2_requests`]: the TLS server name to send (none: no SNI) and its
/// header fields.
type H2Req<'a> = (Option<&'a str>, Headers);

/// One HTTP/2 answer from [`H2_CLIENT`].
#[derive(Debug, Clone)]
struct H2Resp {
    status: u16,
    body: String,
    reset: Option<u64>,
    goaway: Option<u64>,
    error: Option<String>,
}

impl H2Resp {
    /// Short description for failure messages.
    fn summary(&self) -> String {
        let mut s = format!("h2 status {}", self.status);
        if let Some(r) = self.reset {
            s.push_str(&format!(" RST_STREAM({r})"));
        }
        if let Some(g) = self.goaway {
            s.push_str(&format!(" GOAWAY({g})"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" error {e}"));
        }
        s.push_str(&format!(" body {:?}", truncate(&self.body, 200)));
        s
    }
}

/// HTTP/2 requests through [`H2_CLIENT`]: `(sni, headers)` each on its own connection.
fn h2_requests(
    python: &Path,
    d: &Path,
    port: u16,
    client: Option<(&str, &str)>,
    requests: &[H2Req<'_>],
) -> Vec<H2Resp> {
    let reqs: Vec<serde_json::Value> = requests
        .iter()
        .map(|(sni, h)| {
            serde_json::json!({
                "sni": sni,
                "headers": h.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
            })
        })
        .collect();
    h2_run(python, d, port, client, reqs, false)
}

/// Runs [`H2_CLIENT`] with requests already in its JSON form.
fn h2_run(
    python: &Path,
    d: &Path,
    port: u16,
    client: Option<(&str, &str)>,
    reqs: Vec<serde_json::Value>,
    one_connection: bool,
) -> Vec<H2Resp> {
    let mut spec = serde_json::json!({
        "port": port,
        "ca": d.join("root.pem").display().to_string(),
        "requests": reqs,
        "one_connection": one_connection,
    });
    if let Some((cert, key)) = client {
        spec["cert"] = d.join(cert).display().to_string().into();
        spec["key"] = d.join(key).display().to_string().into();
    }
    let out = Command::new(python)
        .current_dir(d)
        .args(["-c", H2_CLIENT, &spec.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "h2 client output is not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| H2Resp {
            status: u16::try_from(r["status"].as_u64().unwrap_or(0)).unwrap_or(0),
            body: r["body"].as_str().unwrap_or("").to_owned(),
            reset: r["reset"].as_u64(),
            goaway: r["goaway"].as_u64(),
            error: r["error"].as_str().map(str::to_owned),
        })
        .collect()
}

/// Request headers for an HTTP/2 GET of `path` with `:authority` `authority` (none when
/// `None`), then `extra`.
fn h2_get(path: &str, authority: Option<&str>, extra: &[(&str, &str)]) -> Headers {
    let mut h = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (":path".to_owned(), path.to_owned()),
    ];
    if let Some(a) = authority {
        h.push((":authority".to_owned(), a.to_owned()));
    }
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    h
}

// ---------------------------------------------------------------------------------------------
// PKI and raw TLS client
// ---------------------------------------------------------------------------------------------

/// The names the test server certificate is valid for.
const SERVER_NAMES: [&str; 4] = [
    "localhost",
    "admin.example",
    "public.example",
    "echo.example",
];

/// Writes `root.pem`, `server.pem` (leaf for [`SERVER_NAMES`] and 127.0.0.1, plus the
/// intermediate) and `server.key`; returns the PKI.
fn write_server_pki(d: &Path) -> TestPki {
    let pki = TestPki::new();
    std::fs::write(d.join("root.pem"), &pki.root.pem).unwrap();
    let mut spec = Spec::server("localhost");
    spec.sans = SERVER_NAMES
        .iter()
        .map(|n| SanType::DnsName((*n).try_into().unwrap()))
        .collect();
    spec.sans
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let server = signed_by(&spec, &pki.intermediate);
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &server.key_pem).unwrap();
    pki
}

/// The config head: identity `server`, trust `clients` (root.pem).
const CONFIG_HEAD: &str = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
"#;

/// A client certificate chain and key to present.
#[derive(Clone)]
struct ClientId {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

impl ClientId {
    fn of(leaf: &Cert, chain: &[&Cert]) -> Self {
        let mut all = vec![leaf.der.clone()];
        all.extend(chain.iter().map(|c| c.der.clone()));
        Self {
            chain: all,
            key: leaf.key.serialize_der(),
        }
    }
}

/// How to connect: TLS server name to send (`None`: no SNI, by connecting to the IP address),
/// a client certificate, the read timeout (0: 5 s). ALPN is always `http/1.1`.
#[derive(Clone, Default)]
struct Dial {
    sni: Option<&'static str>,
    client: Option<ClientId>,
    timeout_ms: u64,
}

impl Dial {
    fn sni(name: &'static str) -> Self {
        Self {
            sni: Some(name),
            ..Self::default()
        }
    }
    fn with(mut self, id: &ClientId) -> Self {
        self.client = Some(id.clone());
        self
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn client_config(root: &[u8], client: Option<&ClientId>) -> Arc<ClientConfig> {
    let auth = match client {
        None => crate::tls::Auth::None,
        Some(id) => crate::tls::Auth::Cert(
            id.chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
        ),
    };
    let mut config = (*crate::tls::config(root, &[], auth)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects to 127.0.0.1:`port` and completes the handshake.
fn dial(port: u16, root: &[u8], how: &Dial) -> std::io::Result<Tls> {
    let name: ServerName<'static> = match how.sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        // rustls sends no SNI for an IP address; the server certificate has 127.0.0.1.
        None => ServerName::from(std::net::IpAddr::from([127, 0, 0, 1])),
    };
    let conn = ClientConnection::new(client_config(root, how.client.as_ref()), name)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    let ms = if how.timeout_ms == 0 {
        5000
    } else {
        how.timeout_ms
    };
    tcp.set_read_timeout(Some(Duration::from_millis(ms)))?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One HTTP/1.1 response.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    /// Lower-cased head.
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn summary(&self) -> String {
        format!(
            "{} {:?}",
            self.head.lines().next().unwrap_or(""),
            truncate(&self.body_text(), 200)
        )
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Reads HTTP/1.1 responses from a stream, keeping every byte read for leak checks.
struct Reader<'a> {
    s: &'a mut Tls,
    buf: Vec<u8>,
    all: Vec<u8>,
    eof: bool,
}

impl<'a> Reader<'a> {
    fn new(s: &'a mut Tls) -> Self {
        Self {
            s,
            buf: Vec::new(),
            all: Vec::new(),
            eof: false,
        }
    }

    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut b = [0u8; 16384];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                self.all.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(l[..i].to_vec());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next response (skipping `100 Continue`); `None` when the stream ends first.
    fn response(&mut self) -> Option<Resp> {
        loop {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if !self.fill() {
                    return None;
                }
            };
            let head_bytes: Vec<u8> = self.buf.drain(..end).collect();
            let head = String::from_utf8_lossy(&head_bytes).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status == 100 {
                continue;
            }
            if (100..200).contains(&status) || status == 204 || status == 304 {
                return Some(Resp {
                    status,
                    head,
                    body: Vec::new(),
                });
            }
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            let body = if let Some(len) = header("content-length") {
                let len = len.parse().unwrap_or(0);
                self.take(len)
                    .unwrap_or_else(|| std::mem::take(&mut self.buf))
            } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                let mut body = Vec::new();
                while let Some(l) = self.line() {
                    let size = usize::from_str_radix(
                        String::from_utf8_lossy(&l)
                            .split(';')
                            .next()
                            .unwrap()
                            .trim(),
                        16,
                    )
                    .unwrap_or(0);
                    if size == 0 {
                        while let Some(l) = self.line() {
                            if l.is_empty() {
                                break;
                            }
                        }
                        break;
                    }
                    match self.take(size + 2) {
                        Some(c) => body.extend_from_slice(&c[..size]),
                        None => break,
                    }
                }
                body
            } else {
                while self.fill() {}
                std::mem::take(&mut self.buf)
            };
            return Some(Resp { status, head, body });
        }
    }
}

/// Sends `raw` on a fresh connection and reads up to `n` responses. Returns them and every
/// byte read (for leak checks); a failed handshake or write gives no responses.
fn exchange(port: u16, root: &[u8], how: &Dial, raw: &[u8], n: usize) -> (Vec<Resp>, String) {
    let mut tls = match dial(port, root, how) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), format!("connect/handshake failed: {e}")),
    };
    if let Err(e) = tls.write_all(raw).and_then(|()| tls.flush()) {
        return (Vec::new(), format!("write failed: {e}"));
    }
    let mut r = Reader::new(&mut tls);
    let mut out = Vec::new();
    while out.len() < n {
        match r.response() {
            Some(resp) => out.push(resp),
            None => break,
        }
    }
    let all = String::from_utf8_lossy(&r.all).into_owned();
    (out, all)
}

/// One request, one response (status 0 when none came).
fn one(port: u16, root: &[u8], how: &Dial, raw: &[u8]) -> (Resp, String) {
    let (mut rs, all) = exchange(port, root, how, raw, 1);
    let resp = rs.pop().unwrap_or(Resp {
        status: 0,
        head: String::new(),
        body: all.clone().into_bytes(),
    });
    (resp, all)
}

/// `GET target HTTP/1.1` with `headers` (each a full line) and `Connection: close`.
fn get(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("GET {target} HTTP/1.1\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

/// `CERTGATE_ADV_VERBOSE=1` prints every case's outcome, not only failures.
fn verbose(line: impl FnOnce() -> String) {
    if std::env::var("CERTGATE_ADV_VERBOSE").is_ok_and(|v| v == "1") {
        eprintln!("adversarial: {}", line());
    }
}

/// Failures collected over a table of cases.
#[derive(Default, Debug)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
    fn assert_none(self, test: &str) {
        assert!(
            self.0.is_empty(),
            "{test}: {} failing case(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Path normal form
// ---------------------------------------------------------------------------------------------

/// What a path spelling should come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// 400: cannot be put in normal form.
    Bad,
    /// Forwarded with exactly this path (and query) after normalisation.
    Norm(&'static str),
    /// Refused one way or another (400, or 401 on `/admin`): never served publicly.
    Denied,
}

/// Path spellings and their normal form. The route table: `/` public, `/admin` protected,
/// `/keep` with `encoded_slashes = "keep"`.
const PATHS: &[(&str, Want)] = &[
    ("/admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("/admin", Want::Norm("/admin")),
    ("/admin/", Want::Norm("/admin/")),
    ("/%61dmin/secret.txt", Want::Norm("/admin/secret.txt")),
    (
        "/%61%64%6D%69%6e/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    ("/admin/secret%2Etxt", Want::Norm("/admin/secret.txt")),
    ("/%2e%2e/admin/secret.txt", Want::Norm("/admin/secret.txt")),
    (
        "/public/%2e%2e/admin/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    (
        "/public/%2E%2E/admin/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    (
        "/public/.%2e/admin/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    ("/%2e/admin/secret.txt", Want::Norm("/admin/secret.txt")),
    (
        "/public/../admin/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    ("/./admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("/x/../admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("/../admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("/../../admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("//admin/secret.txt", Want::Norm("/admin/secret.txt")),
    ("/admin//secret.txt", Want::Norm("/admin/secret.txt")),
    ("//admin///secret.txt", Want::Norm("/admin/secret.txt")),
    (
        "/public//..//admin/secret.txt",
        Want::Norm("/admin/secret.txt"),
    ),
    ("/admin/secret.txt/..", Want::Norm("/admin/")),
    ("/admin/.", Want::Norm("/admin/")),
    ("/admin/secret.txt/.", Want::Norm("/admin/secret.txt/")),
    ("/public/.", Want::Norm("/public/")),
    ("/public/..", Want::Norm("/")),
    ("/public/%2E", Want::Norm("/public/")),
    // Encoded slashes and backslashes.
    ("/public/%2e%2e%2fadmin/secret.txt", Want::Bad),
    ("/public%2F..%2Fadmin/secret.txt", Want::Bad),
    ("/admin%2fsecret.txt", Want::Bad),
    ("/admin%2Fsecret.txt", Want::Bad),
    ("/%2Fadmin/secret.txt", Want::Bad),
    ("/public\\..\\admin\\secret.txt", Want::Bad),
    ("/admin\\secret.txt", Want::Bad),
    ("/public/..%5Cadmin%5Csecret.txt", Want::Bad),
    ("/admin%5csecret.txt", Want::Bad),
    // NUL, invalid percent-encoding, overlong and invalid UTF-8.
    ("/admin/secret.txt%00", Want::Bad),
    ("/admin%00/secret.txt", Want::Bad),
    ("/%C0%AE%C0%AE/admin/secret.txt", Want::Bad),
    ("/public/%C0%AF../admin/secret.txt", Want::Bad),
    ("/public/..%c0%afadmin/secret.txt", Want::Bad),
    ("/%E0%80%AFadmin/secret.txt", Want::Bad),
    ("/%FF/admin/secret.txt", Want::Bad),
    ("/%G0admin/secret.txt", Want::Bad),
    ("/admin/secret.txt%", Want::Bad),
    ("/admin/secret.txt%2", Want::Bad),
    ("/admin/%zz", Want::Bad),
    // Case: routes are case-sensitive, so these are public (and the upstream has no such file).
    ("/ADMIN/secret.txt", Want::Norm("/ADMIN/secret.txt")),
    ("/Admin/secret.txt", Want::Norm("/Admin/secret.txt")),
    ("/%41dmin/secret.txt", Want::Norm("/Admin/secret.txt")),
    ("/administrator", Want::Norm("/administrator")),
    ("/admin.", Want::Norm("/admin.")),
    ("/admin%20", Want::Norm("/admin%20")),
    ("/.../admin", Want::Norm("/.../admin")),
    // `;params` are ignored for matching (judged by /admin), forwarded as they are.
    ("/admin;x=1/secret.txt", Want::Norm("/admin;x=1/secret.txt")),
    ("/admin;/secret.txt", Want::Norm("/admin;/secret.txt")),
    ("/admin;jsessionid=1", Want::Norm("/admin;jsessionid=1")),
    ("/admin/secret.txt;", Want::Norm("/admin/secret.txt;")),
    ("/;x/admin/secret.txt", Want::Norm("/;x/admin/secret.txt")),
    ("/admin;x/../public/", Want::Norm("/public/")),
    // Tomcat reads `..;` as `..`: never public.
    ("/public/..;/admin/secret.txt", Want::Denied),
    ("/public/..;x=1/admin/secret.txt", Want::Denied),
    ("/public/%2e%2e;/admin/secret.txt", Want::Denied),
    // Other escapes kept, hex upper-cased; unreserved ones decoded; query untouched.
    ("/public/%3b", Want::Norm("/public/%3B")),
    ("/public/%7eu%5F%2d", Want::Norm("/public/~u_-")),
    (
        "/public/%252e%252e/admin/secret.txt",
        Want::Norm("/public/%252e%252e/admin/secret.txt"),
    ),
    ("/public/a%e2%82%acb", Want::Norm("/public/a%E2%82%ACb")),
    (
        "/public/index.html?next=/../admin/%2F&x=%2e",
        Want::Norm("/public/index.html?next=/../admin/%2F&x=%2e"),
    ),
    ("/public/index.html", Want::Norm("/public/index.html")),
    ("/", Want::Norm("/")),
    // The `/keep` route keeps `%2F` (upper-cased); dot segments it would produce are 400.
    ("/keep/a%2fb", Want::Norm("/keep/a%2Fb")),
    ("/keep/a%2Fb/", Want::Norm("/keep/a%2Fb/")),
    ("/keep/..%2Fadmin/secret.txt", Want::Bad),
    ("/keep/a%2F..%2F..%2Fadmin/secret.txt", Want::Bad),
    ("/keep/a%2F%2E%2E%2Fb", Want::Bad),
    ("/keep%2F..%2Fadmin/secret.txt", Want::Bad),
];

/// Whether `path` (no query) falls under route prefix `prefix`, segment-wise, ignoring
/// `;params` of each segment, as the spec says routing does.
fn under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let segs = |p: &str| -> Vec<String> {
        p.split('/')
            .map(|s| s.split(';').next().unwrap_or("").to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let (p, want) = (segs(path), segs(prefix));
    p.len() >= want.len() && p[..want.len()] == want[..]
}

/// The most specific of `routes` (prefix, name) for `path`.
fn route_for<'a>(path: &str, routes: &[(&str, &'a str)]) -> &'a str {
    let path = path.split('?').next().unwrap_or("");
    routes
        .iter()
        .filter(|(p, _)| under(path, p))
        .max_by_key(|(p, _)| p.len())
        .map_or("none", |(_, n)| n)
}

/// The route table of the path tests: (prefix, name).
const PATH_ROUTES: &[(&str, &str)] = &[("/", "public"), ("/admin", "admin"), ("/keep", "public")];

fn path_config(public: u16, admin: u16) -> String {
    format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  path = "/"
  upstream = "http://127.0.0.1:{public}"
  [[ingress.route]]
  path = "/admin"
  upstream = "http://127.0.0.1:{admin}"
  require_verified = true
  forward = ["certgate"]
  [[ingress.route]]
  path = "/keep"
  upstream = "http://127.0.0.1:{public}"
  encoded_slashes = "keep"
"#
    )
}

/// Status `got` against `want` for `path` on the protected route table; the response text is
/// already known not to leak the secret.
fn judge_path(path: &str, want: Want, got: u16, summary: &str, f: &mut Failures, proto: &str) {
    match want {
        Want::Bad => f.check(got == 400, || {
            format!("{proto} {path:?}: want 400, got {summary}")
        }),
        Want::Denied => f.check(got == 400 || got == 401, || {
            format!("{proto} {path:?}: want 400 or 401, got {summary}")
        }),
        Want::Norm(n) => {
            if route_for(n, PATH_ROUTES) == "admin" {
                f.check(got == 401, || {
                    format!("{proto} {path:?} (normal form {n:?}, /admin route): want 401, got {summary}")
                });
            } else {
                f.check(got != 0 && ![400, 401, 403].contains(&got), || {
                    format!("{proto} {path:?} (normal form {n:?}, public): want it forwarded, got {summary}")
                });
            }
        }
    }
}

/// The file server's directory: `admin/secret.txt` holds the secret.
fn write_site(d: &Path) -> PathBuf {
    let site = d.join("site");
    std::fs::create_dir_all(site.join("admin")).unwrap();
    std::fs::create_dir_all(site.join("public")).unwrap();
    std::fs::create_dir_all(site.join("keep")).unwrap();
    std::fs::write(site.join("admin/secret.txt"), SECRET).unwrap();
    std::fs::write(site.join("admin/index.html"), SECRET).unwrap();
    std::fs::write(site.join("index.html"), "PUBLIC-INDEX").unwrap();
    std::fs::write(site.join("public/index.html"), "PUBLIC-PAGE").unwrap();
    site
}

/// Every path spelling, over HTTP/1.1 and HTTP/2, to `http.server` serving a directory with
/// `admin/secret.txt`, behind `/` (public) and `/admin` (`require_verified`). No client
/// certificate: `/admin` is 401. The secret never comes back, and each status is the spec's.
#[test]
fn path_spellings_never_reach_the_protected_files() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let site = write_site(d);
    let log = d.join("files.log");
    let files = Script::start(
        &python,
        d,
        FILE_UPSTREAM,
        &[site.to_str().unwrap(), log.to_str().unwrap()],
    );
    std::fs::write(d.join("c.toml"), path_config(files.port, files.port)).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let mut f = Failures::default();

    // Control: the secret is there, for a verified client.
    let good = ClientId::of(
        &signed_by(&Spec::client("alice"), &pki.intermediate),
        &[&pki.intermediate],
    );
    let (r, _) = one(
        port,
        &pki.root.der,
        &Dial::sni("localhost").with(&good),
        &get("/admin/secret.txt", &["Host: localhost"]),
    );
    assert!(
        r.status == 200 && r.body_text() == SECRET,
        "control: a verified client should get the secret: {}",
        r.summary()
    );

    for (path, want) in PATHS {
        let (r, all) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost"),
            &get(path, &["Host: localhost"]),
        );
        f.check(!all.contains(SECRET), || {
            format!("h1 {path:?}: the secret leaked: {}", r.summary())
        });
        verbose(|| format!("path h1 {path:?} -> {}", r.summary()));
        judge_path(path, *want, r.status, &r.summary(), &mut f, "h1");
    }

    // The same spellings in an absolute-form target.
    for (path, want) in PATHS {
        let target = format!("https://localhost{path}");
        let (r, all) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost"),
            &get(&target, &["Host: localhost"]),
        );
        verbose(|| format!("path h1 {target:?} -> {}", r.summary()));
        f.check(!all.contains(SECRET), || {
            format!("h1 {target:?}: the secret leaked: {}", r.summary())
        });
        judge_path(
            path,
            *want,
            r.status,
            &r.summary(),
            &mut f,
            "h1 absolute-form",
        );
    }
    // Raw bytes that are no valid request target: 400.
    for target in [
        &b"/\xc0\xae\xc0\xae/admin/secret.txt"[..],
        b"/admin\xc0\xafsecret.txt",
        b"/admin/secret.txt\x00",
        b"/admin/\xff",
        b"admin/secret.txt",
        b"*",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (r, all) = one(port, &pki.root.der, &Dial::sni("localhost"), &req);
        let t = String::from_utf8_lossy(target);
        verbose(|| format!("path h1 raw {t:?} -> {}", r.summary()));
        f.check(!all.contains(SECRET), || {
            format!("h1 raw {t:?}: the secret leaked: {}", r.summary())
        });
        f.check(r.status == 400, || {
            format!("h1 raw {t:?}: want 400, got {}", r.summary())
        });
    }

    let reqs: Vec<_> = PATHS
        .iter()
        .map(|(p, _)| (Some("localhost"), h2_get(p, Some("localhost"), &[])))
        .collect();
    let answers = h2_requests(&python, d, port, None, &reqs);
    for ((path, want), a) in PATHS.iter().zip(&answers) {
        f.check(!a.body.contains(SECRET), || {
            format!("h2 {path:?}: the secret leaked: {}", a.summary())
        });
        // A stream reset by the HTTP/2 layer before certgate sees the request is no leak, but
        // the spec asks for 400: report it as such.
        verbose(|| format!("path h2 {path:?} -> {}", a.summary()));
        judge_path(path, *want, a.status, &a.summary(), &mut f, "h2");
    }
    drop(server);
    f.assert_none("path spellings");
}

/// Two upstreams that report what they received and how they read it: `/` → A, `/admin` → B
/// (both public), `/keep` → A with `encoded_slashes = "keep"`. For every spelling certgate
/// forwards, the upstream that answered is the one the route table picks for the path the
/// upstream itself interpreted, and it received exactly the normal form.
#[test]
fn differential_routing_agrees_with_the_upstreams_reading() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let a = Script::start(&python, d, DIFF_UPSTREAM, &["A"]);
    let b = Script::start(&python, d, DIFF_UPSTREAM, &["B"]);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  path = "/"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/admin"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/keep"
  upstream = "http://127.0.0.1:{}"
  encoded_slashes = "keep"
"#,
        a.port, b.port, a.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let routes: &[(&str, &str)] = &[("/", "A"), ("/admin", "B"), ("/keep", "A")];
    let mut f = Failures::default();

    let mut judge = |proto: &str, path: &str, want: Want, status: u16, body: &str, sum: &str| {
        let v: Option<serde_json::Value> = if status == 200 {
            serde_json::from_str(body).ok()
        } else {
            None
        };
        match (want, v) {
            (Want::Bad, None) => f.check(status == 400, || {
                format!("{proto} {path:?}: want 400, got {sum}")
            }),
            (Want::Denied, None) => f.check(status == 400, || {
                format!("{proto} {path:?}: want 400 (no protected route here), got {sum}")
            }),
            (Want::Norm(n), None) => {
                f.0.push(format!(
                    "{proto} {path:?}: want it forwarded as {n:?}, got {sum}"
                ));
            }
            (want, Some(v)) => {
                let name = v["name"].as_str().unwrap_or("?");
                let raw = v["raw"].as_str().unwrap_or("?");
                let interp = v["interp"].as_str().unwrap_or("?");
                let expected = route_for(interp, routes);
                f.check(v["forged"].as_array().is_some_and(Vec::is_empty), || {
                    format!(
                        "{proto} {path:?}: forged identity reached {name}: {}",
                        v["forged"]
                    )
                });
                f.check(name == expected, || {
                    format!(
                        "{proto} {path:?}: answered by {name} but the upstream read {interp:?}, which routes to {expected} (received {raw:?})"
                    )
                });
                match want {
                    Want::Norm(n) => f.check(raw == n, || {
                        format!("{proto} {path:?}: upstream received {raw:?}, want {n:?}")
                    }),
                    _ => f.0.push(format!(
                        "{proto} {path:?}: want 400, but {name} received {raw:?} (read as {interp:?})"
                    )),
                }
            }
        }
    };

    let forged = [
        "Host: localhost",
        "X-Client-Verify: SUCCESS-FORGED",
        "X_Client_Verify: FORGED",
        "Client-Cert: :FORGED:",
    ];
    for (path, want) in PATHS {
        let (r, _) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost"),
            &get(path, &forged),
        );
        verbose(|| format!("diff h1 {path:?} -> {}", r.summary()));
        judge("h1", path, *want, r.status, &r.body_text(), &r.summary());
    }
    let reqs: Vec<_> = PATHS
        .iter()
        .map(|(p, _)| {
            let extra = [
                ("x-client-verify", "SUCCESS-FORGED"),
                ("x_client_verify", "FORGED"),
            ];
            (Some("localhost"), h2_get(p, Some("localhost"), &extra))
        })
        .collect();
    let answers = h2_requests(&python, d, port, None, &reqs);
    for ((path, want), r) in PATHS.iter().zip(&answers) {
        verbose(|| format!("diff h2 {path:?} -> {}", r.summary()));
        judge("h2", path, *want, r.status, &r.body, &r.summary());
    }
    drop(server);
    f.assert_none("differential routing");
}

// ---------------------------------------------------------------------------------------------
// Authority normal form
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 case on a listener: (port, SNI, raw request, status wanted (0: any), text the
/// body must contain).
type H1Case<'a> = (u16, Option<&'static str>, Vec<u8>, u16, &'a str);

/// An HTTP/2 case: (SNI, header fields, status wanted (0: any), text the body must contain).
type H2Case<'a> = (Option<&'a str>, Headers, u16, &'a str);

/// nginx with a `server_name admin.example` server holding the secret and a public default
/// server, behind a `host = "admin.example"` route (`require_verified`) and a catch-all public
/// route; `echo.example` goes to the wsgiref app to see the forwarded `Host`; a second
/// listener has `require_sni = true`. Raw HTTP/1.1 and HTTP/2 with every authority spelling.
#[test]
fn authority_spellings_never_reach_the_protected_virtual_host() {
    let nginx = require_peer!("nginx");
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    for (sub, text) in [("pub", "PUBLIC-SITE"), ("adm", SECRET)] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        std::fs::write(d.join(sub).join("index.html"), text).unwrap();
    }
    let nport = crate::free_port();
    let _nginx = crate::start_nginx(
        &nginx,
        d,
        &format!(
            r#"
  server {{ listen 127.0.0.1:{nport} default_server; server_name _; root {pub_dir}; }}
  server {{ listen 127.0.0.1:{nport}; server_name admin.example; root {adm_dir}; }}
"#,
            pub_dir = d.join("pub").display(),
            adm_dir = d.join("adm").display()
        ),
    );
    let wsgi = Script::start(&python, d, WSGI_UPSTREAM, &[]);
    crate::wait_port("nginx", nport);
    let routes = format!(
        r#"
  [[ingress.route]]
  upstream = "http://127.0.0.1:{nport}"
  [[ingress.route]]
  host = "admin.example"
  upstream = "http://127.0.0.1:{nport}"
  require_verified = true
  forward = ["certgate"]
  [[ingress.route]]
  host = "echo.example"
  upstream = "http://127.0.0.1:{}"
"#,
        wsgi.port
    );
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
{routes}
[[ingress]]
name = "strict"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
require_sni = true
{routes}
"#
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    let (web, strict) = (server.port("web"), server.port("strict"));
    let root = &pki.root.der;
    let mut f = Failures::default();

    let pubs = Some("public.example");
    let adm = Some("admin.example");
    // (listener, sni, raw request, want status (0: any), body must contain)
    let raw = |s: &str| s.as_bytes().to_vec();
    let cases: Vec<H1Case<'_>> = vec![
        (
            web,
            pubs,
            get("/", &["Host: public.example"]),
            200,
            "PUBLIC-SITE",
        ),
        (web, adm, get("/", &["Host: admin.example"]), 401, ""),
        (web, None, get("/", &["Host: admin.example"]), 401, ""),
        (
            web,
            None,
            get("/", &["Host: public.example"]),
            200,
            "PUBLIC-SITE",
        ),
        // SNI and Host differ: 421 on every route.
        (web, pubs, get("/", &["Host: admin.example"]), 421, ""),
        (
            web,
            Some("localhost"),
            get("/", &["Host: admin.example"]),
            421,
            "",
        ),
        (web, adm, get("/", &["Host: public.example"]), 421, ""),
        // Absolute form: its authority replaces Host.
        (
            web,
            pubs,
            get("https://admin.example/", &["Host: public.example"]),
            421,
            "",
        ),
        (
            web,
            None,
            get("https://admin.example/", &["Host: public.example"]),
            401,
            "",
        ),
        (
            web,
            adm,
            get("https://admin.example/", &["Host: public.example"]),
            401,
            "",
        ),
        (
            web,
            None,
            get("https://public.example/", &["Host: admin.example"]),
            200,
            "PUBLIC-SITE",
        ),
        (
            web,
            pubs,
            get("https://public.example:443/", &["Host: admin.example"]),
            200,
            "PUBLIC-SITE",
        ),
        (
            web,
            None,
            get("https://ADMIN.example./", &["Host: public.example"]),
            401,
            "",
        ),
        (
            web,
            None,
            get("https://admin.example:8443/", &["Host: public.example"]),
            401,
            "",
        ),
        (
            web,
            None,
            get("//admin.example/", &["Host: public.example"]),
            0,
            "",
        ),
        (
            web,
            Some("ADMIN.Example"),
            get("/", &["Host: admin.example"]),
            401,
            "",
        ),
        (web, adm, get("/", &["Host: admin.example."]), 401, ""),
        (
            web,
            None,
            get("http://admin.example/", &["Host: public.example"]),
            0,
            "",
        ),
        // Case, trailing dot, ports.
        (web, None, get("/", &["Host: admin.example."]), 401, ""),
        (web, None, get("/", &["Host: ADMIN.Example"]), 401, ""),
        (web, None, get("/", &["Host: admin.example:443"]), 401, ""),
        (web, None, get("/", &["Host: admin.example:8443"]), 401, ""),
        (web, adm, get("/", &["Host: ADMIN.EXAMPLE.:443"]), 401, ""),
        (web, None, get("/", &["Host:   admin.example   "]), 401, ""),
        (web, None, get("/", &["Host: [::1]"]), 200, "PUBLIC-SITE"),
        (web, None, get("/", &["Host: admin.example.."]), 0, ""),
        (web, None, get("/", &["Host: admin.example:"]), 0, ""),
        (web, None, get("/", &["Host: admin.example:abc"]), 0, ""),
        // Userinfo.
        (web, None, get("/", &["Host: user@admin.example"]), 400, ""),
        (
            web,
            None,
            get("/", &["Host: public.example@admin.example"]),
            400,
            "",
        ),
        (
            web,
            None,
            get("https://user@admin.example/", &["Host: admin.example"]),
            400,
            "",
        ),
        (
            web,
            None,
            get(
                "https://public.example@admin.example/",
                &["Host: public.example"],
            ),
            400,
            "",
        ),
        // Two Host fields, none, invalid characters.
        (
            web,
            None,
            get("/", &["Host: public.example", "Host: admin.example"]),
            400,
            "",
        ),
        (
            web,
            pubs,
            get("/", &["Host: public.example", "Host: public.example"]),
            400,
            "",
        ),
        (
            web,
            None,
            get("/", &["Host: public.example, admin.example"]),
            400,
            "",
        ),
        (web, None, get("/", &[]), 400, ""),
        (web, pubs, get("/", &[]), 400, ""),
        (web, None, get("/", &["Host: admin.example/x"]), 400, ""),
        (web, None, get("/", &["Host: admin example"]), 400, ""),
        (web, None, get("/", &["Host: admin.example%2e"]), 400, ""),
        (web, None, get("/", &["Host: admin.exam\"ple"]), 400, ""),
        (web, None, raw("GET / HTTP/1.0\r\n\r\n"), 0, ""),
        (web, adm, raw("GET / HTTP/1.0\r\n\r\n"), 401, ""),
        (
            web,
            None,
            get("ftp://admin.example/", &["Host: public.example"]),
            0,
            "",
        ),
        // require_sni: no SNI is 421 whatever the Host.
        (strict, None, get("/", &["Host: public.example"]), 421, ""),
        (strict, None, get("/", &["Host: admin.example"]), 421, ""),
        (
            strict,
            pubs,
            get("/", &["Host: public.example"]),
            200,
            "PUBLIC-SITE",
        ),
        (
            strict,
            pubs,
            get("https://admin.example/", &["Host: public.example"]),
            421,
            "",
        ),
    ];
    for (port, sni, req, want, needle) in &cases {
        let how = Dial {
            sni: *sni,
            ..Dial::default()
        };
        let (r, all) = one(*port, root, &how, req);
        let label = || {
            format!(
                "h1 {} sni={sni:?} {:?}",
                if *port == web { "web" } else { "strict" },
                String::from_utf8_lossy(req)
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        verbose(|| format!("{} -> {}", label(), r.summary()));
        f.check(!all.contains(SECRET), || {
            format!("{}: the secret leaked: {}", label(), r.summary())
        });
        if *want != 0 {
            f.check(r.status == *want, || {
                format!("{}: want {want}, got {}", label(), r.summary())
            });
        }
        f.check(r.body_text().contains(needle), || {
            format!(
                "{}: want {needle:?} in the body, got {}",
                label(),
                r.summary()
            )
        });
    }

    // One keep-alive connection, several hosts: each request is judged on its own.
    for (sni, seq) in [
        (
            pubs,
            vec![
                ("public.example", 200),
                ("admin.example", 421),
                ("public.example", 200),
                ("ADMIN.EXAMPLE.", 421),
                ("public.example", 200),
            ],
        ),
        (
            None,
            vec![
                ("public.example", 200),
                ("admin.example", 401),
                ("public.example", 200),
            ],
        ),
        (
            adm,
            vec![
                ("admin.example", 401),
                ("public.example", 421),
                ("admin.example", 401),
            ],
        ),
    ] {
        let mut raw = Vec::new();
        for (host, _) in &seq {
            raw.extend(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes());
        }
        let how = Dial {
            sni,
            ..Dial::default()
        };
        let (resps, all) = exchange(web, root, &how, &raw, seq.len());
        let got: Vec<u16> = resps.iter().map(|r| r.status).collect();
        let want: Vec<u16> = seq.iter().map(|(_, s)| *s).collect();
        verbose(|| format!("h1 keep-alive sni={sni:?} {seq:?} -> {got:?}"));
        f.check(!all.contains(SECRET), || {
            format!("h1 keep-alive sni={sni:?} {seq:?}: the secret leaked")
        });
        f.check(got == want, || {
            format!("h1 keep-alive sni={sni:?} hosts {seq:?}: want {want:?}, got {got:?}")
        });
    }
    // HTTP/2 connection reuse (browsers coalesce connections for names the certificate covers):
    // streams for other hosts on a connection made for public.example get 421.
    for (sni, seq) in [
        (
            "public.example",
            vec![
                ("public.example", 200),
                ("admin.example", 421),
                ("public.example", 200),
                ("admin.example.:443", 421),
            ],
        ),
        (
            "admin.example",
            vec![("admin.example", 401), ("public.example", 421)],
        ),
    ] {
        let reqs: Vec<serde_json::Value> = seq
            .iter()
            .map(|(a, _)| {
                let h: Vec<Vec<String>> = h2_get("/", Some(a), &[])
                    .into_iter()
                    .map(|(k, v)| vec![k, v])
                    .collect();
                serde_json::json!({"sni": sni, "headers": h})
            })
            .collect();
        let answers = h2_run(&python, d, web, None, reqs, true);
        let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
        let want: Vec<u16> = seq.iter().map(|(_, s)| *s).collect();
        verbose(|| format!("h2 one connection sni={sni} {seq:?} -> {got:?}"));
        f.check(answers.iter().all(|a| !a.body.contains(SECRET)), || {
            format!("h2 one connection sni={sni}: the secret leaked")
        });
        f.check(got == want, || {
            format!(
                "h2 one connection sni={sni} authorities {seq:?}: want {want:?}, got {:?}",
                answers.iter().map(H2Resp::summary).collect::<Vec<_>>()
            )
        });
    }

    // The forwarded Host is the normal form (wsgiref shows it as HTTP_HOST).
    let host_cases: &[(Option<&'static str>, Vec<u8>, &str)] = &[
        (
            None,
            get("/x", &["Host: ECHO.example.:443"]),
            "echo.example",
        ),
        (
            None,
            get("/x", &["Host: echo.example:8443"]),
            "echo.example:8443",
        ),
        (
            Some("echo.example"),
            get("/x", &["Host: echo.example:443"]),
            "echo.example",
        ),
        (
            None,
            get("https://echo.example/x?q=1", &["Host: other.example"]),
            "echo.example",
        ),
        (
            None,
            get("https://Echo.Example:443/x", &["Host: other.example"]),
            "echo.example",
        ),
        (
            None,
            get("https://echo.example:9000/x", &["Host: other.example"]),
            "echo.example:9000",
        ),
        // `Connection` may not name `Host` away (the upstream client would fill in its own).
        (
            Some("echo.example"),
            get("/x", &["Host: echo.example", "Connection: host"]),
            "echo.example",
        ),
        (
            None,
            get(
                "https://echo.example/x",
                &["Host: echo.example", "Connection: keep-alive, HOST"],
            ),
            "echo.example",
        ),
    ];
    for (sni, req, want) in host_cases {
        let how = Dial {
            sni: *sni,
            ..Dial::default()
        };
        let (r, _) = one(web, root, &how, req);
        let label = String::from_utf8_lossy(req)
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join(" | ");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        f.check(v["HTTP_HOST"] == *want, || {
            format!(
                "forwarded Host for sni={sni:?} {label:?}: want {want:?}, got {}",
                r.summary()
            )
        });
        f.check(v["PATH_INFO"] == "/x", || {
            format!(
                "forwarded path for {label:?}: want \"/x\", got {}",
                r.summary()
            )
        });
    }

    // HTTP/2: `:authority` and `host`.
    let h2_cases: Vec<H2Case<'_>> = vec![
        (
            pubs,
            h2_get("/", Some("public.example"), &[]),
            200,
            "PUBLIC-SITE",
        ),
        (None, h2_get("/", Some("admin.example"), &[]), 401, ""),
        (
            None,
            h2_get("/", Some("admin.example"), &[("host", "public.example")]),
            400,
            "",
        ),
        (
            None,
            h2_get("/", Some("public.example"), &[("host", "admin.example")]),
            400,
            "",
        ),
        (
            pubs,
            h2_get("/", Some("public.example"), &[("host", "admin.example")]),
            400,
            "",
        ),
        (pubs, h2_get("/", Some("admin.example"), &[]), 421, ""),
        (
            pubs,
            h2_get("/", None, &[("host", "admin.example")]),
            421,
            "",
        ),
        (None, h2_get("/", Some("ADMIN.EXAMPLE."), &[]), 401, ""),
        (
            None,
            h2_get("/", None, &[("host", "admin.example")]),
            401,
            "",
        ),
        (None, h2_get("/", Some("admin.example:443"), &[]), 401, ""),
        (None, h2_get("/", Some("user@admin.example"), &[]), 400, ""),
        (
            pubs,
            h2_get("/", Some("public.example"), &[("host", "public.example")]),
            200,
            "PUBLIC-SITE",
        ),
        (
            None,
            h2_get(
                "/",
                None,
                &[("host", "public.example"), ("host", "admin.example")],
            ),
            400,
            "",
        ),
        (
            None,
            h2_get("/", Some("public.example"), &[("host", "PUBLIC.example.")]),
            0,
            "",
        ),
        (
            pubs,
            h2_get("https://admin.example/", Some("public.example"), &[]),
            0,
            "",
        ),
        (
            None,
            h2_get("https://admin.example/", Some("public.example"), &[]),
            0,
            "",
        ),
    ];
    let reqs: Vec<_> = h2_cases
        .iter()
        .map(|(s, h, _, _)| (*s, h.clone()))
        .collect();
    let answers = h2_requests(&python, d, web, None, &reqs);
    for ((sni, h, want, needle), a) in h2_cases.iter().zip(&answers) {
        let label = format!(
            "h2 sni={sni:?} {:?}",
            h.iter()
                .skip(2)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
        );
        verbose(|| format!("{label} -> {}", a.summary()));
        f.check(!a.body.contains(SECRET), || {
            format!("{label}: the secret leaked: {}", a.summary())
        });
        if *want != 0 {
            f.check(a.status == *want, || {
                format!("{label}: want {want}, got {}", a.summary())
            });
        }
        f.check(a.body.contains(needle), || {
            format!("{label}: want {needle:?} in the body, got {}", a.summary())
        });
    }
    drop(server);
    f.assert_none("authority spellings");
}

// ---------------------------------------------------------------------------------------------
// Upgrades, CONNECT, TRACE
// ---------------------------------------------------------------------------------------------

/// One HPACK literal header field without indexing, new name, no Huffman (lengths < 127).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name.as_bytes());
    out.push(u8::try_from(value.len()).unwrap());
    out.extend_from_slice(value.as_bytes());
}

/// The client's side of an h2c upgrade: preface, SETTINGS, and a HEADERS frame on stream 3 for
/// `GET /admin/secret` with forged identity headers.
fn smuggled_h2() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/admin/secret"),
        (":authority", "localhost"),
        ("x-client-verify", "SUCCESS-FORGED"),
        ("x-client-subject", "CN=root-FORGED"),
    ] {
        hpack_literal(&mut block, n, v);
    }
    let len = u32::try_from(block.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], 1, 0x5, 0, 0, 0, 3]);
    out.extend_from_slice(&block);
    out
}

/// h2c to hypercorn (which would switch), unknown and disallowed upgrades, a 101 to a request
/// that asked for none, and CONNECT and TRACE.
#[test]
fn upgrade_smuggling_is_refused() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    std::fs::write(d.join("app.py"), HYPERCORN_APP).unwrap();
    let hlog = d.join("hyper.log");
    std::fs::write(&hlog, "").unwrap();
    let hport = crate::free_port();
    let hyper = crate::Peer(
        Command::new(&python)
            .current_dir(d)
            .env("HYPER_LOG", &hlog)
            .args([
                "-m",
                "hypercorn",
                "--bind",
                &format!("127.0.0.1:{hport}"),
                "app:app",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let honest = Script::start(&python, d, UPGRADE_UPSTREAM, &["honest"]);
    let always = Script::start(&python, d, UPGRADE_UPSTREAM, &["always"]);
    let liar = Script::start(&python, d, UPGRADE_UPSTREAM, &["h2c"]);
    crate::wait_port("hypercorn", hport);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "http://127.0.0.1:{hport}"
  [[ingress.route]]
  path = "/admin"
  upstream = "http://127.0.0.1:{hport}"
  require_verified = true
  [[ingress.route]]
  path = "/ws"
  upstream = "http://127.0.0.1:{}"
  upgrades = ["websocket", "echo"]
  [[ingress.route]]
  path = "/plain"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/evil"
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/liar"
  upstream = "http://127.0.0.1:{}"
"#,
        honest.port, honest.port, always.port, liar.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let root = &pki.root.der;
    let how = Dial::sni("localhost");
    let mut f = Failures::default();

    // h2c to hypercorn: the upgrade headers are removed, the answer is plain HTTP/1.1.
    let h2c = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {extra}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        .into_bytes()
    };
    for (label, upgrade, pipelined) in [
        ("h2c, then HTTP/2 after a 101", "h2c", false),
        ("h2c with HTTP/2 right behind it", "h2c", true),
        ("H2C in upper case", "H2C", false),
        ("h2c listed with an unknown protocol", "foo, h2c", false),
    ] {
        let mut tls = match dial(port, root, &how) {
            Ok(t) => t,
            Err(e) => {
                f.0.push(format!("{label}: connect failed: {e}"));
                continue;
            }
        };
        let mut req = h2c("/", upgrade);
        if pipelined {
            req.extend(smuggled_h2());
        }
        tls.write_all(&req).unwrap();
        let mut r = Reader::new(&mut tls);
        let resp = r.response();
        let upgraded = resp.as_ref().is_some_and(|r| r.status == 101);
        if upgraded && !pipelined {
            let _ = r.s.write_all(&smuggled_h2());
            std::thread::sleep(Duration::from_millis(500));
            r.s.sock
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while r.fill() {}
        }
        let summary = resp
            .as_ref()
            .map_or("no response".to_owned(), Resp::summary);
        verbose(|| format!("upgrade {label} -> {summary}"));
        f.check(
            resp.as_ref()
                .is_some_and(|r| r.status == 200 && r.body_text() == "HYPERCORN-OK /"),
            || format!("{label}: want hypercorn's plain 200 for /, got {summary}"),
        );
        f.check(!upgraded, || {
            format!("{label}: certgate relayed 101: {summary}")
        });
    }
    // What hypercorn saw: no /admin request, no HTTP/2, no upgrade headers, nothing forged.
    std::thread::sleep(Duration::from_millis(200));
    let seen = std::fs::read_to_string(&hlog).unwrap();
    for line in seen.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = v["path"].as_str().unwrap_or("");
        f.check(!path.starts_with("/admin"), || {
            format!("hypercorn served a smuggled request: {line}")
        });
        f.check(v["version"] == "1.1", || {
            format!(
                "hypercorn spoke HTTP/{} with the client: {line}",
                v["version"]
            )
        });
        for h in v["headers"].as_array().unwrap() {
            let (n, val) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
            f.check(!val.contains("FORGED"), || {
                format!("hypercorn received forged {n}: {val}")
            });
            f.check(
                n != "http2-settings"
                    && !(n == "upgrade" && val.to_ascii_lowercase().contains("h2c")),
                || format!("hypercorn received {n}: {val}"),
            );
        }
    }
    f.check(!seen.is_empty(), || {
        "hypercorn saw no request at all".to_owned()
    });

    // `websocket, h2c`: websocket may be relayed, h2c and HTTP2-Settings never.
    for (path, label) in [("/", "hypercorn"), ("/ws", "upgrade upstream")] {
        let (r, _) = one(port, root, &how, &h2c(path, "websocket, h2c"));
        let what = format!("`Upgrade: websocket, h2c` to the {label}");
        let seen = |name: &str| {
            r.head
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_owned())
        };
        f.check(
            r.status != 0 && seen("upgrade").is_none_or(|u| !u.contains("h2c")),
            || format!("{what}: got {}", r.summary()),
        );
        f.check(
            seen("x-seen-upgrade").is_none_or(|u| !u.contains("h2c")),
            || format!("{what}: the upstream received h2c: {}", r.head),
        );
        f.check(seen("x-seen-settings").is_none_or(|s| s == "no"), || {
            format!("{what}: the upstream received HTTP2-Settings: {}", r.head)
        });
    }

    // Upgrades the route does not allow are removed; a 101 nobody asked for is a 502.
    let upgrade = |path: &str, proto: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes()
    };
    // (label, request, want status, body must contain, body must not contain)
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("allowed echo upgrade", upgrade("/ws", "echo"), 101, "", ""),
        ("allowed websocket upgrade", upgrade("/ws", "websocket"), 101, "", ""),
        ("default websocket upgrade", upgrade("/plain", "websocket"), 101, "", ""),
        ("websocket in mixed case", upgrade("/plain", "WebSocket"), 101, "", ""),
        ("upstream 101 h2c to a websocket request", upgrade("/liar", "websocket"), 502, "", ""),
        (
            "HTTP/1.0 upgrade is not relayed",
            b"GET /ws HTTP/1.0\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".to_vec(),
            200,
            "NO-UPGRADE",
            "upgrade:",
        ),
        ("unknown upgrade foo removed", upgrade("/ws", "foo"), 200, "NO-UPGRADE", "upgrade:"),
        ("h2c removed on an upgrade route", h2c("/ws", "h2c"), 200, "NO-UPGRADE", "http2-settings"),
        ("echo not allowed by default", upgrade("/plain", "echo"), 200, "NO-UPGRADE", "upgrade:"),
        ("upstream 101 to no upgrade", get("/evil", &["Host: localhost"]), 502, "", ""),
        ("upstream 101 to a removed foo", upgrade("/evil", "foo"), 502, "", ""),
        ("upstream 101 to a removed h2c", h2c("/evil", "h2c"), 502, "", ""),
        (
            "CONNECT to the upstream",
            format!("CONNECT 127.0.0.1:{hport} HTTP/1.1\r\nHost: 127.0.0.1:{hport}\r\n\r\n").into_bytes(),
            405,
            "",
            "",
        ),
        (
            "CONNECT admin.example:443",
            b"CONNECT admin.example:443 HTTP/1.1\r\nHost: admin.example:443\r\n\r\n".to_vec(),
            405,
            "",
            "",
        ),
        (
            "TRACE /",
            b"TRACE / HTTP/1.1\r\nHost: localhost\r\nX-Client-Verify: SUCCESS-FORGED\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
            "FORGED",
        ),
        (
            "TRACE /admin",
            b"TRACE /admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
            "",
        ),
        // Upstreams that upper-case the method would read these as TRACE and CONNECT.
        (
            "trace / (lower case)",
            b"trace / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
            "",
        ),
        (
            "connect (lower case)",
            b"connect / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
            "",
        ),
        (
            "TRACK /",
            b"TRACK / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
            "",
        ),
    ];
    for (label, req, want, needle, never) in &cases {
        let (r, all) = one(port, root, &how, req);
        verbose(|| format!("upgrade {label} -> {}", r.summary()));
        f.check(r.status == *want, || {
            format!("{label}: want {want}, got {}", r.summary())
        });
        f.check(r.body_text().contains(needle), || {
            format!("{label}: want {needle:?} in the body, got {}", r.summary())
        });
        if !never.is_empty() {
            f.check(
                !all.to_ascii_lowercase()
                    .contains(&never.to_ascii_lowercase()),
                || format!("{label}: {never:?} reached the upstream: {}", r.summary()),
            );
        }
    }

    // CONNECT over HTTP/2 is 405 as well.
    let answers = h2_requests(
        &python,
        d,
        port,
        None,
        &[(
            Some("localhost"),
            vec![
                (":method".to_owned(), "CONNECT".to_owned()),
                (":authority".to_owned(), format!("127.0.0.1:{hport}")),
            ],
        )],
    );
    f.check(answers[0].status == 405, || {
        format!("h2 CONNECT: want 405, got {}", answers[0].summary())
    });
    drop(server);
    drop(hyper);
    f.assert_none("upgrade smuggling");
}

// ---------------------------------------------------------------------------------------------
// Header names with `_` and other characters
// ---------------------------------------------------------------------------------------------

/// Forged identity headers spelled with `_`, `.` and mixed separators: a CGI/WSGI app reads each
/// as the header certgate sets.
const UNDERSCORED: &[&str] = &[
    "X_Client_Verify: SUCCESS-FORGED",
    "X_CLIENT_SUBJECT: CN=admin-FORGED",
    "x_client_cert_sha256: FORGED",
    "X-Client_Verify: FORGED-mixed",
    "X_Client-SPIFFE-ID: spiffe://evil/FORGED",
    "Client_Cert: :FORGED:",
    "Client_Cert_Chain: :FORGED:",
    "X_Forwarded_Client_Cert: Hash=FORGED",
    "X_SSL_Client_S_DN: CN=FORGED",
    "X_SSL_CLIENT_VERIFY: FORGED",
    "x_ssl_client_escaped_cert: FORGED",
    "X_Forwarded_Tls_Client_Cert: FORGED",
    "X_Amzn_Mtls_Clientcert_Leaf: FORGED",
    "Cf_Client_Cert_Der_Base64: FORGED",
    "X.Client.Subject: FORGED-dots",
    "X.Client_Verify: FORGED-dot-underscore",
    "X~Client~Verify: FORGED-tilde",
    // Names of the identity families that certgate itself never writes, spelled normally:
    // apps behind other proxies read them.
    "X-Client-Cert: FORGED-family",
    "X-Client-Cert-Pem: FORGED-family",
    "X-Client-DN: CN=FORGED-family",
    "X-SSL-Client-CN: FORGED-family",
    "X-SSL-Client-Subject: CN=FORGED-family",
    "X-SSL-Client: FORGED-family",
    "X-SSL-Cert: FORGED-family",
    "Ssl-Client-Verify: SUCCESS-FORGED-family",
    "Client-Certificate: FORGED-family",
    "X-Forwarded-Tls-Client-Cert-Chain: FORGED-family",
    "X-Forwarded-Client-Cert-Foo: FORGED-family",
    "X-ARR-ClientCert: FORGED-family",
    "Cf-Client-Cert: FORGED-family",
];

/// Header names in the variables a WSGI app would read as identity.
fn identity_env(k: &str) -> bool {
    [
        "HTTP_X_CLIENT",
        "HTTP_CLIENT_CERT",
        "HTTP_X_SSL_CLIENT",
        "HTTP_X_FORWARDED_CLIENT_CERT",
        "HTTP_X_FORWARDED_TLS_CLIENT",
        "HTTP_X_AMZN_MTLS",
        "HTTP_CF_CLIENT_CERT",
        "HTTP_X.CLIENT",
        "HTTP_X~CLIENT",
        "HTTP_X_SSL_CERT",
        "HTTP_SSL_CLIENT",
        "HTTP_X_ARR_CLIENTCERT",
    ]
    .iter()
    .any(|p| k.starts_with(p))
}

/// Forged identities spelled with `_` (and other separators) against the wsgiref app, one
/// listener per `underscores` mode: `drop` (default) and `allow` pass the request without any
/// forged value; `reject` answers 400. Over HTTP/1.1 and HTTP/2.
#[test]
fn underscore_header_spellings_never_pose_as_identity() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let wsgi = Script::start(&python, d, WSGI_UPSTREAM, &[]);
    let mut config = CONFIG_HEAD.to_owned();
    for (name, mode) in [
        ("drop", None),
        ("allow", Some("allow")),
        ("reject", Some("reject")),
    ] {
        config.push_str(&format!(
            r#"
[[ingress]]
name = "{name}"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate", "nginx", "xfcc", "rfc9440"]
{}
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
            mode.map(|m| format!("underscores = \"{m}\""))
                .unwrap_or_default(),
            wsgi.port
        ));
    }
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 3);
    let root = &pki.root.der;
    let how = Dial::sni("localhost");
    let mut f = Failures::default();

    let check_env =
        |f: &mut Failures, label: &str, mode: &str, status: u16, body: &str, sum: &str| {
            if mode == "reject" {
                f.check(status == 400, || format!("{label}: want 400, got {sum}"));
                f.check(!body.contains("FORGED"), || {
                    format!("{label}: forged value came back: {sum}")
                });
                return;
            }
            let v: serde_json::Value = match serde_json::from_str(body) {
                Ok(v) if status == 200 => v,
                _ => {
                    f.0.push(format!("{label}: want 200 from the app, got {sum}"));
                    return;
                }
            };
            for (k, val) in v.as_object().unwrap() {
                let val = val.as_str().unwrap_or("");
                f.check(!val.contains("FORGED"), || {
                    format!("{label}: the app read {k} = {val:?}")
                });
                if identity_env(k) {
                    f.check(
                        ["HTTP_X_CLIENT_VERIFY", "HTTP_X_SSL_CLIENT_VERIFY"].contains(&k.as_str())
                            && val == "NONE",
                        || format!("{label}: unexpected identity variable {k} = {val:?}"),
                    );
                }
            }
            f.check(v["HTTP_X_CLIENT_VERIFY"] == "NONE", || {
                format!("{label}: want HTTP_X_CLIENT_VERIFY = NONE (set by certgate), got {sum}")
            });
            // A harmless underscored header: dropped by default, passed with `allow`.
            let benign = v.get("HTTP_X_APP_TOKEN").and_then(|t| t.as_str());
            if mode == "allow" {
                f.check(benign == Some("benign"), || {
                    format!("{label}: `allow` should pass X_App_Token, got {benign:?}")
                });
            } else {
                f.check(benign.is_none(), || {
                    format!("{label}: `drop` should remove X_App_Token, got {benign:?}")
                });
            }
        };

    for mode in ["drop", "allow", "reject"] {
        let port = server.port(mode);
        // Each spelling alone (with a benign underscored header), then all at once.
        let mut sets: Vec<Vec<&str>> = UNDERSCORED.iter().map(|h| vec![*h]).collect();
        sets.push(UNDERSCORED.to_vec());
        // Hop-by-hop naming (HTTP/1.1 only; HTTP/2 forbids `connection`): must not remove what
        // certgate sets (X-Client-Verify stays NONE).
        let hop = vec!["Connection: X-Client-Verify, X-SSL-Client-Verify, X_Client_Verify"];
        for set in sets.iter().chain([&hop]) {
            let mut headers = vec!["Host: localhost", "X_App_Token: benign"];
            headers.extend(set.iter().copied());
            let (r, _) = one(port, root, &how, &get("/", &headers));
            let label = format!(
                "h1 {mode} {:?}",
                if set.len() == 1 { set[0] } else { "all" }
            );
            check_env(&mut f, &label, mode, r.status, &r.body_text(), &r.summary());
        }
        // The same over HTTP/2 (names lower-cased, as HTTP/2 requires).
        let reqs: Vec<_> = sets
            .iter()
            .map(|set| {
                let mut extra: Vec<(String, String)> =
                    vec![("x_app_token".into(), "benign".into())];
                for h in set {
                    let (n, v) = h.split_once(':').unwrap();
                    extra.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                let mut hs = h2_get("/", Some("localhost"), &[]);
                hs.extend(extra);
                (Some("localhost"), hs)
            })
            .collect();
        let answers = h2_requests(&python, d, port, None, &reqs);
        for (set, a) in sets.iter().zip(&answers) {
            let label = format!(
                "h2 {mode} {:?}",
                if set.len() == 1 { set[0] } else { "all" }
            );
            check_env(&mut f, &label, mode, a.status, &a.body, &a.summary());
        }
    }

    // `X_Forwarded_*` read as the `X-Forwarded-*` certgate replaces: removed in both modes (with
    // `allow` too, or a WSGI app would read `HTTP_X_FORWARDED_FOR = "6.6.6.6,127.0.0.1"` and
    // take the client's value first).
    for mode in ["drop", "allow"] {
        let (r, _) = one(
            server.port(mode),
            root,
            &how,
            &get(
                "/",
                &[
                    "Host: localhost",
                    "X_Forwarded_For: 6.6.6.6",
                    "X_Forwarded_Host: admin.example",
                    "X_Forwarded_Proto: http",
                    "X.Forwarded.For: 7.7.7.7",
                ],
            ),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        f.check(
            v["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
                && v["HTTP_X_FORWARDED_HOST"] == "localhost"
                && v["HTTP_X_FORWARDED_PROTO"] == "https"
                && !r.body_text().contains("7.7.7.7"),
            || format!("{mode} X_Forwarded_*: the app read {}", r.summary()),
        );
    }

    // `reject` answers 400 to a harmless underscored name too; without one, 200.
    let port = server.port("reject");
    let (r, _) = one(
        port,
        root,
        &how,
        &get("/", &["Host: localhost", "X_App_Token: benign"]),
    );
    f.check(r.status == 400, || {
        format!("reject X_App_Token: want 400, got {}", r.summary())
    });
    let (r, _) = one(
        port,
        root,
        &how,
        &get("/", &["Host: localhost", "X-App-Token: fine"]),
    );
    f.check(r.status == 200, || {
        format!("reject X-App-Token: want 200, got {}", r.summary())
    });
    drop(server);
    f.assert_none("underscore headers");
}

// ---------------------------------------------------------------------------------------------
// Identity rules against look-alike certificates
// ---------------------------------------------------------------------------------------------

/// A client leaf named like the real alice: CN, DNS, SPIFFE URI, email and IP SANs.
fn alice_spec() -> Spec {
    let mut s = Spec::client("alice");
    s.sans = vec![
        SanType::URI("spiffe://test.example/alice".try_into().unwrap()),
        SanType::DnsName("alice.test.example".try_into().unwrap()),
        SanType::Rfc822Name("alice@test.example".try_into().unwrap()),
        SanType::IpAddress(std::net::IpAddr::from([10, 1, 2, 3])),
    ];
    s
}

/// `allow` rules on names match verified chains only; pins match any certificate; a rule with
/// `verified = false` matches unverified names (and `certgate check` warns about it). The key
/// case: a look-alike CA named exactly like the real one issuing `CN=alice` with the same SANs.
#[test]
fn allow_rules_match_verified_identities_only() {
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let real = signed_by(&alice_spec(), &pki.intermediate);
    // A look-alike PKI: root and intermediate with the real ones' names.
    let fake = TestPki::new();
    let fake_alice = signed_by(&alice_spec(), &fake.intermediate);
    // A self-signed CA named like the real intermediate, and alice from it.
    let lone_ca = self_signed(&Spec::ca("certgate test intermediate", Some(0)));
    let lone_alice = signed_by(&alice_spec(), &lone_ca);
    // A self-signed alice, and a pinned self-signed certificate.
    let self_alice = self_signed(&alice_spec());
    let mut expired = alice_spec();
    expired.not_before = time::Duration::days(-20);
    expired.not_after = time::Duration::days(-1);
    let expired_alice = signed_by(&expired, &pki.intermediate);
    let pinned = self_signed(&Spec::client("pinned"));
    let pin_cert = certgate_pki::CertHash::of(&pinned.der).to_hex();
    let pin_spki = certgate_pki::Identity::from_der(&pinned.der)
        .unwrap()
        .spki_sha256;
    let issuer = "CN=certgate test intermediate";
    let routes: &[(&str, String)] = &[
        ("/cn", format!(r#"{{ cn = "alice", issuer = "{issuer}" }}"#)),
        ("/cn-only", r#"{ cn = "alice" }"#.to_owned()),
        ("/issuer", format!(r#"{{ issuer = "{issuer}" }}"#)),
        (
            "/spiffe",
            r#"{ spiffe = "spiffe://test.example/alice" }"#.to_owned(),
        ),
        ("/uri", r#"{ uri = "spiffe://test.example/*" }"#.to_owned()),
        ("/dns", r#"{ dns = "alice.test.example" }"#.to_owned()),
        ("/email", r#"{ email = "alice@test.example" }"#.to_owned()),
        ("/ip", r#"{ ip = "10.1.2.3" }"#.to_owned()),
        ("/pin", format!(r#"{{ cert_sha256 = "{pin_cert}" }}"#)),
        ("/spki", format!(r#"{{ spki_sha256 = "{pin_spki}" }}"#)),
        (
            "/unverified",
            r#"{ cn = "alice", verified = false }"#.to_owned(),
        ),
    ];
    let mut config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
"#
    );
    for (path, rule) in routes {
        config.push_str(&format!(
            "  [[ingress.route]]\n  path = \"{path}\"\n  upstream = \"echo\"\n  allow = [{rule}]\n"
        ));
    }
    std::fs::write(d.join("c.toml"), &config).unwrap();
    let mut f = Failures::default();

    // `certgate check` warns about `verified = false`.
    let out = crate::certgate(d, &["check", "--config", "c.toml"]);
    let text = crate::text(&out);
    f.check(out.status.success(), || {
        format!("certgate check failed: {text}")
    });
    f.check(
        text.lines()
            .any(|l| l.contains("verified = false") && l.contains("allow[0]")),
        || format!("certgate check printed no warning naming `verified = false`:\n{text}"),
    );

    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let real_id = ClientId::of(&real, &[&pki.intermediate]);
    let clients: Vec<(&str, Option<ClientId>)> = vec![
        ("real alice", Some(real_id.clone())),
        // The trust has no `intermediates`: a leaf sent alone does not verify.
        (
            "real alice leaf only (unverifiable)",
            Some(ClientId::of(&real, &[])),
        ),
        (
            "look-alike CA alice (+ its intermediate)",
            Some(ClientId::of(&fake_alice, &[&fake.intermediate])),
        ),
        (
            "look-alike CA alice (+ its chain)",
            Some(ClientId::of(&fake_alice, &[&fake.intermediate, &fake.root])),
        ),
        (
            "look-alike CA alice (leaf only)",
            Some(ClientId::of(&fake_alice, &[])),
        ),
        (
            "alice from a self-signed CA named like the intermediate",
            Some(ClientId::of(&lone_alice, &[&lone_ca])),
        ),
        ("self-signed alice", Some(ClientId::of(&self_alice, &[]))),
        (
            "look-alike CA alice with the real intermediate",
            Some(ClientId::of(&fake_alice, &[&pki.intermediate])),
        ),
        (
            "expired real-CA alice",
            Some(ClientId::of(&expired_alice, &[&pki.intermediate])),
        ),
        ("pinned self-signed", Some(ClientId::of(&pinned, &[]))),
        ("no certificate", None),
    ];
    for (who, id) in &clients {
        for (path, _) in routes {
            let want = match (*who, *path) {
                ("no certificate", _) => 401,
                ("pinned self-signed", "/pin" | "/spki") => 200,
                ("pinned self-signed", _) => 403,
                (_, "/unverified") => 200,
                ("real alice", "/pin" | "/spki") => 403,
                ("real alice", _) => 200,
                _ => 403,
            };
            let how = Dial {
                sni: Some("localhost"),
                client: id.clone(),
                timeout_ms: 0,
            };
            let (r, _) = one(port, &pki.root.der, &how, &get(path, &["Host: localhost"]));
            f.check(r.status == want, || {
                format!("{who} on {path}: want {want}, got {}", r.summary())
            });
        }
    }
    // The real one is forwarded as verified.
    let (r, _) = one(
        port,
        &pki.root.der,
        &Dial::sni("localhost").with(&real_id),
        &get("/cn", &["Host: localhost"]),
    );
    f.check(r.body_text().contains("SUCCESS"), || {
        format!(
            "real alice on /cn: want X-Client-Verify SUCCESS, got {}",
            r.summary()
        )
    });
    drop(server);
    f.assert_none("allow rules");
}

/// Formats with no verification field (RFC 9440, XFCC, Traefik) carry only verified
/// certificates: an app reading `Client-Cert` cannot tell a look-alike CA's `CN=alice` from the
/// real one. `forward_unverified = true` opts in (and `certgate check` says what it means).
#[test]
fn unverified_certificates_reach_the_app_only_with_a_verdict() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let wsgi = Script::start(&python, d, WSGI_UPSTREAM, &[]);
    let real = signed_by(&alice_spec(), &pki.intermediate);
    let fake = TestPki::new();
    let fake_alice = signed_by(&alice_spec(), &fake.intermediate);
    let self_alice = self_signed(&alice_spec());
    let mut config = CONFIG_HEAD.to_owned();
    for (name, opt_in) in [("strict", false), ("opt-in", true)] {
        config.push_str(&format!(
            r#"
[[ingress]]
name = "{name}"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["rfc9440", "xfcc", "traefik", "certgate"]
forward_unverified = {opt_in}
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
            wsgi.port
        ));
    }
    std::fs::write(d.join("c.toml"), &config).unwrap();
    let mut f = Failures::default();
    let out = crate::certgate(d, &["check", "--config", "c.toml"]);
    let text = crate::text(&out);
    f.check(
        out.status.success() && text.contains("ingress.opt-in.forward_unverified"),
        || format!("certgate check should note `forward_unverified`:\n{text}"),
    );
    let server = Serve::start(d, "c.toml", 2);
    let clients = [
        (
            "real alice",
            ClientId::of(&real, &[&pki.intermediate]),
            true,
        ),
        (
            "look-alike CA alice",
            ClientId::of(&fake_alice, &[&fake.intermediate]),
            false,
        ),
        ("self-signed alice", ClientId::of(&self_alice, &[]), false),
    ];
    const CERT_FIELDS: [&str; 3] = [
        "HTTP_CLIENT_CERT",
        "HTTP_X_FORWARDED_CLIENT_CERT",
        "HTTP_X_FORWARDED_TLS_CLIENT_CERT",
    ];
    for listener in ["strict", "opt-in"] {
        for (who, id, verified) in &clients {
            let how = Dial::sni("localhost").with(id);
            let (r, _) = one(
                server.port(listener),
                &pki.root.der,
                &how,
                &get("/", &["Host: localhost"]),
            );
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let want_cert = *verified || listener == "opt-in";
            for field in CERT_FIELDS {
                f.check(v.get(field).is_some() == want_cert, || {
                    format!(
                        "{listener}, {who}: {field} {} (want {})",
                        if v.get(field).is_some() {
                            "present"
                        } else {
                            "absent"
                        },
                        if want_cert { "present" } else { "absent" }
                    )
                });
            }
            // The format that states a verdict always tells the truth.
            let verdict = v["HTTP_X_CLIENT_VERIFY"].as_str().unwrap_or("");
            f.check(
                if *verified {
                    verdict == "SUCCESS"
                } else {
                    verdict.starts_with("FAILED:")
                },
                || {
                    format!(
                        "{listener}, {who}: X-Client-Verify {verdict:?}; {}",
                        r.summary()
                    )
                },
            );
        }
    }
    drop(server);
    f.assert_none("unverified certificates in verdict-less formats");
}

/// Headers meant for proxies never reach the app, on any route: `Proxy` (httpoxy) and
/// `Proxy-*`, and a custom `forwarded_cert` header on routes that do not read it, in its `_`
/// spelling too. A verified certificate whose names hold list and field separators reaches the
/// app as exactly its names (Traefik info, the `certgate` SAN lists, no bogus SPIFFE ID).
#[test]
fn headers_meant_for_proxies_and_separators_in_names_never_mislead_the_app() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let wsgi = Script::start(&python, d, WSGI_UPSTREAM, &[]);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
underscores = "allow"
forward = ["certgate", "traefik"]
  [[ingress.route]]
  upstream = "http://127.0.0.1:{port}"
  [[ingress.route]]
  path = "/waf"
  upstream = "http://127.0.0.1:{port}"
  forwarded_cert = {{ format = "base64-der", header = "X-Proxy-Cert", trusted_proxies = ["10.9.9.9"] }}
"#,
        port = wsgi.port
    );
    std::fs::write(d.join("c.toml"), &config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let mut f = Failures::default();
    for path in ["/", "/waf"] {
        let (r, _) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost"),
            &get(
                path,
                &[
                    "Host: localhost",
                    "Proxy: http://evil.example:3128",
                    "Proxy-Foo: FORGED",
                    "X-Proxy-Cert: FORGED",
                    "X_Proxy_Cert: FORGED",
                ],
            ),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        for k in ["HTTP_PROXY", "HTTP_PROXY_FOO", "HTTP_X_PROXY_CERT"] {
            f.check(r.status == 200 && v.get(k).is_none(), || {
                format!("{path}: the app read {k}: {}", r.summary())
            });
        }
    }
    // bob's certificate, issued by the trusted intermediate, with names that hold separators.
    let mut spec = Spec::client("bob\";SAN=\"spiffe://test.example/admin/alice");
    spec.sans = vec![SanType::URI(
        "spiffe://test.example/u/bob,spiffe://test.example/admin/alice"
            .try_into()
            .unwrap(),
    )];
    let bob = signed_by(&spec, &pki.intermediate);
    let how = Dial::sni("localhost").with(&ClientId::of(&bob, &[&pki.intermediate]));
    let (r, _) = one(port, &pki.root.der, &how, &get("/", &["Host: localhost"]));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    f.check(v["HTTP_X_CLIENT_VERIFY"] == "SUCCESS", || {
        format!("bob should verify: {}", r.summary())
    });
    f.check(v.get("HTTP_X_CLIENT_SPIFFE_ID").is_none(), || {
        format!("a URI with `,` is no SPIFFE ID: {}", r.summary())
    });
    let uris = v["HTTP_X_CLIENT_SAN_URI"].as_str().unwrap_or("");
    f.check(uris.split(',').count() == 1, || {
        format!("one URI SAN became {uris:?}")
    });
    let info = v["HTTP_X_FORWARDED_TLS_CLIENT_CERT_INFO"]
        .as_str()
        .unwrap_or("");
    let info = percent_encoding::percent_decode_str(&info.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    f.check(
        !info.is_empty() && !info.contains("\"spiffe://test.example/admin"),
        || format!("Traefik info gained a field: {info}"),
    );
    drop(server);
    f.assert_none("headers for proxies and separators in names");
}

// ---------------------------------------------------------------------------------------------
// Request smuggling
// ---------------------------------------------------------------------------------------------

/// Framing attacks: each case sends one request whose framing is ambiguous or invalid with a
/// second request (`/cN/smuggled`, public) hidden behind it. The counting upstream must never
/// see the hidden one as a request of its own; where the RFC requires 400, the first request
/// is not forwarded either.
#[test]
fn request_smuggling_is_not_possible() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let log = d.join("count.log");
    std::fs::write(&log, "").unwrap();
    let up = Script::start(&python, d, COUNTING_UPSTREAM, &[log.to_str().unwrap()]);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/admin"
  upstream = "http://127.0.0.1:{}"
  require_verified = true
"#,
        up.port, up.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let root = pki.root.der.clone();

    let hidden = |c: &str| format!("GET /{c}/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let post = |c: &str, headers: &str, body: &str| {
        format!("POST /{c}/first HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}").into_bytes()
    };
    // (case id, what, bytes, status wanted for the first response (0: any), first may be forwarded)
    let mut cases: Vec<(String, &str, Vec<u8>, u16, bool)> = Vec::new();
    let mut add = |what: &'static str, make: &dyn Fn(&str) -> Vec<u8>, want: u16, fwd: bool| {
        let c = format!("c{}", cases.len());
        cases.push((c.clone(), what, make(&c), want, fwd));
    };
    add(
        "CL + TE (body per CL hides a request after the chunked end)",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    body.len()
                ),
                &body,
            )
        },
        0,
        true,
    );
    add(
        "TE + CL (header order swapped, CL shorter than the body)",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                &body,
            )
        },
        0,
        true,
    );
    add(
        "Transfer-Encoding: chunked, identity",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(c, "Transfer-Encoding: chunked, identity\r\n", &body)
        },
        400,
        false,
    );
    add(
        "Transfer-Encoding: xchunked",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                &format!(
                    "Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                &body,
            )
        },
        0,
        false,
    );
    add(
        "Transfer-Encoding: identity then chunked in two fields",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                &format!(
                    "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                &body,
            )
        },
        0,
        true,
    );
    add(
        "Transfer-Encoding with a space before the colon",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                &format!(
                    "Transfer-Encoding : chunked\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                &body,
            )
        },
        400,
        false,
    );
    add(
        "Transfer-Encoding folded onto the previous line",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                &format!(
                    "X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                &body,
            )
        },
        400,
        false,
    );
    add(
        "two different Content-Length fields",
        &|c| {
            let body = hidden(c);
            post(
                c,
                &format!("Content-Length: 0\r\nContent-Length: {}\r\n", body.len()),
                &body,
            )
        },
        400,
        false,
    );
    add(
        "Content-Length: 0, N",
        &|c| {
            let body = hidden(c);
            post(c, &format!("Content-Length: 0, {}\r\n", body.len()), &body)
        },
        400,
        false,
    );
    add(
        "Content-Length: +N",
        &|c| {
            let body = hidden(c);
            post(c, &format!("Content-Length: +{}\r\n", body.len()), &body)
        },
        400,
        false,
    );
    for (what, size) in [
        ("chunk size overflowing 64 bits", "1ffffffffffffffff"),
        ("negative chunk size", "-1"),
        ("chunk size with 0x", "0x5"),
        ("chunk size not hex", "g"),
    ] {
        let size = size.to_owned();
        add(
            what,
            &move |c| {
                let body = format!("{size}\r\nhello\r\n0\r\n\r\n{}", hidden(c));
                post(c, "Transfer-Encoding: chunked\r\n", &body)
            },
            // The client's body is at fault: 400, not the upstream's 502.
            400,
            true,
        );
    }
    add(
        "chunk longer than its size",
        &|c| {
            let body = format!("3\r\nhello\r\n0\r\n\r\n{}", hidden(c));
            post(c, "Transfer-Encoding: chunked\r\n", &body)
        },
        400,
        true,
    );
    add(
        "Transfer-Encoding: chunked twice",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            post(
                c,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &body,
            )
        },
        0,
        true,
    );
    add(
        "HTTP/1.0 with Transfer-Encoding and Content-Length",
        &|c| {
            let body = format!("0\r\n\r\n{}", hidden(c));
            format!(
                "POST /{c}/first HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
        0,
        true,
    );
    add(
        "Content-Length: -1",
        &|c| post(c, "Content-Length: -1\r\n", &hidden(c)),
        400,
        false,
    );
    add(
        "Content-Length in hex",
        &|c| post(c, "Content-Length: 0x10\r\n", &hidden(c)),
        400,
        false,
    );
    add(
        "GET with a Content-Length body holding a request",
        &|c| {
            let body = hidden(c);
            format!(
                "GET /{c}/first HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
        0,
        true,
    );
    add(
        "forged identity in chunked trailers",
        &|c| {
            post(
                c,
                "Transfer-Encoding: chunked\r\nTrailer: X-Client-Verify, Client-Cert\r\n",
                "5\r\nhello\r\n0\r\nX-Client-Verify: SUCCESS-FORGED\r\nX_Client_Verify: FORGED\r\nClient-Cert: :FORGED:\r\nX-Client-Subject: CN=FORGED\r\n\r\n",
            )
        },
        0,
        true,
    );
    add(
        "pipelined: a protected request behind a public one",
        &|c| {
            format!(
                "GET /{c}/first HTTP/1.1\r\nHost: localhost\r\n\r\nGET /admin/{c}/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .into_bytes()
        },
        200,
        true,
    );
    add(
        "early 401: the unread body holds a request",
        &|c| {
            let body = hidden(c);
            format!(
                "POST /admin/{c} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
        401,
        false,
    );
    add(
        "early 401: the unread chunked body holds a request",
        &|c| {
            let inner = hidden(c);
            format!(
                "POST /admin/{c} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
                inner.len()
            )
            .into_bytes()
        },
        401,
        false,
    );

    let results: Vec<(Vec<Resp>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(_, _, bytes, _, _)| {
                let root = &root;
                s.spawn(move || {
                    let how = Dial {
                        sni: Some("localhost"),
                        client: None,
                        timeout_ms: 2000,
                    };
                    exchange(port, root, &how, bytes, 3)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // An early 401 on a keep-alive connection, the body sent after the answer: the body's bytes
    // are never read as a request.
    // An early 401 on a keep-alive connection, the body sent only after the answer (with and
    // without `Expect: 100-continue`): the body's bytes are never read as a request.
    let late: Vec<(String, &str, Vec<u16>)> = [
        ("early 401, body sent after it", ""),
        (
            "early 401 to Expect: 100-continue, body sent anyway",
            "Expect: 100-continue\r\n",
        ),
    ]
    .iter()
    .enumerate()
    .map(|(i, (what, extra))| {
        let c = format!("c{}", cases.len() + i);
        let body = hidden(&c);
        let head = format!(
            "POST /admin/{c} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        let how = Dial {
            sni: Some("localhost"),
            client: None,
            timeout_ms: 2000,
        };
        let mut statuses = Vec::new();
        if let Ok(mut tls) = dial(port, &root, &how) {
            tls.write_all(head.as_bytes()).unwrap();
            let mut r = Reader::new(&mut tls);
            if let Some(resp) = r.response() {
                statuses.push(resp.status);
            }
            let _ = r.s.write_all(body.as_bytes());
            let _ = r.s.flush();
            while let Some(resp) = r.response() {
                statuses.push(resp.status);
            }
        }
        (c, *what, statuses)
    })
    .collect();

    // HTTP/2 to an HTTP/1.1 upstream (H2.CL and H2.TE desync): a `content-length` or
    // `transfer-encoding` the DATA frames contradict must never become the upstream framing.
    let base = cases.len() + late.len();
    let h2_cases: Vec<(String, &str, serde_json::Value)> = {
        let c = |i: usize| format!("c{}", base + i);
        let post = |c: &str, extra: &[(&str, &str)]| {
            let mut h = vec![
                vec![":method".to_owned(), "POST".to_owned()],
                vec![":scheme".to_owned(), "https".to_owned()],
                vec![":path".to_owned(), format!("/{c}/first")],
                vec![":authority".to_owned(), "localhost".to_owned()],
            ];
            h.extend(
                extra
                    .iter()
                    .map(|(k, v)| vec![(*k).to_owned(), (*v).to_owned()]),
            );
            h
        };
        let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
        vec![
            (
                c0.clone(),
                "h2 content-length: 0 with a request in DATA",
                serde_json::json!({"sni": "localhost", "headers": post(&c0, &[("content-length", "0")]), "body": hidden(&c0)}),
            ),
            (
                c1.clone(),
                "h2 content-length shorter than DATA",
                serde_json::json!({"sni": "localhost", "headers": post(&c1, &[("content-length", "5")]), "body": format!("hello{}", hidden(&c1))}),
            ),
            (
                c2.clone(),
                "h2 transfer-encoding: chunked with a request after the last chunk",
                serde_json::json!({"sni": "localhost", "headers": post(&c2, &[("transfer-encoding", "chunked")]), "body": format!("0\r\n\r\n{}", hidden(&c2))}),
            ),
            (
                c3.clone(),
                "h2 forged identity in trailers",
                serde_json::json!({"sni": "localhost", "headers": post(&c3, &[]), "body": "hello", "trailers": [["x-client-verify", "SUCCESS-FORGED"], ["client-cert", ":FORGED:"], ["x_client_verify", "FORGED"]]}),
            ),
        ]
    };
    let h2_answers = h2_run(
        &python,
        d,
        port,
        None,
        h2_cases.iter().map(|(_, _, j)| j.clone()).collect(),
        false,
    );

    std::thread::sleep(Duration::from_millis(300));
    let seen = std::fs::read_to_string(&log).unwrap();
    let reqs: Vec<&str> = seen.lines().filter(|l| l.starts_with("REQ ")).collect();
    verbose(|| format!("smuggling upstream log:\n{seen}"));
    let mut f = Failures::default();
    for ((c, what, _, want, may_forward), (resps, _)) in cases.iter().zip(&results) {
        let statuses: Vec<u16> = resps.iter().map(|r| r.status).collect();
        verbose(|| format!("smuggling {c} {what} -> {statuses:?}"));
        // `chunked, chunked` is framed by its final (outer) chunked coding, RFC 9112 6.1: what
        // follows its last chunk is a pipelined request, judged by certgate as such.
        let pipelined_ok = *what == "Transfer-Encoding: chunked twice";
        let smuggled: Vec<&&str> = reqs
            .iter()
            .filter(|l| l.contains(&format!("/{c}/smuggled")))
            .collect();
        f.check(pipelined_ok || smuggled.is_empty(), || {
            format!("{c} {what}: the hidden request reached the upstream: {smuggled:?} (responses {statuses:?})")
        });
        if *want != 0 {
            f.check(statuses.first() == Some(want), || {
                format!(
                    "{c} {what}: want {want} first, got {statuses:?} {:?}",
                    resps.first().map(Resp::summary)
                )
            });
        }
        if !may_forward {
            let first: Vec<&&str> = reqs
                .iter()
                .filter(|l| l.contains(&format!("/{c}/")))
                .collect();
            f.check(first.is_empty(), || {
                format!("{c} {what}: want nothing forwarded, the upstream saw {first:?} (responses {statuses:?})")
            });
        }
        // One upstream request per answer at most (the hidden one would be a second).
        let count = reqs
            .iter()
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|t| t.starts_with(&format!("/{c}/")))
            })
            .count();
        f.check(pipelined_ok || count <= 1, || {
            format!("{c} {what}: the upstream saw {count} requests: {reqs:?}")
        });
    }
    // Whatever was forwarded has one unambiguous framing: at most one Content-Length, at most
    // a single `chunked`, never both.
    for l in seen.lines().filter(|l| l.starts_with("HDR ")) {
        let ok = l.ends_with("te=None cl=None")
            || l.contains("te=['chunked'] cl=None")
            || (l.contains("te=None cl=['") && !l.contains("', '"));
        f.check(ok, || {
            format!("ambiguous framing reached the upstream: {l}")
        });
    }
    for ((c, what, _), a) in h2_cases.iter().zip(&h2_answers) {
        verbose(|| format!("smuggling {c} {what} -> {}", a.summary()));
        let smuggled: Vec<&&str> = reqs
            .iter()
            .filter(|l| l.contains(&format!("/{c}/smuggled")))
            .collect();
        f.check(smuggled.is_empty(), || {
            format!(
                "{c} {what}: the hidden request reached the upstream: {smuggled:?} ({})",
                a.summary()
            )
        });
    }
    for (c, what, statuses) in &late {
        verbose(|| format!("smuggling {c} {what} -> {statuses:?}"));
        let hit: Vec<&&str> = reqs
            .iter()
            .filter(|l| l.contains(&format!("/{c}/")))
            .collect();
        f.check(hit.is_empty(), || {
            format!("{c} {what}: the upstream saw {hit:?} (responses {statuses:?})")
        });
        f.check(statuses.first() == Some(&401), || {
            format!("{c} {what}: want 401 first, got {statuses:?}")
        });
        f.check(statuses.len() <= 1, || {
            format!("{c} {what}: the body was answered as a request: {statuses:?}")
        });
    }
    let trailers: Vec<&str> = seen.lines().filter(|l| l.starts_with("TRL ")).collect();
    verbose(|| format!("trailers the upstream received: {trailers:?}"));
    for t in &trailers {
        f.check(!t.contains("FORGED"), || {
            format!("a forged trailer reached the upstream: {t}")
        });
    }
    drop(server);
    f.assert_none("request smuggling");
}

/// Route paths with non-ASCII text and segment characters, protected in front of Python's
/// `http.server` (which percent-decodes the path before opening a file): every spelling of such
/// a path is judged by its route, none falls through to the public `/`, and route paths in the
/// config are read in the same normal form (`/%7Ebob` protects `/~bob`).
#[test]
fn route_paths_with_non_ascii_and_segment_characters_keep_their_policy() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let site = d.join("site");
    for sub in ["büro", "p+q", "@me", "~bob"] {
        std::fs::create_dir_all(site.join(sub)).unwrap();
        std::fs::write(site.join(sub).join("secret.txt"), SECRET).unwrap();
    }
    std::fs::write(site.join("index.html"), "PUBLIC-INDEX").unwrap();
    let log = d.join("files.log");
    let files = Script::start(
        &python,
        d,
        FILE_UPSTREAM,
        &[site.to_str().unwrap(), log.to_str().unwrap()],
    );
    let mut config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  path = "/"
  upstream = "http://127.0.0.1:{port}"
"#,
        port = files.port
    );
    for path in ["/büro", "/p+q", "/%40me", "/%7Ebob"] {
        config.push_str(&format!(
            "  [[ingress.route]]\n  path = \"{path}\"\n  upstream = \"http://127.0.0.1:{}\"\n  require_verified = true\n",
            files.port
        ));
    }
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let good = ClientId::of(
        &signed_by(&Spec::client("alice"), &pki.intermediate),
        &[&pki.intermediate],
    );
    // Control: the files are there for a verified client, through each route.
    for path in [
        "/b%C3%BCro/secret.txt",
        "/p+q/secret.txt",
        "/@me/secret.txt",
        "/~bob/secret.txt",
    ] {
        let (r, _) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost").with(&good),
            &get(path, &["Host: localhost"]),
        );
        assert!(
            r.status == 200 && r.body_text() == SECRET,
            "control {path}: {}",
            r.summary()
        );
    }
    let mut f = Failures::default();
    for path in [
        "/b%C3%BCro/secret.txt",
        "/b%c3%bcro/secret.txt",
        "/b%C3%BCro/./secret.txt",
        "//b%C3%BCro//secret.txt",
        "/p+q/secret.txt",
        "/p%2Bq/secret.txt",
        "/p%2bq/secret.txt",
        "/%70%2B%71/secret.txt",
        "/@me/secret.txt",
        "/%40me/secret.txt",
        "/~bob/secret.txt",
        "/%7Ebob/secret.txt",
        "/%7ebob/secret.txt",
    ] {
        let (r, all) = one(
            port,
            &pki.root.der,
            &Dial::sni("localhost"),
            &get(path, &["Host: localhost"]),
        );
        f.check(!all.contains(SECRET), || {
            format!("{path:?}: the secret leaked: {}", r.summary())
        });
        f.check(r.status == 401, || {
            format!(
                "{path:?}: want 401 from its protected route, got {}",
                r.summary()
            )
        });
    }
    f.assert_none("route_paths_with_non_ascii_and_segment_characters_keep_their_policy");
}

// ---------------------------------------------------------------------------------------------
// A hostile upstream
// ---------------------------------------------------------------------------------------------

/// An upstream that answers each request with the raw response its path names: a switch that
/// smuggles hop-by-hop fields, conflicting or listed lengths, an HTTP/1.0 head and a transfer
/// coding hyper does not decode.
const RAW_UPSTREAM: &str = r#"
import socket, threading, time
RESPONSES = {
    "/switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 1\r\nProxy-Authenticate: Basic\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    "/clte": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "/double": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    "/differ": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "/old": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello",
    "/gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "/switch2": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    "/nocontent": b"HTTP/1.1 204 No Content\r\nContent-Length: 44\r\n\r\n",
    "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}
# Sent 0.3 s after the head of a HEAD response, as if it were its body: on a reused connection,
# the answer to whichever request comes next.
STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
def serve(c):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1].decode()
            if path == "/headbody":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 39\r\n\r\n")
                time.sleep(0.3)
                c.sendall(STRAY)
                continue
            c.sendall(RESPONSES.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            if path.startswith("/switch"):
                return
    finally:
        c.close()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// What an upstream answers is forwarded with certgate's own framing and version: a `101`
/// keeps only its `Upgrade` and `Connection: upgrade`; a length beside chunked framing goes, a
/// list of equal lengths becomes one; an HTTP/1.0 head is answered as HTTP/1.1; a transfer
/// coding other than chunked is refused (502) rather than forwarded unlabelled. Requests: a
/// transfer coding other than chunked gets 501; an HTTP/2 request's cookie fields reach an
/// HTTP/1.1 app as one `Cookie` joined with `; `.
#[test]
fn hostile_upstream_framing_and_hop_by_hop_fields_stop_here() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    let pki = write_server_pki(d);
    let raw = Script::start(&python, d, RAW_UPSTREAM, &[]);
    let wsgi = Script::start(&python, d, WSGI_UPSTREAM, &[]);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "none"
  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
  [[ingress.route]]
  path = "/app"
  upstream = "http://127.0.0.1:{}"
"#,
        raw.port, wsgi.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let root = pki.root.der.clone();
    let how = Dial::sni("localhost");
    let mut f = Failures::default();

    let (r, _) = one(
        port,
        &root,
        &how,
        &get(
            "/switch",
            &[
                "Host: localhost",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ],
        ),
    );
    f.check(r.status == 101, || format!("switch: {}", r.summary()));
    for leaked in ["x-secret", "keep-alive", "proxy-authenticate"] {
        f.check(!r.head.contains(leaked), || {
            format!("the 101 carried {leaked}: {}", r.summary())
        });
    }
    f.check(
        r.head.contains("\r\nupgrade: websocket\r\n") && r.head.contains("\r\nconnection: upgrade"),
        || format!("the 101 lost its upgrade fields: {:?}", r.head),
    );

    // A second `Upgrade` line would be relayed unchecked.
    let (r, _) = one(
        port,
        &root,
        &how,
        &get(
            "/switch2",
            &[
                "Host: localhost",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ],
        ),
    );
    f.check(r.status == 502, || {
        format!("a 101 with two Upgrade lines: {:?}", r.head)
    });
    // A HEAD whose upstream sends a body later: the next request, from another client, must
    // not get it.
    let head = std::thread::spawn({
        let root = root.clone();
        move || {
            one(
                port,
                &root,
                &Dial::sni("localhost"),
                b"HEAD /headbody HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .0
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (next, _) = one(port, &root, &how, &get("/ok", &["Host: localhost"]));
    let head = head.join().unwrap();
    f.check(head.status == 200, || format!("HEAD: {}", head.summary()));
    f.check(next.status == 200 && next.body == b"ok", || {
        format!(
            "a HEAD response's late body reached the next client: {}",
            next.summary()
        )
    });
    let (r, _) = one(port, &root, &how, &get("/nocontent", &["Host: localhost"]));
    f.check(
        r.status == 204 && !r.head.contains("content-length"),
        || format!("a 204 with a length: {:?}", r.head),
    );

    let (r, _) = one(port, &root, &how, &get("/clte", &["Host: localhost"]));
    f.check(r.status == 200 && r.body == b"hello", || {
        format!("length beside chunked: {}", r.summary())
    });
    f.check(!r.head.contains("content-length: 3"), || {
        format!(
            "the upstream's length beside chunked was forwarded: {}",
            r.summary()
        )
    });
    let (r, _) = one(port, &root, &how, &get("/double", &["Host: localhost"]));
    f.check(
        r.status == 200 && r.head.contains("\r\ncontent-length: 5\r\n") && r.body == b"hello",
        || format!("a list of lengths: {}", r.summary()),
    );
    let (r, _) = one(port, &root, &how, &get("/differ", &["Host: localhost"]));
    f.check(r.status == 502, || {
        format!("lengths that differ: {}", r.summary())
    });
    let (r, _) = one(port, &root, &how, &get("/old", &["Host: localhost"]));
    f.check(r.head.starts_with("http/1.1 200"), || {
        format!(
            "the upstream's HTTP/1.0 reached an HTTP/1.1 client: {}",
            r.summary()
        )
    });
    let (r, _) = one(port, &root, &how, &get("/gzip", &["Host: localhost"]));
    f.check(r.status == 502, || {
        format!("a gzip transfer coding was forwarded: {}", r.summary())
    });
    let (r, _) = one(
        port,
        &root,
        &how,
        b"POST /app HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    f.check(r.status == 501, || {
        format!("a request's gzip transfer coding: {}", r.summary())
    });

    let h2 = h2_requests(
        &python,
        d,
        port,
        None,
        &[(
            Some("localhost"),
            h2_get(
                "/app",
                Some("localhost"),
                &[("cookie", "a=1"), ("cookie", "b=2")],
            ),
        )],
    );
    let v: serde_json::Value = serde_json::from_str(&h2[0].body).unwrap_or_default();
    f.check(
        h2[0].status == 200 && v["HTTP_COOKIE"] == "a=1; b=2",
        || format!("HTTP/2 cookies reached the app as {:?}", v["HTTP_COOKIE"]),
    );
    drop(server);
    f.assert_none("a hostile upstream's framing and hop-by-hop fields");
}

/// An upstream that answers `POST /upload` at once (the head now, the body a second later) and
/// then reads and discards the request body, as RFC 9112 servers do; every other request is
/// answered with its own request line, so a client can tell whose request it got the answer to.
/// `GET /seen` answers with the request lines of every request it received whole, one a line.
const EARLY_ANSWER_UPSTREAM: &str = r#"
import re, socket, threading, time
SEEN = []
def serve(conn):
    buf = b""
    def fill():
        nonlocal buf
        d = conn.recv(65536)
        if not d:
            raise EOFError
        buf += d
    try:
        while True:
            while True:
                buf = buf.lstrip(b"\r\n")
                if b"\r\n\r\n" in buf:
                    break
                fill()
            head, buf = buf.split(b"\r\n\r\n", 1)
            line = head.split(b"\r\n")[0]
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            n = int(m.group(1)) if m else 0
            if line.startswith(b"POST /upload"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
                time.sleep(1.0)
                conn.sendall(b"ok")
            while len(buf) < n:
                fill()
            buf = buf[n:]
            if line.startswith(b"GET /seen"):
                seen = b"\n".join(SEEN)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen), seen))
                continue
            SEEN.append(line)
            if not line.startswith(b"POST /upload"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))
    except (EOFError, OSError):
        conn.close()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A listener `web` (no client certificates, `listener` added to its table) in front of
/// [`EARLY_ANSWER_UPSTREAM`]: the upstream, the server and the root to trust.
fn behind_early_answers(python: &Path, d: &Path, listener: &str) -> (Script, Serve, Vec<u8>) {
    let pki = write_server_pki(d);
    let upstream = Script::start(python, d, EARLY_ANSWER_UPSTREAM, &[]);
    let config = format!(
        r#"{CONFIG_HEAD}
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "none"
{listener}  [[ingress.route]]
  upstream = "http://127.0.0.1:{}"
"#,
        upstream.port
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    (upstream, server, pki.root.der.clone())
}

/// A client whose request body comes short (or breaks) after the upstream has begun to answer
/// leaves that upstream waiting for the rest of the body. Were the connection reused, the
/// upstream would read the next request, another client's, as that rest, and then run what that
/// client smuggled into its own body: a request certgate never saw, on a route whose policy it
/// never checked.
#[test]
fn a_request_body_cut_short_after_the_answer_smuggles_nothing() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let (_upstream, server, root) = behind_early_answers(&python, dir.path(), "");
    let port = server.port("web");
    let how = Dial::sni("localhost");

    // The attacker: 5 of the 705 body bytes it declares, then the end of its sending side, while
    // the upstream's answer is on its way.
    let mut a = dial(port, &root, &how).unwrap();
    a.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 705\r\n\r\nhello")
        .unwrap();
    a.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = a.sock.shutdown(std::net::Shutdown::Write);
    let mut drained = Vec::new();
    let _ = a.read_to_end(&mut drained);

    // Next, a request whose body carries another request: the upstream must read it as a body.
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut body = b"\r\n".repeat(600);
    body.extend_from_slice(smuggled);
    let mut raw = format!(
        "POST /public HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let (b, all) = one(port, &root, &how, &raw);
    drop(server);
    assert!(
        b.status == 200 && b.body_text() == "POST /public HTTP/1.1",
        "the next request was not answered as itself (its body ran as a request?): {}\n{all}",
        b.summary()
    );
}

/// A body over `max_body_bytes` is refused before anything goes upstream, also when the client
/// names `Content-Length` as a connection option: were that field removed as hop-by-hop, the
/// limit would frame the forwarded request as its first 1000 bytes, and the upstream would take
/// a truncated upload for a whole one.
#[test]
fn a_length_named_in_connection_is_still_the_length() {
    let Some(python) = python_with_h2() else {
        return;
    };
    let dir = tempdir();
    let (_upstream, server, root) =
        behind_early_answers(&python, dir.path(), "max_body_bytes = 1000\n");
    let port = server.port("web");
    let how = Dial::sni("localhost");
    let mut raw = b"PUT /store HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50000\r\nConnection: content-length\r\n\r\n".to_vec();
    // Exactly the limit, and then nothing more for now.
    raw.extend_from_slice(&[b'x'; 1000]);
    let (r, _) = one(port, &root, &how, &raw);
    let (seen, _) = one(port, &root, &how, &get("/seen", &["Host: localhost"]));
    drop(server);
    assert_eq!(r.status, 413, "{}", r.summary());
    assert!(
        seen.status == 200 && !seen.body_text().contains("/store"),
        "the upstream took part of the body for a whole request: {}",
        seen.summary()
    );
}
