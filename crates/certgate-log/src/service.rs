//! The log's HTTP API, a plain request -> response function (the binary puts it behind an
//! ingress route, whose TLS, policy and access log apply):
//!
//! - `GET /checkpoint`: the latest signed checkpoint (`text/plain; charset=utf-8`, not cached);
//!   with witnesses, the latest one that got its quorum of cosignatures;
//! - `GET /tile/<L>/<N>[.p/<W>]`: hash tiles (`application/octet-stream`; full tiles cached as
//!   immutable, and kept in memory here once read);
//! - `GET /tile/entries/<N>[.p/<W>]`: entry bundles (same caching);
//! - `POST /add`: appends the body (one entry, at most 65,535 bytes) and answers with a
//!   tlog-proof (`text/plain`): its index, inclusion proof and the signed checkpoint. Who may
//!   call it is the route's policy (mTLS allow list), not this module's.

use std::sync::Arc;

use bytes::Bytes;
use certgate_tlog::note::Note;
use certgate_tlog::proof::TlogProof;
use certgate_tlog::tile::{self, Tile};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::sequencer::Sequencer;
use crate::store::{LogStorage, with_hashes};

/// The log behind a route.
#[derive(Clone, Debug)]
pub struct LogService {
    store: Arc<dyn LogStorage>,
    sequencer: Sequencer,
    /// Path prefix of the route (e.g. `/` or `/log/`), stripped before matching.
    prefix: String,
    /// With witnesses: the newest checkpoint that got its quorum of cosignatures, served at
    /// `/checkpoint` instead of the store's newest.
    witnessed: Arc<std::sync::RwLock<Option<Bytes>>>,
    /// Full tiles and entry bundles never change once they exist: after the first read they
    /// are answered from memory, without touching storage or leaving the async thread.
    full_tiles: Arc<std::sync::Mutex<TileCache>>,
    /// Whether `/checkpoint` serves witnessed checkpoints only.
    require_witnessed: bool,
}

/// The full tiles served last, by path, up to [`TileCache::MAX_BYTES`] (the oldest go first).
#[derive(Debug, Default)]
struct TileCache {
    tiles: std::collections::HashMap<String, Bytes>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

impl TileCache {
    /// 64 MiB: 8,000 full hash tiles, or many entry bundles of small entries.
    const MAX_BYTES: usize = 64 << 20;

    fn get(&self, path: &str) -> Option<Bytes> {
        self.tiles.get(path).cloned()
    }

