//! Which gate judges a request, and where a gated answer may redirect: the proxy-wide half of the
//! content-trust gate ([`super::gate`] judges one answer).
//!
//! Gates are looked up across every rule, not only the rule the path selected: a more specific
//! rule without a gate (another identity for `/releases/special/`, say) does not switch off a
//! gate whose `verify` covers the URL. A redirect from a gated URL is followed only to a place
//! the proxy will see and judge the same way: an `https://` target whose host has a rule and is
//! within the interception CA's constraints, or an `http://` target that a rule originates; the
//! target is then remembered, and its request is judged as the redirected one was.

use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::gate::{self, Gate, Judged, OutBody};
use super::rules::{Destination, EgressRule, select, tls_port};
use super::{EgressConfig, gate_url, originate};
use crate::message::text;

impl EgressConfig {
    /// The gate whose `verify` patterns cover `url`, from any rule.
    fn gate_for_file(&self, url: &str) -> Option<&Gate> {
        self.rules
            .iter()
            .filter_map(|r| r.gate.as_ref())
            .find(|g| g.gates(url))
    }

    /// Whether some gate's `verify` patterns may cover URLs of `https://host:port`: the origin
    /// part of a pattern (up to its first `/` after the scheme) matches this origin.
    pub(super) fn gate_covers_origin(&self, host: &str, port: u16) -> bool {
        let Some(url) = gate_url(host, port, "/") else {
            return false;
        };
        let origin = url
            .strip_prefix("https://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_default();
        self.rules
            .iter()
            .filter_map(|r| r.gate.as_ref())
            .flat_map(|g| &g.files)
            .any(|p| {
                let pattern_origin = p
                    .as_str()
                    .strip_prefix("https://")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or("*");
                certgate_pattern::Glob::new(pattern_origin).matches(origin)
            })
    }

    /// The gate that lists `host:port` as an OCI registry, from any rule.
    pub(super) fn gate_for_registry(&self, host: &str, port: u16) -> Option<&Gate> {
        self.rules
            .iter()
            .filter_map(|r| r.gate.as_ref())
            .find(|g| g.is_registry(host, port))
    }

    /// Where a gated answer from `https://host:port{path}` may redirect: the key its follow-up
    /// request will have, or why not.
    fn redirect_target(
        &self,
        location: &str,
        host: &str,
        port: u16,
        came_by_proxy: bool,
    ) -> Result<String, String> {
        let (scheme, t_host, t_port, t_path) =
            if location.starts_with('/') && !location.starts_with("//") {
                let uri: Uri = location
                    .parse()
                    .map_err(|_| "which is not a valid path".to_owned())?;
                (
                    "https".to_owned(),
                    host.to_owned(),
                    port,
                    uri.path().to_owned(),
                )
            } else {
                let absolute = match location.strip_prefix("//") {
                    Some(rest) => format!("https://{rest}"),
                    None => location.to_owned(),
                };
                let uri: Uri = absolute
                    .parse()
                    .map_err(|_| "which is not a URL certgate can follow".to_owned())?;
                let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
                if scheme != "https" && scheme != "http" {
                    return Err(format!("a `{scheme}` URL, which certgate cannot check"));
                }
                // An app that reached this download through CONNECT may fetch an http:// URL
                // directly (HTTPS_PROXY alone is common): certgate would never see it.
                if scheme == "http" && !came_by_proxy {
                    return Err(
                        "an http:// URL, which an app that uses CONNECT may fetch without certgate"
                            .to_owned(),
                    );
                }
                let authority = uri
                    .authority()
                    .ok_or_else(|| "which names no host".to_owned())?;
                if authority.as_str().contains('@') {
                    return Err("which carries user information".to_owned());
                }
                let default = if scheme == "https" { 443 } else { 80 };
                let (h, p) = super::split_authority(authority, default);
                if !super::valid_host(&h) {
                    return Err(format!("whose host `{h}` is not a host name"));
                }
                (scheme, h, p, uri.path().to_owned())
            };
        let tls = tls_port(&scheme, t_port);
        let dest = Destination {
            host: &t_host,
            port: tls,
            path: Some(&t_path),
        };
        if select(&self.rules, &dest).is_none() {
            return Err(format!(
                "a destination with no egress rule ({t_host}:{tls}), so certgate would not see what it serves; add a rule for it (with `trust_policy`)"
            ));
        }
        if scheme == "https" && !self.interceptor.as_ref().is_some_and(|i| i.covers(&t_host)) {
            return Err(format!(
                "a host ({t_host}) the interception CA cannot intercept, so certgate would not see what it serves"
            ));
        }
        let url = gate_url(&t_host, tls, &t_path)
            .ok_or_else(|| format!("whose path `{t_path}` has no normal form"))?;
        Ok(gate::redirect_key(&url))
    }
}

/// Sends `req` on with `rule`'s identity (`came_by_proxy`: an absolute-form request, not one
/// inside an intercepted `CONNECT`); when a gate judges it (the target of an allowed
/// redirect, a gated OCI registry's manifest or blob, a file a `verify` pattern covers), the
/// answer is judged before the app has it.
pub(crate) async fn originate_gated(
    cfg: &EgressConfig,
    rule: &EgressRule,
    host: &str,
    port: u16,
    mut req: Request<Incoming>,
    came_by_proxy: bool,
) -> Response<OutBody> {
    let raw_path = req.uri().path().to_owned();
    let url = gate_url(host, port, &raw_path);
    let shown = url
        .clone()
        .unwrap_or_else(|| format!("https://{host}:{port}{raw_path}"));
    let judged: Option<(Gate, Judged)> = {
        let expected = url
            .as_deref()
            .and_then(|u| cfg.gate_state.expected(&gate::redirect_key(u)));
        if let Some((judged, g)) = expected {
            Some((g, judged))
        } else if let Some(g) = cfg.gate_for_registry(host, port) {
            let Ok(path) = crate::normal::path(&raw_path).map(|p| p.matched) else {
                return refused_request(&shown, "the path has no normal form");
            };
            match gate::classify_registry(&path) {
                Ok(Some(j)) => Some((g.clone(), j)),
                // Not a manifest or blob: a file pattern may still cover it.
                Ok(None) => url
                    .as_deref()
                    .and_then(|u| cfg.gate_for_file(u))
                    .map(|g| (g.clone(), Judged::File)),
                Err(why) if req.method() == Method::GET || req.method() == Method::HEAD => {
                    return gate::refuse(
                        g,
                        &shown,
                        None,
                        gate::Judgement {
                            trusted: false,
                            status: "UNVERIFIABLE".to_owned(),
                            reason: why,
                        },
                    );
                }
                Err(_) => None,
            }
        } else {
            match &url {
                Some(u) => cfg.gate_for_file(u).map(|g| (g.clone(), Judged::File)),
                // A path with no normal form, on a host a gate covers: refused, fail closed.
                None if cfg.gate_covers_origin(host, port) => {
                    return refused_request(&shown, "the path has no normal form");
                }
                None => None,
            }
        }
    };
    // HEAD delivers no content; pushes to a registry are not downloads.
    let judged = judged.filter(|(_, j)| {
        req.method() != Method::HEAD && (matches!(j, Judged::File) || req.method() == Method::GET)
    });
    let Some((g, judged)) = judged else {
        return originate(rule, host, port, req).await;
    };
    if req.version() < http::Version::HTTP_11 {
        // An HTTP/1.0 answer ends by closing: a refusal would look like the end of the file.
        return text(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            format!(
                "certgate egress: content trust: {shown}: a checked download needs HTTP/1.1, so that a refused one cannot look complete"
            ),
        );
    }
    gate::prepare_request(req.headers_mut());
    let resp = originate(rule, host, port, req).await;
    let redirect = |location: &str| cfg.redirect_target(location, host, port, came_by_proxy);
    gate::judge_response(&g, &cfg.gate_state, &shown, judged, resp, &redirect).await
}

fn refused_request(url: &str, why: &str) -> Response<OutBody> {
    text(
        StatusCode::BAD_REQUEST,
        format!("certgate egress: content trust: {url}: {why}"),
    )
}
