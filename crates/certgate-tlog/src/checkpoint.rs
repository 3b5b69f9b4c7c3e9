//! C2SP tlog-checkpoint: the signed tree head.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <base64 root hash>\n
//! [<extension line>\n]*
//! ```

use crate::Error;
use crate::merkle::Hash;
use crate::note::{Note, Signer, Verifiers};

/// A checkpoint's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `log.example.org/certgate`.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: Hash,
    /// Extension lines (not recommended; kept verbatim).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Parses a note text as a checkpoint.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::Checkpoint(why);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text must end with a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() || origin.chars().any(char::is_whitespace) {
            return Err(bad(format!(
                "origin `{origin}` must be non-empty and without spaces"
            )));
        }
        let size = lines
            .next()
            .ok_or_else(|| bad("missing the tree size line".into()))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(format!(
                "tree size `{size}` is not a decimal number without leading zeros"
            )));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad(format!("tree size `{size}` is too large")))?;
        let root = lines
            .next()
            .ok_or_else(|| bad("missing the root hash line".into()))?;
        let root = Hash::from_base64(root)
            .ok_or_else(|| bad(format!("root `{root}` is not base64 of 32 bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line".into()));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The note text.
    pub fn text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Signs the checkpoint into a note.
    pub fn sign(&self, signers: &[&Signer]) -> Result<Note, Error> {
        Note::sign(&self.text(), signers)
    }

    /// Parses and verifies a signed checkpoint: its note must verify under `log_keys`, and its
    /// origin must be `origin`. Returns the checkpoint and the note (kept as evidence).
    pub fn open(bytes: &[u8], origin: &str, log_keys: &Verifiers) -> Result<(Self, Note), Error> {
        let note = Note::parse(bytes)?;
        let cp = Self::parse(note.text())?;
        if cp.origin != origin {
            return Err(Error::Checkpoint(format!(
                "origin `{}` is not the expected `{origin}`",
                cp.origin
            )));
        }
        note.verify(log_keys)?;
        Ok((cp, note))
    }
}

/// Who must have signed a checkpoint: one of the log's keys and, when `quorum` > 0, at least
/// `quorum` distinct witnesses (C2SP `cosignature/v1`).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The log's signing keys (several during a rotation).
    pub logs: Verifiers,
    /// Witness cosignature keys.
    pub witnesses: Verifiers,
    /// How many witnesses must have cosigned.
    pub quorum: usize,
}

impl Policy {
    /// Opens a signed checkpoint under this policy; returns it, its note and the names of the
    /// witnesses that cosigned it.
    pub fn open(
        &self,
        bytes: &[u8],
        origin: &str,
    ) -> Result<(Checkpoint, Note, Vec<String>), Error> {
        if let Some(w) = self.logs.0.iter().find(|v| v.is_witness()) {
            return Err(Error::Key(format!(
                "`{}` is a witness key, not a log key",
                w.name()
            )));
        }
        if let Some(w) = self.witnesses.0.iter().find(|v| !v.is_witness()) {
            return Err(Error::Key(format!(
                "`{}` is not a witness (cosignature) key",
                w.name()
            )));
        }
        if self.quorum > self.witnesses.0.len() {
            return Err(Error::Key(format!(
                "a quorum of {} needs at least that many witness keys ({} given)",
                self.quorum,
                self.witnesses.0.len()
            )));
        }
        let (cp, note) = Checkpoint::open(bytes, origin, &self.logs)?;
        // Every known witness signature must verify (a bad one rejects the note), and enough of
        // them must be there.
        let mut witnessed = Vec::new();
        if !self.witnesses.0.is_empty() {
            match note.verify(&self.witnesses) {
                Ok(ws) => witnessed = ws.iter().map(|w| w.name().to_owned()).collect(),
                Err(Error::Signature(why)) if why.starts_with("no signature by a known key") => {}
                Err(e) => return Err(e),
            }
        }
        if witnessed.len() < self.quorum {
            return Err(Error::Signature(format!(
                "{} of the required {} witnesses cosigned this checkpoint",
                witnessed.len(),
                self.quorum
            )));
        }
        Ok((cp, note, witnessed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::empty_root;
    use crate::note::Verifier;

    #[test]
    fn round_trip_and_errors() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 0,
            root: empty_root(),
            extensions: vec![],
        };
        assert_eq!(
            cp.text(),
            "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse(&cp.text()).unwrap(), cp);
        let signer = Signer::generate("example.com/log").unwrap();
        let note = cp.sign(&[&signer]).unwrap();
        let keys = Verifiers(vec![signer.verifier()]);
        let (opened, _) =
            Checkpoint::open(note.to_string().as_bytes(), "example.com/log", &keys).unwrap();
        assert_eq!(opened, cp);
        let err = Checkpoint::open(note.to_string().as_bytes(), "other/log", &keys).unwrap_err();
        assert!(err.to_string().contains("not the expected"), "{err}");
        // Witnesses: a quorum of cosignatures, verified; a bad one rejects.
        let w1 = Signer::witness("w1.example", [1; 32]).unwrap();
        let w2 = Signer::witness("w2.example", [2; 32]).unwrap();
        let policy = Policy {
            logs: keys.clone(),
            witnesses: Verifiers(vec![w1.verifier(), w2.verifier()]),
            quorum: 2,
        };
        let err = policy
            .open(note.to_string().as_bytes(), "example.com/log")
            .unwrap_err();
        assert!(err.to_string().contains("0 of the required 2"), "{err}");
        let mut cosigned = note.clone();
        cosigned.add_signature(w1.cosign(cosigned.text(), 1_700_000_000).unwrap());
        let err = policy
            .open(cosigned.to_string().as_bytes(), "example.com/log")
            .unwrap_err();
        assert!(err.to_string().contains("1 of the required 2"), "{err}");
        cosigned.add_signature(w2.cosign(cosigned.text(), 1_700_000_001).unwrap());
        let (_, _, ws) = policy
            .open(cosigned.to_string().as_bytes(), "example.com/log")
            .unwrap();
        assert_eq!(ws, ["w1.example", "w2.example"]);
        let mut bad = note.clone();
        bad.add_signature(w1.cosign("other text\n", 1).unwrap());
        bad.add_signature(w2.cosign(bad.text(), 1).unwrap());
        let err = policy
            .open(bad.to_string().as_bytes(), "example.com/log")
            .unwrap_err();
        assert!(err.to_string().contains("is invalid"), "{err}");
        // A witness key's text round-trips with its own type.
        let text = w1.verifier().to_string();
        assert!(Verifier::parse(&text).unwrap().is_witness());
        for (text, want) in [
            (
                "o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
                "leading zeros",
            ),
            ("o\n1\nAAAA\n", "not base64 of 32 bytes"),
            ("o\n1\n", "missing the root"),
            (
                "o o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
                "without spaces",
            ),
            (
                "o\n99999999999999999999999\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
                "too large",
            ),
        ] {
            let err = Checkpoint::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
