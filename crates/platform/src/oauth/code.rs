//! `grant_type=authorization_code` (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.5).

use super::client_auth::{authenticated, within_limit};
use super::issue::{issue, Tokens};
use super::request::{self, ClientAuth};
use super::{grant_refusal, refusal, Checked, Failure, OAuthPorts};
use crate::accounts::GrantEntry;
use crate::grant_handle::GrantHandle;
use crate::grants::{Command, Reply};
use crate::secret::random_secret;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::token::TokenResponse;
use smart_protocol::OAuthErrorCode;

pub(super) async fn authorization_code(
    ports: &OAuthPorts<'_>,
    auth: &ClientAuth,
    code: &str,
    redirect_uri: Option<String>,
    code_verifier: String,
) -> Checked<TokenResponse> {
    let client = authenticated(ports, auth, None).await?;
    within_limit(ports, &client).await?;
    request::grant_allowed(&client, false)?;
    let code = GrantHandle::parse(code).ok_or_else(|| refusal(OAuthErrorCode::InvalidGrant, "the code is not valid"))?;
    // The grant object checks the code, its expiry, the client, redirect_uri and the
    // verifier; a second exchange of the same code revokes what the first one gave.
    let exchange = Command::Exchange {
        code_hash: code.secret_hash(),
        client_id: client.client_id.clone(),
        redirect_uri,
        code_verifier: code_verifier.into(),
        refresh_secret: random_secret(ports.random)?.into(),
        refresh_lifetime: i64::from(client.refresh_token_lifetime),
    };
    let (grant, scope, refresh_secret) = match ports.grants.apply(code.grant_id(), &exchange).await?.map_err(grant_refusal)? {
        Reply::Tokens { grant, scope, refresh_token } => (grant, scope, refresh_token),
        Reply::Revoked => return Err(refusal(OAuthErrorCode::InvalidGrant, "the code was already used; the tokens it gave are revoked")),
        _ => return Err(Failure::Unexpected("Exchange answered something else".into()).into()),
    };
    // The user's management page lists the grant from now on.
    let entry = GrantEntry {
        grant_id: code.grant_id().to_owned(),
        client_id: client.client_id.clone(),
        client_name: client.client_name.clone(),
        scope: grant.scope.clone(),
        granted_at: ports.clock.now(),
    };
    ports.accounts.add_grant(&grant.user.username, &entry).await?;
    let scope = ScopeSet::parse(&scope).unwrap_or_default();
    let refresh_token = refresh_secret.map(|secret| GrantHandle::new(code.grant_id(), secret.expose()));
    let tokens = Tokens { client: &client, grant: &grant, grant_id: code.grant_id(), scope: &scope, refresh_token: refresh_token.as_ref(), first: true };
    Ok(issue(ports, tokens).await?)
}
