//! The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and `/status` (JSON).
//! Plain HTTP, meant for loopback or a management network.
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
#[derive(Debug)]
pub struct Admin {
    metrics: PrometheusHandle,
    ready: AtomicBool,
    status: ArcSwap<serde_json::Value>,
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

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
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
                serde_json::to_string_pretty(&**self.status.load()).unwrap_or_default(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /healthz /readyz /metrics /status\n".to_owned(),
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
