//! The service manager's readiness protocol (systemd `Type=notify`): one datagram per state
//! change to the Unix socket named by `NOTIFY_SOCKET`, if the manager set it.
//!
//! `READY=1` once every listener is bound and every identity loaded; `RELOADING=1` when a
//! reload starts and `READY=1` again when it ended (applied or refused: the service is serving
//! either way, and `STATUS=` says which); `STOPPING=1` when shutdown begins. A failure to send
//! is logged once and never stops the server.

use std::os::unix::net::UnixDatagram;

pub(super) struct Notifier {
    socket: UnixDatagram,
    to: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); `None`
    /// when the variable is not set.
    pub(super) fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&name),
        };
        let made = to.and_then(|to| Ok((UnixDatagram::unbound()?, to)));
        match made {
            Ok((socket, to)) => Some(Self { socket, to }),
            Err(e) => {
                tracing::error!(socket = %name, error = %e, "NOTIFY_SOCKET is unusable; the service manager will not hear from certgate");
                None
            }
        }
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            tracing::warn!(error = %e, message, "cannot notify the service manager");
        }
    }

    pub(super) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    pub(super) fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading\n");
    }

    pub(super) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining open connections\n");
    }
}
