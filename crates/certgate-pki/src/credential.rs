//! Loading credentials in every form users have: PEM and DER certificates and chains, PKCS#8,
//! SEC1 and PKCS#1 keys, encrypted PKCS#8, PKCS#12 (modern and `-legacy`).
//!
//! Everything here works on bytes plus an [`Origin`] for messages; reading files and passwords is
//! the caller's job.

use std::sync::Arc;

use pkcs8::der::Decode as _;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::SigningKey;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use crate::error::{Error, Origin, Result};
use crate::identity::{Identity, SpkiHash};
use crate::pem;

/// The longest chain (leaf plus intermediates) a credential may carry.
pub const MAX_CHAIN_LEN: usize = 16;

const KEY_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
];

/// Reads one or more certificates (PEM blocks in file order, or one DER certificate).
pub fn parse_certificates(bytes: &[u8], origin: &Origin) -> Result<Vec<CertificateDer<'static>>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty {
            origin: origin.clone(),
        });
    }
    let ders: Vec<Vec<u8>> = if pem::looks_like_pem(bytes) {
        let blocks = parse_pem(bytes, origin)?;
        let certs: Vec<Vec<u8>> = blocks
            .iter()
            .filter_map(|b| match b.label.as_str() {
                "CERTIFICATE" => Some(b.der.clone()),
                // OpenSSL's trusted form: the certificate followed by trust settings we ignore.
                "TRUSTED CERTIFICATE" => Some(strip_trust_aux(&b.der)),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(Error::NoCertificate {
                origin: origin.clone(),
                found: describe_labels(&blocks),
            });
        }
        certs
    } else {
        if X509Certificate::from_der(bytes).is_err() {
            return Err(match sniff_der(bytes) {
                Some(kind) => Error::NoCertificate {
                    origin: origin.clone(),
                    found: format!("it is a DER {kind}"),
                },
                None => Error::UnknownFormat {
                    origin: origin.clone(),
                    expected: "certificate",
                },
            });
        }
        vec![bytes.to_vec()]
    };
    for (i, der) in ders.iter().enumerate() {
        check_certificate(der, origin, i + 1)?;
    }
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

fn strip_trust_aux(der: &[u8]) -> Vec<u8> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) => der[..der.len() - rest.len()].to_vec(),
        Err(_) => der.to_vec(),
    }
}

fn check_certificate(der: &[u8], origin: &Origin, index: usize) -> Result<()> {
    let bad = |reason: String| Error::BadCertificate {
        origin: origin.clone(),
        index,
        reason,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes of trailing data", rest.len())));
    }
    Identity::from_parsed(der, &cert).map_err(|e| bad(e.0))?;
    Ok(())
}

/// A private key that the TLS provider can sign with.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key in the form rustls takes.
    pub der: PrivateKeyDer<'static>,
    /// The signing key (also proves the algorithm is supported).
    pub signer: Arc<dyn SigningKey>,
    /// SHA-256 of the key's public SubjectPublicKeyInfo.
    pub spki_sha256: SpkiHash,
    /// How the key was stored, e.g. `PKCS#8 (encrypted)`.
    pub format: &'static str,
}

/// Reads a private key: PEM (`PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY`,
/// `ENCRYPTED PRIVATE KEY`) or DER (PKCS#8, encrypted PKCS#8, SEC1, PKCS#1).
pub fn parse_private_key(
    bytes: &[u8],
    origin: &Origin,
    password: Option<&str>,
) -> Result<LoadedKey> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty {
            origin: origin.clone(),
        });
    }
    if pem::looks_like_pem(bytes) {
        let blocks = parse_pem(bytes, origin)?;
        let keys: Vec<&pem::Block> = blocks
            .iter()
            .filter(|b| KEY_LABELS.contains(&b.label.as_str()))
            .collect();
        let block = match keys.as_slice() {
            [] => {
                return Err(Error::NoPrivateKey {
                    origin: origin.clone(),
                    found: describe_labels(&blocks),
                });
            }
            [one] => *one,
            many => {
                return Err(Error::BadKey {
                    origin: origin.clone(),
                    reason: format!(
                        "the file holds {} private keys; put exactly one key in a key file",
                        many.len()
                    ),
                });
            }
        };
        return key_from_pem_block(block, origin, password);
    }
    // DER: try each container in turn; the first that parses structurally decides.
    if pkcs8::PrivateKeyInfoRef::from_der(bytes).is_ok() {
        return load_key(
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes.to_vec())),
            origin,
            "PKCS#8",
        );
    }
    if pkcs8::EncryptedPrivateKeyInfoRef::from_der(bytes).is_ok() {
        return decrypt_pkcs8(bytes, origin, password);
    }
    for (der, format) in [
        (
            PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bytes.to_vec())),
            "SEC1",
        ),
        (
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes.to_vec())),
            "PKCS#1",
        ),
    ] {
        if let Ok(key) = load_key(der, origin, format) {
            return Ok(key);
        }
    }
    Err(match sniff_der(bytes) {
        Some(kind) => Error::NoPrivateKey {
            origin: origin.clone(),
            found: format!("it is a DER {kind}"),
        },
        None => Error::UnknownFormat {
            origin: origin.clone(),
            expected: "private key",
        },
    })
}

