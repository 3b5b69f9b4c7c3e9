//! Built-in upstreams: `echo` (shows what an upstream would receive) and `forward-auth`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use super::decorate::identity_headers;
use super::{Conn, IngressConfig};
use crate::message::{Body, text};
use crate::route::Route;

/// Forward-auth (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` HTTP service):
/// policy already allowed the request; answer 200 with the identity as response headers.
pub(super) fn forward_auth(cfg: &IngressConfig, conn: &Conn, route: &Route) -> Response<Body> {
    let mut resp = text(StatusCode::OK, "ok");
    for (name, value) in identity_headers(cfg, conn, &route.forward) {
        resp.headers_mut().append(name, value);
    }
    resp
}

/// The built-in echo upstream: shows what an upstream behind this route would receive.
pub(super) fn echo(
    cfg: &IngressConfig,
    conn: &Conn,
    route: &Route,
    req: &Request<Incoming>,
) -> Response<Body> {
    let forwarded: serde_json::Map<String, serde_json::Value> =
        identity_headers(cfg, conn, &route.forward)
            .into_iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    serde_json::Value::String(v.to_str().unwrap_or_default().to_owned()),
                )
            })
            .collect();
    let body = serde_json::json!({
        "route": route.name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "http_version": format!("{:?}", req.version()),
        "client": conn.client,
        "forwarded_headers": forwarded,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(
            serde_json::to_vec_pretty(&body).unwrap_or_default(),
        ))
        .map_err(|never| match never {})
        .boxed(),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
