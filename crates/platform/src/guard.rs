//! The resource server's guard (RFC 6750 + RFC 9068 §4): the bearer token, its signature by
//! this server's key, its type, expiry and audience, and the grant it belongs to. The caller
//! adds the revocation check (the grant's Durable Object) through [`GrantStatus`].

use crate::jwt::{verify_own_jwt, TokenError};
use crate::keys::KeyRing;
use crate::oauth::issue::ACCESS_TOKEN_TYP;
use crate::ports::{StoreError, Verifier};
use async_trait::async_trait;
use serde_json::Value;
use smart_protocol::error::bearer_challenge;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::token::AccessTokenClaims;
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};

/// What a valid access token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessGrant {
    pub sub: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub fhir_user: Option<String>,
    pub grant_id: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub claims: serde_json::Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// No credentials at all (RFC 6750 §3.1: no error code in the challenge).
    #[error("no bearer token")]
    Missing,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccessGrant {
    /// The grant of work the server does for a client itself, with neither patient nor user
    /// context: a bulk export's background batches, the admin bundle load.
    pub fn service(client_id: &str, scope: ScopeSet) -> AccessGrant {
        AccessGrant {
            sub: client_id.to_owned(),
            client_id: client_id.to_owned(),
            scope,
            patient: None,
            encounter: None,
            fhir_user: None,
            grant_id: None,
            iat: 0,
            exp: 0,
            claims: Default::default(),
        }
    }

    /// A grant as a verified token would carry it, for tests of the decisions built on it.
    #[cfg(test)]
    pub(crate) fn for_tests(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
        AccessGrant {
            sub: "u".into(),
            client_id: "c".into(),
            scope: ScopeSet::parse(scope).expect("a valid scope"),
            patient: patient.map(str::to_owned),
            encounter: None,
            fhir_user: fhir_user.map(str::to_owned),
            grant_id: None,
            iat: 0,
            exp: 0,
            claims: Default::default(),
        }
    }
}

/// The RFC 6750 §3 answer to a failed bearer authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct BearerRefusal {
    pub status: u16,
    /// The JSON error body.
    pub body: OAuthError,
    /// The `WWW-Authenticate` value: no error code when no credentials were sent at all
    /// (RFC 6750 §3.1).
    pub challenge: String,
}

impl BearerError {
    /// What to answer; `None` for a storage failure (the server's fault, a 500).
    pub fn refusal(&self, realm: &str) -> Option<BearerRefusal> {
        let challenge_error = match self {
            BearerError::Missing => None,
            BearerError::Invalid(message) => Some(OAuthError::new(OAuthErrorCode::InvalidToken, message.clone())),
            BearerError::Store(_) => return None,
        };
        let challenge = bearer_challenge(realm, challenge_error.as_ref());
        let body = challenge_error.unwrap_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, "a bearer token is required"));
        Some(BearerRefusal { status: 401, body, challenge })
    }
}

/// Whether a grant is still active (not revoked).
#[async_trait(?Send)]
pub trait GrantStatus {
    async fn is_active(&self, grant_id: &str) -> Result<bool, StoreError>;
}

/// The token of `Authorization: Bearer …`.
pub fn bearer(header: Option<&str>) -> Result<&str, BearerError> {
    let header = header.ok_or(BearerError::Missing)?;
    crate::admin::bearer_token(header).ok_or_else(|| BearerError::Invalid("the Authorization header is not a Bearer token".into()))
}

/// Verifies an access token this server issued, without the revocation check.
pub async fn verify_access_token(token: &str, ring: &KeyRing, verifier: &dyn Verifier, urls: &ServerUrls, now: i64) -> Result<AccessGrant, BearerError> {
    let claims = verify_own_jwt(ring, verifier, token, ACCESS_TOKEN_TYP, urls.issuer(), now).await.map_err(|e| match e {
        TokenError::Expired => BearerError::Invalid("the access token has expired".into()),
        other => BearerError::Invalid(format!("the access token is not valid: {other}")),
    })?;
    if claims.get("aud").and_then(Value::as_str) != Some(urls.fhir_base().as_str()) {
        return Err(BearerError::Invalid("the access token is for another audience".into()));
    }
    let typed: AccessTokenClaims =
        serde_json::from_value(Value::Object(claims.clone())).map_err(|e| BearerError::Invalid(format!("the access token is not valid: {e}")))?;
    Ok(AccessGrant {
        sub: typed.sub,
        client_id: typed.client_id,
        scope: ScopeSet::parse(&typed.scope).unwrap_or_default(),
        patient: typed.patient,
        encounter: typed.encounter,
        fhir_user: typed.fhir_user,
        grant_id: typed.gid,
        iat: typed.iat,
        exp: typed.exp,
        claims,
    })
}

