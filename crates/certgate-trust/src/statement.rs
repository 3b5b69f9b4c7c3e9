//! Statements: what a publisher says about a digest, as a signed note.
//!
//! ```text
//! content-trust/v1
//! subject <file|tree|oci|digest|key> sha256:<64 hex>
//! status <trusted|untrusted|unsupported|revoked-key>
//! signer <key name>+<8 hex key ID>
//! time <unix seconds>
//! [name <artifact name>]
//! [version <artifact version>]
//!
//! — <key name> <base64(key ID ‖ Ed25519 signature)>
//! ```
//!
//! A key revocation is a statement with `subject key sha256:<SHA-256 of the verifier key text>`
//! and `status revoked-key`, signed by that key: whoever holds a key can always revoke it.

use std::fmt;

use certgate_tlog::note::{Note, Signer, Verifier, Verifiers};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The first line of every statement this version writes and reads.
pub const HEADER: &str = "content-trust/v1";

/// A SHA-256 digest, written `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (alg, hex_digits) = s
            .split_once(':')
            .ok_or_else(|| Error::Digest(format!("`{s}` is not `sha256:<hex>`")))?;
        if alg != "sha256" {
            return Err(Error::Digest(format!(
                "algorithm `{alg}` is not supported (only sha256)"
            )));
        }
        if hex_digits.len() != 64 || !hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Digest(format!(
                "`{hex_digits}` is not 64 hex digits"
            )));
        }
        let bytes = hex::decode(hex_digits.to_ascii_lowercase())
            .map_err(|_| Error::Digest(format!("`{hex_digits}` is not hex")))?;
        Ok(Self(
            bytes
                .try_into()
                .map_err(|_| Error::Digest("not 32 bytes".into()))?,
        ))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest that names a key in a revocation statement.
    pub fn of_key(key: &Verifier) -> Self {
        Self::of(key.to_string().as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// What kind of thing the digest is of (informational: subjects match by digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    /// A file's bytes.
    File,
    /// A directory tree (see [`crate::tree`]).
    Tree,
    /// An OCI manifest digest.
    Oci,
    /// A bare digest.
    Digest,
    /// A signer's verifier key (revocations).
    Key,
}

impl SubjectKind {
    const ALL: [(&'static str, SubjectKind); 5] = [
        ("file", SubjectKind::File),
        ("tree", SubjectKind::Tree),
        ("oci", SubjectKind::Oci),
        ("digest", SubjectKind::Digest),
        ("key", SubjectKind::Key),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("digest", |(n, _)| *n)
    }
}

/// What the statement says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Good to use.
    Trusted,
    /// Must not be used (a bad release).
    Untrusted,
    /// No longer supported.
    Unsupported,
    /// The signing key itself is revoked (subject kind `key`).
    RevokedKey,
}

impl Status {
    const ALL: [(&'static str, Status); 4] = [
        ("trusted", Status::Trusted),
        ("untrusted", Status::Untrusted),
        ("unsupported", Status::Unsupported),
        ("revoked-key", Status::RevokedKey),
    ];

    /// The statement spelling.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("trusted", |(n, _)| *n)
    }
}

/// A publisher's statement about a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// What the digest is of.
    pub kind: SubjectKind,
    /// The subject's digest.
    pub digest: Digest,
    /// What is said about it.
    pub status: Status,
    /// The signer's key name.
    pub signer: String,
    /// The signer's key ID.
    pub signer_id: u32,
    /// Unix time of signing (the signer's clock; the log index orders statements).
    pub time: u64,
    /// Artifact name (also the namespace a policy trusts signers for).
    pub name: Option<String>,
    /// Artifact version.
    pub version: Option<String>,
}

fn word(field: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Statement(format!(
            "{field} `{v}` must be non-empty, without spaces"
        )));
    }
    Ok(())
}

impl Statement {
    /// The note text.
    pub fn text(&self) -> String {
        let mut t = format!(
            "{HEADER}\nsubject {} {}\nstatus {}\nsigner {}+{:08x}\ntime {}\n",
            self.kind.name(),
            self.digest,
            self.status.name(),
            self.signer,
            self.signer_id,
            self.time
        );
        if let Some(n) = &self.name {
            t.push_str(&format!("name {n}\n"));
        }
        if let Some(v) = &self.version {
            t.push_str(&format!("version {v}\n"));
        }
        t
    }

