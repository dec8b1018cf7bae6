//! `POST /auth/token` (RFC 6749 §3.2): decode the form and the `Authorization` header, hand
//! them to `platform::oauth::token`, encode its answer. Every rule is in the platform.

use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError, FormError};
use platform::oauth::{self, ClientChallenge, FormPost, FormProblem, TokenAnswer};
use platform::ops::{self, LimitScope, Limited};
use smart_protocol::OAuthError;
use worker::{Request, Response};

/// `POST /auth/token`.
pub async fn token(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let call = decode(&mut req).await;
    let client_id = ops::named_client(&call);
    let grant_type = call.form.as_ref().ok().and_then(|pairs| pairs.iter().find(|(k, _)| k == "grant_type")).map(|(_, v)| v.as_str());
    ctx.notes.borrow_mut().grant_type = Some(ops::grant_kind(grant_type));
    crate::ops::note_client(ctx, client_id);
    // The per-client limit is the platform's to ask, once the client has authenticated
    // (`AuthServer`'s `client_limits`): counted on the name alone, anyone could use it up.
    let server = AuthServer::new(ctx);
    let answer = oauth::token(&server.ports(), &call).await.map_err(AppError::internal)?;
    Ok(encode(answer))
}

/// The form (or why there is none) and the `Authorization` header.
pub async fn decode(req: &mut Request) -> FormPost {
    let form = http::form(req).await.map_err(|e| match e {
        FormError::WrongType => FormProblem::NotAForm,
        FormError::TooLarge | FormError::Unreadable => FormProblem::Unreadable,
    });
    FormPost { form, authorization: req.headers().get("Authorization").ok().flatten() }
}

/// The token response (`no-store`), or the OAuth error with its challenge.
pub fn encode(answer: TokenAnswer) -> Response {
    match answer {
        TokenAnswer::Tokens(body) => http::no_store(http::ok_json(&*body)),
        TokenAnswer::Refused { error, challenge } => refused(&error, challenge),
        TokenAnswer::Limited { retry_after } => crate::ops::oauth_refusal(Limited::Token, LimitScope::Client, retry_after),
    }
}

/// An OAuth error, with the client authentication challenge when one is due.
pub fn refused(error: &OAuthError, challenge: Option<ClientChallenge>) -> Response {
    let response = http::oauth_error(error);
    if let Some(challenge) = challenge {
        let _ = response.headers().set("WWW-Authenticate", &challenge.header());
    }
    response
}
