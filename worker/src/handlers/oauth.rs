//! Introspection (RFC 7662 + SMART), revocation (RFC 7009) and userinfo (OpenID Connect
//! Core §5.3): decode, one call into `platform::oauth`, encode. The rules are in the platform.

use super::token::{decode, refused};
use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError};
use platform::guard::BearerError;
use platform::oauth::introspection::{self, Answer};
use platform::oauth::userinfo::{self, UserinfoAnswer};
use worker::{Request, Response};

/// `POST /auth/introspect`.
pub async fn introspect(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let post = decode(&mut req).await;
    crate::ops::note_client(ctx, platform::ops::named_client(&post));
    let server = AuthServer::new(ctx);
    Ok(encode(introspection::introspect(&server.ports(), &post).await.map_err(AppError::internal)?))
}

/// `POST /auth/revoke`.
pub async fn revoke(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let post = decode(&mut req).await;
    crate::ops::note_client(ctx, platform::ops::named_client(&post));
    let server = AuthServer::new(ctx);
    Ok(encode(introspection::revoke(&server.ports(), &post).await.map_err(AppError::internal)?))
}

fn encode(answer: Answer) -> Response {
    match answer {
        Answer::Json { status, body } => http::no_store(http::json(status, &body, "application/json")),
        Answer::Done => http::no_store(http::text(200, "", "text/plain", "no-store")),
        Answer::Refused { error, challenge } => refused(&error, challenge),
    }
}

/// The RFC 6750 §3 answer to a failed bearer authentication (`platform::guard`).
pub fn bearer_refusal(error: &BearerError, realm: &str) -> Result<Response, AppError> {
    let Some(refusal) = error.refusal(realm) else { return Err(AppError::internal(error)) };
    let response = http::oauth_error(&refusal.body).with_status(refusal.status);
    let _ = response.headers().set("WWW-Authenticate", &refusal.challenge);
    Ok(response)
}

/// `GET|POST /auth/userinfo`.
pub async fn userinfo(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let authorization = req.headers().get("Authorization").ok().flatten();
    let server = AuthServer::new(ctx);
    match userinfo::userinfo(&server.ports(), authorization.as_deref()).await.map_err(AppError::internal)? {
        UserinfoAnswer::Claims(claims) => Ok(http::no_store(http::ok_json(&claims))),
        UserinfoAnswer::Unauthenticated(e) => bearer_refusal(&e, platform::oauth::REALM),
        UserinfoAnswer::InsufficientScope { error, challenge } => {
            let response = http::oauth_error(&error);
            let _ = response.headers().set("WWW-Authenticate", &challenge);
            Ok(response)
        }
    }
}
