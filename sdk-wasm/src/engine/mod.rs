//! The SDK's core, written against [`env::Environment`]: the same code runs in the browser
//! (`crate::browser`) and natively in `cargo test` against an in-memory SMART server.

pub mod authorize;
pub mod client;
pub mod env;
pub mod error;
pub mod ready;
pub mod state;
pub mod url;

#[cfg(test)]
mod tests;
