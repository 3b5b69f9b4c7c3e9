//! `certgate serve --config FILE`: run every listener the config declares, and reload it on
//! SIGHUP or when any file it read changes.
//!
//! A reload resolves the whole config again, off the async threads. If anything is wrong, every
//! error is logged and the running state stays (a reload never leaves a half-applied config). If it is good, each
//! listener's configuration is swapped at once: new connections get the new identities, trust,
//! CRLs and routes; connections already open are told, and close if their client is no longer
//! admitted (a revoked certificate), else judge their next requests by it. Listeners added by
//! the new config are bound before anything changes (if one cannot be bound, the reload is
//! refused as a whole); removed ones stop accepting and drain their open connections. Adding or
//! removing `[log]`, or changing its origin, data directory or key, needs a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use arc_swap::ArcSwap;
use certgate_proxy::LiveConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod ca;
mod crls;
mod log;
mod notify;
mod signals;
mod status;
mod witness;

use log::RunningLog;
use signals::{Hangup, Stop, fingerprint};
use status::{Expiry, status};

use crate::cli::ServeArgs;
use crate::config;
use crate::exit::{self, fail};

/// How often referenced files are checked for changes.
const POLL: Duration = Duration::from_secs(2);
/// How often expiry metrics (and the stale-grace counters) are refreshed.
const EXPIRY_METRICS_EVERY: Duration = Duration::from_secs(10);
/// How often expiry warnings are repeated between reloads.
const EXPIRY_WARN_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The shortest time between two reloads made because a trust that verifies servers got a new
/// CRL (the CRL is in force for clients at once; this bounds the cost of a fast-changing list).
const SERVER_TRUST_RELOAD_EVERY: Duration = Duration::from_secs(10);

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let cfg = config::load(&args.config)?;
    crate::trust_gate::start_syncing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("certgate")
        .build()
        .context("cannot start the async runtime")?;
    let ready_file = args.ready_file.clone();
    let result = runtime.block_on(serve(cfg, |addrs| {
        if let Some(path) = &ready_file {
            let lines: String = addrs.iter().map(|(n, a)| format!("{n} {a}\n")).collect();
            // Written under a temporary name and renamed, so a reader never sees half a file.
            if let Err(e) = crate::files::write_public(path, lines.as_bytes()) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the ready file");
            }
        }
    }));
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// A running listener's address and its swappable configuration.
struct Listener {
    kind: &'static str,
    /// The configured address (port 0 stays 0, so an unchanged config matches).
    addr: SocketAddr,
    /// The bound address.
    local: SocketAddr,
    live: Live,
    /// Tells this listener alone to stop accepting and drain.
    stop: watch::Sender<bool>,
    /// Tells its open connections that a reload swapped its configuration.
    changed: watch::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Binds one listener and prints its `listening KIND=NAME addr=...` line.
async fn bind(kind: &str, name: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        fail(
            exit::CANTCREAT,
            format!("{kind} `{name}`: cannot listen on {addr}: {e}"),
        )
    })?;
    let local = listener.local_addr().context("local address")?;
    // One stable line per listener on stdout, for people and for scripts using port 0.
    println!("listening {kind}={name} addr={local}");
    tracing::info!(listener = %name, kind, addr = %local, "listening");
    Ok((listener, local))
}

/// Starts serving a bound listener until its own stop channel turns true.
fn spawn(
    listener: TcpListener,
    kind: &'static str,
    addr: SocketAddr,
    local: SocketAddr,
    live: Live,
) -> Listener {
    let (stop, stopped) = watch::channel(false);
    let (changed, changes) = watch::channel(());
    let task = match &live {
        Live::Ingress(l) => tokio::spawn(certgate_proxy::serve(
            Arc::clone(l),
            listener,
            stopped,
            changes,
        )),
        Live::Tunnel(t) => tokio::spawn(certgate_proxy::tunnel::serve(
            Arc::clone(t),
            listener,
            stopped,
            changes,
        )),
        Live::Gemini(g) => tokio::spawn(certgate_proxy::gemini::serve(
            Arc::clone(g),
            listener,
            stopped,
            changes,
        )),
        Live::Egress(e) => tokio::spawn(certgate_proxy::egress::serve(
            Arc::clone(e),
            listener,
            stopped,
        )),
        Live::EgressTunnel(t) => tokio::spawn(certgate_proxy::egress::serve_tunnel(
            Arc::clone(t),
            listener,
            stopped,
        )),
    };
    Listener {
        kind,
        addr,
        local,
        live,
        stop,
        changed,
        task,
    }
}

