//! `[ca]`: certgate's own CA, kept published while `serve` runs.
//!
//! Every two seconds the keeper looks at the CA directory and signs a new CRL (`DIR/crl.pem`)
//! when there is none, when it cannot be read, when the index lists more revoked certificates
//! than it does (`certgate ca revoke` ran), when half its validity has passed, or when it is
//! valid for longer than `crl_validity_secs` (signed by hand). A trust that
//! lists `DIR/crl.pem` sees the new file and reloads, so a revocation applies within seconds and
//! a CRL never runs out while `serve` runs. With `publish`, the CA certificate and the CRL are
//! also served over plain HTTP (`/ca.pem`, `/ca.crl` in DER), the URL to give `ca issue
//! --crl-url` and other verifiers' `crl_url`.

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ca_store::CaDir;
use crate::config::CaSection;

/// How often the CA directory is looked at.
const EVERY: Duration = Duration::from_secs(2);

/// The keeper of one `[ca]` section (and its HTTP listener, when it publishes).
pub(super) struct Keeper {
    section: CaSection,
    task: JoinHandle<()>,
    publisher: Option<JoinHandle<()>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.publisher {
            p.abort();
        }
    }
}

impl Keeper {
    /// Starts keeping `section`'s CRL signed, and serving it on `listener` when given.
    pub(super) fn start(section: CaSection, listener: Option<TcpListener>) -> Self {
        let task = tokio::spawn(keep(section.clone()));
        let publisher = listener.map(|l| tokio::spawn(publish(section.dir.clone(), l)));
        Self {
            section,
            task,
            publisher,
        }
    }

    /// Applies a reloaded `[ca]`: a new directory or validity restarts the keeper; the publish
    /// address is bound once, so a change of it waits for a restart.
    pub(super) fn update(self, new: Option<&CaSection>) -> Option<Self> {
        let new = new?;
        if *new == self.section {
            return Some(self);
        }
        if new.publish != self.section.publish {
            tracing::warn!("`ca.publish` changes take effect at the next restart");
        }
        let mut this = self;
        this.task.abort();
        this.task = tokio::spawn(keep(CaSection {
            publish: this.section.publish,
            ..new.clone()
        }));
        this.section = CaSection {
            publish: this.section.publish,
            ..new.clone()
        };
        Some(this)
    }
}

