//! A small CA for people who have none: create a root, issue server and client certificates,
//! publish CRLs. Pure: callers store the PEM it returns (see the binary's CA directory).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::identity::Identity;

/// Key algorithms the CA can generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default: small, fast, universally supported).
    #[default]
    EcdsaP256,
    /// Ed25519 (not accepted by some older clients).
    Ed25519,
    /// RSA 3072 with SHA-256.
    Rsa3072,
}

impl KeyType {
    /// Parses the CLI spelling (`ecdsa-p256`, `ed25519`, `rsa3072`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ecdsa-p256" => Some(Self::EcdsaP256),
            "ed25519" => Some(Self::Ed25519),
            "rsa3072" => Some(Self::Rsa3072),
            _ => None,
        }
    }

    /// Generates a fresh key.
    pub fn generate(self) -> Result<KeyPair> {
        let made = match self {
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            Self::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
        };
        made.map_err(|e| Error::Issue {
            what: "a key pair",
            reason: e.to_string(),
        })
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// Serial number, lower-case hex.
    pub serial: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Creates a self-signed root CA certificate valid for `days` from `now`.
pub fn create_root(
    name: &str,
    days: u32,
    key_type: KeyType,
    now: OffsetDateTime,
) -> Result<Issued> {
    root(name, days, key_type, now, None)
}

/// A self-signed CA that may sign server certificates only for `permitted` hosts (X.509 name
/// constraints, marked critical; see `name_constraints`): an interception CA whose key cannot
/// impersonate any other site to a client that checks constraints (OpenSSL, rustls, Python's
/// `ssl`, browsers).
pub fn create_constrained_root(
    name: &str,
    days: u32,
    key_type: KeyType,
    now: OffsetDateTime,
    permitted: &[crate::name_constraints::Permitted],
) -> Result<Issued> {
    root(
        name,
        days,
        key_type,
        now,
        Some(crate::name_constraints::constrained_root_params(permitted)),
    )
}

fn root(
    name: &str,
    days: u32,
    key_type: KeyType,
    now: OffsetDateTime,
    constraints: Option<rcgen::NameConstraints>,
) -> Result<Issued> {
    let key = key_type.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Valid for exactly `days`, from five minutes ago (clocks that run a little behind).
    params.not_before = now - Duration::minutes(5);
    params.not_after = params.not_before + Duration::days(i64::from(days));
    if constraints.is_some() {
        // A constrained CA is for TLS servers only: clients that honour a CA's extended key
        // usage (OpenSSL, browsers) then refuse anything else it might sign (S/MIME, code
        // signing, client certificates), whatever names those carry.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    params.name_constraints = constraints;
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key).map_err(|e| Error::Issue {
        what: "the CA certificate",
        reason: e.to_string(),
    })?;
    Ok(Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
        serial: crate::identity::serial_hex(&serial),
    })
}

/// What kind of leaf certificate to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKind {
    /// TLS server (EKU serverAuth).
    Server,
    /// TLS client (EKU clientAuth).
    Client,
}

/// A request for a leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// Server or client.
    pub kind: LeafKind,
    /// Common name. For a server, also a DNS (or IP) SAN.
    pub name: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ip: Vec<IpAddr>,
    /// URI SANs (e.g. a SPIFFE ID).
    pub uri: Vec<String>,
    /// Email SANs.
    pub email: Vec<String>,
    /// Validity in days.
    pub days: u32,
    /// Key algorithm of the new key.
    pub key_type: KeyType,
    /// CRL distribution points (`http://` URLs) written into the certificate, so verifiers
    /// know where its issuer publishes revocations.
    pub crl_urls: Vec<String>,
}

