//! The sign-in form POST shared by the pages behind the server's own login (`/auth/manage`,
//! `/auth/portal`): the form's CSRF cookie, the input limits, the password check with its
//! throttling, and the session cookie. Each page renders its own form with the message.

use super::authorize::{login_source, password_login, set_session_cookie, LoginFailure};
use crate::context::AppContext;
use crate::http::{self, AppError};
use worker::{Request, Response};

/// What a sign-in POST came to: the page to answer now (a redirect to `then` with the
/// session cookie, or an error page), or the form to show again with a message and status.
pub enum SignIn {
    Done(Response),
    AskAgain(String, u16),
}

/// Reads and checks a sign-in form posted with the CSRF cookie `csrf_cookie`; on success the
/// browser is sent to `then`.
pub async fn sign_in(req: &mut Request, ctx: &AppContext, csrf_cookie: &str, then: &str) -> Result<SignIn, AppError> {
    let pairs = match http::form(req).await {
        Ok(pairs) => pairs,
        Err(_) => return Ok(SignIn::Done(http::error_page(400, "Bad request", "The form could not be read."))),
    };
    let expected = http::cookie(req, csrf_cookie);
    if expected.is_none() || http::field(&pairs, "csrf") != expected.as_deref() {
        return Ok(SignIn::Done(http::error_page(403, "This sign-in cannot continue", "The form has expired or was not sent by this page; reload and try again.")));
    }
    let username = http::field(&pairs, "username").unwrap_or("").trim().to_owned();
    let password = http::field(&pairs, "password").unwrap_or("").to_owned();
    if username.is_empty() || password.is_empty() || username.len() > 64 || password.len() > 1024 {
        return Ok(SignIn::AskAgain("Enter your username and password.".into(), 400));
    }
    Ok(match password_login(ctx, &username, password, login_source(req)).await? {
        Ok((cookie, _, _)) => {
            let response = http::see_other(then);
            set_session_cookie(ctx, &response, &cookie);
            SignIn::Done(response)
        }
        Err(LoginFailure::Locked(retry_after)) => SignIn::AskAgain(format!("Too many failed attempts. Try again in {retry_after} seconds."), 429),
        Err(LoginFailure::Rejected) => SignIn::AskAgain(LoginFailure::MESSAGE.into(), 401),
    })
}
