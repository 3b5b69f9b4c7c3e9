//! CGI for Gemini (RFC 3875 with the Gemini variables of Jetforce and molly-brown): the script
//! gets the request and the client certificate as environment variables, and prints a Gemini
//! response header line (`20 text/gemini`) and then the body.
//!
//! Scripts run with a clean environment (nothing of certgate's own leaks into them), no standard
//! input, the script's directory as working directory, a time limit and an output limit; a
//! script that overruns either is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use certgate_pki::ClientCert;

use super::request::Request;

/// Where a CGI route's script is, for a request path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Script {
    /// The executable.
    pub(crate) path: PathBuf,
    /// `SCRIPT_NAME`: the URL path that named the script.
    pub(crate) script_name: String,
    /// `PATH_INFO`: the rest of the URL path.
    pub(crate) path_info: String,
}

/// Finds the script for `path` (normal form) on a route with prefix `prefix` whose target is
/// `target`: a file is the script for every path under the route; in a directory, the first
/// path segment after the prefix names a script directly in it (a subdirectory is not entered:
/// it may be another route's target, with its own policy). `None` when no executable file
/// matches, for hidden files, or when the match would leave the directory (a symbolic link
/// pointing out of it).
pub(crate) fn locate(target: &Path, prefix: &str, path: &str) -> Option<Script> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    let meta = std::fs::metadata(target).ok()?;
    if meta.is_file() {
        return executable(&meta).then(|| Script {
            path: target.to_owned(),
            script_name: prefix.to_owned(),
            path_info: rest.to_owned(),
        });
    }
    let root = target.canonicalize().ok()?;
    let rest = rest.strip_prefix('/')?;
    let (seg, info) = match rest.split_once('/') {
        Some((seg, info)) => (seg, format!("/{info}")),
        None => (rest, String::new()),
    };
    let name = percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()?
        .into_owned();
    // The normal form has no dot segments; their decoded spellings and `/` or NUL hidden in an
    // escape are refused here as well, so a name is always one entry of the directory.
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
        return None;
    }
    let candidate = root.join(&name).canonicalize().ok()?;
    if candidate.parent() != Some(root.as_path()) {
        return None;
    }
    let meta = std::fs::metadata(&candidate).ok()?;
    if !executable(&meta) {
        return None;
    }
    Some(Script {
        path: candidate,
        script_name: format!("{prefix}/{seg}"),
        path_info: info,
    })
}

#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file()
}

/// What the connection knows besides the request: for the TLS and server variables.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) local_port: u16,
    pub(crate) tls_version: &'a str,
    pub(crate) tls_cipher: &'a str,
    pub(crate) client: &'a ClientCert,
    pub(crate) variables: super::CgiVariables,
}

