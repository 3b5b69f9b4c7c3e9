//! What serve tells about itself: the admin `/status` document and expiry metrics.

use std::net::SocketAddr;

use crate::config;

/// The `/status` document: listeners and loaded certificates with their expiry.
pub(super) fn status(cfg: &config::Config, addrs: &[(String, SocketAddr)]) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc();
    let mut listeners: Vec<serde_json::Value> = cfg
        .ingresses
        .iter()
        .map(|i| ("ingress", &i.config.name, i.config.client_auth, i.config.trust.as_ref().map(|t| t.name().to_owned())))
        .chain(cfg.tunnels.iter().map(|t| ("tunnel", &t.config.name, t.config.client_auth, t.config.trust.as_ref().map(|b| b.name().to_owned()))))
        .map(|(kind, name, mode, trust)| {
            let addr = addrs.iter().find(|(n, _)| n == name).map(|(_, a)| a.to_string());
            serde_json::json!({ "kind": kind, "name": name, "addr": addr, "client_auth": mode.name(), "trust": trust })
        })
        .collect();
    if let Some(e) = &cfg.egress {
        let addr_of = |name: &str| {
            addrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.to_string())
        };
        if e.listen.is_some() {
            let rules: Vec<_> = e
                .config
                .rules
                .iter()
                .map(|r| serde_json::json!({ "name": r.name, "identities": r.identities }))
                .collect();
            listeners.push(serde_json::json!({ "kind": "egress", "name": e.config.name, "addr": addr_of(&e.config.name), "rules": rules, "intercepts": e.config.interceptor.is_some() }));
        }
        for t in &e.tunnels {
            listeners.push(serde_json::json!({ "kind": "egress-tunnel", "name": t.config.name, "addr": addr_of(&t.config.name), "target": format!("{}:{}", t.config.host, t.config.port) }));
        }
    }
    let certificates: Vec<serde_json::Value> = cfg
        .identities
        .iter()
        .map(|i| {
            let id = &i.credential.identity;
            serde_json::json!({
                "identity": i.name,
                "subject": id.subject,
                "issuer": id.issuer,
                "not_after": id.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "seconds_left": (id.not_after - now).whole_seconds(),
                "spki_sha256": id.spki_sha256.to_hex(),
            })
        })
        .collect();
    serde_json::json!({ "config": cfg.path.display().to_string(), "listeners": listeners, "certificates": certificates })
}

/// Sets `certgate_certificate_expiry_seconds{identity}` and warns about certificates that expire
/// within 14 days.
pub(super) fn publish_expiry(cfg: &config::Config) {
    let now = time::OffsetDateTime::now_utc();
    for i in &cfg.identities {
        let left = (i.credential.identity.not_after - now).whole_seconds();
        metrics::gauge!("certgate_certificate_expiry_seconds", "identity" => i.name.clone())
            .set(left as f64);
        if left < 14 * 24 * 3600 {
            tracing::warn!(identity = %i.name, seconds_left = left, "certificate expires within 14 days");
        }
    }
}
