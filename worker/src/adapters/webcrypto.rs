//! WebCrypto (`crypto.subtle`, BoringSSL inside workerd) behind the platform's crypto ports.
//! Pure-Rust curves compiled to wasm cost milliseconds per signature; WebCrypto costs tens of
//! microseconds (see BENCHMARKS.md). Imported keys are cached per isolate by `kid`.

use async_trait::async_trait;
use js_sys::{Array, Object, Reflect, Uint8Array};
use platform::ports::{CryptoError, KeyGenerator, Signer};
use smart_protocol::jose::{Jwk, JwsAlgorithm};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

thread_local! {
    /// Keys imported into WebCrypto (see `import_cached`): importing costs more than signing.
    static IMPORTED: RefCell<HashMap<String, CryptoKey>> = RefCell::new(HashMap::new());
}

fn err(context: &str) -> impl Fn(JsValue) -> CryptoError + '_ {
    move |e| CryptoError(format!("{context}: {e:?}"))
}

fn subtle() -> Result<SubtleCrypto, CryptoError> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(err("no crypto global"))?;
    Ok(crypto.unchecked_into::<web_sys::Crypto>().subtle())
}

fn object(entries: &[(&str, JsValue)]) -> Result<Object, CryptoError> {
    let obj = Object::new();
    for (key, value) in entries {
        Reflect::set(&obj, &(*key).into(), value).map_err(err("building algorithm parameters"))?;
    }
    Ok(obj)
}

/// The parameters `importKey` and `generateKey` take for `alg`.
fn key_params(alg: JwsAlgorithm, generate: bool) -> Result<Object, CryptoError> {
    let mut entries = vec![("name", alg.webcrypto_name().into())];
    match alg.curve() {
        Some(curve) => entries.push(("namedCurve", curve.into())),
        None => {
            entries.push(("hash", alg.hash().into()));
            if generate {
                entries.push(("modulusLength", 2048.into()));
                entries.push(("publicExponent", Uint8Array::from(&[1u8, 0, 1][..]).into()));
            }
        }
    }
    object(&entries)
}

/// The parameters `sign` takes for `alg` (ECDSA names its hash here, RSA at import).
fn sign_params(alg: JwsAlgorithm) -> Result<Object, CryptoError> {
    let mut entries = vec![("name", alg.webcrypto_name().into())];
    if alg.curve().is_some() {
        entries.push(("hash", alg.hash().into()));
    }
    object(&entries)
}

fn usages(names: &[&str]) -> Array {
    names.iter().map(|n| JsValue::from_str(n)).collect()
}

async fn await_promise(promise: Result<js_sys::Promise, JsValue>, context: &str) -> Result<JsValue, CryptoError> {
    JsFuture::from(promise.map_err(err(context))?).await.map_err(err(context))
}

pub struct WebCryptoKeyGenerator;

#[async_trait(?Send)]
impl KeyGenerator for WebCryptoKeyGenerator {
    async fn generate(&self, alg: JwsAlgorithm) -> Result<Jwk, CryptoError> {
        let subtle = subtle()?;
        let params = key_params(alg, true)?;
        let pair = await_promise(subtle.generate_key_with_object(&params, true, &usages(&["sign", "verify"])), "generateKey").await?;
        let private: CryptoKey = Reflect::get(&pair, &"privateKey".into()).map_err(err("privateKey"))?.unchecked_into();
        let exported = await_promise(subtle.export_key("jwk", &private), "exportKey").await?;
        let mut jwk: Jwk = serde_wasm_bindgen::from_value(exported).map_err(|e| CryptoError(format!("exported JWK: {e}")))?;
        jwk.alg = Some(alg.as_str().to_owned());
        Ok(jwk)
    }
}

pub struct WebCryptoSigner;

/// Imports a JWK for one usage, once per isolate: `sign` keys by `kid`, `verify` keys by
/// `kid` and thumbprint (a client may reuse a `kid` for a new key).
async fn import_cached(key: &Jwk, alg: JwsAlgorithm, usage: &str) -> Result<CryptoKey, CryptoError> {
    let mut jwk = if usage == "sign" { key.clone() } else { key.to_public() };
    jwk.use_ = None; // `use` would have to agree with the usages; leave it out
    let cache_key = format!("{usage}:{}:{}", jwk.kid.as_deref().unwrap_or_default(), jwk.thumbprint().unwrap_or_default());
    if let Some(cached) = IMPORTED.with(|keys| keys.borrow().get(&cache_key).cloned()) {
        return Ok(cached);
    }
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    let js = serde::Serialize::serialize(&jwk, &serializer).map_err(|e| CryptoError(format!("JWK to JS: {e}")))?;
    let imported =
        await_promise(subtle()?.import_key_with_object("jwk", js.unchecked_ref(), &key_params(alg, false)?, false, &usages(&[usage])), "importKey").await?;
    let crypto_key: CryptoKey = imported.unchecked_into();
    IMPORTED.with(|keys| {
        let mut map = keys.borrow_mut();
        if map.len() > 1000 {
            map.clear(); // client keys come and go; keep the cache bounded
        }
        map.insert(cache_key, crypto_key.clone());
    });
    Ok(crypto_key)
}

