//! The server's own JWTs (RFC 7515 compact form): signed with the key ring — the header names
//! the active key's `kid`, the signature comes from the [`Signer`] port (WebCrypto in the
//! Worker) — and verified the same way.

use crate::keys::{KeyError, KeyRing};
use crate::ports::{CryptoError, Signer, Verifier};
use serde::Serialize;
use serde_json::{Map, Value};
use smart_protocol::jose::{self, JwsAlgorithm, JwsHeader};

/// Why one of the server's own tokens was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Malformed(#[from] jose::JwsError),
    #[error("the token's typ is not {0}")]
    WrongType(&'static str),
    #[error("the token was not signed by a key of this server")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued by {0:?}, not by this server")]
    WrongIssuer(Option<String>),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Verifies a JWT this server signed: its `typ`, a known `kid` whose algorithm matches the
/// header, the signature, `iss` and `exp` (no leeway: our own clock signed it). Returns the
/// claims.
pub async fn verify_own_jwt(
    ring: &KeyRing,
    verifier: &dyn Verifier,
    token: &str,
    typ: &'static str,
    issuer: &str,
    now: i64,
) -> Result<Map<String, Value>, TokenError> {
    let jws = jose::parse_compact(token)?;
    if jws.header.typ.as_deref() != Some(typ) {
        return Err(TokenError::WrongType(typ));
    }
    let key = ring.by_kid(&jws.header.kid).ok_or(TokenError::UnknownKey)?;
    if key.algorithm().ok() != Some(jws.header.alg) {
        return Err(TokenError::UnknownKey);
    }
    if !verifier.verify(key, jws.signing_input.as_bytes(), &jws.signature).await? {
        return Err(TokenError::BadSignature);
    }
    let iss = jws.payload.get("iss").and_then(Value::as_str);
    if iss != Some(issuer) {
        return Err(TokenError::WrongIssuer(iss.map(str::to_owned)));
    }
    match jws.payload.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp > now => Ok(jws.payload),
        _ => Err(TokenError::Expired),
    }
}

/// Signs `claims` as a compact JWS with the key that is active for `alg` at `now`.
pub async fn sign_jwt<C: Serialize>(ring: &KeyRing, signer: &dyn Signer, alg: JwsAlgorithm, typ: &str, claims: &C, now: i64) -> Result<String, KeyError> {
    let key = ring.signing_key(alg, now)?;
    let kid = key.kid.clone().unwrap_or_default();
    let header = JwsHeader { alg, typ: Some(typ.to_owned()), kid };
    let input = jose::signing_input(&header, claims).map_err(|e| KeyError::Crypto(crate::CryptoError(format!("claims do not serialise: {e}"))))?;
    let signature = signer.sign(key, input.as_bytes()).await?;
    Ok(jose::compact(&input, &signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ensure_keys;
    use crate::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier, MemoryKeyStore};
    use crate::ports::KeyGenerator;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    use futures::executor::block_on;

    #[test]
    fn header_names_the_active_key_and_the_signature_covers_header_and_payload() {
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        let token = block_on(sign_jwt(&ring, &FakeSigner, JwsAlgorithm::ES256, "JWT", &serde_json::json!({"sub": "x"}), 0)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        let kid = ring.signing_key(JwsAlgorithm::ES256, 0).unwrap().kid.clone().unwrap();
        assert_eq!(header, serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid}));
        let signature = B64URL.decode(parts[2]).unwrap();
        assert_eq!(signature, format!("{kid}:{}.{}", parts[0], parts[1]).into_bytes());
    }

    #[test]
    fn verifies_own_tokens_and_refuses_expired_foreign_or_retyped_ones() {
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        let sign = |typ: &str, claims: serde_json::Value| block_on(sign_jwt(&ring, &FakeSigner, JwsAlgorithm::ES256, typ, &claims, 0)).unwrap();
        let verify = |token: &str, now| block_on(verify_own_jwt(&ring, &FakeVerifier, token, "x+jwt", "https://iss", now));
        let good = sign("x+jwt", serde_json::json!({"iss": "https://iss", "exp": 100, "n": 1}));
        assert_eq!(verify(&good, 99).unwrap()["n"], 1);
        assert!(matches!(verify(&good, 100), Err(TokenError::Expired)));
        assert!(matches!(verify(&sign("JWT", serde_json::json!({"iss": "https://iss", "exp": 100})), 0), Err(TokenError::WrongType(_))));
        assert!(matches!(verify(&sign("x+jwt", serde_json::json!({"iss": "https://other", "exp": 100})), 0), Err(TokenError::WrongIssuer(_))));
        assert!(matches!(verify(&sign("x+jwt", serde_json::json!({"iss": "https://iss"})), 0), Err(TokenError::Expired)));
        let mut tampered = good.clone();
        tampered.insert(good.find('.').unwrap() + 2, 'A');
        assert!(verify(&tampered, 0).is_err());
        // Another server's keys (the fake generator's counter moved on, so other key material).
        let other_generator = FakeKeyGenerator::default();
        block_on(other_generator.generate(JwsAlgorithm::ES256)).unwrap();
        block_on(other_generator.generate(JwsAlgorithm::ES256)).unwrap();
        let other_ring = block_on(ensure_keys(&MemoryKeyStore::default(), &other_generator, 0)).unwrap();
        let foreign =
            block_on(sign_jwt(&other_ring, &FakeSigner, JwsAlgorithm::ES256, "x+jwt", &serde_json::json!({"iss": "https://iss", "exp": 100}), 0)).unwrap();
        assert!(matches!(verify(&foreign, 0), Err(TokenError::UnknownKey)));
    }
}
