//! Start-up ordering: `certgate wait-ready` (polls the admin listener's `/readyz`).

use std::time::Duration;

use anyhow::Result;
use std::process::ExitCode;

use crate::config;
use crate::exit::{self, fail};

/// `certgate wait-ready`: polls the admin listener's `/readyz` until it answers 200.
pub fn wait_ready(args: &crate::cli::WaitReadyArgs) -> Result<ExitCode> {
    use std::io::{Read as _, Write as _};
    let cfg = config::load(&args.config)?;
    let Some(addr) = cfg.admin else {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{}: no [admin] listen to poll; add one, or use `serve --ready-file`",
                args.config.display()
            ),
        ));
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let answer = (|| -> std::io::Result<String> {
            let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
            tcp.write_all(b"GET /readyz HTTP/1.0\r\nHost: certgate\r\n\r\n")?;
            let mut out = String::new();
            tcp.read_to_string(&mut out)?;
            Ok(out)
        })();
        let last = match answer {
            Ok(text) if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") => {
                println!("ready: http://{addr}/readyz");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(text) => text.lines().next().unwrap_or_default().to_owned(),
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
