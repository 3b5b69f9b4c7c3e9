//! The content-trust gate on egress: downloads whose URL a rule names are delivered only when the
//! transparency log says their digest is TRUSTED.
//!
//! Files: the body is hashed (SHA-256) as it streams to the app, and its last 64 KiB are held back
//! until the verdict. TRUSTED: the last chunk goes out and the download completes. Anything else
//! (UNTRUSTED, REVOKED, UNSUPPORTED, UNKNOWN, or a log that cannot be consulted): the body ends
//! with an error, so the connection is cut and the app's download fails short of its length. So
//! that the bytes hashed are the file's bytes, requests to a gated URL are sent without `Range`,
//! conditional headers or `Accept-Encoding`, and a response with a content encoding, or a 2xx
//! other than 200 with a body, is refused.
//!
//! The decision itself is made elsewhere ([`ContentTrust`], the same code and synced state as
//! `certgate trust verify`); this module only streams, hashes and enforces.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
pub use certgate_pattern::Glob;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use sha2::Digest as _;

use crate::message::Body;

pub use crate::message::BoxError;

/// The body egress answers with: the upstream's, or a gated one, which can end in a refusal.
pub type OutBody = Body;

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
    pub files: Vec<Glob>,
    /// OCI registries (`host` for port 443, or `host:port`) whose image manifests must be
    /// TRUSTED, and whose blobs must belong to a manifest that was.
    pub oci: Vec<String>,
    /// Deliver whatever the verdict, logging it loudly (the explicit override).
    pub force: bool,
    /// The rule's name, for logs and metrics.
    pub rule: String,
}

impl Gate {
    /// Whether `url` (`https://host[:port]/path`, without the query) is a gated file.
    pub fn gates(&self, url: &str) -> bool {
        self.files.iter().any(|p| p.matches(url))
    }

    /// Whether `host:port` is a gated OCI registry.
    pub fn is_registry(&self, host: &str, port: u16) -> bool {
        self.oci.iter().any(|r| {
            let (h, p) = match r.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && !h.ends_with(':') => {
                    (h, p.parse::<u16>().unwrap_or(0))
                }
                _ => (r.as_str(), 443),
            };
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host)
                && p == port
        })
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

/// What a gated request is judged as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    /// A file: its bytes must be TRUSTED.
    File,
    /// An OCI manifest asked for by this reference (a tag or `sha256:` digest).
    Manifest(String),
    /// An OCI blob: its bytes must hash to this digest, named by a TRUSTED manifest.
    Blob([u8; 32]),
}

/// Where a redirect may lead: the key under which the follow-up request will be recognised
/// (remembered in [`GateState`]), or why it may not be followed.
pub type RedirectCheck<'a> = &'a (dyn Fn(&str) -> Result<String, String> + Sync);

fn unverifiable(reason: impl Into<String>) -> Judgement {
    Judgement {
        trusted: false,
        status: "UNVERIFIABLE".to_owned(),
        reason: reason.into(),
    }
}

