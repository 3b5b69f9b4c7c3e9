//! `[egress]`: the forward proxy, its destination rules, and `[[egress.tunnel]]`s.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use certgate_pki::{SpkiHash, TrustBundle};
use certgate_proxy::egress::{
    Allowed, EgressConfig, EgressRule, EgressTunnelConfig, HostPattern, Interceptor,
};
use certgate_tls::egress::{ChooseIdentity, ClientIdentity, EgressTls};
use rustls_pki_types::ServerName;
use serde::Deserialize;
use toml::Spanned;

use super::{ConfiguredIdentity, Resolver};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    allow_non_loopback: bool,
    intercept_ca: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    tunnel: Vec<Spanned<RawEgressTunnel>>,
    max_connections: Option<Spanned<u64>>,
    header_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    drain_timeout_secs: Option<Spanned<u64>>,
}

/// The TLS keys a rule and a tunnel share. (serde's `flatten` does not combine with
/// `deny_unknown_fields`, so both raw sections list them.)
macro_rules! client_tls_fields {
    ($(#[$m:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$m])*
        struct $name {
            name: Option<Spanned<String>>,
            identity: Option<Spanned<String>>,
            #[serde(default)]
            identities: Vec<Spanned<String>>,
            trust: Option<Spanned<String>>,
            #[serde(default)]
            system_roots: bool,
            pin_spki_sha256: Option<Spanned<String>>,
            sni: Option<Spanned<String>>,
            #[serde(default)]
            alpn: Vec<String>,
            $($extra)*
        }

        impl $name {
            fn client_tls(&self) -> ClientTlsFields<'_> {
                ClientTlsFields {
                    identity: self.identity.as_ref(),
                    identities: &self.identities,
                    trust: self.trust.as_ref(),
                    system_roots: self.system_roots,
                    pin: self.pin_spki_sha256.as_ref(),
                    sni: self.sni.as_ref(),
                    alpn: &self.alpn,
                }
            }
        }
    };
}

client_tls_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRule {
        url: Option<Spanned<String>>,
        trust_policy: Option<Spanned<String>>,
        #[serde(default)]
        trust_log_ca: Vec<Spanned<String>>,
        #[serde(default)]
        verify: Vec<Spanned<String>>,
        #[serde(default)]
        oci: Vec<Spanned<String>>,
        #[serde(default)]
        trust_force: bool,
        connect_to: Option<Spanned<String>>,
    }
}

client_tls_fields! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawEgressTunnel {
        listen: Option<Spanned<String>>,
        target: Option<Spanned<String>>,
    }
}

struct ClientTlsFields<'a> {
    identity: Option<&'a Spanned<String>>,
    identities: &'a [Spanned<String>],
    trust: Option<&'a Spanned<String>>,
    system_roots: bool,
    pin: Option<&'a Spanned<String>>,
    sni: Option<&'a Spanned<String>>,
    alpn: &'a [String],
}

/// A resolved client TLS setup.
struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    chooser: Arc<ChooseIdentity>,
    identities: Vec<String>,
    sni: Option<ServerName<'static>>,
}

/// A resolved `[[egress.tunnel]]`.
#[derive(Debug)]
pub struct EgressTunnel {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The tunnel, ready to serve.
    pub config: Arc<EgressTunnelConfig>,
}

/// The resolved `[egress]` section.
#[derive(Debug)]
pub struct Egress {
    /// Where the forward proxy listens; `None` when only rules (for `explain`) and tunnels are
    /// configured.
    pub listen: Option<SocketAddr>,
    /// The forward proxy and its rules.
    pub config: Arc<EgressConfig>,
    /// Tunnels.
    pub tunnels: Vec<EgressTunnel>,
}