/// The request that renews `cert`: the same kind (from its extended key usage), common name,
/// subject alternative names and CRL distribution points, valid for `days`, with a key of the
/// same algorithm when a new one is made.
pub fn renewal_request(cert: &CertificateDer<'_>, days: u32) -> Result<LeafRequest> {
    let fail = |reason: String| Error::Issue {
        what: "the renewal",
        reason,
    };
    let id = Identity::from_der(cert).map_err(|e| fail(e.0))?;
    let eku = &id.extended_key_usage;
    let kind = if eku.iter().any(|e| e == "serverAuth") {
        LeafKind::Server
    } else if eku.iter().any(|e| e == "clientAuth") {
        LeafKind::Client
    } else {
        return Err(fail(
            "the certificate is for neither TLS servers nor clients (no serverAuth or clientAuth)"
                .to_owned(),
        ));
    };
    let name = id
        .common_name
        .clone()
        .ok_or_else(|| fail("the certificate has no common name".to_owned()))?;
    let key_type = if id.key_algorithm.contains("Ed25519") {
        KeyType::Ed25519
    } else if id.key_algorithm.starts_with("RSA") {
        KeyType::Rsa3072
    } else {
        KeyType::EcdsaP256
    };
    Ok(LeafRequest {
        kind,
        name,
        dns: id.sans.dns.clone(),
        ip: id.sans.ip.clone(),
        uri: id.sans.uri.clone(),
        email: id.sans.email.clone(),
        days,
        key_type,
        crl_urls: crate::crl::distribution_points(cert),
    })
}

/// A loaded CA: its certificate and signing key.
pub struct Ca {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    identity: Identity,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.identity.subject)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads a CA from its certificate (DER) and PKCS#8 private key (PEM).
    pub fn new(cert_der: CertificateDer<'static>, key_pem: &str) -> Result<Self> {
        let bad = |reason: String| Error::Issue {
            what: "anything: the CA does not load",
            reason,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("CA key: {e}")))?;
        let identity =
            Identity::from_der(&cert_der).map_err(|e| bad(format!("CA certificate: {}", e.0)))?;
        if crate::identity::SpkiHash::of(&rcgen::PublicKeyData::subject_public_key_info(&key))
            != identity.spki_sha256
        {
            return Err(bad(
                "the CA key does not match the CA certificate".to_owned()
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            issuer,
            cert_der,
            identity,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Issues a leaf certificate with a fresh key and a random serial.
    pub fn issue(&self, req: &LeafRequest, now: OffsetDateTime) -> Result<Issued> {
        self.issue_with_key(req, now, None)
    }

    /// [`Self::issue`] for an existing key (PKCS#8 PEM) instead of a fresh one: a renewal that
    /// keeps the key, so pins on its SPKI stay valid.
    pub fn issue_with_key(
        &self,
        req: &LeafRequest,
        now: OffsetDateTime,
        key_pem: Option<&str>,
    ) -> Result<Issued> {
        let fail = |reason: String| Error::Issue {
            what: "the certificate",
            reason,
        };
        let key = match key_pem {
            Some(pem) => KeyPair::from_pem(pem)
                .map_err(|e| fail(format!("the existing key cannot sign: {e}")))?,
            None => req.key_type.generate()?,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, req.name.as_str());
        let mut sans = Vec::new();
        let mut dns = req.dns.clone();
        let mut ips = req.ip.clone();
        // A server's name is always one of its SANs (clients check SANs, never the CN).
        if req.kind == LeafKind::Server {
            match req.name.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.insert(0, ip),
                Ok(_) => {}
                Err(_) if !dns.iter().any(|d| d.eq_ignore_ascii_case(&req.name)) => {
                    dns.insert(0, req.name.clone())
                }
                Err(_) => {}
            }
        }
        for d in &dns {
            let name = d
                .as_str()
                .try_into()
                .map_err(|_| fail(format!("`{d}` is not a valid DNS name")))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        for u in &req.uri {
            let uri = u
                .as_str()
                .try_into()
                .map_err(|_| fail(format!("`{u}` is not a valid URI (ASCII only)")))?;
            sans.push(SanType::URI(uri));
        }
        for e in &req.email {
            if !e.contains('@') {
                return Err(fail(format!("`{e}` is not an email address")));
            }
            let email = e
                .as_str()
                .try_into()
                .map_err(|_| fail(format!("`{e}` is not a valid email address")))?;
            sans.push(SanType::Rfc822Name(email));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match (req.kind, req.key_type) {
            (LeafKind::Server, KeyType::Rsa3072) => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = vec![match req.kind {
            LeafKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
            LeafKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.not_before = now - Duration::minutes(5);
        params.not_after = params.not_before + Duration::days(i64::from(req.days));
        for u in &req.crl_urls {
            if !u.starts_with("http://") {
                return Err(fail(format!(
                    "`{u}`: a CRL distribution point is a plain http:// URL"
                )));
            }
        }
        if !req.crl_urls.is_empty() {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: req.crl_urls.clone(),
            }];
        }
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            serial: crate::identity::serial_hex(&serial),
        })
    }

    /// Signs a CRL listing `revoked`, valid from `now` for `days`.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        number: u64,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<String> {
        self.crl_valid_for(revoked, number, now, Duration::days(i64::from(days)))
    }

    /// Signs a CRL listing `revoked`, valid from `now` for `validity`.
    pub fn crl_valid_for(
        &self,
        revoked: &[Revoked],
        number: u64,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<String> {
        let fail = |reason: String| Error::Issue {
            what: "the CRL",
            reason,
        };
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let serial = hex::decode(&r.serial)
                .map_err(|_| fail(format!("bad serial `{}` in the index", r.serial)))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: r.time,
                reason_code: r.reason.map(Reason::to_rcgen),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + validity,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| fail(e.to_string()))?;
        crl.pem().map_err(|e| fail(e.to_string()))
    }
}

/// One revoked certificate, as listed in a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Serial, lower-case hex.
    pub serial: String,
    /// When it was revoked.
    pub time: OffsetDateTime,
    /// Why, if given.
    pub reason: Option<Reason>,
}

