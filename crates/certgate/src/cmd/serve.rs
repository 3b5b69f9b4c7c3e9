//! `certgate serve --config FILE`: run every listener the config declares.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::config;
use crate::exit::{self, fail};

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let cfg = config::load(&args.config)?;
    for note in &cfg.notes {
        tracing::warn!("{note}");
    }
    if cfg.ingresses.is_empty() {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{}: nothing to serve: the config declares no [[ingress]]",
                args.config.display()
            ),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("certgate")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(cfg, |_| {}))
}

/// Binds every listener, calls `on_bound` with (name, address) pairs, then serves until SIGTERM
/// or SIGINT.
pub async fn serve(
    cfg: config::Config,
    on_bound: impl FnOnce(&[(String, std::net::SocketAddr)]),
) -> Result<ExitCode> {
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
        bound.push((listener, std::sync::Arc::clone(&ingress.config)));
    }
    let addrs: Vec<(String, std::net::SocketAddr)> = bound
        .iter()
        .filter_map(|(l, c)| l.local_addr().ok().map(|a| (c.name.clone(), a)))
        .collect();
    on_bound(&addrs);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for (listener, ingress) in bound {
        tasks.push(tokio::spawn(certgate_proxy::serve(
            ingress,
            listener,
            stopped.clone(),
        )));
    }
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Give requests in flight a moment to finish; the runtime ends the rest on exit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
