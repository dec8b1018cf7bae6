//! smart-edge browser SDK: a SMART App Launch 2.2 client compiled from Rust with
//! wasm-bindgen. The protocol rules come from `smart-protocol` (shared with the server); the
//! flows are [`engine`], written against an environment trait; [`browser`] is the browser's
//! side of it. The wasm functions below are stateless and speak JSON: the ES module
//! `js/smart-edge.js` wraps them into `authorize`, `ready`, `init`, `Client` and `SmartError`.

pub mod engine;
pub mod json;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod exports;

use smart_protocol::pkce::CodeVerifier;
use wasm_bindgen::prelude::*;

fn global_crypto() -> Result<web_sys::Crypto, JsError> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).map_err(|_| JsError::new("no crypto global"))?;
    crypto.dyn_into().map_err(|_| JsError::new("crypto is not a Crypto object"))
}

/// `createPkce()` → `{ codeVerifier, codeChallenge, codeChallengeMethod: "S256" }`, from 32
/// bytes of `crypto.getRandomValues`.
#[wasm_bindgen(js_name = createPkce)]
pub fn create_pkce() -> Result<JsValue, JsError> {
    let mut bytes = [0u8; 32];
    global_crypto()?.get_random_values_with_u8_array(&mut bytes).map_err(|_| JsError::new("crypto.getRandomValues failed"))?;
    let verifier = CodeVerifier::from_random_bytes(&bytes);
    let pair = js_sys::Object::new();
    for (key, value) in [("codeVerifier", verifier.secret().to_owned()), ("codeChallenge", verifier.s256_challenge()), ("codeChallengeMethod", "S256".to_owned())] {
        js_sys::Reflect::set(&pair, &key.into(), &value.into()).map_err(|_| JsError::new("building the PKCE pair"))?;
    }
    Ok(pair.into())
}

/// `pkceChallenge(verifier)`: the S256 challenge of a verifier; throws on a verifier RFC 7636
/// §4.1 does not allow.
#[wasm_bindgen(js_name = pkceChallenge)]
pub fn pkce_challenge(verifier: &str) -> Result<String, JsError> {
    Ok(CodeVerifier::parse(verifier).map_err(|e| JsError::new(&e.to_string()))?.s256_challenge())
}
