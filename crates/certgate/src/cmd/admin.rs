//! Commands that talk to a running `certgate serve` through its admin listener (the
//! `[admin] listen` of the same config): `wait-ready` polls `/readyz`; `status` prints `/status`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::config;
use crate::exit::{self, fail};

/// The admin address of the config at `path`.
fn admin_addr(path: &Path, purpose: &str) -> Result<SocketAddr> {
    let cfg = config::load(path)?;
    cfg.admin.ok_or_else(|| {
        fail(
            exit::CONFIG,
            format!(
                "{}: no [admin] listen to {purpose}; add one (e.g. listen = \"127.0.0.1:9901\")",
                path.display()
            ),
        )
    })
}

/// `GET path` on the admin listener: the status code and the body.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    tcp.set_read_timeout(Some(timeout))?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: certgate\r\n\r\n")?;
    let mut out = Vec::new();
    tcp.take(16 << 20).read_to_end(&mut out)?;
    let out = String::from_utf8_lossy(&out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:.80}")))?;
    Ok((code, body.to_owned()))
}

/// `certgate wait-ready`: polls the admin listener's `/readyz` until it answers 200.
pub fn wait_ready(args: &crate::cli::WaitReadyArgs) -> Result<ExitCode> {
    let addr = admin_addr(&args.config, "poll (or use `serve --ready-file`)")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let last = match get(addr, "/readyz", Duration::from_secs(2)) {
            Ok((200, _)) => {
                println!("ready: http://{addr}/readyz");
                return Ok(ExitCode::SUCCESS);
            }
            Ok((code, body)) => format!("{code} {}", body.trim()),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            return Err(fail(
                exit::TEMPFAIL,
                format!(
                    "http://{addr}/readyz not ready after {} s (last: {last})",
                    args.timeout
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `certgate status`: what the running server says about itself, as the admin page shows it.
pub fn status(args: &crate::cli::StatusArgs) -> Result<ExitCode> {
    let addr = admin_addr(&args.config, "ask")?;
    let url = format!("http://{addr}/status");
    let (code, body) = get(addr, "/status", Duration::from_secs(10)).map_err(|e| {
        fail(
            exit::TEMPFAIL,
            format!(
                "{url}: {e} (is `certgate serve --config {}` running?)",
                args.config.display()
            ),
        )
    })?;
    if code != 200 {
        return Err(fail(exit::TEMPFAIL, format!("{url}: answered {code}")));
    }
    let doc: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| fail(exit::DATAERR, format!("{url}: not a status document: {e}")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", crate::status_view::text(&doc));
    }
    Ok(ExitCode::SUCCESS)
}
