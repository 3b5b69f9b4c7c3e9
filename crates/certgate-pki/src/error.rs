//! The one error type of `certgate-pki`.

use std::fmt;

use crate::pem::PemError;

/// Where some bytes came from, for error messages: a file path or a config key holding inline PEM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Bytes read from the file at `path`.
    pub fn file(path: impl AsRef<std::path::Path>) -> Self {
        Self(format!("`{}`", path.as_ref().display()))
    }

    /// Inline PEM from the config key `key` (e.g. `identity.gateway.cert_pem`).
    pub fn inline(key: &str) -> Self {
        Self(format!("inline PEM in `{key}`"))
    }

    /// Any other description, used as is.
    pub fn other(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that can go wrong loading, inspecting or issuing credentials.
///
/// Each variant names the input ([`Origin`]) and says what was wrong in words a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is neither PEM nor a DER structure we know.
    #[error("{origin}: not a PEM file and not a DER {expected}")]
    UnknownFormat {
        /// The input.
        origin: Origin,
        /// What we looked for (e.g. "certificate").
        expected: &'static str,
    },
    /// The input is empty.
    #[error("{origin}: the file is empty")]
    Empty {
        /// The input.
        origin: Origin,
    },
    /// PEM syntax error.
    #[error("{origin}: {error}")]
    Pem {
        /// The input.
        origin: Origin,
        /// What was wrong.
        error: PemError,
    },
    /// No certificate where one was expected.
    #[error("{origin}: holds no certificate ({found})")]
    NoCertificate {
        /// The input.
        origin: Origin,
        /// What it holds instead.
        found: String,
    },
    /// No private key where one was expected.
    #[error("{origin}: holds no private key ({found})")]
    NoPrivateKey {
        /// The input.
        origin: Origin,
        /// What it holds instead.
        found: String,
    },
    /// A certificate does not parse.
    #[error("{origin}: certificate #{index} is not valid X.509: {reason}")]
    BadCertificate {
        /// The input.
        origin: Origin,
        /// 1-based position in the file.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The certificates cannot be put into one leaf-first chain.
    #[error("{origin}: {detail}")]
    ChainOrder {
        /// The input.
        origin: Origin,
        /// What is wrong with the order.
        detail: String,
    },
    /// A private key does not parse.
    #[error("{origin}: the private key is malformed: {reason}")]
    BadKey {
        /// The input.
        origin: Origin,
        /// Parser message.
        reason: String,
    },
    /// The key type is not one we can sign with.
    #[error(
        "{origin}: unsupported key algorithm {algorithm} (supported: ECDSA P-256/P-384/P-521, Ed25519, RSA 2048-8192)"
    )]
    UnsupportedKeyAlgorithm {
        /// The input.
        origin: Origin,
        /// The algorithm found.
        algorithm: String,
    },
    /// The key is encrypted and no password was given. Callers add how to give one (config
    /// keys or command-line flags), which this crate cannot know.
    #[error("{origin}: the {what} is encrypted but no password was given")]
    PasswordRequired {
        /// The input.
        origin: Origin,
        /// "private key" or "PKCS#12 file".
        what: &'static str,
    },
    /// The password does not decrypt the input.
    #[error("{origin}: wrong password for the {what}")]
    WrongPassword {
        /// The input.
        origin: Origin,
        /// "private key" or "PKCS#12 file".
        what: &'static str,
    },
    /// An encryption scheme we refuse or cannot read.
    #[error("{origin}: the {what} uses an unsupported encryption scheme: {detail}")]
    UnsupportedEncryption {
        /// The input.
        origin: Origin,
        /// "private key" or "PKCS#12 file".
        what: &'static str,
        /// Which scheme and what to do.
        detail: String,
    },
    /// OpenSSL's legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`).
    #[error(
        "{origin}: the key uses legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`, {label}), which is weak and not supported; \
         convert it to encrypted PKCS#8 with: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.key -out NEW.key"
    )]
    LegacyPemEncryption {
        /// The input.
        origin: Origin,
        /// The PEM label.
        label: String,
    },
    /// A PKCS#12 file does not parse.
    #[error("{origin}: not a valid PKCS#12 file: {reason}")]
    BadPkcs12 {
        /// The input.
        origin: Origin,
        /// Parser message.
        reason: String,
    },
    /// The private key belongs to another certificate.
    #[error(
        "the private key in {key_origin} does not match the certificate in {cert_origin} \
         (key SPKI sha256 {key_spki}, certificate SPKI sha256 {cert_spki})"
    )]
    KeyMismatch {
        /// Where the certificate came from.
        cert_origin: Origin,
        /// Where the key came from.
        key_origin: Origin,
        /// SHA-256 of the key's public key.
        key_spki: String,
        /// SHA-256 of the certificate's public key.
        cert_spki: String,
    },
    /// A CRL does not parse.
    #[error("{origin}: not a valid CRL: {reason}")]
    BadCrl {
        /// The input.
        origin: Origin,
        /// Parser message.
        reason: String,
    },
    /// A CSR does not parse or its signature does not verify.
    #[error("{origin}: not a valid certificate request: {reason}")]
    BadCsr {
        /// The input.
        origin: Origin,
        /// Parser message.
        reason: String,
    },
    /// A trust bundle cannot be built.
    #[error("trust `{name}`: {reason}")]
    Trust {
        /// The bundle's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Issuing a certificate or CRL failed.
    #[error("could not issue {what}: {reason}")]
    Issue {
        /// What we tried to issue.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
