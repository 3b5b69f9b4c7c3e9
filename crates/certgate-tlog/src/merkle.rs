//! RFC 6962 Merkle trees: hashing, tree heads, and inclusion and consistency proofs (generated
//! from any [`HashReader`], verified with the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms).
//!
//! Storage holds only the hashes of complete subtrees: `(level, index)` covers leaves
//! `[index·2^level, (index+1)·2^level)`. Every tree head and proof is computed from those, so the
//! same code serves an in-memory tree, a database and a client reading tiles.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A SHA-256 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Standard base64 with padding, as in checkpoints and proofs.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// `MTH({})`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Where complete-subtree hashes come from.
pub trait HashReader {
    /// The hash of the complete subtree at `level`, `index` (level 0: leaf hashes).
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error>;
}

/// The position of `(level, index)` in the append-only sequence of stored hashes: appending
/// leaf `i` stores its leaf hash, then the hash of every subtree that leaf completes, lowest
/// level first. A tree of `n` leaves stores `2n − popcount(n)` hashes.
pub fn stored_hash_index(level: u8, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    2 * last_leaf - u64::from(last_leaf.count_ones()) + u64::from(level)
}

/// How many hashes a tree of `n` leaves stores.
pub fn stored_hash_count(n: u64) -> u64 {
    2 * n - u64::from(n.count_ones())
}

/// The hashes to store when appending leaf `n` (whose leaf hash is `leaf`), given the tree of
/// `n` leaves before it: the leaf hash, then each subtree it completes.
pub fn hashes_to_store(
    n: u64,
    leaf: Hash,
    r: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, Error> {
    let mut out = vec![leaf];
    let mut h = leaf;
    let mut level = 0u8;
    let mut i = n;
    while i & 1 == 1 {
        let left = r.hash(level, i - 1)?;
        h = node_hash(&left, &h);
        level += 1;
        i >>= 1;
        out.push(h);
    }
    Ok(out)
}

/// `MTH(D[lo:hi])` for a range whose start is aligned to the largest power of two it contains
/// (always true in RFC 6962's recursion): the complete subtrees from the left, folded from the
/// right.
fn range_hash(lo: u64, hi: u64, r: &(impl HashReader + ?Sized)) -> Result<Hash, Error> {
    debug_assert!(lo < hi);
    let mut parts = Vec::new();
    let mut start = lo;
    while start < hi {
        // The largest aligned power of two that starts at `start` and fits.
        let mut level = 63 - (hi - start).leading_zeros() as u8;
        while start & ((1u64 << level) - 1) != 0 {
            level -= 1;
        }
        parts.push(r.hash(level, start >> level)?);
        start += 1u64 << level;
    }
    let mut h = parts.pop().ok_or(Error::Proof("empty range".into()))?;
    while let Some(left) = parts.pop() {
        h = node_hash(&left, &h);
    }
    Ok(h)
}

/// The root of the tree of the first `n` leaves.
pub fn tree_hash(n: u64, r: &(impl HashReader + ?Sized)) -> Result<Hash, Error> {
    if n == 0 {
        return Ok(empty_root());
    }
    range_hash(0, n, r)
}

fn split(n: u64) -> u64 {
    // The largest power of two smaller than n (n ≥ 2).
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 `PATH`), leaf
/// sibling first.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    r: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::Proof(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    let mut out = Vec::new();
    path(index, 0, size, r, &mut out)?;
    Ok(out)
}

