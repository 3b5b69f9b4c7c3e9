//! Egress rules: which destinations (host pattern, port, path prefix) get which client identity,
//! chosen git-style (the most specific rule wins), and the destinations the proxy may reach.

use std::sync::Arc;
use std::time::Duration;

use certgate_tls::egress::ChooseIdentity;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::ServerName;

use super::fallback::{Origin, OriginConnector, Remembered};

/// A host pattern: exact, `*.suffix` (one or more labels), or `*` (any host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.suffix` (stored with the leading dot).
    Suffix(String),
    /// Any host.
    Any,
}

impl HostPattern {
    /// Parses `host`, `*.domain` or `*`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Some(Self::Any);
        }
        let (pattern, name) = match s.strip_prefix("*.") {
            Some(rest) => (Self::Suffix(format!(".{rest}")), rest.to_owned()),
            None => (Self::Exact(s.clone()), s.clone()),
        };
        let valid = !name.is_empty()
            && !name.contains('*')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        valid.then_some(pattern)
    }

    /// Whether `host` (lower case) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Suffix(s) => certgate_pattern::wildcard_host(
                host,
                s.strip_prefix('.').unwrap_or(s),
                certgate_pattern::Labels::OneOrMore,
            ),
            Self::Any => true,
        }
    }

    /// How specific the pattern is: exact beats any wildcard, a longer suffix beats a shorter.
    fn specificity(&self) -> usize {
        match self {
            Self::Exact(h) => 10_000 + h.len(),
            Self::Suffix(s) => s.len(),
            Self::Any => 0,
        }
    }
}

/// Where a request or connection is going.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    /// Host, lower case, without brackets.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Request path, when known (HTTP only).
    pub path: Option<&'a str>,
}

/// One `[[egress.rule]]`, resolved.
pub struct EgressRule {
    /// Name for logs and `explain`.
    pub name: String,
    /// Host pattern.
    pub host: HostPattern,
    /// Port; `None` matches any.
    pub port: Option<u16>,
    /// Path prefix (HTTP only); `/` matches everything.
    pub path: String,
    /// The TLS client: trust, pin, identities, ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// Chooses the identity per CertificateRequest.
    pub chooser: Arc<ChooseIdentity>,
    /// The names of its identities, in order.
    pub identities: Vec<String>,
    /// The server name to send and verify instead of the destination host.
    pub sni: Option<ServerName<'static>>,
    /// How connections are opened (identity fallback, and what worked where).
    pub origin: Origin,
    /// The content-trust gate for the downloads it names, if any.
    pub gate: Option<super::gate::Gate>,
    pub(super) client: Client<OriginConnector, super::ForwardBody>,
}

impl std::fmt::Debug for EgressRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRule")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

pub(super) fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(connect_timeout));
    c.enforce_http(false);
    c
}

pub(super) fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60));
    b
}

impl EgressRule {
    /// A rule with its pooled HTTPS client.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        host: HostPattern,
        port: Option<u16>,
        path: String,
        tls: Arc<rustls::ClientConfig>,
        chooser: Arc<ChooseIdentity>,
        identities: Vec<String>,
        sni: Option<ServerName<'static>>,
    ) -> Self {
        let origin = Origin {
            tls: Arc::clone(&tls),
            chooser: Arc::clone(&chooser),
            remembered: Arc::new(Remembered::default()),
            connect_timeout: Duration::from_secs(10),
            connect_to: None,
            diagnose: false,
        };
        let connector = OriginConnector {
            origin: origin.clone(),
            sni: sni.clone(),
        };
        Self {
            name,
            host,
            port,
            path,
            tls,
            chooser,
            identities,
            sni,
            origin,
            gate: None,
            client: client_builder().build(connector),
        }
    }

    /// The rule, connecting to `addr` (`host:port`) instead of the destination's own address.
    pub fn with_connect_to(mut self, addr: Option<String>) -> Self {
        self.origin.connect_to = addr;
        let connector = OriginConnector {
            origin: self.origin.clone(),
            sni: self.sni.clone(),
        };
        self.client = client_builder().build(connector);
        self
    }

    /// How well the rule matches, or `None`. Git-style: the most specific host wins, then an
    /// explicit port, then the longest path prefix.
    pub(super) fn score(&self, d: &Destination<'_>) -> Option<(usize, bool, usize)> {
        if !self.host.matches(d.host) || self.port.is_some_and(|p| p != d.port) {
            return None;
        }
        let path_len = match d.path {
            Some(path) if path_matches(&self.path, path) => self.path.len(),
            Some(_) => return None,
            None => 0,
        };
        Some((self.host.specificity(), self.port.is_some(), path_len))
    }

    /// The server name this rule verifies for `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.sni {
            Some(n) => Ok(n.clone()),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| format!("`{host}` is not a valid server name")),
        }
    }
}

