//! Decoding a client certificate that a front proxy forwarded in an HTTP header. Pure decoders,
//! one per format; what to trust is decided elsewhere (a header is only as good as the proxy
//! that set it).

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use rustls_pki_types::CertificateDer;

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// RFC 9440 `Client-Cert` (`:base64:`), or `Client-Cert-Chain` (a list of them).
    Rfc9440,
    /// Envoy XFCC: the `Cert` (or `Chain`) of the last element, the one the nearest hop appended.
    Xfcc,
    /// nginx `$ssl_client_escaped_cert`: URL-encoded PEM.
    Nginx,
    /// Traefik `X-Forwarded-Tls-Client-Cert`: comma-separated base64 DER, leaf first.
    Traefik,
    /// AWS ALB passthrough `X-Amzn-Mtls-Clientcert`: URL-encoded PEM chain with `+ = /` left as is.
    AwsAlb,
    /// Cloudflare `Cf-Client-Cert-Der-Base64`.
    Cloudflare,
    /// Plain base64 DER (e.g. HAProxy `ssl_c_der,base64`).
    Base64Der,
}

impl InputFormat {
    /// Every format with its CLI/config spelling.
    pub const ALL: [(&'static str, InputFormat); 7] = [
        ("rfc9440", InputFormat::Rfc9440),
        ("xfcc", InputFormat::Xfcc),
        ("nginx", InputFormat::Nginx),
        ("traefik", InputFormat::Traefik),
        ("aws-alb", InputFormat::AwsAlb),
        ("cloudflare", InputFormat::Cloudflare),
        ("base64-der", InputFormat::Base64Der),
    ];

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    /// The format a header usually carries, by its name.
    pub fn for_header(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "client-cert" | "client-cert-chain" => Self::Rfc9440,
            "x-forwarded-client-cert" => Self::Xfcc,
            "x-ssl-client-escaped-cert" | "x-ssl-client-cert" | "ssl-client-cert" => Self::Nginx,
            "x-forwarded-tls-client-cert" => Self::Traefik,
            "x-amzn-mtls-clientcert" => Self::AwsAlb,
            "cf-client-cert-der-base64" => Self::Cloudflare,
            _ => return None,
        })
    }
}

/// Why a header value does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn err(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

fn b64(s: &str) -> Result<Vec<u8>, DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| err(format!("not valid base64: {e}")))
}

fn pem_certs(text: &str) -> Result<Vec<CertificateDer<'static>>, DecodeError> {
    let blocks = crate::pem::parse(text.as_bytes()).map_err(|e| err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.der))
        .collect();
    if certs.is_empty() {
        return Err(err("no PEM certificate in the value"));
    }
    Ok(certs)
}

/// The longest value accepted (a chain of a few certificates is well under this).
pub const MAX_VALUE: usize = 64 * 1024;

/// Decodes a header value into certificates, leaf first.
pub fn decode(
    format: InputFormat,
    value: &str,
) -> Result<Vec<CertificateDer<'static>>, DecodeError> {
    if value.len() > MAX_VALUE {
        return Err(err(format!(
            "value of {} bytes exceeds the {MAX_VALUE}-byte limit",
            value.len()
        )));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(err("the value is empty"));
    }
    match format {
        InputFormat::Rfc9440 => {
            let mut out = Vec::new();
            for item in value.split(',') {
                let item = item.trim();
                let inner = item
                    .strip_prefix(':')
                    .and_then(|s| s.strip_suffix(':'))
                    .ok_or_else(|| err("an RFC 9440 value is a byte sequence `:base64:`"))?;
                out.push(CertificateDer::from(b64(inner)?));
            }
            Ok(out)
        }
        InputFormat::Xfcc => {
            let element = split_outside_quotes(value, ',').pop().unwrap_or_default();
            let mut cert = None;
            let mut chain = None;
            for pair in split_outside_quotes(&element, ';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = unquote(v.trim());
                match k.trim().to_ascii_lowercase().as_str() {
                    "cert" => cert = Some(v),
                    "chain" => chain = Some(v),
                    _ => {}
                }
            }
            let pem = chain
                .or(cert)
                .ok_or_else(|| err("the last XFCC element has no Cert or Chain"))?;
            let text = percent_decode_str(&pem)
                .decode_utf8()
                .map_err(|_| err("Cert is not URL-encoded UTF-8"))?;
            pem_certs(&text)
        }
        InputFormat::Nginx | InputFormat::AwsAlb => {
            // Full percent-decoding; `+` stays `+` (it is base64, not a space).
            let text = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| err("not URL-encoded UTF-8"))?;
            pem_certs(&text)
        }
        InputFormat::Traefik => value
            .split(',')
            .map(|part| b64(part).map(CertificateDer::from))
            .collect(),
        InputFormat::Cloudflare | InputFormat::Base64Der => {
            Ok(vec![CertificateDer::from(b64(value)?)])
        }
    }
}

