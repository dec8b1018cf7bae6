//! The token endpoint (RFC 6749 §3.2): `authorization_code` with PKCE and `refresh_token`
//! with rotation. The rules are `platform::token` and `platform::grants`; this module moves
//! values between the form, the client registry, the grant's Durable Object and the signer.

use crate::adapters::client_keys;
use crate::adapters::webcrypto::{WebCryptoRandom, WebCryptoSigner, WebCryptoVerifier};
use crate::durable::assertion_log::RecordRequest;
use crate::context::AppContext;
use crate::durable::account::SessionRequest;
use crate::durable::rpc;
use crate::grant_status;
use crate::http::{self, AppError, FormError};
use crate::keyring::{self, now_secs};
use crate::registry;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use platform::clients::Client;
use platform::accounts::GrantEntry;
use platform::assertions;
use platform::grants::{self, AuthorizationGrant, Command, GrantError, Reply};
use platform::ports::Random;
use platform::token::{self, ClientAuth, GrantRequest, Issue, ACCESS_TOKEN_TYP};
use platform::tokens::{opaque_hash, sign_jwt};
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Request, Response};

pub fn random_secret() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    WebCryptoRandom.fill(&mut bytes).map_err(AppError::internal)?;
    Ok(B64URL.encode(bytes))
}

/// An OAuth error from the token endpoint; `invalid_client` after Basic authentication carries
/// the `WWW-Authenticate` challenge RFC 6749 §5.2 requires.
fn error(e: &OAuthError, auth: Option<&ClientAuth>) -> Response {
    let response = http::oauth_error(e);
    if e.error == OAuthErrorCode::InvalidClient {
        let scheme = if auth.is_some_and(ClientAuth::used_basic) { "Basic" } else { "Bearer" };
        let _ = response.headers().set("WWW-Authenticate", &format!("{scheme} realm=\"smart-edge\""));
    }
    response
}

fn oauth(code: OAuthErrorCode, description: &str) -> OAuthError {
    OAuthError::new(code, description)
}

/// Splits `"{grant id}.{secret}"` (codes and refresh tokens).
pub fn split_handle(value: &str) -> Option<(&str, &str)> {
    value.split_once('.').filter(|(id, secret)| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
}

fn grant_error(e: GrantError) -> OAuthError {
    match e {
        GrantError::ClientMustAuthenticate => oauth(OAuthErrorCode::InvalidClient, "this client must authenticate"),
        GrantError::InvalidGrant { reason } => oauth(OAuthErrorCode::InvalidGrant, &reason),
        GrantError::InvalidScope { reason } => oauth(OAuthErrorCode::InvalidScope, &reason),
        _ => oauth(OAuthErrorCode::InvalidGrant, "the code or refresh token is not valid"),
    }
}

/// `POST /auth/token`.
pub async fn token(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs = match http::form(&mut req).await {
        Ok(pairs) => pairs,
        Err(FormError::WrongType) => {
            return Ok(error(&oauth(OAuthErrorCode::InvalidRequest, "the body must be application/x-www-form-urlencoded"), None))
        }
        Err(_) => return Ok(error(&oauth(OAuthErrorCode::InvalidRequest, "the body is too large or unreadable"), None)),
    };
    let authorization = req.headers().get("Authorization").ok().flatten();
    let request = match token::parse(&pairs, authorization.as_deref()) {
        Ok(request) => request,
        Err(e) => return Ok(error(&e, None)),
    };
    let auth = request.auth.clone();
    let outcome = match request.grant {
        GrantRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
            authorization_code(ctx, &auth, &code, redirect_uri, code_verifier).await?
        }
        GrantRequest::RefreshToken { refresh_token, scope } => refresh(ctx, &auth, &refresh_token, scope.as_deref()).await?,
        GrantRequest::ClientCredentials { scope } => client_credentials(ctx, &auth, scope.as_deref()).await?,
    };
    Ok(match outcome {
        Ok(body) => http::no_store(http::ok_json(&body)),
        Err(e) => error(&e, Some(&auth)),
    })
}

/// Loads and authenticates the client the request names (at the token endpoint).
pub async fn client_for(ctx: &AppContext, auth: &ClientAuth) -> Result<Result<Client, OAuthError>, AppError> {
    client_at(ctx, auth, None).await
}

/// Loads and authenticates the client the request names; a `private_key_jwt` assertion may
/// name the token URL or `endpoint` (introspection, revocation) as its audience.
pub async fn client_at(ctx: &AppContext, auth: &ClientAuth, endpoint: Option<&str>) -> Result<Result<Client, OAuthError>, AppError> {
    let client_id = match auth {
        // RFC 7523 §3: the assertion's iss names the client when client_id is absent.
        ClientAuth::Assertion { client_id: None, assertion } => match assertions::claimed_client(assertion) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        },
        _ => match auth.client_id() {
            Some(id) => id.to_owned(),
            None => return Ok(Err(oauth(OAuthErrorCode::InvalidClient, "client_id is required"))),
        },
    };
    let client = registry::client(ctx, &client_id).await?;
    if let Err(e) = token::authenticate(client.as_ref(), auth) {
        return Ok(Err(e));
    }
    let Some(client) = client else { return Ok(Err(oauth(OAuthErrorCode::InvalidClient, "unknown client"))) };
    if let ClientAuth::Assertion { assertion, .. } = auth {
        if let Err(e) = check_assertion(ctx, &client, assertion, endpoint).await? {
            return Ok(Err(e));
        }
    }
    Ok(Ok(client))
}

