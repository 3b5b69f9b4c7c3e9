//! Identities forwarded by a front proxy (WAF, load balancer): taken only from a configured,
//! trusted peer, and always re-verified (a header is only bytes: anyone could have written it). Pure decisions plus the
//! per-request extraction.

use std::net::IpAddr;

use certgate_pki::forwarded::{self, InputFormat};
use certgate_pki::{ClientCert, NoClientCert, PeerIdentity, TrustBundle};
use http::HeaderMap;
use rustls_pki_types::UnixTime;

use crate::policy::{self, Rule};

/// An IP network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What to do with a forwarded-certificate header from a peer that is not trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUntrusted {
    /// Remove it; the request goes on without a forwarded identity.
    #[default]
    Strip,
    /// Answer 400.
    Reject,
}

/// A route's front-proxy trust.
#[derive(Clone, Debug)]
pub struct FrontProxy {
    /// The headers that may carry the certificate (lower-case), in order; a request may carry
    /// only one of them, once. More than one for AWS ALB: passthrough mode's
    /// `X-Amzn-Mtls-Clientcert` and verify mode's `X-Amzn-Mtls-Clientcert-Leaf`.
    pub headers: Vec<http::HeaderName>,
    /// Its format.
    pub format: InputFormat,
    /// Peers trusted by address (empty: any address, if `allow` passes).
    pub networks: Vec<Cidr>,
    /// Peers trusted by their own mTLS identity (empty: no identity needed, if `networks` passes).
    pub allow: Vec<Rule>,
    /// What to do with the header from anyone else.
    pub on_untrusted: OnUntrusted,
}

/// The outcome for one request.
#[derive(Debug)]
pub enum Forwarded {
    /// A trusted front proxy sent a certificate: its re-verified identity, and which proxy.
    Identity(ClientCert, String),
    /// A trusted front proxy sent no certificate header.
    None(String),
    /// Not from a trusted front proxy; the header (if any) is ignored.
    Untrusted,
    /// Refuse the request with 400 and this reason.
    Reject(String),
}

impl FrontProxy {
    /// Whether the connection comes from a trusted front proxy.
    pub fn trusts(&self, peer: IpAddr, tls_client: &ClientCert) -> bool {
        let by_address = self.networks.is_empty() || self.networks.iter().any(|n| n.contains(peer));
        // The front proxy's own certificate must verify before any rule about it counts.
        let by_identity = self.allow.is_empty()
            || tls_client.presented().is_some_and(|p| {
                p.verified().is_some() && policy::any_rule_matches(&self.allow, p)
            });
        by_address && by_identity && !(self.networks.is_empty() && self.allow.is_empty())
    }

    /// Reads the forwarded certificate of a request (before identity headers are stripped).
    pub fn extract(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        tls_client: &ClientCert,
        trust: Option<&TrustBundle>,
        now: UnixTime,
    ) -> Forwarded {
        let values: Vec<_> = self
            .headers
            .iter()
            .flat_map(|h| headers.get_all(h).iter().map(move |v| (h, v)))
            .collect();
        if !self.trusts(peer, tls_client) {
            if let Some((name, _)) = values.first()
                && self.on_untrusted == OnUntrusted::Reject
            {
                return Forwarded::Reject(format!(
                    "`{name}` is accepted only from a trusted front proxy"
                ));
            }
            return Forwarded::Untrusted;
        }
        let via = match tls_client.presented() {
            Some(p) => format!("{peer} ({})", p.identity.subject),
            None => peer.to_string(),
        };
        let (name, value) = match values.as_slice() {
            [] => return Forwarded::None(via),
            [one] => *one,
            [(a, _), (b, _), ..] if a == b => {
                return Forwarded::Reject(format!("`{a}` is repeated"));
            }
            [(a, _), (b, _), ..] => {
                return Forwarded::Reject(format!("both `{a}` and `{b}` are present; send one"));
            }
        };
        let Ok(text) = value.to_str() else {
            return Forwarded::Reject(format!("`{name}` is not visible ASCII"));
        };
        let chain = match forwarded::decode(self.format, text) {
            Ok(c) => c,
            Err(e) => return Forwarded::Reject(format!("`{name}`: {e}")),
        };
        match PeerIdentity::evaluate(chain, trust, now) {
            Some(p) => Forwarded::Identity(ClientCert::Present(Box::new(p)), via),
            None => Forwarded::Reject(format!("`{name}`: the certificate is not valid X.509")),
        }
    }
}

impl FrontProxy {
    /// Whether a request carries any of the certificate headers.
    pub fn header_sent(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().any(|h| headers.contains_key(h))
    }

    /// Removes every certificate header (all repeats).
    pub fn remove_headers(&self, headers: &mut HeaderMap) {
        for h in &self.headers {
            headers.remove(h);
        }
    }
}

/// The identity a request carries when its route takes forwarded certificates but the trusted
/// proxy sent none.
pub fn none() -> ClientCert {
    ClientCert::Absent {
        reason: NoClientCert::NotSent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("192.0.2.1".parse().unwrap())
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
    }
}
