//! Workers implementations of the platform's ports.

pub mod auth_server;
pub mod client_keys;
pub mod fhir_store;
pub mod kv;
pub mod simulations;
pub mod webcrypto;
