//! The access log: what answering one request found out ([`Trace`]), written once per request.

use std::time::Instant;

use http::{Response, StatusCode};

use super::{Conn, IngressConfig};
use crate::message::{Body, text};
use crate::route::Route;

/// What answering a request found out, for the access log and the last touches.
#[derive(Default)]
pub(super) struct Trace<'a> {
    pub(super) route: Option<&'a Route>,
    /// The path in normal form, once known (the raw path is logged before that).
    pub(super) path: Option<String>,
    pub(super) stripped: usize,
    pub(super) reason: Option<String>,
    /// The identity a trusted front proxy forwarded, on routes that take one.
    pub(super) forwarded: Option<Conn>,
    /// The response (and its body) came from a remote upstream.
    pub(super) proxied: bool,
}

impl Trace<'_> {
    /// A response made here for a refused request; `reason` also goes to the access log.
    pub(super) fn refuse(
        &mut self,
        status: StatusCode,
        reason: impl Into<String>,
    ) -> Response<Body> {
        let reason = reason.into();
        let resp = text(status, &reason);
        self.reason = Some(reason);
        resp
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn log_request(
    cfg: &IngressConfig,
    conn: &Conn,
    route: Option<&Route>,
    method: &http::Method,
    path: &str,
    status: StatusCode,
    started: Option<Instant>,
    stripped: usize,
    reason: Option<&str>,
) {
    if crate::metrics::enabled() {
        metrics::counter!(
            "certgate_requests_total",
            "listener" => cfg.name.clone(),
            "route" => route.map_or_else(String::new, |r| r.name.clone()),
            "status" => status.as_u16().to_string()
        )
        .increment(1);
        if let Some(reason) = reason
            && status.is_client_error()
        {
            crate::admin::record_denial(crate::admin::Denial {
                at: time::OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                listener: cfg.name.clone(),
                route: route.map_or_else(String::new, |r| r.name.clone()),
                status: status.as_u16(),
                reason: reason.to_owned(),
                client: conn
                    .client
                    .presented()
                    .map_or_else(String::new, |p| p.identity.subject.clone()),
                peer: conn.peer.to_string(),
            });
        }
    }
    // Nothing below is computed unless the access log is on.
    if !tracing::enabled!(target: "certgate::access", tracing::Level::INFO) {
        return;
    }
    let (spki, subject, verified) = match conn.client.presented() {
        Some(p) => (
            p.identity.spki_sha256.to_hex(),
            p.identity.subject.clone(),
            p.verified().is_some(),
        ),
        None => (String::new(), String::new(), false),
    };
    tracing::info!(
        target: "certgate::access",
        listener = %cfg.name,
        peer = %conn.peer,
        route = route.map_or("", |r| r.name.as_str()),
        method = %method,
        path,
        status = status.as_u16(),
        duration_us = started.map_or(0, |s| s.elapsed().as_micros() as u64),
        client_spki_sha256 = %spki,
        client_subject = %subject,
        client_verified = verified,
        stripped_identity_headers = stripped,
        reason = reason.unwrap_or(""),
    );
}
