//! Wire types and protocol rules for SMART App Launch 2.2, OAuth 2.0 and OpenID Connect.
//!
//! Everything here is pure: no I/O, no clock, no randomness. The authorization server
//! (`worker/` through `platform`) and the browser SDK (`sdk-wasm/`) both build on this crate,
//! so the client and the server share one definition of every protocol value.

pub mod b64url;
pub mod datatypes;
pub mod discovery;
pub mod error;
pub mod fields;
pub mod introspection;
pub mod jose;
pub mod launch;
pub mod pkce;
pub mod registration;
pub mod scopes;
pub mod token;
pub mod urls;

pub use error::{OAuthError, OAuthErrorCode};
pub use urls::ServerUrls;