/// The whole guard: bearer extraction, token checks, and the grant still active.
pub async fn authenticate(
    header: Option<&str>,
    ring: &KeyRing,
    verifier: &dyn Verifier,
    status: &dyn GrantStatus,
    urls: &ServerUrls,
    now: i64,
) -> Result<AccessGrant, BearerError> {
    let token = bearer(header)?;
    let grant = verify_access_token(token, ring, verifier, urls, now).await?;
    if let Some(id) = &grant.grant_id {
        if !status.is_active(id).await? {
            return Err(BearerError::Invalid("the access token has been revoked".into()));
        }
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::sign_jwt;
    use crate::keys::ensure_keys;
    use crate::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier, MemoryKeyStore};
    use futures::executor::block_on;
    use smart_protocol::jose::JwsAlgorithm;

    struct Revoked(&'static str);

    #[async_trait(?Send)]
    impl GrantStatus for Revoked {
        async fn is_active(&self, grant_id: &str) -> Result<bool, StoreError> {
            Ok(grant_id != self.0)
        }
    }

    #[test]
    fn accepts_a_live_token_and_refuses_missing_foreign_expired_and_revoked_ones() {
        let urls = ServerUrls::new("https://ehr.example", "/fhir").unwrap();
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        let token = |aud: &str, gid: &str, typ: &str| {
            let claims =
                serde_json::json!({"iss": "https://ehr.example", "aud": aud, "exp": 100, "sub": "u", "scope": "patient/*.rs", "patient": "p1", "gid": gid});
            format!("Bearer {}", block_on(sign_jwt(&ring, &FakeSigner, JwsAlgorithm::ES256, typ, &claims, 0)).unwrap())
        };
        let check = |header: Option<&str>, now| block_on(authenticate(header, &ring, &FakeVerifier, &Revoked("g-revoked"), &urls, now));
        let good = token("https://ehr.example/fhir", "g1", "at+jwt");
        let grant = check(Some(&good), 50).unwrap();
        assert_eq!(grant.patient.as_deref(), Some("p1"));
        assert_eq!(grant.scope.to_string(), "patient/*.rs");
        assert!(matches!(check(None, 50), Err(BearerError::Missing)));
        assert!(matches!(check(Some("Basic abc"), 50), Err(BearerError::Invalid(_))));
        assert!(matches!(check(Some(&good), 100), Err(BearerError::Invalid(m)) if m.contains("expired")));
        assert!(matches!(check(Some(&token("https://other.example/fhir", "g1", "at+jwt")), 50), Err(BearerError::Invalid(m)) if m.contains("audience")));
        assert!(matches!(check(Some(&token("https://ehr.example/fhir", "g1", "JWT")), 50), Err(BearerError::Invalid(_))), "an ID token is no access token");
        assert!(matches!(check(Some(&token("https://ehr.example/fhir", "g-revoked", "at+jwt")), 50), Err(BearerError::Invalid(m)) if m.contains("revoked")));
    }

    #[test]
    fn a_refusal_names_no_error_when_no_token_was_sent() {
        let missing = BearerError::Missing.refusal("r").unwrap();
        assert_eq!((missing.status, missing.body.error.as_str(), missing.challenge.as_str()), (401, "invalid_request", "Bearer realm=\"r\""));
        let invalid = BearerError::Invalid("the access token has expired".into()).refusal("r").unwrap();
        assert_eq!(invalid.body.error, OAuthErrorCode::InvalidToken);
        assert_eq!(invalid.challenge, "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"the access token has expired\"");
        assert!(BearerError::Store(StoreError("down".into())).refusal("r").is_none());
    }
}
