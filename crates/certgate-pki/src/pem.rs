//! A strict PEM (RFC 7468) block reader.
//!
//! We read PEM ourselves rather than through `rustls-pki-types` because that reader silently skips
//! labels it does not know (`ENCRYPTED PRIVATE KEY`, `PKCS7`, legacy `Proc-Type` keys), which turns
//! "this key is encrypted" into "no private key found". Here every block is returned with its label
//! and headers, and a truncated block is an error that names its line.
//!
//! This module never touches the file system.

use base64::Engine as _;

/// One `-----BEGIN label-----` … `-----END label-----` block.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    /// The label, e.g. `CERTIFICATE` or `EC PRIVATE KEY`.
    pub label: String,
    /// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`), in order; empty for RFC 7468 blocks.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub der: Vec<u8>,
    /// 1-based line of the BEGIN line, for error messages.
    pub line: usize,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Block")
            .field("label", &self.label)
            .field("line", &self.line)
            .field("len", &self.der.len())
            .finish()
    }
}

/// Why a PEM text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// A BEGIN line has no matching END line.
    #[error("truncated PEM: `BEGIN {label}` on line {line} has no matching `END {label}` line")]
    Truncated {
        /// The block's label.
        label: String,
        /// Line of the BEGIN line.
        line: usize,
    },
    /// The END line names another label.
    #[error("malformed PEM: `BEGIN {begin}` on line {line} is closed by `END {end}`")]
    Mismatched {
        /// Label of the BEGIN line.
        begin: String,
        /// Label of the END line.
        end: String,
        /// Line of the BEGIN line.
        line: usize,
    },
    /// The body is not valid base64.
    #[error("malformed PEM: the base64 body of `{label}` starting on line {line} does not decode")]
    BadBase64 {
        /// The block's label.
        label: String,
        /// Line of the BEGIN line.
        line: usize,
    },
}

/// Whether `bytes` look like PEM text (a BEGIN line somewhere near the start).
pub fn looks_like_pem(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    head.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Reads every PEM block in `text`. Text outside blocks (OpenSSL's `Bag Attributes`, comments) is
/// ignored, as OpenSSL does.
pub fn parse(text: &[u8]) -> Result<Vec<Block>, PemError> {
    let text = String::from_utf8_lossy(text);
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, line)) = lines.next() {
        let Some(label) = marker(line, "BEGIN") else {
            continue;
        };
        let begin_line = idx + 1;
        let mut headers = Vec::new();
        let mut body = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            let line = line.trim();
            if let Some(end) = marker(line, "END") {
                if end != label {
                    return Err(PemError::Mismatched {
                        begin: label.to_owned(),
                        end: end.to_owned(),
                        line: begin_line,
                    });
                }
                closed = true;
                break;
            }
            if marker(line, "BEGIN").is_some() {
                break;
            }
            // Headers come before the body: a body line is not searched for one.
            match body.is_empty().then(|| line.split_once(':')).flatten() {
                Some((name, value)) if !name.contains(' ') => {
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
                _ => body.push_str(line),
            }
        }
        if !closed {
            return Err(PemError::Truncated {
                label: label.to_owned(),
                line: begin_line,
            });
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::BadBase64 {
                label: label.to_owned(),
                line: begin_line,
            })?;
        blocks.push(Block {
            label: label.to_owned(),
            headers,
            der,
            line: begin_line,
        });
    }
    Ok(blocks)
}

/// Encodes one block as PEM text with 64-column lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn marker<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.trim()
        .strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_headers() {
        let text = format!(
            "junk\n{}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n",
            encode("CERTIFICATE", b"hello world")
        );
        let blocks = parse(text.as_bytes()).expect("parses");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, b"hello world");
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[1].headers[0].1, "4,ENCRYPTED");
        assert_eq!(blocks[1].der, vec![0, 1, 2]);
    }

    #[test]
    fn truncated_and_mismatched_name_the_line() {
        let err = parse(b"\n-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated PEM: `BEGIN CERTIFICATE` on line 2 has no matching `END CERTIFICATE` line"
        );
        let err =
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END X509 CRL-----\n").unwrap_err();
        assert!(matches!(err, PemError::Mismatched { .. }));
        let err =
            parse(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(matches!(err, PemError::BadBase64 { .. }));
    }
}
