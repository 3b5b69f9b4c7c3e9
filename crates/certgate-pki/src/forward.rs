//! Identity forwarding formats: what a TLS-terminating proxy tells its upstream about the client
//! certificate. Pure encoders; each format's encoding is documented on its encoder and in
//! `docs/config.md` (Forwarding formats).
//!
//! [`IDENTITY_HEADERS`] and [`is_identity_header`] name every header of every format certgate
//! knows, so that the proxy can remove all of them from every incoming request, whatever the
//! route forwards: an app must never see an identity header a client wrote.

use std::fmt::Write as _;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Digest as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::X509Name;

use crate::peer::{ClientCert, PeerIdentity, Verification};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// RFC 9440 `Client-Cert` and `Client-Cert-Chain`.
    Rfc9440,
    /// Envoy `x-forwarded-client-cert`, replacing any incoming value (Envoy's SANITIZE_SET).
    Xfcc,
    /// nginx-style `X-SSL-Client-*`.
    Nginx,
    /// Traefik `X-Forwarded-Tls-Client-Cert` and `-Info`.
    Traefik,
    /// certgate's own `X-Client-*` set.
    Certgate,
}

impl Format {
    /// Every format with its config spelling.
    pub const ALL: [(&'static str, Format); 5] = [
        ("rfc9440", Format::Rfc9440),
        ("xfcc", Format::Xfcc),
        ("nginx", Format::Nginx),
        ("traefik", Format::Traefik),
        ("certgate", Format::Certgate),
    ];

    /// Whether the format tells the app if the certificate verified (`X-SSL-Client-Verify`,
    /// `X-Client-Verify`). RFC 9440, XFCC and Traefik's fields carry a certificate and nothing
    /// else: an app reading them cannot tell a verified certificate from one anybody made, so
    /// these formats carry only verified certificates unless a listener opts in.
    pub fn states_verification(self) -> bool {
        matches!(self, Format::Nginx | Format::Certgate)
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }
}

/// Every identity header of every format certgate knows (lower-case). Stripped from every
/// incoming request.
pub const IDENTITY_HEADERS: &[&str] = &[
    // RFC 9440
    "client-cert",
    "client-cert-chain",
    // Envoy
    "x-forwarded-client-cert",
    // nginx conventions
    "x-ssl-client-verify",
    "x-ssl-client-cert",
    "x-ssl-client-escaped-cert",
    "x-ssl-client-s-dn",
    "x-ssl-client-i-dn",
    "x-ssl-client-fingerprint",
    "x-ssl-client-serial",
    "x-ssl-client-v-start",
    "x-ssl-client-v-end",
    "x-ssl-client-dn",
    "ssl-client-cert",
    // Traefik
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    // certgate
    "x-client-verify",
    "x-client-cert-sha256",
    "x-client-spki-sha256",
    "x-client-subject",
    "x-client-issuer",
    "x-client-serial",
    "x-client-not-before",
    "x-client-not-after",
    "x-client-san-dns",
    "x-client-san-uri",
    "x-client-san-email",
    "x-client-san-ip",
    "x-client-spiffe-id",
    "x-client-trust",
    "x-client-forwarded-by",
];

/// Header-name families that carry client-certificate identity in some proxy's or app's
/// convention: every header under them is an identity header, not only the names certgate
/// writes, since apps read names certgate never sends (`X-Client-Cert`, `X-SSL-Client-CN`,
/// `X-ARR-ClientCert`, ...). Vendors' mTLS features (AWS ALB, Cloudflare) own theirs whole.
pub const IDENTITY_HEADER_PREFIXES: &[&str] = &[
    "client-cert",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-ssl-client",
    "x-ssl-cert",
    "ssl-client-",
    "x-client-",
    "x-arr-clientcert",
    "x-amzn-mtls-",
    "cf-client-cert",
];

/// Whether `name` (any case) is an identity header of some format.
pub fn is_identity_header(name: &str) -> bool {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return is_identity_header_lowercase(&name.to_ascii_lowercase());
    }
    is_identity_header_lowercase(name)
}

/// [`is_identity_header`] for a name already in lower case (as `http::HeaderName` keeps them):
/// no allocation on the request path.
pub fn is_identity_header_lowercase(name: &str) -> bool {
    // Every identity header starts with one of these (a test keeps it so): most request
    // headers are told apart by their first byte.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'c' | b's')) {
        return false;
    }
    IDENTITY_HEADERS.contains(&name) || IDENTITY_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// What a forwarding proxy knows about itself, for fields such as XFCC `By`.
