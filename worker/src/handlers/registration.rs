//! RFC 7591 client registration and RFC 7592 client configuration: decode the body and the
//! `Authorization` header, make one call to `platform::registration`, encode the answer.

use crate::adapters::auth_server::AuthServer;
use crate::context::{vars, AppContext};
use crate::http::{self, AppError};
use platform::ops::{LimitScope, Limited};
use platform::registration::{self, Body, RegistrationAnswer, MAX_BODY_BYTES};
use platform::routes::Route;
use worker::{Method, Request, Response};

async fn body(req: &mut Request) -> Body {
    match http::body_bytes_limit(req, MAX_BODY_BYTES).await {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| "the body is not UTF-8"),
        Err(_) => Err("the body is too large or unreadable"),
    }
}

fn authorization(req: &Request) -> Option<String> {
    req.headers().get("Authorization").ok().flatten()
}

/// `POST /auth/register`.
pub async fn register(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let server = AuthServer::new(ctx);
    let admin_token = ctx.secret(vars::ADMIN_TOKEN);
    let authorization = authorization(&req);
    let body = body(&mut req).await;
    let answer =
        registration::register(&server.registration_ports(admin_token.as_deref()), authorization.as_deref(), body).await.map_err(AppError::internal)?;
    if let RegistrationAnswer::Client { information, .. } = &answer {
        crate::ops::note_client(ctx, Some(information.client_id.clone()));
    }
    Ok(encode(answer))
}

/// `GET|PUT|DELETE /auth/register/{client_id}`.
pub async fn registered_client(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let server = AuthServer::new(ctx);
    let path = req.path();
    let client_id = Route::path_param(&path, "/auth/register/").unwrap_or_default();
    let authorization = authorization(&req);
    let ports = server.registration_ports(None);
    let answer = match req.method() {
        Method::Get => registration::read_client(&ports, client_id, authorization.as_deref()).await,
        Method::Delete => registration::delete_client(&ports, client_id, authorization.as_deref()).await,
        _ => {
            let body = body(&mut req).await;
            registration::update_client(&ports, client_id, authorization.as_deref(), body).await
        }
    };
    Ok(encode(answer.map_err(AppError::internal)?))
}

fn encode(answer: RegistrationAnswer) -> Response {
    match answer {
        RegistrationAnswer::Client { status, information } => http::no_store(http::json(status, &information, "application/json")),
        RegistrationAnswer::Deleted => http::no_store(Response::empty().expect("an empty response").with_status(204)),
        RegistrationAnswer::Limited { retry_after } => http::no_store(crate::ops::oauth_refusal(Limited::Registration, LimitScope::Client, retry_after)),
        RegistrationAnswer::Refused { status, error, challenge } => {
            let mut response = http::no_store(http::oauth_error(&error).with_status(status));
            if let Some(challenge) = challenge {
                let _ = response.headers_mut().set("WWW-Authenticate", &challenge);
            }
            response
        }
    }
}