#[async_trait(?Send)]
impl Signer for WebCryptoSigner {
    async fn sign(&self, key: &Jwk, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let alg = key.algorithm().map_err(|e| CryptoError(e.to_string()))?;
        let crypto_key = import_cached(key, alg, "sign").await?;
        let signature = await_promise(subtle()?.sign_with_object_and_u8_array(&sign_params(alg)?, &crypto_key, data), "sign").await?;
        // WebCrypto's ECDSA output is already JWS's r || s (IEEE P1363), RSA's is raw.
        Ok(Uint8Array::new(&signature).to_vec())
    }
}

pub struct WebCryptoVerifier;

#[async_trait(?Send)]
impl platform::ports::Verifier for WebCryptoVerifier {
    /// A signature this isolate has verified before (the same key, data and signature: an
    /// app's access token on each of its FHIR calls) is not verified again: verification is a
    /// pure function, and only successes are remembered. ≈0.1 ms of CPU per FHIR request
    /// (bench/profile.mjs); a token's expiry and revocation are still checked on every call.
    async fn verify(&self, key: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        let remembered = verified_digest(key, data, signature);
        if VERIFIED.with(|seen| seen.borrow().contains(&remembered)) {
            return Ok(true);
        }
        let alg = key.algorithm().map_err(|e| CryptoError(e.to_string()))?;
        let crypto_key = import_cached(key, alg, "verify").await?;
        let ok = await_promise(subtle()?.verify_with_object_and_u8_array_and_u8_array(&sign_params(alg)?, &crypto_key, signature, data), "verify").await?;
        let ok = ok.as_bool().unwrap_or(false);
        if ok {
            VERIFIED.with(|seen| {
                let mut seen = seen.borrow_mut();
                if seen.len() >= VERIFIED_MAX {
                    seen.clear(); // bounded; tokens come and go
                }
                seen.insert(remembered);
            });
        }
        Ok(ok)
    }
}

/// How many verified signatures an isolate remembers.
const VERIFIED_MAX: usize = 4096;

thread_local! {
    static VERIFIED: RefCell<std::collections::HashSet<[u8; 32]>> = RefCell::new(std::collections::HashSet::new());
}

/// SHA-256 of the public key, the signed data and the signature, each length-prefixed.
fn verified_digest(key: &Jwk, data: &[u8], signature: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let public = serde_json::to_vec(&key.to_public()).unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [public.as_slice(), data, signature] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// PBKDF2-HMAC-SHA256 through `deriveBits` (workerd accepts at most 100,000 iterations).
pub struct WebCryptoPasswordHasher;

#[async_trait(?Send)]
impl platform::ports::PasswordHasher for WebCryptoPasswordHasher {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], CryptoError> {
        let subtle = subtle()?;
        let base =
            await_promise(subtle.import_key_with_str("raw", &Uint8Array::from(password), "PBKDF2", false, &usages(&["deriveBits"])), "importKey (PBKDF2)")
                .await?;
        let params =
            object(&[("name", "PBKDF2".into()), ("hash", "SHA-256".into()), ("salt", Uint8Array::from(salt).into()), ("iterations", iterations.into())])?;
        let bits = await_promise(subtle.derive_bits_with_object(&params, base.unchecked_ref(), 256), "deriveBits").await?;
        let bytes = Uint8Array::new(&bits).to_vec();
        bytes.try_into().map_err(|_| CryptoError("deriveBits returned a wrong length".into()))
    }
}

/// `crypto.getRandomValues`.
pub struct WebCryptoRandom;

impl platform::ports::Random for WebCryptoRandom {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), CryptoError> {
        let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(err("no crypto global"))?;
        let crypto: web_sys::Crypto = crypto.unchecked_into();
        // getRandomValues fills at most 65,536 bytes per call.
        for chunk in bytes.chunks_mut(65_536) {
            crypto.get_random_values_with_u8_array(chunk).map_err(err("getRandomValues"))?;
        }
        Ok(())
    }
}

/// A new resource id: 128 random bits as 32 lowercase hex digits (a valid FHIR id).
pub fn new_id() -> String {
    use platform::ports::Random;
    let mut bytes = [0u8; 16];
    if WebCryptoRandom.fill(&mut bytes).is_err() {
        // getRandomValues does not fail in workerd; fall back to the clock rather than panic.
        return format!("{:032x}", worker::Date::now().as_millis());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh secret: 256 random bits, base64url (CSRF tokens of the pages).
pub fn random_secret() -> Result<String, crate::http::AppError> {
    platform::secret::random_secret(&WebCryptoRandom).map_err(crate::http::AppError::internal)
}
