//! smart-edge browser SDK: a SMART App Launch 2.2 client compiled from Rust with
//! wasm-bindgen. The protocol rules come from `smart-protocol` (shared with the server); the
//! flows are [`engine`], written against an environment trait; [`browser`] is the browser's
//! side of it. The wasm functions below are stateless and speak JSON: the ES module
//! `js/smart-edge.js` wraps them into `authorize`, `ready`, `init`, `Client` and `SmartError`.

pub mod engine;
pub mod json;

#[cfg(target_arch = "wasm32")]
pub mod browser;
#[cfg(target_arch = "wasm32")]
mod exports;

/// The browser build's allocator (talc: smaller than Rust's default dlmalloc for wasm).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