fn path(
    m: u64,
    lo: u64,
    hi: u64,
    r: &(impl HashReader + ?Sized),
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    if hi - lo == 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(m, lo, lo + k, r, out)?;
        out.push(range_hash(lo + k, hi, r)?);
    } else {
        path(m, lo + k, hi, r, out)?;
        out.push(range_hash(lo, lo + k, r)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves (RFC 6962
/// `PROOF`).
pub fn consistency_proof(
    old: u64,
    new: u64,
    r: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, Error> {
    if old > new {
        return Err(Error::Proof(format!(
            "old size {old} is larger than new size {new}"
        )));
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(old, 0, new, true, r, &mut out)?;
    Ok(out)
}

fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    r: &(impl HashReader + ?Sized),
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(lo, hi, r)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, r, out)?;
        out.push(range_hash(lo + k, hi, r)?);
    } else {
        subproof(m - k, lo + k, hi, false, r, out)?;
        out.push(range_hash(lo, lo + k, r)?);
    }
    Ok(())
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::Proof(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(Error::Proof("the inclusion proof is too long".into()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::Proof("the inclusion proof is too short".into()));
    }
    if r != *root {
        return Err(Error::Proof(
            "the inclusion proof does not lead to the root".into(),
        ));
    }
    Ok(())
}

/// Verifies that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    let fail = |why: &str| Err(Error::Proof(format!("inconsistent trees: {why}")));
    if old > new {
        return fail("the old tree is larger than the new one");
    }
    if old == new {
        if !proof.is_empty() {
            return fail("a proof between equal sizes must be empty");
        }
        if old_root != new_root {
            return fail("same size, different roots");
        }
        return Ok(());
    }
    if old == 0 {
        if !proof.is_empty() {
            return fail("a proof from the empty tree must be empty");
        }
        if *old_root != empty_root() {
            return fail("the empty tree has the wrong root");
        }
        return Ok(());
    }
    if proof.is_empty() {
        return fail("the proof is empty");
    }
    let mut c: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        c.push(*old_root);
    }
    c.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (c[0], c[0]);
    for x in &c[1..] {
        if sn == 0 {
            return fail("the proof is too long");
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(x, &fr);
            sr = node_hash(x, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, x);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return fail("the proof is too short");
    }
    if fr != *old_root {
        return fail("the proof does not lead to the old root");
    }
    if sr != *new_root {
        return fail("the proof does not lead to the new root");
    }
    Ok(())
}

/// An in-memory tree: the stored hashes in append order. For tests, tools and small logs.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    stored: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry; returns its index.
    pub fn append(&mut self, entry: &[u8]) -> u64 {
        self.append_hash(leaf_hash(entry))
    }

    /// Appends a leaf hash; returns its index.
    pub fn append_hash(&mut self, leaf: Hash) -> u64 {
        let n = self.size;
        // Reading only hashes already stored cannot fail.
        let hashes = hashes_to_store(n, leaf, self).unwrap_or_default();
        self.stored.extend(hashes);
        self.size += 1;
        n
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        tree_hash(self.size, self).unwrap_or_else(|_| empty_root())
    }
}

impl HashReader for MemoryTree {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error> {
        let i = stored_hash_index(level, index);
        usize::try_from(i)
            .ok()
            .and_then(|i| self.stored.get(i))
            .copied()
            .ok_or_else(|| Error::Proof(format!("hash ({level}, {index}) is not stored")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH by the RFC's definition, straight from the leaves.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut t = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let e = format!("entry {i}");
            leaves.push(leaf_hash(e.as_bytes()));
            t.append(e.as_bytes());
        }
        (t, leaves)
    }

    #[test]
    fn known_roots() {
        let hex = |h: Hash| h.0.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            empty_root().to_base64(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        let mut t = MemoryTree::new();
        t.append(b"");
        assert!(hex(t.root()).starts_with("6e340b9c"));
        assert!(hex(t.root()).ends_with("fa01d"));
        let mut t = MemoryTree::new();
        for e in [b"a", b"b", b"c"] {
            t.append(e);
        }
        assert_eq!(
            hex(t.root()),
            "36642e73c2540ab121e3a6bf9545b0a24982cd830eb13d3cd19de3ce6c021ec1"
        );
    }

    #[test]
    fn stored_hash_layout() {
        // Leaf 0: [h(0,0)]; leaf 1: [h(0,1), h(1,0)]; leaf 2: [h(0,2)]; leaf 3: [h(0,3), h(1,1), h(2,0)].
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
        assert_eq!(stored_hash_index(0, 3), 4);
        assert_eq!(stored_hash_index(1, 1), 5);
        assert_eq!(stored_hash_index(2, 0), 6);
        assert_eq!(stored_hash_count(4), 7);
        let (t, _) = tree(1000);
        assert_eq!(t.stored.len() as u64, stored_hash_count(1000));
    }

    /// Every (m, n) with n < 40: roots match the definition, every proof verifies, and wrong
    /// inputs fail.
    #[test]
    fn exhaustive_small_trees() {
        let (t, leaves) = tree(40);
        for n in 0..40u64 {
            let root = tree_hash(n, &t).unwrap();
            assert_eq!(root, reference_root(&leaves[..n as usize]), "n={n}");
            for m in 0..n {
                let p = inclusion_proof(m, n, &t).unwrap();
                verify_inclusion(m, n, &leaves[m as usize], &p, &root).unwrap();
                let other = leaves[((m + 1) % n) as usize];
                if other != leaves[m as usize] {
                    assert!(verify_inclusion(m, n, &other, &p, &root).is_err());
                }
            }
            for m in 0..=n {
                let old = tree_hash(m, &t).unwrap();
                let c = consistency_proof(m, n, &t).unwrap();
                verify_consistency(m, n, &old, &root, &c).unwrap();
                if m > 0 && m < n {
                    assert!(verify_consistency(m, n, &root, &root, &c).is_err());
                    assert!(verify_consistency(m, n, &old, &old, &c).is_err());
                    assert!(verify_consistency(m, n, &old, &root, &c[..c.len() - 1]).is_err());
                }
            }
        }
    }
}
