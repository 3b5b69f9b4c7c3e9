//! Routes of an HTTP listener: where a request goes (`Upstream`, with its live connection
//! pool), which route a request takes (`select`), and the route's access rules for `policy`.

use certgate_pki::forward::Format;
use certgate_tls::SniPattern;

use crate::normal::EncodedSlashes;
use crate::policy::Access;

/// Where a route sends requests.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// An HTTP/1.1 server reached over TCP, TLS or a Unix socket.
    Remote {
        /// The authority requests carry (`localhost` for Unix sockets).
        authority: http::uri::Authority,
        /// The pooled client (its connector decides TCP, TLS or Unix).
        client: Box<crate::upstream::UpstreamClient>,
    },
    /// The built-in echo service: answers with the identity headers it received, as JSON.
    Echo,
    /// A forward-auth endpoint: 200 with identity headers when policy allows, 401/403 otherwise.
    ForwardAuth,
    /// A service inside the process (e.g. the transparency log API).
    Local(std::sync::Arc<dyn crate::local::LocalService>),
}

/// A route of an HTTP listener.
#[derive(Clone, Debug)]
pub struct Route {
    /// Name for logs and metrics (`host+path` when not set).
    pub name: String,
    /// Host to match; `None` matches any.
    pub host: Option<SniPattern>,
    /// Path prefix to match (`/` matches everything).
    pub path: String,
    /// Where requests go.
    pub upstream: Upstream,
    /// Who may use the route.
    pub access: Access,
    /// Identity formats sent upstream.
    pub forward: Vec<Format>,
    /// Encoded slashes in the path: refused (400) or kept for the upstream.
    pub encoded_slashes: EncodedSlashes,
    /// Upgrade protocols relayed to the upstream (lower-case; `h2c` never).
    pub upgrades: Vec<String>,
    /// Take the client certificate from a trusted front proxy's header instead of TLS.
    pub front: Option<crate::front::FrontProxy>,
}

/// Whether `path` is under `prefix`, on whole segments (`/admin` covers `/admin` and `/admin/x`,
/// not `/administrator`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Picks the route for a request: the most specific host (exact, then wildcard, then any), then
/// the longest path prefix. `host` and `path` are in normal form (`crate::normal`). Path
/// prefixes match whole segments, case-sensitively (`/admin` matches `/admin/x`, not
/// `/administrator` or `/Admin`).
pub fn select<'r>(routes: &'r [Route], host: Option<&str>, path: &str) -> Option<&'r Route> {
    select_by(routes, |r| (r.host.as_ref(), r.path.as_str()), host, path)
}

/// [`select`] for any kind of route: `key` gives a route's host pattern and path prefix.
pub fn select_by<'r, R>(
    routes: &'r [R],
    key: impl Fn(&R) -> (Option<&SniPattern>, &str),
    host: Option<&str>,
    path: &str,
) -> Option<&'r R> {
    let host_rank = |pattern: Option<&SniPattern>| -> Option<u8> {
        match (pattern, host) {
            (None, _) => Some(0),
            (Some(p @ SniPattern::Exact(_)), Some(h)) if p.matches(h) => Some(2),
            (Some(p @ SniPattern::Wildcard(_)), Some(h)) if p.matches(h) => Some(1),
            _ => None,
        }
    };
    routes
        .iter()
        .filter_map(|r| {
            let (pattern, prefix) = key(r);
            if !prefix_matches(prefix, path) {
                return None;
            }
            host_rank(pattern).map(|rank| (rank, prefix.trim_end_matches('/').len(), r))
        })
        .max_by_key(|(rank, len, _)| (*rank, *len))
        .map(|(_, _, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, host: Option<&str>) -> Route {
        Route {
            name: path.to_owned(),
            host: host.and_then(SniPattern::parse),
            path: path.to_owned(),
            upstream: Upstream::Echo,
            access: Access::default(),
            forward: vec![],
            front: None,
            encoded_slashes: EncodedSlashes::Reject,
            upgrades: vec!["websocket".to_owned()],
        }
    }

    #[test]
    fn selection_prefers_specific_host_then_longest_path() {
        let routes = vec![
            route("/", None),
            route("/admin", None),
            route("/", Some("*.example.com")),
            route("/api", Some("api.example.com")),
        ];
        let pick = |h: Option<&str>, p: &str| {
            select(&routes, h, p).map(|r| (r.host.clone(), r.path.clone()))
        };
        assert_eq!(pick(None, "/admin/x").unwrap().1, "/admin");
        assert_eq!(pick(None, "/administrator").unwrap().1, "/");
        assert_eq!(
            pick(Some("www.example.com"), "/admin").unwrap().0,
            SniPattern::parse("*.example.com")
        );
        assert_eq!(pick(Some("api.example.com"), "/api/v1").unwrap().1, "/api");
        assert_eq!(
            pick(Some("api.example.com"), "/other").unwrap().0,
            SniPattern::parse("*.example.com")
        );
    }
}
