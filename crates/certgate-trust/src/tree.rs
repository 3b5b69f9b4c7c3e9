//! The digest of a directory tree, deterministic across machines:
//!
//! every entry below the root is one record, sorted by its relative path (UTF-8, `/`-separated,
//! compared bytewise):
//!
//! ```text
//! file\0<path>\0<sha256 hex of the contents>\n
//! link\0<path>\0<link target>\n
//! dir\0<path>\n
//! ```
//!
//! and the tree's digest is the SHA-256 of the concatenated records. Modes, owners and times are
//! not part of it; an empty directory is.

use sha2::{Digest as _, Sha256};

use crate::statement::Digest;

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file and the digest of its contents.
    File(Digest),
    /// A symbolic link and its target.
    Link(String),
    /// A directory.
    Dir,
}

/// The digest of a tree given its entries as (relative path, entry).
pub fn digest(mut entries: Vec<(String, Entry)>) -> Digest {
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (path, entry) in &entries {
        match entry {
            Entry::File(d) => {
                h.update(b"file\0");
                h.update(path.as_bytes());
                h.update(b"\0");
                h.update(hex::encode(d.0).as_bytes());
            }
            Entry::Link(target) => {
                h.update(b"link\0");
                h.update(path.as_bytes());
                h.update(b"\0");
                h.update(target.as_bytes());
            }
            Entry::Dir => {
                h.update(b"dir\0");
                h.update(path.as_bytes());
            }
        }
        h.update(b"\n");
    }
    Digest(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_content_does() {
        let a = vec![
            ("b.txt".to_owned(), Entry::File(Digest::of(b"b"))),
            ("a".to_owned(), Entry::Dir),
            ("a/x".to_owned(), Entry::Link("../b.txt".into())),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(digest(a.clone()), digest(b));
        let mut c = a.clone();
        c[0].1 = Entry::File(Digest::of(b"B"));
        assert_ne!(digest(a.clone()), digest(c));
        let mut e = a.clone();
        e.push(("empty".to_owned(), Entry::Dir));
        assert_ne!(digest(a), digest(e));
    }
}
