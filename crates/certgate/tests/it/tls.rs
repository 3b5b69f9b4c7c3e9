//! rustls test clients: one place to build a client configuration and connect.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What the client presents.
pub enum Auth {
    /// Nothing.
    None,
    /// A chain and its key.
    Cert(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    /// Whatever this resolver returns.
    Resolver(Arc<dyn rustls::client::ResolvesClientCert>),
}

/// A client trusting `root`, limited to `versions` (all when empty).
pub fn config(
    root: &[u8],
    versions: &[&'static SupportedProtocolVersion],
    auth: Auth,
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match auth {
        Auth::None => builder.with_no_client_auth(),
        Auth::Cert(chain, key) => builder.with_client_auth_cert(chain, key).unwrap(),
        Auth::Resolver(r) => builder.with_client_cert_resolver(r),
    })
}

/// Connects to `127.0.0.1:port` as `localhost`, with a read timeout.
pub fn connect(
    port: u16,
    config: Arc<ClientConfig>,
    read_timeout: Duration,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    // The client's last handshake flight and its first request are separate small writes:
    // without this, Nagle holds the second until a delayed ACK (~40 ms).
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(read_timeout))?;
    Ok(StreamOwned::new(conn, tcp))
}

/// Reads one HTTP/1.1 response with a `content-length` body: (head, lower-cased; body).
pub fn read_response(r: &mut impl std::io::Read) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        r.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}
