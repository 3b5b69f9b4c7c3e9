//! C2SP signed notes (signed-note v1) with Ed25519 keys.
//!
//! ```text
//! <text lines, each ending in \n>
//! \n
//! — <key name> <base64(key ID ‖ signature)>\n      (one or more)
//! ```
//!
//! Verification follows the spec: signatures by unknown (name, key ID) pairs are ignored; a
//! known key's signature must verify or the whole note is rejected; at least one known key must
//! have signed.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Signature type byte of Ed25519 keys.
const ED25519_TYPE: u8 = 0x01;
/// Signature type byte of Ed25519 witness cosignatures (C2SP tlog-cosignature `cosignature/v1`).
const COSIGNATURE_TYPE: u8 = 0x04;
/// Notes with more signature lines than this are refused (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Notes longer than this are refused.
pub const MAX_NOTE: usize = 1 << 20;

const DASH: &str = "\u{2014} ";

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// `SHA-256(name ‖ "\n" ‖ type ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([sig_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(Error::Key(format!(
            "key name `{name}` must be non-empty, without spaces or `+`"
        )));
    }
    Ok(())
}

/// A public key that verifies notes: `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    sig_type: u8,
    public_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![self.sig_type];
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{:08x}+{}", self.name, self.id, b64().encode(key))
    }
}

impl Verifier {
    /// Parses the verifier key text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Key(
                "a verifier key is `<name>+<hex key ID>+<base64 key>`".into(),
            ));
        };
        check_name(name)?;
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Key(format!("key ID `{id}` is not 8 hex digits")));
        }
        let id = u32::from_str_radix(id, 16)
            .map_err(|_| Error::Key(format!("key ID `{id}` is not 8 hex digits")))?;
        let key = b64()
            .decode(key)
            .map_err(|_| Error::Key("the key is not base64".into()))?;
        let Some((&sig_type, public_key)) = key.split_first() else {
            return Err(Error::Key("the key is empty".into()));
        };
        if sig_type != ED25519_TYPE && sig_type != COSIGNATURE_TYPE {
            return Err(Error::Key(format!(
                "signature type 0x{sig_type:02x} is not supported (Ed25519 0x01, Ed25519 cosignature 0x04)"
            )));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| Error::Key("an Ed25519 public key is 32 bytes".into()))?;
        if key_id(name, sig_type, &public_key) != id {
            return Err(Error::Key(format!(
                "key ID {id:08x} does not match the name and key"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            sig_type,
            public_key,
        })
    }

    /// Whether this is a witness's cosignature key (type 0x04) rather than a log's signing key.
    pub fn is_witness(&self) -> bool {
        self.sig_type == COSIGNATURE_TYPE
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        if self.sig_type == ED25519_TYPE {
            return key.verify(text, sig).is_ok();
        }
        // cosignature/v1: u64 big-endian timestamp ‖ Ed25519 signature over
        // "cosignature/v1\ntime <t>\n" ‖ the note text.
        let Some((time, signature)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let message = [
            format!("cosignature/v1\ntime {}\n", u64::from_be_bytes(*time)).as_bytes(),
            text,
        ]
        .concat();
        key.verify(&message, signature).is_ok()
    }
}

/// The keys a reader trusts.
#[derive(Clone, Debug, Default)]
pub struct Verifiers(pub Vec<Verifier>);

impl Verifiers {
    fn find(&self, name: &str, id: u32) -> Option<&Verifier> {
        self.0.iter().find(|v| v.name == name && v.id == id)
    }
}

/// A private key that signs notes; its text form is Go's
/// `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ 32-byte seed)>`.
pub struct Signer {
    name: String,
    id: u32,
    sig_type: u8,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new key named `name` from 32 random bytes.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed)
            .map_err(|_| Error::Key("the system random generator failed".into()))?;
        Self::from_seed(name, seed)
    }

    /// The key named `name` with this Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, Error> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| Error::Key("not an Ed25519 seed".into()))?;
        let id = key_id(name, ED25519_TYPE, pair.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            id,
            sig_type: ED25519_TYPE,
            seed,
            pair,
        })
    }

    /// Parses the signer key text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| Error::Key("a signer key starts with `PRIVATE+KEY+`".into()))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Key(
                "a signer key is `PRIVATE+KEY+<name>+<hex key ID>+<base64 key>`".into(),
            ));
        };
        let key = b64()
            .decode(key)
            .map_err(|_| Error::Key("the key is not base64".into()))?;
        let Some((&sig_type, seed)) = key.split_first() else {
            return Err(Error::Key("the key is empty".into()));
        };
        let seed = <[u8; 32]>::try_from(seed)
            .map_err(|_| Error::Key("an Ed25519 private key is a 32-byte seed".into()))?;
        let signer = match sig_type {
            ED25519_TYPE => Self::from_seed(name, seed)?,
            COSIGNATURE_TYPE => Self::witness(name, seed)?,
            t => {
                return Err(Error::Key(format!(
                    "signature type 0x{t:02x} is not supported (Ed25519 0x01, cosignature 0x04)"
                )));
            }
        };
        if format!("{:08x}", signer.id) != id {
            return Err(Error::Key(format!(
                "key ID `{id}` does not match the name and key"
            )));
        }
        Ok(signer)
    }

    /// The signer key text. Secret: write it only to a 0600 file.
    pub fn to_secret_text(&self) -> String {
        let mut key = vec![self.sig_type];
        key.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            b64().encode(key)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> Verifier {
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(self.pair.public_key().as_ref());
        Verifier {
            name: self.name.clone(),
            id: self.id,
            sig_type: self.sig_type,
            public_key,
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A witness key: it cosigns checkpoints (`cosignature/v1`, type 0x04) instead of signing
    /// notes.
    pub fn witness(name: &str, seed: [u8; 32]) -> Result<Self, Error> {
        let mut s = Self::from_seed(name, seed)?;
        s.sig_type = COSIGNATURE_TYPE;
        s.id = key_id(name, COSIGNATURE_TYPE, s.pair.public_key().as_ref());
        Ok(s)
    }

    /// A witness's cosignature of a checkpoint `text` at unix time `time`.
    pub fn cosign(&self, text: &str, time: u64) -> Result<NoteSignature, Error> {
        if self.sig_type != COSIGNATURE_TYPE {
            return Err(Error::Key(format!("`{}` is not a witness key", self.name)));
        }
        let message = format!("cosignature/v1\ntime {time}\n{text}");
        let mut signature = time.to_be_bytes().to_vec();
        signature.extend_from_slice(self.pair.sign(message.as_bytes()).as_ref());
        Ok(NoteSignature {
            name: self.name.clone(),
            id: self.id,
            signature,
        })
    }

    /// Signs `text` into a signature line's parts.
    fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            id: self.id,
            signature: self.pair.sign(text.as_bytes()).as_ref().to_vec(),
        }
    }
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: u32,
    /// The signature bytes (64 for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, without its newline: `— <name> <base64(key ID ‖ signature)>`.
    pub fn to_line(&self) -> String {
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{DASH}{} {}", self.name, b64().encode(raw))
    }
}

