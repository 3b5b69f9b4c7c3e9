//! The CRL fetcher: keeps every CRL a trust takes from a URL fresh in the state directory.
//!
//! One task per (trust, URL). Each fetches at start, then again before the CRL's nextUpdate
//! (half the time left, at least every `crl_refresh_secs`), with `If-None-Match` /
//! `If-Modified-Since`. A download is used only if it passes `certgate_pki::crl::check`
//! (signed by a CA of the trust, valid now, CRL number not going backwards); then it is put in
//! force at once in the running trust (`TrustBundle::install_crl`: the next handshake uses it,
//! and serve re-checks open connections), and stored in the cache. No reload is needed, so a
//! config that no longer loads cannot hold a revocation back; only a list the trust has no
//! version of yet (a first fetch, a newly learned URL) asks serve for a reload, and trusts that
//! verify servers get one later (their TLS clients copy CRLs when built). Anything else (no answer,
//! an error status, a refused CRL) keeps the last good copy and is retried with backoff. What
//! happens when the copy passes its nextUpdate is the trust's `on_stale`, applied by the
//! verifier, never here.
//!
//! Trusts with `crl_from_certificates` learn distribution-point URLs from the certificates they
//! verify; a watcher stores new ones and asks for a reload, which turns them into sources.
//!
//! The process remembers the newest version of every list it has had in force, from a URL or
//! a file: a fetched CRL may never be older, and a reload whose files (or new state directory)
//! hold an older version gets the newer one put back in force, with a warning.
//!
//! The fetch never runs on a handshake's path: a handshake reads the CRLs in force when it
//! starts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use certgate_pki::Origin;
use certgate_pki::TrustBundle;
use certgate_pki::verify::{Installed, LoadedCrl};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::config::{self, CrlSource};
use crate::crl_cache::{self, Meta};

/// The largest CRL accepted (a 100,000-entry CRL is about 4 MiB).
const MAX_CRL_BYTES: usize = 32 << 20;
/// Connecting, sending and reading one CRL, all together.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest wait between two fetches of one URL, unless `crl_refresh_secs` is shorter.
const MIN_DELAY: Duration = Duration::from_secs(10);
/// The longest wait after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often learned distribution points are looked at.
const LEARN_EVERY: Duration = Duration::from_secs(1);

/// The trust a source belongs to, as the last reload built it: the CAs that may sign its CRLs
/// and the CRLs in force (a fetched CRL may not be older than the one in force for its issuer).
type Issuers = Arc<Mutex<Option<Arc<TrustBundle>>>>;

struct Task {
    handle: JoinHandle<()>,
    issuers: Issuers,
    refresh: Duration,
}

/// The newest version of every list this process has had in force, by (trust, list): a fetched
/// CRL may never be older, whatever happened to the state directory or the configuration since.
type Newest = Arc<Mutex<HashMap<(String, String), Arc<LoadedCrl>>>>;

/// What the fetcher asks of serve.
#[derive(Debug)]
pub(super) enum CrlEvent {
    /// A newer CRL is in force in this trust: re-check open connections (and rebuild the TLS
    /// clients of a trust that verifies servers).
    Installed {
        /// The trust.
        trust: String,
    },
    /// Something only a reload can apply: a list the trust had no version of, a learned URL.
    Reload,
}

/// The running fetch tasks, matched to the config on every (re)load.
pub(super) struct Fetcher {
    newest: Newest,
    state: PathBuf,
    events: UnboundedSender<CrlEvent>,
    tasks: HashMap<(String, String), Task>,
    learner: Option<JoinHandle<()>>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.handle.abort();
        }
        if let Some(l) = &self.learner {
            l.abort();
        }
    }
}

