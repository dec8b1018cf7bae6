//! The EHR launch portal: `/ehr/` redirects to `/auth/portal`, where a user signed in with the
//! server's own login (the session of `/auth/authorize` and `/auth/manage`, whose cookie is
//! scoped to `/auth`) finds a patient and launches an app about them. Who sees what, the
//! search, the paging, the form checks and the launch are `platform::portal` (the launch made
//! by `platform::launch::start`, as the EHR launch API's); this file decodes, calls, encodes.

use super::authorize::{browser, page_form};
use super::signin::{sign_in, SignIn};
use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::settings;
use platform::portal::{self, PortalAnswer, PortalQuery, PORTAL_PATH};
use platform::portal_page;
use worker::{Request, Response};

const LOGIN_CSRF_COOKIE: &str = "se_portal_csrf";

/// `GET /ehr/`: the portal's public address (the query is kept).
pub fn home(req: &Request) -> Result<Response, AppError> {
    let query = req.url()?.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(http::see_other(&format!("{PORTAL_PATH}{query}")))
}

async fn login_form(req: &Request, ctx: &AppContext, error: Option<&str>, status: u16) -> Result<Response, AppError> {
    // Double-submit token for the sign-in form (there is no session to bind it to yet).
    let token = match http::cookie(req, LOGIN_CSRF_COOKIE).filter(|c| c.len() == 43) {
        Some(token) => token,
        None => crate::adapters::webcrypto::random_secret()?,
    };
    let server_name = settings::load(ctx).await?.server_name;
    let response = http::html(status, portal_page::portal_login_page(&token, &server_name, error), &platform::pages::csp(&[], &[]));
    http::set_cookie(&response, LOGIN_CSRF_COOKIE, &token, 3600, ctx.urls.issuer().starts_with("https://"));
    Ok(response)
}

/// `GET /auth/portal?q=…&offset=…&patient=…`.
pub async fn page(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs: Vec<(String, String)> = req.url()?.query_pairs().into_owned().collect();
    let server = AuthServer::new(ctx);
    let answer = portal::page(&server.signin_ports(), &browser(&req), &PortalQuery::parse(&pairs)).await.map_err(AppError::internal)?;
    encode(&req, ctx, answer).await
}

/// The portal's answer as a response.
async fn encode(req: &Request, ctx: &AppContext, answer: PortalAnswer) -> Result<Response, AppError> {
    Ok(match answer {
        PortalAnswer::SignIn => return login_form(req, ctx, None, 200).await,
        PortalAnswer::Page(view) => http::html(view.status, view.render(), &view.csp()),
        PortalAnswer::Redirect(location) => http::see_other(&location),
        PortalAnswer::Refused { status, title, message } => http::error_page(status, title, &message),
    })
}

/// `POST /auth/portal/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    match sign_in(&mut req, ctx, LOGIN_CSRF_COOKIE, PORTAL_PATH).await? {
        SignIn::Done(response) => Ok(response),
        SignIn::AskAgain(message, status) => login_form(&req, ctx, Some(&message), status).await,
    }
}

/// `POST /auth/portal/login` over the edge rate limit: the form again with the message (429).
pub async fn login_rate_limited(req: &Request, ctx: &AppContext, retry_after: u32) -> Result<Response, AppError> {
    login_form(req, ctx, Some(&platform::ops::login_refusal(retry_after)), platform::ops::TOO_MANY_REQUESTS).await
}

/// `POST /auth/portal/launch`: creates a single-use launch for the signed-in user, the chosen
/// patient and encounter, and opens the app here (iframe) or in the new tab the form targets.
pub async fn launch(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    let answer = portal::launch(&server.signin_ports(), &server.ports(), &form).await.map_err(AppError::internal)?;
    encode(&req, ctx, answer).await
}
