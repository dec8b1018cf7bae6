//! `POST /auth/ehr/launch`: the EHR-side API that creates a launch context for a client and
//! answers the opaque `launch` value and the URL to open. Authenticated with the admin token
//! (an EHR integration is an administrative credential here). The EHR may name its signed-in
//! `user`; only that user can then complete the launch, and a launch is used once. The EHR
//! launch portal creates its launches through the same [`create`].

use super::admin::authorize_admin;
use crate::adapters::webcrypto::{WebCryptoRandom, WebCryptoSigner};
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use crate::registry;
use platform::launch::{self, LaunchCreated, LaunchRequest};
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
    match create(ctx, &request).await? {
        Ok(created) => Ok(http::no_store(http::json(201, &created, "application/json"))),
        Err(description) => Ok(http::oauth(OAuthErrorCode::InvalidRequest, &description)),
    }
}

/// Creates a launch for a checked request: the one path both the EHR launch API and the
/// portal (`handlers::portal`) take. `Err` holds why the request cannot be launched.
pub async fn create(ctx: &AppContext, request: &LaunchRequest) -> Result<Result<LaunchCreated, String>, AppError> {
    let Some(client) = registry::client(ctx, &request.client_id).await? else {
        return Ok(Err("no such client_id".into()));
    };
    if let Some(user) = &request.user {
        if registry::user(ctx, user).await?.is_none() {
            return Ok(Err("no such user".into()));
        }
    }
    let ring = keyring::load(ctx).await?;
    Ok(launch::create(request, &client, &ctx.urls, &ring, &WebCryptoSigner, &WebCryptoRandom, now_secs()).await.map_err(AppError::internal)?.map_err(|e| e.to_string()))
}
