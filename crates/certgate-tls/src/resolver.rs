//! Server identities chosen by SNI: exact names, `*.` wildcards (one label), and a default for
//! clients that send no SNI or an unknown one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// An SNI pattern: `host.example` or `*.example` (one leftmost label).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// The exact name, lower-case.
    Exact(String),
    /// `*.suffix`: any single label followed by `.suffix` (lower-case, without the dot).
    Wildcard(String),
}

impl SniPattern {
    /// Parses `name` or `*.suffix`; `None` for anything else (e.g. `a*.b`, `*`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = s.strip_prefix("*.") {
            return (!suffix.is_empty() && !suffix.contains('*'))
                .then(|| Self::Wildcard(suffix.to_owned()));
        }
        (!s.is_empty() && !s.contains('*')).then_some(Self::Exact(s))
    }

    /// Whether `host` (lower-case) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Wildcard(suffix) => {
                certgate_pattern::wildcard_host(host, suffix, certgate_pattern::Labels::One)
            }
        }
    }
}

impl fmt::Display for SniPattern {
    /// As written in a config: `host.example` or `*.example`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The identities of a listener.
#[derive(Clone)]
pub struct SniIdentities {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl fmt::Debug for SniIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniIdentities")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SniIdentities {
    /// Identities with `default` for unknown or absent SNI.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Serves `key` for names matching `pattern`.
    pub fn add(&mut self, pattern: SniPattern, key: Arc<CertifiedKey>) {
        match pattern {
            SniPattern::Exact(n) => self.exact.insert(n, key),
            SniPattern::Wildcard(s) => self.wildcard.insert(s, key),
        };
    }

    /// The key served for `sni` (exact beats wildcard beats default).
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else {
            return Arc::clone(&self.default);
        };
        if let Some(k) = self.exact.get(&name) {
            return Arc::clone(k);
        }
        if let Some((_, rest)) = name.split_once('.')
            && let Some(k) = self.wildcard.get(rest)
        {
            return Arc::clone(k);
        }
        Arc::clone(&self.default)
    }
}

impl ResolvesServerCert for SniIdentities {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let w = SniPattern::parse("*.Example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches(".example.com"));
        assert_eq!(
            SniPattern::parse("Host.example."),
            Some(SniPattern::Exact("host.example".into()))
        );
        assert_eq!(SniPattern::parse("a*.b"), None);
        assert_eq!(SniPattern::parse("*"), None);
    }
}
