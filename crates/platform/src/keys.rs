//! Signing keys: which exist, which one signs, what is published.
//!
//! The server signs ID tokens with RS256 (OpenID Connect Core §15.1 requires it) and access
//! tokens with ES256 (smaller, cheaper to verify). Keys come from one of two sources:
//! - a Worker secret `SIGNING_KEYS` (a JWKS of private keys): for deployments that manage keys
//!   themselves; every key is active at once and, per algorithm, the first one listed signs;
//! - the key vault (a Durable Object): generates one key per algorithm on first use and makes
//!   rotated keys sign only after [`ROTATION_DELAY_SECS`], so that every cached JWKS has seen
//!   them first.
//!
//! Older keys stay published so tokens they signed keep verifying.

use crate::ports::{CryptoError, KeyGenerator, KeyRecord, KeyStore, StoreError};
use smart_protocol::jose::{Jwk, JwkError, Jwks, JwsAlgorithm};

/// The algorithms the server signs with; the key ring always holds a key for each.
pub const SIGNING_ALGORITHMS: [JwsAlgorithm; 2] = [JwsAlgorithm::RS256, JwsAlgorithm::ES256];

/// How long a rotated key is published before it signs. Isolates cache the key ring for
/// [`KEY_CACHE_SECS`], so twice that covers every cache.
pub const ROTATION_DELAY_SECS: i64 = 2 * KEY_CACHE_SECS;

/// How long an isolate may keep the key ring it loaded.
pub const KEY_CACHE_SECS: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("SIGNING_KEYS is not a JWKS of private keys: {0}")]
    BadSecret(String),
    #[error("signing key {kid:?} is unusable: {source}")]
    BadKey { kid: Option<String>, source: JwkError },
    #[error("no active {0} signing key")]
    NoActiveKey(JwsAlgorithm),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The validated set of private keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    records: Vec<KeyRecord>,
}

impl KeyRing {
    /// Checks every record: a complete private key, a `kid`, a known algorithm.
    pub fn new(records: Vec<KeyRecord>) -> Result<Self, KeyError> {
        for record in &records {
            let bad = |source| KeyError::BadKey { kid: record.jwk.kid.clone(), source };
            record.jwk.validate_private().map_err(bad)?;
            if record.jwk.kid.as_deref().is_none_or(str::is_empty) {
                return Err(bad(JwkError::Missing("kid")));
            }
        }
        Ok(Self { records })
    }

    /// Parses the `SIGNING_KEYS` secret: `{"keys": [private JWK, …]}`. Keys without a `kid`
    /// get their RFC 7638 thumbprint.
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        let jwks: Jwks = serde_json::from_str(secret).map_err(|e| KeyError::BadSecret(e.to_string()))?;
        if jwks.keys.is_empty() {
            return Err(KeyError::BadSecret("the key list is empty".into()));
        }
        let records = jwks
            .keys
            .into_iter()
            .map(|mut jwk| {
                if jwk.kid.is_none() {
                    jwk.kid = Some(jwk.thumbprint().map_err(|source| KeyError::BadKey { kid: None, source })?);
                }
                Ok(KeyRecord { jwk, created_at: 0, activates_at: 0 })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        let ring = Self::new(records)?;
        for alg in SIGNING_ALGORITHMS {
            ring.signing_key(alg, 0)?;
        }
        Ok(ring)
    }

    pub fn records(&self) -> &[KeyRecord] {
        &self.records
    }

    /// The key that signs with `alg` at `now`: among the keys already active, the one that
    /// became active last; on a tie, the first listed.
    pub fn signing_key(&self, alg: JwsAlgorithm, now: i64) -> Result<&Jwk, KeyError> {
        self.records
            .iter()
            .filter(|r| r.activates_at <= now && r.jwk.algorithm().ok() == Some(alg))
            .fold(None::<&KeyRecord>, |best, r| match best {
                Some(b) if b.activates_at >= r.activates_at => Some(b),
                _ => Some(r),
            })
            .map(|r| &r.jwk)
            .ok_or(KeyError::NoActiveKey(alg))
    }

    /// The public keys, as served at `jwks_uri`: every key, active or pending.
    pub fn public_jwks(&self) -> Jwks {
        Jwks { keys: self.records.iter().map(|r| r.jwk.to_public()).collect() }
    }

    /// Finds a key by `kid` (for verifying the server's own tokens).
    pub fn by_kid(&self, kid: &str) -> Option<&Jwk> {
        self.records.iter().map(|r| &r.jwk).find(|jwk| jwk.kid.as_deref() == Some(kid))
    }
}

async fn generate_record(generator: &dyn KeyGenerator, alg: JwsAlgorithm, now: i64, activates_at: i64) -> Result<KeyRecord, KeyError> {
    let mut jwk = generator.generate(alg).await?;
    jwk.alg = Some(alg.as_str().to_owned());
    jwk.kid = Some(jwk.thumbprint().map_err(|source| KeyError::BadKey { kid: None, source })?);
    Ok(KeyRecord { jwk, created_at: now, activates_at })
}

/// Loads the key vault, generating a key for every signing algorithm that has none yet.
/// Runs inside the key vault's Durable Object, which serialises callers, so a key set is
/// generated exactly once.
pub async fn ensure_keys(store: &dyn KeyStore, generator: &dyn KeyGenerator, now: i64) -> Result<KeyRing, KeyError> {
    let mut records = store.load().await?;
    for alg in SIGNING_ALGORITHMS {
        let has_key = records.iter().any(|r| r.jwk.algorithm().ok() == Some(alg));
        if !has_key {
            // The first key of an algorithm signs at once: nobody can hold a stale JWKS yet.
            let record = generate_record(generator, alg, now, now).await?;
            store.add(&record).await?;
            records.push(record);
        }
    }
    KeyRing::new(records)
}

/// Adds a new key for every signing algorithm; each starts signing after
/// [`ROTATION_DELAY_SECS`]. The old keys stay published.
pub async fn rotate_keys(store: &dyn KeyStore, generator: &dyn KeyGenerator, now: i64) -> Result<KeyRing, KeyError> {
    ensure_keys(store, generator, now).await?;
    for alg in SIGNING_ALGORITHMS {
        let record = generate_record(generator, alg, now, now + ROTATION_DELAY_SECS).await?;
        store.add(&record).await?;
    }
    KeyRing::new(store.load().await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FakeKeyGenerator, MemoryKeyStore};
    use futures::executor::block_on;

    #[test]
    fn generates_one_key_per_algorithm_exactly_once() {
        let store = MemoryKeyStore::default();
        let generator = FakeKeyGenerator::default();
        let first = block_on(ensure_keys(&store, &generator, 100)).unwrap();
        let second = block_on(ensure_keys(&store, &generator, 200)).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.records().len(), 2);
        assert_eq!(generator.calls(), 2);
        for alg in SIGNING_ALGORITHMS {
            let key = first.signing_key(alg, 100).unwrap();
            assert_eq!(key.kid.as_deref(), Some(key.thumbprint().unwrap().as_str()));
        }
    }

