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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::empty_root;

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
