//! A bounded cache of *successful* signature verifications, shared by one trust bundle.
//!
//! Why: verifying a client chain spends nearly all its time in public-key operations (an ECDSA
//! P-256 verify is ~50 µs here), and the same intermediates, CRLs and returning clients are
//! verified again and again. webpki takes its signature algorithms as trait objects, so we wrap
//! each one: a verification is skipped only when the exact same (algorithm, public key, message,
//! signature) tuple verified before. The full message is stored and compared byte for byte, so a
//! hit can never be forged by a different message that merely shares a signature.
//!
//! Failures are never cached; the cache is cleared when it reaches its bounds. It lives inside a
//! `TrustBundle`, so a reload of trust or CRLs starts with an empty cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

/// Entries kept before the cache is cleared.
const MAX_ENTRIES: usize = 4096;
/// Message bytes kept before the cache is cleared (CRLs can be large).
const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Inner {
    /// SHA-256(algorithm index, public key, signature) → (public key, message) that verified.
    entries: HashMap<[u8; 32], (Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

/// The shared cache.
#[derive(Default)]
pub(crate) struct SigCache {
    inner: Mutex<Inner>,
}

impl fmt::Debug for SigCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.inner.lock().map(|i| i.entries.len()).unwrap_or(0);
        f.debug_struct("SigCache").field("entries", &n).finish()
    }
}

fn key(alg: usize, public_key: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((alg as u64).to_be_bytes());
    h.update((public_key.len() as u64).to_be_bytes());
    h.update(public_key);
    h.update(signature);
    h.finalize().into()
}

impl SigCache {
    fn hit(&self, k: &[u8; 32], public_key: &[u8], message: &[u8]) -> bool {
        let Ok(inner) = self.inner.lock() else {
            return false;
        };
        inner
            .entries
            .get(k)
            .is_some_and(|(pk, msg)| pk == public_key && msg == message)
    }

    fn insert(&self, k: [u8; 32], public_key: &[u8], message: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let size = public_key.len() + message.len();
        if size > MAX_BYTES / 4 {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        if inner
            .entries
            .insert(k, (public_key.to_vec(), message.to_vec()))
            .is_none()
        {
            inner.bytes += size;
        }
    }
}

/// One provider algorithm with the cache in front of it.
pub(crate) struct Cached {
    index: usize,
    inner: &'static dyn SignatureVerificationAlgorithm,
    cache: Arc<SigCache>,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cached").field(&self.inner).finish()
    }
}

impl SignatureVerificationAlgorithm for Cached {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let k = key(self.index, public_key, signature);
        if self.cache.hit(&k, public_key, message) {
            return Ok(());
        }
        self.inner
            .verify_signature(public_key, message, signature)?;
        self.cache.insert(k, public_key, message);
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

/// Wraps every algorithm of `algs` around one shared cache.
pub(crate) fn wrap(algs: &'static [&'static dyn SignatureVerificationAlgorithm]) -> Vec<Cached> {
    let cache = Arc::new(SigCache::default());
    algs.iter()
        .enumerate()
        .map(|(index, inner)| Cached {
            index,
            inner: *inner,
            cache: Arc::clone(&cache),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Counting(std::sync::atomic::AtomicUsize);

    static COUNTER: Counting = Counting(std::sync::atomic::AtomicUsize::new(0));
    static ALGS: [&dyn SignatureVerificationAlgorithm; 1] = [&COUNTER];

    impl SignatureVerificationAlgorithm for Counting {
        // "Valid" means the signature equals the message reversed.
        fn verify_signature(
            &self,
            _pk: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), InvalidSignature> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let rev: Vec<u8> = message.iter().rev().copied().collect();
            if rev == signature {
                Ok(())
            } else {
                Err(InvalidSignature)
            }
        }
        fn public_key_alg_id(&self) -> AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_P256
        }
        fn signature_alg_id(&self) -> AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_SHA256
        }
    }

    #[test]
    fn hits_only_for_the_identical_tuple_and_never_caches_failures() {
        let algs = wrap(&ALGS);
        let a = &algs[0];
        let calls = || COUNTER.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(a.verify_signature(b"pk", b"abc", b"cba").is_ok());
        assert!(a.verify_signature(b"pk", b"abc", b"cba").is_ok());
        assert_eq!(
            calls(),
            1,
            "second identical verification must be a cache hit"
        );
        // Same key and signature, different message: must not hit, and must fail.
        assert!(a.verify_signature(b"pk", b"abd", b"cba").is_err());
        assert_eq!(calls(), 2);
        // Another public key with the same message and signature is verified afresh.
        assert!(a.verify_signature(b"pk2", b"abc", b"cba").is_ok());
        assert_eq!(calls(), 3);
        // Failures are re-checked every time.
        assert!(a.verify_signature(b"pk", b"xyz", b"bad").is_err());
        assert!(a.verify_signature(b"pk", b"xyz", b"bad").is_err());
        assert_eq!(calls(), 5);
    }
}