    fn put(&mut self, path: &str, body: Bytes) {
        if body.len() > Self::MAX_BYTES / 8 || self.tiles.contains_key(path) {
            return;
        }
        self.bytes += body.len();
        self.tiles.insert(path.to_owned(), body);
        self.order.push_back(path.to_owned());
        while self.bytes > Self::MAX_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.tiles.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn reply(
    status: StatusCode,
    content_type: &'static str,
    cache: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = cache {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
    }
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Bytes> {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", Some("no-store"), m)
}

impl LogService {
    /// The service for `store`, appending through `sequencer`, under path `prefix`.
    pub fn new(store: Arc<dyn LogStorage>, sequencer: Sequencer, prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            store,
            sequencer,
            prefix,
            witnessed: Arc::default(),
            full_tiles: Arc::default(),
            require_witnessed: false,
        }
    }

    /// A full tile or entry bundle served before, from memory.
    fn cached(&self, path: &str) -> Option<Response<Bytes>> {
        let body = self.full_tiles.lock().ok()?.get(path)?;
        Some(reply(
            StatusCode::OK,
            "application/octet-stream",
            Some(IMMUTABLE),
            body,
        ))
    }

    /// From now on `/checkpoint` serves only checkpoints published with
    /// [`Self::publish_witnessed`], and answers 503 until there is one: a log with witnesses
    /// never serves a checkpoint without its quorum.
    pub fn require_witnesses(&mut self) {
        self.require_witnessed = true;
    }

    /// Serves `note` (a checkpoint with its witnesses' cosignatures) at `/checkpoint` from now
    /// on. A log with witnesses publishes only checkpoints that got their quorum.
    pub fn publish_witnessed(&self, note: String) {
        if let Ok(mut w) = self.witnessed.write() {
            *w = Some(Bytes::from(note));
        }
    }

    /// Answers a read-API path (without the route prefix): `checkpoint` or a tile path.
    pub fn read(&self, path: &str) -> Response<Bytes> {
        if path == "checkpoint" {
            if let Some(note) = self.witnessed.read().ok().and_then(|w| w.clone()) {
                return reply(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    Some("no-cache"),
                    note,
                );
            }
            if self.require_witnessed {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no checkpoint of this log has its witnesses' quorum of cosignatures yet",
                );
            }
            return match self.store.head() {
                Ok((_, cp)) => reply(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    Some("no-cache"),
                    cp,
                ),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
        }
        let t = match Tile::parse(path) {
            Ok(t) => t,
            Err(e) => return text(StatusCode::NOT_FOUND, e.to_string()),
        };
        let size = match self.store.head() {
            Ok((size, _)) => size,
            Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        // What the tree has at this tile's level; a tile is served only as far as it exists.
        let shift = u32::from(t.level.unwrap_or(0)) * u32::from(tile::HEIGHT);
        let at_level = if shift >= 64 { 0 } else { size >> shift };
        let start = t.index.saturating_mul(tile::WIDTH);
        let end = start.saturating_add(u64::from(t.width));
        if end > at_level {
            return text(
                StatusCode::NOT_FOUND,
                format!("{path}: the log has no such tile yet (tree size {size})"),
            );
        }
        let full = u64::from(t.width) == tile::WIDTH;
        if full && let Some(r) = self.cached(path) {
            return r;
        }
        let cache = full.then_some(IMMUTABLE);
        let body = match t.level {
            Some(_) => with_hashes(self.store.as_ref(), |r| tile::read_tile(&t, r)),
            None => self
                .store
                .entries(start, end)
                .and_then(|entries| Ok(tile::encode_bundle(entries.iter().map(Vec::as_slice))?)),
        };
        match body {
            Ok(b) => {
                let b = Bytes::from(b);
                if full && let Ok(mut c) = self.full_tiles.lock() {
                    c.put(path, b.clone());
                }
                reply(StatusCode::OK, "application/octet-stream", cache, b)
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    async fn add(&self, body: Bytes) -> Response<Bytes> {
        if body.is_empty() {
            return text(StatusCode::BAD_REQUEST, "the entry is empty");
        }
        if body.len() > tile::MAX_ENTRY {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "an entry is at most {} bytes; this one is {}",
                    tile::MAX_ENTRY,
                    body.len()
                ),
            );
        }
        match self.sequencer.append(body.to_vec()).await {
            Ok(a) => {
                let checkpoint = match Note::parse(a.checkpoint.as_bytes()) {
                    Ok(n) => n,
                    Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                };
                let proof = TlogProof {
                    extra: None,
                    index: a.index,
                    proof: a.proof,
                    checkpoint,
                };
                reply(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    Some("no-store"),
                    proof.to_text(),
                )
            }
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

impl LogService {
    /// The largest request body the API reads (one entry); the caller refuses larger ones.
    pub const MAX_BODY: usize = tile::MAX_ENTRY;

    /// Answers one request whose whole body has been read.
    pub async fn call(&self, req: Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix(self.prefix.as_str()) else {
            return text(StatusCode::NOT_FOUND, "not under the log's path");
        };
        let rest = rest.to_owned();
        match (req.method(), rest.as_str()) {
            (&Method::POST, "add") => self.add(req.into_body()).await,
            (_, "add") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST /add"),
            (&Method::GET | &Method::HEAD, _) => {
                if let Some(r) = self.cached(&rest) {
                    return r;
                }
                // Storage reads block (disk I/O): off the async threads.
                let svc = self.clone();
                tokio::task::spawn_blocking(move || svc.read(&rest))
                    .await
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "read failed"))
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "the read API is GET only"),
        }
    }
}
