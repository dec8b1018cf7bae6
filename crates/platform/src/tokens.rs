//! Signing JWTs with the key ring: the header names the active key's `kid`, the signature
//! comes from the [`Signer`] port (WebCrypto in the Worker).

use crate::keys::{KeyError, KeyRing};
use crate::ports::Signer;
use serde::Serialize;
use smart_protocol::jose::{self, JwsAlgorithm, JwsHeader};

/// Signs `claims` as a compact JWS with the key that is active for `alg` at `now`.
pub async fn sign_jwt<C: Serialize>(
    ring: &KeyRing,
    signer: &dyn Signer,
    alg: JwsAlgorithm,
    typ: &str,
    claims: &C,
    now: i64,
) -> Result<String, KeyError> {
    let key = ring.signing_key(alg, now)?;
    let kid = key.kid.clone().unwrap_or_default();
    let header = JwsHeader { alg, typ: Some(typ.to_owned()), kid };
    let input = jose::signing_input(&header, claims)
        .map_err(|e| KeyError::Crypto(crate::CryptoError(format!("claims do not serialise: {e}"))))?;
    let signature = signer.sign(key, input.as_bytes()).await?;
    Ok(jose::compact(&input, &signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ensure_keys;
    use crate::memory::{FakeKeyGenerator, FakeSigner, MemoryKeyStore};
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
}