/// Fails unless the state directory can hold fetched CRLs: a CRL that cannot be stored is never
/// used, so a revocation would wait for an unwritable directory without anyone noticing.
pub(super) fn check_state_dir(cfg: &config::Config) -> anyhow::Result<()> {
    if cfg.crl_sources.is_empty() && cfg.crl_follow.is_empty() {
        return Ok(());
    }
    let dir = cfg.state_dir.join("crl");
    let probe = dir.join(".write-test");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            crate::exit::fail(
                crate::exit::CANTCREAT,
                format!(
                    "state_dir: cannot write fetched CRLs to `{}`: {e}",
                    dir.display()
                ),
            )
        })
}

impl Fetcher {
    /// A fetcher that tells `events` about every new CRL (or new distribution point).
    pub(super) fn new(events: UnboundedSender<CrlEvent>) -> Self {
        Self {
            newest: Newest::default(),
            state: PathBuf::new(),
            events,
            tasks: HashMap::new(),
            learner: None,
        }
    }

    /// Remembers the lists `trusts` hold now (CRL files put in force while the config did not
    /// load): a later reload with an older file must not take them back.
    pub(super) fn remember_in_force(&self, trusts: &[Arc<TrustBundle>]) {
        if let Ok(mut newest) = self.newest.lock() {
            for t in trusts {
                for crl in t.crls() {
                    remember(&mut newest, t.name(), &crl);
                }
            }
        }
    }

    /// Starts, keeps or stops tasks so that exactly the config's sources are fetched.
    pub(super) fn update(&mut self, cfg: &config::Config) {
        if self.state != cfg.state_dir {
            // A new state directory: every task starts over there.
            for (_, t) in self.tasks.drain() {
                t.handle.abort();
            }
            self.state = cfg.state_dir.clone();
        }
        let issuers_of = |trust: &str| cfg.trusts.iter().find(|t| t.name() == trust).cloned();
        if let Ok(mut newest) = self.newest.lock() {
            for t in &cfg.trusts {
                keep_newest(&mut newest, t);
            }
        }
        let wanted: HashMap<(String, String), &CrlSource> = cfg
            .crl_sources
            .iter()
            .map(|s| ((s.trust.clone(), s.url.clone()), s))
            .collect();
        self.tasks.retain(|key, task| {
            let keep = wanted.get(key).is_some_and(|s| s.refresh == task.refresh);
            if !keep {
                task.handle.abort();
            }
            keep
        });
        for (key, source) in wanted {
            if let Some(task) = self.tasks.get(&key) {
                if let Ok(mut i) = task.issuers.lock() {
                    *i = issuers_of(&source.trust);
                }
                continue;
            }
            let issuers: Issuers = Arc::new(Mutex::new(issuers_of(&source.trust)));
            let handle = tokio::spawn(run(
                Arc::clone(&self.newest),
                self.state.clone(),
                source.clone(),
                Arc::clone(&issuers),
                self.events.clone(),
            ));
            self.tasks.insert(
                key,
                Task {
                    handle,
                    issuers,
                    refresh: source.refresh,
                },
            );
        }
        if let Some(l) = self.learner.take() {
            l.abort();
        }
        if !cfg.crl_follow.is_empty() {
            self.learner = Some(tokio::spawn(learn(
                self.state.clone(),
                cfg.crl_follow.clone(),
                cfg.crl_sources.iter().map(|s| s.url.clone()).collect(),
                self.events.clone(),
            )));
        }
    }
}