/// The answer to a gated request, judged.
///
/// - `200`: a file is hashed as it streams and held back until TRUSTED; a manifest is read whole
///   and delivered only when its digest is TRUSTED (or named by a TRUSTED index); a blob only
///   when its bytes hash to its digest. Always sent chunked (a refusal is then a missing last
///   chunk, which every client reports; a short `Content-Length` body is not reported by all).
/// - A redirect: allowed only to where the follow-up will be judged the same way (`redirect`
///   says where that is and records it); its body is dropped.
/// - `204`: passed (nothing to deliver). `304`, `206` or any other 2xx, or an encoded body:
///   `403` (certgate asked for the whole, unencoded body).
/// - Errors (4xx, 5xx): status and headers passed, the body replaced with certgate's words (an
///   app that ignores the status would otherwise save an unchecked body as the file).
pub async fn judge_response(
    gate: &Gate,
    state: &Arc<GateState>,
    url: &str,
    judged: Judged,
    resp: Response<Body>,
    redirect: RedirectCheck<'_>,
) -> Response<OutBody> {
    let status = resp.status();
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        let mut locations = resp.headers().get_all(header::LOCATION).iter();
        let (first, second) = (locations.next(), locations.next());
        if second.is_some() {
            // Clients differ on which one they follow (some join them): judge none.
            return refuse(
                gate,
                url,
                None,
                unverifiable("a redirect with two Locations"),
            );
        }
        let Some(location) = first.and_then(|l| l.to_str().ok()).map(str::to_owned) else {
            return refuse(
                gate,
                url,
                None,
                unverifiable("a redirect without a Location"),
            );
        };
        return match redirect(&location) {
            Ok(key) => {
                state.expect(key, judged, gate.clone());
                let (mut parts, _) = resp.into_parts();
                parts.headers.remove(header::CONTENT_LENGTH);
                parts.headers.remove(header::TRANSFER_ENCODING);
                Response::from_parts(parts, empty())
            }
            Err(why) => refuse(
                gate,
                url,
                None,
                unverifiable(format!("it redirects to {location}, {why}")),
            ),
        };
    }
    if status == StatusCode::NO_CONTENT {
        return resp;
    }
    if status.is_client_error() || status.is_server_error() {
        let (mut parts, _) = resp.into_parts();
        for h in [
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
            header::CONTENT_TYPE,
        ] {
            parts.headers.remove(h);
        }
        parts.headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let body = format!(
            "certgate egress: content trust: {url}: the server answered {status}; its body is not delivered\n"
        );
        return Response::from_parts(
            parts,
            http_body_util::Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
    }
    let encoded = resp
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if status != StatusCode::OK || encoded {
        let why = if encoded {
            "the server sent it encoded (Content-Encoding), so its bytes are not the file's"
                .to_owned()
        } else {
            format!("only a complete 200 response can be checked, not {status}")
        };
        if !gate.force {
            return refuse(gate, url, None, unverifiable(why));
        }
        record_as(gate, url, None, &unverifiable(why), "");
        return resp;
    }
    match judged {
        Judged::File => {
            let trust = Arc::clone(&gate.trust);
            hold_until(gate, url, resp, Box::new(move |d| trust.judge(d)))
        }
        Judged::Blob(expected) => {
            let standing = if state.parents(&expected).is_empty() {
                Judgement {
                    trusted: false,
                    status: "UNKNOWN".to_owned(),
                    reason: "no TRUSTED manifest fetched through certgate names this blob"
                        .to_owned(),
                }
            } else {
                judge_now(gate, state, expected, NAMED_DEPTH).await
            };
            if !standing.trusted && !gate.force {
                return refuse(gate, url, Some(&expected), standing);
            }
            let check: Check = Box::new(move |got| {
                let trusted = *got == expected;
                Box::pin(std::future::ready(Judgement {
                    trusted,
                    status: if trusted { "TRUSTED" } else { "UNTRUSTED" }.to_owned(),
                    reason: if trusted {
                        "named by a TRUSTED manifest".to_owned()
                    } else {
                        "its bytes do not hash to its digest".to_owned()
                    },
                }))
            });
            hold_until(gate, url, resp, check)
        }
        Judged::Manifest(reference) => manifest(gate, state, url, &reference, resp).await,
    }
}

fn empty() -> OutBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The check a held body waits for, given the SHA-256 of everything it carried.
type Check = Box<dyn FnOnce(&[u8; 32]) -> Judging + Send + Sync>;

/// `resp` with its body hashed as it streams and its tail held until `check` passes.
fn hold_until(gate: &Gate, url: &str, resp: Response<Body>, check: Check) -> Response<OutBody> {
    let (mut parts, body) = resp.into_parts();
    // Framed so that a refusal shows: with a length, a short body; without one, chunks with no
    // last chunk. An HTTP/1.0 answer (an upstream that ends its body by closing) would be sent
    // on the same way, and a cut connection would look like the end of the file.
    parts.version = http::Version::HTTP_11;
    parts.headers.remove(header::CONTENT_LENGTH);
    // SHA-256 runs on a blocking-pool thread fed chunk by chunk (the chunks are shared, not
    // copied), so on a machine with a core to spare it overlaps the transfer; the bounded
    // channel keeps at most HASH_QUEUE chunks waiting.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
        }
        <[u8; 32]>::from(hasher.finalize())
    });
    let gated = Gated {
        inner: body,
        hash_tx: Some(tokio_util::sync::PollSender::new(tx)),
        hashing: Some(hashing),
        held: std::collections::VecDeque::new(),
        held_len: 0,
        releasing: false,
        check: Some(check),
        judging: None,
        done: false,
        gate: gate.clone(),
        url: url.to_owned(),
    };
    Response::from_parts(parts, gated.boxed())
}

