//! `[[gemini]]` sections: Gemini over TLS in, an HTTP upstream or CGI scripts out.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::TrustBundle;
use certgate_pki::forward::{Format, ProxyInfo};
use certgate_proxy::gemini::CgiVariables;
use certgate_proxy::{GeminiConfig, GeminiRoute, GeminiUpstream, Upstream};
use serde::Deserialize;
use toml::Spanned;

use super::listener::TlsFields;
use super::{ConfiguredIdentity, Resolver};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGemini {
    name: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    #[serde(default)]
    sni: BTreeMap<String, Spanned<String>>,
    client_auth: Option<Spanned<String>>,
    trust: Option<Spanned<String>>,
    min_tls: Option<Spanned<String>>,
    forward: Option<Spanned<Vec<String>>>,
    forward_unverified: Option<bool>,
    max_connections: Option<Spanned<u64>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    request_timeout_secs: Option<Spanned<u64>>,
    response_timeout_secs: Option<Spanned<u64>>,
    max_response_bytes: Option<Spanned<u64>>,
    drain_timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    route: Vec<Spanned<RawGeminiRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeminiRoute {
    name: Option<String>,
    host: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    #[serde(default)]
    require_client_cert: bool,
    #[serde(default)]
    require_verified: bool,
    #[serde(default)]
    allow: Vec<Spanned<super::ingress::RawRule>>,
    forward: Option<Spanned<Vec<String>>>,
    upstream_trust: Option<Spanned<String>>,
    upstream_identity: Option<Spanned<String>>,
    cgi_variables: Option<Spanned<String>>,
}

/// A resolved `[[gemini]]`.
#[derive(Debug)]
pub struct Gemini {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The listener, ready to serve.
    pub config: Arc<GeminiConfig>,
}

impl Resolver<'_> {
    pub(super) fn geminis(
        &mut self,
        raw: &[Spanned<RawGemini>],
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        taken: &mut HashSet<String>,
    ) -> Vec<Gemini> {
        let mut out = Vec::new();
        for (i, section) in raw.iter().enumerate() {
            let at = section.span().start;
            let raw = section.get_ref();
            // All listeners share one namespace: names key reloads and logs.
            let Some(name) = self.name("gemini", i, raw.name.as_ref(), at, taken) else {
                continue;
            };
            if let Some(g) = self.gemini(&name, raw, at, identities, trusts) {
                out.push(g);
            }
        }
        out
    }

    fn gemini(
        &mut self,
        name: &str,
        raw: &RawGemini,
        at: usize,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Gemini> {
        let prefix = format!("gemini.{name}");
        let errors_before = self.errors.len();
        let listen = self.listen(raw.listen.as_ref(), at, &prefix);
        // Gemini clients make their own certificates: request one by default (and verify it
        // only where a route asks), whether or not a trust is configured.
        let request = Spanned::new(at..at, "request".to_owned());
        let fields = TlsFields {
            identity: raw.identity.as_ref(),
            sni: &raw.sni,
            client_auth: Some(raw.client_auth.as_ref().unwrap_or(&request)),
            trust: raw.trust.as_ref(),
            min_tls: raw.min_tls.as_ref(),
        };
        let tls = self.listener_tls(&prefix, at, &fields, Vec::new(), identities, trusts);
        let default_forward = match &raw.forward {
            Some(f) => self.formats(f, &format!("{prefix}.forward")),
            None => vec![Format::Certgate],
        };
        let mut routes: Vec<GeminiRoute> = Vec::new();
        if raw.route.is_empty() {
            self.error(
                Some(at),
                &format!("{prefix}.route"),
                "no routes; add at least one [[gemini.route]]",
            );
        }
        for (j, r) in raw.route.iter().enumerate() {
            let key = format!("{prefix}.route[{j}]");
            if let Some(route) = self.gemini_route(r, &key, &default_forward, identities, trusts) {
                routes.push(route);
            }
        }
        // Judged once every route resolved: the check reports routes by their index in the file.
        if routes.len() == raw.route.len() {
            self.cgi_overlaps(&routes, raw, &prefix);
        }
        let mut limits = certgate_proxy::Limits::default();
        if let Some(v) = &raw.max_connections
            && let Some(n) = self.positive(v, &format!("{prefix}.max_connections"))
        {
            limits.max_connections = n as usize;
        }
        self.secs(
            &raw.handshake_timeout_secs,
            &format!("{prefix}.handshake_timeout_secs"),
            &mut limits.handshake_timeout,
        );
        self.secs(
            &raw.drain_timeout_secs,
            &format!("{prefix}.drain_timeout_secs"),
            &mut limits.drain_timeout,
        );
        let mut request_timeout = Duration::from_secs(10);
        self.secs(
            &raw.request_timeout_secs,
            &format!("{prefix}.request_timeout_secs"),
            &mut request_timeout,
        );
        let mut response_timeout = Duration::from_secs(30);
        self.secs(
            &raw.response_timeout_secs,
            &format!("{prefix}.response_timeout_secs"),
            &mut response_timeout,
        );
        let max_response_bytes = match &raw.max_response_bytes {
            Some(v) => self
                .positive(v, &format!("{prefix}.max_response_bytes"))
                .unwrap_or(0),
            None => 64 << 20,
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let (listen, tls) = (listen?, tls?);
        let config = GeminiConfig {
            name: name.to_owned(),
            tls: tls.server_config,
            client_auth: tls.client_auth,
            trust: tls.trust,
            routes,
            proxy_info: ProxyInfo { uris: tls.own_uris },
            forward_unverified: raw.forward_unverified.unwrap_or(false),
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            request_timeout,
            response_timeout,
            max_response_bytes,
            drain_timeout: limits.drain_timeout,
        };
        Some(Gemini {
            listen,
            config: Arc::new(config),
        })
    }

    fn gemini_route(
        &mut self,
        raw: &Spanned<RawGeminiRoute>,
        prefix: &str,
        default_forward: &[Format],
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<GeminiRoute> {
        let at = raw.span().start;
        let r = raw.get_ref();
        let errors_before = self.errors.len();
        let host = self.route_host(r.host.as_ref(), prefix);
        let path = self.route_path(r.path.as_ref(), prefix);
        let key = format!("{prefix}.upstream");
        let upstream = match &r.upstream {
            None => {
                self.error(
                    Some(at),
                    &key,
                    "missing; e.g. `upstream = \"cgi:/srv/gemini/cgi-bin\"` or `\"http://127.0.0.1:8080\"`",
                );
                None
            }
            Some(u) => match u.get_ref().strip_prefix("cgi:") {
                Some(p) => {
                    let variables = self.cgi_variables(r.cgi_variables.as_ref(), prefix);
                    self.cgi_target(p, u.span().start, &key)
                        .map(|target| GeminiUpstream::Cgi { target, variables })
                }
                None if u.get_ref() == "echo" || u.get_ref() == "forward-auth" => {
                    self.error(
                        Some(u.span().start),
                        &key,
                        format!("`{}` is not a Gemini upstream; use `cgi:/path` or an http://, https:// or unix: upstream", u.get_ref()),
                    );
                    None
                }
                None => match self.upstream(
                    u,
                    (r.upstream_trust.as_ref(), r.upstream_identity.as_ref()),
                    prefix,
                    identities,
                    trusts,
                )? {
                    Upstream::Remote { authority, client } => {
                        Some(GeminiUpstream::Http { authority, client })
                    }
                    _ => {
                        self.error(Some(u.span().start), &key, "not a Gemini upstream");
                        None
                    }
                },
            },
        };
        if let (Some(v), Some(GeminiUpstream::Http { .. })) = (&r.cgi_variables, &upstream) {
            self.error(
                Some(v.span().start),
                &format!("{prefix}.cgi_variables"),
                "applies to `cgi:` upstreams only",
            );
        }
        let allow = self.rules(&r.allow, prefix);
        let forward = match &r.forward {
            Some(f) => self.formats(f, &format!("{prefix}.forward")),
            None => default_forward.to_vec(),
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
        Some(GeminiRoute {
            name,
            host,
            path,
            access: certgate_proxy::Access {
                require_client_cert: r.require_client_cert,
                require_verified: r.require_verified,
                allow,
            },
            upstream: upstream?,
            forward,
        })
    }

    /// A script one route names must not also be reachable through another route with other
    /// rules: the same file or directory named twice, or the file sitting in the other route's
    /// CGI directory under any name (a hard or symbolic link too). Files are compared by device
    /// and inode, so no spelling of a path escapes the check.
    fn cgi_overlaps(&mut self, routes: &[GeminiRoute], raw: &RawGemini, prefix: &str) {
        use std::os::unix::fs::MetadataExt as _;
        let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let targets: Vec<Option<(PathBuf, (u64, u64))>> = routes
            .iter()
            .map(|r| match &r.upstream {
                GeminiUpstream::Cgi { target, .. } => id(target).map(|i| (target.clone(), i)),
                GeminiUpstream::Http { .. } => None,
            })
            .collect();
        for (j, route) in routes.iter().enumerate() {
            let Some((path, ident)) = &targets[j] else {
                continue;
            };
            for (k, other) in routes.iter().enumerate() {
                let Some((other_path, other_ident)) = &targets[k] else {
                    continue;
                };
                if k == j || route.access == other.access {
                    continue;
                }
                let how = if ident == other_ident {
                    format!("route `{}` names it too", other.name)
                } else if other_path.is_dir()
                    && let Some(name) = std::fs::read_dir(other_path)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .find(|e| id(&e.path()) == Some(*ident))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                {
                    format!(
                        "it is `{}/{name}` in route `{}`'s directory",
                        other.path.trim_end_matches('/'),
                        other.name
                    )
                } else {
                    continue;
                };
                let at = raw
                    .route
                    .get(j)
                    .and_then(|r| r.get_ref().upstream.as_ref())
                    .map(|u| u.span().start);
                self.error(
                    at,
                    &format!("{prefix}.route[{j}].upstream"),
                    format!(
                        "{} is also reachable under other rules: {how}; give each route its own script or directory",
                        path.display()
                    ),
                );
            }
        }
    }

    /// `cgi_variables = "jetforce" | "molly-brown"`: whose spelling of the disputed variables.
    fn cgi_variables(&mut self, v: Option<&Spanned<String>>, prefix: &str) -> CgiVariables {
        match v.map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "jetforce")) => CgiVariables::Jetforce,
            Some((_, "molly-brown")) => CgiVariables::MollyBrown,
            Some((v, other)) => {
                self.error(
                    Some(v.span().start),
                    &format!("{prefix}.cgi_variables"),
                    format!("`{other}` is not `jetforce` or `molly-brown`"),
                );
                CgiVariables::Jetforce
            }
        }
    }

    /// `cgi:PATH`: an executable file, or a directory of them (relative to the config file).
    fn cgi_target(&mut self, p: &str, at: usize, key: &str) -> Option<PathBuf> {
        if p.is_empty() {
            self.error(
                Some(at),
                key,
                "`cgi:` needs a path: `cgi:/srv/gemini/cgi-bin` or `cgi:script.py`",
            );
            return None;
        }
        // Absolute: scripts run in their own directory, and a reload must not depend on ours.
        let path = self.path(p);
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Some(path),
            Ok(m) if m.is_file() => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    if m.permissions().mode() & 0o111 == 0 {
                        self.error(
                            Some(at),
                            key,
                            format!("{} is not executable (chmod +x it)", path.display()),
                        );
                        return None;
                    }
                }
                Some(path)
            }
            Ok(_) => {
                self.error(
                    Some(at),
                    key,
                    format!("{} is neither a file nor a directory", path.display()),
                );
                None
            }
            Err(e) => {
                self.error(Some(at), key, format!("{}: {e}", path.display()));
                None
            }
        }
    }
}
