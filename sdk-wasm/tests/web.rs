//! Runs in headless Chromium (`wasm-pack test --headless --chrome sdk-wasm`): the SDK's PKCE
//! against the RFC 7636 vector and against the browser's own WebCrypto SHA-256.
#![cfg(target_arch = "wasm32")]

use js_sys::{Reflect, Uint8Array};
use smart_edge_sdk::{create_pkce, pkce_challenge};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn pkce_challenge_matches_rfc_7636_appendix_b() {
    let challenge = pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
    assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert!(pkce_challenge("too-short").is_err());
}

#[wasm_bindgen_test]
async fn create_pkce_gives_a_fresh_verifier_whose_challenge_webcrypto_agrees_with() {
    let get = |pair: &wasm_bindgen::JsValue, key: &str| Reflect::get(pair, &key.into()).unwrap().as_string().unwrap();
    let first = create_pkce().unwrap();
    let second = create_pkce().unwrap();
    let verifier = get(&first, "codeVerifier");
    assert_eq!(verifier.len(), 43);
    assert_ne!(verifier, get(&second, "codeVerifier"));
    assert_eq!(get(&first, "codeChallengeMethod"), "S256");

    // An independent SHA-256: the browser's WebCrypto.
    let subtle = web_sys::window().unwrap().crypto().unwrap().subtle();
    let digest = JsFuture::from(subtle.digest_with_str_and_u8_array("SHA-256", verifier.as_bytes()).unwrap()).await.unwrap();
    let bytes = Uint8Array::new(digest.unchecked_ref()).to_vec();
    let expected: String = base64url(&bytes);
    assert_eq!(get(&first, "codeChallenge"), expected);
}

fn base64url(bytes: &[u8]) -> String {
    // btoa, then the URL-safe alphabet without padding, as RFC 7636 §4.2 asks.
    let binary: String = bytes.iter().map(|&b| b as char).collect();
    let b64 = web_sys::window().unwrap().btoa(&binary).unwrap();
    b64.trim_end_matches('=').replace('+', "-").replace('/', "_")
}
