//! `certgate-loadgen`: a small mTLS HTTP/1.1 and HTTP/2 load generator (TLS 1.3, X25519, client
//! certificate, never resumption), used by `bench/run.sh` to measure certgate, nginx, HAProxy and
//! Caddy in the same run.
//!
//! Modes: `handshake` (a new connection and full handshake per request), `keepalive` (requests
//! over long-lived connections, with latency percentiles), `idle` (open connections and hold
//! them, for memory measurements), `download` (one GET of a large body, for throughput) and
//! `append` (keep-alive POSTs of unique 256-byte bodies, for a transparency log's `/add`).
//! `--http2` speaks HTTP/2 (ALPN `h2`) in `keepalive` and `idle`, with `--streams` concurrent
//! streams on each connection; `--gemini` speaks Gemini in `handshake` and `idle`. Prints one JSON line, which includes the load generator's own CPU
//! share over the run (so a harness can show that it was not the bottleneck).
//!
//! How it reaches the server (`--via`): `direct` mTLS; `plain` TCP (e.g. into a certgate egress
//! tunnel, which adds the TLS); `proxy-origin` (absolute-form `http://` requests to a forward
//! proxy at `--proxy`, which originates mTLS); `proxy-connect` (`CONNECT` through the proxy, then
//! TLS that trusts `--proxy-ca`, the proxy's interception CA).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use certgate_pki::{Origin, credential};
use clap::{Parser, ValueEnum};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Handshake,
    Keepalive,
    Idle,
    Download,
    /// Keep-alive `POST`s of unique 256-byte bodies (a transparency log's `/add`).
    Append,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Via {
    Direct,
    Plain,
    ProxyOrigin,
    ProxyConnect,
}

/// mTLS load generator.
#[derive(Debug, Parser)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Server address.
    #[arg(long)]
    addr: String,
    /// TLS server name.
    #[arg(long, default_value = "localhost")]
    sni: String,
    /// CA certificate that signed the server certificate.
    #[arg(long)]
    ca: String,
    /// Client certificate (PEM chain).
    #[arg(long)]
    cert: String,
    /// Client key.
    #[arg(long)]
    key: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run (handshake, keepalive) or to hold the connections (idle).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// How to reach the server.
    #[arg(long, value_enum, default_value = "direct")]
    via: Via,
    /// The forward proxy (`proxy-origin`, `proxy-connect`).
    #[arg(long)]
    proxy: Option<String>,
    /// The proxy's interception CA (`proxy-connect`).
    #[arg(long)]
    proxy_ca: Option<String>,
    /// Skip verifying the server's certificate and handshake signature, so that handshake runs
    /// spend the load generator's CPU on the client's own share only (a benchmark against a
    /// known server on loopback; never anything else).
    #[arg(long)]
    no_verify_server: bool,
    /// Speak HTTP/2 (ALPN `h2`); `keepalive` and `idle` only.
    #[arg(long)]
    http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Speak Gemini (`handshake` only: one request line per connection, the whole response
    /// read until the server closes; a response other than `20` counts as an error).
    #[arg(long)]
    gemini: bool,
    /// Present no client certificate (to servers that request but do not require one).
    #[arg(long)]
    no_client_cert: bool,
}

/// Accepts any server (see `--no-verify-server`).
#[derive(Debug)]
struct AnyServer(Vec<rustls::SignatureScheme>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.clone()
    }
}

/// A connection of any kind.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Opens connections the way `--via` says.
#[derive(Clone)]
struct Dialer {
    via: Via,
    addr: String,
    proxy: String,
    sni: ServerName<'static>,
    tls: TlsConnector,
    proxy_tls: Option<TlsConnector>,
}

impl Dialer {
    async fn dial(&self) -> Result<Box<dyn Io>> {
        match self.via {
            Via::Direct => Ok(Box::new(connect(&self.addr, &self.sni, &self.tls).await?)),
            Via::Plain => Ok(Box::new(tcp(&self.addr).await?)),
            Via::ProxyOrigin => Ok(Box::new(tcp(&self.proxy).await?)),
            Via::ProxyConnect => {
                let mut s = tcp(&self.proxy).await?;
                let host = match &self.sni {
                    ServerName::DnsName(d) => d.as_ref().to_owned(),
                    other => format!("{other:?}"),
                };
                let port = self.addr.rsplit(':').next().unwrap_or("443");
                s.write_all(
                    format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await? == 0 {
                        bail!("the proxy closed the CONNECT");
                    }
                    head.push(byte[0]);
                }
                if !head.starts_with(b"HTTP/1.1 200") {
                    bail!("CONNECT: {}", String::from_utf8_lossy(&head));
                }
                let tls = self.proxy_tls.as_ref().context("--proxy-ca is required")?;
                Ok(Box::new(tls.connect(self.sni.clone(), s).await?))
            }
        }
    }

    /// The request line target: absolute-form for `proxy-origin`.
    fn target(&self, path: &str) -> String {
        if self.via == Via::ProxyOrigin {
            let host = match &self.sni {
                ServerName::DnsName(d) => d.as_ref().to_owned(),
                other => format!("{other:?}"),
            };
            let port = self.addr.rsplit(':').next().unwrap_or("80");
            format!("http://{host}:{port}{path}")
        } else {
            path.to_owned()
        }
    }
}

