//! The management page (`management_endpoint`): a signed-in user sees the applications they
//! gave access to, with scopes and dates, and revokes any of them.

use super::authorize::{browser, page_form};
use super::signin::{sign_in, SignIn};
use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::settings;
use platform::accounts::GrantEntry;
use platform::manage::{self, FormRefusal, ManagePage, MANAGE_PATH};
use platform::pages::{self, GrantRow};
use smart_protocol::scopes::ScopeSet;
use worker::{Request, Response};

const LOGIN_CSRF_COOKIE: &str = "se_manage_csrf";

fn csp() -> String {
    pages::csp(&[], &[])
}

async fn login_form(req: &Request, ctx: &AppContext, error: Option<&str>, status: u16) -> Result<Response, AppError> {
    // Double-submit token for the sign-in form (there is no session to bind it to yet).
    let token = match http::cookie(req, LOGIN_CSRF_COOKIE).filter(|c| c.len() == 43) {
        Some(token) => token,
        None => crate::adapters::webcrypto::random_secret()?,
    };
    let server_name = settings::load(ctx).await?.server_name;
    let response = http::html(status, pages::manage_login_page(&token, &server_name, error), &csp());
    http::set_cookie(&response, LOGIN_CSRF_COOKIE, &token, 3600, ctx.urls.issuer().starts_with("https://"));
    Ok(response)
}

/// `GET /auth/manage`.
pub async fn page(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let server = AuthServer::new(ctx);
    match manage::page(&server.signin_ports(), &browser(&req)).await.map_err(AppError::internal)? {
        ManagePage::SignIn => login_form(&req, ctx, None, 200).await,
        ManagePage::Grants { user_name, csrf, grants } => {
            let rows: Vec<GrantRow> = grants.iter().map(row).collect();
            Ok(http::html(200, pages::manage_page(&user_name, &csrf, &rows), &csp()))
        }
    }
}

/// A grant as the page lists it (the date in UTC, to the minute).
fn row(entry: &GrantEntry) -> GrantRow {
    let granted: String = js_sys::Date::new(&((entry.granted_at * 1000) as f64).into()).to_iso_string().into();
    GrantRow {
        grant_id: entry.grant_id.clone(),
        client_name: entry.client_name.clone(),
        scope: ScopeSet::parse(&entry.scope).unwrap_or_default(),
        granted: granted.get(..16).unwrap_or(&granted).replace('T', " ") + " UTC",
    }
}

/// `POST /auth/manage/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    match sign_in(&mut req, ctx, LOGIN_CSRF_COOKIE, MANAGE_PATH).await? {
        SignIn::Done(response) => Ok(response),
        SignIn::AskAgain(message, status) => login_form(&req, ctx, Some(&message), status).await,
    }
}

/// `POST /auth/manage/login` over the edge rate limit: the form again with the message (429).
pub async fn login_rate_limited(req: &Request, ctx: &AppContext, retry_after: u32) -> Result<Response, AppError> {
    login_form(req, ctx, Some(&platform::ops::login_refusal(retry_after)), platform::ops::TOO_MANY_REQUESTS).await
}

/// `POST /auth/manage/revoke`: ends one of the user's grants.
pub async fn revoke(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    let revoked = manage::revoke(&server.signin_ports(), &form).await.map_err(AppError::internal)?;
    Ok(match revoked.err().and_then(FormRefusal::message) {
        Some((status, title, message)) => http::error_page(status, title, message),
        None => http::see_other(MANAGE_PATH),
    })
}
