//! HTTP/1.1 toward an upstream, as bytes: the request head certgate writes, and the response
//! head and body framing it reads back. Pure functions over buffers, so every rule here is
//! tested and fuzzed without a socket.
//!
//! Reading is strict where a loose reading could make certgate and the upstream disagree on
//! where one response ends and the next begins on a pooled connection: no line folding, no
//! space before a field's colon, no bare LF in chunked framing, one `Content-Length` value, and
//! limits on every length. A response that breaks a rule is an error (the client gets a 502),
//! never a guess.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::normal::hex;

/// Largest response head read, in bytes (the status line and every field).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most fields in a response head, or in a trailer section.
pub const MAX_FIELDS: usize = 128;
/// Largest trailer section of a chunked response, in bytes.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Longest chunk extension read (and ignored) on one chunk-size line, in bytes.
pub const MAX_CHUNK_EXTENSION_BYTES: usize = 4 * 1024;

/// What was wrong with what an upstream sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The status line or a field did not parse.
    #[error("the response head is malformed: {0}")]
    Head(httparse::Error),
    /// The head is over [`MAX_HEAD_BYTES`] or has more than [`MAX_FIELDS`] fields.
    #[error(
        "the response head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_FIELDS} fields"
    )]
    HeadTooLarge,
    /// The status code is outside 100-999.
    #[error("the response status {0} is not a status code")]
    Status(u16),
    /// A field value has a character no field value may have.
    #[error("the response field `{0}` has an invalid value")]
    FieldValue(String),
    /// `Content-Length` is not one decimal number (a list of equal numbers counts as one).
    #[error("the response's Content-Length is not one decimal number")]
    ContentLength,
    /// The chunked framing of the body is malformed.
    #[error("the response's chunked body is malformed: {0}")]
    Chunked(&'static str),
    /// The trailer section is over [`MAX_TRAILER_BYTES`] or has more than [`MAX_FIELDS`] fields,
    /// or did not parse.
    #[error("the response's trailers are malformed or larger than {MAX_TRAILER_BYTES} bytes")]
    Trailers,
}

/// How a request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing field (a `GET`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes a request head to `out`: the request line with `target` (origin form), every field of
/// `headers` except the framing ones, and then the framing fields for `framing`. The field names
/// and values are valid by construction (`http`'s types refuse CR, LF and NUL), so nothing can
/// end the head early.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head as read.
#[derive(Debug)]
pub struct Head {
    /// The status code (the reason phrase is not kept).
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The fields, in order.
    pub headers: HeaderMap,
}

/// Takes one complete response head off the front of `buf`: `Ok(None)` while it is still
/// arriving. The field values share the head's bytes (no copy).
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, WireError> {
    // Left uninitialised until parsed: zeroing 128 fields (4 KiB) for every head made this
    // function 2% of the CPU of an HTTP/1.1 keep-alive load.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
        Err(e) => return Err(WireError::Head(e)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(WireError::HeadTooLarge);
    }
    if has_bare_lf(&buf[..len]) {
        return Err(WireError::Head(httparse::Error::NewLine));
    }
    let code = resp.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Status(code))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each field sits in the head, so that its value can be a slice of the frozen head.
    let base = buf.as_ptr() as usize;
    // Sized at once (collecting a `Result` grows the vector step by step).
    let mut spans = Vec::with_capacity(resp.headers.len());
    for f in resp.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| WireError::Head(httparse::Error::HeaderName))?;
        let start = f.value.as_ptr() as usize - base;
        spans.push((name, start, start + f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let headers = fields_from(&head, spans)?;
    Ok(Some(Head {
        status,
        version,
        headers,
    }))
}

fn fields_from(
    bytes: &Bytes,
    spans: Vec<(HeaderName, usize, usize)>,
) -> Result<HeaderMap, WireError> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(bytes.slice(start..end))
            .map_err(|_| WireError::FieldValue(name.as_str().to_owned()))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// How a response body is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to `HEAD`, or a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// How the body of a response with `head` is framed, and whether the connection may carry
/// another request after it. `to_head`: the request was a `HEAD`.
///
/// The connection is not reused after an HTTP/1.0 response, a `Connection: close`, a body that
/// ends at the close, a `Content-Length` beside `Transfer-Encoding` (RFC 9112 §6.3 asks to close
/// after such a message), or a response without a body that still declares one: an upstream
/// that sends those bytes anyway would have them read as the answer to the connection's next
/// request, another client's.
pub fn response_framing(to_head: bool, head: &Head) -> Result<(ResponseFraming, bool), WireError> {
    let headers = &head.headers;
    let mut keep_alive = head.version == Version::HTTP_11 && !has_close(headers);
    let chunked_or_coded = headers.contains_key(header::TRANSFER_ENCODING);
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    let status = head.status;
    if to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        let declares = chunked_or_coded || length(headers)?.is_some_and(|n| n > 0);
        return Ok((ResponseFraming::None, keep_alive && !declares));
    }
    if chunked_or_coded {
        keep_alive &= !has_length;
        if last_coding_is_chunked(headers) {
            return Ok((ResponseFraming::Chunked, keep_alive));
        }
        // A coding certgate does not decode: the body runs to the close (RFC 9112 §6.3).
        return Ok((ResponseFraming::UntilClose, false));
    }
    match length(headers)? {
        Some(n) => Ok((ResponseFraming::Length(n), keep_alive)),
        None => Ok((ResponseFraming::UntilClose, false)),
    }
}

