//! Password protection for publisher signing keys.
//!
//! An encrypted key file is one line:
//!
//! ```text
//! ENCRYPTED+KEY+pbkdf2-sha256+<iterations>+<salt>+<nonce>+<ciphertext>   (URL-safe base64)
//! ```
//!
//! The plaintext is the key's `PRIVATE+KEY+...` text; the cipher is AES-256-GCM with a key
//! derived by PBKDF2-HMAC-SHA256 (600,000 iterations by default) from the password and a random
//! 16-byte salt. A wrong password fails the authentication tag: it is reported as such, never as
//! a damaged key.

use std::num::NonZeroU32;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::pbkdf2;
use base64::Engine as _;

use crate::Error;

const PREFIX: &str = "ENCRYPTED+KEY+pbkdf2-sha256+";
/// PBKDF2 iterations for new files (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const ITERATIONS: u32 = 600_000;

/// URL-safe base64 without padding: no `+` to clash with the separators.
fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// Whether a key file's text is encrypted.
pub fn is_encrypted(text: &str) -> bool {
    text.trim_start().starts_with("ENCRYPTED+KEY+")
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> Result<LessSafeKey, Error> {
    let rounds = NonZeroU32::new(iterations)
        .ok_or_else(|| Error::KeyFile("zero PBKDF2 iterations".into()))?;
    let mut key = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut key,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &key)
        .map_err(|_| Error::KeyFile("cannot set up AES-256-GCM".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Encrypts a key's secret text with `password`.
pub fn encrypt(secret: &str, password: &str, iterations: u32) -> Result<String, Error> {
    if password.is_empty() {
        return Err(Error::KeyFile("the password is empty".into()));
    }
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut salt)
        .and_then(|()| aws_lc_rs::rand::fill(&mut nonce))
        .map_err(|_| Error::KeyFile("the system random generator failed".into()))?;
    let key = derive(password, &salt, iterations)?;
    let mut data = secret.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| Error::KeyFile("encryption failed".into()))?;
    Ok(format!(
        "{PREFIX}{iterations}+{}+{}+{}",
        b64().encode(salt),
        b64().encode(nonce),
        b64().encode(data)
    ))
}

/// Decrypts an encrypted key file's text.
pub fn decrypt(text: &str, password: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::KeyFile(why.to_owned());
    let rest = text
        .trim()
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("not an encrypted key (expected ENCRYPTED+KEY+pbkdf2-sha256+...)"))?;
    let parts: Vec<&str> = rest.split('+').collect();
    let [iterations, salt, nonce, data] = parts.as_slice() else {
        return Err(bad(
            "damaged: expected iterations, salt, nonce and ciphertext",
        ));
    };
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| bad("damaged: bad iteration count"))?;
    if !(1_000..=100_000_000).contains(&iterations) {
        return Err(bad("damaged: implausible iteration count"));
    }
    let salt = b64()
        .decode(salt)
        .map_err(|_| bad("damaged: salt is not base64"))?;
    let nonce: [u8; 12] = b64()
        .decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("damaged: bad nonce"))?;
    let mut data = b64()
        .decode(data)
        .map_err(|_| bad("damaged: ciphertext is not base64"))?;
    let key = derive(password, &salt, iterations)?;
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| bad("wrong password (or a damaged file)"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad("damaged: not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let secret = "PRIVATE+KEY+x+00000000+AQ==";
        let enc = encrypt(secret, "correct horse", 1_000).unwrap();
        assert!(is_encrypted(&enc));
        assert_eq!(decrypt(&enc, "correct horse").unwrap(), secret);
        let err = decrypt(&enc, "wrong").unwrap_err().to_string();
        assert!(err.contains("wrong password"), "{err}");
        assert!(encrypt(secret, "", 1_000).is_err());
        let err = decrypt("ENCRYPTED+KEY+pbkdf2-sha256+5", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
