//! Opaque secrets — authorization codes, refresh tokens, session and browser handles, CSRF
//! tokens: made from 256 random bits, stored only as their SHA-256, compared in constant
//! time, and never printed (`[redacted]` in `Debug`).

use crate::ports::{CryptoError, Random};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use std::fmt;

/// Prints `[redacted]` in place of a secret in `Debug` output.
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret in clear while it travels — a PKCE verifier, the next refresh token — serialised
/// as the plain string and printed as `[redacted]`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Redacted.fmt(f)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// For tests and assertions only: not constant time (stored secrets are compared as hashes,
/// with [`hash_matches`]).
impl PartialEq<str> for Secret {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// 32 random bytes, base64url (43 characters): codes, refresh tokens, session secrets, `jti`s.
pub fn random_secret(random: &dyn Random) -> Result<String, CryptoError> {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes)?;
    Ok(B64URL.encode(bytes))
}

/// SHA-256 (base64url) of an opaque secret: codes, session and browser handles are stored and
/// compared only as this hash.
pub fn opaque_hash(secret: &str) -> String {
    use sha2::Digest;
    B64URL.encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Constant-time check of a presented secret against its stored [`opaque_hash`].
pub fn hash_matches(stored_hash: &str, presented_secret: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(stored_hash.as_bytes().ct_eq(opaque_hash(presented_secret).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_secrets_are_43_characters_of_base64url() {
        let random = crate::memory::SeededRandom::default();
        let (a, b) = (random_secret(&random).unwrap(), random_secret(&random).unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn a_secret_matches_its_hash_only() {
        let hash = opaque_hash("s3cret");
        assert!(hash_matches(&hash, "s3cret") && !hash_matches(&hash, "s3cres"));
        assert_eq!(format!("{:?}", Redacted), "[redacted]");
        let secret = Secret::from("s3cret");
        assert_eq!((format!("{secret:?}"), secret.expose()), ("[redacted]".to_owned(), "s3cret"));
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"s3cret\"", "travels as the plain string");
    }
}
