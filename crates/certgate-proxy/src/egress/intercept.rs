//! Interception of `CONNECT` to hosts with a rule: TLS with a certificate minted by the local
//! interception CA, then each request re-originated over mTLS with the rule's identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use certgate_pki::ca::{Ca, KeyType, LeafKind, LeafRequest};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

use super::fallback::OriginConnector;
use super::rules::{Destination, EgressRule, select};
use super::{EgressConfig, access, access_log_on, bad_gateway};
use crate::message::{Body, strip_hop_by_hop, text};

/// The local CA that signs certificates for intercepted hosts, and its per-host cache.
pub struct Interceptor {
    ca: Ca,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Hosts whose minted certificate is kept; past this the cache starts afresh.
pub(super) const MINTED_CACHE: usize = 1024;

impl Interceptor {
    /// An interceptor signing with `ca`.
    pub fn new(ca: Ca) -> Self {
        Self {
            ca,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The TLS server configuration that presents a certificate for `host`, minted on first use.
    pub(super) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        if let Some(c) = self.configs.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let (dns, ip) = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => (vec![], vec![ip]),
            Err(_) => (vec![host.to_owned()], vec![]),
        };
        let issued = self
            .ca
            .issue(
                &LeafRequest {
                    kind: LeafKind::Server,
                    name: host.to_owned(),
                    dns,
                    ip,
                    uri: vec![],
                    email: vec![],
                    days: 7,
                    key_type: KeyType::EcdsaP256,
                    crl_urls: Vec::new(),
                },
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| format!("cannot mint a certificate for {host}: {e}"))?;
        let chain: Vec<CertificateDer<'static>> =
            vec![issued.cert_der, self.ca.certificate().clone()];
        let config = certgate_tls::egress::intercept_server_config(chain, issued.key_der)
            .map_err(|e| format!("minted certificate for {host}: {e}"))?;
        if let Ok(mut m) = self.configs.lock() {
            if m.len() >= MINTED_CACHE {
                m.clear();
            }
            m.insert(host.to_owned(), Arc::clone(&config));
        }
        Ok(config)
    }
}

/// The rule for a request inside an intercepted connection: the one its path selects, else the
/// host's least specific rule.
pub(super) fn intercepted_rule<'a>(
    rules: &'a [EgressRule],
    host: &str,
    port: u16,
    path: &str,
) -> Option<&'a EgressRule> {
    let with_path = Destination {
        host,
        port,
        path: Some(path),
    };
    let any_path = Destination {
        path: None,
        ..with_path
    };
    select(rules, &with_path).or_else(|| {
        rules
            .iter()
            .filter_map(|r| r.score(&any_path).map(|s| ((s, r.path.len()), r)))
            .min_by_key(|(s, _)| *s)
            .map(|(_, r)| r)
    })
}

/// An intercepted `CONNECT`: where it goes and what serves it.
pub(super) struct Intercept {
    pub(super) server: Arc<ServerConfig>,
    /// The configuration at `CONNECT` time (a reload meanwhile does not change this tunnel).
    pub(super) cfg: Arc<EgressConfig>,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) peer: SocketAddr,
}

/// Inside an intercepted CONNECT: TLS with a minted certificate, then each request goes to
/// `https://host:port` with the identity of the rule its path selects.
pub(super) async fn intercept(upgraded: hyper::upgrade::Upgraded, job: Intercept) {
    let Intercept {
        server,
        cfg,
        host,
        port,
        peer,
    } = job;
    let handshake = tokio_rustls::TlsAcceptor::from(server).accept(TokioIo::new(upgraded));
    let tls = match tokio::time::timeout(cfg.header_timeout, handshake).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(%host, error = %e, "the client refused the interception certificate (does it trust the egress CA?)");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "intercepted TLS handshake timed out");
            return;
        }
    };
    let header_timeout = cfg.header_timeout;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let cfg = Arc::clone(&cfg);
        let host = host.clone();
        async move {
            let path = req.uri().path().to_owned();
            let rule = intercepted_rule(&cfg.rules, &host, port, &path);
            let started = Instant::now();
            let method = req.method().clone();
            let resp = match rule {
                Some(rule) => {
                    tracing::debug!(rule = %rule.name, %host, %path, "intercepted request");
                    originate(&rule.client, &host, port, req).await
                }
                None => text(StatusCode::BAD_GATEWAY, "no egress rule"),
            };
            let url = access_log_on().then(|| format!("https://{host}:{port}{path}"));
            access(
                &cfg.name,
                peer,
                &method,
                url.as_deref(),
                "intercepted",
                resp.status(),
                started,
            );
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// Sends `req` to `https://host:port` through `client`, i.e. with its rule's identity.
pub(super) async fn originate(
    client: &Client<OriginConnector, Body>,
    host: &str,
    port: u16,
    req: Request<Incoming>,
) -> Response<Body> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let authority = if port == 443 {
        host.to_owned()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Ok(uri) = Uri::builder()
        .scheme("https")
        .authority(authority.as_str())
        .path_and_query(path_and_query)
        .build()
    else {
        return text(StatusCode::BAD_REQUEST, "bad request target");
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, false);
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(header::HOST, v);
    }
    let req = Request::from_parts(parts, body.boxed());
    match client.request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            resp.map(|b| b.boxed())
        }
        Err(e) => bad_gateway(host, port, &e),
    }
}
