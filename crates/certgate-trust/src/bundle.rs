//! Proof bundles: a C2SP tlog-proof whose `extra` field is the signed statement. Offline
//! verification checks the statement, its signer, the subject's digest, the checkpoint (per the
//! policy: log keys, witness quorum) and the statement's inclusion in it. It cannot know about
//! later statements: freshness is unknown.

use certgate_tlog::merkle;
use certgate_tlog::proof::TlogProof;

use crate::Error;
use crate::decide::{Verdict, decide};
use crate::policy::Policy;
use crate::statement::{Digest, Statement};

/// Verifies a proof bundle for `digest` under `policy`; returns the verdict its statement
/// gives and the size of the checkpoint it is included in.
pub fn verify(bytes: &[u8], digest: &Digest, policy: &Policy) -> Result<(Verdict, u64), Error> {
    let proof = TlogProof::parse(bytes)?;
    let signed = proof
        .extra
        .as_deref()
        .ok_or_else(|| Error::Bundle("no statement in the bundle (`extra` line missing)".into()))?;
    let (st, _) = Statement::open(signed)?;
    if st.digest != *digest {
        return Err(Error::Bundle(format!(
            "the bundle is about {}, not {digest} (a different or modified artifact)",
            st.digest
        )));
    }
    let (cp, _, _) = policy
        .log
        .open(proof.checkpoint.to_string().as_bytes(), &policy.origin)?;
    merkle::verify_inclusion(
        proof.index,
        cp.size,
        &merkle::leaf_hash(signed),
        &proof.proof,
        &cp.root,
    )?;
    Ok((decide([(proof.index, signed)], digest, policy), cp.size))
}