#[derive(Clone, Debug, Default)]
pub struct ProxyInfo {
    /// URI SANs of the proxy's own server certificate (XFCC `By`).
    pub uris: Vec<String>,
}

/// Encodes the client identity in `format`. Returns header (name, value) pairs; empty when the
/// format sends nothing for this connection (e.g. RFC 9440 without a certificate).
pub fn encode(
    format: Format,
    client: &ClientCert,
    proxy: &ProxyInfo,
) -> Vec<(&'static str, String)> {
    match format {
        Format::Rfc9440 => client.presented().map(rfc9440).unwrap_or_default(),
        Format::Xfcc => client
            .presented()
            .map(|p| vec![("x-forwarded-client-cert", xfcc(p, proxy))])
            .unwrap_or_default(),
        Format::Nginx => nginx(client),
        Format::Traefik => client.presented().map(traefik).unwrap_or_default(),
        Format::Certgate => certgate(client),
    }
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// RFC 9440 §2: each certificate an RFC 8941 Byte Sequence; the chain field a List of them,
/// in TLS order, without the leaf.
fn rfc9440(p: &PeerIdentity) -> Vec<(&'static str, String)> {
    let mut out = vec![("client-cert", format!(":{}:", b64(&p.identity.der)))];
    let rest: Vec<String> = p
        .chain
        .iter()
        .skip(1)
        .map(|c| format!(":{}:", b64(c)))
        .collect();
    if !rest.is_empty() {
        out.push(("client-cert-chain", rest.join(", ")));
    }
    out
}

/// The PEM text of a certificate.
fn pem(der: &[u8]) -> String {
    crate::pem::encode("CERTIFICATE", der)
}

/// nginx `NGX_ESCAPE_URI_COMPONENT` and Go `url.QueryEscape` keep only `ALPHA DIGIT - . _ ~`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// An XFCC value: quoted when it holds `,`, `;`, `=` or `"` (with `"` escaped), else bare.
fn xfcc_value(v: &str) -> String {
    if v.contains([',', ';', '=', '"', '\\']) {
        xfcc_quoted(v)
    } else {
        v.to_owned()
    }
}

/// A double-quoted XFCC value: `\` and `"` escaped with a backslash, so that a DN's own RFC 4514
/// escapes (`\,`, `\"`) cannot end the quoted string early.
fn xfcc_quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Envoy XFCC element for this hop: `By` (our URI SANs), `Hash`, `Cert`, `Chain`, `Subject`
/// (always quoted), `URI`, `DNS`. Cert and Chain are URL-encoded PEM, double-quoted.
fn xfcc(p: &PeerIdentity, proxy: &ProxyInfo) -> String {
    let mut pairs: Vec<String> = proxy
        .uris
        .iter()
        .map(|u| format!("By={}", xfcc_value(u)))
        .collect();
    pairs.push(format!("Hash={}", p.identity.cert_sha256));
    pairs.push(format!("Cert=\"{}\"", url_encode(&pem(&p.identity.der))));
    let chain: String = p.chain.iter().map(|c| pem(c)).collect();
    pairs.push(format!("Chain=\"{}\"", url_encode(&chain)));
    pairs.push(format!("Subject={}", xfcc_quoted(&p.identity.subject)));
    if p.identity.sans.uri.is_empty() {
        pairs.push("URI=".to_owned());
    }
    pairs.extend(
        p.identity
            .sans
            .uri
            .iter()
            .map(|u| format!("URI={}", xfcc_value(u))),
    );
    pairs.extend(
        p.identity
            .sans
            .dns
            .iter()
            .map(|d| format!("DNS={}", xfcc_value(d))),
    );
    pairs.join(";")
}

/// nginx's `$ssl_client_verify`: `SUCCESS`, `NONE` or `FAILED:reason`.
fn verify_status(client: &ClientCert) -> String {
    match client {
        ClientCert::Absent { .. } => "NONE".to_owned(),
        ClientCert::Present(p) => match &p.verification {
            Verification::Verified(_) => "SUCCESS".to_owned(),
            Verification::Failed { rejection, .. } => format!("FAILED:{}", rejection.reason.code()),
            Verification::NoTrustConfigured => "FAILED:no_trust_configured".to_owned(),
        },
    }
}

/// OpenSSL's `ASN1_TIME_print` form, as nginx's `$ssl_client_v_start`: `Nov  5 12:00:00 2026 GMT`.
fn openssl_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

fn nginx(client: &ClientCert) -> Vec<(&'static str, String)> {
    let mut out = vec![("x-ssl-client-verify", verify_status(client))];
    if let Some(p) = client.presented() {
        let id = &p.identity;
        out.push(("x-ssl-client-escaped-cert", url_encode(&pem(&id.der))));
        out.push(("x-ssl-client-s-dn", id.subject.clone()));
        out.push(("x-ssl-client-i-dn", id.issuer.clone()));
        out.push((
            "x-ssl-client-fingerprint",
            hex::encode(sha1::Sha1::digest(&id.der)),
        ));
        out.push(("x-ssl-client-serial", id.serial.to_ascii_uppercase()));
        out.push(("x-ssl-client-v-start", openssl_time(id.not_before)));
        out.push(("x-ssl-client-v-end", openssl_time(id.not_after)));
    }
    out
}

/// Traefik `passTLSClientCert` with `pem: true` and every `info` field: the chain as
/// comma-joined base64 DER, and the info string, URL-query-escaped.
fn traefik(p: &PeerIdentity) -> Vec<(&'static str, String)> {
    let certs: Vec<String> = p.chain.iter().map(|c| b64(c)).collect();
    let infos: Vec<String> = p.chain.iter().filter_map(|c| traefik_info(c)).collect();
    vec![
        ("x-forwarded-tls-client-cert", certs.join(",")),
        (
            "x-forwarded-tls-client-cert-info",
            url_encode(&infos.join(",")).replace("%20", "+"),
        ),
    ]
}

fn traefik_info(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut fields = Vec::new();
    let subject = traefik_dn(cert.subject(), true);
    if !subject.is_empty() {
        fields.push(format!("Subject=\"{subject}\""));
    }
    let issuer = traefik_dn(cert.issuer(), false);
    if !issuer.is_empty() {
        fields.push(format!("Issuer=\"{issuer}\""));
    }
    fields.push(format!("SerialNumber=\"{}\"", decimal(cert.raw_serial())));
    fields.push(format!("NB=\"{}\"", cert.validity().not_before.timestamp()));
    fields.push(format!("NA=\"{}\"", cert.validity().not_after.timestamp()));
    let id = crate::Identity::from_parsed(der, &cert).ok()?;
    let mut sans: Vec<String> = id.sans.dns.clone();
    sans.extend(id.sans.email.iter().cloned());
    sans.extend(id.sans.ip.iter().map(ToString::to_string));
    sans.extend(id.sans.uri.iter().cloned());
    if !sans.is_empty() {
        let sans: Vec<String> = sans.iter().map(|s| traefik_escape(s)).collect();
        fields.push(format!("SAN=\"{}\"", sans.join(",")));
    }
    Some(fields.join(";"))
}

/// One value inside Traefik's info field: the characters that structure the field (`"` ends a
/// value, `;` a field, `,` a list item or DN part, `=` a key) and `%` and `\` are written as
/// `%XX`, so a certificate's own text can never read as another field (`CN=bob";SAN="...`).
fn traefik_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' | ';' | ',' | '=' | '%' | '\\' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Traefik's DN form: DC, C, ST, L, O, (OU for subjects), SN, CN, in that order, comma-separated.
fn traefik_dn(name: &X509Name<'_>, subject: bool) -> String {
    let mut order = vec![
        ("0.9.2342.19200300.100.1.25", "DC"),
        ("2.5.4.6", "C"),
        ("2.5.4.8", "ST"),
        ("2.5.4.7", "L"),
        ("2.5.4.10", "O"),
    ];
    if subject {
        order.push(("2.5.4.11", "OU"));
    }
    order.push(("2.5.4.5", "SN"));
    order.push(("2.5.4.3", "CN"));
    let mut parts = Vec::new();
    for (oid, short) in order {
        for atv in name.iter_attributes() {
            if atv.attr_type().to_id_string() == oid
                && let Ok(v) = atv.as_str()
                && !v.is_empty()
            {
                parts.push(format!("{short}={}", traefik_escape(v)));
                // Go's pkix.Name keeps a single SerialNumber and CommonName.
                if short == "SN" || short == "CN" {
                    break;
                }
            }
        }
    }
    parts.join(",")
}

/// A big-endian unsigned integer in decimal.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0];
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// certgate's own set. Values are percent-encoded where they could hold bytes outside visible
/// ASCII (subjects, issuers, SANs), so they are always valid header values.
fn certgate(client: &ClientCert) -> Vec<(&'static str, String)> {
    let mut out = vec![("x-client-verify", verify_status(client))];
    let Some(p) = client.presented() else {
        return out;
    };
    let id = &p.identity;
    let safe = |s: &str| -> String {
        let mut o = String::with_capacity(s.len());
        for b in s.bytes() {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                o.push(char::from(b));
            } else {
                let _ = write!(o, "%{b:02X}");
            }
        }
        o
    };
    out.push(("x-client-cert-sha256", id.cert_sha256.to_hex()));
    out.push(("x-client-spki-sha256", id.spki_sha256.to_hex()));
    out.push(("x-client-subject", safe(&id.subject)));
    out.push(("x-client-issuer", safe(&id.issuer)));
    out.push(("x-client-serial", id.serial.clone()));
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    out.push(("x-client-not-before", rfc3339(id.not_before)));
    out.push(("x-client-not-after", rfc3339(id.not_after)));
    // A `,` inside one name is written `%2C`, so splitting the list on `,` gives exactly the
    // certificate's names (`%` itself is always escaped by `safe`).
    let join = |v: &[String]| {
        v.iter()
            .map(|s| safe(s).replace(',', "%2C"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !id.sans.dns.is_empty() {
        out.push(("x-client-san-dns", join(&id.sans.dns)));
    }
    if !id.sans.uri.is_empty() {
        out.push(("x-client-san-uri", join(&id.sans.uri)));
    }
    if !id.sans.email.is_empty() {
        out.push(("x-client-san-email", join(&id.sans.email)));
    }
    if !id.sans.ip.is_empty() {
        let ips: Vec<String> = id.sans.ip.iter().map(ToString::to_string).collect();
        out.push(("x-client-san-ip", ips.join(",")));
    }
    if let Some(s) = &id.spiffe_id {
        out.push(("x-client-spiffe-id", safe(s.as_str())));
    }
    match &p.verification {
        Verification::Verified(v) => out.push(("x-client-trust", v.trust().to_owned())),
        Verification::Failed { trust, .. } => out.push(("x-client-trust", trust.clone())),
        Verification::NoTrustConfigured => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_start_with_the_letters_the_fast_check_knows() {
        for name in IDENTITY_HEADERS.iter().chain(IDENTITY_HEADER_PREFIXES) {
            assert!(matches!(name.as_bytes()[0], b'x' | b'c' | b's'), "{name}");
            assert!(
                is_identity_header_lowercase(name) || name.ends_with('-'),
                "{name}"
            );
        }
        assert!(is_identity_header("X-Amzn-Mtls-Clientcert-Leaf"));
        assert!(!is_identity_header_lowercase("content-type"));
        assert!(!is_identity_header_lowercase("host"));
    }

    #[test]
    fn decimal_serials() {
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[1, 0]), "256");
        assert_eq!(
            decimal(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            u64::MAX.to_string()
        );
    }

    #[test]
    fn openssl_time_pads_the_day() {
        let t = time::macros::datetime!(2026-11-05 01:02:03 UTC);
        assert_eq!(openssl_time(t), "Nov  5 01:02:03 2026 GMT");
    }

    #[test]
    fn identity_headers_match_any_case_and_vendor_prefixes() {
        assert!(is_identity_header("Client-Cert"));
        assert!(is_identity_header("X-FORWARDED-CLIENT-CERT"));
        assert!(is_identity_header("X-Amzn-Mtls-Clientcert-Leaf"));
        assert!(is_identity_header("cf-client-cert-der-base64"));
        // The whole X-Client-* family is certgate's own: a client's X-Client-Id is removed too,
        // so no app can mistake it for something certgate vouched for.
        assert!(is_identity_header("x-client-id"));
        assert!(!is_identity_header("x-clients"));
        assert!(!is_identity_header("authorization"));
    }

    #[test]
    fn xfcc_quotes_only_when_needed() {
        assert_eq!(xfcc_value("http://a.example/x"), "http://a.example/x");
        assert_eq!(xfcc_value("a=b"), "\"a=b\"");
        assert_eq!(xfcc_value("say \"hi\";"), "\"say \\\"hi\\\";\"");
        assert_eq!(
            xfcc_value("CN=a\\, \\\"b\\\""),
            "\"CN=a\\\\, \\\\\\\"b\\\\\\\"\""
        );
    }
}