/// (name, bound address) of every running listener.
fn bound_addrs(listeners: &BTreeMap<String, Listener>) -> Vec<(String, SocketAddr)> {
    listeners
        .iter()
        .map(|(n, l)| (n.clone(), l.local))
        .collect()
}

enum Live {
    Ingress(LiveConfig),
    Tunnel(certgate_proxy::LiveTunnel),
    Gemini(certgate_proxy::LiveGemini),
    Egress(certgate_proxy::egress::LiveEgress),
    EgressTunnel(certgate_proxy::egress::LiveEgressTunnel),
}

/// Every listener a config declares: (kind, name, address, live configuration).
fn listener_specs(
    cfg: &config::Config,
    log: Option<&RunningLog>,
    witness: Option<&witness::RunningWitness>,
) -> Vec<(&'static str, String, SocketAddr, Live)> {
    let mut out = Vec::new();
    if let (Some(section), Some(running)) = (&cfg.log, log) {
        let live = Live::Ingress(Arc::new(ArcSwap::from(running.ingress(section))));
        out.push(("log", "log".to_owned(), section.listen, live));
    }
    if let (Some(section), Some(running)) = (&cfg.witness, witness) {
        let live = Live::Ingress(Arc::new(ArcSwap::from(running.ingress(section))));
        out.push(("witness", "witness".to_owned(), section.listen, live));
    }
    for i in &cfg.ingresses {
        let live = Live::Ingress(Arc::new(ArcSwap::from(Arc::clone(&i.config))));
        out.push(("ingress", i.config.name.clone(), i.listen, live));
    }
    for t in &cfg.tunnels {
        let live = Live::Tunnel(Arc::new(ArcSwap::from(Arc::clone(&t.config))));
        out.push(("tunnel", t.config.name.clone(), t.listen, live));
    }
    for g in &cfg.geminis {
        let live = Live::Gemini(Arc::new(ArcSwap::from(Arc::clone(&g.config))));
        out.push(("gemini", g.config.name.clone(), g.listen, live));
    }
    if let Some(e) = &cfg.egress {
        if let Some(addr) = e.listen {
            let live = Live::Egress(Arc::new(ArcSwap::from(Arc::clone(&e.config))));
            out.push(("egress", e.config.name.clone(), addr, live));
        }
        for t in &e.tunnels {
            let live = Live::EgressTunnel(Arc::new(ArcSwap::from(Arc::clone(&t.config))));
            out.push(("egress-tunnel", t.config.name.clone(), t.listen, live));
        }
    }
    out
}

impl Live {
    /// The connection limit its accept loop was started with (it is fixed per loop).
    fn max_connections(&self) -> usize {
        match self {
            Self::Ingress(l) => l.load().limits.max_connections,
            Self::Tunnel(l) => l.load().max_connections,
            Self::Gemini(l) => l.load().max_connections,
            Self::Egress(l) => l.load().max_connections,
            Self::EgressTunnel(l) => l.load().max_connections,
        }
    }