/// Loads the key in one PEM block (one of the private-key labels).
pub(crate) fn key_from_pem_block(
    block: &pem::Block,
    origin: &Origin,
    password: Option<&str>,
) -> Result<LoadedKey> {
    if block
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Proc-Type") && v.contains("ENCRYPTED"))
    {
        return Err(Error::LegacyPemEncryption {
            origin: origin.clone(),
            label: block.label.clone(),
        });
    }
    match block.label.as_str() {
        "PRIVATE KEY" => load_key(
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.der.clone())),
            origin,
            "PKCS#8",
        ),
        "EC PRIVATE KEY" => load_key(
            PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(block.der.clone())),
            origin,
            "SEC1",
        ),
        "RSA PRIVATE KEY" => load_key(
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(block.der.clone())),
            origin,
            "PKCS#1",
        ),
        _ => decrypt_pkcs8(&block.der, origin, password),
    }
}

fn decrypt_pkcs8(der: &[u8], origin: &Origin, password: Option<&str>) -> Result<LoadedKey> {
    const WHAT: &str = "private key";
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der).map_err(|e| Error::BadKey {
        origin: origin.clone(),
        reason: format!("encrypted PKCS#8 structure: {e}"),
    })?;
    let Some(password) = password else {
        return Err(Error::PasswordRequired {
            origin: origin.clone(),
            what: WHAT,
        });
    };
    let doc = info.decrypt(password.as_bytes()).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed) => Error::WrongPassword {
            origin: origin.clone(),
            what: WHAT,
        },
        // A wrong password can also yield plaintext with valid padding that is not a key.
        pkcs8::Error::Asn1(_) => Error::WrongPassword {
            origin: origin.clone(),
            what: WHAT,
        },
        other => Error::UnsupportedEncryption {
            origin: origin.clone(),
            what: WHAT,
            detail: format!(
                "{other}; re-encrypt it with: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.key -out NEW.key"
            ),
        },
    })?;
    if pkcs8::PrivateKeyInfoRef::from_der(doc.as_bytes()).is_err() {
        return Err(Error::WrongPassword {
            origin: origin.clone(),
            what: WHAT,
        });
    }
    load_key(
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec())),
        origin,
        "PKCS#8 (encrypted)",
    )
}

fn load_key(
    der: PrivateKeyDer<'static>,
    origin: &Origin,
    format: &'static str,
) -> Result<LoadedKey> {
    let signer = any_supported_type(&der).map_err(|_| match key_algorithm_name(&der) {
        Some(algorithm) if !is_supported_algorithm(&algorithm) => Error::UnsupportedKeyAlgorithm {
            origin: origin.clone(),
            algorithm,
        },
        _ => Error::BadKey {
            origin: origin.clone(),
            reason: format!("the {format} key does not decode as an RSA, ECDSA or Ed25519 key"),
        },
    })?;
    let spki = signer.public_key().ok_or_else(|| Error::BadKey {
        origin: origin.clone(),
        reason: "cannot derive the public key".to_owned(),
    })?;
    Ok(LoadedKey {
        spki_sha256: SpkiHash::of(spki.as_ref()),
        der,
        signer,
        format,
    })
}

fn is_supported_algorithm(name: &str) -> bool {
    name.starts_with("RSA") || name.starts_with("ECDSA P-") || name == "Ed25519"
}

fn key_algorithm_name(der: &PrivateKeyDer<'_>) -> Option<String> {
    let PrivateKeyDer::Pkcs8(p8) = der else {
        return None;
    };
    let info = pkcs8::PrivateKeyInfoRef::from_der(p8.secret_pkcs8_der()).ok()?;
    let oid = info.algorithm.oid.to_string();
    Some(match oid.as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.2.840.10045.2.1" => {
            let curve = info
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_owned(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_owned(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_owned(),
                Some("1.3.132.0.10") => "ECDSA secp256k1".to_owned(),
                Some(other) => format!("ECDSA on curve {other}"),
                None => "ECDSA (no curve)".to_owned(),
            }
        }
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.3.101.110" => "X25519 (a key-agreement key, cannot sign)".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        other => format!("OID {other}"),
    })
}