/// `private_key_jwt`: signature with the client's registered key, claims, and the `jti`
/// not seen before.
async fn check_assertion(ctx: &AppContext, client: &Client, assertion: &str, endpoint: Option<&str>) -> Result<Result<(), OAuthError>, AppError> {
    let invalid = |d: String| Ok(Err(oauth(OAuthErrorCode::InvalidClient, &d)));
    let mut keys = match client_keys::keys(client, false).await {
        Ok(keys) => keys,
        Err(e) => return invalid(format!("the client's keys could not be read: {e}")),
    };
    if !assertions::has_key(assertion, &keys) {
        keys = match client_keys::keys(client, true).await {
            Ok(keys) => keys,
            Err(e) => return invalid(format!("the client's keys could not be read: {e}")),
        };
    }
    let token_url = ctx.urls.token();
    let audiences: Vec<&str> = std::iter::once(token_url.as_str()).chain(endpoint).collect();
    let accepted = match assertions::verify(assertion, &client.client_id, &keys, &audiences, &WebCryptoVerifier, now_secs())
        .await
        .map_err(AppError::internal)?
    {
        Ok(accepted) => accepted,
        Err(e) => return Ok(Err(e)),
    };
    let stub = rpc::by_name(&ctx.env, "ASSERTIONS", &client.client_id)?;
    let fresh: bool = rpc::call::<_, bool, serde_json::Value>(&stub, "/record", &RecordRequest { jti: accepted.jti, exp: accepted.exp })
        .await?
        .unwrap_or(false);
    if !fresh {
        return invalid("this client_assertion (jti) was already used".into());
    }
    Ok(Ok(()))
}

/// SMART Backend Services: `client_credentials` with `private_key_jwt`, `system/` scopes, a
/// short-lived access token and no refresh token.
async fn client_credentials(ctx: &AppContext, auth: &ClientAuth, scope: Option<&str>) -> Result<Result<serde_json::Value, OAuthError>, AppError> {
    if !matches!(auth, ClientAuth::Assertion { .. }) {
        return Ok(Err(oauth(OAuthErrorCode::InvalidClient, "client_credentials needs a private_key_jwt client assertion")));
    }
    let client = match client_for(ctx, auth).await? {
        Ok(client) => client,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = token::grant_allowed(&client, true) {
        return Ok(Err(e));
    }
    let scope = match token::backend_scope(&client, scope) {
        Ok(scope) => scope,
        Err(e) => return Ok(Err(e)),
    };
    let ring = keyring::load(ctx).await?;
    let now = now_secs();
    let jti = random_secret()?;
    // Each backend token is a grant of its own, so that it can be revoked (RFC 7009).
    let grant_id = ctx.env.durable_object("GRANTS")?.unique_id()?.to_string();
    let start = Command::StartBackend { client_id: client.client_id.clone(), expires_at: now + token::BACKEND_TOKEN_LIFETIME_SECS };
    if let Err(e) = grant_status::apply(&ctx.env, &grant_id, &start).await? {
        return Err(AppError::internal(format!("new backend grant refused its start: {e}")));
    }
    let claims = token::backend_access_claims(&ctx.urls, &client, &scope, &jti[..22], &grant_id, now);
    let access = sign_jwt(&ring, &WebCryptoSigner, JwsAlgorithm::ES256, ACCESS_TOKEN_TYP, &claims, now).await.map_err(AppError::internal)?;
    Ok(Ok(serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": token::BACKEND_TOKEN_LIFETIME_SECS,
        "scope": scope.to_string(),
    })))
}

