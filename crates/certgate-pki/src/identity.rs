//! The identity model: what a certificate says about its holder, derived once and shown everywhere
//! (ingress, egress, forwarded headers, logs) in the same shape.
//!
//! An [`Identity`] says nothing about whether the certificate can be trusted; that is the job of
//! [`crate::verify`], whose verdict travels next to it. Never derive identity from the CN alone.

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::dn;

macro_rules! sha256_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, as used in config (`spki_sha256 = "..."`) and headers.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 hex digits (colons allowed, case ignored, as `openssl x509 -fingerprint` prints).
            pub fn from_hex(text: &str) -> Option<Self> {
                let cleaned: String = text.chars().filter(|c| *c != ':').collect();
                let bytes = hex::decode(cleaned).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
    };
}

sha256_newtype!(
    /// SHA-256 of a certificate's DER (Gemini `TLS_CLIENT_HASH`, Envoy XFCC `Hash`).
    CertHash
);
sha256_newtype!(
    /// SHA-256 of a certificate's SubjectPublicKeyInfo DER: stable across re-issue with the same key
    /// (RFC 7469 pin).
    SpkiHash
);

impl CertHash {
    /// Hashes a certificate's DER.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl SpkiHash {
    /// Hashes a SubjectPublicKeyInfo's DER.
    pub fn of(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }
}

/// A SPIFFE ID (`spiffe://trust-domain/path`) taken from a URI SAN.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SpiffeId(String);

impl SpiffeId {
    /// Parses a SPIFFE ID as the SPIFFE ID specification defines it: scheme `spiffe`, a
    /// non-empty trust domain of lower-case letters, digits, `-`, `.` and `_`, and a path whose
    /// segments are non-empty, not `.` or `..`, and made of letters, digits, `-`, `.` and `_`
    /// only (no percent-encoding, query, fragment or trailing `/`). Anything else (a `,` that
    /// would read as two IDs in a list, say) is not a SPIFFE ID.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, path) = match rest.split_once('/') {
            Some((d, p)) => (d, Some(p)),
            None => (rest, None),
        };
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        let path_ok = path.is_none_or(|p| {
            p.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            })
        });
        (domain_ok && path_ok).then(|| Self(uri.to_owned()))
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Subject alternative names, by kind, in certificate order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sans {
    /// dNSName entries.
    pub dns: Vec<String>,
    /// uniformResourceIdentifier entries (including the SPIFFE ID).
    pub uri: Vec<String>,
    /// rfc822Name entries.
    pub email: Vec<String>,
    /// iPAddress entries.
    pub ip: Vec<IpAddr>,
}

impl Sans {
    /// True when there are no names at all.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.uri.is_empty() && self.email.is_empty() && self.ip.is_empty()
    }
}

/// Everything certgate derives from one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The certificate itself (not serialized: the hashes stand for it in output).
    #[serde(skip)]
    pub der: CertificateDer<'static>,
    /// SHA-256 of the certificate DER.
    pub cert_sha256: CertHash,
    /// SHA-256 of the SubjectPublicKeyInfo DER.
    pub spki_sha256: SpkiHash,
    /// Subject as an RFC 4514 string.
    pub subject: String,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    /// The subject's (last) common name, if any. For display and `cn` rules only.
    pub common_name: Option<String>,
    /// Subject alternative names.
    pub sans: Sans,
    /// The SPIFFE ID, when a URI SAN is one.
    pub spiffe_id: Option<SpiffeId>,
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: time::OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: time::OffsetDateTime,
    /// Public key algorithm, e.g. `ECDSA P-256`, `RSA 3072`, `Ed25519`.
    pub key_algorithm: String,
    /// Key usage bits that are set (`digitalSignature`, ...); empty when the extension is absent.
    pub key_usage: Vec<&'static str>,
    /// Extended key usages (`clientAuth`, `serverAuth`, or a dotted OID); empty when absent.
    pub extended_key_usage: Vec<String>,
    /// Whether basic constraints say CA.
    pub is_ca: bool,
    /// Whether subject equals issuer (a self-issued, usually self-signed, certificate).
    pub self_issued: bool,
    /// X.509 version (1, 2 or 3).
    pub version: u32,
}

/// Why a certificate's identity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

impl Identity {
    /// Derives the identity of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError(format!("{e}")))?;
        if !rest.is_empty() {
            return Err(IdentityError(format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            )));
        }
        Self::from_parsed(der, &cert)
    }

    pub(crate) fn from_parsed(
        der: &[u8],
        cert: &X509Certificate<'_>,
    ) -> Result<Self, IdentityError> {
        let bad =
            |what: &str, e: &dyn fmt::Display| IdentityError(format!("bad {what} extension: {e}"));
        let mut sans = Sans::default();
        if let Some(ext) = cert
            .subject_alternative_name()
            .map_err(|e| bad("subjectAltName", &e))?
        {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.dns.push((*n).to_owned()),
                    GeneralName::URI(u) => sans.uri.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => sans.email.push((*e).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.ip.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let spiffe_id = sans.uri.iter().find_map(|u| SpiffeId::parse(u));
        let key_usage = match cert.key_usage().map_err(|e| bad("keyUsage", &e))? {
            Some(ku) => key_usage_names(ku.value),
            None => Vec::new(),
        };
        let extended_key_usage = match cert
            .extended_key_usage()
            .map_err(|e| bad("extendedKeyUsage", &e))?
        {
            Some(eku) => eku_names(eku.value),
            None => Vec::new(),
        };
        let validity = cert.validity();
        Ok(Self {
            der: CertificateDer::from(der.to_vec()),
            cert_sha256: CertHash::of(der),
            spki_sha256: SpkiHash::of(cert.public_key().raw),
            subject: dn::rfc4514(cert.subject()),
            issuer: dn::rfc4514(cert.issuer()),
            common_name: common_name(cert.subject()),
            sans,
            spiffe_id,
            serial: serial_hex(cert.raw_serial()),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            key_algorithm: key_algorithm(cert.public_key()),
            key_usage,
            extended_key_usage,
            is_ca: cert.is_ca(),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            version: cert.version().0 + 1,
        })
    }

    /// True when the extended key usage allows TLS client authentication (absent EKU allows all).
    pub fn allows_client_auth(&self) -> bool {
        self.extended_key_usage.is_empty()
            || self
                .extended_key_usage
                .iter()
                .any(|e| e == "clientAuth" || e == "any")
    }
}

/// Serial number bytes as lower-case hex, leading zero bytes removed (as OpenSSL prints it).
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    hex::encode(trimmed)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .last()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// Names the key algorithm of a SubjectPublicKeyInfo, e.g. `ECDSA P-256`.
pub(crate) fn key_algorithm(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
            format!("RSA {bits}")
        }
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_owned(),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_owned(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_owned(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_owned(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA (no curve)".to_owned(),
            }
        }
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        other => format!("unknown ({other})"),
    }
}

fn key_usage_names(ku: &x509_parser::extensions::KeyUsage) -> Vec<&'static str> {
    let all: [(bool, &'static str); 9] = [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ];
    all.iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| *n)
        .collect()
}

fn eku_names(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let known = [
        (eku.any, "any"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ];
    out.extend(
        known
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, n)| (*n).to_owned()),
    );
    out.extend(eku.other.iter().map(|o| o.to_id_string()));
    out
}
