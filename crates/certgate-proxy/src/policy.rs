//! Routes and identity policy: a pure function of (route, client identity, request facts).

use std::net::IpAddr;

use certgate_pki::forward::Format;
use certgate_pki::{CertHash, ClientCert, SpkiHash};
use certgate_tls::SniPattern;

/// A glob: `*` matches any run of characters (including none); everything else literally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A glob from its text.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob_match(p: &[u8], t: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// One condition on the client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The subject's common name.
    Cn(Glob),
    /// Any DNS SAN (compared lower-case).
    Dns(Glob),
    /// Any URI SAN.
    Uri(Glob),
    /// The SPIFFE ID.
    Spiffe(Glob),
    /// Any email SAN.
    Email(Glob),
    /// Any IP SAN, in its usual text form.
    Ip(Glob),
    /// The SubjectPublicKeyInfo hash.
    SpkiSha256(SpkiHash),
    /// The certificate hash.
    CertSha256(CertHash),
    /// The issuer (RFC 4514 string).
    Issuer(Glob),
}

/// A rule allows when all its conditions hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule(pub Vec<Condition>);

/// Where a route sends requests.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// An HTTP/1.1 server reached over TCP, TLS or a Unix socket.
    Remote {
        /// The authority requests carry (`localhost` for Unix sockets).
        authority: http::uri::Authority,
        /// The pooled client (its connector decides TCP, TLS or Unix).
        client: Box<crate::upstream::UpstreamClient>,
    },
    /// The built-in echo service: answers with the identity headers it received, as JSON.
    Echo,
    /// A forward-auth endpoint: 200 with identity headers when policy allows, 401/403 otherwise.
    ForwardAuth,
    /// A service inside the process (e.g. the transparency log API).
    Local(std::sync::Arc<dyn crate::local::LocalService>),
}

/// A route of an HTTP listener.
#[derive(Clone, Debug)]
pub struct Route {
    /// Name for logs and metrics (`host+path` when not set).
    pub name: String,
    /// Host to match; `None` matches any.
    pub host: Option<SniPattern>,
    /// Path prefix to match (`/` matches everything).
    pub path: String,
    /// Where requests go.
    pub upstream: Upstream,
    /// A client certificate must be presented.
    pub require_client_cert: bool,
    /// The client certificate must have verified against the listener's trust.
    pub require_verified: bool,
    /// When non-empty, a client certificate must match at least one rule.
    pub allow: Vec<Rule>,
    /// Identity formats sent upstream.
    pub forward: Vec<Format>,
    /// Take the client certificate from a trusted front proxy's header instead of TLS.
    pub front: Option<crate::front::FrontProxy>,
}

impl Route {
    /// Whether the route needs a client certificate at all.
    pub fn needs_client_cert(&self) -> bool {
        self.require_client_cert || self.require_verified || !self.allow.is_empty()
    }

    fn path_matches(&self, path: &str) -> bool {
        let prefix = self.path.trim_end_matches('/');
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Picks the route for a request: the most specific host (exact, then wildcard, then any), then
/// the longest path prefix. Path prefixes match whole segments (`/admin` matches `/admin/x`,
/// not `/administrator`).
pub fn select<'r>(routes: &'r [Route], host: Option<&str>, path: &str) -> Option<&'r Route> {
    let host_rank = |r: &Route| -> Option<u8> {
        match (&r.host, host) {
            (None, _) => Some(0),
            (Some(p @ SniPattern::Exact(_)), Some(h)) if p.matches(h) => Some(2),
            (Some(p @ SniPattern::Wildcard(_)), Some(h)) if p.matches(h) => Some(1),
            _ => None,
        }
    };
    routes
        .iter()
        .filter(|r| r.path_matches(path))
        .filter_map(|r| host_rank(r).map(|rank| (rank, r.path.trim_end_matches('/').len(), r)))
        .max_by_key(|(rank, len, _)| (*rank, *len))
        .map(|(_, _, r)| r)
}

/// The outcome of policy for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Answer with this status and a short reason (no secrets).
    Deny {
        /// 401, 403 or 421.
        status: u16,
        /// Why, for the response body and the log.
        reason: String,
    },
}

fn deny(status: u16, reason: impl Into<String>) -> Decision {
    Decision::Deny {
        status,
        reason: reason.into(),
    }
}