/// Binds `[ca] publish`, printing `listening ca=ca addr=...` like every listener.
pub(super) async fn bind(section: &CaSection) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = section.publish else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        crate::exit::fail(
            crate::exit::CANTCREAT,
            format!("ca: cannot listen on {addr}: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    println!("listening ca=ca addr={local}");
    tracing::info!(%local, "CA publishing listening");
    Ok(Some(listener))
}

async fn keep(section: CaSection) {
    // Certificates (identity name, serial) whose renewal cannot help (too short a validity) or
    // must not happen (revoked), warned about once; a new certificate in the file is looked at
    // afresh.
    let mut hopeless = std::collections::HashSet::new();
    loop {
        let s = section.clone();
        let skip = hopeless.clone();
        match tokio::task::spawn_blocking(move || renew_due(&s, &skip)).await {
            Ok(outcomes) => {
                for (name, old_serial, outcome) in outcomes {
                    match outcome {
                        Renewal::Done(serial, not_after) => {
                            metrics::counter!("certgate_ca_renewals_total", "identity" => name.clone()).increment(1);
                            tracing::info!(identity = %name, serial = %serial, not_after = %not_after, "identity renewed by the CA; reloading it");
                        }
                        Renewal::Hopeless(days) => {
                            tracing::warn!(identity = %name, days, "a renewal would be due again at once: set `ca.renew_days` longer than `renew_before_days`");
                            hopeless.insert((name, old_serial.clone()));
                        }
                        Renewal::Refused(why) => {
                            tracing::warn!(identity = %name, serial = %old_serial, why = %why, "the identity's certificate is not renewed; issue a new one with certgate ca issue");
                            hopeless.insert((name, old_serial.clone()));
                        }
                        Renewal::Failed(e) => {
                            tracing::warn!(identity = %name, error = %e, "cannot renew the identity; trying again")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "CA renewal task failed"),
        }
        // Records of what the CA did (this keeper's renewals, and `ca` commands whose log was
        // down) go to the log as soon as it takes them.
        let dir = section.dir.clone();
        match tokio::task::spawn_blocking(move || CaDir::new(&dir).send_records()).await {
            Ok(Ok(sent)) => {
                if !sent.indexes.is_empty() {
                    metrics::counter!("certgate_ca_records_logged_total")
                        .increment(sent.indexes.len() as u64);
                    tracing::info!(dir = %section.dir.display(), indexes = ?sent.indexes, "CA records appended to the log");
                }
                metrics::gauge!("certgate_ca_records_pending").set(sent.left as f64);
                if let Some(why) = sent.failed {
                    tracing::warn!(dir = %section.dir.display(), pending = sent.left, error = %why, "CA records are not yet on the log; trying again");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %section.dir.display(), error = %format!("{e:#}"), "cannot send the CA's records; trying again")
            }
            Err(e) => tracing::warn!(error = %e, "CA record task failed"),
        }
        let s = section.clone();
        match tokio::task::spawn_blocking(move || sign_if_due(&s)).await {
            Ok(Ok(Some((why, revoked)))) => {
                metrics::counter!("certgate_ca_crls_signed_total").increment(1);
                tracing::info!(dir = %section.dir.display(), revoked, reason = why, "CA CRL signed");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %section.dir.display(), error = %format!("{e:#}"), "cannot sign the CA's CRL; trying again")
            }
            Err(e) => tracing::warn!(error = %e, "CA keeper task failed"),
        }
        tokio::time::sleep(EVERY).await;
    }
}

enum Renewal {
    /// Renewed: the new serial and expiry.
    Done(String, String),
    /// Renewing would give a certificate that is due again at once (validity in days).
    Hopeless(i64),
    /// Must not be renewed (revoked, or its key or a successor was): why.
    Refused(String),
    Failed(String),
}

/// Renews, in place and with the same key, each identity this CA issued that has less than
/// `renew_before` left. The certificate file is replaced atomically; serve sees the change and
/// reloads the identity (new handshakes present the new certificate; open connections stay).
fn renew_due(
    section: &CaSection,
    skip: &std::collections::HashSet<(String, String)>,
) -> Vec<(String, String, Renewal)> {
    let store = CaDir::new(&section.dir);
    let Ok(ca) = store.open() else {
        return Vec::new();
    };
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for (name, cert, key) in &section.identities {
        let Ok(bytes) = std::fs::read(cert) else {
            continue;
        };
        let Some(id) =
            certgate_pki::credential::parse_certificates(&bytes, &certgate_pki::Origin::file(cert))
                .ok()
                .and_then(|c| c.into_iter().next())
                .and_then(|c| certgate_pki::Identity::from_der(&c).ok())
        else {
            continue;
        };
        if skip.contains(&(name.clone(), id.serial.clone())) {
            continue;
        }
        // Only what this CA issued, and only when due.
        if id.issuer != ca.identity().subject
            || (id.not_after - now).unsigned_abs() >= section.renew_before && id.not_after > now
        {
            continue;
        }
        // A revoked identity stays revoked: renewing it would undo the revocation under a new
        // serial. Its owner is told once; the listener refuses it like any revoked certificate.
        // A revoked identity (or one whose key or successor was revoked) stays revoked:
        // renewing it would undo the revocation under a new serial. Its owner is told once;
        // the listener refuses it like any revoked certificate.
        if let Some(why) = store
            .index()
            .ok()
            .and_then(|index| store.renewal_refused(&id, &index))
        {
            out.push((name.clone(), id.serial.clone(), Renewal::Refused(why)));
            continue;
        }
        let days = section.renew_days.map_or_else(
            || (id.not_after - id.not_before).whole_days().max(1),
            i64::from,
        );
        if days.saturating_mul(86400)
            <= i64::try_from(section.renew_before.as_secs()).unwrap_or(i64::MAX)
        {
            out.push((name.clone(), id.serial.clone(), Renewal::Hopeless(days)));
            continue;
        }
        let outcome = match store.renew(cert, key, u32::try_from(days).ok(), false) {
            Ok(r) => Renewal::Done(r.serial, r.not_after),
            Err(e) => Renewal::Failed(format!("{e:#}")),
        };
        out.push((name.clone(), id.serial.clone(), outcome));
    }
    out
}

/// Signs a new CRL when one is due; returns why and how many certificates it revokes.
fn sign_if_due(section: &CaSection) -> anyhow::Result<Option<(&'static str, usize)>> {
    let store = CaDir::new(&section.dir);
    let path = section.dir.join("crl.pem");
    let revoked = store
        .index()?
        .iter()
        .filter(|e| e.revoked.is_some())
        .count();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let half = i64::try_from(section.crl_validity.as_secs() / 2).unwrap_or(i64::MAX);
    let why = match std::fs::read(&path) {
        Err(_) => Some("there was none"),
        Ok(bytes) => {
            match certgate_pki::verify::parse_crl(&bytes, &certgate_pki::Origin::file(&path)) {
                Err(_) => Some("the old one could not be read"),
                Ok(crl) if crl.revoked < revoked => Some("a certificate was revoked"),
                Ok(crl) => {
                    let next = i64::try_from(crl.next_update()).unwrap_or(i64::MAX);
                    let validity =
                        i64::try_from(section.crl_validity.as_secs()).unwrap_or(i64::MAX);
                    if next - now < half {
                        Some("half its validity has passed")
                    } else if next - now > validity.saturating_add(60) {
                        // Signed by hand for longer (`ca crl --days 30`): from now on serve keeps it.
                        Some("it was valid for longer than crl_validity_secs")
                    } else {
                        None
                    }
                }
            }
        }
    };
    let Some(why) = why else {
        return Ok(None);
    };
    let validity = time::Duration::try_from(section.crl_validity)?;
    let n = store.crl_valid_for(&path, validity)?;
    Ok(Some((why, n)))
}

/// Connections served at once by the publishing listener; more wait in the accept queue.
const PUBLISH_CONNECTIONS: usize = 256;

/// Serves `/ca.pem` and `/ca.crl` (DER) from `dir` over plain HTTP/1.1.
async fn publish(dir: std::path::PathBuf, listener: TcpListener) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PUBLISH_CONNECTIONS));
    loop {
        let Ok(slot) = std::sync::Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, say: try again a little later.
                tracing::warn!(error = %e, "CA publishing: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let dir = dir.clone();
                async move { Ok::<_, Infallible>(answer(&dir, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn answer<B>(dir: &Path, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let (file, content_type) = match req.uri().path() {
        "/ca.crl" => ("crl.pem", "application/pkix-crl"),
        "/ca.pem" => ("ca.pem", "application/x-pem-file"),
        _ => {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: /ca.crl and /ca.pem are served\n",
            );
        }
    };
    let path = dir.join(file);
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "not available yet\n");
    };
    let body = if file == "crl.pem" {
        match certgate_pki::crl::crl_der(&bytes, &certgate_pki::Origin::file(&path)) {
            Ok(der) => der,
            Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "not available yet\n"),
        }
    } else {
        bytes
    };
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Full::new(Bytes::from(body)))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}