    /// Swaps in `new`'s configuration of the same listener.
    fn store(&self, new: Live) {
        match (self, new) {
            (Self::Ingress(l), Self::Ingress(n)) => l.store(n.load_full()),
            (Self::Tunnel(l), Self::Tunnel(n)) => l.store(n.load_full()),
            (Self::Gemini(l), Self::Gemini(n)) => l.store(n.load_full()),
            (Self::Egress(l), Self::Egress(n)) => l.store(n.load_full()),
            (Self::EgressTunnel(l), Self::EgressTunnel(n)) => l.store(n.load_full()),
            _ => {}
        }
    }
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
    // Signal handlers go in before anyone can hear that we are ready: a SIGHUP sent the moment
    // readiness is announced (by a service manager or a script) must reload, not kill us with
    // the default action.
    let (mut stop_signal, mut hangup) = (Stop::new(), Hangup::new());
    crls::check_state_dir(&cfg)?;
    let log = cfg.log.as_ref().map(RunningLog::start).transpose()?;
    let witness = cfg
        .witness
        .as_ref()
        .map(witness::RunningWitness::start)
        .transpose()?;
    let specs = listener_specs(&cfg, log.as_ref(), witness.as_ref());
    if specs.is_empty() {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{}: nothing to serve: the config declares no [[ingress]], [[tunnel]], [[gemini]], [egress] listen, [[egress.tunnel]], [log] or [witness]",
                cfg.path.display()
            ),
        ));
    }
    // The metrics recorder goes in before anything can emit.
    let admin = match cfg.admin {
        Some(addr) => {
            let admin = certgate_proxy::admin::Admin::install().map_err(|e| {
                fail(
                    exit::SOFTWARE,
                    format!("cannot install the metrics recorder: {e}"),
                )
            })?;
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                fail(
                    exit::CANTCREAT,
                    format!("admin: cannot listen on {addr}: {e}"),
                )
            })?;
            let local = listener.local_addr().context("local address")?;
            println!("listening admin=admin addr={local}");
            tracing::info!(%local, "admin listening");
            Some((admin, listener))
        }
        None => None,
    };
    // Bind everything first: a config whose listeners cannot all start does not start at all.
    let mut bound = Vec::new();
    for (kind, name, addr, live) in specs {
        let (listener, local) = bind(kind, &name, addr).await?;
        bound.push((listener, kind, name, local, addr, live));
    }
    let ca_listener = match &cfg.ca {
        Some(section) => ca::bind(section).await?,
        None => None,
    };
    let addrs: Vec<(String, SocketAddr)> = bound
        .iter()
        .map(|(_, _, n, local, _, _)| (n.clone(), *local))
        .collect();
    on_bound(&addrs);
    // Witnesses are asked from now on (a witness in this same process is listening already).
    // Which witnesses, and the quorum, are fixed at start.
    if let (Some(section), Some(running)) = (&cfg.log, &log)
        && !section.witnesses.is_empty()
    {
        tokio::spawn(witness::submit_forever(
            Arc::clone(&running.store),
            Arc::clone(&running.service),
            section.witnesses.clone(),
            section.witness_quorum,
            section.data_dir.clone(),
        ));
    }
    let (admin_stop, admin_stopped) = watch::channel(false);
    let mut status_doc = status(&cfg, &addrs);
    let crl_sources: status::CrlSources = Arc::new(std::sync::Mutex::new((
        cfg.state_dir.clone(),
        cfg.crl_sources.clone(),
    )));
    let admin = admin.map(|(admin, listener)| {
        tokio::spawn(certgate_proxy::admin::serve(
            Arc::clone(&admin),
            listener,
            admin_stopped,
        ));
        admin.set_page(crate::status_view::html);
        admin.set_live(status::live(
            log.as_ref()
                .map(|l| status::log_section(Arc::clone(&l.store))),
            Arc::clone(&crl_sources),
        ));
        admin.set_status(status_doc.clone());
        // Every identity loaded and every listener bound: ready.
        admin.set_ready(true);
        admin
    });
    let mut listeners = BTreeMap::new();
    for (listener, kind, name, local, addr, live) in bound {
        listeners.insert(name, spawn(listener, kind, addr, local, live));
    }
    // CRLs from URLs: fetched in the background and put in force at once; the fetcher tells the
    // loop below, which re-checks open connections or reloads.
    let (crl_events, mut crl_event) = tokio::sync::mpsc::unbounded_channel();
    let mut fetcher = crls::Fetcher::new(crl_events);
    fetcher.update(&cfg);
    let mut server_trusts = cfg.server_trusts.clone();
    let mut trusts = cfg.trusts.clone();
    let mut crl_files = cfg.crl_files.clone();
    // When a trust that verifies servers got a new CRL: a reload is due (at most one per
    // SERVER_TRUST_RELOAD_EVERY).
    let mut server_reload_due: Option<tokio::time::Instant> = None;
    let mut last_server_reload = tokio::time::Instant::now() - SERVER_TRUST_RELOAD_EVERY;
    let mut expiry = Expiry::of(&cfg);
    expiry.publish(true);
    let mut keeper = cfg.ca.clone().map(|s| ca::Keeper::start(s, ca_listener));
    let notifier = notify::Notifier::from_env();
    let serving = |n: usize| format!("serving {n} listener(s)");
    if let Some(n) = &notifier {
        n.ready(&serving(listeners.len()));
    }
    let mut draining = Vec::new();
    let path = cfg.path.clone();
    let mut seen = fingerprint(&cfg.files);
    let mut files = cfg.files;
    drop((cfg.ingresses, cfg.tunnels, cfg.geminis, cfg.egress));
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics_tick = tokio::time::interval(EXPIRY_METRICS_EVERY);
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warned = tokio::time::Instant::now();
    loop {
        let why = tokio::select! {
            _ = stop_signal.recv() => break,
            _ = hangup.recv() => "SIGHUP",
            event = crl_event.recv() => match event {
                Some(crls::CrlEvent::Reload) | None => "CRL update",
                Some(crls::CrlEvent::Installed { trust }) => {
                    // Already in force for new handshakes; open connections are judged again.
                    for l in listeners.values() {
                        l.changed.send_replace(());
                    }
                    status_doc["trusts"] = status::trusts(&trusts);
                    if let Some(admin) = &admin {
                        admin.set_status(status_doc.clone());
                    }
                    if server_trusts.contains(&trust) && server_reload_due.is_none() {
                        server_reload_due = Some(last_server_reload + SERVER_TRUST_RELOAD_EVERY);
                    }
                    continue;
                }
            },
            _ = async { tokio::time::sleep_until(server_reload_due.unwrap_or_else(tokio::time::Instant::now)).await }, if server_reload_due.is_some() => {
                server_reload_due = None;
                last_server_reload = tokio::time::Instant::now();
                "new CRL for a trust that verifies servers"
            }
            _ = metrics_tick.tick() => {
                let warn = last_warned.elapsed() >= EXPIRY_WARN_EVERY;
                if warn {
                    last_warned = tokio::time::Instant::now();
                }
                expiry.publish(warn);
                continue;
            }
            _ = tick.tick() => {
                let now = fingerprint(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        if let Some(n) = &notifier {
            n.reloading();
        }
        let reloaded = reload(
            &path,
            &mut listeners,
            &mut draining,
            (log.as_ref(), witness.as_ref()),
            why,
        )
        .await;
        if let Some(n) = &notifier {
            let outcome = if reloaded.is_some() {
                "reloaded"
            } else {
                "reload refused, see the log"
            };
            n.ready(&format!("{}; {outcome}", serving(listeners.len())));
        }
        match reloaded {
            Some(new_cfg) => {
                metrics::counter!("certgate_reloads_total", "result" => "ok").increment(1);
                fetcher.update(&new_cfg);
                status_doc = status(&new_cfg, &bound_addrs(&listeners));
                if let Some(admin) = &admin {
                    admin.set_status(status_doc.clone());
                }
                server_trusts = new_cfg.server_trusts.clone();
                trusts = new_cfg.trusts.clone();
                crl_files = new_cfg.crl_files.clone();
                if let Ok(mut s) = crl_sources.lock() {
                    *s = (new_cfg.state_dir.clone(), new_cfg.crl_sources.clone());
                }
                keeper = match keeper.take() {
                    Some(k) => k.update(new_cfg.ca.as_ref()),
                    None => new_cfg.ca.clone().map(|s| {
                        if s.publish.is_some() {
                            tracing::warn!("`ca.publish` takes effect at the next restart");
                        }
                        ca::Keeper::start(config::CaSection { publish: None, ..s }, None)
                    }),
                };
                expiry = Expiry::of(&new_cfg);
                expiry.publish(true);
                files = new_cfg.files;
                seen = fingerprint(&files);
            }
            None => {
                metrics::counter!("certgate_reloads_total", "result" => "rejected").increment(1);
                // A revocation must not wait for someone to fix the config: newer CRL files
                // go in force in the running trusts all the same.
                let (files, running) = (crl_files.clone(), trusts.clone());
                let installed =
                    tokio::task::spawn_blocking(move || install_crl_files(&files, &running))
                        .await
                        .unwrap_or_default();
                if !installed.is_empty() {
                    fetcher.remember_in_force(&trusts);
                    for l in listeners.values() {
                        l.changed.send_replace(());
                    }
                    status_doc["trusts"] = status::trusts(&trusts);
                    if let Some(admin) = &admin {
                        admin.set_status(status_doc.clone());
                    }
                    if installed.iter().any(|t| server_trusts.contains(t))
                        && server_reload_due.is_none()
                    {
                        server_reload_due = Some(last_server_reload + SERVER_TRUST_RELOAD_EVERY);
                    }
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections");
    if let Some(n) = &notifier {
        n.stopping();
    }
    let _ = admin_stop.send(true);
    for l in listeners.values() {
        let _ = l.stop.send(true);
    }
    for l in listeners.into_values() {
        let _ = l.task.await;
    }
    for t in draining {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts every CRL file that holds a newer version of a list in force in its running trust;
/// returns the trusts that changed. Used when a reload was refused, so a revocation (a CA's new
/// CRL, `[ca]` re-signing its list) never waits for a config that loads.
fn install_crl_files(
    files: &[(String, std::path::PathBuf)],
    trusts: &[Arc<certgate_pki::TrustBundle>],
) -> Vec<String> {
    let mut changed = Vec::new();
    for (trust, path) in files {
        let Some(bundle) = trusts.iter().find(|t| t.name() == trust) else {
            continue;
        };
        let Ok(bytes) = crate::files::read(path) else {
            continue;
        };
        let Ok(crl) = certgate_pki::verify::parse_crl(&bytes, &certgate_pki::Origin::file(path))
        else {
            continue;
        };
        match certgate_pki::crl::verify_signed(crl.der(), &bundle.issuer_certificates()) {
            // An intermediate the trust does not name: checked at each use, as when loaded.
            Ok(_) | Err(certgate_pki::crl::CrlRefused::UnknownIssuer(_)) => {}
            Err(e) => {
                tracing::warn!(trust = %trust, file = %path.display(), error = %e, "CRL file refused");
                continue;
            }
        }
        if bundle.install_crl(Arc::new(crl)) == certgate_pki::verify::Installed::Replaced {
            tracing::warn!(trust = %trust, file = %path.display(), "the config does not load, but this newer CRL is in force");
            changed.push(trust.clone());
        }
    }
    changed
}

/// The upstream clients of the running ingress listeners: a reload takes over those whose
/// upstream is unchanged, with their open connections.
fn running_pools(listeners: &BTreeMap<String, Listener>) -> certgate_proxy::Pools {
    let configs: Vec<Arc<certgate_proxy::IngressConfig>> = listeners
        .values()
        .filter_map(|l| match &l.live {
            Live::Ingress(live) => Some(live.load_full()),
            _ => None,
        })
        .collect();
    certgate_proxy::Pools::of(configs.iter().flat_map(|c| &c.routes))
}

/// Re-resolves the config and swaps it in. Returns the new config, or `None` when the reload
/// was refused (the running state is kept).
async fn reload(
    path: &Path,
    listeners: &mut BTreeMap<String, Listener>,
    draining: &mut Vec<tokio::task::JoinHandle<()>>,
    (log, witness): (Option<&RunningLog>, Option<&witness::RunningWitness>),
    why: &str,
) -> Option<config::Config> {
    let p = path.to_owned();
    let pools = running_pools(listeners);
    let loaded = match tokio::task::spawn_blocking(move || config::load_reusing(&p, pools)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reload task failed; keeping the running configuration");
            return None;
        }
    };
    let cfg = match loaded {
        Ok(c) => {
            crate::trust_gate::start_syncing();
            c
        }
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
    if let (Some(section), Some(running)) = (&cfg.log, log)
        && (section.origin != running.origin
            || section.data_dir != running.data_dir
            || section.storage != running.storage
            || section.signer.verifier().to_string() != running.key)
    {
        tracing::error!(
            trigger = why,
            "reload rejected: the log's origin, data_dir, storage or key changed; that needs a restart (keeping the running configuration)"
        );
        return None;
    }
    if cfg.log.is_some() != log.is_some() {
        tracing::error!(
            trigger = why,
            "reload rejected: adding or removing [log] needs a restart (keeping the running configuration)"
        );
        return None;
    }
    let witness_changed = match (&cfg.witness, witness) {
        (None, None) => false,
        (Some(section), Some(running)) => !running.same_as(section),
        _ => true,
    };
    if witness_changed {
        tracing::error!(
            trigger = why,
            "reload rejected: adding or removing [witness], or changing its key, logs or state_dir, needs a restart (keeping the running configuration)"
        );
        return None;
    }
    let new: BTreeMap<String, (&'static str, SocketAddr, Live)> =
        listener_specs(&cfg, log, witness)
            .into_iter()
            .map(|(kind, name, addr, live)| (name, (kind, addr, live)))
            .collect();
    // Listeners that stay (same name, kind and address) swap their configuration; the others
    // are added or removed. New ones are bound before anything changes, so a reload whose
    // listeners cannot all start changes nothing.
    let mut bound = Vec::new();
    for (name, (kind, addr, _)) in &new {
        let same = listeners
            .get(name)
            .is_some_and(|l| l.kind == *kind && l.addr == *addr);
        if same {
            continue;
        }
        // A listener moving to a new address may have to free the old one first.
        let frees_own_port = listeners
            .get(name)
            .is_some_and(|l| l.local.port() == addr.port() && addr.port() != 0);
        if frees_own_port {
            tracing::error!(
                trigger = why,
                listener = %name,
                "reload rejected: a listener cannot move to an address whose port it still holds; that needs a restart (keeping the running configuration)"
            );
            return None;
        }
        match bind(kind, name, *addr).await {
            Ok(b) => bound.push((name.clone(), b)),
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "reload rejected; keeping the running configuration");
                return None;
            }
        }
    }
    let mut new = new;
    let names: Vec<String> = listeners.keys().cloned().collect();
    for name in names {
        let keep = new.get(&name).is_some_and(|(kind, addr, _)| {
            listeners
                .get(&name)
                .is_some_and(|l| l.kind == *kind && l.addr == *addr)
        });
        if keep {
            if let (Some(l), Some((_, _, live))) = (listeners.get(&name), new.remove(&name)) {
                if l.live.max_connections() != live.max_connections() {
                    tracing::warn!(
                        trigger = why,
                        listener = %name,
                        "max_connections changes take effect at the next restart"
                    );
                }
                l.live.store(live);
                l.changed.send_replace(());
            }
        } else if let Some(old) = listeners.remove(&name) {
            // Stops accepting now; open connections drain in the background.
            tracing::info!(trigger = why, listener = %name, addr = %old.local, "listener removed");
            let _ = old.stop.send(true);
            draining.push(old.task);
        }
    }
    for (name, (listener, local)) in bound {
        if let Some((kind, addr, live)) = new.remove(&name) {
            listeners.insert(name, spawn(listener, kind, addr, local, live));
        }
    }
    for note in &cfg.notes {
        tracing::warn!("{note}");
    }
    tracing::info!(trigger = why, listeners = listeners.len(), "reloaded");
    Some(cfg)
}
