//! Signing what a flow decided: the access token (RFC 9068, ES256), the ID token (OpenID
//! Connect Core §2, RS256) and the response around them (see [`crate::token::Issue`]).

use super::{Failure, OAuthPorts};
use crate::clients::Client;
use crate::grant_handle::{random_secret, GrantHandle};
use crate::grants::AuthorizationGrant;
use crate::token::{Issue, ACCESS_TOKEN_TYP};
use crate::tokens::sign_jwt;
use serde_json::Value;
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::scopes::ScopeSet;

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
    /// The authorization request's `nonce` goes into the first ID token only (OpenID Connect
    /// Core §12.2: not on refresh).
    pub with_nonce: bool,
}

/// Signs the tokens and builds the response.
pub(super) async fn issue(ports: &OAuthPorts<'_>, tokens: Tokens<'_>) -> Result<Value, Failure> {
    let ring = ports.keys.key_ring().await?;
    let now = ports.clock.now();
    let jti = new_jti(ports)?;
    let issue = Issue { urls: ports.urls, client: tokens.client, grant: tokens.grant, grant_id: tokens.grant_id, scope: tokens.scope, jti: &jti, now };
    let access = sign_jwt(&ring, ports.signer, JwsAlgorithm::ES256, ACCESS_TOKEN_TYP, &issue.access_token_claims(), now).await?;
    let id_token = match issue.id_token_claims(tokens.with_nonce) {
        Some(claims) => Some(sign_jwt(&ring, ports.signer, JwsAlgorithm::RS256, "JWT", &claims, now).await?),
        None => None,
    };
    let refresh_token = tokens.refresh_token.map(GrantHandle::encode);
    Ok(issue.response(&access, id_token.as_deref(), refresh_token.as_deref()))
}