async fn tcp(addr: &str) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn proxy_config(ca: &str) -> Result<Arc<rustls::ClientConfig>> {
    let bytes = std::fs::read(ca).with_context(|| format!("cannot read {ca}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in credential::parse_certificates(&bytes, &Origin::file(ca))? {
        roots.add(c)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn config(args: &Args) -> Result<Arc<rustls::ClientConfig>> {
    let read = |p: &str| std::fs::read(p).with_context(|| format!("cannot read {p}"));
    let ca = credential::parse_certificates(&read(&args.ca)?, &Origin::file(&args.ca))?;
    let chain = credential::parse_certificates(&read(&args.cert)?, &Origin::file(&args.cert))?;
    let key = credential::parse_private_key(&read(&args.key)?, &Origin::file(&args.key), None)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // Like for like with every server: X25519 only, no post-quantum hybrid.
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = if args.no_verify_server {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(schemes)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut cfg = if args.no_client_cert {
        builder.with_no_client_auth()
    } else {
        builder.with_client_auth_cert(chain, key.der)?
    };
    // Every handshake is a full one, whatever the server offers.
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = if args.gemini {
        Vec::new()
    } else if args.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}

/// Sends one Gemini request line and reads the response until the server closes.
async fn gemini_request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    line: &[u8],
    buf: &mut Vec<u8>,
) -> Result<()> {
    s.write_all(line).await?;
    buf.clear();
    // A server may close without close_notify once the response is out (Jetforce does).
    let _ = s.read_to_end(buf).await;
    if !buf.starts_with(b"20") {
        let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
        bail!("gemini: {head}");
    }
    Ok(())
}

/// Sends one request and reads the whole response (Content-Length or until close).
async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<()> {
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!("status: {}", head.lines().next().unwrap_or_default());
    }
    let len: Option<usize> = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    });
    match len {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed in the body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => while s.read(&mut chunk).await? > 0 {},
    }
    Ok(())
}

async fn connect(
    addr: &str,
    sni: &ServerName<'static>,
    tls: &TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tls.connect(sni.clone(), tcp).await?)
}

