//! Introspection (RFC 7662 + SMART), revocation (RFC 7009) and userinfo (OpenID Connect
//! Core §5.3), all on top of the grant's Durable Object.

use crate::adapters::auth_server::AuthServer;
use crate::adapters::webcrypto::WebCryptoVerifier;
use crate::context::AppContext;
use crate::grant_status::{self, DoGrantStatus};
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use crate::{registry, settings};
use platform::clients::Client;
use platform::grant_handle::GrantHandle;
use platform::introspection::{self, Endpoint};
use platform::grants::{Command, Reply};
use platform::guard::{self, AccessGrant, BearerError};
use platform::settings::IntrospectionStyle;
use platform::token::{self, ClientAuth};
use platform::token_endpoint::{client_auth, ClientChallenge};
use platform::tokens::hash_matches;
use serde_json::{json, Value};
use smart_protocol::error::bearer_challenge;
use smart_protocol::scopes::Scope;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Request, Response};

/// Reads the form and authenticates the calling client (a secret, `private_key_jwt`, or for
/// revocation a public client naming itself); `platform::introspection` says who may call.
async fn caller(req: &mut Request, ctx: &AppContext, endpoint: Endpoint) -> Result<Result<(Vec<(String, String)>, Client), Response>, AppError> {
    let pairs = match http::form(req).await {
        Ok(pairs) => pairs,
        Err(_) => return Ok(Err(http::oauth(OAuthErrorCode::InvalidRequest, "the body must be an application/x-www-form-urlencoded form"))),
    };
    if let Err(e) = token::check_pairs(&pairs) {
        return Ok(Err(http::oauth_error(&e)));
    }
    let authorization = req.headers().get("Authorization").ok().flatten();
    let fail = |e: OAuthError, auth: Option<&ClientAuth>| {
        let response = http::oauth_error(&e);
        let _ = response.headers().set("WWW-Authenticate", &ClientChallenge::for_auth(auth).header());
        Err(response)
    };
    let auth = match token::parse_client_auth(&pairs, authorization.as_deref()) {
        Ok(auth) => auth,
        Err(e) => return Ok(fail(e, None)),
    };
    if matches!(auth, ClientAuth::None { client_id: None }) {
        return Ok(fail(OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication is required"), Some(&auth)));
    }
    let url = match endpoint {
        Endpoint::Introspect => ctx.urls.introspect(),
        Endpoint::Revoke => ctx.urls.revoke(),
    };
    let server = AuthServer::new(ctx);
    let client = match client_auth::authenticate(&server.ports(), &auth, Some(&url)).await.map_err(AppError::internal)? {
        Ok(client) => client,
        Err(e) => return Ok(fail(e, Some(&auth))),
    };
    if let Err(e) = introspection::may_call(&client, endpoint) {
        return Ok(fail(e, Some(&auth)));
    }
    if http::field(&pairs, "token").is_none_or(str::is_empty) {
        return Ok(Err(http::oauth(OAuthErrorCode::InvalidRequest, "token is required")));
    }
    Ok(Ok((pairs, client)))
}

/// What a presented token is, if it is one of ours and still alive.
enum Found {
    Access(Box<AccessGrant>),
    Refresh { grant_id: String, grant: Box<platform::grants::AuthorizationGrant> },
}

async fn find(ctx: &AppContext, token: &str, check_expiry: bool) -> Result<Option<Found>, AppError> {
    if let Some(handle) = GrantHandle::parse(token) {
        return Ok(match grant_status::apply(&ctx.env, handle.grant_id(), &Command::Status).await? {
            Ok(Reply::Active { grant, refresh_hash: Some(hash) }) if hash_matches(&hash, handle.secret()) => {
                Some(Found::Refresh { grant_id: handle.grant_id().to_owned(), grant })
            }
            _ => None,
        });
    }
    let ring = keyring::load(ctx).await?;
    // Revocation accepts an expired access token too (revoking it still ends its grant).
    let now = if check_expiry { now_secs() } else { 0 };
    let grant = match guard::verify_access_token(token, &ring, &WebCryptoVerifier, &ctx.urls, now).await {
        Ok(grant) => grant,
        Err(_) => return Ok(None),
    };
    if check_expiry {
        // Introspection asks the grant itself, never the isolate's cache: its answer is the
        // authoritative one.
        if let Some(id) = &grant.grant_id {
            if !matches!(grant_status::apply(&ctx.env, id, &Command::Status).await?, Ok(Reply::Active { .. } | Reply::BackendActive { .. })) {
                return Ok(None);
            }
        }
    }
    Ok(Some(Found::Access(Box::new(grant))))
}

/// `POST /auth/introspect`.
pub async fn introspect(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let (pairs, caller) = match caller(&mut req, ctx, Endpoint::Introspect).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    let token = http::field(&pairs, "token").unwrap_or_default();
    let found = find(ctx, token, true).await?.filter(|found| {
        let client_id = match found {
            Found::Access(grant) => grant.client_id.as_str(),
            Found::Refresh { grant, .. } => grant.client_id.as_str(),
        };
        introspection::may_introspect(&caller, client_id)
    });
    let body = match found {
        Some(Found::Access(grant)) => {
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": grant.scope.to_string(),
                "client_id": grant.client_id,
                "sub": grant.sub,
                "iss": ctx.urls.issuer(),
                "aud": ctx.urls.fhir_base(),
                "exp": grant.exp,
                "iat": grant.iat,
            });
            for name in ["fhirUser", "patient", "encounter", "jti"] {
                if let Some(value) = grant.claims.get(name) {
                    body[name] = value.clone();
                }
            }
            Some(body)
        }
        Some(Found::Refresh { grant, .. }) => {
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scope,
                "client_id": grant.client_id,
                "sub": grant.user.username,
                "iss": ctx.urls.issuer(),
                "fhirUser": grant.user.fhir_user,
            });
            if let Value::Object(context) = serde_json::to_value(&grant.context).unwrap_or_default() {
                body.as_object_mut().expect("an object").extend(context);
            }
            Some(body)
        }
        None => None,
    };
    Ok(http::no_store(match body {
        Some(body) => http::ok_json(&body),
        None if settings::load(ctx).await?.introspection_style == IntrospectionStyle::SmileCdr => http::json(
            404,
            &json!({"active": false, "scope": "", "client_id": "", "username": "", "token_type": "", "exp": null, "iat": null, "sub": "", "aud": "", "iss": "", "jti": ""}),
            "application/json",
        ),
        None => http::ok_json(&json!({ "active": false })),
    }))
}