/// What a PKCS#12 file held.
#[derive(Debug)]
pub struct Pkcs12Contents {
    /// The private key.
    pub key: LoadedKey,
    /// Every certificate in the file, in file order.
    pub certs: Vec<CertificateDer<'static>>,
}

/// Reads a PKCS#12 (`.p12`/`.pfx`) file, modern (PBES2/AES) or legacy (RC2/3DES). `None` and
/// `Some("")` both try the empty password.
pub fn parse_pkcs12(
    bytes: &[u8],
    origin: &Origin,
    password: Option<&str>,
) -> Result<Pkcs12Contents> {
    const WHAT: &str = "PKCS#12 file";
    if bytes.is_empty() {
        return Err(Error::Empty {
            origin: origin.clone(),
        });
    }
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password.unwrap_or(""))
        .map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) | p12_keystore::error::Error::UnpadError => {
                if password.is_none_or(str::is_empty) {
                    Error::PasswordRequired {
                        origin: origin.clone(),
                        what: WHAT,
                    }
                } else {
                    Error::WrongPassword {
                        origin: origin.clone(),
                        what: WHAT,
                    }
                }
            }
            p12_keystore::error::Error::UnsupportedEncryptionScheme
            | p12_keystore::error::Error::UnsupportedMacAlgorithm => Error::UnsupportedEncryption {
                origin: origin.clone(),
                what: WHAT,
                detail: format!(
                    "{e}; re-export it with: openssl pkcs12 -export (OpenSSL 3 defaults: AES-256 and PBKDF2)"
                ),
            },
            other => Error::BadPkcs12 {
                origin: origin.clone(),
                reason: other.to_string(),
            },
        })?;
    let key_bag = match archive.keys.as_slice() {
        [] => {
            return Err(Error::NoPrivateKey {
                origin: origin.clone(),
                found: format!(
                    "the PKCS#12 file has {} certificate(s) and no key",
                    archive.certs.len()
                ),
            });
        }
        [one] => one,
        many => {
            return Err(Error::BadPkcs12 {
                origin: origin.clone(),
                reason: format!(
                    "it holds {} private keys; certgate needs exactly one",
                    many.len()
                ),
            });
        }
    };
    let key = load_key(
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_bag.key.as_der().to_vec())),
        origin,
        "PKCS#12",
    )?;
    let certs: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            origin: origin.clone(),
            found: "the PKCS#12 file holds only a key".to_owned(),
        });
    }
    Ok(Pkcs12Contents { key, certs })
}

/// A certificate chain and the private key of its leaf, checked to belong together.
#[derive(Debug)]
pub struct Credential {
    /// Leaf first, then intermediates (never a root that the peer must already have, if given it is kept).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: LoadedKey,
    /// The leaf's identity.
    pub identity: Identity,
    /// Things worth telling the user that are not errors (e.g. "chain was reordered").
    pub notes: Vec<String>,
}

impl Credential {
    /// Puts `certs` into leaf-first order (fixing a wrong order, rejecting unrelated
    /// certificates) and checks that `key` belongs to the leaf.
    pub fn assemble(
        certs: Vec<CertificateDer<'static>>,
        cert_origin: &Origin,
        key: LoadedKey,
        key_origin: &Origin,
    ) -> Result<Self> {
        let (chain, notes) = order_chain(certs, cert_origin, Some(key.spki_sha256))?;
        let identity = Identity::from_der(&chain[0]).map_err(|e| Error::BadCertificate {
            origin: cert_origin.clone(),
            index: 1,
            reason: e.0,
        })?;
        if identity.spki_sha256 != key.spki_sha256 {
            return Err(Error::KeyMismatch {
                cert_origin: cert_origin.clone(),
                key_origin: key_origin.clone(),
                key_spki: key.spki_sha256.to_hex(),
                cert_spki: identity.spki_sha256.to_hex(),
            });
        }
        Ok(Self {
            chain,
            key,
            identity,
            notes,
        })
    }
}

struct Node {
    der: CertificateDer<'static>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    spki: SpkiHash,
    name: String,
}

