//! Approver keys: Ed25519 by `ring`, text forms `ed25519:<base64 32 bytes>`
//! (public, as `[grants] approvers` holds it) and
//! `ed25519-private:<base64 32-byte seed>` (the file `grants keygen` writes,
//! mode 0600, like `audit keygen`'s).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Prefix of a public key's text.
pub use crate::config::access::{PUBLIC_PREFIX, parse_public};
/// Prefix of a private key file's text.
pub const PRIVATE_PREFIX: &str = "ed25519-private:";

/// The text of a public key.
pub fn public_text(key: &[u8]) -> String {
    format!("{PUBLIC_PREFIX}{}", B64.encode(key))
}

/// A new key pair: the private key file's text and the public key's text.
///
/// # Errors
/// When the system gives no randomness.
pub fn keygen() -> Result<(String, String), &'static str> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "cannot generate a key: no randomness from the system")?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|_| "cannot generate a key from the system's randomness")?;
    Ok((
        format!("{PRIVATE_PREFIX}{}", B64.encode(seed)),
        public_text(pair.public_key().as_ref()),
    ))
}

/// A private key read from its text.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Parses `ed25519-private:<base64 seed>`.
    ///
    /// # Errors
    /// What is wrong with the text (never the key material).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let data = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or("not a grant signing key (expected ed25519-private:<base64>, as `grants keygen` writes)")?;
        let seed: [u8; 32] = B64
            .decode(data)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or("the key is not the base64 of 32 bytes")?;
        Ed25519KeyPair::from_seed_unchecked(&seed)
            .map(Self)
            .map_err(|_| "not an Ed25519 private key")
    }

    /// The matching public key's text.
    pub fn public(&self) -> String {
        public_text(self.0.public_key().as_ref())
    }

    /// The public key's bytes.
    pub fn public_bytes(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    /// The base64 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).as_ref())
    }
}

/// Whether `signature` (base64) is `public`'s signature of `message`.
/// `None` when the signature is not the base64 of 64 bytes.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &str) -> Option<bool> {
    let sig = B64.decode(signature.trim()).ok()?;
    if sig.len() != 64 {
        return None;
    }
    Some(
        UnparsedPublicKey::new(&ED25519, public)
            .verify(message, &sig)
            .is_ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let (private, public) = keygen().unwrap();
        let key = SigningKey::parse(&private).unwrap();
        assert_eq!(key.public(), public);
        let public = parse_public(&public).unwrap();
        let sig = key.sign(b"grant");
        assert_eq!(verify(&public, b"grant", &sig), Some(true));
        assert_eq!(verify(&public, b"grand", &sig), Some(false));
        let (_, other) = keygen().unwrap();
        assert_eq!(
            verify(&parse_public(&other).unwrap(), b"grant", &sig),
            Some(false)
        );
        assert_eq!(verify(&public, b"grant", "not base64!"), None);
        assert_eq!(verify(&public, b"grant", "AAAA"), None);
    }

    #[test]
    fn key_texts_are_checked() {
        assert!(parse_public("ed25519:AAAA").is_none());
        assert!(parse_public("rsa:AAAA").is_none());
        assert!(SigningKey::parse("ed25519:AAAA").is_err());
    }
}
