//! The Gemini request line in normal form: `gemini://host[:port]/path[?query]` and CRLF, at
//! most 1024 bytes, judged once and then used by routing, policy, the log and the upstream alike
//! (the same rule as for HTTP requests: what the upstream receives is what policy judged).
//!
//! Pure: bytes in, a [`Request`] or a [`Refusal`] (a Gemini status and a reason safe to show)
//! out.

use std::fmt;

use crate::normal::{self, NormalAuthority, NormalPath};

/// The longest request line, CRLF not counted.
pub const MAX_REQUEST: usize = 1024;

/// Gemini's default port; a URL that names it is the same as one that names none.
pub const DEFAULT_PORT: u16 = 1965;

/// A request line in normal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Host (lower-case, no trailing dot) and a port other than 1965.
    pub authority: NormalAuthority,
    /// The path, normalised as for HTTP (dot segments removed, escapes upper-case, slashes
    /// merged); `/` when the URL had none.
    pub path: NormalPath,
    /// What followed `?`, as sent (percent-encoded; Gemini's user input).
    pub query: Option<String>,
}

impl Request {
    /// The URL in normal form: what the log shows and CGI scripts get as `GEMINI_URL`.
    pub fn url(&self) -> String {
        let mut url = format!(
            "gemini://{}{}",
            self.authority.to_header(),
            self.path.forward
        );
        if let Some(q) = &self.query {
            url.push('?');
            url.push_str(q);
        }
        url
    }
}

/// Why a request line is not served: `59` (bad request) or `53` (a URL this server does not
/// serve: another scheme, host or port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The Gemini status.
    pub status: u8,
    /// Why, in a few words safe to send to the client.
    pub reason: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

fn bad(reason: &'static str) -> Refusal {
    Refusal { status: 59, reason }
}

fn refused(reason: &'static str) -> Refusal {
    Refusal { status: 53, reason }
}

/// Where the request line ends in `buf`: the index of its CR, once `buf` holds the CRLF.
/// `Err` when the line is already too long or has a bare CR or LF (no request may follow a
/// Gemini request, and a bare LF is how request smuggling between parsers starts).
pub fn line_end(buf: &[u8]) -> Result<Option<usize>, Refusal> {
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            return Err(bad("the request line ends in LF without CR"));
        }
        if b == b'\r' {
            return match buf.get(i + 1) {
                Some(b'\n') => Ok(Some(i)),
                Some(_) => Err(bad("a CR inside the request line")),
                None if i > MAX_REQUEST => Err(bad("the request line is longer than 1024 bytes")),
                None => Ok(None),
            };
        }
        if i >= MAX_REQUEST {
            return Err(bad("the request line is longer than 1024 bytes"));
        }
    }
    Ok(None)
}

