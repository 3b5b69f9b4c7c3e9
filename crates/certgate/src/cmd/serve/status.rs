//! What serve tells about itself: the admin `/status` document and expiry metrics.

use std::net::SocketAddr;

use crate::config;

/// The `/status` document: listeners and loaded certificates with their expiry.
pub(super) fn status(cfg: &config::Config, addrs: &[(String, SocketAddr)]) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc();
    let mut listeners: Vec<serde_json::Value> = cfg
        .ingresses
        .iter()
        .map(|i| ("ingress", &i.config.name, i.config.client_auth, i.config.trust.as_ref().map(|t| t.name().to_owned()), routes(&i.config)))
        .chain(cfg.tunnels.iter().map(|t| ("tunnel", &t.config.name, t.config.client_auth, t.config.trust.as_ref().map(|b| b.name().to_owned()), vec![serde_json::json!({ "name": t.config.name, "path": "", "upstream": t.config.target.to_string(), "access": access_label(&t.config.access) })])))
        .chain(cfg.geminis.iter().map(|g| ("gemini", &g.config.name, g.config.client_auth, g.config.trust.as_ref().map(|b| b.name().to_owned()), gemini_routes(&g.config))))
        .map(|(kind, name, mode, trust, routes)| {
            let addr = addrs.iter().find(|(n, _)| n == name).map(|(_, a)| a.to_string());
            serde_json::json!({ "kind": kind, "name": name, "addr": addr, "client_auth": mode.name(), "trust": trust, "routes": routes })
        })
        .collect();
    if let Some(l) = &cfg.log {
        let addr = addrs
            .iter()
            .find(|(n, _)| n == "log")
            .map(|(_, a)| a.to_string());
        listeners.push(serde_json::json!({
            "kind": "log", "name": "log", "addr": addr, "client_auth": "request",
            "trust": l.trust.as_ref().map(|t| t.name()),
            "routes": [
                { "name": "log-add", "path": "/add", "upstream": "the log API", "access": format!("verified certificate, {} writer rule(s)", l.writers.len()) },
                { "name": "log-read", "path": "/", "upstream": "the log API", "access": "anyone" },
            ],
        }));
    }
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
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let certificates: Vec<serde_json::Value> = cfg
        .identities
        .iter()
        .map(|i| {
            let id = &i.credential.identity;
            serde_json::json!({
                "identity": i.name,
                "subject": id.subject,
                "issuer": id.issuer,
                "not_after": rfc3339(id.not_after),
                "seconds_left": (id.not_after - now).whole_seconds(),
                "spki_sha256": id.spki_sha256.to_hex(),
            })
        })
        .collect();
    let trusts = trusts(&cfg.trusts);
    serde_json::json!({
        "config": std::fs::canonicalize(&cfg.path).unwrap_or_else(|_| cfg.path.clone()).display().to_string(),
        "listeners": listeners,
        "certificates": certificates,
        "trusts": trusts,
        "warnings": {
            "certificate_days": cfg.warnings.certificate_days,
            "crl_days": cfg.warnings.crl_days,
        },
    })
}

/// The trusts part of the `/status` document: CAs and CRLs in force, with their expiry.
pub(super) fn trusts(trusts: &[std::sync::Arc<certgate_pki::TrustBundle>]) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc();
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let out: Vec<serde_json::Value> = trusts
        .iter()
        .map(|t| {
            let cas: Vec<serde_json::Value> = t
                .ca_certificates()
                .iter()
                .filter_map(|der| certgate_pki::Identity::from_der(der).ok())
                .map(|id| {
                    serde_json::json!({
                        "subject": id.subject,
                        "not_after": rfc3339(id.not_after),
                        "seconds_left": (id.not_after - now).whole_seconds(),
                    })
                })
                .collect();
            let crls: Vec<serde_json::Value> = t
                .crl_summaries()
                .into_iter()
                .map(|c| {
                    let next = c
                        .next_update
                        .and_then(|n| time::OffsetDateTime::from_unix_timestamp(n).ok());
                    serde_json::json!({
                        "issuer": c.issuer,
                        "next_update": next.map(rfc3339),
                        "seconds_left": next.map(|n| (n - now).whole_seconds()),
                        "revoked": c.revoked,
                    })
                })
                .collect();
            serde_json::json!({ "name": t.name(), "cas": cas, "crls": crls })
        })
        .collect();
    serde_json::Value::Array(out)
}

