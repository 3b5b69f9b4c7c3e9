//! `[[ingress]]` sections: HTTP listeners, their TLS settings and routes.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::forward::{Format, ProxyInfo};
use certgate_pki::forwarded::InputFormat;
use certgate_pki::{CertHash, SpkiHash, TrustBundle};
use certgate_proxy::front::{Cidr, FrontProxy, OnUntrusted};
use certgate_proxy::normal::{EncodedSlashes, Underscores};
use certgate_proxy::{Condition, Glob, IngressConfig, Limits, Route, Rule, Upstream};
use certgate_tls::SniPattern;
use serde::Deserialize;
use toml::Spanned;

use super::listener::TlsFields;
use super::{ConfiguredIdentity, Resolver};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngress {
    name: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    #[serde(default)]
    sni: BTreeMap<String, Spanned<String>>,
    client_auth: Option<Spanned<String>>,
    trust: Option<Spanned<String>>,
    min_tls: Option<Spanned<String>>,
    forward: Option<Spanned<Vec<String>>>,
    x_forwarded: Option<bool>,
    forward_unverified: Option<bool>,
    max_connections: Option<Spanned<u64>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    header_timeout_secs: Option<Spanned<u64>>,
    max_header_bytes: Option<Spanned<u64>>,
    drain_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    upstream_timeout_secs: Option<Spanned<u64>>,
    max_body_bytes: Option<Spanned<u64>>,
    underscores: Option<Spanned<String>>,
    require_sni: Option<bool>,
    recheck_connections: Option<bool>,
    forwarded_cert: Option<Spanned<RawFront>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    host: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    #[serde(default)]
    require_client_cert: bool,
    #[serde(default)]
    require_verified: bool,
    #[serde(default)]
    allow: Vec<Spanned<RawRule>>,
    forward: Option<Spanned<Vec<String>>>,
    encoded_slashes: Option<Spanned<String>>,
    upgrades: Option<Spanned<Vec<String>>>,
    upstream_trust: Option<Spanned<String>>,
    upstream_identity: Option<Spanned<String>>,
    forwarded_cert: Option<Spanned<RawFront>>,
}

/// `forwarded_cert = { format = "nginx", trusted_proxies = ["10.0.0.0/8"], ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFront {
    format: Option<String>,
    header: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    trusted_proxy_allow: Vec<Spanned<RawRule>>,
    on_untrusted: Option<String>,
}

/// One `allow` table: condition names to values, and optionally `verified = false`.
pub(super) type RawRule = BTreeMap<String, toml::Value>;

/// A resolved `[[ingress]]`: where to listen and what to serve there.
#[derive(Debug)]
pub struct Ingress {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The listener, ready to serve.
    pub config: Arc<IngressConfig>,
}

/// What a route inherits from its `[[ingress]]`.
struct ListenerDefaults<'a> {
    forward: &'a [Format],
    front: Option<&'a FrontProxy>,
    has_trust: bool,
}

