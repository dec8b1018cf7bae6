//! The ports the use cases need. Each has a Workers adapter in `worker/src/adapters` and an
//! in-memory one in [`crate::memory`].

use async_trait::async_trait;
use smart_protocol::jose::{Jwk, JwsAlgorithm};

/// A storage backend failed or held something unreadable. The detail is for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StoreError(pub String);

/// A cryptographic operation failed (key import, generation or signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crypto failure: {0}")]
pub struct CryptoError(pub String);

/// Read-mostly configuration (Workers KV in production): eventually consistent, so never used
/// for anything that must be atomic or single-use.
#[async_trait(?Send)]
pub trait KvStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn put(&self, key: &str, value: &str) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Reads a JSON value stored under `key` (`None` when absent; unreadable JSON is a store error).
pub async fn load_json<T: serde::de::DeserializeOwned>(kv: &dyn KvStore, key: &str) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| StoreError(format!("{key}: {e}"))),
    }
}

/// Stores `value` as JSON under `key`.
pub async fn save_json<T: serde::Serialize>(kv: &dyn KvStore, key: &str, value: &T) -> Result<(), StoreError> {
    let json = serde_json::to_string(value).map_err(|e| StoreError(e.to_string()))?;
    kv.put(key, &json).await
}

/// One signing key as the key vault stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// The private JWK, with `kid` and `alg` set.
    pub jwk: Jwk,
    /// Unix seconds when the key was made.
    pub created_at: i64,
    /// Unix seconds from which the key may sign; before that it is only published, so every
    /// cached JWKS knows it before the first token signed with it arrives.
    pub activates_at: i64,
}

/// Where signing keys live (a SQLite-backed Durable Object in production, so that exactly one
/// set is ever generated).
#[async_trait(?Send)]
pub trait KeyStore {
    async fn load(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn add(&self, record: &KeyRecord) -> Result<(), StoreError>;
}

/// Makes a new private key (WebCrypto `generateKey` in production).
#[async_trait(?Send)]
pub trait KeyGenerator {
    async fn generate(&self, alg: JwsAlgorithm) -> Result<Jwk, CryptoError>;
}

/// Signs bytes with one of the key ring's private keys (WebCrypto `sign` in production, keys
/// imported once per isolate).
#[async_trait(?Send)]
pub trait Signer {
    async fn sign(&self, key: &Jwk, data: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// PBKDF2-HMAC-SHA256 (WebCrypto `deriveBits` in production).
#[async_trait(?Send)]
pub trait PasswordHasher {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], CryptoError>;
}

/// Cryptographically secure randomness (`crypto.getRandomValues` in production).
pub trait Random {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), CryptoError>;
}

/// Verifies a signature with a public key (WebCrypto `verify` in production).
#[async_trait(?Send)]
pub trait Verifier {
    async fn verify(&self, key: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError>;
}
