//! `[[tunnel]]` sections: TLS in, TCP out.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::TrustBundle;
use certgate_proxy::TunnelConfig;
use certgate_proxy::proxy_protocol::Mode;
use serde::Deserialize;
use toml::Spanned;

use super::listener::TlsFields;
use super::{ConfiguredIdentity, Resolver};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    name: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    #[serde(default)]
    sni: BTreeMap<String, Spanned<String>>,
    client_auth: Option<Spanned<String>>,
    trust: Option<Spanned<String>>,
    min_tls: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    proxy_protocol: Option<Spanned<String>>,
    #[serde(default)]
    require_client_cert: bool,
    #[serde(default)]
    require_verified: bool,
    #[serde(default)]
    allow: Vec<Spanned<super::ingress::RawRule>>,
    max_connections: Option<Spanned<u64>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    connect_timeout_secs: Option<Spanned<u64>>,
}

/// A resolved `[[tunnel]]`.
#[derive(Debug)]
pub struct Tunnel {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The tunnel, ready to serve.
    pub config: Arc<TunnelConfig>,
}

impl Resolver<'_> {
    pub(super) fn tunnels(
        &mut self,
        raw: &[Spanned<RawTunnel>],
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        taken: &mut HashSet<String>,
    ) -> Vec<Tunnel> {
        let mut out = Vec::new();
        for (i, section) in raw.iter().enumerate() {
            let at = section.span().start;
            let raw = section.get_ref();
            // Tunnels and ingresses share one namespace: names key reloads and logs.
            let Some(name) = self.name("tunnel", i, raw.name.as_ref(), at, taken) else {
                continue;
            };
            if let Some(t) = self.tunnel(&name, raw, at, identities, trusts) {
                out.push(t);
            }
        }
        out
    }

    fn tunnel(
        &mut self,
        name: &str,
        raw: &RawTunnel,
        at: usize,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Tunnel> {
        let prefix = format!("tunnel.{name}");
        let errors_before = self.errors.len();
        let listen = self.listen(raw.listen.as_ref(), at, &prefix);
        let fields = TlsFields {
            identity: raw.identity.as_ref(),
            sni: &raw.sni,
            client_auth: raw.client_auth.as_ref(),
            trust: raw.trust.as_ref(),
            min_tls: raw.min_tls.as_ref(),
        };
        let tls = self.listener_tls(&prefix, at, &fields, Vec::new(), identities, trusts);
        let target = match &raw.target {
            None => {
                self.error(
                    Some(at),
                    &format!("{prefix}.target"),
                    "missing; e.g. `target = \"127.0.0.1:1883\"`",
                );
                None
            }
            Some(t) => {
                let ok = t.get_ref().rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !ok {
                    self.error(
                        Some(t.span().start),
                        &format!("{prefix}.target"),
                        format!("`{}` is not host:port", t.get_ref()),
                    );
                }
                Some(t.get_ref().clone())
            }
        };
        let proxy_protocol = match &raw.proxy_protocol {
            None => Mode::None,
            Some(m) => Mode::parse(m.get_ref()).unwrap_or_else(|| {
                self.error(
                    Some(m.span().start),
                    &format!("{prefix}.proxy_protocol"),
                    format!("`{}` is not one of none, conn, tls, tls-full", m.get_ref()),
                );
                Mode::None
            }),
        };
        let allow = self.rules(&raw.allow, &prefix);
        // A tunnel's limits default as a listener's do; it connects within 10 s unless told.
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
        let mut connect_timeout = Duration::from_secs(10);
        self.secs(
            &raw.connect_timeout_secs,
            &format!("{prefix}.connect_timeout_secs"),
            &mut connect_timeout,
        );
        if self.errors.len() > errors_before {
            return None;
        }
        let (listen, tls, target) = (listen?, tls?, target?);
        let config = TunnelConfig {
            name: name.to_owned(),
            tls: tls.server_config,
            client_auth: tls.client_auth,
            trust: tls.trust,
            target,
            proxy_protocol,
            access: certgate_proxy::Access {
                require_client_cert: raw.require_client_cert,
                require_verified: raw.require_verified,
                allow,
            },
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            connect_timeout,
            drain_timeout: limits.drain_timeout,
        };
        Some(Tunnel {
            listen,
            config: Arc::new(config),
        })
    }
}