/// Parses a request line (without its CRLF). `port` is the port the listener is bound to: a URL
/// may name it or 1965 (the port a client reaches through port forwarding), nothing else.
pub fn parse(line: &[u8], port: u16) -> Result<Request, Refusal> {
    if line.len() > MAX_REQUEST {
        return Err(bad("the request line is longer than 1024 bytes"));
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(bad("the request line is not UTF-8"));
    };
    if line.is_empty() {
        return Err(bad("empty request line"));
    }
    if line.starts_with('\u{feff}') {
        return Err(bad("the request line starts with a byte order mark"));
    }
    // Spaces, tabs and control characters are never part of a URL: a server that splits on them
    // would read another request than the one judged here.
    if line.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("a space or control character in the URL"));
    }
    let Some((scheme, rest)) = line.split_once("://") else {
        return Err(bad("not an absolute URL (gemini://host/path)"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(bad("not an absolute URL (gemini://host/path)"));
    }
    if !scheme.eq_ignore_ascii_case("gemini") {
        return Err(refused("this server serves gemini:// URLs only"));
    }
    if rest.contains('#') {
        return Err(bad("a fragment (#) in the request URL"));
    }
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (raw_authority, rest) = rest.split_at(auth_end);
    if raw_authority.is_empty() {
        return Err(bad("no host in the request URL"));
    }
    let authority = normal::authority(raw_authority, DEFAULT_PORT)
        .map_err(|normal::Malformed(why)| bad(why))?;
    if authority.port.is_some_and(|p| p != port) {
        return Err(refused("this server does not serve that port"));
    }
    let (raw_path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = normal::path(if raw_path.is_empty() { "/" } else { raw_path })
        .map_err(|normal::Malformed(why)| bad(why))?;
    if path.encoded_slash {
        // Upstreams and CGI scripts decode `%2F` after routing; it cannot be judged safely.
        return Err(bad("an encoded slash (%2F) in the path"));
    }
    if let Some(q) = query
        && !valid_escapes(q)
    {
        return Err(bad("invalid percent-encoding in the query"));
    }
    // Raw UTF-8 in the query is percent-encoded as in the path (RFC 3987 §3.1): HTTP
    // upstreams get an ASCII request line, scripts one spelling of the input.
    let query = query.map(|q| crate::normal::encode_non_ascii(q, false));
    Ok(Request {
        authority,
        path,
        query,
    })
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Request {
        parse(line.as_bytes(), 11965).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn status(line: &str) -> u8 {
        parse(line.as_bytes(), 11965).expect_err(line).status
    }

    #[test]
    fn normal_form() {
        let r = ok("gemini://Example.ORG./a/./b/../c//d?x=%20y");
        assert_eq!(r.authority.host, "example.org");
        assert_eq!(r.authority.port, None);
        assert_eq!(r.path.forward, "/a/c/d");
        assert_eq!(r.url(), "gemini://example.org/a/c/d?x=%20y");
        assert_eq!(ok("gemini://example.org").path.forward, "/");
        assert_eq!(
            ok("gemini://example.org?q").url(),
            "gemini://example.org/?q"
        );
        assert_eq!(ok("GEMINI://example.org:1965/").authority.port, None);
        assert_eq!(
            ok("gemini://example.org:11965/").authority.port,
            Some(11965)
        );
        assert_eq!(ok("gemini://[::1]/%7Euser").path.forward, "/~user");
        assert_eq!(
            ok("gemini://a/b\u{fc}ro?\u{e2}ge=1").url(),
            "gemini://a/b%C3%BCro?%C3%A2ge=1"
        );
    }

    #[test]
    fn malformed_lines_are_59() {
        for line in [
            "",
            "/relative/path",
            "example.org/path",
            "//example.org/",
            "gemini:/example.org/",
            "gemini://",
            "gemini:///path",
            "gemini://user@example.org/",
            "gemini://example.org/a b",
            "gemini://example.org/a\tb",
            "gemini://example.org/\u{7f}",
            "gemini://example.org/#frag",
            "gemini://example.org/a%2Fb",
            "gemini://example.org/a%2fb",
            "gemini://example.org/%00",
            "gemini://example.org/a%5Cb",
            "gemini://example.org/a\\b",
            "gemini://example.org/%zz",
            "gemini://example.org/?%zz",
            "gemini://exa mple.org/",
            "gemini://example.org:99999/",
            "gemini://example.org:+1965/",
            "\u{feff}gemini://example.org/",
            "gemini://example.org/%C0%AF",
            "1gemini://example.org/",
        ] {
            assert_eq!(status(line), 59, "{line:?}");
        }
        let long = format!("gemini://example.org/{}", "a".repeat(1004));
        assert_eq!(long.len(), 1025);
        assert_eq!(status(&long), 59);
        assert!(parse(&[b'g', 0xff], 1965).is_err());
    }

    #[test]
    fn other_schemes_and_ports_are_53() {
        for line in [
            "https://example.org/",
            "http://example.org/",
            "gopher://example.org/",
            "gemini://example.org:1966/",
        ] {
            assert_eq!(status(line), 53, "{line:?}");
        }
    }

    #[test]
    fn the_line_ends_at_crlf_only() {
        assert_eq!(line_end(b"gemini://a/\r\n"), Ok(Some(11)));
        assert_eq!(line_end(b"gemini://a/"), Ok(None));
        assert_eq!(line_end(b"gemini://a/\r"), Ok(None));
        assert!(line_end(b"gemini://a/\n").is_err());
        assert!(line_end(b"gemini://a/\rx").is_err());
        let max = [
            b"gemini://a/".as_slice(),
            &[b'a'; MAX_REQUEST - 11],
            b"\r\n",
        ]
        .concat();
        assert_eq!(line_end(&max), Ok(Some(MAX_REQUEST)));
        let over = [b"gemini://a/".as_slice(), &[b'a'; MAX_REQUEST - 10]].concat();
        assert!(line_end(&over).is_err());
        let over_cr = [b"gemini://a/".as_slice(), &[b'a'; MAX_REQUEST - 10], b"\r"].concat();
        assert!(line_end(&over_cr).is_err());
    }

    proptest::proptest! {
        /// Whatever a client sends: no panic, and a request that parses has one spelling (its
        /// normal form parses to the same request), so what routing judged is what a script
        /// or upstream reads.
        #[test]
        fn any_line_has_at_most_one_reading(
            line in proptest::string::string_regex(
                "(gemini|GEMINI|https|)(://|:/|)([a-zA-Z0-9.@:\\[\\]_-]|%[0-9a-fA-F]{2}){0,20}(/|/\\.|/\\.\\.|%2[eEfF]|%5[cC]|%00|[a-z;?#=&%\\\\ \\t\\r\\n~]|\\u{e9}){0,30}"
            ).unwrap(),
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            for input in [line.as_bytes(), &bytes[..]] {
                let _ = line_end(input);
                if let Ok(req) = parse(input, 11965) {
                    let again = parse(req.url().as_bytes(), 11965).expect("the normal form parses");
                    proptest::prop_assert_eq!(&again, &req);
                    proptest::prop_assert!(!req.url().contains(['\r', '\n', ' ', '#']));
                }
            }
        }
    }
}
