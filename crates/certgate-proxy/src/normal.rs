//! The request normal form: one spelling of a request's path and authority, computed once
//! before routing and used by routing, policy, the access log and the upstream alike. A policy
//! that matches one spelling while the upstream interprets another can be walked around; here
//! what the upstream receives is what policy judged.
//!
//! Pure: strings in, normalised strings or a [`Malformed`] reason out.

use std::fmt;

/// What to do with an encoded slash (`%2F`) in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// 400: many upstreams decode `%2F` to `/` after routing, so it cannot be judged safely.
    #[default]
    Reject,
    /// Forward it unchanged (as `%2F`); routing and policy treat it as `/`.
    Keep,
}

/// What a listener does with header names that have `_` or another character besides letters,
/// digits and `-`. CGI, WSGI and PHP servers map `X_Client_Cert` and `X-Client-Cert` to the
/// same variable, so such a name can pose as one the gateway sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Underscores {
    /// Remove them (as nginx does by default); the request goes on.
    #[default]
    Drop,
    /// Answer 400.
    Reject,
    /// Pass them, except those that read as an identity header once mapped.
    Allow,
}

/// Why a request cannot be put in normal form (answered with 400; the text is safe to show).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A normalised path: what is forwarded, and what routing matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalPath {
    /// Forwarded upstream: unreserved characters decoded, other escapes upper-case, dot
    /// segments removed, slashes merged.
    pub forward: String,
    /// What routes and policy match: `forward`, with a kept `%2F` read as `/` and `;parameters`
    /// of a segment left out.
    pub matched: String,
    /// The path has an encoded slash: the route decides ([`EncodedSlashes`]) whether that is a
    /// 400 (the default) or forwarded.
    pub encoded_slash: bool,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path segment may hold as data (RFC 3986 `pchar`) besides unreserved ones:
/// `%40` and `@` are the same to every app that decodes its path, so only one spelling may
/// reach routing. `/`, `?`, `#`, `%` and `;` keep their escapes: decoding them would change
/// the path's structure.
fn segment_data(b: u8) -> bool {
    matches!(
        b,
        b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// The value of one hexadecimal digit, either case.
pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `s` with every non-ASCII character (and, with `space`, every space) percent-encoded as its
/// UTF-8 bytes (RFC 3987 §3.1): how a URL or path typed with raw UTF-8 becomes the one ASCII
/// spelling that [`path`] and upstreams compare.
pub fn encode_non_ascii(s: &str, space: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && !(space && c == ' ') {
            out.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Normalises a request path (without the query): RFC 3986 §6.2.2 (unreserved characters
/// decoded, escapes upper-case), §5.2.4 dot-segment removal, and merged slashes (as nginx and
/// most frameworks do). Refused: raw or encoded backslash, `%00`, invalid percent-encoding,
/// escapes that do not decode to UTF-8 (overlong forms such as `%C0%AF` were read as `/` by
/// some servers), and dot segments that an encoded slash or `;` parameters would hide. An
/// encoded slash is kept and reported in [`NormalPath::encoded_slash`]; routes refuse it by
/// default.
pub fn path(raw: &str) -> Result<NormalPath, Malformed> {
    if !raw.starts_with('/') {
        return Err(Malformed("the request path does not start with `/`"));
    }
    let bytes = raw.as_bytes();
    // Most paths have nothing to normalise: no escapes, no dot segments, no empty segments.
    if !bytes
        .windows(2)
        .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
        && bytes
            .iter()
            .all(|&b| b > 0x20 && b < 0x7f && !matches!(b, b'%' | b'\\' | b';'))
    {
        return Ok(NormalPath {
            forward: raw.to_owned(),
            matched: raw.to_owned(),
            encoded_slash: false,
        });
    }
    // Pass 1: percent-encoding. `decoded` collects every decoded byte so the UTF-8 check sees
    // the path as an upstream that decodes everything would.
    let mut text: Vec<u8> = Vec::with_capacity(raw.len());
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut kept_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(Malformed("invalid percent-encoding in the path"));
                };
                let v = h << 4 | l;
                match v {
                    0 => return Err(Malformed("`%00` in the path")),
                    b'\\' => return Err(Malformed("encoded backslash (`%5C`) in the path")),
                    b'/' => {
                        kept_slash = true;
                        text.extend_from_slice(b"%2F");
                    }
                    v if unreserved(v) || segment_data(v) => text.push(v),
                    v => {
                        text.extend_from_slice(&[
                            b'%',
                            HEX_DIGITS[usize::from(v >> 4)],
                            HEX_DIGITS[usize::from(v & 15)],
                        ]);
                    }
                }
                decoded.push(v);
                i += 3;
            }
            b'\\' => return Err(Malformed("backslash in the path")),
            // hyper has already refused control characters and spaces; refuse them here too, so
            // the function stands on its own.
            0..=0x20 | 0x7f => return Err(Malformed("a control character or space in the path")),
            0x80.. => {
                // Raw UTF-8 (an IRI, as Gemini clients send it) is percent-encoded (RFC 3987
                // §3.1): `/büro` and `/b%C3%BCro` are one path to routing and to the upstream.
                decoded.push(b);
                text.extend_from_slice(&[
                    b'%',
                    HEX_DIGITS[usize::from(b >> 4)],
                    HEX_DIGITS[usize::from(b & 15)],
                ]);
                i += 1;
            }
            _ => {
                decoded.push(b);
                text.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(Malformed("the path is not UTF-8 once percent-decoded"));
    }
    let text = String::from_utf8(text)
        .map_err(|_| Malformed("the path is not UTF-8 once percent-decoded"))?;
    let forward = segments(&text);
    let mut matched = None;
    if kept_slash {
        // An encoded slash kept for the upstream: policy reads it as a separator. If that
        // reading has dot segments, an upstream that decodes `%2F` would resolve them: refuse.
        let as_slashes = forward.replace("%2F", "/");
        if as_slashes.split('/').any(|s| s == "." || s == "..") {
            return Err(Malformed("dot segments behind encoded slashes in the path"));
        }
        matched = Some(segments(&as_slashes));
    }
    if forward.contains(';') {
        // Java servlet containers drop `;parameters` from each segment before routing, and
        // resolve `..;` as `..`: policy matches the path without them, and a dot segment with
        // parameters is refused.
        let base = matched.as_deref().unwrap_or(&forward);
        let mut bare = String::with_capacity(base.len());
        for seg in base.split('/').skip(1) {
            let name = seg.split(';').next().unwrap_or("");
            if seg.contains(';') && (name == "." || name == "..") {
                return Err(Malformed("a dot segment with `;` parameters in the path"));
            }
            bare.push('/');
            bare.push_str(name);
        }
        matched = Some(segments(&bare));
    }
    Ok(NormalPath {
        matched: matched.unwrap_or_else(|| forward.clone()),
        forward,
        encoded_slash: kept_slash,
    })
}

/// Dot-segment removal (RFC 3986 §5.2.4) and merged slashes, on a path that starts with `/`.
/// A trailing slash, or a trailing `.`/`..` segment, leaves the result ending in `/`.
fn segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" | "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        s.push('/');
    }
    s
}

/// A normalised authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalAuthority {
    /// The host, lower-case, without a trailing dot; IPv6 literals keep their brackets.
    pub host: String,
    /// A port other than the default one.
    pub port: Option<u16>,
}

