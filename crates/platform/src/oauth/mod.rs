//! The OAuth endpoints a client calls after the sign-in, as use cases over the ports in
//! [`OAuthPorts`]: the token endpoint ([`token`](fn@token), RFC 6749 §3.2), introspection
//! ([`introspection::introspect`], RFC 7662), revocation ([`introspection::revoke`], RFC 7009)
//! and userinfo ([`userinfo::userinfo`], OpenID Connect Core §5.3).
//!
//! Each is an ordered list of named checks; the first that refuses answers. The token
//! endpoint's grant types:
//!
//! - `authorization_code` (`code.rs`; RFC 6749 §4.1.3, RFC 7636 §4.5): authenticate the client
//!   → the client may use the grant type → the code is ours → the grant object exchanges it
//!   (single use; a replay revokes the grant) → list the grant for the user → sign.
//! - `refresh_token` (`refresh.rs`; RFC 6749 §6, RFC 9700 §4.14.2, SMART 2.2 §2.0.9):
//!   authenticate a client that names itself → the token is ours → the grant object rotates it
//!   (grace window for a second tab, reuse revokes) → the grant's client still exists → an
//!   `online_access` grant needs the user's session → sign.
//! - `client_credentials` (`backend.rs`; SMART Backend Services, RFC 7523): a
//!   `private_key_jwt` assertion → the client authenticates (keys, claims, `jti` never seen) →
//!   the client is a backend service → its scopes → a revocable grant of its own → sign.
//!
//! Client authentication ([`client_auth`]) is shared by token, introspection and revocation.
//! The Worker decodes an HTTP request once (a [`FormPost`], or a bearer header), calls one use
//! case and encodes its answer; the same code runs natively over [`memory`]'s adapters.

mod backend;
pub mod client_auth;
mod code;
pub mod introspection;
pub mod issue;
pub mod memory;
mod refresh;
pub mod request;
mod token_endpoint;
pub mod userinfo;

use token_endpoint::grant_refusal;
pub use token_endpoint::{token, TokenAnswer};

use crate::guard::GrantStatus;
use crate::keys::KeyError;
use crate::ports::{
    Accounts, AssertionLog, ClientKeys, ClientRegistry, Clock, CryptoError, GrantStore, Random, Settings, Signer, SigningKeys, StoreError, Users, Verifier,
};
use request::ClientAuth;
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};
use std::fmt;

/// The realm of every challenge the endpoints send (`WWW-Authenticate`).
pub const REALM: &str = "smart-edge";

/// What the endpoints work with.
pub struct OAuthPorts<'a> {
    pub urls: &'a ServerUrls,
    pub grants: &'a dyn GrantStore,
    /// Whether a grant is active, for bearer tokens (the Worker caches active answers briefly;
    /// introspection asks [`Self::grants`] itself).
    pub grant_status: &'a dyn GrantStatus,
    pub users: &'a dyn Users,
    pub clients: &'a dyn ClientRegistry,
    pub client_keys: &'a dyn ClientKeys,
    pub assertions: &'a dyn AssertionLog,
    pub accounts: &'a dyn Accounts,
    pub keys: &'a dyn SigningKeys,
    pub settings: &'a dyn Settings,
    pub signer: &'a dyn Signer,
    pub verifier: &'a dyn Verifier,
    pub random: &'a dyn Random,
    pub clock: &'a dyn Clock,
    /// A test client's next failure on purpose ([`crate::simulate`]).
    pub simulations: &'a dyn crate::simulate::Simulations,
    /// The per-client rate limit of the token endpoint, counted only once the client has
    /// authenticated (counted before, anyone naming a client could use up its limit).
    pub client_limits: &'a dyn crate::ports::ClientLimits,
}

/// Why a body is not a form the endpoint can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormProblem {
    /// Not `application/x-www-form-urlencoded`.
    NotAForm,
    /// Too large, or not readable as a form.
    Unreadable,
}

/// A form POSTed to the token, introspection or revocation endpoint, decoded at the edge: its
/// pairs in order (repeats kept, so that they can be refused) and the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct FormPost {
    pub form: Result<Vec<(String, String)>, FormProblem>,
    pub authorization: Option<String>,
}

impl fmt::Debug for FormPost {
    /// Parameter names only: the values are codes, tokens, secrets and assertions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Result<Vec<&str>, _> = self.form.as_ref().map(|pairs| pairs.iter().map(|(k, _)| k.as_str()).collect());
        f.debug_struct("FormPost").field("form", &names).field("authorization", &self.authorization.as_ref().map(|_| crate::secret::Redacted)).finish()
    }
}

/// The `WWW-Authenticate` scheme a failed client authentication answers with (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientChallenge {
    Basic,
    Bearer,
}

impl ClientChallenge {
    /// `Basic` when the client tried HTTP Basic, else `Bearer`.
    pub fn for_auth(auth: Option<&ClientAuth>) -> ClientChallenge {
        if auth.is_some_and(ClientAuth::used_basic) {
            ClientChallenge::Basic
        } else {
            ClientChallenge::Bearer
        }
    }

    /// The header's value.
    pub fn header(self) -> String {
        let scheme = match self {
            ClientChallenge::Basic => "Basic",
            ClientChallenge::Bearer => "Bearer",
        };
        format!("{scheme} realm=\"{REALM}\"")
    }
}

/// The server's own failure (storage, crypto, keys): logged, answered 500 `server_error`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Unexpected(String),
}

/// Why a flow stopped short of tokens: a refusal for the client, or a failure of ours.
#[derive(Debug)]
enum Stop {
    Refuse(OAuthError),
    Fail(Failure),
    /// The authenticated client is over its token-endpoint rate limit: 429 with this
    /// `Retry-After` (seconds).
    Limited(u32),
}

impl From<OAuthError> for Stop {
    fn from(e: OAuthError) -> Stop {
        Stop::Refuse(e)
    }
}

macro_rules! failure_stops {
    ($($error:ty),*) => {$(
        impl From<$error> for Stop {
            fn from(e: $error) -> Stop {
                Stop::Fail(e.into())
            }
        }
    )*};
}
failure_stops!(Failure, StoreError, CryptoError, KeyError);

/// The result of one check or flow.
type Checked<T> = Result<T, Stop>;

fn refusal(code: OAuthErrorCode, description: &str) -> Stop {
    Stop::Refuse(OAuthError::new(code, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_parameter_names_not_values() {
        let call = FormPost { form: Ok(vec![("code".into(), "g.s3cret".into())]), authorization: Some("Basic c2VjcmV0".into()) };
        let text = format!("{call:?}");
        assert!(text.contains("code") && !text.contains("s3cret") && !text.contains("c2VjcmV0"), "{text}");
    }
}