async fn authorization_code(
    ctx: &AppContext,
    auth: &ClientAuth,
    code: &str,
    redirect_uri: Option<String>,
    code_verifier: String,
) -> Result<Result<serde_json::Value, OAuthError>, AppError> {
    let client = match client_for(ctx, auth).await? {
        Ok(client) => client,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = token::grant_allowed(&client, false) {
        return Ok(Err(e));
    }
    let Some((grant_id, secret)) = split_handle(code) else {
        return Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the code is not valid")));
    };
    let command = Command::Exchange {
        code_hash: opaque_hash(secret),
        client_id: client.client_id.clone(),
        redirect_uri,
        code_verifier,
        refresh_secret: random_secret()?,
        refresh_lifetime: i64::from(client.refresh_token_lifetime),
    };
    match grant_status::apply(&ctx.env, grant_id, &command).await? {
        Ok(Reply::Tokens { grant, scope, refresh_token }) => {
            // The user's management page lists the grant from now on.
            let entry = GrantEntry {
                grant_id: grant_id.to_owned(),
                client_id: client.client_id.clone(),
                client_name: client.client_name.clone(),
                scope: grant.scope.clone(),
                granted_at: now_secs(),
            };
            let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &grant.user.username)?;
            let _ = rpc::call::<_, bool, serde_json::Value>(&stub, "/grants/add", &entry).await?;
            let scope = ScopeSet::parse(&scope).unwrap_or_default();
            let refresh_token = refresh_token.map(|secret| format!("{grant_id}.{secret}"));
            Ok(Ok(issue(ctx, &client, &grant, grant_id, &scope, refresh_token.as_deref(), true).await?))
        }
        Ok(Reply::Revoked) => Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the code was already used; the tokens it gave are revoked"))),
        Ok(_) => Err(AppError::internal("Exchange answered something else")),
        Err(e) => Ok(Err(grant_error(e))),
    }
}

async fn refresh(
    ctx: &AppContext,
    auth: &ClientAuth,
    refresh_token: &str,
    scope: Option<&str>,
) -> Result<Result<serde_json::Value, OAuthError>, AppError> {
    // A public client may refresh without naming itself (SMART 2.2 §2.0.9); anyone else
    // authenticates first.
    let named = match auth {
        ClientAuth::None { client_id: None } => None,
        _ => match client_for(ctx, auth).await? {
            Ok(client) => Some(client),
            Err(e) => return Ok(Err(e)),
        },
    };
    let Some((grant_id, secret)) = split_handle(refresh_token) else {
        return Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the refresh token is not valid")));
    };
    let command = Command::Refresh {
        presented_hash: opaque_hash(secret),
        client_id: named.as_ref().map(|c| c.client_id.clone()),
        next_secret: random_secret()?,
        grace_secs: crate::settings::load(ctx).await?.refresh_grace_secs,
        scope: scope.map(str::to_owned),
    };
    let (grant, scope, next) = match grant_status::apply(&ctx.env, grant_id, &command).await? {
        Ok(Reply::Tokens { grant, scope, refresh_token }) => (grant, scope, refresh_token),
        Ok(Reply::Revoked) => {
            return Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the refresh token was already used or has expired; the grant is revoked")))
        }
        Ok(_) => return Err(AppError::internal("Refresh answered something else")),
        Err(e) => return Ok(Err(grant_error(e))),
    };
    let client = match named {
        Some(client) => client,
        None => match registry::client(ctx, &grant.client_id).await? {
            Some(client) => client,
            None => return Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the client of this grant no longer exists"))),
        },
    };
    // online_access: the grant lives only as long as the user's login session.
    if grants::bound_to_session(&grant.scope) && !session_alive(ctx, &grant).await? {
        let _ = grant_status::apply(&ctx.env, grant_id, &Command::Revoke { reason: "the user's session ended".into() }).await?;
        return Ok(Err(oauth(OAuthErrorCode::InvalidGrant, "the user's session has ended (online_access)")));
    }
    let scope = ScopeSet::parse(&scope).unwrap_or_default();
    let next = next.map(|secret| format!("{grant_id}.{secret}"));
    Ok(Ok(issue(ctx, &client, &grant, grant_id, &scope, next.as_deref(), false).await?))
}

async fn session_alive(ctx: &AppContext, grant: &AuthorizationGrant) -> Result<bool, AppError> {
    let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &grant.user.username)?;
    let request = SessionRequest { id: grant.user.session_id.clone(), secret: String::new() };
    let alive: Result<bool, serde_json::Value> = rpc::call(&stub, "/session/alive", &request).await?;
    Ok(alive.unwrap_or(false))
}

/// Signs the access token (ES256) and the ID token (RS256) and builds the response.
async fn issue(
    ctx: &AppContext,
    client: &Client,
    grant: &AuthorizationGrant,
    grant_id: &str,
    scope: &ScopeSet,
    refresh_token: Option<&str>,
    with_nonce: bool,
) -> Result<serde_json::Value, AppError> {
    let ring = keyring::load(ctx).await?;
    let now = now_secs();
    let jti = random_secret()?;
    let issue = Issue { urls: &ctx.urls, client, grant, grant_id, scope, jti: &jti[..22], now };
    let access = sign_jwt(&ring, &WebCryptoSigner, JwsAlgorithm::ES256, ACCESS_TOKEN_TYP, &issue.access_token_claims(), now)
        .await
        .map_err(AppError::internal)?;
    let id_token = match issue.id_token_claims(with_nonce) {
        Some(claims) => Some(sign_jwt(&ring, &WebCryptoSigner, JwsAlgorithm::RS256, "JWT", &claims, now).await.map_err(AppError::internal)?),
        None => None,
    };
    Ok(issue.response(&access, id_token.as_deref(), refresh_token))
}
