//! Describes whatever a credential file holds (certificates, keys, PKCS#12, CRLs, CSRs), for
//! `certgate inspect`. Pure: bytes in, [`Item`]s out.

use pkcs8::der::Decode as _;
use serde::Serialize;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::credential::{self, LoadedKey};
use crate::error::{Error, Origin, Result};
use crate::identity::{Identity, Sans, SpkiHash, serial_hex};
use crate::pem;

/// One thing found in a file.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// An X.509 certificate.
    Certificate(Box<Identity>),
    /// A private key that loaded (and was decrypted if it was encrypted).
    PrivateKey(KeyInfo),
    /// An encrypted private key that was not decrypted (no password given).
    EncryptedPrivateKey {
        /// How to get it decrypted.
        note: String,
    },
    /// A PKCS#12 file's contents.
    Pkcs12 {
        /// Its key.
        key: KeyInfo,
        /// Its certificates, in file order.
        certificates: Vec<Identity>,
    },
    /// A certificate revocation list.
    Crl(CrlInfo),
    /// A certificate signing request.
    Csr(CsrInfo),
}

/// What `inspect` shows of a private key (never the key itself).
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    /// Storage format, e.g. `SEC1`, `PKCS#8 (encrypted)`.
    pub format: &'static str,
    /// Algorithm, e.g. `ECDSA P-256`.
    pub algorithm: String,
    /// SHA-256 of the public key's SPKI: equal to the certificate's `spki_sha256` when they match.
    pub spki_sha256: SpkiHash,
}

impl KeyInfo {
    fn of(key: &LoadedKey) -> Self {
        let algorithm = key
            .signer
            .public_key()
            .and_then(|spki| {
                SubjectPublicKeyInfo::from_der(spki.as_ref())
                    .ok()
                    .map(|(_, s)| crate::identity::key_algorithm(&s))
            })
            .unwrap_or_else(|| format!("{:?}", key.signer.algorithm()));
        Self {
            format: key.format,
            algorithm,
            spki_sha256: key.spki_sha256,
        }
    }
}

/// What `inspect` shows of a CRL.
#[derive(Clone, Debug, Serialize)]
pub struct CrlInfo {
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: time::OffsetDateTime,
    /// nextUpdate, if present.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<time::OffsetDateTime>,
    /// CRL number, hex.
    pub crl_number: Option<String>,
    /// Revoked certificates.
    pub revoked: Vec<RevokedEntry>,
}

/// One revoked serial.
#[derive(Clone, Debug, Serialize)]
pub struct RevokedEntry {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Revocation time.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: time::OffsetDateTime,
    /// Reason, if given.
    pub reason: Option<&'static str>,
}

/// What `inspect` shows of a CSR.
#[derive(Clone, Debug, Serialize)]
pub struct CsrInfo {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Requested SANs.
    pub sans: Sans,
    /// Key algorithm.
    pub key_algorithm: String,
    /// SHA-256 of the SPKI.
    pub spki_sha256: SpkiHash,
    /// Whether the self-signature verifies (proves the requester holds the key).
    pub signature_valid: bool,
}