impl NormalAuthority {
    /// The host as routes and SNI compare it: IPv6 literals without brackets.
    pub fn host_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `host[:port]`, as forwarded in `Host`.
    pub fn to_header(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Normalises an authority (`host[:port]`, from `Host`, `:authority` or an absolute-form
/// target): no userinfo, a valid host (DNS name, IPv4 or bracketed IPv6), lower-cased, one
/// trailing dot removed, and `default_port` (or an empty port) dropped.
pub fn authority(raw: &str, default_port: u16) -> Result<NormalAuthority, Malformed> {
    if raw.contains('@') {
        return Err(Malformed("userinfo (`user@`) in the request authority"));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(Malformed("unclosed `[` in the request authority"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(Malformed("invalid IPv6 literal in the request authority"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(Malformed("junk after the IPv6 literal in the authority"))?,
            ),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        };
        let h = h.strip_suffix('.').unwrap_or(h);
        let valid = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(Malformed("invalid host name in the request authority"));
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Malformed("invalid port in the request authority"));
            }
            let n: u16 = p
                .parse()
                .map_err(|_| Malformed("invalid port in the request authority"))?;
            (n != default_port).then_some(n)
        }
    };
    Ok(NormalAuthority { host, port })
}

/// Normalises a TLS server name the same way as an authority's host (lower case, no trailing
/// dot), so the two compare equal when they name the same host.
pub fn server_name(sni: &str) -> String {
    sni.strip_suffix('.').unwrap_or(sni).to_ascii_lowercase()
}

/// How a header name reads once a CGI/WSGI server has mapped it to a variable: upper-case
/// letters and digits, everything else `_`. `X_Client_Cert`, `x-client-cert` and
/// `X.Client.Cert` all read `X_CLIENT_CERT`; returned here lower-case with `-`, so it can be
/// compared with the identity header names.
pub fn cgi_spelling(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b.to_ascii_lowercase())
            } else {
                '-'
            }
        })
        .collect()
}