/// Orders certificates leaf first. The leaf is the certificate whose key is `leaf_spki` when given,
/// else the one certificate that issued none of the others. Returns the chain and a note when the
/// order had to be fixed.
pub fn order_chain(
    certs: Vec<CertificateDer<'static>>,
    origin: &Origin,
    leaf_spki: Option<SpkiHash>,
) -> Result<(Vec<CertificateDer<'static>>, Vec<String>)> {
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            origin: origin.clone(),
            found: "nothing".to_owned(),
        });
    }
    if certs.len() > MAX_CHAIN_LEN {
        return Err(Error::ChainOrder {
            origin: origin.clone(),
            detail: format!(
                "the chain has {} certificates; at most {MAX_CHAIN_LEN} are supported",
                certs.len()
            ),
        });
    }
    if certs.len() == 1 {
        return Ok((certs, Vec::new()));
    }
    let mut nodes = Vec::with_capacity(certs.len());
    for (i, der) in certs.into_iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| Error::BadCertificate {
            origin: origin.clone(),
            index: i + 1,
            reason: e.to_string(),
        })?;
        let node = Node {
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            spki: SpkiHash::of(cert.public_key().raw),
            name: crate::dn::rfc4514(cert.subject()),
            der: der.clone(),
        };
        nodes.push(node);
    }
    let leaf = match leaf_spki.and_then(|spki| nodes.iter().position(|n| n.spki == spki)) {
        Some(i) => i,
        None => {
            let is_issuer_of_other = |i: usize| {
                nodes.iter().enumerate().any(|(j, other)| {
                    j != i && other.issuer == nodes[i].subject && other.subject != other.issuer
                })
            };
            let leaves: Vec<usize> = (0..nodes.len())
                .filter(|i| !is_issuer_of_other(*i))
                .collect();
            match leaves.as_slice() {
                [one] => *one,
                // With a key to match, a mismatch is reported by the caller with both hashes.
                _ if leaf_spki.is_some() => 0,
                [] => 0,
                many => {
                    let names: Vec<String> = many
                        .iter()
                        .map(|i| format!("#{} ({})", i + 1, nodes[*i].name))
                        .collect();
                    return Err(Error::ChainOrder {
                        origin: origin.clone(),
                        detail: format!(
                            "holds more than one leaf certificate: {}; put one chain per file",
                            names.join(", ")
                        ),
                    });
                }
            }
        }
    };
    let mut order = vec![leaf];
    let mut current = leaf;
    while nodes[current].subject != nodes[current].issuer {
        let next = (0..nodes.len())
            .find(|j| !order.contains(j) && nodes[*j].subject == nodes[current].issuer);
        match next {
            Some(j) => {
                order.push(j);
                current = j;
            }
            None => break,
        }
    }
    if order.len() != nodes.len() {
        let stray: Vec<String> = (0..nodes.len())
            .filter(|i| !order.contains(i))
            .map(|i| format!("#{} ({})", i + 1, nodes[i].name))
            .collect();
        return Err(Error::ChainOrder {
            origin: origin.clone(),
            detail: format!(
                "certificate(s) {} are not part of the chain of the leaf #{} ({})",
                stray.join(", "),
                leaf + 1,
                nodes[leaf].name
            ),
        });
    }
    let mut notes = Vec::new();
    if order.iter().enumerate().any(|(pos, i)| pos != *i) {
        let shown: Vec<String> = order.iter().map(|i| format!("#{}", i + 1)).collect();
        notes.push(format!(
            "{origin}: certificates were not in leaf-first order; using the order {}",
            shown.join(", ")
        ));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let chain = order
        .iter()
        .filter_map(|i| slots[*i].take().map(|n| n.der))
        .collect();
    Ok((chain, notes))
}

fn parse_pem(bytes: &[u8], origin: &Origin) -> Result<Vec<pem::Block>> {
    pem::parse(bytes).map_err(|error| Error::Pem {
        origin: origin.clone(),
        error,
    })
}

fn describe_labels(blocks: &[pem::Block]) -> String {
    if blocks.is_empty() {
        return "no PEM blocks".to_owned();
    }
    let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
    format!("it has: {}", labels.join(", "))
}

/// Guesses what a DER blob is, for "you gave me X where Y was expected" messages.
pub fn sniff_der(bytes: &[u8]) -> Option<&'static str> {
    if X509Certificate::from_der(bytes).is_ok() {
        return Some("certificate");
    }
    if x509_parser::revocation_list::CertificateRevocationList::from_der(bytes).is_ok() {
        return Some("CRL");
    }
    if x509_parser::certification_request::X509CertificationRequest::from_der(bytes).is_ok() {
        return Some("certificate request");
    }
    if pkcs8::PrivateKeyInfoRef::from_der(bytes).is_ok() {
        return Some("PKCS#8 private key");
    }
    if pkcs8::EncryptedPrivateKeyInfoRef::from_der(bytes).is_ok() {
        return Some("encrypted PKCS#8 private key");
    }
    if looks_like_pkcs12(bytes) {
        return Some("PKCS#12 file");
    }
    None
}

/// True when `bytes` start like a PFX: SEQUENCE { INTEGER 3, SEQUENCE { OID pkcs7-data ...
pub fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    // The version INTEGER 3 follows the outer SEQUENCE header (2 to 5 bytes).
    bytes.first() == Some(&0x30)
        && (2..=5).any(|off| bytes.get(off..off + 3) == Some(&[0x02, 0x01, 0x03][..]))
        && bytes.windows(11).take(64).any(|w| {
            w == [
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
            ]
        })
}
