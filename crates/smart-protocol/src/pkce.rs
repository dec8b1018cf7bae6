//! Proof Key for Code Exchange, RFC 7636, S256 only (SMART App Launch 2.2 forbids `plain`).

use crate::b64url;
use sha2::{Digest, Sha256};
use std::fmt;

/// Why a code verifier was refused (RFC 7636 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_verifier must be 43 to 128 characters long")]
    Length,
    #[error("code_verifier may only contain A-Z a-z 0-9 - . _ ~")]
    Charset,
}

/// A code verifier: 43–128 unreserved characters. Prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    pub fn parse(value: &str) -> Result<Self, PkceError> {
        if !(43..=128).contains(&value.len()) {
            return Err(PkceError::Length);
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            return Err(PkceError::Charset);
        }
        Ok(Self(value.to_owned()))
    }

    /// A verifier from 32 random bytes (the RFC's recommendation), base64url-encoded to 43
    /// characters. The caller brings the randomness, so this stays deterministic and testable.
    pub fn from_random_bytes(bytes: &[u8; 32]) -> Self {
        Self(b64url::encode(bytes))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// `BASE64URL(SHA256(ASCII(code_verifier)))`.
    pub fn s256_challenge(&self) -> String {
        s256_challenge_of_digest(&Sha256::digest(self.0.as_bytes()))
    }
}

/// The S256 challenge from `SHA256(ASCII(code_verifier))` computed elsewhere (the browser SDK
/// hashes with WebCrypto rather than carry SHA-256 in its wasm).
pub fn s256_challenge_of_digest(digest: &[u8]) -> String {
    b64url::encode(digest)
}

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(verifier.s256_challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(format!("{verifier:?}"), "CodeVerifier([redacted])");
    }

    #[test]
    fn refuses_short_long_and_non_unreserved_verifiers() {
        assert_eq!(CodeVerifier::parse(&"a".repeat(42)), Err(PkceError::Length));
        assert_eq!(CodeVerifier::parse(&"a".repeat(129)), Err(PkceError::Length));
        assert_eq!(CodeVerifier::parse(&format!("{}+", "a".repeat(43))), Err(PkceError::Charset));
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn random_bytes_make_a_valid_43_character_verifier() {
        let v = CodeVerifier::from_random_bytes(&[0xff; 32]);
        assert_eq!(v.secret().len(), 43);
        assert!(CodeVerifier::parse(v.secret()).is_ok());
    }
}
