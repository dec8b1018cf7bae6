//! `grant_type=client_credentials` for SMART Backend Services: `private_key_jwt` only,
//! `system/` scopes, a short-lived access token and no refresh token. Each token is a grant of
//! its own, so that it can be revoked (RFC 7009).

use super::client_auth::{authenticated_unrecorded, replayed, within_limit};
use super::issue::new_jti;
use super::issue::{backend_access_claims, ACCESS_TOKEN_TYP, BACKEND_TOKEN_LIFETIME_SECS};
use super::request::{self, ClientAuth};
use super::{refusal, Checked, Failure, OAuthPorts};
use crate::grants::Command;
use crate::jwt::sign_jwt;
use crate::scope_policy;
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::token::TokenResponse;
use smart_protocol::OAuthErrorCode;

pub(super) async fn client_credentials(ports: &OAuthPorts<'_>, auth: &ClientAuth, scope: Option<&str>) -> Checked<TokenResponse> {
    if !matches!(auth, ClientAuth::Assertion { .. }) {
        return Err(refusal(OAuthErrorCode::InvalidClient, "client_credentials needs a private_key_jwt client assertion"));
    }
    let (client, accepted) = authenticated_unrecorded(ports, auth, None).await?;
    within_limit(ports, &client).await?;
    let Some(assertion) = accepted else { return Err(Failure::Unexpected("an assertion client without an assertion".into()).into()) };
    request::grant_allowed(&client, true)?;
    let scope = scope_policy::backend_scope(&client, scope)?;
    let ring = ports.keys.key_ring().await?;
    let now = ports.clock.now();
    let jti = new_jti(ports)?;
    let grant_id = ports.grants.new_backend_id(&client.client_id)?;
    let start = Command::StartBackend { client_id: client.client_id.clone(), expires_at: now + BACKEND_TOKEN_LIFETIME_SECS };
    // The assertion's jti and the token's grant, written in one step (one round trip in the
    // Worker): a replay starts nothing.
    match ports.assertions.record_and_start(ports.grants, &client.client_id, &assertion.jti, assertion.exp, &grant_id, &start).await? {
        None => return Err(replayed()),
        Some(Err(e)) => return Err(Failure::Unexpected(format!("new backend grant refused its start: {e}")).into()),
        Some(Ok(_)) => {}
    }
    let claims = backend_access_claims(ports.urls, &client, &scope, &jti, &grant_id, now);
    let access = sign_jwt(&ring, ports.signer, JwsAlgorithm::ES256, ACCESS_TOKEN_TYP, &claims, now).await?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: Some(BACKEND_TOKEN_LIFETIME_SECS),
        scope: Some(scope.to_string()),
        ..TokenResponse::default()
    })
}
