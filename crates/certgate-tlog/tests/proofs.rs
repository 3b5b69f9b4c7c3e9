//! Properties of proofs on random trees up to 2,000 entries, and tree hashes checked against an
//! independent implementation (Python's `hashlib`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use certgate_tlog::merkle::{
    Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, tree_hash, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append(format!("leaf {i}").as_bytes());
    }
    t
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[bit / 8 % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_any_flipped_bit_fails(size in 1u64..2000, pick in any::<u64>(), bit in 0usize..256, which in any::<usize>()) {
        let t = tree(size);
        let index = pick % size;
        let root = t.root();
        let leaf = leaf_hash(format!("leaf {index}").as_bytes());
        let proof = inclusion_proof(index, size, &t).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());
        prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = which % bad.len();
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_flipped_bit_fails(new in 1u64..2000, pick in any::<u64>(), bit in 0usize..256, which in any::<usize>()) {
        let t = tree(new);
        let old = 1 + pick % new;
        let (old_root, new_root) = (tree_hash(old, &t).unwrap(), t.root());
        let proof = consistency_proof(old, new, &t).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = which % bad.len();
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
        }
    }
}

/// RFC 6962 roots computed by a short Python program from the definition, for sizes 0..=70.
#[test]
fn roots_match_python_hashlib() {
    let python = certgate_testkit::require_peer!("python3");
    let script = r#"
import hashlib
def mth(d):
    if len(d) == 0: return hashlib.sha256(b"").digest()
    if len(d) == 1: return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d): k *= 2
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()
leaves = [("leaf %d" % i).encode() for i in range(71)]
for n in range(71): print(mth(leaves[:n]).hex())
"#;
    let out = Command::new(python).args(["-c", script]).output().unwrap();
    assert!(out.status.success());
    let expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let t = tree(70);
    for (n, want) in expected.iter().enumerate() {
        let got: String = tree_hash(n as u64, &t)
            .unwrap()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&got, want, "size {n}");
    }
}