impl Resolver<'_> {
    pub(super) fn ingresses(
        &mut self,
        raw: &[Spanned<RawIngress>],
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        seen: &mut HashSet<String>,
    ) -> Vec<Ingress> {
        let mut out = Vec::new();
        for (i, section) in raw.iter().enumerate() {
            let at = section.span().start;
            let raw = section.get_ref();
            let Some(name) = self.name("ingress", i, raw.name.as_ref(), at, seen) else {
                continue;
            };
            if let Some(ingress) = self.ingress(&name, raw, at, identities, trusts) {
                out.push(ingress);
            }
        }
        out
    }

    fn ingress(
        &mut self,
        name: &str,
        raw: &RawIngress,
        at: usize,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Ingress> {
        let prefix = format!("ingress.{name}");
        let errors_before = self.errors.len();
        let listen = self.listen(raw.listen.as_ref(), at, &prefix);
        let fields = TlsFields {
            identity: raw.identity.as_ref(),
            sni: &raw.sni,
            client_auth: raw.client_auth.as_ref(),
            trust: raw.trust.as_ref(),
            min_tls: raw.min_tls.as_ref(),
        };
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = self.listener_tls(&prefix, at, &fields, alpn, identities, trusts);
        let default_forward = match &raw.forward {
            Some(f) => self.formats(f, &format!("{prefix}.forward")),
            None => vec![Format::Rfc9440],
        };
        let mut limits = Limits::default();
        if let Some(v) = &raw.max_connections {
            limits.max_connections = self
                .positive(v, &format!("{prefix}.max_connections"))
                .map_or(limits.max_connections, |n| n as usize);
        }
        self.secs(
            &raw.handshake_timeout_secs,
            &format!("{prefix}.handshake_timeout_secs"),
            &mut limits.handshake_timeout,
        );
        self.secs(
            &raw.header_timeout_secs,
            &format!("{prefix}.header_timeout_secs"),
            &mut limits.header_timeout,
        );
        self.secs(
            &raw.idle_timeout_secs,
            &format!("{prefix}.idle_timeout_secs"),
            &mut limits.idle_timeout,
        );
        self.secs(
            &raw.drain_timeout_secs,
            &format!("{prefix}.drain_timeout_secs"),
            &mut limits.drain_timeout,
        );
        self.secs(
            &raw.upstream_timeout_secs,
            &format!("{prefix}.upstream_timeout_secs"),
            &mut limits.upstream_timeout,
        );
        if let Some(v) = &raw.max_body_bytes {
            limits.max_body_bytes = self.positive(v, &format!("{prefix}.max_body_bytes"));
        }
        if let Some(v) = &raw.max_header_bytes {
            limits.max_header_bytes = self
                .positive(v, &format!("{prefix}.max_header_bytes"))
                .unwrap_or(65536) as usize;
        }
        // A listener-wide front-proxy section applies to every route without its own.
        let default_front = raw
            .forwarded_cert
            .as_ref()
            .and_then(|f| self.front(f, &prefix, raw.trust.is_some()));
        let mut routes = Vec::new();
        if raw.route.is_empty() {
            self.error(
                Some(at),
                &format!("{prefix}.route"),
                "no routes; add at least one [[ingress.route]]",
            );
        }
        for (j, r) in raw.route.iter().enumerate() {
            let listener = ListenerDefaults {
                forward: &default_forward,
                front: default_front.as_ref(),
                has_trust: raw.trust.is_some(),
            };
            if let Some(route) = self.route(
                r,
                &format!("{prefix}.route[{j}]"),
                &listener,
                identities,
                trusts,
            ) {
                routes.push(route);
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let underscores = match raw.underscores.as_ref().map(|u| (u, u.get_ref().as_str())) {
            None | Some((_, "drop")) => Underscores::Drop,
            Some((_, "reject")) => Underscores::Reject,
            Some((_, "allow")) => Underscores::Allow,
            Some((u, other)) => {
                self.error(
                    Some(u.span().start),
                    &format!("{prefix}.underscores"),
                    format!("`{other}` is not `drop`, `reject` or `allow`"),
                );
                return None;
            }
        };
        let (listen, tls) = (listen?, tls?);
        let forward_unverified = raw.forward_unverified.unwrap_or(false);
        if forward_unverified {
            self.notes.push(format!(
                "{prefix}.forward_unverified: RFC 9440, XFCC and Traefik fields will carry certificates nobody verified, and the app cannot tell them from verified ones; use the `certgate` or `nginx` format, which say so"
            ));
        } else if tls.trust.is_none()
            && tls.client_auth.requests()
            && !default_forward.is_empty()
            && default_forward.iter().all(|f| !f.states_verification())
        {
            self.notes.push(format!(
                "{prefix}: this listener verifies no certificate (no `trust`), and `forward` has only formats that carry verified certificates: the app will receive none; add \"certgate\" or \"nginx\" to `forward` (they say whether a certificate verified), or set `forward_unverified = true`"
            ));
        }
        let mut front_headers: Vec<http::HeaderName> = routes
            .iter()
            .filter_map(|r| r.front.as_ref())
            .flat_map(|f| f.headers.iter().cloned())
            .collect();
        front_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        front_headers.dedup();
        let config = IngressConfig {
            name: name.to_owned(),
            tls: tls.server_config,
            client_auth: tls.client_auth,
            trust: tls.trust,
            routes,
            proxy_info: ProxyInfo { uris: tls.own_uris },
            x_forwarded: raw.x_forwarded.unwrap_or(true),
            forward_unverified,
            limits,
            underscores,
            front_headers,
            require_sni: raw.require_sni.unwrap_or(false),
            recheck_connections: raw.recheck_connections.unwrap_or(true),
        };
        Some(Ingress {
            listen,
            config: Arc::new(config),
        })
    }

    /// `allow = [{ cn = "...", spiffe = "..." }, ...]`: each table an AND of conditions. Name
    /// conditions match verified chains only, unless the table says `verified = false` (noted,
    /// for `certgate check` to warn about).
    pub(super) fn rules(&mut self, raw: &[Spanned<RawRule>], prefix: &str) -> Vec<Rule> {
        let mut allow = Vec::new();
        for (k, rule) in raw.iter().enumerate() {
            let at = Some(rule.span().start);
            let key = format!("{prefix}.allow[{k}]");
            let mut conds = Vec::new();
            let mut names_unverified = false;
            for (field, value) in rule.get_ref() {
                if field == "verified" {
                    match value.as_bool() {
                        Some(v) => names_unverified = !v,
                        None => {
                            self.error(at, &format!("{key}.verified"), "must be `true` or `false`")
                        }
                    }
                    continue;
                }
                let Some(value) = value.as_str() else {
                    self.error(at, &format!("{key}.{field}"), "must be a string");
                    continue;
                };
                match condition(field, value) {
                    Ok(c) => conds.push(c),
                    Err(msg) => self.error(at, &format!("{key}.{field}"), msg),
                }
            }
            if conds.is_empty() {
                self.error(
                    at,
                    &key,
                    "an empty rule would allow every certificate; list at least one condition",
                );
            }
            if names_unverified && conds.iter().any(Condition::is_name) {
                self.notes.push(format!(
                    "{key}: `verified = false` lets this rule match names in certificates nobody verified; anyone can make a certificate with any name (use `cert_sha256` or `spki_sha256` pins for unverified certificates)"
                ));
            }
            allow.push(Rule {
                conditions: conds,
                names_unverified,
            });
        }
        allow
    }

    /// A `*_secs` key: when set (and positive), replaces the default in `into`.
    pub(super) fn secs(&mut self, v: &Option<Spanned<u64>>, key: &str, into: &mut Duration) {
        if let Some(secs) = v.as_ref().and_then(|v| self.positive(v, key)) {
            *into = Duration::from_secs(secs);
        }
    }

    pub(super) fn positive(&mut self, v: &Spanned<u64>, key: &str) -> Option<u64> {
        if *v.get_ref() == 0 {
            self.error(Some(v.span().start), key, "must be greater than 0");
            return None;
        }
        Some(*v.get_ref())
    }

    pub(super) fn formats(&mut self, f: &Spanned<Vec<String>>, key: &str) -> Vec<Format> {
        let mut out = Vec::new();
        for name in f.get_ref() {
            match Format::parse(name) {
                Some(fmt) => out.push(fmt),
                None => {
                    let names: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
                    self.error(
                        Some(f.span().start),
                        key,
                        format!(
                            "`{name}` is not a forwarding format; use {}",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        out
    }

    /// `upstream = "http://host:port" | "https://host:port" | "unix:/path" | "echo"`, with
    /// `upstream_trust` (required for https) and `upstream_identity` (optional client certificate).
    pub(super) fn upstream(
        &mut self,
        u: &Spanned<String>,
        (upstream_trust, upstream_identity): (Option<&Spanned<String>>, Option<&Spanned<String>>),
        prefix: &str,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Upstream> {
        let key = format!("{prefix}.upstream");
        let s = u.get_ref().as_str();
        let at = u.span().start;
        if s == "echo" {
            return Some(Upstream::Echo);
        }
        if s == "forward-auth" {
            return Some(Upstream::ForwardAuth);
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                self.error(
                    Some(at),
                    &key,
                    format!("`{s}`: a Unix socket upstream is `unix:/absolute/path`"),
                );
                return None;
            }
            return Some(Upstream::Remote {
                authority: http::uri::Authority::from_static("localhost"),
                client: Box::new(self.pools.unix(path.into())),
            });
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((sc @ ("http" | "https"), rest)) => (sc, rest),
            _ => {
                self.error(Some(at), &key, format!("`{s}`: upstreams are `http://host:port`, `https://host:port`, `unix:/path` or `echo`"));
                return None;
            }
        };
        let authority_text = rest.trim_end_matches('/');
        if authority_text.contains('/') {
            self.error(
                Some(at),
                &key,
                format!("`{s}`: an upstream is a scheme and authority, without a path"),
            );
            return None;
        }
        let Ok(authority) = authority_text.parse::<http::uri::Authority>() else {
            self.error(
                Some(at),
                &key,
                format!("`{s}` is not a valid {scheme}://host:port"),
            );
            return None;
        };
        if scheme == "http" {
            if upstream_trust.is_some() || upstream_identity.is_some() {
                self.error(
                    Some(at),
                    &key,
                    "`upstream_trust`/`upstream_identity` need an https:// upstream",
                );
                return None;
            }
            return Some(Upstream::Remote {
                authority,
                client: Box::new(self.pools.http()),
            });
        }
        let Some(trust_name) = upstream_trust else {
            self.error(
                Some(at),
                &format!("{prefix}.upstream_trust"),
                "an https:// upstream needs `upstream_trust`: the [[trust]] its server certificate must chain to",
            );
            return None;
        };
        let trust = trusts.iter().find(|t| t.name() == trust_name.get_ref());
        let Some(trust) = trust else {
            self.unknown("trust", &format!("{prefix}.upstream_trust"), trust_name);
            return None;
        };
        self.server_trusts.insert(trust.name().to_owned());
        let identity = match upstream_identity {
            None => None,
            Some(name) => match identities.iter().find(|i| i.name == *name.get_ref()) {
                Some(i) => Some(&i.credential),
                None => {
                    self.unknown("identity", &format!("{prefix}.upstream_identity"), name);
                    return None;
                }
            },
        };
        match self.pools.https(trust, identity) {
            Ok(client) => Some(Upstream::Remote {
                authority,
                client: Box::new(client),
            }),
            Err(e) => {
                self.error(Some(at), &key, e.to_string());
                None
            }
        }
    }

    /// A route's `host`: a host name or `*.domain` pattern; `None` (any host) when not set.
    pub(super) fn route_host(
        &mut self,
        h: Option<&Spanned<String>>,
        prefix: &str,
    ) -> Option<SniPattern> {
        let h = h?;
        let p = SniPattern::parse(h.get_ref());
        if p.is_none() {
            self.error(
                Some(h.span().start),
                &format!("{prefix}.host"),
                format!("`{}` is not a host name or `*.domain` pattern", h.get_ref()),
            );
        }
        p
    }

    /// A route's `path` prefix: starts with `/`; `/` when not set. Put in the normal form
    /// requests are matched in (non-ASCII text and spaces percent-encoded, unreserved and
    /// segment characters decoded, dot segments resolved), so that every spelling of the path a
    /// client can send reaches this route and not a wider one.
    pub(super) fn route_path(&mut self, p: Option<&Spanned<String>>, prefix: &str) -> String {
        let Some(p) = p else {
            return "/".to_owned();
        };
        let key = format!("{prefix}.path");
        let at = Some(p.span().start);
        let raw = p.get_ref();
        if !raw.starts_with('/') {
            self.error(at, &key, format!("`{raw}` must start with `/`"));
            return "/".to_owned();
        }
        if raw.contains(['?', '#', ';']) || raw.chars().any(char::is_control) {
            self.error(
                at,
                &key,
                format!("`{raw}`: a route path matches a path only; `?`, `#`, `;` and control characters cannot appear in what it is compared with"),
            );
            return "/".to_owned();
        }
        let encoded = certgate_proxy::normal::encode_non_ascii(raw, true);
        match certgate_proxy::normal::path(&encoded) {
            // `%3B` is data to every app that decodes its path, while a raw `;` starts segment
            // parameters, which matching leaves out: `/k;l` would match `/k` and reach the app
            // as the same path as `/k%3Bl`.
            Ok(n) if n.forward.to_ascii_uppercase().contains("%3B") => {
                self.error(at, &key, format!("`{raw}`: `%3B` (`;`) cannot be matched"));
                "/".to_owned()
            }
            Ok(n) if n.encoded_slash => {
                self.error(
                    at,
                    &key,
                    format!("`{raw}`: an encoded slash (`%2F`) cannot be matched"),
                );
                "/".to_owned()
            }
            Ok(n) => n.forward,
            Err(why) => {
                self.error(at, &key, format!("`{raw}`: {why}"));
                "/".to_owned()
            }
        }
    }

    fn route(
        &mut self,
        raw: &Spanned<RawRoute>,
        prefix: &str,
        listener: &ListenerDefaults<'_>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Route> {
        let at = raw.span().start;
        let r = raw.get_ref();
        let errors_before = self.errors.len();
        let host = self.route_host(r.host.as_ref(), prefix);
        let path = self.route_path(r.path.as_ref(), prefix);
        let upstream = match &r.upstream {
            None => {
                self.error(
                    Some(at),
                    &format!("{prefix}.upstream"),
                    "missing; e.g. `upstream = \"http://127.0.0.1:8080\"` or `\"echo\"`",
                );
                None
            }
            Some(u) => self.upstream(
                u,
                (r.upstream_trust.as_ref(), r.upstream_identity.as_ref()),
                prefix,
                identities,
                trusts,
            ),
        };
        let allow = self.rules(&r.allow, prefix);
        let front = match &r.forwarded_cert {
            Some(f) => self.front(f, prefix, listener.has_trust),
            None => listener.front.cloned(),
        };
        let forward = match &r.forward {
            Some(f) => self.formats(f, &format!("{prefix}.forward")),
            None => listener.forward.to_vec(),
        };
        let encoded_slashes = match r
            .encoded_slashes
            .as_ref()
            .map(|e| (e, e.get_ref().as_str()))
        {
            None | Some((_, "reject")) => EncodedSlashes::Reject,
            Some((_, "keep")) => EncodedSlashes::Keep,
            Some((e, other)) => {
                self.error(
                    Some(e.span().start),
                    &format!("{prefix}.encoded_slashes"),
                    format!("`{other}` is not `reject` or `keep`"),
                );
                EncodedSlashes::Reject
            }
        };
        let upgrades = match &r.upgrades {
            None => vec!["websocket".to_owned()],
            Some(list) => self.upgrades(list, &format!("{prefix}.upgrades")),
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let name = r.name.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                r.host.as_ref().map_or("*", |h| h.get_ref().as_str()),
                path
            )
        });
        Some(Route {
            name,
            host,
            path,
            upstream: upstream?,
            access: certgate_proxy::Access {
                require_client_cert: r.require_client_cert,
                require_verified: r.require_verified,
                allow,
            },
            forward,
            front,
            encoded_slashes,
            upgrades,
        })
    }

    /// `upgrades = ["websocket", ...]`: protocol names (RFC 9110 §7.8 tokens), never `h2c`.
    fn upgrades(&mut self, list: &Spanned<Vec<String>>, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for p in list.get_ref() {
            let name = p.to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if name == "h2c" {
                self.error(
                    Some(list.span().start),
                    key,
                    "`h2c` is never relayed: after its 101 the client would speak HTTP/2 to the upstream past every rule (HTTP/2 reaches certgate by ALPN instead)",
                );
            } else if !token {
                self.error(
                    Some(list.span().start),
                    key,
                    format!("`{p}` is not a protocol name (e.g. `websocket`)"),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    fn front(
        &mut self,
        raw: &Spanned<RawFront>,
        prefix: &str,
        has_trust: bool,
    ) -> Option<FrontProxy> {
        let key = format!("{prefix}.forwarded_cert");
        let at = raw.span().start;
        let f = raw.get_ref();
        let before = self.errors.len();
        if !has_trust {
            self.error(Some(at), &key, "forwarded certificates are always re-verified, so the listener needs `trust = \"...\"`");
        }
        let names: Vec<&str> = InputFormat::ALL.iter().map(|(n, _)| *n).collect();
        let format = match f.format.as_deref().map(|n| (n, InputFormat::parse(n))) {
            Some((_, Some(fmt))) => Some(fmt),
            Some((n, None)) => {
                self.error(
                    Some(at),
                    &format!("{key}.format"),
                    format!("`{n}` is not one of {}", names.join(", ")),
                );
                None
            }
            None => {
                self.error(
                    Some(at),
                    &format!("{key}.format"),
                    format!("missing; one of {}", names.join(", ")),
                );
                None
            }
        };
        let headers = match &f.header {
            Some(h) => Some(vec![h.clone()]),
            None => format.and_then(|f| {
                let names: &[&str] = match f {
                    InputFormat::Rfc9440 => &["client-cert"],
                    InputFormat::Xfcc => &["x-forwarded-client-cert"],
                    InputFormat::Nginx => &["x-ssl-client-escaped-cert"],
                    InputFormat::Traefik => &["x-forwarded-tls-client-cert"],
                    // Passthrough mode (whole chain), then verify mode (leaf).
                    InputFormat::AwsAlb => {
                        &["x-amzn-mtls-clientcert", "x-amzn-mtls-clientcert-leaf"]
                    }
                    InputFormat::Cloudflare => &["cf-client-cert-der-base64"],
                    InputFormat::Base64Der => return None,
                };
                Some(names.iter().map(|n| (*n).to_owned()).collect())
            }),
        };
        let header = match headers.map(|hs| {
            hs.iter()
                .map(|h| http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                self.error(
                    Some(at),
                    &format!("{key}.header"),
                    "not a valid header name",
                );
                None
            }
            None => {
                if format.is_some() {
                    self.error(
                        Some(at),
                        &format!("{key}.header"),
                        "missing; `base64-der` has no usual header name",
                    );
                }
                None
            }
        };
        let mut networks = Vec::new();
        for n in &f.trusted_proxies {
            match Cidr::parse(n) {
                Some(c) => networks.push(c),
                None => self.error(
                    Some(at),
                    &format!("{key}.trusted_proxies"),
                    format!("`{n}` is not an address or address/prefix"),
                ),
            }
        }
        let allow = self.rules(&f.trusted_proxy_allow, &key);
        if networks.is_empty() && allow.is_empty() {
            self.error(
                Some(at),
                &key,
                "say which front proxies to trust: `trusted_proxies` (addresses) and/or `trusted_proxy_allow` (their mTLS identity)",
            );
        }
        let on_untrusted = match f.on_untrusted.as_deref() {
            None | Some("strip") => OnUntrusted::Strip,
            Some("reject") => OnUntrusted::Reject,
            Some(other) => {
                self.error(
                    Some(at),
                    &format!("{key}.on_untrusted"),
                    format!("`{other}` is not `strip` or `reject`"),
                );
                OnUntrusted::Strip
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(FrontProxy {
            headers: header?,
            format: format?,
            networks,
            allow,
            on_untrusted,
        })
    }
}

fn condition(field: &str, value: &str) -> Result<Condition, String> {
    Ok(match field {
        "cn" => Condition::Cn(Glob::new(value)),
        "dns" => Condition::Dns(Glob::new(value)),
        "uri" => Condition::Uri(Glob::new(value)),
        "spiffe" => Condition::Spiffe(Glob::new(value)),
        "email" => Condition::Email(Glob::new(value)),
        "ip" => Condition::Ip(Glob::new(value)),
        "issuer" => Condition::Issuer(Glob::new(value)),
        "spki_sha256" => Condition::SpkiSha256(
            SpkiHash::from_hex(value).ok_or_else(|| format!("`{value}` is not 64 hex digits"))?,
        ),
        "cert_sha256" => Condition::CertSha256(
            CertHash::from_hex(value).ok_or_else(|| format!("`{value}` is not 64 hex digits"))?,
        ),
        other => {
            return Err(format!(
                "unknown condition `{other}`; use cn, dns, uri, spiffe, email, ip, issuer, spki_sha256 or cert_sha256"
            ));
        }
    })
}
