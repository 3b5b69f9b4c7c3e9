//! Interception of `CONNECT` to hosts with a rule: TLS with a certificate minted by the local
//! interception CA, then each request re-originated over mTLS with the rule's identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use certgate_pki::ca::{Ca, KeyType, LeafKind, LeafRequest};
use certgate_pki::name_constraints::Constraints;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

use super::rules::{Destination, EgressRule, select};
use super::{EgressConfig, access, access_log_on, bad_gateway};
use crate::message::{Body, strip_hop_by_hop, text};

/// The local CA that signs certificates for intercepted hosts, and its per-host cache.
pub struct Interceptor {
    ca: Ca,
    /// The CA's name constraints; `None` for a CA made without them (before they existed).
    constraints: Option<Constraints>,
    /// Minted configurations by host, with the time each certificate stops being used.
    configs: Mutex<HashMap<String, (Arc<ServerConfig>, time::OffsetDateTime)>>,
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

/// The longest a minted certificate is valid, in days.
pub const MINTED_DAYS: u32 = 7;

impl Interceptor {
    /// An interceptor signing with `ca`.
    pub fn new(ca: Ca) -> Result<Self, String> {
        let constraints = Constraints::of(ca.certificate())?;
        Ok(Self {
            ca,
            constraints,
            configs: Mutex::new(HashMap::new()),
        })
    }

    /// The CA's certificate.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Whether the CA carries name constraints.
    pub fn is_constrained(&self) -> bool {
        self.constraints.is_some()
    }

    /// Whether a certificate for `host` would be within the CA's name constraints (always, for
    /// a CA without them). A `CONNECT` to a host outside is tunneled blind, never intercepted.
    pub fn covers(&self, host: &str) -> bool {
        self.constraints.as_ref().is_none_or(|c| c.permits(host))
    }

    /// The TLS server configuration that presents a certificate for `host`, minted on first use
    /// and again a day before it expires. A certificate is valid for [`MINTED_DAYS`] at most, and
    /// never past the CA's own expiry.
    pub(super) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let now = time::OffsetDateTime::now_utc();
        if let Some((c, _)) = self
            .configs
            .lock()
            .ok()
            .and_then(|m| m.get(host).cloned())
            .filter(|(_, renew_at)| now < *renew_at)
        {
            return Ok(c);
        }
        if !self.covers(host) {
            return Err(format!(
                "{host} is outside the interception CA's name constraints"
            ));
        }
        let ca_days_left = (self.ca.identity().not_after - now).whole_days();
        let days = u32::try_from(ca_days_left.clamp(0, i64::from(MINTED_DAYS))).unwrap_or(0);
        if days == 0 {
            return Err(format!(
                "the interception CA expires on {}: create a new one with `certgate egress ca --force`",
                self.ca.identity().not_after
            ));
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
                    days,
                    key_type: KeyType::EcdsaP256,
                    crl_urls: Vec::new(),
                },
                now,
            )
            .map_err(|e| format!("cannot mint a certificate for {host}: {e}"))?;
        let chain: Vec<CertificateDer<'static>> =
            vec![issued.cert_der, self.ca.certificate().clone()];
        let config = certgate_tls::egress::intercept_server_config(chain, issued.key_der)
            .map_err(|e| format!("minted certificate for {host}: {e}"))?;
        let renew_at = now + time::Duration::days(i64::from(days) - 1).max(time::Duration::HOUR);
        if let Ok(mut m) = self.configs.lock() {
            if m.len() >= MINTED_CACHE {
                m.clear();
            }
            m.insert(host.to_owned(), (Arc::clone(&config), renew_at));
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
                    super::enforce::originate_gated(&cfg, rule, &host, port, req, false).await
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

/// Whether an upstream failure is the server's alert refusing the client certificate.
fn refused_the_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        // An I/O error holds the TLS error inside (its `source` skips it).
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(a)) = tls {
            return certgate_tls::egress::refuses_client_certificate(*a);
        }
        cause = c.source();
    }
    false
}

/// Sends `req` to `https://host:port` with `rule`'s identity.
pub(super) async fn originate(
    rule: &EgressRule,
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
    match rule.client.request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            resp.map(|b| b.map_err(Into::into).boxed())
        }
        Err(e) => {
            if refused_the_certificate(&e) {
                rule.origin.remembered.refused_later(host, port);
            }
            bad_gateway(host, port, &e)
        }
    }
}