impl Resolver<'_> {
    pub(super) fn egress(
        &mut self,
        raw: &Spanned<RawEgress>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        seen: &mut HashSet<String>,
    ) -> Option<Egress> {
        let at = raw.span().start;
        let raw = raw.get_ref();
        let before = self.errors.len();
        let listen = raw
            .listen
            .as_ref()
            .and_then(|l| self.listen(Some(l), at, "egress"));
        if let Some(addr) = listen {
            if !addr.ip().is_loopback() && !raw.allow_non_loopback {
                self.error(
                    raw.listen.as_ref().map(|l| l.span().start),
                    "egress.listen",
                    format!("{addr} is not a loopback address: anyone who reaches it could use certgate's client certificates; set `allow_non_loopback = true` if that is intended"),
                );
            }
            if !seen.insert("egress".to_owned()) {
                self.error(
                    Some(at),
                    "egress",
                    "the name `egress` is taken by another listener",
                );
            }
        }
        let interceptor = raw
            .intercept_ca
            .as_ref()
            .and_then(|dir| self.intercept_ca(dir));
        let mut allow = Vec::new();
        for a in &raw.allow {
            match parse_host_port(a.get_ref()) {
                Ok((host, port)) => allow.push(Allowed { host, port }),
                Err(e) => self.error(Some(a.span().start), "egress.allow", e),
            }
        }
        let mut rules = Vec::new();
        let mut rule_names = HashSet::new();
        for (i, r) in raw.rule.iter().enumerate() {
            let rat = r.span().start;
            let r = r.get_ref();
            let Some(name) = self.name("egress.rule", i, r.name.as_ref(), rat, &mut rule_names)
            else {
                continue;
            };
            let prefix = format!("egress.rule.{name}");
            let url = match &r.url {
                None => {
                    self.error(
                        Some(rat),
                        &format!("{prefix}.url"),
                        "missing; e.g. `url = \"https://*.internal.example/\"`",
                    );
                    None
                }
                Some(u) => match parse_rule_url(u.get_ref()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.error(Some(u.span().start), &format!("{prefix}.url"), e);
                        None
                    }
                },
            };
            let tls = self.client_tls(&prefix, rat, &name, &r.client_tls(), identities, trusts);
            let gate = self.gate(&prefix, rat, &name, r);
            if let (Some((host, port, path)), Some(tls)) = (url, tls) {
                let mut rule = EgressRule::new(
                    name,
                    host,
                    port,
                    path,
                    tls.config,
                    tls.chooser,
                    tls.identities,
                    tls.sni,
                );
                rule.gate = gate;
                let connect_to =
                    r.connect_to
                        .as_ref()
                        .and_then(|c| match parse_target(c.get_ref()) {
                            Ok(_) => Some(c.get_ref().clone()),
                            Err(e) => {
                                self.error(
                                    Some(c.span().start),
                                    &format!("{prefix}.connect_to"),
                                    e,
                                );
                                None
                            }
                        });
                rules.push(rule.with_connect_to(connect_to));
            }
        }
        let mut tunnels = Vec::new();
        for (i, t) in raw.tunnel.iter().enumerate() {
            let tat = t.span().start;
            let t = t.get_ref();
            let Some(name) = self.name("egress.tunnel", i, t.name.as_ref(), tat, seen) else {
                continue;
            };
            let prefix = format!("egress.tunnel.{name}");
            let listen = self.listen(t.listen.as_ref(), tat, &prefix);
            if let Some(addr) = listen
                && !addr.ip().is_loopback()
                && !raw.allow_non_loopback
            {
                self.error(
                    t.listen.as_ref().map(|l| l.span().start),
                    &format!("{prefix}.listen"),
                    format!("{addr} is not a loopback address: anyone who reaches it could use certgate's client certificates; set `egress.allow_non_loopback = true` if that is intended"),
                );
            }
            let target = match &t.target {
                None => {
                    self.error(
                        Some(tat),
                        &format!("{prefix}.target"),
                        "missing; e.g. `target = \"broker.example:8883\"`",
                    );
                    None
                }
                Some(v) => match parse_target(v.get_ref()) {
                    Ok(hp) => Some(hp),
                    Err(e) => {
                        self.error(Some(v.span().start), &format!("{prefix}.target"), e);
                        None
                    }
                },
            };
            let tls = self.client_tls(&prefix, tat, &name, &t.client_tls(), identities, trusts);
            let (Some(listen), Some((host, port)), Some(tls)) = (listen, target, tls) else {
                continue;
            };
            let server_name = match tls.sni.clone() {
                Some(n) => n,
                None => match ServerName::try_from(host.clone()) {
                    Ok(n) => n,
                    Err(_) => {
                        self.error(
                            Some(tat),
                            &format!("{prefix}.target"),
                            format!("`{host}` is not a valid server name; set `sni`"),
                        );
                        continue;
                    }
                },
            };
            tunnels.push(EgressTunnel {
                listen,
                config: Arc::new(EgressTunnelConfig {
                    name,
                    host,
                    port,
                    server_name,
                    origin: certgate_proxy::egress::fallback::Origin {
                        tls: tls.config,
                        chooser: tls.chooser,
                        remembered: Arc::default(),
                        connect_timeout: std::time::Duration::from_secs(10),
                        connect_to: None,
                        diagnose: false,
                    },
                    max_connections: 1024,
                    drain_timeout: std::time::Duration::from_secs(10),
                }),
            });
        }
        if let (Some(i), Some(dir)) = (&interceptor, &raw.intercept_ca) {
            self.check_interceptor(i, dir, &rules);
        }
        let mut config = EgressConfig::new("egress".to_owned(), rules, allow, interceptor);
        if let Some(v) = &raw.max_connections
            && let Some(n) = self.positive(v, "egress.max_connections")
        {
            config.max_connections = n as usize;
        }
        self.secs(
            &raw.header_timeout_secs,
            "egress.header_timeout_secs",
            &mut config.header_timeout,
        );
        self.secs(
            &raw.idle_timeout_secs,
            "egress.idle_timeout_secs",
            &mut config.idle_timeout,
        );
        self.secs(
            &raw.drain_timeout_secs,
            "egress.drain_timeout_secs",
            &mut config.drain_timeout,
        );
        if self.errors.len() > before {
            return None;
        }
        Some(Egress {
            listen,
            config: Arc::new(config),
            tunnels,
        })
    }

    fn intercept_ca(&mut self, dir: &Spanned<String>) -> Option<Arc<Interceptor>> {
        let key = "egress.intercept_ca";
        let base = self.path(dir.get_ref());
        let cert_path = base.join("ca.pem");
        let key_path = base.join("ca.key");
        if !cert_path.exists() || !key_path.exists() {
            self.error(
                Some(dir.span().start),
                key,
                format!(
                    "{} has no ca.pem and ca.key: create the interception CA with `certgate egress ca --dir {} --config <this file>`",
                    base.display(),
                    dir.get_ref()
                ),
            );
            return None;
        }
        // `read` resolves a path against the config's directory itself: give it the path as
        // written, not `base`, or a relative one is joined twice.
        let written = Path::new(dir.get_ref());
        let cert = Spanned::new(dir.span(), written.join("ca.pem").display().to_string());
        let (cert_bytes, origin) = self.read(&cert, key)?;
        let keyv = Spanned::new(dir.span(), written.join("ca.key").display().to_string());
        let (key_bytes, _) = self.read(&keyv, key)?;
        let result = certgate_pki::credential::parse_certificates(&cert_bytes, &origin)
            .map_err(|e| e.to_string())
            .and_then(|mut certs| {
                let der = certs.drain(..).next().ok_or("no certificate")?;
                let key_pem = String::from_utf8(key_bytes).map_err(|_| "ca.key is not PEM")?;
                certgate_pki::ca::Ca::new(der, &key_pem).map_err(|e| e.to_string())
            });
        match result.and_then(Interceptor::new) {
            Ok(i) => Some(Arc::new(i)),
            Err(e) => {
                self.error(
                    Some(dir.span().start),
                    key,
                    format!(
                        "{}: {e} (create one with `certgate egress ca --dir {} --config <this file>`)",
                        base.display(),
                        dir.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A rule's content-trust gate (`trust_policy`, `verify`, `trust_log_ca`, `trust_force`).
    fn gate(
        &mut self,
        prefix: &str,
        at: usize,
        name: &str,
        r: &RawRule,
    ) -> Option<certgate_proxy::egress::gate::Gate> {
        let nothing_gated = r.verify.is_empty() && r.oci.is_empty();
        let policy = match (&r.trust_policy, nothing_gated) {
            (None, true) => return None,
            (None, false) => {
                self.error(
                    Some(at),
                    &format!("{prefix}.trust_policy"),
                    "missing: `verify` and `oci` need the content-trust policy that decides (e.g. `trust_policy = \"policy.toml\"`)",
                );
                return None;
            }
            (Some(p), true) => {
                self.error(
                    Some(p.span().start),
                    &format!("{prefix}.verify"),
                    "missing: name the downloads that must be trusted, e.g. `verify = [\"https://dl.example/releases/*\"]` or `oci = [\"registry.example:5000\"]`",
                );
                return None;
            }
            (Some(p), false) => p,
        };
        let mut oci = Vec::new();
        for o in &r.oci {
            match parse_host_port(o.get_ref()) {
                Ok((HostPattern::Exact(host), port)) => oci.push(match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }),
                Ok(_) => self.error(
                    Some(o.span().start),
                    &format!("{prefix}.oci"),
                    format!(
                        "`{}`: name one registry (`host` or `host:port`), not a pattern",
                        o.get_ref()
                    ),
                ),
                Err(e) => self.error(Some(o.span().start), &format!("{prefix}.oci"), e),
            }
        }
        let mut files = Vec::new();
        for v in &r.verify {
            let pattern = v.get_ref();
            if !pattern.starts_with("https://") || pattern.len() <= "https://".len() {
                self.error(
                    Some(v.span().start),
                    &format!("{prefix}.verify"),
                    format!("`{pattern}` must be an https:// URL pattern, e.g. `https://dl.example/releases/*` (http:// URLs are originated over https and matched as such)"),
                );
                continue;
            }
            files.push(certgate_proxy::egress::gate::Glob::new(pattern));
        }
        let key = format!("{prefix}.trust_policy");
        let (bytes, _) = self.read(policy, &key)?;
        let Ok(text) = String::from_utf8(bytes) else {
            self.error(Some(policy.span().start), &key, "not UTF-8");
            return None;
        };
        let ca = r
            .trust_log_ca
            .iter()
            .map(|c| self.note_file(c.get_ref()))
            .collect::<Vec<_>>();
        for (c, path) in r.trust_log_ca.iter().zip(&ca) {
            if !path.is_file() {
                self.error(
                    Some(c.span().start),
                    &format!("{prefix}.trust_log_ca"),
                    format!("{}: no such file", path.display()),
                );
            }
        }
        if r.trust_force {
            self.notes.push(format!(
                "{prefix}.trust_force: gated downloads are delivered whatever the log says (each is logged with its true status)"
            ));
        }
        let state = self.state_dir.join("trust");
        match crate::trust_gate::TrustGate::new(&self.path(policy.get_ref()), &text, ca, state) {
            Ok(g) => Some(certgate_proxy::egress::gate::Gate {
                trust: Arc::new(g),
                files,
                oci,
                force: r.trust_force,
                rule: name.to_owned(),
            }),
            Err(e) => {
                self.error(Some(policy.span().start), &key, e);
                None
            }
        }
    }

    /// Notes what the interception CA cannot do or will soon stop doing: rules outside its name
    /// constraints (tunneled blind), no constraints at all, a lifetime over a year, expiry near.
    fn check_interceptor(&mut self, i: &Interceptor, dir: &Spanned<String>, rules: &[EgressRule]) {
        let key = "egress.intercept_ca";
        let regenerate = format!(
            "`certgate egress ca --dir {} --config <this file> --force`",
            dir.get_ref()
        );
        let id = i.ca().identity();
        let now = time::OffsetDateTime::now_utc();
        if id.not_after <= now {
            self.error(
                Some(dir.span().start),
                key,
                format!(
                    "the interception CA expired on {}; create a new one with {regenerate}",
                    id.not_after.date()
                ),
            );
            return;
        }
        let days_left = (id.not_after - now).whole_days();
        if days_left < 30 {
            self.notes.push(format!(
                "{key}: the interception CA expires in {days_left} days; rotate it with {regenerate} and give apps the new ca.pem"
            ));
        }
        if (id.not_after - id.not_before).whole_days() > 366 {
            self.notes.push(format!(
                "{key}: the interception CA is valid for more than a year ({} to {}); a shorter-lived one limits what a stolen key can do: {regenerate}",
                id.not_before.date(),
                id.not_after.date()
            ));
        }
        if !i.is_constrained() {
            self.notes.push(format!(
                "{key}: the interception CA has no name constraints, so its key can impersonate any site to every app that trusts it; create a constrained one with {regenerate}"
            ));
            return;
        }
        for r in rules {
            let probe = match &r.host {
                HostPattern::Exact(h) => h.clone(),
                HostPattern::Suffix(s) => format!("certgate-check{s}"),
                HostPattern::Any => "certgate-check.invalid.example".to_owned(),
            };
            if !i.covers(&probe) {
                self.notes.push(format!(
                    "egress.rule.{}: its hosts are outside the interception CA's name constraints, so CONNECT to them is tunneled blind (http:// URLs are still originated); regenerate the CA with {regenerate}",
                    r.name
                ));
            }
        }
    }

    fn client_tls(
        &mut self,
        prefix: &str,
        at: usize,
        name: &str,
        f: &ClientTlsFields<'_>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<ClientTls> {
        let before = self.errors.len();
        let mut names: Vec<&Spanned<String>> = f.identity.into_iter().collect();
        names.extend(f.identities.iter());
        let mut chosen = Vec::new();
        for n in &names {
            if let Some(id) = self.find_identity(&format!("{prefix}.identity"), n, identities) {
                chosen.push(ClientIdentity::new(&id.name, &id.credential));
            }
        }
        let trust = f
            .trust
            .and_then(|t| self.find_trust(&format!("{prefix}.trust"), t, trusts));
        if let Some(t) = &trust {
            self.server_trusts.insert(t.name().to_owned());
        }
        if f.trust.is_none() && !f.system_roots {
            self.error(
                Some(at),
                &format!("{prefix}.trust"),
                "missing: the server's certificate must verify before a client certificate is sent; name a [[trust]] and/or set `system_roots = true`",
            );
        }
        let system_roots = if f.system_roots {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "it is empty".to_owned(), |e| e.to_string());
                self.error(
                    Some(at),
                    &format!("{prefix}.system_roots"),
                    format!("cannot read the system trust store: {why}"),
                );
            }
            found.certs
        } else {
            Vec::new()
        };
        let pin = f.pin.and_then(|p| {
            let parsed = SpkiHash::from_hex(p.get_ref());
            if parsed.is_none() {
                self.error(
                    Some(p.span().start),
                    &format!("{prefix}.pin_spki_sha256"),
                    format!("`{}` is not 64 hex digits", p.get_ref()),
                );
            }
            parsed
        });
        let sni = f
            .sni
            .and_then(|s| match ServerName::try_from(s.get_ref().clone()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        Some(s.span().start),
                        &format!("{prefix}.sni"),
                        format!("`{}` is not a valid server name", s.get_ref()),
                    );
                    None
                }
            });
        if self.errors.len() > before {
            return None;
        }
        let identity_names = chosen.iter().map(|c| c.name.clone()).collect();
        let built = certgate_tls::egress::egress_client_config(EgressTls {
            rule: name.to_owned(),
            trust,
            system_roots,
            pin,
            identities: chosen,
            alpn: f.alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
        });
        match built {
            Ok((config, chooser)) => Some(ClientTls {
                config,
                chooser,
                identities: identity_names,
                sni,
            }),
            Err(e) => {
                self.error(Some(at), prefix, e.to_string());
                None
            }
        }
    }
}

