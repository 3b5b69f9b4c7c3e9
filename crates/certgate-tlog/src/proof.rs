//! C2SP tlog-proof files: an entry's index, its inclusion proof and the signed checkpoint it is
//! included in, for offline verification.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <decimal>
//! <base64 hash>            (0 or more, leaf sibling first)
//!
//! <checkpoint note, verbatim>
//! ```

use base64::Engine as _;

use crate::Error;
use crate::checkpoint::Checkpoint;
use crate::merkle::{Hash, verify_inclusion};
use crate::note::{Note, Verifiers};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

impl TlogProof {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut t = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            t.push_str(&format!(
                "extra {}\n",
                base64::engine::general_purpose::STANDARD.encode(extra)
            ));
        }
        t.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            t.push_str(&h.to_base64());
            t.push('\n');
        }
        t.push('\n');
        t.push_str(&self.checkpoint.to_string());
        t
    }

    /// Parses a tlog-proof file.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |why: String| Error::ProofFile(why);
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint".into()))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad(format!("the first line must be `{HEADER}`")));
        }
        let mut next = lines.next();
        let mut extra = None;
        if let Some(rest) = next.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(
                base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| bad("`extra` is not base64".into()))?,
            );
            next = lines.next();
        }
        let index = next
            .and_then(|l| l.strip_prefix("index "))
            .ok_or_else(|| bad("missing the `index N` line".into()))?;
        if index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
            || (index.len() > 1 && index.starts_with('0'))
        {
            return Err(bad(format!("index `{index}` is not a decimal number")));
        }
        let index: u64 = index
            .parse()
            .map_err(|_| bad(format!("index `{index}` is too large")))?;
        let mut proof = Vec::new();
        for (i, l) in lines.enumerate() {
            if i >= 64 {
                return Err(bad("more than 64 proof hashes".into()));
            }
            proof.push(
                Hash::from_base64(l)
                    .ok_or_else(|| bad(format!("proof line {} is not a base64 hash", i + 1)))?,
            );
        }
        let checkpoint = Note::parse(checkpoint.as_bytes())?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// Verifies that the entry whose leaf hash is `leaf` is included in a checkpoint of
    /// `origin` signed by one of `log_keys`. Returns the checkpoint.
    pub fn verify(
        &self,
        leaf: &Hash,
        origin: &str,
        log_keys: &Verifiers,
    ) -> Result<Checkpoint, Error> {
        let (cp, _) = Checkpoint::open(self.checkpoint.to_string().as_bytes(), origin, log_keys)?;
        verify_inclusion(self.index, cp.size, leaf, &self.proof, &cp.root)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, inclusion_proof, leaf_hash};
    use crate::note::Signer;

    #[test]
    fn write_parse_verify() {
        let signer = Signer::generate("example.com/log").unwrap();
        let keys = Verifiers(vec![signer.verifier()]);
        let mut t = MemoryTree::new();
        for i in 0..10u8 {
            t.append(&[i]);
        }
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: t.size(),
            root: t.root(),
            extensions: vec![],
        };
        let p = TlogProof {
            extra: Some(b"hi".to_vec()),
            index: 7,
            proof: inclusion_proof(7, 10, &t).unwrap(),
            checkpoint: cp.sign(&[&signer]).unwrap(),
        };
        let text = p.to_text();
        let back = TlogProof::parse(text.as_bytes()).unwrap();
        assert_eq!(back, p);
        back.verify(&leaf_hash(&[7]), "example.com/log", &keys)
            .unwrap();
        let err = back
            .verify(&leaf_hash(&[8]), "example.com/log", &keys)
            .unwrap_err();
        assert!(
            err.to_string().contains("does not lead to the root"),
            "{err}"
        );
        for (bad, want) in [
            (
                text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
                "first line",
            ),
            (text.replacen("index 7", "index 07", 1), "not a decimal"),
            (text.replacen("index 7\n", "", 1), "missing the `index N`"),
        ] {
            let err = TlogProof::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
