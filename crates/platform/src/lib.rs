//! smart-edge's use cases, written once over small storage and crypto *ports* so that the
//! same decisions run inside the Worker (KV, Durable Objects, WebCrypto) and natively in tests
//! (the in-memory adapters in [`memory`]).
//!
//! Ports are `?Send`: Workers futures are not `Send`, and nothing here needs threads.

pub mod accounts;
pub mod admin;
pub mod assertions;
pub mod authorize;
pub mod backup;
pub mod clients;
pub mod discovery;
pub mod features;
pub mod fhir;
pub mod grant_handle;
pub mod grants;
pub mod guard;
pub mod jwt;
pub mod keys;
pub mod launch;
pub mod manage;
pub mod memory;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod portal;
pub mod portal_page;
pub mod ports;
pub mod registration;
pub mod routes;
pub mod schema;
pub mod scope_policy;
pub mod secret;
pub mod settings;
pub mod signin;
pub mod simulate;
pub mod users;

pub use ports::{CryptoError, StoreError};