/// What a route sends requests to, for people.
fn upstream_label(u: &certgate_proxy::Upstream) -> String {
    use certgate_proxy::{Upstream, UpstreamKey};
    match u {
        Upstream::Remote { authority, client } => match client.key() {
            UpstreamKey::Http => format!("http://{authority}"),
            UpstreamKey::Https { .. } => format!("https://{authority}"),
            UpstreamKey::Unix(path) => format!("unix:{}", path.display()),
        },
        Upstream::Echo => "echo".to_owned(),
        Upstream::ForwardAuth => "forward-auth".to_owned(),
        Upstream::Local(_) => "the log API".to_owned(),
    }
}

/// The routes of a Gemini listener, for the status document.
fn gemini_routes(cfg: &certgate_proxy::GeminiConfig) -> Vec<serde_json::Value> {
    use certgate_proxy::{GeminiUpstream, UpstreamKey};
    cfg.routes
        .iter()
        .map(|r| {
            let upstream = match &r.upstream {
                GeminiUpstream::Cgi { target, .. } => format!("cgi:{}", target.display()),
                GeminiUpstream::Http { authority, client } => match client.key() {
                    UpstreamKey::Http => format!("http://{authority}"),
                    UpstreamKey::Https { .. } => format!("https://{authority}"),
                    UpstreamKey::Unix(path) => format!("unix:{}", path.display()),
                },
            };
            serde_json::json!({
                "name": r.name,
                "host": r.host.as_ref().map(|h| h.to_string()),
                "path": r.path,
                "upstream": upstream,
                "access": access_label(&r.access),
            })
        })
        .collect()
}

/// Who may use a route, for people.
fn access_label(a: &certgate_proxy::Access) -> String {
    let base = if a.require_verified {
        "verified certificate"
    } else if a.require_client_cert {
        "any certificate"
    } else {
        "anyone"
    };
    match a.allow.len() {
        0 => base.to_owned(),
        n => format!("{base}, {n} allow rule(s)"),
    }
}

/// The routes of an ingress, for the status document.
fn routes(cfg: &certgate_proxy::IngressConfig) -> Vec<serde_json::Value> {
    cfg.routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "host": r.host.as_ref().map(|h| h.to_string()),
                "path": r.path,
                "upstream": upstream_label(&r.upstream),
                "access": access_label(&r.access),
            })
        })
        .collect()
}

/// The CRLs fetched from URLs, as the fetcher last left them: shared with the live status
/// section, replaced on every reload.
pub(super) type CrlSources =
    std::sync::Arc<std::sync::Mutex<(std::path::PathBuf, Vec<config::CrlSource>)>>;

