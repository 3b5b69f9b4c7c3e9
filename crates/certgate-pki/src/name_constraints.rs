//! X.509 name constraints (RFC 5280 §4.2.1.10) for the names a TLS server certificate carries:
//! DNS names and IP addresses. Used to make an interception CA that can only sign for the hosts
//! egress rules name, and to check a host against such a CA before minting for it.
//!
//! A DNS constraint `example.com` covers `example.com` and every name under it; `.example.com`
//! covers only the names under it; an empty one covers every name. An IP constraint is an address
//! and a mask. When a certificate permits some names of a type, a name of that type outside them
//! is refused; a type with no permitted subtree is unconstrained, which is why
//! [`constrained_root_params`] excludes every IP address when no rule names one, and permits only
//! the reserved `invalid` domain when no rule names a DNS host.

use std::net::IpAddr;

use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// A host an interception CA may sign for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permitted {
    /// A DNS name and every name under it (lower case, no trailing dot).
    Dns(String),
    /// One IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for Permitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dns(d) => write!(f, "{d} (and names under it)"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The name constraints for a CA that may sign only for `permitted`.
pub fn constrained_root_params(permitted: &[Permitted]) -> NameConstraints {
    let mut permitted_subtrees = Vec::new();
    let mut has_dns = false;
    let mut has_ip = false;
    for p in permitted {
        match p {
            Permitted::Dns(d) => {
                has_dns = true;
                permitted_subtrees.push(GeneralSubtree::DnsName(d.clone()));
            }
            Permitted::Ip(ip) => {
                has_ip = true;
                permitted_subtrees.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                    *ip,
                    if ip.is_ipv4() { 32 } else { 128 },
                )));
                // A leaf minted for an IPv4 address has it as its common name too, and OpenSSL
                // checks a dotted common name against the DNS constraints: permit it there as
                // well (no real host name ends in four numbers).
                if ip.is_ipv4() {
                    permitted_subtrees.push(GeneralSubtree::DnsName(ip.to_string()));
                }
            }
        }
    }
    if !has_dns {
        // `invalid` is reserved (RFC 6761): no real host is under it.
        permitted_subtrees.push(GeneralSubtree::DnsName("invalid".to_owned()));
    }
    // No mailbox either: only ones at the reserved `invalid` host.
    permitted_subtrees.push(GeneralSubtree::Rfc822Name("invalid".to_owned()));
    let mut excluded_subtrees = Vec::new();
    if !has_ip {
        excluded_subtrees.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
        excluded_subtrees.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
    }
    NameConstraints {
        permitted_subtrees,
        excluded_subtrees,
    }
}

/// One subtree as read from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subtree {
    Dns(String),
    Ip {
        addr: Vec<u8>,
        mask: Vec<u8>,
    },
    /// A type TLS server names never have (email, URI, directory name): irrelevant here.
    Other,
}

impl Subtree {
    fn covers_dns(&self, host: &str) -> bool {
        match self {
            Self::Dns(base) if base.is_empty() => true,
            Self::Dns(base) if base.starts_with('.') => host.ends_with(base.as_str()),
            Self::Dns(base) => {
                host == base
                    || host
                        .strip_suffix(base.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            _ => false,
        }
    }

    fn covers_ip(&self, ip: IpAddr) -> bool {
        let Self::Ip { addr, mask } = self else {
            return false;
        };
        let bytes: Vec<u8> = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        bytes.len() == addr.len()
            && bytes
                .iter()
                .zip(addr)
                .zip(mask)
                .all(|((b, a), m)| b & m == a & m)
    }
}

/// A CA certificate's name constraints, for checking hosts before minting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Constraints {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

impl Constraints {
    /// The constraints of `cert` (DER); `Ok(None)` when it has none.
    pub fn of(cert: &[u8]) -> Result<Option<Self>, String> {
        let (_, c) = X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
        for ext in c.extensions() {
            let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
                continue;
            };
            let read = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
                subtrees
                    .iter()
                    .flatten()
                    .map(|s| match &s.base {
                        GeneralName::DNSName(d) => Subtree::Dns(d.to_ascii_lowercase()),
                        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                            let (addr, mask) = b.split_at(b.len() / 2);
                            Subtree::Ip {
                                addr: addr.to_vec(),
                                mask: mask.to_vec(),
                            }
                        }
                        _ => Subtree::Other,
                    })
                    .collect::<Vec<_>>()
            };
            return Ok(Some(Self {
                permitted: read(&nc.permitted_subtrees),
                excluded: read(&nc.excluded_subtrees),
            }));
        }
        Ok(None)
    }

    /// Whether a server certificate for `host` (a DNS name or an IP address) is within the
    /// constraints: inside a permitted subtree of its type (when the type has any) and outside
    /// every excluded one.
    pub fn permits(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let typed: Vec<&Subtree> = self
                    .permitted
                    .iter()
                    .filter(|s| matches!(s, Subtree::Ip { .. }))
                    .collect();
                (typed.is_empty() || typed.iter().any(|s| s.covers_ip(ip)))
                    && !self.excluded.iter().any(|s| s.covers_ip(ip))
            }
            Err(_) => {
                let typed: Vec<&Subtree> = self
                    .permitted
                    .iter()
                    .filter(|s| matches!(s, Subtree::Dns(_)))
                    .collect();
                (typed.is_empty() || typed.iter().any(|s| s.covers_dns(&host)))
                    && !self.excluded.iter().any(|s| s.covers_dns(&host))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraints(permitted: &[Permitted]) -> Constraints {
        let now = time::OffsetDateTime::now_utc();
        let root = crate::ca::create_constrained_root(
            "test",
            30,
            crate::ca::KeyType::EcdsaP256,
            now,
            permitted,
        )
        .unwrap();
        Constraints::of(&root.cert_der).unwrap().unwrap()
    }

    #[test]
    fn permits_only_the_named_hosts_and_what_is_under_them() {
        let c = constraints(&[
            Permitted::Dns("ha.example".into()),
            Permitted::Dns("internal.test".into()),
            Permitted::Ip("192.0.2.7".parse().unwrap()),
        ]);
        for ok in [
            "ha.example",
            "HA.example.",
            "api.ha.example",
            "a.b.internal.test",
            "192.0.2.7",
        ] {
            assert!(c.permits(ok), "{ok}");
        }
        for no in [
            "example",
            "evilha.example",
            "ha.example.evil",
            "google.com",
            "192.0.2.8",
            "::1",
            "internal.test.evil",
        ] {
            assert!(!c.permits(no), "{no}");
        }
    }

    #[test]
    fn without_ip_rules_no_ip_and_without_dns_rules_no_name() {
        let c = constraints(&[Permitted::Dns("ha.example".into())]);
        assert!(!c.permits("127.0.0.1"));
        assert!(!c.permits("::1"));
        let c = constraints(&[Permitted::Ip("127.0.0.1".parse().unwrap())]);
        assert!(c.permits("127.0.0.1"));
        assert!(!c.permits("127.0.0.2"));
        assert!(!c.permits("localhost"));
        assert!(!c.permits("example.com"));
    }

    #[test]
    fn an_unconstrained_certificate_has_none() {
        let now = time::OffsetDateTime::now_utc();
        let root = crate::ca::create_root("test", 30, crate::ca::KeyType::EcdsaP256, now).unwrap();
        assert_eq!(Constraints::of(&root.cert_der).unwrap(), None);
    }
}
