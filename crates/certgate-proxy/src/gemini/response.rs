//! Gemini response headers: written by certgate, or taken from a CGI script or an HTTP
//! upstream's `Gemini-Status` and checked first (a script must not be able to send a second
//! header line, a longer META than clients accept, or a status that does not exist).

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The longest META, in bytes.
pub const MAX_META: usize = 1024;

/// The default MIME type of a `20` response without one.
pub const DEFAULT_MIME: &str = "text/gemini; charset=utf-8";

/// Parses and checks a response header line (without its line end): two digits, a first digit
/// from 1 to 6, then nothing or a space and a META of at most 1024 bytes with no control
/// characters. A `20` without META gets `text/gemini; charset=utf-8`.
pub fn status_line(line: &str) -> Option<(u8, String)> {
    let b = line.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_digit() || !b[1].is_ascii_digit() {
        return None;
    }
    let status = (b[0] - b'0') * 10 + (b[1] - b'0');
    if !(10..70).contains(&status) {
        return None;
    }
    let meta = match &line[2..] {
        "" => "",
        rest => rest.strip_prefix(' ')?,
    };
    if meta.len() > MAX_META || meta.chars().any(char::is_control) {
        return None;
    }
    let meta = if meta.is_empty() && status / 10 == 2 {
        DEFAULT_MIME
    } else {
        meta
    };
    Some((status, meta.to_owned()))
}

/// Writes a response header.
pub(crate) async fn header<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u8,
    meta: &str,
) -> std::io::Result<()> {
    w.write_all(format!("{status:02} {meta}\r\n").as_bytes())
        .await?;
    w.flush().await
}

/// Relays a CGI script's output: its first line is checked as a response header (`42` instead
/// when it is not one), and for a `2x` the body follows, cut after `max` bytes. Returns the
/// status sent and the body bytes relayed.
pub(crate) async fn relay<R, W>(
    mut from: R,
    to: &mut W,
    header_sent: &std::sync::atomic::AtomicBool,
    max: u64,
    listener: &str,
    script: &str,
) -> (u8, u64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 16 * 1024];
    // The header line: at most "NN " + META + CRLF.
    let line_end = loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            break Some(i);
        }
        if buf.len() > MAX_META + 5 {
            break None;
        }
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let parsed = line_end.and_then(|i| {
        let line = buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]);
        std::str::from_utf8(line).ok().and_then(status_line)
    });
    header_sent.store(true, std::sync::atomic::Ordering::Relaxed);
    let Some((status, meta)) = parsed else {
        tracing::warn!(
            gemini = listener,
            script,
            "the CGI script's first line is not a Gemini response header; answering 42"
        );
        let _ = header(to, 42, "the CGI script failed").await;
        return (42, 0);
    };
    if status / 10 != 2 {
        let _ = header(to, status, &meta).await;
        return (status, 0);
    }
    // The header goes out with what the script printed after it so far: one write.
    let mut out = format!("{status:02} {meta}\r\n").into_bytes();
    let mut sent = 0u64;
    let mut pending = buf.split_off(line_end.map_or(buf.len(), |i| i + 1));
    loop {
        let room = usize::try_from(max - sent).unwrap_or(usize::MAX);
        let take = pending.len().min(room);
        out.extend_from_slice(&pending[..take]);
        if !out.is_empty() {
            if to.write_all(&out).await.is_err() {
                return (status, sent);
            }
            out.clear();
        }
        sent += take as u64;
        if take < pending.len() {
            tracing::warn!(
                gemini = listener,
                script,
                max_bytes = max,
                "the CGI script's output is over the limit; cut"
            );
            return (status, sent);
        }
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pending = chunk[..n].to_vec(),
        }
    }
    let _ = to.flush().await;
    (status, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line("20 text/plain"),
            Some((20, "text/plain".into()))
        );
        assert_eq!(status_line("20"), Some((20, DEFAULT_MIME.into())));
        assert_eq!(status_line("20 "), Some((20, DEFAULT_MIME.into())));
        assert_eq!(status_line("51 Not found"), Some((51, "Not found".into())));
        assert_eq!(
            status_line("10 Your name?"),
            Some((10, "Your name?".into()))
        );
        for bad in [
            "",
            "2",
            "200 ok",
            "20text/plain",
            "70 x",
            "09 x",
            "ab",
            "20 a\rb",
            "20 a\u{0}",
        ] {
            assert_eq!(status_line(bad), None, "{bad:?}");
        }
        assert!(status_line(&format!("20 {}", "a".repeat(MAX_META))).is_some());
        assert!(status_line(&format!("20 {}", "a".repeat(MAX_META + 1))).is_none());
    }

    async fn run(script_output: &[u8], max: u64) -> (u8, u64, Vec<u8>) {
        let mut out = Vec::new();
        let sent = std::sync::atomic::AtomicBool::new(false);
        let (s, n) = relay(script_output, &mut out, &sent, max, "t", "s").await;
        assert!(sent.into_inner());
        (s, n, out)
    }

    #[tokio::test]
    async fn relaying_script_output() {
        assert_eq!(
            run(b"20 text/gemini\r\n# hi\n", 100).await,
            (20, 5, b"20 text/gemini\r\n# hi\n".to_vec())
        );
        // LF alone ends the header line too (scripts often print it); the client gets CRLF.
        assert_eq!(
            run(b"20 text/plain\nbody", 100).await.2,
            b"20 text/plain\r\nbody"
        );
        // Not a header: 42, and nothing of the output reaches the client.
        assert_eq!(
            run(b"Content-Type: text/html\r\n\r\n<p>", 100).await.2,
            b"42 the CGI script failed\r\n"
        );
        assert_eq!(run(b"", 100).await.0, 42);
        assert_eq!(run(b"20 text/plain", 100).await.0, 42);
        // A body after a non-2x header is not sent.
        assert_eq!(
            run(b"30 /elsewhere\r\nsecret", 100).await.2,
            b"30 /elsewhere\r\n"
        );
        // Over the limit: cut.
        assert_eq!(
            run(b"20 text/plain\r\n0123456789", 4).await,
            (20, 4, b"20 text/plain\r\n0123".to_vec())
        );
        let long = [b"20 ".as_slice(), &[b'a'; 2000], b"\r\n"].concat();
        assert_eq!(run(&long, 100).await.0, 42);
    }
}