pub(super) fn path_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
}

/// The rule for a destination: the longest match wins. With `path = None` (a `CONNECT`, where
/// the path is not known yet) every path prefix matches.
pub fn select<'a>(rules: &'a [EgressRule], d: &Destination<'_>) -> Option<&'a EgressRule> {
    rules
        .iter()
        .filter_map(|r| r.score(d).map(|s| (s, r)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, r)| r)
}

/// Where the forward proxy may connect.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// Host pattern.
    pub host: HostPattern,
    /// Port; `None` allows any.
    pub port: Option<u16>,
}

/// Host (lower case, without brackets) and port of an authority, the scheme's default port when
/// it names none.
pub fn split_authority(a: &http::uri::Authority, default_port: u16) -> (String, u16) {
    let host = a.host().trim_start_matches('[').trim_end_matches(']');
    // `host.` is `host` (a fully qualified name): one spelling for rules, minting and gates.
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (host, a.port_u16().unwrap_or(default_port))
}

/// Whether an authority a client sent names a host the proxy will act on: no user information,
/// a port of plain digits (no sign, no leading zero), and a host that is an IP address or a
/// DNS name (letters, digits, `-`, `_`, non-empty labels; no `*`).
pub fn valid_authority(a: &http::uri::Authority) -> bool {
    if a.as_str().contains('@') {
        return false;
    }
    if let Some(p) = a.port()
        && (p.as_str().is_empty()
            || !p.as_str().bytes().all(|b| b.is_ascii_digit())
            || (p.as_str().len() > 1 && p.as_str().starts_with('0')))
    {
        return false;
    }
    let (host, _) = split_authority(a, 0);
    valid_host(&host)
}

/// Whether `host` (as [`split_authority`] gives it) is an IP address or a DNS name.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The port an `http://` URL is originated to over https: 80 becomes 443, any other port is
/// kept (and an `https://` URL's port is its own).
pub fn tls_port(scheme: &str, port: u16) -> u16 {
    if scheme == "http" && port == 80 {
        443
    } else {
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(s: &str) -> http::uri::Authority {
        s.parse().unwrap()
    }

    #[test]
    fn authorities_a_client_sends_are_acted_on_only_in_plain_form() {
        for ok in [
            "localhost:443",
            "a-b.example:8443",
            "127.0.0.1:5000",
            "[::1]:443",
            "LocalHost.:443",
        ] {
            assert!(valid_authority(&authority(ok)), "{ok}");
        }
        for bad in [
            "user@localhost:443",
            "evil.com%2F@localhost:443",
            "*.localhost:443",
            "localhost:024031",
            "a..b:443",
            "bad_host!:443",
        ] {
            let parsed: Result<http::uri::Authority, _> = bad.parse();
            if let Ok(a) = parsed {
                assert!(!valid_authority(&a), "{bad}");
            }
        }
        // One trailing dot is the same host.
        assert_eq!(
            split_authority(&authority("LocalHost.:8443"), 443),
            ("localhost".to_owned(), 8443)
        );
    }
}
