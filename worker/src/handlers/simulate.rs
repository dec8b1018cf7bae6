//! `GET|PUT|DELETE /admin/clients/{client_id}/simulate`: a test client's simulated failure
//! (`platform::simulate`), behind the admin token. Decode, one call, encode.

use super::admin::authorize_admin;
use crate::adapters::auth_server::KvClients;
use crate::adapters::simulations::KvSimulations;
use crate::context::AppContext;
use crate::http::{self, AppError};
use platform::routes::Route;
use platform::simulate::{self, AdminAnswer, AdminRequest, MAX_BODY_BYTES};
use smart_protocol::OAuthErrorCode;
use worker::{Method, Request, Response};

pub async fn admin(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let path = req.path();
    let client_id = Route::simulated_client(&path).unwrap_or_default().to_owned();
    let request = match req.method() {
        Method::Put => match http::body_bytes_limit(&mut req, MAX_BODY_BYTES).await.map(String::from_utf8) {
            Ok(Ok(body)) => AdminRequest::Set(body),
            _ => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the body must be a small UTF-8 JSON document")),
        },
        Method::Delete => AdminRequest::Clear,
        _ => AdminRequest::Read,
    };
    let answer = simulate::admin(&KvSimulations(ctx), &KvClients(ctx), &client_id, request).await.map_err(AppError::internal)?;
    Ok(match answer {
        AdminAnswer::Current(simulation) => http::no_store(http::ok_json(&serde_json::json!({ "client_id": client_id, "simulate": simulation }))),
        AdminAnswer::NoClient => http::json(404, &serde_json::json!({"error": "not_found", "error_description": "no such client"}), "application/json"),
        AdminAnswer::Refused(why) => http::oauth(OAuthErrorCode::InvalidRequest, &why),
    })
}