/// Counts and logs a judgement on a streamed body (refused: the connection is cut).
fn record(gate: &Gate, url: &str, digest: Option<&[u8; 32]>, j: &Judgement) {
    record_as(
        gate,
        url,
        digest,
        j,
        "content trust: download refused; the connection is cut",
    );
}

/// Counts and logs a judgement; `refused` is the log message when it is not delivered.
fn record_as(gate: &Gate, url: &str, digest: Option<&[u8; 32]>, j: &Judgement, refused: &str) {
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
        tracing::warn!(rule = %gate.rule, url, digest, status = %j.status, reason = %j.reason, "{refused}");
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

/// Chunks waiting for the hasher at most.
const HASH_QUEUE: usize = 16;

/// Bytes of a gated body held back until the verdict, at least: a body this small reaches the
/// app only when TRUSTED, and a larger one never whole. (The last chunk alone could be one byte,
/// as small as the server likes.)
pub const HOLD_BACK: usize = 64 * 1024;

/// A body that is hashed as it streams, with its tail held until the verdict.
struct Gated {
    inner: Body,
    /// Feeds the hasher; dropped at the end of the body.
    hash_tx: Option<tokio_util::sync::PollSender<Bytes>>,
    /// The hasher's result.
    hashing: Option<tokio::task::JoinHandle<[u8; 32]>>,
    /// The tail of the body not yet delivered: at least [`HOLD_BACK`] bytes (or all of it)
    /// until the verdict.
    held: std::collections::VecDeque<Bytes>,
    held_len: usize,
    /// The verdict was TRUSTED: what is held goes out, then the end.
    releasing: bool,
    /// What decides, once the upstream body ended.
    check: Option<Check>,
    /// The verdict being reached.
    judging: Option<(Judging, [u8; 32], std::time::Instant)>,
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
            if this.releasing {
                return Poll::Ready(this.held.pop_front().map(|b| Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if let Some((judging, digest, since)) = &mut this.judging {
                let judgement = std::task::ready!(judging.as_mut().poll(cx));
                let (digest, took) = (*digest, since.elapsed());
                this.judging = None;
                // What the gate adds at the end of a download: the wait for the verdict.
                if crate::metrics::enabled() {
                    metrics::histogram!("certgate_egress_trust_verdict_seconds", "rule" => this.gate.rule.clone())
                        .record(took.as_secs_f64());
                }
                tracing::debug!(rule = %this.gate.rule, url = %this.url, verdict_ms = took.as_secs_f64() * 1000.0, "content trust: verdict reached");
                this.done = true;
                record(&this.gate, &this.url, Some(&digest), &judgement);
                if judgement.trusted || this.gate.force {
                    this.releasing = true;
                    continue;
                }
                return Poll::Ready(Some(Err(Box::new(Refused(format!(
                    "content trust: {} is {}: {}",
                    this.url, judgement.status, judgement.reason
                ))))));
            }
            if this.hash_tx.is_none() {
                // The body has ended: wait for the hasher, then for the verdict.
                let Some(hashing) = &mut this.hashing else {
                    this.done = true;
                    return Poll::Ready(None);
                };
                let digest = match std::task::ready!(Pin::new(hashing).poll(cx)) {
                    Ok(d) => d,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(Box::new(Refused(format!(
                            "content trust: {}: hashing failed: {e}",
                            this.url
                        ))))));
                    }
                };
                this.hashing = None;
                let Some(check) = this.check.take() else {
                    this.done = true;
                    return Poll::Ready(None);
                };
                this.judging = Some((check(&digest), digest, std::time::Instant::now()));
                continue;
            }
            // Room for one more chunk at the hasher before reading one.
            if let Some(tx) = &mut this.hash_tx
                && std::task::ready!(tx.poll_reserve(cx)).is_err()
            {
                this.done = true;
                return Poll::Ready(Some(Err(Box::new(Refused(format!(
                    "content trust: {}: the hasher stopped",
                    this.url
                ))))));
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => {
                    // Trailers are dropped: a gated download is judged on its bytes alone.
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        if let Some(tx) = &mut this.hash_tx
                            && tx.send_item(data.clone()).is_err()
                        {
                            this.done = true;
                            return Poll::Ready(Some(Err(Box::new(Refused(format!(
                                "content trust: {}: the hasher stopped",
                                this.url
                            ))))));
                        }
                        this.held_len += data.len();
                        this.held.push_back(data);
                        // Deliver from the front what leaves at least HOLD_BACK held.
                        if let Some(front) = this.held.front()
                            && this.held_len - front.len() >= HOLD_BACK
                        {
                            this.held_len -= front.len();
                            return Poll::Ready(this.held.pop_front().map(|b| Ok(Frame::data(b))));
                        }
                    }
                }
                None => {
                    // Closing the channel lets the hasher finish.
                    this.hash_tx = None;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A TRUSTED body is over only once what was held back has gone out.
        self.done && (!self.releasing || self.held.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        // Never an exact size: the response goes out chunked, so that a refusal (no last chunk)
        // cannot look like a complete body, and an empty body is still judged.
        SizeHint::default()
    }
}

/// What gates learn while they judge, shared by every gate of the proxy: the digests TRUSTED
/// manifests named (their blobs and child manifests may pass), and where allowed redirects lead
/// (the follow-up request is judged as the redirected one was), both bounded.
#[derive(Debug, Default)]
pub struct GateState {
    inner: std::sync::Mutex<Known>,
}

/// The state, and the order things came in (to forget the oldest).
#[derive(Debug, Default)]
struct Known {
    /// Digest -> the manifests (or indexes) that named it.
    named: HashMap<[u8; 32], Vec<[u8; 32]>>,
    named_order: std::collections::VecDeque<[u8; 32]>,
    redirects: HashMap<String, (Judged, Gate)>,
    redirect_order: std::collections::VecDeque<String>,
}

/// Digests kept at most; the oldest go first.
const NAMED_MAX: usize = 100_000;
/// Manifests remembered as naming one digest, at most.
const MAX_PARENTS: usize = 16;
/// How far a digest's standing is traced through the manifests that named it (an index names
/// manifests, which name blobs).
const NAMED_DEPTH: usize = 3;
/// Redirect targets kept at most; the oldest go first.
const REDIRECTS_MAX: usize = 10_000;

impl GateState {
    fn name(&self, digest: [u8; 32], parent: [u8; 32]) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let Known {
            named, named_order, ..
        } = &mut *g;
        let parents = named.entry(digest).or_insert_with(|| {
            named_order.push_back(digest);
            Vec::new()
        });
        if !parents.contains(&parent) && parents.len() < MAX_PARENTS {
            parents.push(parent);
        }
        while named_order.len() > NAMED_MAX {
            if let Some(old) = named_order.pop_front() {
                named.remove(&old);
            }
        }
    }

    fn parents(&self, digest: &[u8; 32]) -> Vec<[u8; 32]> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.named.get(digest).cloned())
            .unwrap_or_default()
    }

    /// Remembers that a request for `key` (see [`redirect_key`]) is judged as `judged` by `gate`.
    fn expect(&self, key: String, judged: Judged, gate: Gate) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let Known {
            redirects,
            redirect_order,
            ..
        } = &mut *g;
        if redirects.insert(key.clone(), (judged, gate)).is_none() {
            redirect_order.push_back(key);
            while redirect_order.len() > REDIRECTS_MAX {
                if let Some(old) = redirect_order.pop_front() {
                    redirects.remove(&old);
                }
            }
        }
    }

    /// How a request for `key` is to be judged, when an allowed redirect led there.
    pub fn expected(&self, key: &str) -> Option<(Judged, Gate)> {
        self.inner.lock().ok()?.redirects.get(key).cloned()
    }
}