    /// Parses a statement's text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::Statement(why);
        let mut lines = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text must end with a newline".into()))?
            .split('\n');
        let header = lines.next().unwrap_or_default();
        if header != HEADER {
            return Err(bad(if header.starts_with("content-trust/") {
                format!("version `{header}` is not supported (this certgate reads {HEADER})")
            } else {
                format!("not a content-trust statement (first line `{header}`)")
            }));
        }
        let mut field = |name: &str| -> Result<String, Error> {
            let line = lines
                .next()
                .ok_or_else(|| bad(format!("missing the `{name}` line")))?;
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("expected `{name} ...`, found `{line}`")))
        };
        let subject = field("subject")?;
        let (kind, digest) = subject
            .split_once(' ')
            .ok_or_else(|| bad(format!("subject `{subject}` is not `<kind> sha256:<hex>`")))?;
        let kind = SubjectKind::ALL
            .iter()
            .find(|(n, _)| *n == kind)
            .map(|(_, k)| *k)
            .ok_or_else(|| bad(format!("unknown subject kind `{kind}`")))?;
        let digest = Digest::parse(digest)?;
        let status = field("status")?;
        let status = Status::ALL
            .iter()
            .find(|(n, _)| *n == status)
            .map(|(_, s)| *s)
            .ok_or_else(|| bad(format!("unknown status `{status}`")))?;
        let signer = field("signer")?;
        let (signer, id) = signer
            .rsplit_once('+')
            .ok_or_else(|| bad(format!("signer `{signer}` is not `<name>+<key ID>`")))?;
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("signer key ID `{id}` is not 8 hex digits")));
        }
        let signer_id = u32::from_str_radix(id, 16).map_err(|_| bad("bad key ID".into()))?;
        let time = field("time")?;
        if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("time `{time}` is not a number of seconds")));
        }
        let time = time
            .parse()
            .map_err(|_| bad(format!("time `{time}` is too large")))?;
        let mut name = None;
        let mut version = None;
        for line in lines {
            match line.split_once(' ') {
                Some(("name", v)) if name.is_none() => name = Some(v.to_owned()),
                Some(("version", v)) if version.is_none() => version = Some(v.to_owned()),
                _ => return Err(bad(format!("unexpected line `{line}`"))),
            }
        }
        if (status == Status::RevokedKey) != (kind == SubjectKind::Key) {
            return Err(bad(
                "`revoked-key` goes with subject kind `key`, and only with it".into(),
            ));
        }
        Ok(Self {
            kind,
            digest,
            status,
            signer: signer.to_owned(),
            signer_id,
            time,
            name,
            version,
        })
    }

    /// Signs the statement with `signer` (whose name and key ID it must carry).
    pub fn sign(&self, signer: &Signer) -> Result<Note, Error> {
        let v = signer.verifier();
        if v.name() != self.signer || v.id() != self.signer_id {
            return Err(Error::Statement(format!(
                "the statement names signer {}+{:08x}, not the key {}+{:08x}",
                self.signer,
                self.signer_id,
                v.name(),
                v.id()
            )));
        }
        if let Some(n) = &self.name {
            word("name", n)?;
        }
        if let Some(v) = &self.version {
            word("version", v)?;
        }
        Ok(Note::sign(&self.text(), &[signer])?)
    }

    /// Parses a signed statement (a log entry or a proof bundle's payload) without checking
    /// its signature.
    pub fn open(bytes: &[u8]) -> Result<(Self, Note), Error> {
        let note = Note::parse(bytes)?;
        let st = Self::parse(note.text())?;
        Ok((st, note))
    }

    /// Whether `note` carries a valid signature by `key`, which must be the statement's signer.
    pub fn signed_by(&self, note: &Note, key: &Verifier) -> bool {
        key.name() == self.signer
            && key.id() == self.signer_id
            && note.verify(&Verifiers(vec![key.clone()])).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sign_and_errors() {
        let key = Signer::from_seed("publisher.example", [9; 32]).unwrap();
        let v = key.verifier();
        let st = Statement {
            kind: SubjectKind::File,
            digest: Digest::of(b"release"),
            status: Status::Trusted,
            signer: v.name().to_owned(),
            signer_id: v.id(),
            time: 1_700_000_000,
            name: Some("my-addon".into()),
            version: Some("1.2.3".into()),
        };
        let note = st.sign(&key).unwrap();
        let (back, note2) = Statement::open(note.to_string().as_bytes()).unwrap();
        assert_eq!(back, st);
        assert!(back.signed_by(&note2, &v));
        let other = Signer::from_seed("publisher.example", [8; 32]).unwrap();
        assert!(!back.signed_by(&note2, &other.verifier()));
        let text = st.text();
        for (bad, want) in [
            (
                text.replace("content-trust/v1", "content-trust/v2"),
                "version `content-trust/v2` is not supported",
            ),
            (text.replace("sha256:", "sha1:"), "only sha256"),
            (
                text.replace("status trusted", "status maybe"),
                "unknown status",
            ),
            (
                text.replace("subject file", "subject blob"),
                "unknown subject kind",
            ),
            (text.replace("time 1700000000", "time soon"), "not a number"),
            (
                text.replace("status trusted", "status revoked-key"),
                "goes with subject kind `key`",
            ),
            (format!("{text}extra line\n"), "unexpected line"),
        ] {
            let err = Statement::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
