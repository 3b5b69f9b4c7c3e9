//! The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/status` (JSON) and
//! `/` (the same status as an HTML page). Plain HTTP, meant for loopback or a management network.
//!
//! The status document is the binary's (`set_status`, with `set_live` for sections computed at
//! each request, and `set_page` for its HTML form); this module adds `denials`, the most recent
//! refused requests, newest first. The page is served with a content security policy that allows
//! no script and no external resource: certificate subjects and paths on it are client-chosen.
//!
//! Metric names (all prefixed `certgate_`):
//! - `connections_open{listener}` gauge
//! - `handshakes_total{listener,result,reason}` counter (`result` = ok | failed | timeout)
//! - `requests_total{listener,route,status}` counter
//! - `upstream_seconds{listener,route}` histogram (time to upstream response head)
//! - `certificate_expiry_seconds{identity}` gauge (negative when expired)
//! - `reloads_total{result}` counter (`result` = ok | rejected)

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Shared state the admin endpoints read.
pub struct Admin {
    metrics: PrometheusHandle,
    ready: AtomicBool,
    status: ArcSwap<serde_json::Value>,
    live: std::sync::RwLock<Option<Live>>,
    page: std::sync::OnceLock<Page>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// Sections of the status document computed at each request (an object whose keys are merged
/// into the document).
pub type Live = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Renders the status document as an HTML page.
pub type Page = fn(&serde_json::Value) -> String;

/// A refused request, as the status page lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Denial {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The listener.
    pub listener: String,
    /// The route, if one was selected.
    pub route: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Why.
    pub reason: String,
    /// The client certificate's subject, if one was presented.
    pub client: String,
    /// The peer address.
    pub peer: String,
}

/// How many refused requests the status page keeps.
pub const DENIALS_KEPT: usize = 50;

static DENIALS: std::sync::Mutex<std::collections::VecDeque<Denial>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Records a refused request for the status page (only once the admin listener is installed).
pub fn record_denial(denial: Denial) {
    if !crate::metrics::enabled() {
        return;
    }
    if let Ok(mut d) = DENIALS.lock() {
        if d.len() == DENIALS_KEPT {
            d.pop_back();
        }
        d.push_front(denial);
    }
}

fn recent_denials() -> Vec<Denial> {
    DENIALS
        .lock()
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default()
}

/// Buckets for upstream latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Admin {
    /// Installs the process-wide metrics recorder (once) and returns the admin state.
    pub fn install() -> Result<Arc<Self>, String> {
        let metrics = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| e.to_string())?;
        crate::metrics::enable();
        Ok(Arc::new(Self {
            metrics,
            ready: AtomicBool::new(false),
            status: ArcSwap::from_pointee(serde_json::Value::Null),
            live: std::sync::RwLock::new(None),
            page: std::sync::OnceLock::new(),
        }))
    }

    /// Marks the process ready (every listener bound, every identity loaded).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Replaces the `/status` document.
    pub fn set_status(&self, status: serde_json::Value) {
        self.status.store(Arc::new(status));
    }

    /// Sets the sections computed at each request.
    pub fn set_live(&self, live: Live) {
        if let Ok(mut l) = self.live.write() {
            *l = Some(live);
        }
    }

    /// Sets how `/` renders the status document (once).
    pub fn set_page(&self, page: Page) {
        let _ = self.page.set(page);
    }

    /// The status document as of now.
    pub fn document(&self) -> serde_json::Value {
        let mut doc = (**self.status.load()).clone();
        if !doc.is_object() {
            doc = serde_json::json!({});
        }
        if let Ok(live) = self.live.read()
            && let Some(live) = live.as_ref()
            && let (serde_json::Value::Object(extra), Some(obj)) = (live(), doc.as_object_mut())
        {
            obj.extend(extra);
        }
        doc["denials"] = serde_json::to_value(recent_denials()).unwrap_or_default();
        doc
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        if let ("/" | "/status.html", Some(page)) = (path, self.page.get()) {
            let mut resp = Response::new(Full::new(Bytes::from(page(&self.document()))));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'",
                ),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            return resp;
        }
        let (status, content_type, body) = match path {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" if self.ready.load(Ordering::SeqCst) => {
                (StatusCode::OK, "text/plain", "ready\n".to_owned())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".to_owned(),
            ),
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/status" => (
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&self.document()).unwrap_or_default(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try / /healthz /readyz /metrics /status\n".to_owned(),
            ),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        resp
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let resp = admin.respond(req.uri().path());
                    async move { Ok::<_, Infallible>(resp) }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