/// The key a request is recognised by as the target of a redirect: its gate URL (normal-form
/// path), without the query. Clients rewrite a query they follow (`%7e` as `~`, a stray `%` as
/// `%25`), so any request for that path is judged as the redirected one was: more is judged,
/// never less.
pub fn redirect_key(url: &str) -> String {
    url.to_owned()
}

/// The largest manifest the gate reads (manifests are a few KiB).
const MANIFEST_MAX: usize = 4 << 20;

/// What an OCI registry request asks for: `Ok(Some(..))` a manifest or blob the gate judges,
/// `Ok(None)` anything else (`/v2/`, tags, uploads), `Err` a manifest or blob request in a form
/// the gate refuses. `path` is the normal-form path; it is percent-decoded here, as the registry
/// will decode it.
pub fn classify_registry(path: &str) -> Result<Option<Judged>, String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the path is not UTF-8 once decoded".to_owned())?;
    let Some(rest) = decoded.strip_prefix("/v2/") else {
        return Ok(None);
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/")
        && !name.is_empty()
    {
        let tag = |r: &str| {
            !r.is_empty()
                && r.len() <= 128
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !r.starts_with(['.', '-'])
        };
        return if parse_digest(reference).is_some() || tag(reference) {
            Ok(Some(Judged::Manifest(reference.to_owned())))
        } else {
            Err(format!(
                "`{reference}` is neither a tag nor a sha256 digest (lower-case hex)"
            ))
        };
    }
    if let Some((name, digest)) = rest.split_once("/blobs/")
        && !name.is_empty()
    {
        if digest.starts_with("uploads/") || digest == "uploads" {
            return Ok(None);
        }
        // The last `/blobs/` is the one a registry routes on.
        let digest = rest.rsplit_once("/blobs/").map_or(digest, |(_, d)| d);
        return match parse_digest(digest) {
            Some(d) => Ok(Some(Judged::Blob(d))),
            None => Err(format!(
                "`{digest}` is not a sha256 digest (lower-case hex): the gate checks no other"
            )),
        };
    }
    Ok(None)
}