/// Whether a (lower-case) header name has a character other than letters, digits and `-`:
/// such names collide with others once CGI/WSGI servers map them to variables.
pub fn is_unusual_header_name(name: &str) -> bool {
    !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_and_spaces_are_encoded_as_utf8_bytes() {
        assert_eq!(encode_non_ascii("/a b/é€", true), "/a%20b/%C3%A9%E2%82%AC");
        assert_eq!(encode_non_ascii("q=a b&é", false), "q=a b&%C3%A9");
        assert_eq!(encode_non_ascii("/plain%20", true), "/plain%20");
    }

    /// The forwarded path, as a route that refuses encoded slashes sees it.
    fn fwd(raw: &str) -> Result<String, Malformed> {
        match path(raw) {
            Ok(p) if p.encoded_slash => Err(Malformed("encoded slash")),
            other => other.map(|p| p.forward),
        }
    }

    #[test]
    fn paths_are_normalised_like_rfc_3986_with_merged_slashes() {
        for (raw, want) in [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/%61dmin/x", "/admin/x"),
            ("/%41%44MIN", "/ADMIN"),
            ("//admin/x", "/admin/x"),
            ("/admin///x//", "/admin/x/"),
            ("/./admin/x", "/admin/x"),
            ("/x/../admin/x", "/admin/x"),
            ("/../admin", "/admin"),
            ("/../../..", "/"),
            ("/%2e%2e/admin", "/admin"),
            ("/%2E/admin", "/admin"),
            ("/admin/.", "/admin/"),
            ("/admin/..", "/"),
            ("/admin/x/..", "/admin/"),
            ("/a%7eb%5fc", "/a~b_c"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%3Fb%20c", "/a%3Fb%20c"),
            ("/a%e2%82%ac", "/a%E2%82%AC"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/caf\u{e9}/%61", "/caf%C3%A9/a"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/p%2Bq/%40me%3a1", "/p+q/@me:1"),
            ("/a%3b/b%23", "/a%3B/b%23"),
            ("/admin;x=1/y", "/admin;x=1/y"),
            ("/...", "/..."),
        ] {
            assert_eq!(fwd(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn dangerous_spellings_are_refused() {
        for raw in [
            "/admin%2fx",
            "/admin%2Fx",
            "/admin%5cx",
            "/admin\\x",
            "/admin%00",
            "/admin%",
            "/admin%2",
            "/admin%G0",
            "/%C0%AF",
            "/%c0%ae%c0%ae/admin",
            "/%E0%80%AF",
            "/%FF",
            "/%80",
            "admin",
            "/a b",
            "/a\tb",
            "/caf\u{e9}%2f",
        ] {
            assert!(fwd(raw).is_err(), "{raw} was accepted: {:?}", fwd(raw));
        }
    }

    #[test]
    fn segment_parameters_are_ignored_by_matching() {
        let p = path("/admin;jsessionid=1/x;y").unwrap();
        assert_eq!(p.forward, "/admin;jsessionid=1/x;y");
        assert_eq!(p.matched, "/admin/x");
        assert_eq!(path("/;x/admin").unwrap().matched, "/admin");
        for raw in [
            "/public/..;/admin",
            "/public/.;x/admin",
            "/public/%2e%2e;/admin",
        ] {
            assert!(path(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn kept_encoded_slashes_are_separators_for_policy() {
        let p = path("/api/a%2fb/%61").unwrap();
        assert!(p.encoded_slash);
        assert_eq!(p.forward, "/api/a%2Fb/a");
        assert_eq!(p.matched, "/api/a/b/a");
        for raw in [
            "/public%2F..%2Fadmin",
            "/x%2F.%2Fadmin",
            "/x%2F%2e%2e/admin",
        ] {
            assert!(path(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn authorities_are_normalised() {
        let a = |raw: &str| authority(raw, 443).map(|a| (a.host_name().to_owned(), a.to_header()));
        let ok = |h: &str, hdr: &str| Ok((h.to_owned(), hdr.to_owned()));
        assert_eq!(a("Admin.Example"), ok("admin.example", "admin.example"));
        assert_eq!(a("admin.example."), ok("admin.example", "admin.example"));
        assert_eq!(a("admin.example:443"), ok("admin.example", "admin.example"));
        assert_eq!(
            a("admin.example.:0443"),
            ok("admin.example", "admin.example")
        );
        assert_eq!(a("admin.example:"), ok("admin.example", "admin.example"));
        assert_eq!(
            a("admin.example:8443"),
            ok("admin.example", "admin.example:8443")
        );
        assert_eq!(a("127.0.0.1:8443"), ok("127.0.0.1", "127.0.0.1:8443"));
        assert_eq!(a("[::1]:443"), ok("::1", "[::1]"));
        assert_eq!(a("[::1]:8443"), ok("::1", "[::1]:8443"));
        for bad in [
            "",
            "user@admin.example",
            "admin.example..",
            "admin..example",
            "adm in.example",
            "admin.example:99999",
            "admin.example:x",
            "admin.example:443:443",
            "[::1",
            "[zz]",
            "[::1]x",
            "admin%2eexample",
            ".",
        ] {
            assert!(a(bad).is_err(), "{bad:?} was accepted: {:?}", a(bad));
        }
    }

    #[test]
    fn cgi_spellings_collide_like_cgi_variables() {
        assert_eq!(cgi_spelling("x_client_verify"), "x-client-verify");
        assert_eq!(cgi_spelling("X.Client.Cert"), "x-client-cert");
        assert!(is_unusual_header_name("x_client"));
        assert!(is_unusual_header_name("x.client"));
        assert!(!is_unusual_header_name("x-client-2"));
    }
}
