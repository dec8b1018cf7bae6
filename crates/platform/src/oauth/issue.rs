//! What the tokens hold and signing them: the access token (RFC 9068, ES256, with the SMART
//! launch context and the grant id revocation checks), the ID token (OpenID Connect Core §2,
//! RS256), a backend service's access token, and the token response around them
//! (`smart_protocol::token::TokenResponse`, for every grant type).

use super::{Failure, OAuthPorts};
use crate::clients::Client;
use crate::grant_handle::GrantHandle;
use crate::grants::AuthorizationGrant;
use crate::jwt::sign_jwt;
use crate::secret::random_secret;
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::scopes::{Scope, ScopeSet};
use smart_protocol::token::{AccessTokenClaims, IdTokenClaims, TokenResponse};
use smart_protocol::ServerUrls;

/// `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Lifetime of ID tokens.
pub const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

/// Lifetime of a backend services access token (SMART: "should be short-lived").
pub const BACKEND_TOKEN_LIFETIME_SECS: i64 = 300;

/// A fresh `jti` (22 base64url characters, 132 bits).
pub(super) fn new_jti(ports: &OAuthPorts<'_>) -> Result<String, Failure> {
    Ok(random_secret(ports.random)?[..22].to_owned())
}

/// What one issue is about.
pub(super) struct Tokens<'g> {
    pub client: &'g Client,
    pub grant: &'g AuthorizationGrant,
    pub grant_id: &'g str,
    pub scope: &'g ScopeSet,
    pub refresh_token: Option<&'g GrantHandle>,
    /// Whether this is the grant's first token response (the code exchange), the one with an
    /// ID token (and the authorization request's `nonce` in it) when `openid` was granted.
    /// A refresh response carries none: OpenID Connect Core §12.2 lets it omit the ID token,
    /// SMART App Launch 2.2 §2.0.9 lists none in it, and clients keep the first one (the
    /// SDK and fhirclient.js do). Its RS256 signature was the largest cost of a refresh
    /// (≈0.65 ms of CPU, BENCHMARKS.md).
    pub first: bool,
}

/// Signs the tokens and builds the response.
pub(super) async fn issue(ports: &OAuthPorts<'_>, tokens: Tokens<'_>) -> Result<TokenResponse, Failure> {
    let ring = ports.keys.key_ring().await?;
    let now = ports.clock.now();
    let jti = new_jti(ports)?;
    let issue = Issue { urls: ports.urls, client: tokens.client, grant: tokens.grant, grant_id: tokens.grant_id, scope: tokens.scope, jti: &jti, now };
    let access = sign_jwt(&ring, ports.signer, JwsAlgorithm::ES256, ACCESS_TOKEN_TYP, &issue.access_token_claims(), now).await?;
    let id_token = match tokens.first.then(|| issue.id_token_claims()).flatten() {
        Some(claims) => Some(sign_jwt(&ring, ports.signer, JwsAlgorithm::RS256, "JWT", &claims, now).await?),
        None => None,
    };
    let refresh_token = tokens.refresh_token.map(GrantHandle::encode);
    Ok(issue.response(access, id_token, refresh_token))
}

/// The access token of a backend service: no user, no launch context; `grant_id` is the
/// grant revocation ends.
pub fn backend_access_claims(urls: &ServerUrls, client: &Client, scope: &ScopeSet, jti: &str, grant_id: &str, now: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: urls.issuer().to_owned(),
        sub: client.client_id.clone(),
        aud: urls.fhir_base(),
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        iat: now,
        exp: now + BACKEND_TOKEN_LIFETIME_SECS,
        jti: jti.to_owned(),
        gid: Some(grant_id.to_owned()),
        ..AccessTokenClaims::default()
    }
}

/// Whether the user's `fhirUser` is told (the ID token, userinfo, introspection): with `openid`
/// and `fhirUser` granted (SMART 2.2: with `openid`, `fhirUser` asks for the user's FHIR
/// resource in the ID token; introspection then SHOULD give it too).
pub fn gives_fhir_user(scope: &ScopeSet) -> bool {
    scope.contains(&Scope::OpenId) && scope.contains(&Scope::FhirUser)
}

/// The user's FHIR resource (`Practitioner/…`, as registered) as the absolute URL the ID token,
/// userinfo and introspection give.
pub fn fhir_user_url(urls: &ServerUrls, fhir_user: &str) -> String {
    format!("{}/{fhir_user}", urls.fhir_base())
}

/// Everything that goes into one token response.
pub struct Issue<'a> {
    pub urls: &'a ServerUrls,
    pub client: &'a Client,
    pub grant: &'a AuthorizationGrant,
    pub grant_id: &'a str,
    pub scope: &'a ScopeSet,
    pub jti: &'a str,
    pub now: i64,
}

impl Issue<'_> {
    pub fn expires_in(&self) -> i64 {
        i64::from(self.client.access_token_lifetime)
    }

    fn fhir_user_url(&self) -> String {
        fhir_user_url(self.urls, &self.grant.user.fhir_user)
    }

    /// RFC 9068 access token claims, with the SMART context the resource server needs and the
    /// grant id it checks revocation against.
    pub fn access_token_claims(&self) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: self.urls.issuer().to_owned(),
            sub: self.grant.user.username.clone(),
            aud: self.urls.fhir_base(),
            client_id: self.client.client_id.clone(),
            scope: self.scope.to_string(),
            iat: self.now,
            exp: self.now + self.expires_in(),
            jti: self.jti.to_owned(),
            auth_time: Some(self.grant.user.auth_time),
            gid: Some(self.grant_id.to_owned()),
            fhir_user: Some(self.grant.user.fhir_user.clone()),
            patient: self.grant.context.patient.clone(),
            encounter: self.grant.context.encounter.clone(),
        }
    }

    /// The ID token's claims when `openid` was granted (OpenID Connect Core §2, §5.1; SMART
    /// `fhirUser`), with the authorization request's `nonce`.
    pub fn id_token_claims(&self) -> Option<IdTokenClaims> {
        if !self.scope.contains(&Scope::OpenId) {
            return None;
        }
        Some(IdTokenClaims {
            iss: self.urls.issuer().to_owned(),
            sub: self.grant.user.username.clone(),
            aud: self.client.client_id.clone(),
            iat: self.now,
            exp: self.now + ID_TOKEN_LIFETIME_SECS,
            auth_time: Some(self.grant.user.auth_time),
            nonce: self.grant.nonce.clone(),
            fhir_user: gives_fhir_user(self.scope).then(|| self.fhir_user_url()),
            name: self.scope.contains(&Scope::Profile).then(|| self.grant.user.display_name.clone()),
        })
    }

    /// The token response (RFC 6749 §5.1 + the SMART launch context + the ID token).
    pub fn response(&self, access_token: String, id_token: Option<String>, refresh_token: Option<String>) -> TokenResponse {
        TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: Some(self.expires_in()),
            scope: Some(self.scope.to_string()),
            refresh_token,
            id_token,
            context: self.grant.context.clone(),
        }
    }
}