/// `sha256:<64 lower-case hex digits>` as bytes; any other spelling is `None`.
fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hex_digits = s.strip_prefix("sha256:")?;
    if hex_digits.len() != 64
        || !hex_digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode(hex_digits).ok()?.try_into().ok()
}

/// A `403` with the verdict, counted and logged.
pub fn refuse(
    gate: &Gate,
    url: &str,
    digest: Option<&[u8; 32]>,
    j: Judgement,
) -> Response<OutBody> {
    record_as(gate, url, digest, &j, "content trust: refused with 403");
    crate::message::text(
        StatusCode::FORBIDDEN,
        format!(
            "certgate egress: content trust: {url}: {}: {}\n",
            j.status, j.reason
        ),
    )
}

/// The judgement on `digest` now: TRUSTED by the log itself, or named by a manifest (or index)
/// that is acceptable now. Re-judged at every use, so that untrusting an image also stops its
/// layers and child manifests.
fn judge_now<'a>(
    gate: &'a Gate,
    state: &'a Arc<GateState>,
    digest: [u8; 32],
    depth: usize,
) -> Pin<Box<dyn Future<Output = Judgement> + Send + 'a>> {
    Box::pin(async move {
        // Through its parents first: a layer is never signed itself, and a verdict that is not
        // TRUSTED waits for a fresh sync of the log.
        let parents = if depth == 0 {
            Vec::new()
        } else {
            state.parents(&digest)
        };
        for parent in &parents {
            let via = judge_now(gate, state, *parent, depth - 1).await;
            if via.trusted {
                return Judgement {
                    trusted: true,
                    status: "TRUSTED".to_owned(),
                    reason: format!(
                        "named by sha256:{}, which is TRUSTED ({})",
                        hex::encode(parent),
                        via.reason
                    ),
                };
            }
        }
        let direct = gate.trust.judge(&digest).await;
        if direct.trusted || parents.is_empty() {
            return direct;
        }
        Judgement {
            trusted: false,
            status: direct.status,
            reason: format!(
                "{}; no manifest that names it is TRUSTED now",
                direct.reason
            ),
        }
    })
}

/// The whole of `body`, if it is at most `max` bytes.
async fn read_at_most(mut body: Body, max: usize) -> Result<Bytes, BoxError> {
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if whole.len() + data.len() > max {
                return Err(format!("longer than {max} bytes").into());
            }
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole.freeze())
}

