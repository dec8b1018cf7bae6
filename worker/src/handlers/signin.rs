//! The sign-in form POST shared by the pages behind the server's own login (`/auth/manage`,
//! `/auth/portal`): decode the form, its CSRF cookie and the browser, one call into
//! `platform::signin::password::sign_in`, and the session cookie. Each page renders its own
//! form with the message.

use super::authorize::{page_form, set_cookie};
use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError};
use platform::signin::password::{self, PasswordSignIn};
use platform::signin::SetCookie;
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
    let form = page_form(req).await;
    let expected = http::cookie(req, csrf_cookie);
    let server = AuthServer::new(ctx);
    Ok(match password::sign_in(&server.signin_ports(), &form, expected.as_deref()).await.map_err(AppError::internal)? {
        PasswordSignIn::SignedIn { cookie } => {
            let response = http::see_other(then);
            set_cookie(ctx, &response, &SetCookie::Session(cookie));
            SignIn::Done(response)
        }
        PasswordSignIn::Refused { status, title, message } => SignIn::Done(http::error_page(status, title, &message)),
        PasswordSignIn::AskAgain { message, status } => SignIn::AskAgain(message, status),
    })
}