/// Applies a route's policy. `host` is the request's host (lower-case, no port), `sni` the TLS
/// server name of the connection.
pub fn decide(
    route: &Route,
    client: &ClientCert,
    host: Option<&str>,
    sni: Option<&str>,
) -> Decision {
    if !route.needs_client_cert() {
        return Decision::Allow;
    }
    // The certificate was requested for the SNI name; a request for another host on the same
    // connection must not borrow it (connection reuse across virtual hosts).
    if let (Some(h), Some(s)) = (host, sni)
        && !h.eq_ignore_ascii_case(s)
    {
        return deny(
            421,
            "misdirected request: the Host differs from the TLS server name",
        );
    }
    identity(
        route.require_client_cert,
        route.require_verified,
        &route.allow,
        client,
    )
}

/// The identity part of a policy, shared by HTTP routes and TCP tunnels.
pub fn identity(
    require_client_cert: bool,
    require_verified: bool,
    allow: &[Rule],
    client: &ClientCert,
) -> Decision {
    if !(require_client_cert || require_verified || !allow.is_empty()) {
        return Decision::Allow;
    }
    let Some(peer) = client.presented() else {
        return deny(401, "a client certificate is required");
    };
    if require_verified && peer.verified().is_none() {
        let why = match &peer.verification {
            certgate_pki::Verification::Failed { rejection, .. } => rejection.reason.code(),
            _ => "no trust configured",
        };
        return deny(
            403,
            format!("the client certificate is not verified ({why})"),
        );
    }
    if !allow.is_empty() && !allow.iter().any(|rule| rule_matches(rule, peer)) {
        return deny(403, "the client certificate is not allowed on this route");
    }
    Decision::Allow
}

fn rule_matches(rule: &Rule, peer: &certgate_pki::PeerIdentity) -> bool {
    let id = &peer.identity;
    let any = |values: &[String], g: &Glob| values.iter().any(|v| g.matches(v));
    rule.0.iter().all(|c| match c {
        Condition::Cn(g) => id.common_name.as_deref().is_some_and(|cn| g.matches(cn)),
        Condition::Dns(g) => {
            let lower = Glob::new(&g.as_str().to_ascii_lowercase());
            id.sans
                .dns
                .iter()
                .any(|d| lower.matches(&d.to_ascii_lowercase()))
        }
        Condition::Uri(g) => any(&id.sans.uri, g),
        Condition::Spiffe(g) => id.spiffe_id.as_ref().is_some_and(|s| g.matches(s.as_str())),
        Condition::Email(g) => any(&id.sans.email, g),
        Condition::Ip(g) => id
            .sans
            .ip
            .iter()
            .any(|ip: &IpAddr| g.matches(&ip.to_string())),
        Condition::SpkiSha256(h) => id.spki_sha256 == *h,
        Condition::CertSha256(h) => id.cert_sha256 == *h,
        Condition::Issuer(g) => g.matches(&id.issuer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("spiffe://home.example/admin/*");
        assert!(g.matches("spiffe://home.example/admin/alice"));
        assert!(g.matches("spiffe://home.example/admin/"));
        assert!(!g.matches("spiffe://home.example/user/alice"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
        // Pathological patterns stay fast.
        let long = "a".repeat(10_000);
        assert!(!Glob::new("*a*a*a*a*a*a*b").matches(&long));
    }

    fn route(path: &str, host: Option<&str>) -> Route {
        Route {
            name: path.to_owned(),
            host: host.and_then(SniPattern::parse),
            path: path.to_owned(),
            upstream: Upstream::Echo,
            require_client_cert: false,
            require_verified: false,
            allow: vec![],
            forward: vec![],
            front: None,
        }
    }

    #[test]
    fn selection_prefers_specific_host_then_longest_path() {
        let routes = vec![
            route("/", None),
            route("/admin", None),
            route("/", Some("*.example.com")),
            route("/api", Some("api.example.com")),
        ];
        let pick = |h: Option<&str>, p: &str| {
            select(&routes, h, p).map(|r| (r.host.clone(), r.path.clone()))
        };
        assert_eq!(pick(None, "/admin/x").unwrap().1, "/admin");
        assert_eq!(pick(None, "/administrator").unwrap().1, "/");
        assert_eq!(
            pick(Some("www.example.com"), "/admin").unwrap().0,
            SniPattern::parse("*.example.com")
        );
        assert_eq!(pick(Some("api.example.com"), "/api/v1").unwrap().1, "/api");
        assert_eq!(
            pick(Some("api.example.com"), "/other").unwrap().0,
            SniPattern::parse("*.example.com")
        );
    }
}
