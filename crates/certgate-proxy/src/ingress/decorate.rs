//! Decoration: the identity headers a route forwards, `X-Forwarded-*`/`Forwarded`, and the
//! response clean-up of RFC 9440.

use certgate_pki::forward::{self, Format};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{Conn, IngressConfig};

/// Identity headers for a route, as (name, value) pairs ready to insert.
pub(super) fn identity_headers(
    cfg: &IngressConfig,
    conn: &Conn,
    formats: &[Format],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = identity_pairs(
        &conn.client,
        formats,
        cfg.forward_unverified,
        &cfg.proxy_info,
    );
    if let Some(via) = &conn.via
        && formats.contains(&Format::Certgate)
        && let Ok(v) = HeaderValue::from_str(via)
    {
        out.push((HeaderName::from_static("x-client-forwarded-by"), v));
    }
    out
}

/// The identity headers of `formats` for `client` (any listener that forwards to HTTP).
pub(crate) fn identity_pairs(
    client: &certgate_pki::ClientCert,
    formats: &[Format],
    forward_unverified: bool,
    proxy_info: &forward::ProxyInfo,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    // A format without a verification field would hand the app a certificate anybody could
    // have made, looking the same as a verified one.
    let unvouched = client.presented().is_some_and(|p| p.verified().is_none());
    for f in formats {
        if unvouched && !f.states_verification() && !forward_unverified {
            continue;
        }
        for (name, value) in forward::encode(*f, client, proxy_info) {
            // Every encoder produces visible ASCII or escaped text; skip rather than panic if not.
            match HeaderValue::from_str(&value) {
                Ok(v) => out.push((HeaderName::from_static(name), v)),
                Err(_) => tracing::warn!(
                    header = name,
                    "identity header value is not a valid header value; not sent"
                ),
            }
        }
    }
    out
}

pub(super) fn set_forwarded(
    cfg: &IngressConfig,
    conn: &Conn,
    host: Option<&str>,
    headers: &mut HeaderMap,
) {
    if !cfg.x_forwarded {
        return;
    }
    // Incoming values come from the client and cannot be trusted at the edge: replace them.
    let ip = conn.peer.ip().to_string();
    for n in super::request::FORWARDING_HEADERS {
        headers.remove(n);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let for_part = if conn.peer.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let mut fwd = format!("for={for_part};proto=https");
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert("x-forwarded-host", v);
        }
        fwd.push_str(&format!(";host=\"{h}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert("forwarded", v);
    }
}

/// RFC 9440 §2: `Client-Cert` fields never appear in responses; a `Vary` on them becomes `*`
/// so that no cache serves one client's response to another.
pub(super) fn sanitize_response(headers: &mut HeaderMap) {
    if !headers
        .keys()
        .any(|n| n == header::VARY || n.as_str().starts_with("client-cert"))
    {
        return;
    }
    headers.remove("client-cert");
    headers.remove("client-cert-chain");
    let varies_on_cert = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',').any(|f| {
                    f.trim().eq_ignore_ascii_case("client-cert")
                        || f.trim().eq_ignore_ascii_case("client-cert-chain")
                })
            })
            .unwrap_or(false)
    });
    if varies_on_cert {
        headers.remove(header::VARY);
        headers.insert(header::VARY, HeaderValue::from_static("*"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::header_map as map;

    #[test]
    fn responses_lose_client_cert_fields_and_vary_on_them_becomes_star() {
        let mut h = map(&[
            ("client-cert", ":x:"),
            ("client-cert-chain", ":y:"),
            ("vary", "accept, Client-Cert"),
            ("content-type", "text/plain"),
        ]);
        sanitize_response(&mut h);
        assert!(h.get("client-cert").is_none() && h.get("client-cert-chain").is_none());
        assert_eq!(h.get("vary").unwrap(), "*");
        let mut h = map(&[("vary", "accept")]);
        sanitize_response(&mut h);
        assert_eq!(h.get("vary").unwrap(), "accept");
    }
}
