//! `POST /auth/token` (RFC 6749 §3.2): the request is read, the grant type's flow runs
//! (`code.rs`, `refresh.rs`, `backend.rs`), and its refusal is worded for the client.

use super::request::{self, ClientAuth, GrantRequest};
use super::{refusal, ClientChallenge, Failure, FormPost, FormProblem, OAuthPorts, Stop};
use crate::grants::GrantError;
use smart_protocol::token::TokenResponse;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// What to answer, for the edge to encode.
#[derive(Clone, PartialEq)]
pub enum TokenAnswer {
    /// 200, `no-store`: the token response (RFC 6749 §5.1 + SMART launch context).
    Tokens(Box<TokenResponse>),
    /// The OAuth error (its status follows from the code), with the `WWW-Authenticate`
    /// challenge when it is due.
    Refused { error: OAuthError, challenge: Option<ClientChallenge> },
    /// 429: the authenticated client is over its rate limit; `Retry-After` in seconds.
    Limited { retry_after: u32 },
}

/// The token response prints as `[redacted]` (it holds the tokens).
impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenAnswer::Tokens(_) => f.debug_tuple("Tokens").field(&crate::secret::Redacted).finish(),
            TokenAnswer::Refused { error, challenge } => f.debug_struct("Refused").field("error", error).field("challenge", challenge).finish(),
            TokenAnswer::Limited { retry_after } => f.debug_struct("Limited").field("retry_after", retry_after).finish(),
        }
    }
}

impl TokenAnswer {
    /// A refusal; `invalid_client` carries the challenge of the scheme the client tried.
    fn refuse(error: OAuthError, auth: Option<&ClientAuth>) -> TokenAnswer {
        let challenge = (error.error == OAuthErrorCode::InvalidClient).then(|| ClientChallenge::for_auth(auth));
        TokenAnswer::Refused { error, challenge }
    }
}

/// The grant object's refusal, as the token endpoint words it (RFC 6749 §5.2).
pub(super) fn grant_refusal(e: GrantError) -> Stop {
    match e {
        GrantError::ClientMustAuthenticate => refusal(OAuthErrorCode::InvalidClient, "this client must authenticate"),
        GrantError::InvalidGrant { reason } => refusal(OAuthErrorCode::InvalidGrant, &reason),
        GrantError::InvalidScope { reason } => refusal(OAuthErrorCode::InvalidScope, &reason),
        _ => refusal(OAuthErrorCode::InvalidGrant, "the code or refresh token is not valid"),
    }
}

/// Answers one token request.
pub async fn token(ports: &OAuthPorts<'_>, call: &FormPost) -> Result<TokenAnswer, Failure> {
    let request = match parse(call) {
        Ok(request) => request,
        Err(e) => return Ok(TokenAnswer::refuse(e, None)),
    };
    let auth = &request.auth;
    if let Some(error) = simulated(ports, auth).await? {
        return Ok(TokenAnswer::refuse(error, Some(auth)));
    }
    let outcome = match request.grant {
        GrantRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
            super::code::authorization_code(ports, auth, &code, redirect_uri, code_verifier).await
        }
        GrantRequest::RefreshToken { refresh_token, scope } => super::refresh::refresh(ports, auth, &refresh_token, scope.as_deref()).await,
        GrantRequest::ClientCredentials { scope } => super::backend::client_credentials(ports, auth, scope.as_deref()).await,
    };
    match outcome {
        Ok(body) => Ok(TokenAnswer::Tokens(Box::new(body))),
        Err(Stop::Refuse(e)) => Ok(TokenAnswer::refuse(e, Some(auth))),
        Err(Stop::Fail(failure)) => Err(failure),
        Err(Stop::Limited(retry_after)) => Ok(TokenAnswer::Limited { retry_after }),
    }
}

/// A test client's simulated failure ([`crate::simulate`]), answered as the real error would
/// be (its status, and the challenge for `invalid_client`), before the client authenticates or
/// any grant is touched: no code is consumed, no refresh token rotates, no assertion is
/// recorded. The client is the one the request names (`client_id`, HTTP Basic, or the `sub` of
/// an assertion, unverified: a simulation grants nothing).
async fn simulated(ports: &OAuthPorts<'_>, auth: &ClientAuth) -> Result<Option<OAuthError>, Failure> {
    let named = match auth {
        ClientAuth::Assertion { client_id: None, assertion } => smart_protocol::jose::parse_compact_any_kid(assertion)
            .ok()
            .and_then(|jws| jws.payload.get("sub").and_then(serde_json::Value::as_str).map(str::to_owned)),
        other => other.client_id().map(str::to_owned),
    };
    let Some(client_id) = named else { return Ok(None) };
    let simulation = crate::simulate::take_for(ports.simulations, ports.clients, &client_id, crate::simulate::Stage::Token).await?;
    Ok(simulation.map(|s| s.oauth_error()))
}

/// The form is one, its parameters are single and short, the grant type is known and its
/// parameters present, and the client's credentials are read (see [`crate::request::parse`]).
fn parse(call: &FormPost) -> Result<request::TokenRequest, OAuthError> {
    let pairs = call.form.as_ref().map_err(|problem| match problem {
        FormProblem::NotAForm => OAuthError::new(OAuthErrorCode::InvalidRequest, "the body must be application/x-www-form-urlencoded"),
        FormProblem::Unreadable => OAuthError::new(OAuthErrorCode::InvalidRequest, "the body is too large or unreadable"),
    })?;
    request::parse(pairs, call.authorization.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_client_carries_a_challenge_in_the_scheme_tried() {
        let basic = ClientAuth::Basic { client_id: "a".into(), secret: "s".into() };
        let invalid_client = || OAuthError::new(OAuthErrorCode::InvalidClient, "x");
        let challenge = |answer: TokenAnswer| match answer {
            TokenAnswer::Refused { challenge, .. } => challenge,
            TokenAnswer::Tokens(_) | TokenAnswer::Limited { .. } => panic!(),
        };
        assert_eq!(challenge(TokenAnswer::refuse(invalid_client(), Some(&basic))), Some(ClientChallenge::Basic));
        assert_eq!(challenge(TokenAnswer::refuse(invalid_client(), None)), Some(ClientChallenge::Bearer));
        assert_eq!(challenge(TokenAnswer::refuse(OAuthError::new(OAuthErrorCode::InvalidGrant, "x"), Some(&basic))), None);
        assert_eq!(ClientChallenge::Basic.header(), "Basic realm=\"smart-edge\"");
    }

    #[test]
    fn debug_never_shows_the_tokens() {
        let tokens = TokenResponse { access_token: "a.b.c".into(), refresh_token: Some("g.s3cret".into()), ..TokenResponse::default() };
        let answer = TokenAnswer::Tokens(Box::new(tokens));
        assert_eq!(format!("{answer:?}"), "Tokens([redacted])");
    }
}
