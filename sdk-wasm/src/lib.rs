//! smart-edge browser SDK: what a pure HTML/JS SMART app needs, compiled from Rust with
//! wasm-bindgen. Protocol rules come from `smart-protocol`, the same crate the server uses;
//! this crate only adds the browser's I/O (randomness, fetch).
//!
//! So far: PKCE (RFC 7636, S256) and SMART discovery. Launch handling, token exchange and the
//! authenticated FHIR client come with the authorization issues.

use js_sys::{Promise, Reflect, JSON};
pub mod engine;

use smart_protocol::discovery::SmartConfiguration;
use smart_protocol::pkce::CodeVerifier;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

fn global_crypto() -> Result<web_sys::Crypto, JsError> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(|_| JsError::new("no crypto global"))?;
    crypto.dyn_into().map_err(|_| JsError::new("crypto is not a Crypto object"))
}

/// `createPkce()` → `{ codeVerifier, codeChallenge, codeChallengeMethod: "S256" }`, from 32
/// bytes of `crypto.getRandomValues`.
#[wasm_bindgen(js_name = createPkce)]
pub fn create_pkce() -> Result<JsValue, JsError> {
    let mut bytes = [0u8; 32];
    global_crypto()?
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|_| JsError::new("crypto.getRandomValues failed"))?;
    let verifier = CodeVerifier::from_random_bytes(&bytes);
    let pair = js_sys::Object::new();
    for (key, value) in [
        ("codeVerifier", verifier.secret().to_owned()),
        ("codeChallenge", verifier.s256_challenge()),
        ("codeChallengeMethod", "S256".to_owned()),
    ] {
        Reflect::set(&pair, &key.into(), &value.into()).map_err(|_| JsError::new("building the PKCE pair"))?;
    }
    Ok(pair.into())
}

/// `pkceChallenge(verifier)`: the S256 challenge of a verifier; throws on a verifier RFC 7636
/// §4.1 does not allow.
#[wasm_bindgen(js_name = pkceChallenge)]
pub fn pkce_challenge(verifier: &str) -> Result<String, JsError> {
    Ok(CodeVerifier::parse(verifier).map_err(|e| JsError::new(&e.to_string()))?.s256_challenge())
}

/// `discover(fhirBaseUrl)`: fetches and checks `{fhirBaseUrl}/.well-known/smart-configuration`
/// and resolves to the parsed document.
#[wasm_bindgen]
pub async fn discover(fhir_base_url: String) -> Result<JsValue, JsError> {
    let url = format!("{}/.well-known/smart-configuration", fhir_base_url.trim_end_matches('/'));
    let fetch = Reflect::get(&js_sys::global(), &"fetch".into()).map_err(|_| JsError::new("no fetch"))?;
    let fetch: js_sys::Function = fetch.dyn_into().map_err(|_| JsError::new("fetch is not a function"))?;
    let promise: Promise = fetch
        .call1(&JsValue::NULL, &url.clone().into())
        .map_err(|_| JsError::new("fetch threw"))?
        .dyn_into()
        .map_err(|_| JsError::new("fetch returned no promise"))?;
    let response: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|_| JsError::new(&format!("could not reach {url}")))?
        .dyn_into()
        .map_err(|_| JsError::new("fetch resolved to something else than a Response"))?;
    if !response.ok() {
        return Err(JsError::new(&format!("{url} answered {}", response.status())));
    }
    let text = JsFuture::from(response.text().map_err(|_| JsError::new("reading the body"))?)
        .await
        .map_err(|_| JsError::new("reading the body"))?
        .as_string()
        .unwrap_or_default();
    let config: SmartConfiguration =
        serde_json::from_str(&text).map_err(|e| JsError::new(&format!("{url} is not a SMART configuration: {e}")))?;
    let normalised = serde_json::to_string(&config).map_err(|e| JsError::new(&e.to_string()))?;
    JSON::parse(&normalised).map_err(|_| JsError::new("re-parsing the configuration"))
}
