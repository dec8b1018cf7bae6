//! `POST /auth/ehr/launch`: the EHR-side API that creates a launch context for a client and
//! answers the opaque `launch` value, and the URL to open when the client registered a
//! `launch_uri`. Authenticated with the admin token
//! (an EHR integration is an administrative credential here). The EHR may name its signed-in
//! `user`; only that user can then complete the launch, and a launch is used once. The EHR
//! launch portal creates its launches through the same [`create`].

use super::admin::authorize_admin;
use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError};
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

/// Creates a launch: the one path both the EHR launch API and the portal (`handlers::portal`)
/// take (the portal through `platform::portal::launch`); the checks are `platform::launch::start`.
/// `Err` holds why the request cannot be launched.
pub async fn create(ctx: &AppContext, request: &LaunchRequest) -> Result<Result<LaunchCreated, String>, AppError> {
    let server = AuthServer::new(ctx);
    launch::start(&server.ports(), request).await.map_err(AppError::internal)
}