/// Whether `Connection` lists `close`.
fn has_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Whether the last transfer coding is `chunked`, and it is the only `chunked`.
fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    let codings: Vec<&[u8]> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect();
    let chunked = |t: &[u8]| t.eq_ignore_ascii_case(b"chunked");
    codings.last().is_some_and(|t| chunked(t)) && codings.iter().filter(|t| chunked(t)).count() == 1
}

/// The body length `Content-Length` gives: every line and list item must be the same decimal
/// number (`5, 5` is 5; `5, 6`, `+5`, `0x5` and an empty item are errors).
pub fn length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for value in &headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(WireError::ContentLength);
            }
            let n: u64 = std::str::from_utf8(item)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(WireError::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(WireError::ContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// What the chunked decoder has for the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section (only when it has fields).
    Trailers(HeaderMap),
    /// The body has ended; what follows in the buffer is not part of it.
    End,
    /// More bytes are needed.
    NeedMore,
}

/// A chunked body decoder (RFC 9112 §7.1), fed the connection's read buffer.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the chunk size's hex digits (so far).
    #[default]
    SizeStart,
    Size {
        size: u64,
    },
    /// After the size, up to the CR: whitespace and extensions, ignored. `named`: a `;` has
    /// been seen, so any visible byte may follow.
    Extension {
        size: u64,
        read: usize,
        named: bool,
    },
    /// The LF that ends the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    Trailers,
    Done,
}

impl Chunked {
    /// Decodes from the front of `buf`, taking what it uses.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Data { left } => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::Trailers => return self.trailers(buf),
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            let _ = buf.split_to(1);
            self.state = match (self.state, byte) {
                (State::SizeStart, b) => match hex(b) {
                    Some(d) => State::Size { size: u64::from(d) },
                    None => return Err(WireError::Chunked("a chunk size is not hexadecimal")),
                },
                (State::Size { size }, b) => match hex(b) {
                    Some(d) => State::Size {
                        size: size
                            .checked_mul(16)
                            .map(|s| s + u64::from(d))
                            .ok_or(WireError::Chunked("a chunk size is too large"))?,
                    },
                    None => after_size(size, 0, false, b)?,
                },
                (State::Extension { size, read, named }, b) => after_size(size, read, named, b)?,
                (State::SizeLf { size: 0 }, b'\n') => State::Trailers,
                (State::SizeLf { size }, b'\n') => State::Data { left: size },
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::SizeStart,
                (State::SizeLf { .. } | State::DataLf, _) => {
                    return Err(WireError::Chunked("a CR is not followed by LF"));
                }
                (State::DataCr, _) => {
                    return Err(WireError::Chunked("a chunk is longer than its size"));
                }
                (State::Data { .. } | State::Trailers | State::Done, _) => {
                    unreachable!("handled above")
                }
            };
        }
    }

    /// The trailer section, whole, then the end.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete((len, parsed))) => {
                if len > MAX_TRAILER_BYTES || has_bare_lf(&buf[..len]) {
                    return Err(WireError::Trailers);
                }
                let base = buf.as_ptr() as usize;
                let spans: Vec<(HeaderName, usize, usize)> = parsed
                    .iter()
                    .map(|f| {
                        let name = HeaderName::from_bytes(f.name.as_bytes())
                            .map_err(|_| WireError::Trailers)?;
                        let start = f.value.as_ptr() as usize - base;
                        Ok((name, start, start + f.value.len()))
                    })
                    .collect::<Result<_, WireError>>()?;
                let section = buf.split_to(len).freeze();
                self.state = State::Done;
                if spans.is_empty() {
                    return Ok(Decoded::End);
                }
                Ok(Decoded::Trailers(
                    fields_from(&section, spans).map_err(|_| WireError::Trailers)?,
                ))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILER_BYTES => {
                Err(WireError::Trailers)
            }
            Ok(httparse::Status::Partial) => Ok(Decoded::NeedMore),
            Err(_) => Err(WireError::Trailers),
        }
    }
}

/// The state after `byte`, which follows a chunk size's digits and `read` bytes of extension.
fn after_size(size: u64, read: usize, named: bool, byte: u8) -> Result<State, WireError> {
    let next = |named| {
        if read >= MAX_CHUNK_EXTENSION_BYTES {
            return Err(WireError::Chunked("a chunk extension is too long"));
        }
        Ok(State::Extension {
            size,
            read: read + 1,
            named,
        })
    };
    match byte {
        b'\r' => Ok(State::SizeLf { size }),
        b'\n' => Err(WireError::Chunked("a bare LF ends a chunk-size line")),
        // `;name=value` extensions, and the whitespace allowed around them: ignored.
        b';' => next(true),
        b' ' | b'\t' => next(named),
        b'!'..=b'~' | 0x80.. if named => next(true),
        _ => Err(WireError::Chunked("a chunk-size line has a stray byte")),
    }
}

