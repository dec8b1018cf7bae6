//! Development routes (on only with `DEV_ROUTES=true`): sign a claims set with the server's
//! keys, for the JOSE interoperability tests and the signing benchmark.

use crate::adapters::webcrypto::{WebCryptoPasswordHasher, WebCryptoSigner};
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::keyring;
use platform::jwt::sign_jwt;
use platform::ports::PasswordHasher;
use platform::users::PBKDF2_ITERATIONS;
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::OAuthErrorCode;
use worker::{Request, Response};

/// `POST /_dev/sign?alg=ES256&n=1` with a JSON object body: signs it `n` times (1–2000) and
/// returns the last token.
pub async fn sign(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let url = req.url()?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let Some(alg) = param("alg").as_deref().and_then(JwsAlgorithm::parse) else {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "alg must be RS256 or ES256"));
    };
    let n = match param("n").map(|n| n.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if (0..=2000).contains(&n) => n,
        Some(_) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "n must be 0 to 2000")),
    };
    let claims: serde_json::Value = match req.json().await {
        Ok(value @ serde_json::Value::Object(_)) => value,
        _ => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the body must be a JSON object")),
    };
    let ring = keyring::load(ctx).await?;
    let now = keyring::now_secs();
    let mut token = String::new();
    for _ in 0..n {
        token = sign_jwt(&ring, &WebCryptoSigner, alg, "JWT", &claims, now).await.map_err(AppError::internal)?;
    }
    Ok(http::ok_json(&serde_json::json!({ "token": token, "count": n })))
}

/// `POST /_dev/pbkdf2?n=1`: derives a password hash `n` times (0–50) with the login's
/// parameters, for the benchmark.
pub async fn pbkdf2(req: Request) -> Result<Response, AppError> {
    let url = req.url()?;
    let n = match url.query_pairs().find(|(k, _)| k == "n").map(|(_, v)| v.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if n <= 50 => n,
        Some(_) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "n must be 0 to 50")),
    };
    for _ in 0..n {
        WebCryptoPasswordHasher.pbkdf2_sha256(b"correct horse battery staple", b"0123456789abcdef", PBKDF2_ITERATIONS).await.map_err(AppError::internal)?;
    }
    Ok(http::ok_json(&serde_json::json!({ "count": n, "iterations": PBKDF2_ITERATIONS })))
}

/// `GET /_dev/do-read?partition=…&type=…&id=…`: one point read in a FHIR partition and
/// nothing else (no token, no decision) — the ceiling the FHIR benchmark compares with.
pub async fn do_read(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let url = req.url()?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
    let parts = crate::adapters::fhir_store::Partitions(&ctx.env);
    let outcome = platform::fhir::store::Partitions::read(&parts, &param("partition"), &param("type"), &param("id"), None).await.map_err(AppError::internal)?;
    let body = outcome.content.map(|c| c.get().to_owned()).unwrap_or_default();
    Ok(http::text(200, &body, platform::fhir::FHIR_JSON, "no-store"))
}

/// `POST /_dev/panic`: panics, on purpose. `tests/robustness.test.mjs` checks that the Worker's
/// entry (`worker/entry.mjs`) then restarts the wasm instance, and that the next requests and
/// the Durable Objects created before the panic keep working.
pub fn panic() -> Result<Response, AppError> {
    panic!("a panic on purpose (POST /_dev/panic)")
}