/// The environment of a CGI script: RFC 3875's variables, Jetforce's (`GEMINI_URL`,
/// `TLS_CLIENT_HASH` as `SHA256:` and upper-case hex, `TLS_CLIENT_HASH_B64`, dates as
/// `%Y-%m-%dT%H:%M:%SZ`, the serial in decimal, `TLS_CLIENT_AUTHORISED`) and molly-brown's
/// (`TLS_CLIENT_ISSUER`, `TLS_CLIENT_SUBJECT` and their `_CN`s); where the two disagree,
/// `facts.variables` decides.
pub(crate) fn environment(
    req: &Request,
    script: &Script,
    facts: &Facts<'_>,
) -> Vec<(&'static str, String)> {
    let host = req.authority.host_name().to_owned();
    let mut env = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        ("SERVER_PROTOCOL", "GEMINI".to_owned()),
        (
            "SERVER_SOFTWARE",
            format!("certgate/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("REQUEST_METHOD", String::new()),
        ("GEMINI_URL", req.url()),
        ("GEMINI_URL_PATH", req.path.forward.clone()),
        ("SCRIPT_NAME", script.script_name.clone()),
        ("PATH_INFO", script.path_info.clone()),
        ("QUERY_STRING", req.query.clone().unwrap_or_default()),
        ("SERVER_NAME", host.clone()),
        ("HOSTNAME", host),
        ("SERVER_PORT", facts.local_port.to_string()),
        ("REMOTE_ADDR", facts.peer.ip().to_string()),
        ("REMOTE_HOST", facts.peer.ip().to_string()),
        ("TLS_VERSION", facts.tls_version.to_owned()),
        ("TLS_CIPHER", facts.tls_cipher.to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ];
    let molly = facts.variables == super::CgiVariables::MollyBrown;
    if molly {
        let info = script
            .path_info
            .strip_prefix('/')
            .unwrap_or(&script.path_info);
        for (k, v) in &mut env {
            if *k == "PATH_INFO" {
                *v = info.to_owned();
            }
        }
        env.push(("SCRIPT_PATH", script.path.display().to_string()));
    }
    if let Some(peer) = facts.client.presented() {
        let id = &peer.identity;
        let digest = &id.cert_sha256.0;
        let date = |t: time::OffsetDateTime| {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        };
        // Names come from the certificate, which the client may have made: control characters
        // (a CR LF a script would print into its page, a NUL no environment can hold) are
        // written as `\xHH`.
        let cn = printable(id.common_name.as_deref().unwrap_or_default(), true);
        env.extend([
            (
                "AUTH_TYPE",
                if molly { "Certificate" } else { "CERTIFICATE" }.to_owned(),
            ),
            ("REMOTE_USER", cn.clone()),
            (
                "TLS_CLIENT_HASH",
                if molly {
                    hex::encode(digest)
                } else {
                    format!("SHA256:{}", hex::encode_upper(digest))
                },
            ),
            (
                "TLS_CLIENT_HASH_B64",
                base64::engine::general_purpose::URL_SAFE.encode(digest),
            ),
            ("TLS_CLIENT_NOT_BEFORE", date(id.not_before)),
            ("TLS_CLIENT_NOT_AFTER", date(id.not_after)),
            ("TLS_CLIENT_SERIAL_NUMBER", decimal(&id.serial)),
            (
                "TLS_CLIENT_AUTHORISED",
                if peer.verified().is_some() { "1" } else { "0" }.to_owned(),
            ),
            ("TLS_CLIENT_SUBJECT", printable(&id.subject, false)),
            ("TLS_CLIENT_SUBJECT_CN", cn),
            ("TLS_CLIENT_ISSUER", printable(&id.issuer, false)),
            (
                "TLS_CLIENT_ISSUER_CN",
                printable(&issuer_cn(&id.issuer).unwrap_or_default(), true),
            ),
        ]);
    }
    env
}

/// `text` with control characters written as `\xHH`, and with `\` written as `\\` when
/// `backslash` (a plain value; RFC 4514 names already escape theirs).
fn printable(text: &str, backslash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if backslash && c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() {
            for b in c.to_string().bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of the first `CN` of an RFC 4514 name, unescaped (`\,` and `\HH` hex pairs).
fn issuer_cn(dn: &str) -> Option<String> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::new();
    let b = dn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (hex, b.get(i + 1)) {
                    (Some(v), _) => {
                        cur.push(v);
                        i += 3;
                    }
                    (None, Some(&c)) => {
                        cur.push(c);
                        i += 2;
                    }
                    (None, None) => i += 1,
                }
            }
            b',' => {
                parts.push(std::mem::take(&mut cur));
                i += 1;
            }
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    parts.push(cur);
    parts.iter().find_map(|p| {
        let text = String::from_utf8_lossy(p);
        text.trim_matches(' ')
            .strip_prefix("CN=")
            .map(str::to_owned)
    })
}

/// A serial number in lower-case hex (any length) as a decimal string.
fn decimal(hex_serial: &str) -> String {
    let mut digits: Vec<u8> = Vec::new(); // little-endian decimal digits
    for c in hex_serial.chars() {
        let Some(v) = c.to_digit(16) else {
            continue;
        };
        let mut carry = v;
        for d in &mut digits {
            let x = u32::from(*d) * 16 + carry;
            *d = (x % 10) as u8;
            carry = x / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    if digits.is_empty() {
        return "0".to_owned();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// A running script, in a process group of its own: dropping it (the response ended, timed out
/// or was cut) kills the script and everything it started that is still in its group.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) child: tokio::process::Child,
    group: Option<rustix::process::Pid>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            // The group may be gone already (ESRCH): nothing left to stop.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// Starts `script` with `env`, stdout piped, stdin closed, stderr piped (for the log).
pub(crate) fn spawn(script: &Script, env: &[(&'static str, String)]) -> std::io::Result<Running> {
    let mut cmd = tokio::process::Command::new(&script.path);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = script.path.parent() {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn()?;
    // `process_group(0)`: the group's id is the script's process id.
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    Ok(Running { child, group })
}

/// Logs what a script writes to standard error (its first 16 lines, each cut at 1 KiB), so a
/// failing script says why without flooding the log.
pub(crate) async fn log_stderr(
    listener: String,
    script: String,
    stderr: tokio::process::ChildStderr,
) {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut logged = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        if logged < 16 {
            let cut: String = line.chars().take(1024).collect();
            tracing::warn!(target: "certgate::cgi", gemini = %listener, script = %script, stderr = %cut, "CGI script error output");
            logged += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_in_decimal() {
        assert_eq!(decimal("00"), "0");
        assert_eq!(decimal("0a"), "10");
        assert_eq!(decimal("ff"), "255");
        assert_eq!(decimal("0100"), "256");
        assert_eq!(
            decimal("7fffffffffffffffffffffffffffffffffffffff"),
            "730750818665451459101842416358141509827966271487"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("a\r\nb\0c\u{85}d é", false),
            "a\\x0d\\x0ab\\x00c\\xc2\\x85d é"
        );
        // A literal `\x0a` cannot pass for a real line feed.
        assert_eq!(printable("a\\x0a\n", true), "a\\\\x0a\\x0a");
    }

    #[test]
    fn issuer_common_name() {
        assert_eq!(
            issuer_cn("CN=Root CA,O=Example").as_deref(),
            Some("Root CA")
        );
        assert_eq!(
            issuer_cn("O=Example\\, Inc.,CN=a\\,b").as_deref(),
            Some("a,b")
        );
        assert_eq!(issuer_cn("O=Example"), None);
        assert_eq!(
            issuer_cn("CN=a\\7fb\\0d\\0a").as_deref(),
            Some("a\u{7f}b\r\n")
        );
        assert_eq!(issuer_cn("CN=b\\c3\\bcro").as_deref(), Some("büro"));
    }

    #[test]
    fn scripts_in_a_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = certgate_testkit::tempdir();
        let bin = dir.path().join("cgi");
        std::fs::create_dir_all(bin.join("sub")).unwrap();
        for (p, mode) in [
            ("hello", 0o755),
            ("sub/deep", 0o755),
            ("data.txt", 0o644),
            (".hidden", 0o755),
        ] {
            std::fs::write(bin.join(p), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(bin.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("/bin/sh", bin.join("escape")).unwrap();
        let s = locate(&bin, "/app", "/app/hello/x/y/").unwrap();
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/app/hello", "/x/y/")
        );
        let s = locate(&bin, "/app/", "/app/hello").unwrap();
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/app/hello", "")
        );
        assert_eq!(
            locate(&bin, "/app", "/app/h%65llo").unwrap().path,
            bin.join("hello").canonicalize().unwrap()
        );
        for refused in [
            "/app/data.txt",
            "/app/missing",
            "/app/sub",
            "/app/sub/deep",
            "/app/",
            "/app",
            "/app/.hidden",
            "/app/escape",
            "/app/%2E%2E/cgi/hello",
            "/app/a%2Fb",
            "/app/%00",
            "/application/hello",
        ] {
            assert_eq!(locate(&bin, "/app", refused), None, "{refused}");
        }
        let one = locate(&bin.join("hello"), "/", "/anything/else").unwrap();
        assert_eq!(
            (one.script_name.as_str(), one.path_info.as_str()),
            ("", "/anything/else")
        );
    }
}
