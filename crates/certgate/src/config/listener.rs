//! What `[[ingress]]` and `[[tunnel]]` share: the listen address and the TLS settings (server
//! identities by SNI, client-auth mode, trust, minimum version).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use certgate_pki::TrustBundle;
use certgate_tls::{ClientAuth, ListenerTls, MinVersion, SniIdentities, SniPattern};
use toml::Spanned;

use super::{ConfiguredIdentity, Resolver};

/// The TLS keys of a listener section, as written.
pub(super) struct TlsFields<'a> {
    pub identity: Option<&'a Spanned<String>>,
    pub sni: &'a BTreeMap<String, Spanned<String>>,
    pub client_auth: Option<&'a Spanned<String>>,
    pub trust: Option<&'a Spanned<String>>,
    pub min_tls: Option<&'a Spanned<String>>,
}

/// The TLS side of a listener, resolved.
pub(super) struct ResolvedTls {
    pub server_config: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    pub trust: Option<Arc<TrustBundle>>,
    /// URI SANs of the default identity (XFCC `By`).
    pub own_uris: Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn listen(
        &mut self,
        value: Option<&Spanned<String>>,
        at: usize,
        prefix: &str,
    ) -> Option<SocketAddr> {
        let key = format!("{prefix}.listen");
        let Some(l) = value else {
            self.error(
                Some(at),
                &key,
                "missing; e.g. `listen = \"127.0.0.1:8443\"`",
            );
            return None;
        };
        match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    Some(l.span().start),
                    &key,
                    format!(
                        "`{}` is not an address:port (e.g. `127.0.0.1:8443` or `[::1]:8443`)",
                        l.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn find_identity<'i>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        identities: &'i [ConfiguredIdentity],
    ) -> Option<&'i ConfiguredIdentity> {
        let found = identities.iter().find(|i| i.name == *value.get_ref());
        if found.is_none() {
            self.unknown("identity", key, value);
        }
        found
    }

    /// The `[[trust]]` named by `value`, or an error against `key`.
    pub(super) fn find_trust(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        trusts: &[Arc<TrustBundle>],
    ) -> Option<Arc<TrustBundle>> {
        let found = trusts.iter().find(|b| b.name() == value.get_ref()).cloned();
        if found.is_none() {
            self.unknown("trust", key, value);
        }
        found
    }

    /// Reports that `key` names a `[[section]]` that is not there, unless the section is there
    /// but failed to load: its own errors say why, and a second error would only mislead.
    pub(super) fn unknown(&mut self, section: &str, key: &str, value: &Spanned<String>) {
        if self
            .broken
            .contains(&(section.to_owned(), value.get_ref().clone()))
        {
            return;
        }
        self.error(
            Some(value.span().start),
            key,
            format!("no [[{section}]] named `{}`", value.get_ref()),
        );
    }

    /// Resolves the TLS keys of a listener; `None` (with errors recorded) when they are unusable.
    pub(super) fn listener_tls(
        &mut self,
        prefix: &str,
        at: usize,
        f: &TlsFields<'_>,
        alpn: Vec<Vec<u8>>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
    ) -> Option<ResolvedTls> {
        let errors_before = self.errors.len();
        let default_identity = match f.identity {
            None => {
                self.error(
                    Some(at),
                    &format!("{prefix}.identity"),
                    "missing; name the [[identity]] this listener presents",
                );
                None
            }
            Some(id) => self.find_identity(&format!("{prefix}.identity"), id, identities),
        };
        let trust = f
            .trust
            .and_then(|t| self.find_trust(&format!("{prefix}.trust"), t, trusts));
        let client_auth = match f.client_auth {
            // Secure default: with a trust bundle, demand a verified certificate.
            None if f.trust.is_some() => ClientAuth::RequireAndVerify,
            None => ClientAuth::None,
            Some(m) => {
                match ClientAuth::parse(m.get_ref()) {
                    Some(mode) => {
                        if mode.verifies() && f.trust.is_none() {
                            self.error(
                            Some(m.span().start),
                            &format!("{prefix}.client_auth"),
                            format!("`{}` verifies client certificates, so it needs `trust = \"...\"`", m.get_ref()),
                        );
                        }
                        mode
                    }
                    None => {
                        let names: Vec<&str> = ClientAuth::ALL.iter().map(|(n, _)| *n).collect();
                        self.error(
                            Some(m.span().start),
                            &format!("{prefix}.client_auth"),
                            format!("`{}` is not one of {}", m.get_ref(), names.join(", ")),
                        );
                        ClientAuth::None
                    }
                }
            }
        };
        let min_version = match f.min_tls.map(|v| (v.get_ref().as_str(), v.span().start)) {
            None | Some(("1.2", _)) => MinVersion::Tls12,
            Some(("1.3", _)) => MinVersion::Tls13,
            Some((other, pos)) => {
                self.error(
                    Some(pos),
                    &format!("{prefix}.min_tls"),
                    format!("`{other}` is not `1.2` or `1.3`"),
                );
                MinVersion::Tls12
            }
        };
        let mut sni_keys = Vec::new();
        for (pattern, id_name) in f.sni {
            let key = format!("{prefix}.sni.\"{pattern}\"");
            let Some(p) = SniPattern::parse(pattern) else {
                self.error(
                    Some(id_name.span().start),
                    &key,
                    format!("`{pattern}` is not a host name or `*.domain` pattern"),
                );
                continue;
            };
            if let Some(id) = self.find_identity(&key, id_name, identities) {
                sni_keys.push((p, certgate_tls::certified_key(&id.credential)));
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let default_identity = default_identity?;
        let mut sni = SniIdentities::new(certgate_tls::certified_key(&default_identity.credential));
        for (p, k) in sni_keys {
            sni.add(p, k);
        }
        let tls = ListenerTls {
            identities: sni,
            client_auth,
            trust: trust.clone(),
            min_version,
            alpn,
        };
        match certgate_tls::server_config(&tls) {
            Ok(server_config) => Some(ResolvedTls {
                server_config,
                client_auth,
                trust,
                own_uris: default_identity.credential.identity.sans.uri.clone(),
            }),
            Err(e) => {
                self.error(Some(at), prefix, e.to_string());
                None
            }
        }
    }
}