/// Whether a line ends in a bare LF (httparse accepts one; a reader that does not would see
/// the lines differently).
fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The size line that goes before a chunk of `len` bytes.
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(raw))
    }

    fn framing(to_head: bool, raw: &str) -> Result<(ResponseFraming, bool), WireError> {
        response_framing(to_head, &head(raw)?.expect("a whole head"))
    }

    /// A decoded chunked body: the data, the trailers and what was left after the end.
    type Dechunked = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Decodes all of `raw`, fed in pieces of `step` bytes.
    fn dechunk(raw: &[u8], step: usize) -> Result<Dechunked, WireError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let (mut body, mut trailers) = (Vec::new(), None);
        let mut pieces = raw.chunks(step.max(1));
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((body, trailers, buf.to_vec())),
                Decoded::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err(WireError::Chunked("cut short (test)")),
                },
            }
        }
    }

    #[test]
    fn a_request_head_carries_its_own_framing_only() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/p?q",
            &headers,
            RequestFraming::Length(5),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q HTTP/1.1\r\nhost: app\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::GET,
            "",
            &HeaderMap::new(),
            RequestFraming::Chunked,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    }

    #[test]
    fn a_head_is_read_whole_and_strictly() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nA: 1\r\nb: x y\r\n\r\nbody");
        let h = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.headers["a"], "1");
        assert_eq!(h.headers["b"], "x y");
        assert_eq!(&buf[..], b"body", "only the head is taken");
        assert!(head("HTTP/1.1 200 OK\r\nA: 1\r\n").unwrap().is_none());
        assert_eq!(
            head("HTTP/1.0 204 x\r\n\r\n").unwrap().unwrap().version,
            Version::HTTP_10
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nA : 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA\x00: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: 1\x00\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: 1\r\n\r\n",
            "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\n\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?} must be refused");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_FIELDS + 1)
        );
        assert_eq!(head(&many).unwrap_err(), WireError::HeadTooLarge);
        let long = format!("HTTP/1.1 200 OK\r\na: {}", "b".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&long).unwrap_err(), WireError::HeadTooLarge);
    }

    #[test]
    fn the_body_framing_follows_rfc_9112() {
        use ResponseFraming::*;
        let f = |raw| framing(false, raw).unwrap();
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            (Length(5), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            (Length(5), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            (Length(5), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (Chunked, true)
        );
        // A length beside chunked: chunked wins, and the connection closes after.
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            (Chunked, false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (UntilClose, false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            (UntilClose, false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            (UntilClose, false)
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), (UntilClose, false));
        assert_eq!(
            f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
            (Length(1), false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 1\r\n\r\n"),
            (Length(1), false)
        );
        assert_eq!(f("HTTP/1.1 204 No\r\n\r\n"), (None, true));
        assert_eq!(
            f("HTTP/1.1 304 No\r\nContent-Length: 0\r\n\r\n"),
            (None, true)
        );
        // Bodiless yet declaring a body: not reused.
        assert_eq!(
            f("HTTP/1.1 304 No\r\nContent-Length: 10\r\n\r\n"),
            (None, false)
        );
        assert_eq!(
            f("HTTP/1.1 204 No\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (None, false)
        );
        assert_eq!(
            framing(true, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n").unwrap(),
            (None, false)
        );
        for bad in [
            "5, 6",
            "+5",
            "0x5",
            "",
            "5,",
            "-1",
            "99999999999999999999",
            "5 5",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                framing(false, &raw),
                Err(WireError::ContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            framing(
                false,
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            Err(WireError::ContentLength)
        );
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let raw = b"5\r\nhello\r\n1;ext=\"x\"\r\n!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, raw.len()] {
            let (body, trailers, rest) = dechunk(raw, step).unwrap();
            assert_eq!(body, b"hello!");
            assert_eq!(trailers.unwrap()["x-t"], "1");
            // Whatever follows the end is left in the buffer, undecoded.
            assert!(b"NEXT".starts_with(&rest), "{rest:?}");
        }
        let (body, trailers, _) = dechunk(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((body.len(), trailers), (10, None));
    }

    #[test]
    fn malformed_chunked_framing_is_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"x\r\n",
            b"\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\nbad field\r\n\r\n",
            b"0\r\nA: 1\r\n folded\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nA: 1\n\r\n",
        ] {
            assert!(
                dechunk(bad, 1).is_err(),
                "{:?} must be refused",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!(
            "1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_EXTENSION_BYTES)
        );
        assert!(dechunk(long_ext.as_bytes(), 64).is_err());
        let big_trailers = format!("0\r\n{}\r\n", "a: b\r\n".repeat(MAX_TRAILER_BYTES / 6 + 1));
        assert!(dechunk(big_trailers.as_bytes(), 512).is_err());
        // The largest size that fits in 64 bits is read; the body is then simply short.
        assert_eq!(
            dechunk(b"ffffffffffffffff\r\nab", 1).unwrap_err(),
            WireError::Chunked("cut short (test)")
        );
    }
}
