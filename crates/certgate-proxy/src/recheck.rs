//! Open connections after a reload: is the client still admitted?
//!
//! A reload may revoke a certificate (a new CRL), drop or change the trust, or make the
//! listener demand what a connection lacks. Connections opened before it must not keep what
//! new connections would be refused: each one waits for its listener's change signal and asks
//! [`still_admitted`] about its client under the new configuration. When the answer is no, the
//! connection ends (HTTP/2 gets GOAWAY, then everything is cut after a second; a WebSocket or a
//! tunnel is cut). When it is yes, its requests are judged by the new routes and policy.

use certgate_pki::{ClientCert, Purpose, TrustBundle, Verdict};
use certgate_tls::ClientAuth;
use rustls_pki_types::UnixTime;

/// Why a connection must end after a change, or `Ok` when the client is admitted as before.
pub(crate) fn still_admitted(
    client: &ClientCert,
    client_auth: ClientAuth,
    trust: Option<&TrustBundle>,
) -> Result<(), String> {
    let Some(peer) = client.presented() else {
        if client_auth.mandatory() {
            return Err("the listener now requires a client certificate".to_owned());
        }
        return Ok(());
    };
    let was = peer.verified().is_some();
    let now = match trust {
        Some(t) => match t.verify(&peer.chain, Purpose::Client, UnixTime::now()) {
            Verdict::Verified(_) => Ok(()),
            Verdict::Rejected(r) => Err(r.to_string()),
        },
        None => Err("no trust is configured any more".to_owned()),
    };
    match (was, now) {
        (true, Err(why)) => Err(format!("the client certificate no longer verifies ({why})")),
        (false, Ok(())) => {
            Err("the client certificate verifies now; the client reconnects to use it".to_owned())
        }
        (false, Err(_)) if client_auth.verifies() => {
            Err("the listener now accepts verified client certificates only".to_owned())
        }
        _ => Ok(()),
    }
}

/// Waits for changes (reloads, new CRLs) until `judge` refuses the connection after one, and
/// returns why; never resolves once the listener is gone (its connections drain instead).
pub(crate) async fn until_refused(
    mut changes: tokio::sync::watch::Receiver<()>,
    mut judge: impl FnMut() -> Result<(), String>,
) -> String {
    loop {
        if changes.changed().await.is_err() {
            return std::future::pending::<String>().await;
        }
        if let Err(why) = judge() {
            return why;
        }
    }
}