/// A signed note: text and signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::Note("the text must end with a newline".into()));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(Error::Note(format!(
            "control character U+{:04X} in the text",
            c as u32
        )));
    }
    Ok(())
}

impl Note {
    /// Signs `text` (which must end in `\n`) with every signer.
    pub fn sign(text: &str, signers: &[&Signer]) -> Result<Self, Error> {
        check_text(text)?;
        if text.contains("\n\n") || text.starts_with('\n') {
            return Err(Error::Note("the text must not contain blank lines".into()));
        }
        Ok(Self {
            text: text.to_owned(),
            signatures: signers.iter().map(|s| s.sign(text)).collect(),
        })
    }

    /// Parses a note (without checking signatures).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_NOTE {
            return Err(Error::Note(format!(
                "{} bytes is longer than the {MAX_NOTE}-byte limit",
                bytes.len()
            )));
        }
        let msg = std::str::from_utf8(bytes).map_err(|_| Error::Note("not UTF-8".into()))?;
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| Error::Note("no blank line before the signatures".into()))?;
        let (text, sigs) = (&msg[..=split], &msg[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() {
            return Err(Error::Note("no signature lines".into()));
        }
        if !sigs.ends_with('\n') {
            return Err(Error::Note(
                "the last signature line must end with a newline".into(),
            ));
        }
        let mut signatures = Vec::new();
        for (i, line) in sigs.trim_end_matches('\n').split('\n').enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(Error::Note(format!(
                    "more than {MAX_SIGNATURES} signature lines"
                )));
            }
            let n = i + 1;
            let rest = line.strip_prefix(DASH).ok_or_else(|| {
                Error::Note(format!("signature line {n} does not start with `— `"))
            })?;
            let (name, sig) = rest.split_once(' ').ok_or_else(|| {
                Error::Note(format!("signature line {n} is not `— <name> <base64>`"))
            })?;
            check_name(name).map_err(|e| Error::Note(format!("signature line {n}: {e}")))?;
            let raw = b64()
                .decode(sig)
                .map_err(|_| Error::Note(format!("signature line {n}: not base64")))?;
            if raw.len() < 5 {
                return Err(Error::Note(format!(
                    "signature line {n}: too short for a key ID and a signature"
                )));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Checks the signatures against `verifiers`; returns the keys that verified.
    pub fn verify<'v>(&self, verifiers: &'v Verifiers) -> Result<Vec<&'v Verifier>, Error> {
        let mut ok = Vec::new();
        for s in &self.signatures {
            let Some(v) = verifiers.find(&s.name, s.id) else {
                continue;
            };
            if !v.verify(self.text.as_bytes(), &s.signature) {
                return Err(Error::Signature(format!(
                    "the signature by `{}` ({:08x}) is invalid",
                    s.name, s.id
                )));
            }
            if !ok.contains(&v) {
                ok.push(v);
            }
        }
        if ok.is_empty() {
            let names: Vec<String> = self
                .signatures
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.id))
                .collect();
            return Err(Error::Signature(format!(
                "no signature by a known key (signed by: {})",
                names.join(", ")
            )));
        }
        Ok(ok)
    }

    /// The signed text, with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds signatures (a rotated key) to the note.
    pub fn add_signatures(&mut self, signers: &[&Signer]) {
        for s in signers {
            self.signatures.push(s.sign(&self.text));
        }
    }

    /// Adds a signature line made elsewhere (a witness's cosignature).
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.signatures.push(sig);
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            writeln!(f, "{}", s.to_line())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn c2sp_vector_verifies() {
        let v = Verifier::parse(VKEY).unwrap();
        assert_eq!(v.id(), 0x530d903a);
        assert_eq!(v.to_string(), VKEY);
        let note = Note::parse(NOTE.as_bytes()).unwrap();
        assert_eq!(note.text(), "This is an example message.\n");
        let vs = Verifiers(vec![v]);
        assert_eq!(note.verify(&vs).unwrap().len(), 1);
        assert_eq!(note.to_string(), NOTE);
    }

    #[test]
    fn go_sumdb_key_id() {
        let v =
            Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
                .unwrap();
        assert_eq!(v.id(), 0x033de0ae);
    }

    #[test]
    fn bad_signature_by_known_key_rejects_unknown_is_ignored() {
        let a = Signer::generate("a.example/log").unwrap();
        let b = Signer::generate("b.example/witness").unwrap();
        let mut note = Note::sign("hello\n", &[&a]).unwrap();
        note.add_signatures(&[&b]);
        // Only a is known: b's signature is ignored.
        let only_a = Verifiers(vec![a.verifier()]);
        assert_eq!(note.verify(&only_a).unwrap().len(), 1);
        // A tampered text fails under a known key.
        let tampered = note.to_string().replacen("hello", "hellO", 1);
        let err = Note::parse(tampered.as_bytes())
            .unwrap()
            .verify(&only_a)
            .unwrap_err();
        assert!(err.to_string().contains("is invalid"), "{err}");
        // No known key at all.
        let err = note.verify(&Verifiers(vec![])).unwrap_err();
        assert!(
            err.to_string().contains("no signature by a known key"),
            "{err}"
        );
        // Round trip of the secret key text.
        let again = Signer::parse(&a.to_secret_text()).unwrap();
        assert_eq!(again.verifier(), a.verifier());
    }

    #[test]
    fn malformed_notes_are_refused_with_reasons() {
        for (input, want) in [
            ("no blank line\n\u{2014} a AAAAAAA=\n", "no blank line"),
            ("text\n\n", "no signature lines"),
            ("text\n\n\u{2014} a AAAAAAA=", "must end with a newline"),
            ("text\n\n- a AAAAAAA=\n", "does not start with"),
            ("text\n\n\u{2014} a !!!\n", "not base64"),
            ("text\n\n\u{2014} a AAA=\n", "too short"),
            ("te\u{7}xt\n\n\u{2014} a AAAAAAA=\n", "control character"),
        ] {
            let err = Note::parse(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let err = Verifier::parse(
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
