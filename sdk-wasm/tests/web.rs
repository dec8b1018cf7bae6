//! Runs in headless Chromium (wasm-bindgen-test): the browser's side of the SDK's environment —
//! WebCrypto SHA-256 for the PKCE challenge (the RFC 7636 vector), randomness and storage.
#![cfg(target_arch = "wasm32")]

use smart_edge_sdk::browser::BrowserEnv;
use smart_edge_sdk::engine::env::{Area, Environment};
use smart_protocol::pkce::s256_challenge_of_digest;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn the_pkce_challenge_hashed_by_webcrypto_matches_rfc_7636_appendix_b() {
    let env = BrowserEnv::new().unwrap();
    let digest = env.sha256(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").await.unwrap();
    assert_eq!(s256_challenge_of_digest(&digest), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

#[wasm_bindgen_test]
fn randomness_and_storage_come_from_the_browser() {
    let env = BrowserEnv::new().unwrap();
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    env.random(&mut a);
    env.random(&mut b);
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
    env.set(Area::Tab, "smart-edge:test", "v1");
    assert_eq!(env.get(Area::Tab, "smart-edge:test").as_deref(), Some("v1"));
    env.remove(Area::Tab, "smart-edge:test");
    assert_eq!(env.get(Area::Tab, "smart-edge:test"), None);
}