/// RFC 5280 §5.3.1 revocation reasons that a person would pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// unspecified
    Unspecified,
    /// keyCompromise
    KeyCompromise,
    /// cACompromise
    CaCompromise,
    /// affiliationChanged
    AffiliationChanged,
    /// superseded
    Superseded,
    /// cessationOfOperation
    CessationOfOperation,
    /// privilegeWithdrawn
    PrivilegeWithdrawn,
}

impl Reason {
    /// Every reason with its CLI spelling.
    pub const ALL: [(&'static str, Reason); 7] = [
        ("unspecified", Reason::Unspecified),
        ("key-compromise", Reason::KeyCompromise),
        ("ca-compromise", Reason::CaCompromise),
        ("affiliation-changed", Reason::AffiliationChanged),
        ("superseded", Reason::Superseded),
        ("cessation-of-operation", Reason::CessationOfOperation),
        ("privilege-withdrawn", Reason::PrivilegeWithdrawn),
    ];

    /// Parses the CLI spelling (`key-compromise`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, r)| *r)
    }

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("unspecified", |(n, _)| n)
    }

    fn to_rcgen(self) -> RevocationReason {
        match self {
            Self::Unspecified => RevocationReason::Unspecified,
            Self::KeyCompromise => RevocationReason::KeyCompromise,
            Self::CaCompromise => RevocationReason::CaCompromise,
            Self::AffiliationChanged => RevocationReason::AffiliationChanged,
            Self::Superseded => RevocationReason::Superseded,
            Self::CessationOfOperation => RevocationReason::CessationOfOperation,
            Self::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// Writes a PKCS#12 file (PBES2 AES-256-CBC, PBKDF2, HMAC-SHA256 MAC) holding `key_der`
/// (PKCS#8) and `chain` (leaf first).
pub fn write_pkcs12(
    key_der: &[u8],
    chain: &[CertificateDer<'_>],
    name: &str,
    password: &str,
) -> Result<Vec<u8>> {
    let fail = |reason: String| Error::Issue {
        what: "the PKCS#12 file",
        reason,
    };
    let key = p12_keystore::PrivateKey::from_der(key_der).map_err(|e| fail(e.to_string()))?;
    let mut certs = Vec::with_capacity(chain.len());
    for c in chain {
        certs.push(
            p12_keystore::Certificate::from_der(c.as_ref()).map_err(|e| fail(e.to_string()))?,
        );
    }
    let local_key_id =
        crate::identity::CertHash::of(chain.first().map_or(&[][..], |c| c.as_ref())).0;
    let entry = p12_keystore::PrivateKeyChain::new(local_key_id.to_vec(), key, certs);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(name, p12_keystore::KeyStoreEntry::PrivateKeyChain(entry));
    store
        .writer(password)
        .write()
        .map_err(|e| fail(e.to_string()))
}

/// A random positive 128-bit serial (RFC 5280 allows 20 octets; CAB BR ask for 64+ random bits).
fn random_serial() -> Result<[u8; 16]> {
    let mut serial = [0u8; 16];
    random_bytes(&mut serial)?;
    // Positive, and never shorter than 16 bytes once leading zeros are dropped.
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

/// Fills `buf` from aws-lc's CSPRNG (through rustls' provider: no extra dependency).
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| Error::Issue {
            what: "random bytes",
            reason: "the system random number generator failed".to_owned(),
        })
}