/// `https://host[:port][/path]`, host exact or `*.domain` (or `*`).
/// The host pattern of every `[[egress.rule]]` in the config at `path`, by rule name (`#N`
/// for a rule without one), read from the TOML alone: the files the config names need not exist
/// (`certgate egress ca` runs before the interception CA does).
pub fn rule_hosts(path: &Path) -> Result<Vec<(String, HostPattern)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let rules = doc
        .get("egress")
        .and_then(|e| e.get("rule"))
        .and_then(|r| r.as_array())
        .ok_or("no [[egress.rule]] to take hosts from")?;
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let name = r
            .get("name")
            .and_then(|n| n.as_str())
            .map_or_else(|| format!("#{}", i + 1), str::to_owned);
        let url = r
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| format!("egress.rule.{name}.url: missing"))?;
        let (host, _, _) =
            parse_rule_url(url).map_err(|e| format!("egress.rule.{name}.url: {e}"))?;
        out.push((name, host));
    }
    Ok(out)
}

fn parse_rule_url(url: &str) -> Result<(HostPattern, Option<u16>, String), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "`{url}` must start with `https://` (certgate originates TLS to every rule's destination)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = parse_host_port(authority)?;
    Ok((host, port, path))
}

/// `host`, `*.domain`, `*`, with an optional `:port`; IPv6 in brackets.
fn parse_host_port(s: &str) -> Result<(HostPattern, Option<u16>), String> {
    let (host, port) = split_port(s)?;
    let pattern = HostPattern::parse(host)
        .ok_or_else(|| format!("`{host}` is not a host name, `*.domain` or `*`"))?;
    Ok((pattern, port))
}

fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let bad_port = |p: &str| format!("`{p}` is not a port number");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: unclosed `[`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p.parse().map_err(|_| bad_port(p))?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("`{s}` is not host[:port]")),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((s, None)),
    }
}

/// `host:port` of a tunnel's target.
fn parse_target(s: &str) -> Result<(String, u16), String> {
    match split_port(s)? {
        (host, Some(port)) if !host.is_empty() => Ok((host.to_ascii_lowercase(), port)),
        _ => Err(format!("`{s}` is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_urls() {
        let (h, p, path) = parse_rule_url("https://*.internal.example:8443/api").unwrap();
        assert_eq!(h, HostPattern::Suffix(".internal.example".into()));
        assert_eq!((p, path.as_str()), (Some(8443), "/api"));
        let (h, p, path) = parse_rule_url("https://[::1]").unwrap();
        assert_eq!(
            (h, p, path.as_str()),
            (HostPattern::Exact("::1".into()), None, "/")
        );
        assert!(parse_rule_url("http://x").unwrap_err().contains("https://"));
        assert!(
            parse_rule_url("https://x:99999")
                .unwrap_err()
                .contains("port")
        );
        assert!(parse_rule_url("https://a*b").is_err());
        assert_eq!(
            parse_target("broker:8883").unwrap(),
            ("broker".into(), 8883)
        );
        assert!(parse_target("broker").is_err());
    }
}
