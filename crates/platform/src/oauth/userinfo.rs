//! The UserInfo endpoint (OpenID Connect Core §5.3): the signed-in user's claims for an access
//! token with `openid` — `sub` always, `fhirUser` with the `fhirUser` scope, `name` with
//! `profile`. Checks in order: the bearer token (RFC 6750) → `openid` was granted → claims.

use super::{Failure, OAuthPorts, REALM};
use crate::guard::{self, BearerError};
use smart_protocol::error::bearer_challenge;
use smart_protocol::scopes::Scope;
use smart_protocol::token::UserInfo;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// What to answer, for the edge to encode.
#[derive(Debug)]
pub enum UserinfoAnswer {
    /// 200, `no-store`.
    Claims(UserInfo),
    /// The bearer token is missing or not valid (RFC 6750 §3: 401 and its challenge).
    Unauthenticated(BearerError),
    /// A valid token without `openid`: `insufficient_scope` (403) and the challenge to send.
    InsufficientScope { error: OAuthError, challenge: String },
}

/// `GET|POST /auth/userinfo` with the request's `Authorization` header.
pub async fn userinfo(ports: &OAuthPorts<'_>, authorization: Option<&str>) -> Result<UserinfoAnswer, Failure> {
    let ring = ports.keys.key_ring().await?;
    let grant = match guard::authenticate(authorization, &ring, ports.verifier, ports.grant_status, ports.urls, ports.clock.now()).await {
        Ok(grant) => grant,
        Err(BearerError::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(UserinfoAnswer::Unauthenticated(e)),
    };
    if !grant.scope.contains(&Scope::OpenId) {
        let error = OAuthError::new(OAuthErrorCode::InsufficientScope, "userinfo needs the openid scope");
        let challenge = bearer_challenge(REALM, Some(&error));
        return Ok(UserinfoAnswer::InsufficientScope { error, challenge });
    }
    let fhir_user = grant.fhir_user.as_deref().filter(|_| super::issue::gives_fhir_user(&grant.scope)).map(|u| super::issue::fhir_user_url(ports.urls, u));
    let name = match grant.scope.contains(&Scope::Profile) {
        true => ports.users.user(&grant.sub).await?.map(|user| user.display_name),
        false => None,
    };
    Ok(UserinfoAnswer::Claims(UserInfo { sub: grant.sub, fhir_user, name }))
}
