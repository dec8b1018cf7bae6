//! The authorization endpoint and the sign-in pages behind it (login, patient / encounter
//! picker, consent, then the redirect with the code): decode the request and the browser's
//! cookies, one call into `platform::signin`, encode its answer. Every rule is in the platform.

use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError, FormError};
use platform::accounts::SESSION_LIFETIME_SECS;
use platform::oauth::FormProblem;
use platform::pages;
use platform::signin::{self, AuthorizationCall, Browser, PageForm, SetCookie, Shown, SignInAnswer, Visit};
use worker::{Method, Request, Response};

const BROWSER_COOKIE: &str = "se_browser";
const SESSION_COOKIE: &str = "se_session";
/// How long the browser-binding cookie lives.
const BROWSER_COOKIE_SECS: i64 = 400 * 24 * 3600;

/// The browser's cookies and address.
pub fn browser(req: &Request) -> Browser {
    Browser {
        binding: http::cookie(req, BROWSER_COOKIE),
        session: http::cookie(req, SESSION_COOKIE),
        ip: req.headers().get("CF-Connecting-IP").ok().flatten().unwrap_or_default(),
    }
}

/// A posted form (or why there is none) and the browser.
pub async fn page_form(req: &mut Request) -> PageForm {
    let form = http::form(req).await.map_err(|e| match e {
        FormError::WrongType => FormProblem::NotAForm,
        FormError::TooLarge | FormError::Unreadable => FormProblem::Unreadable,
    });
    PageForm { form, browser: browser(req) }
}

/// Sets a cookie the answer asks for.
pub fn set_cookie(ctx: &AppContext, response: &Response, cookie: &SetCookie) {
    let https = ctx.urls.issuer().starts_with("https://");
    match cookie {
        SetCookie::Browser(value) => http::set_cookie(response, BROWSER_COOKIE, value, BROWSER_COOKIE_SECS, https),
        SetCookie::Session(value) => http::set_cookie(response, SESSION_COOKIE, value, SESSION_LIFETIME_SECS, https),
        SetCookie::ClearSession => http::set_cookie(response, SESSION_COOKIE, "", 0, https),
    }
}

/// A page, a redirect or a message, with its cookies.
pub fn encode(ctx: &AppContext, answer: SignInAnswer) -> Response {
    let response = match answer.shown {
        Shown::Page { status, page, form_targets, frame_ancestors, retry_after } => {
            let response = http::html(status, page.render(), &pages::csp(&form_targets, &frame_ancestors));
            if let Some(seconds) = retry_after {
                let _ = response.headers().set("Retry-After", &seconds.to_string());
            }
            response
        }
        Shown::Redirect(location) => http::see_other(&location),
        Shown::Message { status, title, message } => http::error_page(status, title, &message),
    };
    for cookie in &answer.cookies {
        set_cookie(ctx, &response, cookie);
    }
    response
}

/// `GET|POST /auth/authorize`.
pub async fn authorize(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let params = if req.method() == Method::Post { page_form(&mut req).await.form } else { Ok(req.url()?.query_pairs().into_owned().collect()) };
    let call = AuthorizationCall { params, browser: browser(&req) };
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::authorize(&server.signin_ports(), call).await.map_err(AppError::internal)?))
}

/// `GET /auth/sign-in?interaction=…`: the automatic steps, then the page the user must
/// act on, or the redirect to the client.
pub async fn sign_in(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let grant_id = req.url()?.query_pairs().find(|(k, _)| k == "interaction").map(|(_, v)| v.into_owned());
    let visit = Visit { grant_id, browser: browser(&req) };
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::visit(&server.signin_ports(), visit).await.map_err(AppError::internal)?))
}

/// `POST /auth/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::login(&server.signin_ports(), form).await.map_err(AppError::internal)?))
}

/// `POST /auth/login` over the edge rate limit: the login page with the message (429).
pub async fn login_rate_limited(mut req: Request, ctx: &AppContext, retry_after: u32) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::login_rate_limited(&server.signin_ports(), form, retry_after).await.map_err(AppError::internal)?))
}

/// `POST /auth/pick`: a patient or an encounter from the pickers.
pub async fn pick(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::pick(&server.signin_ports(), form).await.map_err(AppError::internal)?))
}

/// `POST /auth/consent`: the ticked scopes, approve or deny.
pub async fn consent(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::consent(&server.signin_ports(), form).await.map_err(AppError::internal)?))
}

/// `POST /auth/logout`: ends this browser's session and clears the cookie.
pub async fn logout(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let form = page_form(&mut req).await;
    let server = AuthServer::new(ctx);
    Ok(encode(ctx, signin::logout(&server.signin_ports(), form).await.map_err(AppError::internal)?))
}

/// `GET /auth/assets/auth.css`.
pub fn stylesheet() -> Response {
    http::text(200, pages::STYLESHEET, "text/css; charset=utf-8", "public, max-age=3600")
}