    #[test]
    fn a_rotated_key_is_published_at_once_and_signs_after_the_delay() {
        let store = MemoryKeyStore::default();
        let generator = FakeKeyGenerator::default();
        let old = block_on(ensure_keys(&store, &generator, 0)).unwrap();
        let old_kid = old.signing_key(JwsAlgorithm::ES256, 0).unwrap().kid.clone();
        let ring = block_on(rotate_keys(&store, &generator, 1_000)).unwrap();
        assert_eq!(ring.public_jwks().keys.len(), 4);
        assert_eq!(ring.signing_key(JwsAlgorithm::ES256, 1_000).unwrap().kid, old_kid);
        let later = 1_000 + ROTATION_DELAY_SECS;
        let new_kid = ring.signing_key(JwsAlgorithm::ES256, later).unwrap().kid.clone();
        assert_ne!(new_kid, old_kid);
        assert!(ring.by_kid(old_kid.as_deref().unwrap()).is_some(), "old key still verifies");
    }

    #[test]
    fn secret_keys_sign_in_listed_order_and_must_cover_every_algorithm() {
        let generator = FakeKeyGenerator::default();
        let keys: Vec<Jwk> =
            [JwsAlgorithm::ES256, JwsAlgorithm::RS256, JwsAlgorithm::ES256].into_iter().map(|alg| block_on(generator.generate(alg)).unwrap()).collect();
        let secret = serde_json::to_string(&Jwks { keys: keys.clone() }).unwrap();
        let ring = KeyRing::from_secret(&secret).unwrap();
        assert_eq!(ring.signing_key(JwsAlgorithm::ES256, 0).unwrap().kid, Some(keys[0].thumbprint().unwrap()));
        assert_eq!(ring.public_jwks().keys.len(), 3);

        let only_ec = serde_json::to_string(&Jwks { keys: vec![keys[0].clone()] }).unwrap();
        assert!(matches!(KeyRing::from_secret(&only_ec), Err(KeyError::NoActiveKey(JwsAlgorithm::RS256))));
        assert!(matches!(KeyRing::from_secret("{}"), Err(KeyError::BadSecret(_))));
        assert!(matches!(KeyRing::from_secret(r#"{"keys":[]}"#), Err(KeyError::BadSecret(_))));
        let public_only = serde_json::to_string(&Jwks { keys: vec![keys[0].to_public()] }).unwrap();
        assert!(matches!(KeyRing::from_secret(&public_only), Err(KeyError::BadKey { .. })));
    }

    #[test]
    fn published_keys_carry_no_private_member() {
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        for key in ring.public_jwks().keys {
            assert!(!key.is_private());
            assert!(key.kid.is_some());
            assert_eq!(key.use_.as_deref(), Some("sig"));
        }
    }
}
