//! `POST /auth/ehr/launch`: the EHR-side API that creates a launch context for a client and
//! answers the opaque `launch` value and the URL to open. Authenticated with the admin token
//! (an EHR integration is an administrative credential here). The EHR may name its signed-in
//! `user`; only that user can then complete the launch, and a launch is used once.

use super::admin::authorize_admin;
use crate::adapters::webcrypto::{WebCryptoRandom, WebCryptoSigner};
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use crate::registry;
use platform::launch::{self, LaunchRequest};
use smart_protocol::OAuthErrorCode;
use worker::{Request, Response};

pub async fn create_launch(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let body = match http::body_bytes(&mut req).await {
        Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
        Err(_) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the body is too large or unreadable")),
    };
    let request = match LaunchRequest::parse(&body) {
        Ok(request) => request,
        Err(e) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    };
    let Some(client) = registry::client(ctx, &request.client_id).await? else {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "no such client_id"));
    };
    if let Some(user) = &request.user {
        if registry::user(ctx, user).await?.is_none() {
            return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "no such user"));
        }
    }
    let ring = keyring::load(ctx).await?;
    match launch::create(&request, &client, &ctx.urls, &ring, &WebCryptoSigner, &WebCryptoRandom, now_secs()).await.map_err(AppError::internal)? {
        Ok(created) => Ok(http::no_store(http::json(201, &created, "application/json"))),
        Err(e) => Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    }
}
