//! The management page (`management_endpoint`): a signed-in user sees the applications they
//! gave access to, with scopes and dates, and revokes any of them.

use super::authorize::current_session;
use super::signin::{sign_in, SignIn};
use crate::context::AppContext;
use crate::durable::account::GrantRef;
use crate::durable::rpc;
use crate::grant_status;
use crate::http::{self, AppError};
use crate::settings;
use platform::accounts::{AccountState, GrantEntry};
use platform::grants::{Command, Reply};
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
    let Some((handle, user)) = current_session(&req, ctx).await? else {
        return login_form(&req, ctx, None, 200).await;
    };
    let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &user.username)?;
    let entries: Vec<GrantEntry> = rpc::call::<_, _, serde_json::Value>(&stub, "/grants/list", &serde_json::json!({}))
        .await?
        .map_err(|e| AppError::internal(format!("grants/list: {e}")))?;
    // Show only grants that are still active (a client may have revoked, a code replay may
    // have ended one).
    let mut rows = Vec::new();
    for entry in entries.iter().rev() {
        if let Ok(Reply::Active { .. }) = grant_status::apply(&ctx.env, &entry.grant_id, &Command::Status).await? {
            let granted: String = js_sys::Date::new(&((entry.granted_at * 1000) as f64).into()).to_iso_string().into();
            rows.push(GrantRow {
                grant_id: entry.grant_id.clone(),
                client_name: entry.client_name.clone(),
                scope: ScopeSet::parse(&entry.scope).unwrap_or_default(),
                granted: granted.get(..16).unwrap_or(&granted).replace('T', " ") + " UTC",
            });
        }
    }
    let body = pages::manage_page(&user.display_name, &AccountState::csrf_for(&handle), &rows);
    Ok(http::html(200, body, &csp()))
}

/// `POST /auth/manage/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    match sign_in(&mut req, ctx, LOGIN_CSRF_COOKIE, "/auth/manage").await? {
        SignIn::Done(response) => Ok(response),
        SignIn::AskAgain(message, status) => login_form(&req, ctx, Some(&message), status).await,
    }
}

/// `POST /auth/manage/revoke`: ends one of the user's grants.
pub async fn revoke(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs = match http::form(&mut req).await {
        Ok(pairs) => pairs,
        Err(_) => return Ok(http::error_page(400, "Bad request", "The form could not be read.")),
    };
    let Some((handle, user)) = current_session(&req, ctx).await? else {
        return Ok(http::see_other("/auth/manage"));
    };
    if http::field(&pairs, "csrf") != Some(AccountState::csrf_for(&handle).as_str()) {
        return Ok(http::error_page(403, "Not allowed", "The form has expired or was not sent by this page; reload and try again."));
    }
    let grant_id = http::field(&pairs, "grant").unwrap_or_default().to_owned();
    let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &user.username)?;
    // Only a grant of this user's list is revoked.
    let owned: bool = rpc::call::<_, bool, serde_json::Value>(&stub, "/grants/remove", &GrantRef { grant_id: grant_id.clone() }).await?.unwrap_or(false);
    if owned {
        let _ = grant_status::apply(&ctx.env, &grant_id, &Command::Revoke { reason: "revoked by the user".into() }).await?;
    }
    Ok(http::see_other("/auth/manage"))
}
