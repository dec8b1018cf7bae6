//! The token endpoint's use case (RFC 6749 §3.2): a decoded request in, a token response or an
//! OAuth error out, decided over the ports in [`TokenPorts`].
//!
//! Each grant type is an ordered list of named checks; the first that refuses answers:
//!
//! - [`authorization_code`] (RFC 6749 §4.1.3, RFC 7636 §4.5): authenticate the client → the
//!   client may use the grant type → the code is ours → the grant object exchanges it
//!   (single use; a replay revokes the grant) → list the grant for the user → sign.
//! - [`refresh`] (RFC 6749 §6, RFC 9700 §4.14.2, SMART 2.2 §2.0.9): authenticate a client
//!   that names itself → the token is ours → the grant object rotates it (grace window for a
//!   second tab, reuse revokes) → the grant's client still exists → an `online_access` grant
//!   needs the user's session → sign.
//! - [`backend`] (SMART Backend Services, RFC 7523): a `private_key_jwt` assertion → the client
//!   authenticates (keys, claims, `jti` never seen) → the client is a backend service → its
//!   scopes → a revocable grant of its own → sign.
//!
//! Client authentication ([`client_auth`]) is shared with introspection and revocation.
//! The Worker decodes the HTTP request into a [`TokenCall`], calls [`token`] and encodes the
//! [`TokenAnswer`]; the same code runs natively over [`memory`]'s adapters.

mod backend;
pub mod client_auth;
mod code;
mod issue;
pub mod memory;
mod refresh;

use crate::grants::GrantError;
use crate::keys::KeyError;
use crate::ports::{
    AssertionLog, Accounts, ClientKeys, ClientRegistry, Clock, CryptoError, GrantStore, Random, Settings, Signer, SigningKeys,
    StoreError, Verifier,
};
use crate::token::{self, ClientAuth, GrantRequest};
use serde_json::Value;
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};
use std::fmt;

/// What the token endpoint (and introspection and revocation) work with.
pub struct TokenPorts<'a> {
    pub urls: &'a ServerUrls,
    pub grants: &'a dyn GrantStore,
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
}

/// Why a body is not a form the endpoint can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormProblem {
    /// Not `application/x-www-form-urlencoded`.
    NotAForm,
    /// Too large, or not readable as a form.
    Unreadable,
}

/// One token request, decoded at the edge: the form's pairs in order (repeats kept, so that
/// they can be refused) and the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenCall {
    pub form: Result<Vec<(String, String)>, FormProblem>,
    pub authorization: Option<String>,
}

impl fmt::Debug for TokenCall {
    /// Parameter names only: the values are codes, tokens, secrets and assertions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Result<Vec<&str>, _> = self.form.as_ref().map(|pairs| pairs.iter().map(|(k, _)| k.as_str()).collect());
        f.debug_struct("TokenCall").field("form", &names).field("authorization", &self.authorization.as_ref().map(|_| crate::grant_handle::Redacted)).finish()
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
        format!("{scheme} realm=\"smart-edge\"")
    }
}

/// What to answer, for the edge to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenAnswer {
    /// 200, `no-store`: the token response (RFC 6749 §5.1 + SMART launch context).
    Tokens(Value),
    /// The OAuth error (its status follows from the code), with the `WWW-Authenticate`
    /// challenge when it is due.
    Refused { error: OAuthError, challenge: Option<ClientChallenge> },
}

impl TokenAnswer {
    /// A refusal; `invalid_client` carries the challenge of the scheme the client tried.
    fn refuse(error: OAuthError, auth: Option<&ClientAuth>) -> TokenAnswer {
        let challenge = (error.error == OAuthErrorCode::InvalidClient).then(|| ClientChallenge::for_auth(auth));
        TokenAnswer::Refused { error, challenge }
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

/// The grant object's refusal, as the token endpoint words it (RFC 6749 §5.2).
fn grant_refusal(e: GrantError) -> Stop {
    match e {
        GrantError::ClientMustAuthenticate => refusal(OAuthErrorCode::InvalidClient, "this client must authenticate"),
        GrantError::InvalidGrant { reason } => refusal(OAuthErrorCode::InvalidGrant, &reason),
        GrantError::InvalidScope { reason } => refusal(OAuthErrorCode::InvalidScope, &reason),
        _ => refusal(OAuthErrorCode::InvalidGrant, "the code or refresh token is not valid"),
    }
}

/// Answers one token request.
pub async fn token(ports: &TokenPorts<'_>, call: &TokenCall) -> Result<TokenAnswer, Failure> {
    let request = match parse(call) {
        Ok(request) => request,
        Err(e) => return Ok(TokenAnswer::refuse(e, None)),
    };
    let auth = &request.auth;
    let outcome = match request.grant {
        GrantRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
            code::authorization_code(ports, auth, &code, redirect_uri, code_verifier).await
        }
        GrantRequest::RefreshToken { refresh_token, scope } => refresh::refresh(ports, auth, &refresh_token, scope.as_deref()).await,
        GrantRequest::ClientCredentials { scope } => backend::client_credentials(ports, auth, scope.as_deref()).await,
    };
    match outcome {
        Ok(body) => Ok(TokenAnswer::Tokens(body)),
        Err(Stop::Refuse(e)) => Ok(TokenAnswer::refuse(e, Some(auth))),
        Err(Stop::Fail(failure)) => Err(failure),
    }
}

/// The form is one, its parameters are single and short, the grant type is known and its
/// parameters present, and the client's credentials are read (see [`token::parse`]).
fn parse(call: &TokenCall) -> Result<token::TokenRequest, OAuthError> {
    let pairs = call.form.as_ref().map_err(|problem| match problem {
        FormProblem::NotAForm => OAuthError::new(OAuthErrorCode::InvalidRequest, "the body must be application/x-www-form-urlencoded"),
        FormProblem::Unreadable => OAuthError::new(OAuthErrorCode::InvalidRequest, "the body is too large or unreadable"),
    })?;
    token::parse(pairs, call.authorization.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_parameter_names_not_values() {
        let call = TokenCall { form: Ok(vec![("code".into(), "g.s3cret".into())]), authorization: Some("Basic c2VjcmV0".into()) };
        let text = format!("{call:?}");
        assert!(text.contains("code") && !text.contains("s3cret") && !text.contains("c2VjcmV0"), "{text}");
    }

    #[test]
    fn only_invalid_client_carries_a_challenge_in_the_scheme_tried() {
        let basic = ClientAuth::Basic { client_id: "a".into(), secret: "s".into() };
        let invalid_client = || OAuthError::new(OAuthErrorCode::InvalidClient, "x");
        let challenge = |answer: TokenAnswer| match answer {
            TokenAnswer::Refused { challenge, .. } => challenge,
            TokenAnswer::Tokens(_) => panic!(),
        };
        assert_eq!(challenge(TokenAnswer::refuse(invalid_client(), Some(&basic))), Some(ClientChallenge::Basic));
        assert_eq!(challenge(TokenAnswer::refuse(invalid_client(), None)), Some(ClientChallenge::Bearer));
        assert_eq!(challenge(TokenAnswer::refuse(OAuthError::new(OAuthErrorCode::InvalidGrant, "x"), Some(&basic))), None);
        assert_eq!(ClientChallenge::Basic.header(), "Basic realm=\"smart-edge\"");
    }
}
