//! The admin API: server settings (KV) and key rotation (key vault), behind the
//! `ADMIN_TOKEN` bearer secret.

use crate::context::{vars, AppContext};
use crate::http::{self, AppError};
use crate::{keyring, settings};
use platform::admin::{self, AdminAuth};
use platform::settings::{ServerSettings, MAX_SETTINGS_BYTES};
use smart_protocol::error::bearer_challenge;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Method, Request, Response};

const REALM: &str = "smart-edge admin";

/// `Err` carries the refusal to send back.
fn authorize(req: &Request, ctx: &AppContext) -> Result<(), Response> {
    let header = req.headers().get("Authorization").ok().flatten();
    let refusal = match admin::check(header.as_deref(), ctx.secret(vars::ADMIN_TOKEN).as_deref()) {
        AdminAuth::Granted => return Ok(()),
        AdminAuth::Disabled => {
            return Err(http::oauth(OAuthErrorCode::AccessDenied, "the admin API is off: set the ADMIN_TOKEN secret"))
        }
        AdminAuth::Missing => (OAuthError::new(OAuthErrorCode::InvalidRequest, "an admin bearer token is required"), None),
        AdminAuth::Invalid => {
            let error = OAuthError::new(OAuthErrorCode::InvalidToken, "the admin token is not valid");
            (error.clone(), Some(error))
        }
    };
    let (body, challenge) = refusal;
    let mut response = http::oauth_error(&body).with_status(401);
    let _ = response.headers_mut().set("WWW-Authenticate", &bearer_challenge(REALM, challenge.as_ref()));
    Err(response)
}

pub async fn settings(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize(&req, ctx) {
        return Ok(refusal);
    }
    if req.method() == Method::Get {
        return Ok(http::no_store(http::ok_json(&settings::load(ctx).await?)));
    }
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_SETTINGS_BYTES) {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the settings document is too large"));
    }
    let Ok(body) = req.text().await else {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the body is not UTF-8 text"));
    };
    match ServerSettings::parse(&body) {
        Ok(new) => {
            settings::save(ctx, &new).await?;
            Ok(http::no_store(http::ok_json(&new)))
        }
        Err(e) => Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    }
}

pub async fn rotate_keys(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize(&req, ctx) {
        return Ok(refusal);
    }
    if ctx.secret(vars::SIGNING_KEYS).is_some() {
        return Ok(http::oauth(
            OAuthErrorCode::InvalidRequest,
            "keys come from the SIGNING_KEYS secret: rotate by updating the secret",
        ));
    }
    let ring = keyring::rotate(ctx).await?;
    Ok(http::no_store(http::ok_json(&ring.public_jwks())))
}