/// A manifest `200`: read whole, its digest recomputed (and compared with a digest reference),
/// delivered only when TRUSTED or named by a TRUSTED index; what it names is remembered.
async fn manifest(
    gate: &Gate,
    state: &Arc<GateState>,
    url: &str,
    reference: &str,
    resp: Response<Body>,
) -> Response<OutBody> {
    let (mut parts, body) = resp.into_parts();
    let bytes = match read_at_most(body, MANIFEST_MAX).await {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                gate,
                url,
                None,
                unverifiable(format!(
                    "the manifest could not be read whole (at most {MANIFEST_MAX} bytes): {e}"
                )),
            );
        }
    };
    let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    if let Some(asked) = parse_digest(reference)
        && asked != digest
    {
        return refuse(
            gate,
            url,
            Some(&digest),
            Judgement {
                trusted: false,
                status: "UNTRUSTED".to_owned(),
                reason: format!(
                    "the registry answered {reference} with a manifest whose digest is sha256:{}",
                    hex::encode(digest)
                ),
            },
        );
    }
    let judgement = judge_now(gate, state, digest, NAMED_DEPTH).await;
    if !judgement.trusted && !gate.force {
        return refuse(gate, url, Some(&digest), judgement);
    }
    record(gate, url, Some(&digest), &judgement);
    if judgement.trusted {
        for named in manifest_references(&bytes) {
            state.name(named, digest);
        }
    }
    // The digest the gate computed, never the registry's word for it.
    if let Ok(v) = http::HeaderValue::from_str(&format!("sha256:{}", hex::encode(digest))) {
        parts.headers.insert("docker-content-digest", v);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(
        parts,
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// The digests an image manifest or index names: its config, layers, child manifests, blobs and
/// subject.
fn manifest_references(bytes: &[u8]) -> Vec<[u8; 32]> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut take = |d: &serde_json::Value| {
        if let Some(digest) = d
            .get("digest")
            .and_then(|x| x.as_str())
            .and_then(parse_digest)
        {
            out.push(digest);
        }
    };
    for key in ["config", "subject"] {
        if let Some(d) = v.get(key) {
            take(d);
        }
    }
    for key in ["layers", "manifests", "blobs"] {
        for d in v.get(key).and_then(|x| x.as_array()).into_iter().flatten() {
            take(d);
        }
    }
    out
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
            files: vec![Glob::new("https://dl.example/releases/*")],
            oci: vec![
                "registry.example:5000".to_owned(),
                "ghcr.example".to_owned(),
            ],
            force,
            rule: "r".to_owned(),
        }
    }

    /// A body of several data frames.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = crate::message::BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        Chunks(chunks.iter().map(|c| Bytes::from_static(c)).collect()).boxed()
    }

    /// Every frame the gated body yields: data until the first error, and (as hyper does) no
    /// more once the body says it has ended.
    async fn drain(mut body: OutBody) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        while !body.is_end_stream()
            && let Some(frame) = body.frame().await
        {
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

    fn with_status(status: StatusCode, body: Body) -> Response<Body> {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        r
    }

    fn no_redirects(_: &str) -> Result<String, String> {
        Err("nowhere".to_owned())
    }

    async fn judge(
        g: &Gate,
        state: &Arc<GateState>,
        judged: Judged,
        resp: Response<Body>,
    ) -> Response<OutBody> {
        judge_response(
            g,
            state,
            "https://dl.example/releases/a.tar",
            judged,
            resp,
            &no_redirects,
        )
        .await
    }

    #[tokio::test]
    async fn a_trusted_body_is_delivered_whole_and_an_untrusted_one_is_cut_short() {
        let state = Arc::default();
        let g = gate(b"one two three", false);
        assert!(g.gates("https://dl.example/releases/a.tar"));
        assert!(!g.gates("https://dl.example/other"));
        let resp = judge(
            &g,
            &state,
            Judged::File,
            ok(chunked(&[b"one ", b"two ", b"three"])),
        )
        .await;
        // Chunked, never with a length: a refusal must show as a missing last chunk.
        assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        assert!(resp.body().size_hint().exact().is_none());
        assert_eq!(
            drain(resp.into_body()).await,
            (b"one two three".to_vec(), None)
        );
        // Changed on the server: nothing of a body this small (all of it is held), then the
        // refusal.
        let resp = judge(
            &g,
            &state,
            Judged::File,
            ok(chunked(&[b"one ", b"two ", b"four"])),
        )
        .await;
        let (got, err) = drain(resp.into_body()).await;
        assert!(got.is_empty(), "{} bytes before the verdict", got.len());
        assert!(err.unwrap().contains("UNKNOWN"));
        // A large body: at least HOLD_BACK bytes of it never leave before the verdict.
        static BIG: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        let resp = judge(&g, &state, Judged::File, ok(chunked(&[&BIG, &BIG, &BIG]))).await;
        let (got, err) = drain(resp.into_body()).await;
        assert!(err.is_some());
        assert_eq!(got.len(), BIG.len(), "only what leaves HOLD_BACK held");
        let whole: Vec<u8> = [BIG; 3].concat();
        let g_big = gate(&whole, false);
        let resp = judge(
            &g_big,
            &state,
            Judged::File,
            ok(chunked(&[&BIG, &BIG, &BIG])),
        )
        .await;
        assert_eq!(drain(resp.into_body()).await, (whole, None));
        // One chunk: nothing at all before the verdict.
        let one = Full::new(Bytes::from_static(b"evil"))
            .map_err(|n| match n {})
            .boxed();
        let (got, err) = drain(judge(&g, &state, Judged::File, ok(one)).await.into_body()).await;
        assert!(got.is_empty() && err.is_some());
        // Empty: judged too (the empty file is not trusted here).
        let (got, err) = drain(
            judge(&g, &state, Judged::File, ok(chunked(&[])))
                .await
                .into_body(),
        )
        .await;
        assert!(
            got.is_empty() && err.is_some(),
            "an empty body must be judged"
        );
        // Forced: delivered anyway.
        let forced = gate(b"one two three", true);
        let resp = judge(&forced, &state, Judged::File, ok(chunked(&[b"evil"]))).await;
        assert_eq!(drain(resp.into_body()).await, (b"evil".to_vec(), None));
    }

    #[tokio::test]
    async fn partial_encoded_redirected_or_failed_answers_deliver_nothing_unchecked() {
        let state = Arc::default();
        let g = gate(b"x", false);
        for status in [
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::NON_AUTHORITATIVE_INFORMATION,
        ] {
            let resp = judge(
                &g,
                &state,
                Judged::File,
                with_status(status, chunked(&[b"x"])),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{status}");
        }
        let mut gz = ok(chunked(&[b"x"]));
        gz.headers_mut()
            .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(
            judge(&g, &state, Judged::File, gz).await.status(),
            StatusCode::FORBIDDEN
        );
        // An error keeps its status, not its body.
        let resp = judge(
            &g,
            &state,
            Judged::File,
            with_status(StatusCode::NOT_FOUND, chunked(&[b"evil bytes"])),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let (got, _) = drain(resp.into_body()).await;
        assert!(!String::from_utf8_lossy(&got).contains("evil"));
        // A redirect to where certgate cannot follow: 403; to where it can: passed, body dropped,
        // and the target is then judged as the original was.
        let mut redirect = with_status(StatusCode::FOUND, chunked(&[b"evil"]));
        redirect
            .headers_mut()
            .insert(header::LOCATION, "https://cdn.example/x".parse().unwrap());
        assert_eq!(
            judge(&g, &state, Judged::File, redirect).await.status(),
            StatusCode::FORBIDDEN
        );
        let mut redirect = with_status(StatusCode::FOUND, chunked(&[b"evil"]));
        redirect.headers_mut().insert(
            header::LOCATION,
            "https://cdn.example/x?sig=1".parse().unwrap(),
        );
        let follow = |l: &str| Ok::<_, String>(format!("key:{l}"));
        let resp = judge_response(
            &g,
            &state,
            "https://dl.example/releases/a",
            Judged::File,
            redirect,
            &follow,
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(drain(resp.into_body()).await, (Vec::new(), None));
        assert_eq!(
            state
                .expected("key:https://cdn.example/x?sig=1")
                .map(|e| e.0),
            Some(Judged::File)
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, "bytes=0-10".parse().unwrap());
        headers.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        headers.insert(header::USER_AGENT, "app".parse().unwrap());
        prepare_request(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    fn manifest(config: &[u8; 32], layers: &[[u8; 32]]) -> Vec<u8> {
        let d = |x: &[u8; 32]| format!("sha256:{}", hex::encode(x));
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": d(config), "size": 2},
            "layers": layers.iter().map(|l| serde_json::json!({"digest": d(l), "size": 1})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    fn body(bytes: Vec<u8>) -> Response<Body> {
        ok(Full::new(Bytes::from(bytes))
            .map_err(|n| match n {})
            .boxed())
    }

    #[tokio::test]
    async fn registry_manifests_must_be_trusted_and_blobs_named_by_one() {
        let state = Arc::default();
        let layer = b"layer bytes".to_vec();
        let layer_digest: [u8; 32] = sha2::Sha256::digest(&layer).into();
        let config_digest: [u8; 32] = sha2::Sha256::digest(b"{}").into();
        let signed = manifest(&config_digest, &[layer_digest]);
        let signed_digest: [u8; 32] = sha2::Sha256::digest(&signed).into();
        let g = gate(&signed, false);
        assert!(g.is_registry("registry.example", 5000));
        assert!(g.is_registry("ghcr.example", 443));
        assert!(!g.is_registry("registry.example", 443));
        let blob = Judged::Blob(layer_digest);
        let tag = |t: &str| Judged::Manifest(t.to_owned());
        // A blob before any trusted manifest named it: refused.
        assert_eq!(
            judge(&g, &state, blob.clone(), body(layer.clone()))
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
        // An unsigned manifest (by tag): refused, and its layers are not learnt.
        let unsigned = manifest(&config_digest, &[[7; 32]]);
        assert_eq!(
            judge(&g, &state, tag("latest"), body(unsigned))
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
        // A digest reference answered with other bytes: refused.
        let wrong = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            judge(&g, &state, tag(&wrong), body(signed.clone()))
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
        // The signed manifest: delivered whole, with the digest certgate computed.
        let resp = judge(&g, &state, tag("1.0"), body(signed.clone())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["docker-content-digest"],
            format!("sha256:{}", hex::encode(signed_digest)).as_str()
        );
        assert_eq!(drain(resp.into_body()).await, (signed.clone(), None));
        // Now its layer passes, whole; a layer whose bytes differ, or are none, is cut.
        let resp = judge(&g, &state, blob.clone(), body(layer.clone())).await;
        assert_eq!(drain(resp.into_body()).await, (layer.clone(), None));
        for bad in [b"swapped".to_vec(), Vec::new()] {
            let resp = judge(&g, &state, blob.clone(), body(bad)).await;
            let (got, err) = drain(resp.into_body()).await;
            assert!(got.is_empty() && err.unwrap().contains("do not hash"));
        }
        // Request spellings: only canonical digests and tags are judged; odd ones refused.
        let hex = hex::encode(layer_digest);
        assert_eq!(
            classify_registry(&format!("/v2/a/b/blobs/sha256:{hex}")),
            Ok(Some(blob.clone()))
        );
        assert_eq!(
            classify_registry(&format!("/v2/a/blobs/sha256%3A{hex}")),
            Ok(Some(blob.clone()))
        );
        for odd in [
            format!("/v2/a/blobs/SHA256:{hex}"),
            format!("/v2/a/blobs/sha256:{}", hex.to_uppercase()),
            format!("/v2/a/blobs/sha512:{hex}{hex}"),
            "/v2/a/blobs/foo".to_owned(),
            "/v2/a/blobs/".to_owned(),
            "/v2/a/manifests/..".to_owned(),
            "/v2/a/manifests/sha256:xyz".to_owned(),
        ] {
            assert!(classify_registry(&odd).is_err(), "{odd}");
        }
        assert_eq!(classify_registry("/v2/"), Ok(None));
        assert_eq!(classify_registry("/v2/app/tags/list"), Ok(None));
        assert_eq!(classify_registry("/v2/app/blobs/uploads/123"), Ok(None));
        assert_eq!(
            classify_registry("/v2/a/b/manifests/latest"),
            Ok(Some(tag("latest")))
        );
    }
}
