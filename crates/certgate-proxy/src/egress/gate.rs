//! The content-trust gate on egress: downloads whose URL a rule names are delivered only when the
//! transparency log says their digest is TRUSTED.
//!
//! Files: the body is hashed (SHA-256) as it streams to the app, and its last chunk is held back
//! until the verdict. TRUSTED: the last chunk goes out and the download completes. Anything else
//! (UNTRUSTED, REVOKED, UNSUPPORTED, UNKNOWN, or a log that cannot be consulted): the body ends
//! with an error, so the connection is cut and the app's download fails short of its length. So
//! that the bytes hashed are the file's bytes, requests to a gated URL are sent without `Range`,
//! conditional headers or `Accept-Encoding`, and a response with a content encoding, or a 2xx
//! other than 200 with a body, is refused.
//!
//! The decision itself is made elsewhere ([`ContentTrust`], the same code and synced state as
//! `certgate trust verify`); this module only streams, hashes and enforces.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use certgate_pattern::Glob;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use sha2::Digest as _;

use crate::message::Body;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body egress answers with: the upstream's, or a gated one, which can end in a refusal.
pub type OutBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A response with the upstream's body, as egress answers.
pub fn widen(resp: Response<Body>) -> Response<OutBody> {
    resp.map(|b| b.map_err(BoxError::from).boxed())
}

/// What the content-trust decision says about a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Whether the content may be delivered.
    pub trusted: bool,
    /// The status word (`TRUSTED`, `UNTRUSTED`, `REVOKED`, `UNSUPPORTED`, `UNKNOWN`).
    pub status: String,
    /// Why, in one sentence.
    pub reason: String,
}

/// The judgement, once reached.
pub type Judging = Pin<Box<dyn Future<Output = Judgement> + Send + Sync>>;

/// Decides a digest's status from the log.
pub trait ContentTrust: fmt::Debug + Send + Sync {
    /// The judgement on SHA-256 `digest`: from the synced state at once when it says TRUSTED,
    /// or after a bounded wait for a fresher state.
    fn judge(&self, digest: &[u8; 32]) -> Judging;
}

/// A rule's gate: the decision and the URLs it applies to.
#[derive(Clone, Debug)]
pub struct Gate {
    /// The decision.
    pub trust: Arc<dyn ContentTrust>,
    /// URL patterns (`https://host[:port]/path`, `*` matches any run of characters) of files
    /// that must be TRUSTED.
    pub files: Vec<String>,
    /// Deliver whatever the verdict, logging it loudly (the explicit override).
    pub force: bool,
    /// The rule's name, for logs and metrics.
    pub rule: String,
}

impl Gate {
    /// Whether `url` (`https://host[:port]/path`, without the query) is a gated file.
    pub fn gates(&self, url: &str) -> bool {
        self.files.iter().any(|p| Glob::new(p).matches(url))
    }
}

/// Headers that would make the body differ from the file's bytes, removed from gated requests.
const CHANGES_THE_BYTES: [header::HeaderName; 6] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::ACCEPT_ENCODING,
    header::TE,
];

/// Prepares a gated request: the full, unencoded body is asked for.
pub fn prepare_request(headers: &mut HeaderMap) {
    for h in CHANGES_THE_BYTES {
        headers.remove(h);
    }
}

/// The gated response: redirects, errors and bodiless answers pass; a 200 body is delivered
/// through the hash-and-hold stream; anything else is refused.
pub fn gate_response(gate: &Gate, url: &str, resp: Response<Body>) -> Response<OutBody> {
    let status = resp.status();
    if !status.is_success() || status == StatusCode::NO_CONTENT {
        return widen(resp);
    }
    let encoded = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if status != StatusCode::OK || encoded {
        let why = if encoded {
            "the server sent it encoded (Content-Encoding), so its bytes are not the file's"
        } else {
            "only a complete 200 response can be checked"
        };
        let judgement = Judgement {
            trusted: false,
            status: "UNVERIFIABLE".to_owned(),
            reason: why.to_owned(),
        };
        record(gate, url, None, &judgement);
        if !gate.force {
            return widen(crate::message::text(
                StatusCode::FORBIDDEN,
                format!("certgate egress: content trust: {url}: {why}"),
            ));
        }
        return widen(resp);
    }
    let (parts, body) = resp.into_parts();
    let gated = Gated {
        inner: body,
        hasher: sha2::Sha256::new(),
        held: None,
        judging: None,
        done: false,
        gate: gate.clone(),
        url: url.to_owned(),
    };
    Response::from_parts(parts, gated.boxed())
}

/// Counts and logs a judgement.
fn record(gate: &Gate, url: &str, digest: Option<&[u8; 32]>, j: &Judgement) {
    if crate::metrics::enabled() {
        metrics::counter!("certgate_egress_trust_verdicts_total", "rule" => gate.rule.clone(), "status" => j.status.clone()).increment(1);
    }
    let digest = digest.map(|d| format!("sha256:{}", hex::encode(d)));
    let digest = digest.as_deref().unwrap_or("-");
    if j.trusted {
        tracing::info!(rule = %gate.rule, url, digest, status = %j.status, "content trust: download delivered");
    } else if gate.force {
        tracing::warn!(rule = %gate.rule, url, digest, status = %j.status, reason = %j.reason, "content trust: FORCED: delivered although not trusted (trust_force = true)");
    } else {
        tracing::warn!(rule = %gate.rule, url, digest, status = %j.status, reason = %j.reason, "content trust: download refused; the connection is cut");
    }
}

