//! The token endpoint (RFC 6749 §3.2). No grant type is implemented yet, so every request
//! gets the RFC's answer for that: `unsupported_grant_type`.

use crate::http;
use smart_protocol::OAuthErrorCode;
use worker::{Request, Response};

pub async fn token(_req: Request) -> Response {
    http::oauth(OAuthErrorCode::UnsupportedGrantType, "this server issues no tokens yet")
}
