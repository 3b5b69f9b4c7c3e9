//! Identity policy: conditions, rules and the decision for one request, a pure function of
//! (access rules, client identity, host, SNI). Routes, which hold live upstreams, are in
//! `route`.

use std::net::IpAddr;

use certgate_pki::{CertHash, ClientCert, SpkiHash};

pub use certgate_pattern::Glob;

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

impl Condition {
    /// Whether the condition is on a name the certificate states about itself (subject, SANs,
    /// issuer) rather than a hash of it. Anyone can make a certificate that states any name, so
    /// a name means something only in a chain that verified.
    pub fn is_name(&self) -> bool {
        !matches!(self, Condition::SpkiSha256(_) | Condition::CertSha256(_))
    }
}

/// A rule allows when all its conditions hold.
///
/// Conditions on names match only a verified chain; hash pins also match a certificate nobody
/// vouched for (a transient, self-signed one), which is how pins are meant to be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// `verified = false`: name conditions match unverified certificates too. Anyone can make a
    /// certificate with any name; the config check warns about such rules.
    pub names_unverified: bool,
}

impl Rule {
    /// A rule whose name conditions match verified chains only.
    pub fn new(conditions: Vec<Condition>) -> Self {
        Self {
            conditions,
            names_unverified: false,
        }
    }
}

/// Who may use a route or tunnel: the identity part of its policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// A client certificate must be presented.
    pub require_client_cert: bool,
    /// The client certificate must have verified against the listener's trust.
    pub require_verified: bool,
    /// When non-empty, a client certificate must match at least one rule.
    pub allow: Vec<Rule>,
}

impl Access {
    /// Whether a client certificate is needed at all.
    pub fn needs_client_cert(&self) -> bool {
        self.require_client_cert || self.require_verified || !self.allow.is_empty()
    }
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

/// Applies a route's policy. `host` is the request's host and `sni` the TLS server name of the
/// connection, both in normal form (lower-case, no trailing dot, no port).
pub fn decide(
    access: &Access,
    client: &ClientCert,
    host: Option<&str>,
    sni: Option<&str>,
) -> Decision {
    // A connection is for the host it named in SNI: its client certificate was presented to
    // that host, and its server certificate proved only that name. A request for another host
    // must not ride on it (connection reuse across virtual hosts), on any route.
    if let (Some(h), Some(s)) = (host, sni)
        && h != s
    {
        return deny(
            421,
            "misdirected request: the Host differs from the TLS server name",
        );
    }
    identity(access, client)
}

/// The identity part of a policy, shared by HTTP routes, TCP tunnels and front proxies.
pub fn identity(access: &Access, client: &ClientCert) -> Decision {
    if !access.needs_client_cert() {
        return Decision::Allow;
    }
    let Access {
        require_verified,
        allow,
        ..
    } = access;
    let Some(peer) = client.presented() else {
        return deny(401, "a client certificate is required");
    };
    if *require_verified && peer.verified().is_none() {
        let why = match &peer.verification {
            certgate_pki::Verification::Failed { rejection, .. } => rejection.reason.code(),
            _ => "no trust configured",
        };
        return deny(
            403,
            format!("the client certificate is not verified ({why})"),
        );
    }
    if !allow.is_empty() && !any_rule_matches(allow, peer) {
        return deny(403, "the client certificate is not allowed on this route");
    }
    Decision::Allow
}

/// Whether any of `rules` matches the presented certificate (name conditions only when its
/// chain verified, or the rule says `verified = false`).
pub fn any_rule_matches(rules: &[Rule], peer: &certgate_pki::PeerIdentity) -> bool {
    rules.iter().any(|rule| rule_matches(rule, peer))
}

fn rule_matches(rule: &Rule, peer: &certgate_pki::PeerIdentity) -> bool {
    let id = &peer.identity;
    let vouched = peer.verified().is_some() || rule.names_unverified;
    let any = |values: &[String], g: &Glob| values.iter().any(|v| g.matches(v));
    rule.conditions.iter().all(|c| match c {
        c if c.is_name() && !vouched => false,
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

    /// `alice` (with a SPIFFE ID) from a CA; judged against that CA's trust, or (a look-alike)
    /// against another PKI of the same names that did not issue it.
    fn presented(verified: bool) -> ClientCert {
        use certgate_testkit::{Spec, TestPki, signed_by};
        use rustls_pki_types::CertificateDer;
        let pki = TestPki::new();
        let mut spec = Spec::client("alice");
        spec.sans.push(rcgen_uri("spiffe://home.example/alice"));
        let cert = signed_by(&spec, &pki.intermediate);
        let chain = vec![
            CertificateDer::from(cert.der.clone()),
            CertificateDer::from(pki.intermediate.der.clone()),
        ];
        let anchor = if verified {
            pki.root
        } else {
            TestPki::new().root
        };
        let trust = certgate_pki::TrustBundle::new(
            "clients",
            vec![CertificateDer::from(anchor.der)],
            vec![],
            certgate_pki::verify::UnknownRevocation::Allow,
        )
        .unwrap();
        let peer = certgate_pki::PeerIdentity::evaluate(
            chain,
            Some(&trust),
            rustls_pki_types::UnixTime::now(),
        )
        .unwrap();
        ClientCert::Present(Box::new(peer))
    }

    fn rcgen_uri(uri: &str) -> certgate_testkit::San {
        certgate_testkit::San::URI(uri.try_into().unwrap())
    }

    fn any(allow: &[Rule]) -> Access {
        Access {
            allow: allow.to_vec(),
            ..Access::default()
        }
    }

    #[test]
    fn name_rules_match_verified_chains_only_and_pins_match_any() {
        let good = presented(true);
        let lookalike = presented(false);
        assert!(good.presented().unwrap().verified().is_some());
        assert!(lookalike.presented().unwrap().verified().is_none());
        let cn = Rule::new(vec![Condition::Cn(Glob::new("alice"))]);
        let spiffe = Rule::new(vec![Condition::Spiffe(Glob::new(
            "spiffe://home.example/*",
        ))]);
        let issuer = Rule::new(vec![Condition::Issuer(Glob::new("*"))]);
        for rule in [&cn, &spiffe, &issuer] {
            let allow = std::slice::from_ref(rule);
            assert_eq!(identity(&any(allow), &good), Decision::Allow);
            assert!(matches!(
                identity(&any(allow), &lookalike),
                Decision::Deny { status: 403, .. }
            ));
        }
        let opted_out = Rule {
            names_unverified: true,
            ..cn.clone()
        };
        assert_eq!(identity(&any(&[opted_out]), &lookalike), Decision::Allow);
        let pin = Rule::new(vec![Condition::CertSha256(
            lookalike.presented().unwrap().identity.cert_sha256,
        )]);
        assert_eq!(identity(&any(&[pin]), &lookalike), Decision::Allow);
    }

    #[test]
    fn host_other_than_sni_is_misdirected_on_every_route() {
        let public = Access::default();
        let none = ClientCert::Absent {
            reason: certgate_pki::NoClientCert::NotRequested,
        };
        assert_eq!(
            decide(&public, &none, Some("a.example"), Some("a.example")),
            Decision::Allow
        );
        assert!(matches!(
            decide(&public, &none, Some("b.example"), Some("a.example")),
            Decision::Deny { status: 421, .. }
        ));
        assert_eq!(
            decide(&public, &none, Some("b.example"), None),
            Decision::Allow
        );
    }
}
