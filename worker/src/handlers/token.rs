//! `POST /auth/token` (RFC 6749 §3.2): decode the form and the `Authorization` header, hand
//! them to `platform::token_endpoint`, encode its answer. Every rule is in the platform.

use crate::adapters::auth_server::AuthServer;
use crate::context::AppContext;
use crate::http::{self, AppError, FormError};
use platform::token_endpoint::{self, FormProblem, TokenAnswer, TokenCall};
use worker::{Request, Response};

/// `POST /auth/token`.
pub async fn token(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let call = decode(&mut req).await;
    let server = AuthServer::new(ctx);
    let answer = token_endpoint::token(&server.ports(), &call).await.map_err(AppError::internal)?;
    Ok(encode(answer))
}

async fn decode(req: &mut Request) -> TokenCall {
    let form = http::form(req).await.map_err(|e| match e {
        FormError::WrongType => FormProblem::NotAForm,
        FormError::TooLarge | FormError::Unreadable => FormProblem::Unreadable,
    });
    TokenCall { form, authorization: req.headers().get("Authorization").ok().flatten() }
}

/// The token response (`no-store`), or the OAuth error with its challenge.
pub fn encode(answer: TokenAnswer) -> Response {
    match answer {
        TokenAnswer::Tokens(body) => http::no_store(http::ok_json(&body)),
        TokenAnswer::Refused { error, challenge } => {
            let response = http::oauth_error(&error);
            if let Some(challenge) = challenge {
                let _ = response.headers().set("WWW-Authenticate", &challenge.header());
            }
            response
        }
    }
}