type H2 = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Opens a connection and starts HTTP/2 on it (the connection's driver runs as its own task).
async fn h2_connect(dialer: &Dialer) -> Result<H2> {
    let io = dialer.dial().await?;
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One HTTP/2 `GET`, its whole body read.
async fn h2_request(send: &mut H2, uri: &hyper::Uri) -> Result<()> {
    use http_body_util::BodyExt as _;
    send.ready().await?;
    let req = hyper::Request::get(uri.clone()).body(http_body_util::Empty::new())?;
    let resp = send.send_request(req).await?;
    if resp.status() != hyper::StatusCode::OK {
        bail!("status: {}", resp.status());
    }
    resp.into_body().collect().await?;
    Ok(())
}

/// CPU time this process has used, in nanoseconds (Linux `schedstat`), for the CPU share the
/// JSON line reports.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tls = TlsConnector::from(config(&args)?);
    let sni = ServerName::try_from(args.sni.clone())?;
    let dialer = Dialer {
        via: args.via,
        addr: args.addr.clone(),
        proxy: args.proxy.clone().unwrap_or_default(),
        sni: sni.clone(),
        tls: tls.clone(),
        proxy_tls: match &args.proxy_ca {
            Some(ca) => Some(TlsConnector::from(proxy_config(ca)?)),
            None => None,
        },
    };
    if matches!(args.via, Via::ProxyOrigin | Via::ProxyConnect) && args.proxy.is_none() {
        bail!("--via {:?} needs --proxy", args.via);
    }
    let target = dialer.target(&args.path);
    if args.http2 && !matches!(args.mode, Mode::Keepalive | Mode::Idle) {
        bail!("--http2 applies to --mode keepalive and idle");
    }
    if args.gemini && !matches!(args.mode, Mode::Handshake | Mode::Idle) {
        bail!("--gemini applies to --mode handshake and idle (one request per connection)");
    }
    if args.http2 && args.via != Via::Direct {
        bail!("--http2 needs --via direct");
    }
    let uri: hyper::Uri = format!("https://{}{}", args.sni, args.path)
        .parse()
        .context("--sni and --path do not make a URL")?;
    let cpu_before = cpu_ns();
    if let Mode::Download = args.mode {
        let mut s = dialer.dial().await?;
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            args.sni
        );
        let t = Instant::now();
        s.write_all(req.as_bytes()).await?;
        let mut total = 0u64;
        let mut chunk = vec![0u8; 256 * 1024];
        let mut head = Vec::new();
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            if head.len() < 4 || !head.windows(4).any(|w| w == b"\r\n\r\n") {
                head.extend_from_slice(&chunk[..n.min(4096)]);
            }
            total += n as u64;
        }
        if !head.starts_with(b"HTTP/1.1 200") {
            let line = String::from_utf8_lossy(&head);
            bail!("download: {}", line.lines().next().unwrap_or("no response"));
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"mode": "download", "via": format!("{:?}", args.via), "bytes": total, "seconds": secs, "mib_per_s": total as f64 / secs / 1048576.0})
        );
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let duration = Duration::from_secs(args.duration);
    match args.mode {
        Mode::Idle if args.gemini => {
            // Connections with the handshake done and no request line yet: what a server holds
            // for a client that is slow to send.
            let mut held = Vec::with_capacity(args.connections);
            for _ in 0..args.connections {
                match dialer.dial().await {
                    Ok(s) => held.push(s),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({"mode": "idle", "gemini": true, "open": held.len(), "errors": errors.load(Ordering::Relaxed)})
            );
            tokio::time::sleep(duration).await;
            return Ok(());
        }
        Mode::Idle if args.http2 => {
            let mut held = Vec::with_capacity(args.connections);
            for _ in 0..args.connections {
                let opened = async {
                    let mut send = h2_connect(&dialer).await?;
                    h2_request(&mut send, &uri).await?;
                    anyhow::Ok(send)
                };
                match opened.await {
                    Ok(send) => held.push(send),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({"mode": "idle", "http2": true, "open": held.len(), "errors": errors.load(Ordering::Relaxed)})
            );
            tokio::time::sleep(duration).await;
            return Ok(());
        }
        Mode::Idle => {
            let mut held = Vec::with_capacity(args.connections);
            let req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", args.sni).into_bytes();
            let mut buf = Vec::new();
            for _ in 0..args.connections {
                match dialer.dial().await {
                    Ok(mut s) => match request(&mut s, &req, &mut buf).await {
                        Ok(()) => held.push(s),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({"mode": "idle", "open": held.len(), "errors": errors.load(Ordering::Relaxed)})
            );
            // The harness measures the server now; hold until the duration ends.
            tokio::time::sleep(duration).await;
            return Ok(());
        }
        Mode::Handshake | Mode::Keepalive | Mode::Download | Mode::Append => {}
    }
    let keepalive = matches!(args.mode, Mode::Keepalive | Mode::Append);
    let append = matches!(args.mode, Mode::Append);
    // Bodies differ between runs too, so a log never answers them as duplicates.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut tasks = Vec::new();
    let (h2_connections, h1_connections) = if args.http2 {
        (args.connections, 0)
    } else {
        (0, args.connections)
    };
    for _ in 0..h2_connections {
        let (dialer, stop, ok, errors) = (dialer.clone(), stop.clone(), ok.clone(), errors.clone());
        let (uri, streams) = (uri.clone(), args.streams.max(1));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let send = match h2_connect(&dialer).await {
                    Ok(send) => send,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let mut workers = tokio::task::JoinSet::new();
                for _ in 0..streams {
                    let (mut send, uri) = (send.clone(), uri.clone());
                    let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
                    workers.spawn(async move {
                        let mut latencies = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            match h2_request(&mut send, &uri).await {
                                Ok(()) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    latencies.push(t.elapsed().as_micros() as u32);
                                }
                                Err(_) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        latencies
                    });
                }
                while let Some(done) = workers.join_next().await {
                    latencies.extend(done.unwrap_or_default());
                }
            }
            latencies
        }));
    }
    for conn in 0..h1_connections {
        let (dialer, stop, ok, errors) = (dialer.clone(), stop.clone(), ok.clone(), errors.clone());
        let conn_header = if keepalive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let req = if args.gemini {
            let port = args.addr.rsplit_once(':').map_or("1965", |(_, p)| p);
            format!("gemini://{}:{port}{}\r\n", args.sni, args.path).into_bytes()
        } else {
            format!(
                "GET {target} HTTP/1.1\r\nHost: {}\r\n{conn_header}\r\n",
                args.sni
            )
            .into_bytes()
        };
        let gemini = args.gemini;
        let (target, host) = (target.clone(), args.sni.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut buf = Vec::with_capacity(16 * 1024);
            let mut stream = None;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let post;
                let this = if append {
                    n += 1;
                    let mut body = format!("{run}-{conn}-{n}-");
                    body.extend(std::iter::repeat_n('x', 256 - body.len().min(256)));
                    post = format!(
                        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes();
                    &post
                } else {
                    &req
                };
                let result = async {
                    if stream.is_none() || !keepalive {
                        stream = Some(dialer.dial().await?);
                    }
                    let s = stream.as_mut().context("no stream")?;
                    if gemini {
                        return gemini_request(s, this, &mut buf).await;
                    }
                    request(s, this, &mut buf).await
                }
                .await;
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        latencies.push(t.elapsed().as_micros() as u32);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        stream = None;
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_share = match (cpu_before, cpu_ns()) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / 1e9 / secs,
        _ => f64::NAN,
    };
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": if append { "append" } else if keepalive { "keepalive" } else { "handshake" },
            "http2": args.http2,
            "streams": if args.http2 { args.streams.max(1) } else { 1 },
            "requests": ok.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": secs,
            "rps": ok.load(Ordering::Relaxed) as f64 / secs,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "loadgen_cpu_share": cpu_share,
        })
    );
    Ok(())
}
