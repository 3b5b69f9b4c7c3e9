//! `certgate serve --config FILE`: run every listener the config declares, and reload it on
//! SIGHUP or when any file it read changes.
//!
//! A reload resolves the whole config again, off the async threads. If anything is wrong, every
//! error is logged and the running state stays (design.md invariant 7). If it is good, each
//! listener's configuration is swapped at once: new connections get the new identities, trust,
//! CRLs and routes; connections already open keep theirs and are not dropped. Adding, removing or
//! moving listeners needs a restart, and such a reload is refused as a whole.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use arc_swap::ArcSwap;
use certgate_proxy::LiveConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::config;
use crate::exit::{self, fail};

/// How often referenced files are checked for changes.
const POLL: Duration = Duration::from_secs(2);

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let cfg = config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("certgate")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(cfg, |_| {}))
}

struct Listener {
    addr: SocketAddr,
    live: LiveConfig,
}

/// Binds every listener, calls `on_bound` with (name, address) pairs, then serves until SIGTERM
/// or SIGINT, reloading on SIGHUP and on file changes.
pub async fn serve(
    cfg: config::Config,
    on_bound: impl FnOnce(&[(String, SocketAddr)]),
) -> Result<ExitCode> {
    for note in &cfg.notes {
        tracing::warn!("{note}");
    }
    if cfg.ingresses.is_empty() {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{}: nothing to serve: the config declares no [[ingress]]",
                cfg.path.display()
            ),
        ));
    }
    // Bind everything first: a config whose listeners cannot all start does not start at all.
    let mut bound = Vec::new();
    for ingress in &cfg.ingresses {
        let listener = TcpListener::bind(ingress.listen).await.map_err(|e| {
            fail(
                exit::CANTCREAT,
                format!(
                    "ingress `{}`: cannot listen on {}: {e}",
                    ingress.config.name, ingress.listen
                ),
            )
        })?;
        let addr = listener.local_addr().context("local address")?;
        // One stable line per listener on stdout, for people and for scripts using port 0.
        println!("listening ingress={} addr={addr}", ingress.config.name);
        tracing::info!(listener = %ingress.config.name, %addr, client_auth = %ingress.config.client_auth, "listening");
        bound.push((listener, ingress));
    }
    let addrs: Vec<(String, SocketAddr)> = bound
        .iter()
        .filter_map(|(l, i)| l.local_addr().ok().map(|a| (i.config.name.clone(), a)))
        .collect();
    on_bound(&addrs);
    let (stop, stopped) = watch::channel(false);
    let mut listeners = BTreeMap::new();
    let mut tasks = Vec::new();
    for (listener, ingress) in bound {
        let live: LiveConfig = Arc::new(ArcSwap::from(Arc::clone(&ingress.config)));
        listeners.insert(
            ingress.config.name.clone(),
            Listener {
                addr: ingress.listen,
                live: Arc::clone(&live),
            },
        );
        tasks.push(tokio::spawn(certgate_proxy::serve(
            live,
            listener,
            stopped.clone(),
        )));
    }
    let path = cfg.path.clone();
    let mut seen = fingerprint(&cfg.files);
    let mut files = cfg.files;
    drop(cfg.ingresses);
    let (mut stop_signal, mut hangup) = (Stop::new(), Hangup::new());
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = stop_signal.recv() => break,
            _ = hangup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = fingerprint(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        if let Some(new_files) = reload(&path, &listeners, why).await {
            files = new_files;
            seen = fingerprint(&files);
        }
    }
    tracing::info!("shutting down: no new connections");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Give requests in flight a moment to finish; the runtime ends the rest on exit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(ExitCode::SUCCESS)
}

/// Re-resolves the config and swaps it in. Returns the files the new config reads, or `None`
/// when the reload was refused (the running state is kept).
async fn reload(
    path: &Path,
    listeners: &BTreeMap<String, Listener>,
    why: &str,
) -> Option<Vec<PathBuf>> {
    let p = path.to_owned();
    let loaded = match tokio::task::spawn_blocking(move || config::load(&p)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reload task failed; keeping the running configuration");
            return None;
        }
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(trigger = why, error = %e, "reload rejected");
            }
            tracing::error!(
                trigger = why,
                errors = errors.0.len(),
                "reload rejected; keeping the running configuration"
            );
            return None;
        }
    };
    let new: BTreeMap<&str, (SocketAddr, &Arc<certgate_proxy::IngressConfig>)> = cfg
        .ingresses
        .iter()
        .map(|i| (i.config.name.as_str(), (i.listen, &i.config)))
        .collect();
    let same_set = new.len() == listeners.len()
        && listeners.iter().all(|(name, l)| {
            new.get(name.as_str())
                .is_some_and(|(addr, _)| *addr == l.addr)
        });
    if !same_set {
        tracing::error!(
            trigger = why,
            "reload rejected: listeners were added, removed or moved; that needs a restart (keeping the running configuration)"
        );
        return None;
    }
    for (name, l) in listeners {
        if let Some((_, c)) = new.get(name.as_str()) {
            l.live.store(Arc::clone(c));
        }
    }
    for note in &cfg.notes {
        tracing::warn!("{note}");
    }
    tracing::info!(trigger = why, listeners = listeners.len(), "reloaded");
    Some(cfg.files)
}

/// What identifies a file's content cheaply: modification time, length and inode (Kubernetes
/// swaps a symlink to a new directory; editors replace by rename).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64, u64)>> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Some((m.modified().ok()?, m.len(), ino))
        })
        .collect()
}

/// SIGTERM or SIGINT: stop.
struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                signals: signal(SignalKind::terminate())
                    .ok()
                    .zip(signal(SignalKind::interrupt()).ok()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP: reload.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                signal: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(h) = &mut self.signal {
            h.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