/// Splits on `sep` outside double quotes (with `\"` escapes inside quotes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c == sep && !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Removes the quotes of a quoted XFCC value and its backslash escapes (`\\"` and `\\\\`).
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_takes_the_last_element_and_respects_quotes() {
        let parts = split_outside_quotes(r#"By=a;Subject="x,y;z",By=b;Hash=h"#, ',');
        assert_eq!(parts.len(), 2);
        assert_eq!(
            split_outside_quotes(&parts[0], ';'),
            vec!["By=a", r#"Subject="x,y;z""#]
        );
        assert_eq!(unquote(r#""say \"hi\"""#), r#"say "hi""#);
        assert_eq!(unquote(r#""CN=a\\, \\\"b""#), r#"CN=a\, \"b"#);
    }

    /// Envoy's documentation examples (headers.rst): two hops, quoted Subject, several URI/DNS
    /// pairs. They carry no Cert, so decoding says so; the element split must be exact.
    #[test]
    fn envoy_documentation_examples() {
        let one = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com"#;
        let two = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com"#;
        assert_eq!(split_outside_quotes(one, ',').len(), 1);
        let elements = split_outside_quotes(two, ',');
        assert_eq!(elements.len(), 2);
        assert!(elements[1].starts_with("By=http://backend.lyft.com;"));
        for v in [one, two] {
            assert!(
                decode(InputFormat::Xfcc, v)
                    .unwrap_err()
                    .0
                    .contains("no Cert or Chain")
            );
        }
    }

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        // Bad percent-encoding yielding invalid UTF-8.
        assert!(
            decode(InputFormat::Nginx, "%FF%FE")
                .unwrap_err()
                .0
                .contains("URL-encoded UTF-8")
        );
        // Truncated PEM.
        let truncated = "-----BEGIN%20CERTIFICATE-----%0AMIIB";
        assert!(
            decode(InputFormat::Nginx, truncated)
                .unwrap_err()
                .0
                .contains("truncated PEM")
        );
        // A 64 KiB value.
        let huge = "A".repeat(MAX_VALUE + 1);
        assert!(
            decode(InputFormat::Base64Der, &huge)
                .unwrap_err()
                .0
                .contains("exceeds")
        );
        // 1,000 XFCC elements without a certificate: bounded work, a clear error.
        let many = vec!["By=x;Hash=00"; 1000].join(",");
        assert!(
            decode(InputFormat::Xfcc, &many)
                .unwrap_err()
                .0
                .contains("no Cert or Chain")
        );
        // ALB passthrough keeps `+`: a value with `+` must not turn into spaces.
        assert!(
            decode(
                InputFormat::AwsAlb,
                "-----BEGIN%20CERTIFICATE-----%0AAB+/%0A-----END%20CERTIFICATE-----%0A"
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_values_are_described() {
        assert!(
            decode(InputFormat::Rfc9440, "abc")
                .unwrap_err()
                .0
                .contains("byte sequence")
        );
        assert!(
            decode(InputFormat::Base64Der, "!!!")
                .unwrap_err()
                .0
                .contains("base64")
        );
        assert!(
            decode(InputFormat::Nginx, "hello")
                .unwrap_err()
                .0
                .contains("no PEM certificate")
        );
        assert!(
            decode(InputFormat::Xfcc, "By=x;Hash=y")
                .unwrap_err()
                .0
                .contains("no Cert")
        );
        assert!(
            decode(InputFormat::Traefik, "")
                .unwrap_err()
                .0
                .contains("empty")
        );
    }
}