/// Describes everything in `bytes`. `password` decrypts encrypted keys and PKCS#12 files.
pub fn inspect(bytes: &[u8], origin: &Origin, password: Option<&str>) -> Result<Vec<Item>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty {
            origin: origin.clone(),
        });
    }
    if pem::looks_like_pem(bytes) {
        let blocks = pem::parse(bytes).map_err(|error| Error::Pem {
            origin: origin.clone(),
            error,
        })?;
        let mut items = Vec::new();
        let mut cert_index = 0;
        for block in &blocks {
            match block.label.as_str() {
                "CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                    cert_index += 1;
                    items.push(certificate(&block.der, origin, cert_index)?);
                }
                "X509 CRL" => items.push(crl(&block.der, origin)?),
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                    items.push(csr(&block.der, origin)?)
                }
                "ENCRYPTED PRIVATE KEY" if password.is_none() => {
                    items.push(Item::EncryptedPrivateKey {
                        note: "pass --password-file or --password-env to decrypt and check it"
                            .to_owned(),
                    })
                }
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                    let key = credential::key_from_pem_block(block, origin, password)?;
                    items.push(Item::PrivateKey(KeyInfo::of(&key)));
                }
                _ => {}
            }
        }
        if items.is_empty() {
            let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
            return Err(Error::UnknownFormat {
                origin: origin.clone(),
                expected: if labels.is_empty() {
                    "certificate, key, CRL or CSR (no PEM blocks found)"
                } else {
                    "certificate, key, CRL or CSR (only unknown PEM blocks)"
                },
            });
        }
        return Ok(items);
    }
    match credential::sniff_der(bytes) {
        Some("certificate") => Ok(vec![certificate(bytes, origin, 1)?]),
        Some("CRL") => Ok(vec![crl(bytes, origin)?]),
        Some("certificate request") => Ok(vec![csr(bytes, origin)?]),
        Some("PKCS#8 private key") | Some("encrypted PKCS#8 private key") => {
            if password.is_none() && pkcs8::EncryptedPrivateKeyInfoRef::from_der(bytes).is_ok() {
                return Ok(vec![Item::EncryptedPrivateKey {
                    note: "pass --password-file or --password-env to decrypt and check it"
                        .to_owned(),
                }]);
            }
            let key = credential::parse_private_key(bytes, origin, password)?;
            Ok(vec![Item::PrivateKey(KeyInfo::of(&key))])
        }
        Some("PKCS#12 file") => {
            let p12 = credential::parse_pkcs12(bytes, origin, password)?;
            let mut certificates = Vec::new();
            for (i, c) in p12.certs.iter().enumerate() {
                certificates.push(Identity::from_der(c).map_err(|e| Error::BadCertificate {
                    origin: origin.clone(),
                    index: i + 1,
                    reason: e.0,
                })?);
            }
            Ok(vec![Item::Pkcs12 {
                key: KeyInfo::of(&p12.key),
                certificates,
            }])
        }
        _ => {
            // SEC1 / PKCS#1 DER keys have no distinctive header: let the key loader try.
            match credential::parse_private_key(bytes, origin, password) {
                Ok(key) => Ok(vec![Item::PrivateKey(KeyInfo::of(&key))]),
                Err(_) => Err(Error::UnknownFormat {
                    origin: origin.clone(),
                    expected: "certificate, key, PKCS#12, CRL or CSR",
                }),
            }
        }
    }
}

fn certificate(der: &[u8], origin: &Origin, index: usize) -> Result<Item> {
    Identity::from_der(der)
        .map(|i| Item::Certificate(Box::new(i)))
        .map_err(|e| Error::BadCertificate {
            origin: origin.clone(),
            index,
            reason: e.0,
        })
}

fn crl(der: &[u8], origin: &Origin) -> Result<Item> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| Error::BadCrl {
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| RevokedEntry {
            serial: serial_hex(r.raw_serial()),
            revoked_at: r.revocation_date.to_datetime(),
            reason: r.reason_code().map(|(_, code)| reason_name(code.0)),
        })
        .collect();
    Ok(Item::Crl(CrlInfo {
        issuer: crate::dn::rfc4514(crl.issuer()),
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        crl_number: crl.crl_number().map(|n| n.to_str_radix(16)),
        revoked,
    }))
}

fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown",
    }
}

fn csr(der: &[u8], origin: &Origin) -> Result<Item> {
    let (_, req) = X509CertificationRequest::from_der(der).map_err(|e| Error::BadCsr {
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    let info = &req.certification_request_info;
    let mut sans = Sans::default();
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(n) => sans.dns.push((*n).to_owned()),
                        GeneralName::URI(u) => sans.uri.push((*u).to_owned()),
                        GeneralName::RFC822Name(e) => sans.email.push((*e).to_owned()),
                        GeneralName::IPAddress(b) => {
                            if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                sans.ip.push(a.into());
                            } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                sans.ip.push(a.into());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(Item::Csr(CsrInfo {
        subject: crate::dn::rfc4514(&info.subject),
        sans,
        key_algorithm: crate::identity::key_algorithm(&info.subject_pki),
        spki_sha256: SpkiHash::of(info.subject_pki.raw),
        signature_valid: req.verify_signature().is_ok(),
    }))
}