/// The live sections of the status document: the log's (when there is one) and
/// `crl_sources`, each URL with its last successful fetch and its CRL's nextUpdate, read from the
/// state directory at every request.
pub(super) fn live(
    log: Option<certgate_proxy::admin::Live>,
    sources: CrlSources,
) -> certgate_proxy::admin::Live {
    Box::new(move || {
        let mut doc = log.as_ref().map_or_else(|| serde_json::json!({}), |l| l());
        let rfc3339 = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let rows: Vec<serde_json::Value> = sources
            .lock()
            .map(|g| {
                let (state, list) = &*g;
                list.iter()
                    .map(|s| {
                        let meta = crate::crl_cache::read_meta(state, &s.url);
                        let next = meta.as_ref().and_then(|m| m.facts.as_ref()?.next_update);
                        let last = meta.as_ref().and_then(|m| m.last_success);
                        serde_json::json!({
                            "trust": s.trust,
                            "url": s.url,
                            "learned": s.learned,
                            "last_success": last.and_then(rfc3339),
                            "next_update": next.and_then(rfc3339),
                            "seconds_left": next.map(|n| n - now),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("crl_sources".to_owned(), serde_json::Value::Array(rows));
        }
        doc
    })
}

/// The log's live section of the status document: its size and latest checkpoint.
pub(super) fn log_section(
    store: std::sync::Arc<dyn certgate_log::LogStorage>,
) -> certgate_proxy::admin::Live {
    Box::new(move || match store.head() {
        Ok((size, checkpoint)) => serde_json::json!({
            "log": { "origin": store.origin(), "size": size, "checkpoint": checkpoint }
        }),
        Err(e) => serde_json::json!({
            "log": { "origin": store.origin(), "error": e.to_string() }
        }),
    })
}

/// What serve watches for expiry between reloads: identities, the trusts' CAs and CRLs, and
/// the warning thresholds.
pub(super) struct Expiry {
    identities: Vec<(String, time::OffsetDateTime)>,
    trusts: Vec<std::sync::Arc<certgate_pki::TrustBundle>>,
    warnings: config::Warnings,
}

impl Expiry {
    pub(super) fn of(cfg: &config::Config) -> Self {
        Self {
            identities: cfg
                .identities
                .iter()
                .map(|i| (i.name.clone(), i.credential.identity.not_after))
                .chain(
                    cfg.egress
                        .as_ref()
                        .and_then(|e| e.config.interceptor.as_ref())
                        .map(|i| {
                            (
                                "egress.intercept_ca".to_owned(),
                                i.ca().identity().not_after,
                            )
                        }),
                )
                .collect(),
            trusts: cfg.trusts.clone(),
            warnings: cfg.warnings,
        }
    }

    /// Sets the expiry metrics: `certgate_certificate_expiry_seconds{identity}`,
    /// `certgate_ca_expiry_seconds{trust,subject}`,
    /// `certgate_crl_next_update_timestamp_seconds{trust,issuer}` and
    /// `certgate_crl_stale_grace_verifications_total{trust}`. With `warn`, logs a warning for
    /// each certificate and CRL within its threshold (`[warnings]`).
    pub(super) fn publish(&self, warn: bool) {
        let now = time::OffsetDateTime::now_utc();
        let cert_limit = i64::try_from(self.warnings.certificate_days)
            .unwrap_or(i64::MAX / 86400)
            .saturating_mul(86400);
        let crl_limit = i64::try_from(self.warnings.crl_days)
            .unwrap_or(i64::MAX / 86400)
            .saturating_mul(86400);
        for (name, not_after) in &self.identities {
            let left = (*not_after - now).whole_seconds();
            metrics::gauge!("certgate_certificate_expiry_seconds", "identity" => name.clone())
                .set(left as f64);
            if warn && left < cert_limit {
                tracing::warn!(identity = %name, seconds_left = left, days = self.warnings.certificate_days, "certificate expires within the warning threshold");
            }
        }
        for t in &self.trusts {
            for der in t.ca_certificates() {
                let Ok(id) = certgate_pki::Identity::from_der(der) else {
                    continue;
                };
                let left = (id.not_after - now).whole_seconds();
                metrics::gauge!("certgate_ca_expiry_seconds", "trust" => t.name().to_owned(), "subject" => id.subject.clone())
                    .set(left as f64);
                if warn && left < cert_limit {
                    tracing::warn!(trust = %t.name(), ca = %id.subject, seconds_left = left, days = self.warnings.certificate_days, "CA certificate expires within the warning threshold");
                }
            }
            for c in t.crl_summaries() {
                let Some(next) = c.next_update else { continue };
                metrics::gauge!("certgate_crl_next_update_timestamp_seconds", "trust" => t.name().to_owned(), "issuer" => c.issuer.clone())
                    .set(next as f64);
                let left = next - now.unix_timestamp();
                if warn && left < crl_limit {
                    tracing::warn!(trust = %t.name(), issuer = %c.issuer, seconds_left = left, days = self.warnings.crl_days, "CRL reaches its nextUpdate within the warning threshold; publish or fetch a new one");
                }
            }
            metrics::counter!("certgate_crl_stale_grace_verifications_total", "trust" => t.name().to_owned())
                .absolute(t.grace_uses());
        }
    }
}
