//! `grant_type=refresh_token` (RFC 6749 §6) with rotation and reuse detection (RFC 9700
//! §4.14.2); a public client may refresh without naming itself (SMART 2.2 §2.0.9).

use super::client_auth::{authenticated, within_limit};
use super::issue::{issue, Tokens};
use super::request::ClientAuth;
use super::{grant_refusal, refusal, Checked, Failure, OAuthPorts};
use crate::clients::Client;
use crate::grant_handle::GrantHandle;
use crate::grants::{self, AuthorizationGrant, Command, Reply};
use crate::secret::random_secret;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::token::TokenResponse;
use smart_protocol::OAuthErrorCode;

pub(super) async fn refresh(ports: &OAuthPorts<'_>, auth: &ClientAuth, refresh_token: &str, scope: Option<&str>) -> Checked<TokenResponse> {
    let named = named_client(ports, auth).await?;
    let presented = GrantHandle::parse(refresh_token).ok_or_else(|| refusal(OAuthErrorCode::InvalidGrant, "the refresh token is not valid"))?;
    // The grant object checks the token (current, or the previous one within the grace
    // window), the client, the chain's expiry and the narrower scope, then rotates.
    let rotate = Command::Refresh {
        presented_hash: presented.secret_hash(),
        client_id: named.as_ref().map(|c| c.client_id.clone()),
        next_secret: random_secret(ports.random)?.into(),
        grace_secs: ports.settings.settings().await?.refresh_grace_secs,
        scope: scope.map(str::to_owned),
    };
    let (grant, scope, next_secret) = match ports.grants.apply(presented.grant_id(), &rotate).await?.map_err(grant_refusal)? {
        Reply::Tokens { grant, scope, refresh_token } => (grant, scope, refresh_token),
        Reply::Revoked => return Err(refusal(OAuthErrorCode::InvalidGrant, "the refresh token was already used or has expired; the grant is revoked")),
        _ => return Err(Failure::Unexpected("Refresh answered something else".into()).into()),
    };
    let client = grant_client(ports, named, &grant).await?;
    session_still_open(ports, presented.grant_id(), &grant).await?;
    let scope = ScopeSet::parse(&scope).unwrap_or_default();
    let next = next_secret.map(|secret| GrantHandle::new(presented.grant_id(), secret.expose()));
    let tokens = Tokens { client: &client, grant: &grant, grant_id: presented.grant_id(), scope: &scope, refresh_token: next.as_ref(), first: false };
    Ok(issue(ports, tokens).await?)
}

/// The client, authenticated, unless it is a public client that does not name itself.
async fn named_client(ports: &OAuthPorts<'_>, auth: &ClientAuth) -> Checked<Option<Client>> {
    match auth {
        ClientAuth::None { client_id: None } => Ok(None),
        _ => {
            let client = authenticated(ports, auth, None).await?;
            within_limit(ports, &client).await?;
            Ok(Some(client))
        }
    }
}

/// The client the grant was issued to (an anonymous refresh names none), if it still exists.
async fn grant_client(ports: &OAuthPorts<'_>, named: Option<Client>, grant: &AuthorizationGrant) -> Checked<Client> {
    match named {
        Some(client) => Ok(client),
        None => ports.clients.client(&grant.client_id).await?.ok_or_else(|| refusal(OAuthErrorCode::InvalidGrant, "the client of this grant no longer exists")),
    }
}

/// `online_access` (without `offline_access`): the grant lives only as long as the user's
/// login session; once it has ended, the grant is revoked.
async fn session_still_open(ports: &OAuthPorts<'_>, grant_id: &str, grant: &AuthorizationGrant) -> Checked<()> {
    if !grants::bound_to_session(&grant.scope) || ports.accounts.session_alive(&grant.user.username, &grant.user.session_id).await? {
        return Ok(());
    }
    let _ = ports.grants.apply(grant_id, &Command::Revoke { reason: "the user's session ended".into() }).await?;
    Err(refusal(OAuthErrorCode::InvalidGrant, "the user's session has ended (online_access)"))
}