/// Watches the trusts that follow distribution points; stores new URLs and asks for a reload.
async fn learn(
    state: PathBuf,
    follow: Vec<config::CrlFollow>,
    known: Vec<String>,
    events: UnboundedSender<CrlEvent>,
) {
    let mut tick = tokio::time::interval(LEARN_EVERY);
    loop {
        tick.tick().await;
        for f in &follow {
            let urls: Vec<String> = f
                .trust
                .learned_crl_urls()
                .into_iter()
                .filter(|u| !known.contains(u))
                .collect();
            if urls.is_empty() {
                continue;
            }
            let (state, trust) = (state.clone(), f.trust.name().to_owned());
            let stored =
                tokio::task::spawn_blocking(move || crl_cache::add_learned(&state, &trust, &urls))
                    .await;
            match stored {
                Ok(Ok(new)) if !new.is_empty() => {
                    tracing::info!(trust = %f.trust.name(), urls = ?new, "following new CRL distribution points");
                    let _ = events.send(CrlEvent::Reload);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(trust = %f.trust.name(), error = %e, "cannot store learned CRL distribution points")
                }
                Err(e) => tracing::warn!(error = %e, "CRL learner task failed"),
            }
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Keeps `crl` if it is the newest version of its list in `trust` this process has seen.
fn remember(
    newest: &mut HashMap<(String, String), Arc<LoadedCrl>>,
    trust: &str,
    crl: &Arc<LoadedCrl>,
) {
    let facts = crl.facts();
    if facts.issuer.is_empty() {
        return;
    }
    let key = (trust.to_owned(), facts.list_key());
    let newer = newest
        .get(&key)
        .is_none_or(|old| certgate_pki::crl::not_older(&facts, &old.facts()).is_ok());
    if newer {
        newest.insert(key, Arc::clone(crl));
    }
}

/// Remembers the CRLs `trust` (freshly loaded) holds, and puts back in force any newer version
/// of a list this process has had in force: a CRL file replaced by an older one, or a new state
/// directory without the last fetched copy, must not un-revoke anything.
fn keep_newest(newest: &mut HashMap<(String, String), Arc<LoadedCrl>>, trust: &TrustBundle) {
    for crl in trust.crls() {
        let facts = crl.facts();
        let key = (trust.name().to_owned(), facts.list_key());
        let Some(known) = newest.get(&key).cloned() else {
            remember(newest, trust.name(), &crl);
            continue;
        };
        if certgate_pki::crl::not_older(&facts, &known.facts()).is_ok() {
            remember(newest, trust.name(), &crl);
            continue;
        }
        // A CRL of an intermediate the clients send is checked when used; one whose CA is in
        // the trust under another key now (a re-keyed CA), or that expired, is not put back.
        let still_good = matches!(
            certgate_pki::crl::check(known.der(), &trust.issuer_certificates(), unix_now(), None),
            Ok(_) | Err(certgate_pki::crl::CrlRefused::UnknownIssuer(_))
        );
        if still_good && trust.install_crl(Arc::clone(&known)) == Installed::Replaced {
            metrics::counter!("certgate_crl_rollbacks_refused_total", "trust" => trust.name().to_owned())
                .increment(1);
            tracing::warn!(
                trust = %trust.name(), issuer = %facts.issuer,
                loaded = facts.number.as_deref().unwrap_or("-"),
                kept = known.facts().number.as_deref().unwrap_or("-"),
                "the reloaded configuration holds an older CRL than the one in force; keeping the newer one"
            );
        }
    }
}

/// One URL, forever.
async fn run(
    newest: Newest,
    state: PathBuf,
    source: CrlSource,
    issuers: Issuers,
    events: UnboundedSender<CrlEvent>,
) {
    let CrlSource { trust, url, .. } = &source;
    let floor = MIN_DELAY.min(source.refresh);
    let mut backoff = floor;
    let mut remembered = None;
    loop {
        let outcome = fetch_and_store(&newest, &state, &source, &issuers, &mut remembered).await;
        let result = match &outcome {
            Ok(Stored {
                kind: Kind::New, ..
            }) => "new",
            Ok(Stored {
                kind: Kind::Same, ..
            }) => "unchanged",
            Ok(Stored {
                kind: Kind::NotModified,
                ..
            }) => "not_modified",
            Err(Failure::Refused(_)) => "refused",
            Err(Failure::Fetch(_)) => "error",
        };
        metrics::counter!("certgate_crl_fetches_total", "trust" => trust.clone(), "url" => url.clone(), "result" => result)
            .increment(1);
        let delay = match outcome {
            Ok(stored) => {
                backoff = floor;
                let meta = &stored.meta;
                if let Some(t) = meta.last_success {
                    metrics::gauge!("certgate_crl_last_success_timestamp_seconds", "trust" => trust.clone(), "url" => url.clone())
                        .set(t as f64);
                }
                let next = meta.facts.as_ref().and_then(|f| f.next_update);
                if let Some(n) = next {
                    metrics::gauge!("certgate_crl_source_next_update_timestamp_seconds", "trust" => trust.clone(), "url" => url.clone())
                        .set(n as f64);
                }
                let f = meta.facts.as_ref();
                let number = f.and_then(|f| f.number.as_deref()).unwrap_or("-");
                let revoked = f.map_or(0, |f| f.revoked);
                match stored.installed {
                    Some(Installed::Replaced) => {
                        tracing::info!(trust = %trust, url = %url, number, revoked, "new CRL in force");
                        let _ = events.send(CrlEvent::Installed {
                            trust: trust.clone(),
                        });
                    }
                    Some(Installed::NoSuchList) => {
                        tracing::info!(trust = %trust, url = %url, number, revoked, "new CRL stored; reloading to put it in force");
                        let _ = events.send(CrlEvent::Reload);
                    }
                    Some(Installed::NotNewer) | None => {}
                }
                next_delay(source.refresh, next, unix_now())
            }
            Err(failure) => {
                let why = match &failure {
                    Failure::Refused(r) => format!("the CRL was refused: {r}"),
                    Failure::Fetch(e) => e.clone(),
                };
                tracing::warn!(trust = %trust, url = %url, error = %why, retry_in_secs = backoff.as_secs(), "CRL not refreshed; keeping the last good copy");
                let d = backoff;
                backoff = (backoff * 2)
                    .min(MAX_BACKOFF)
                    .min(source.refresh.max(floor));
                d
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// When to fetch again after a success: half the time left before nextUpdate, at most
/// `refresh`, at least [`MIN_DELAY`] (or `refresh`, when that is shorter).
fn next_delay(refresh: Duration, next_update: Option<i64>, now: i64) -> Duration {
    let before_next = next_update.map_or(refresh, |n| {
        Duration::from_secs(u64::try_from((n - now) / 2).unwrap_or(0))
    });
    refresh.min(before_next).max(MIN_DELAY.min(refresh))
}

/// What a successful fetch stored.
struct Stored {
    kind: Kind,
    meta: Meta,
    /// What putting the CRL in force did, when it differed from the one in force.
    installed: Option<Installed>,
}

enum Kind {
    /// A new CRL passed the checks and is stored.
    New,
    /// The server sent the CRL already in use.
    Same,
    /// 304.
    NotModified,
}

enum Failure {
    Refused(certgate_pki::crl::CrlRefused),
    Fetch(String),
}

async fn fetch_and_store(
    newest: &Newest,
    state: &std::path::Path,
    source: &CrlSource,
    issuers: &Issuers,
    remembered: &mut Option<certgate_pki::crl::CrlFacts>,
) -> Result<Stored, Failure> {
    let url = &source.url;
    // The stored copy is read only on this process's first fetch from the source (what a new
    // list must not be older than); later the newest list in force says that, and a large list
    // is not read back from disk at every refresh.
    let (st, u, first) = (state.to_owned(), url.clone(), remembered.is_none());
    let (cached, stored, meta) = tokio::task::spawn_blocking(move || {
        let path = crl_cache::crl_path(&st, &u);
        (
            first.then(|| std::fs::read(&path).ok()).flatten(),
            path.is_file(),
            crl_cache::read_meta(&st, &u),
        )
    })
    .await
    .map_err(|e| Failure::Fetch(e.to_string()))?;
    let in_force = remembered.as_ref().and_then(|f| {
        newest
            .lock()
            .ok()
            .and_then(|n| n.get(&(source.trust.clone(), f.list_key())).cloned())
    });
    // The stored copy vanished (a cleaned state directory) while this process has the list in
    // force: store it again, so that a restart without network still has it.
    if !stored && let Some(known) = &in_force {
        let (st, u, known) = (state.to_owned(), url.clone(), Arc::clone(known));
        let restored = tokio::task::spawn_blocking(move || {
            let meta = Meta {
                url: u.clone(),
                facts: Some(known.facts()),
                ..Meta::default()
            };
            crl_cache::write(&st, &u, Some(known.der()), &meta)
        })
        .await;
        if let Ok(Err(e)) = restored {
            tracing::error!(trust = %source.trust, url = %url, error = %e, "the stored copy of a CRL is gone and cannot be written again");
        }
    }
    let mut meta = meta.unwrap_or_else(|| Meta {
        url: url.clone(),
        ..Meta::default()
    });
    // Validators only with a copy to fall back on (a deleted cache gets a full download).
    let validators = if stored {
        (meta.etag.clone(), meta.last_modified.clone())
    } else {
        (None, None)
    };
    let answer = tokio::time::timeout(FETCH_TIMEOUT, get(url, validators))
        .await
        .map_err(|_| {
            Failure::Fetch(format!(
                "no complete answer within {} s",
                FETCH_TIMEOUT.as_secs()
            ))
        })?
        .map_err(Failure::Fetch)?;
    let now = unix_now();
    let trust = issuers.lock().ok().and_then(|i| i.clone());
    let (der, kind, installed) = match answer {
        Answer::NotModified => {
            meta.last_success = Some(now);
            (None, Kind::NotModified, None)
        }
        Answer::Body {
            bytes,
            etag,
            last_modified,
        } => {
            let certs = trust
                .as_ref()
                .map(|t| t.issuer_certificates())
                .unwrap_or_default();
            // Checked and parsed once, off the async threads (a large CRL takes a while).
            // What a new list must not be older than: the last one this process took from
            // this source, or (first fetch) the stored copy itself, never the facts file next to
            // it, which an edit could set to a number no genuine list would ever pass.
            // The stored copy counts only if a CA of the trust signed it: a file anyone with
            // access to the state directory wrote must not set a floor no genuine list passes.
            let remembered_facts = remembered.clone();
            // Read back only on the first fetch: cloned at most once per source.
            let stored_copy = cached.clone();
            // Decoded, checked and parsed off the async threads: a list of 100,000 entries takes
            // tens of milliseconds, which handshakes waiting on a runtime thread would feel.
            let source_url = url.clone();
            let (der, facts, loaded) = tokio::task::spawn_blocking(move || {
                let previous = remembered_facts.or_else(|| {
                    stored_copy
                        .as_deref()
                        .and_then(|c| certgate_pki::crl::verify_signed(c, &certs).ok())
                });
                let der = certgate_pki::crl::crl_der(&bytes, &Origin::inline(&source_url))
                    .map_err(|e| Failure::Fetch(e.to_string()))?;
                let (facts, loaded) = certgate_pki::crl::check_and_load(
                    &der,
                    &certs,
                    now,
                    previous.as_ref(),
                    Some(&source_url),
                )
                .map_err(Failure::Refused)?;
                Ok::<_, Failure>((der, facts, loaded))
            })
            .await
            .map_err(|e| Failure::Fetch(e.to_string()))??;
            // Whether the copy on disk already is this list, then let go of the list in force
            // here: installing frees it, off the async threads.
            let same = stored && in_force.as_ref().is_some_and(|k| k.der() == der.as_slice())
                || cached.as_deref() == Some(der.as_slice());
            drop(in_force);
            // Not older than the newest version of that list this process has had in force,
            // from this source or another, whatever the state directory says now.
            let key = (source.trust.clone(), facts.list_key());
            let known = newest.lock().ok().and_then(|n| n.get(&key).cloned());
            if let Some(known) = known {
                certgate_pki::crl::not_older(&facts, &known.facts()).map_err(Failure::Refused)?;
            }
            let installed = match &trust {
                Some(t) if !t.crls().iter().any(|c| c.der() == der.as_slice()) => {
                    let crl = Arc::new(loaded);
                    // Off the async threads too: this frees the list it replaces.
                    let (t, n, name) = (Arc::clone(t), Arc::clone(newest), source.trust.clone());
                    let installed = tokio::task::spawn_blocking(move || {
                        let installed = t.install_crl(Arc::clone(&crl));
                        if let Ok(mut n) = n.lock() {
                            remember(&mut n, &name, &crl);
                        }
                        installed
                    })
                    .await
                    .map_err(|e| Failure::Fetch(e.to_string()))?;
                    Some(installed)
                }
                _ => None,
            };
            *remembered = Some(facts.clone());
            meta.facts = Some(facts);
            meta.etag = etag;
            meta.last_modified = last_modified;
            meta.last_success = Some(now);
            if same {
                (None, Kind::Same, installed)
            } else {
                (Some(der), Kind::New, installed)
            }
        }
    };
    let (st, u, m) = (state.to_owned(), url.clone(), meta.clone());
    let written =
        tokio::task::spawn_blocking(move || crl_cache::write(&st, &u, der.as_deref(), &m))
            .await
            .map_err(|e| Failure::Fetch(e.to_string()))?;
    if let Err(e) = written {
        let why = format!(
            "cannot store it in {}: {e}",
            crl_cache::crl_path(state, url).display()
        );
        if installed != Some(Installed::Replaced) {
            return Err(Failure::Fetch(why));
        }
        // In force already; only a restart would fall back to the older stored copy.
        metrics::counter!("certgate_crl_store_failures_total", "trust" => source.trust.clone(), "url" => url.clone()).increment(1);
        tracing::error!(trust = %source.trust, url = %url, error = %why, "a new CRL is in force but not stored; a restart would use the older stored copy until the next fetch");
    }
    Ok(Stored {
        kind,
        meta,
        installed,
    })
}

enum Answer {
    NotModified,
    Body {
        bytes: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// One plain-HTTP GET with optional validators. Redirects are not followed.
async fn get(
    url: &str,
    (etag, last_modified): (Option<String>, Option<String>),
) -> Result<Answer, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(
            header::USER_AGENT,
            concat!("certgate/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            header::ACCEPT,
            "application/pkix-crl, application/x-pkcs7-crl, */*",
        );
    if let Some(e) = &etag {
        req = req.header(header::IF_NONE_MATCH, e);
    }
    if let Some(lm) = &last_modified {
        req = req.header(header::IF_MODIFIED_SINCE, lm);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(Answer::NotModified),
            StatusCode::OK => {
                let text = |name: header::HeaderName| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let etag = text(header::ETAG);
                let last_modified = text(header::LAST_MODIFIED);
                let body = Limited::new(resp.into_body(), MAX_CRL_BYTES)
                    .collect()
                    .await
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            format!("the CRL is larger than {} MiB", MAX_CRL_BYTES >> 20)
                        } else {
                            format!("reading the CRL: {e}")
                        }
                    })?
                    .to_bytes();
                Ok(Answer::Body {
                    bytes: body,
                    etag,
                    last_modified,
                })
            }
            s if s.is_redirection() => Err(format!(
                "HTTP {s}: redirects are not followed; name the final URL in `crl_url`"
            )),
            s => Err(format!("HTTP {s}")),
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_come_before_next_update_and_never_too_often() {
        let hour = Duration::from_secs(3600);
        // A week left: the refresh interval decides.
        assert_eq!(next_delay(hour, Some(7 * 86400), 0), hour);
        // Half an hour left: fetch again in a quarter of an hour.
        assert_eq!(next_delay(hour, Some(1800), 0), Duration::from_secs(900));
        // Past nextUpdate, or no nextUpdate at all.
        assert_eq!(next_delay(hour, Some(-5), 0), MIN_DELAY);
        assert_eq!(next_delay(hour, None, 0), hour);
        // A refresh interval shorter than the floor is honoured.
        let second = Duration::from_secs(1);
        assert_eq!(next_delay(second, Some(7 * 86400), 0), second);
        assert_eq!(next_delay(second, Some(-5), 0), second);
    }
}