/// The refusal that ends a gated body.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A body that is hashed as it streams, with its last chunk held until the verdict.
struct Gated {
    inner: Body,
    hasher: sha2::Sha256,
    held: Option<Bytes>,
    /// The verdict being reached, once the upstream body ended.
    judging: Option<(Judging, [u8; 32])>,
    done: bool,
    gate: Gate,
    url: String,
}

impl HttpBody for Gated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some((judging, digest)) = &mut this.judging {
                let judgement = std::task::ready!(judging.as_mut().poll(cx));
                let digest = *digest;
                this.judging = None;
                this.done = true;
                record(&this.gate, &this.url, Some(&digest), &judgement);
                if judgement.trusted || this.gate.force {
                    return Poll::Ready(this.held.take().map(|b| Ok(Frame::data(b))));
                }
                return Poll::Ready(Some(Err(Box::new(Refused(format!(
                    "content trust: {} is {}: {}",
                    this.url, judgement.status, judgement.reason
                ))))));
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Some(Ok(frame)) => {
                    // Trailers are dropped: a gated download is judged on its bytes alone.
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        this.hasher.update(&data);
                        if let Some(previous) = this.held.replace(data) {
                            return Poll::Ready(Some(Ok(Frame::data(previous))));
                        }
                    }
                }
                None => {
                    let digest: [u8; 32] = std::mem::take(&mut this.hasher).finalize().into();
                    this.judging = Some((this.gate.trust.judge(&digest), digest));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let held = self.held.as_ref().map_or(0, |h| h.len() as u64);
        hint.set_lower(hint.lower() + held);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[derive(Debug)]
    struct Only([u8; 32]);

    impl ContentTrust for Only {
        fn judge(&self, digest: &[u8; 32]) -> Judging {
            let trusted = *digest == self.0;
            Box::pin(std::future::ready(Judgement {
                trusted,
                status: if trusted { "TRUSTED" } else { "UNKNOWN" }.to_owned(),
                reason: "test".to_owned(),
            }))
        }
    }

    fn gate(trusted: &[u8], force: bool) -> Gate {
        Gate {
            trust: Arc::new(Only(sha2::Sha256::digest(trusted).into())),
            files: vec!["https://dl.example/releases/*".to_owned()],
            force,
            rule: "r".to_owned(),
        }
    }

    /// A body of several data frames.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        Chunks(chunks.iter().map(|c| Bytes::from_static(c)).collect()).boxed()
    }

    /// Every frame the gated body yields: data until the first error.
    async fn drain(mut body: OutBody) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    fn ok(body: Body) -> Response<Body> {
        Response::new(body)
    }

    #[tokio::test]
    async fn a_trusted_body_is_delivered_whole_and_an_untrusted_one_is_cut_short() {
        let url = "https://dl.example/releases/a.tar";
        let g = gate(b"one two three", false);
        assert!(g.gates(url));
        assert!(!g.gates("https://dl.example/other"));
        let resp = gate_response(&g, url, ok(chunked(&[b"one ", b"two ", b"three"])));
        assert_eq!(
            drain(resp.into_body()).await,
            (b"one two three".to_vec(), None)
        );
        // Changed on the server: everything but the held last chunk, then the refusal.
        let resp = gate_response(&g, url, ok(chunked(&[b"one ", b"two ", b"four"])));
        let (got, err) = drain(resp.into_body()).await;
        assert_eq!(got, b"one two ".to_vec());
        assert!(err.unwrap().contains("UNKNOWN"));
        // One chunk: nothing at all before the verdict.
        let resp = gate_response(
            &g,
            url,
            ok(Full::new(Bytes::from_static(b"evil"))
                .map_err(|n| match n {})
                .boxed()),
        );
        let (got, err) = drain(resp.into_body()).await;
        assert!(got.is_empty() && err.is_some());
        // Forced: delivered anyway.
        let forced = gate(b"one two three", true);
        let resp = gate_response(&forced, url, ok(chunked(&[b"evil"])));
        assert_eq!(drain(resp.into_body()).await, (b"evil".to_vec(), None));
    }

    #[tokio::test]
    async fn partial_or_encoded_answers_are_refused_and_errors_pass() {
        let url = "https://dl.example/releases/a.tar";
        let g = gate(b"x", false);
        let mut partial = ok(chunked(&[b"x"]));
        *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
        assert_eq!(
            gate_response(&g, url, partial).status(),
            StatusCode::FORBIDDEN
        );
        let mut gz = ok(chunked(&[b"x"]));
        gz.headers_mut()
            .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(gate_response(&g, url, gz).status(), StatusCode::FORBIDDEN);
        let mut missing = ok(chunked(&[b"not found"]));
        *missing.status_mut() = StatusCode::NOT_FOUND;
        assert_eq!(
            gate_response(&g, url, missing).status(),
            StatusCode::NOT_FOUND
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, "bytes=0-10".parse().unwrap());
        headers.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        headers.insert(header::USER_AGENT, "app".parse().unwrap());
        prepare_request(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
