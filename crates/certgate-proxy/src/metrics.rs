//! Metric helpers shared by listeners (names documented in `admin`).
//!
//! Metrics cost label allocations on every request, so they are only emitted once an admin
//! listener installed the recorder ([`enabled`]).

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns metric emission on (called when the Prometheus recorder is installed).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether metrics are recorded at all.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Adds one to a per-listener gauge for as long as it lives.
pub(crate) struct Gauge {
    name: &'static str,
    listener: String,
}

impl Gauge {
    fn new(name: &'static str, listener: &str) -> Option<Self> {
        if !enabled() {
            return None;
        }
        metrics::gauge!(name, "listener" => listener.to_owned()).increment(1.0);
        Some(Self {
            name,
            listener: listener.to_owned(),
        })
    }

    /// An open connection (`certgate_connections_open`).
    pub(crate) fn open(listener: &str) -> Option<Self> {
        Self::new("certgate_connections_open", listener)
    }

    /// A parked HTTP/1 connection (`certgate_connections_parked`): open, between requests,
    /// holding no HTTP state.
    pub(crate) fn parked(listener: &str) -> Option<Self> {
        Self::new("certgate_connections_parked", listener)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(self.name, "listener" => self.listener.clone()).decrement(1.0);
    }
}

pub(crate) fn handshake(listener: &str, result: &'static str, reason: &'static str) {
    if !enabled() {
        return;
    }
    metrics::counter!(
        "certgate_handshakes_total",
        "listener" => listener.to_owned(),
        "result" => result,
        "reason" => reason
    )
    .increment(1);
}

/// A small, fixed set of reasons (bounded label cardinality) from a failed handshake.
pub(crate) fn handshake_reason(e: &std::io::Error) -> &'static str {
    let Some(err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match err {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(c) => match c {
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "expired"
            }
            rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. } => "not_yet_valid",
            rustls::CertificateError::Revoked => "revoked",
            rustls::CertificateError::UnknownIssuer => "unknown_issuer",
            rustls::CertificateError::BadSignature => "bad_signature",
            rustls::CertificateError::InvalidPurpose
            | rustls::CertificateError::InvalidPurposeContext { .. } => "wrong_usage",
            _ => "bad_certificate",
        },
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::PeerMisbehaved(_) => "misbehaved",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InvalidMessage(_) => "invalid_message",
        _ => "other",
    }
}

/// `certgate_connections_closed_total{listener,reason}`: connections certgate ended itself for
/// a reason other than timeouts and drain (`no_longer_admitted`: a reload revoked its client).
pub(crate) fn closed(listener: &str, reason: &'static str) {
    if enabled() {
        metrics::counter!("certgate_connections_closed_total", "listener" => listener.to_owned(), "reason" => reason)
            .increment(1);
    }
}