/// `POST /auth/revoke`: ends the grant of an access or refresh token issued to the caller.
/// 200 whatever the token (RFC 7009 §2.2).
pub async fn revoke(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let (pairs, caller) = match caller(&mut req, ctx, Endpoint::Revoke).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    let token = http::field(&pairs, "token").unwrap_or_default();
    let target = match find(ctx, token, false).await? {
        Some(Found::Refresh { grant_id, grant }) => Some((grant_id, grant.client_id)),
        Some(Found::Access(grant)) => grant.grant_id.clone().map(|id| (id, grant.client_id.clone())),
        None => None,
    };
    if let Some((grant_id, client_id)) = target {
        // Only the client the token was issued to may revoke it (RFC 7009 §2.1).
        if introspection::may_revoke(&caller, &client_id) {
            let _ = grant_status::apply(&ctx.env, &grant_id, &Command::Revoke { reason: "revoked by the client".into() }).await?;
        }
    }
    Ok(http::no_store(http::text(200, "", "text/plain", "no-store")))
}

/// The RFC 6750 §3 answer to a failed bearer authentication.
pub fn bearer_refusal(error: &BearerError, realm: &str) -> Result<Response, AppError> {
    let (status, oauth) = match error {
        BearerError::Missing => (401, None),
        BearerError::Invalid(message) => (401, Some(OAuthError::new(OAuthErrorCode::InvalidToken, message.clone()))),
        BearerError::Store(e) => return Err(AppError::internal(e)),
    };
    let body = oauth.clone().unwrap_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, "a bearer token is required"));
    let response = http::oauth_error(&body).with_status(status);
    let _ = response.headers().set("WWW-Authenticate", &bearer_challenge(realm, oauth.as_ref()));
    Ok(response)
}

/// `GET|POST /auth/userinfo`.
pub async fn userinfo(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let header = req.headers().get("Authorization").ok().flatten();
    let ring = keyring::load(ctx).await?;
    let grant = match guard::authenticate(header.as_deref(), &ring, &WebCryptoVerifier, &DoGrantStatus(&ctx.env), &ctx.urls, now_secs()).await {
        Ok(grant) => grant,
        Err(e) => return bearer_refusal(&e, "smart-edge"),
    };
    if !grant.scope.contains(&Scope::OpenId) {
        let error = OAuthError::new(OAuthErrorCode::InsufficientScope, "userinfo needs the openid scope");
        let response = http::oauth_error(&error);
        let _ = response.headers().set("WWW-Authenticate", &bearer_challenge("smart-edge", Some(&error)));
        return Ok(response);
    }
    let mut body = json!({ "sub": grant.sub });
    if grant.scope.contains(&Scope::FhirUser) {
        if let Some(fhir_user) = &grant.fhir_user {
            body["fhirUser"] = json!(format!("{}/{fhir_user}", ctx.urls.fhir_base()));
        }
    }
    if grant.scope.contains(&Scope::Profile) {
        if let Some(user) = registry::user(ctx, &grant.sub).await? {
            body["name"] = json!(user.display_name);
        }
    }
    Ok(http::no_store(http::ok_json(&body)))
}
