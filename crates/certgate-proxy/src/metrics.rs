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

/// Counts an open connection for as long as it lives.
pub(crate) struct OpenConnection(String);

impl OpenConnection {
    pub(crate) fn new(listener: &str) -> Option<Self> {
        if !enabled() {
            return None;
        }
        metrics::gauge!("certgate_connections_open", "listener" => listener.to_owned())
            .increment(1.0);
        Some(Self(listener.to_owned()))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("certgate_connections_open", "listener" => self.0.clone()).decrement(1.0);
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
