//! Workers implementations of the platform's ports.

pub mod kv;
pub mod webcrypto;
