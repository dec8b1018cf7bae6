//! OAuth 2.0 error responses: RFC 6749 §4.1.2.1 (authorization), §5.2 (token), RFC 6750 §3.1
//! (bearer), RFC 7009 §2.2.1 (revocation).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The closed set of error codes the specifications define, plus an escape hatch for codes
/// defined by extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    Extension(String),
}

impl OAuthErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::Extension(code) => code,
        }
    }

    fn parse(code: &str) -> Self {
        const KNOWN: [OAuthErrorCode; 16] = [
            OAuthErrorCode::InvalidRequest,
            OAuthErrorCode::InvalidClient,
            OAuthErrorCode::InvalidGrant,
            OAuthErrorCode::UnauthorizedClient,
            OAuthErrorCode::UnsupportedGrantType,
            OAuthErrorCode::UnsupportedResponseType,
            OAuthErrorCode::UnsupportedTokenType,
            OAuthErrorCode::InvalidScope,
            OAuthErrorCode::AccessDenied,
            OAuthErrorCode::ServerError,
            OAuthErrorCode::TemporarilyUnavailable,
            OAuthErrorCode::InvalidToken,
            OAuthErrorCode::InsufficientScope,
            OAuthErrorCode::LoginRequired,
            OAuthErrorCode::ConsentRequired,
            OAuthErrorCode::InteractionRequired,
        ];
        KNOWN.into_iter().find(|known| known.as_str() == code).unwrap_or_else(|| Self::Extension(code.to_owned()))
    }

    /// The HTTP status a JSON error response with this code carries (RFC 6749 §5.2: 400, and
    /// 401 for a failed client authentication; RFC 6750 §3.1 for bearer errors).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::InsufficientScope | Self::AccessDenied => 403,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl Serialize for OAuthErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OAuthErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(Self::parse(&code))
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { error, error_description: Some(description.into()) }
    }

    pub fn status(&self) -> u16 {
        self.error.http_status()
    }
}

/// The `WWW-Authenticate` challenge of RFC 6750 §3: no error attribute when the request
/// carried no credentials, else the error code and description.
pub fn bearer_challenge(realm: &str, error: Option<&OAuthError>) -> String {
    let quote = |s: &str| s.replace(['"', '\\'], "'");
    let mut challenge = format!("Bearer realm=\"{}\"", quote(realm));
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{}\"", error.error));
        if let Some(description) = &error.error_description {
            challenge.push_str(&format!(", error_description=\"{}\"", quote(description)));
        }
    }
    challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_follows_rfc_6750() {
        assert_eq!(bearer_challenge("fhir", None), r#"Bearer realm="fhir""#);
        let err = OAuthError::new(OAuthErrorCode::InvalidToken, "the \"token\" expired");
        assert_eq!(bearer_challenge("fhir", Some(&err)), r#"Bearer realm="fhir", error="invalid_token", error_description="the 'token' expired""#);
    }

    #[test]
    fn codes_round_trip_through_json() {
        let err = OAuthError::new(OAuthErrorCode::InvalidGrant, "code already used");
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(json, r#"{"error":"invalid_grant","error_description":"code already used"}"#);
        assert_eq!(serde_json::from_str::<OAuthError>(&json).unwrap(), err);
        let ext: OAuthError = serde_json::from_str(r#"{"error":"x_custom"}"#).unwrap();
        assert_eq!(ext.error, OAuthErrorCode::Extension("x_custom".into()));
    }

    #[test]
    fn statuses_follow_rfc_6749_and_6750() {
        assert_eq!(OAuthErrorCode::InvalidRequest.http_status(), 400);
        assert_eq!(OAuthErrorCode::InvalidClient.http_status(), 401);
        assert_eq!(OAuthErrorCode::InvalidToken.http_status(), 401);
        assert_eq!(OAuthErrorCode::InsufficientScope.http_status(), 403);
    }
}
