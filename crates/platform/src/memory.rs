//! In-memory adapters of every port, for native tests (and for anyone embedding the platform
//! without Cloudflare). They keep the same contracts as the Workers adapters.

use crate::ports::{CryptoError, KeyGenerator, KeyRecord, KeyStore, KvStore, Signer, StoreError};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use smart_protocol::jose::{Jwk, JwsAlgorithm};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Default)]
pub struct MemoryKv {
    values: RefCell<HashMap<String, String>>,
}

#[async_trait(?Send)]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.values.borrow().get(key).cloned())
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.values.borrow_mut().insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.values.borrow_mut().remove(key);
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryKeyStore {
    records: RefCell<Vec<KeyRecord>>,
}

#[async_trait(?Send)]
impl KeyStore for MemoryKeyStore {
    async fn load(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.records.borrow().clone())
    }

    async fn add(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.records.borrow_mut().push(record.clone());
        Ok(())
    }
}

/// Makes structurally valid, distinct keys whose numbers are not real key material: enough
/// for every rule that does not do arithmetic on them.
#[derive(Default)]
pub struct FakeKeyGenerator {
    counter: Cell<u32>,
}

impl FakeKeyGenerator {
    pub fn calls(&self) -> u32 {
        self.counter.get()
    }
}

#[async_trait(?Send)]
impl KeyGenerator for FakeKeyGenerator {
    async fn generate(&self, alg: JwsAlgorithm) -> Result<Jwk, CryptoError> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let value = |tag: &str| Some(B64URL.encode(format!("{tag}-{n}")));
        let mut jwk = Jwk { kty: alg.key_type().to_owned(), alg: Some(alg.as_str().to_owned()), d: value("d"), ..Jwk::default() };
        if let Some(crv) = alg.curve() {
            jwk.crv = Some(crv.to_owned());
            jwk.x = value("x");
            jwk.y = value("y");
        } else {
            jwk.n = value("n");
            jwk.e = Some("AQAB".to_owned());
        }
        Ok(jwk)
    }
}

/// A "signature" that is the key id followed by the data: deterministic and checkable.
#[derive(Default)]
pub struct FakeSigner;

#[async_trait(?Send)]
impl Signer for FakeSigner {
    async fn sign(&self, key: &Jwk, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let kid = key.kid.as_deref().ok_or_else(|| CryptoError("key without kid".into()))?;
        Ok([kid.as_bytes(), b":", data].concat())
    }
}

/// Native PBKDF2-HMAC-SHA256 (the `pbkdf2` crate), standing in for WebCrypto.
pub struct Pbkdf2Hasher;

#[async_trait(?Send)]
impl crate::ports::PasswordHasher for Pbkdf2Hasher {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], CryptoError> {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
        Ok(out)
    }
}

/// Deterministic "randomness" for tests: distinct, reproducible bytes.
#[derive(Default)]
pub struct SeededRandom {
    state: Cell<u64>,
}

impl SeededRandom {
    /// A sequence of its own (two sources made with different seeds do not repeat each other).
    pub fn seeded(seed: u64) -> SeededRandom {
        SeededRandom { state: Cell::new(seed) }
    }
}

impl crate::ports::Random for SeededRandom {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), CryptoError> {
        for b in bytes.iter_mut() {
            // splitmix64
            let mut z = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *b = (z ^ (z >> 31)) as u8;
        }
        Ok(())
    }
}

/// Accepts exactly the signatures [`FakeSigner`] makes.
#[derive(Default)]
pub struct FakeVerifier;

#[async_trait(?Send)]
impl crate::ports::Verifier for FakeVerifier {
    async fn verify(&self, key: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        Ok(FakeSigner.sign(key, data).await? == signature)
    }
}
