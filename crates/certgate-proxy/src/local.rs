//! In-process services behind a route (`Upstream::Local`), such as the transparency log's HTTP
//! API: the route's TLS, policy, header stripping and access log apply to them as to any
//! upstream.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use crate::message::{Body, text};

/// A service that answers requests inside the process.
pub trait LocalService: Send + Sync + fmt::Debug {
    /// The largest request body it accepts; larger ones get 413 before it is called.
    fn max_body(&self) -> usize;

    /// Answers a request whose whole body has been read.
    fn call(
        &self,
        req: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send + '_>>;
}

/// Reads the body (bounded) and calls the service.
pub(crate) async fn serve(svc: &dyn LocalService, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let max = svc.max_body();
    let bytes = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {max} bytes"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let resp = svc.call(Request::from_parts(parts, bytes)).await;
    resp.map(|b| {
        http_body_util::Full::new(b)
            .map_err(|never| match never {})
            .boxed()
    })
}
