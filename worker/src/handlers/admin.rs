//! The admin API: server settings (KV) and key rotation (key vault), behind the
//! `ADMIN_TOKEN` bearer secret.

use crate::adapters::fhir_store::Partitions;
use crate::adapters::webcrypto::{WebCryptoPasswordHasher, WebCryptoRandom};
use crate::context::{vars, AppContext};
use crate::http::{self, AppError};
use crate::{keyring, registry, settings};
use platform::admin::{self, AdminAuth};
use platform::clients::ClientRegistration;
use platform::routes::Route;
use platform::settings::{ServerSettings, MAX_SETTINGS_BYTES};
use platform::users::{RegistrationError, UserRegistration};
use smart_protocol::error::bearer_challenge;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Method, Request, Response};

const REALM: &str = "smart-edge admin";

/// `Err` carries the refusal to send back.
pub fn authorize_admin(req: &Request, ctx: &AppContext) -> Result<(), Response> {
    let header = req.headers().get("Authorization").ok().flatten();
    let refusal = match admin::check(header.as_deref(), ctx.secret(vars::ADMIN_TOKEN).as_deref()) {
        AdminAuth::Granted => return Ok(()),
        AdminAuth::Disabled => return Err(http::oauth(OAuthErrorCode::AccessDenied, "the admin API is off: set the ADMIN_TOKEN secret")),
        AdminAuth::Missing => (OAuthError::new(OAuthErrorCode::InvalidRequest, "an admin bearer token is required"), None),
        AdminAuth::Invalid => {
            let error = OAuthError::new(OAuthErrorCode::InvalidToken, "the admin token is not valid");
            (error.clone(), Some(error))
        }
    };
    let (body, challenge) = refusal;
    let mut response = http::oauth_error(&body).with_status(401);
    let _ = response.headers_mut().set("WWW-Authenticate", &bearer_challenge(REALM, challenge.as_ref()));
    Err(response)
}

pub async fn settings(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    if req.method() == Method::Get {
        return Ok(http::no_store(http::ok_json(&settings::load(ctx).await?)));
    }
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_SETTINGS_BYTES) {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the settings document is too large"));
    }
    let Ok(body) = req.text().await else {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the body is not UTF-8 text"));
    };
    match ServerSettings::parse(&body) {
        Ok(new) => {
            settings::save(ctx, &new).await?;
            Ok(http::no_store(http::ok_json(&new)))
        }
        Err(e) => Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    }
}

pub async fn rotate_keys(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    if ctx.secret(vars::SIGNING_KEYS).is_some() {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "keys come from the SIGNING_KEYS secret: rotate by updating the secret"));
    }
    let ring = keyring::rotate(ctx).await?;
    Ok(http::no_store(http::ok_json(&ring.public_jwks())))
}

async fn admin_body(req: &mut Request, ctx: &AppContext) -> Result<String, Response> {
    authorize_admin(req, ctx)?;
    match http::body_bytes(req).await {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| http::oauth(OAuthErrorCode::InvalidRequest, "the body is not UTF-8")),
        Err(_) => Err(http::oauth(OAuthErrorCode::InvalidRequest, "the body is too large or unreadable")),
    }
}

/// `POST /admin/clients` (create or replace) and `PUT /admin/clients/{id}`.
pub async fn put_client(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let body = match admin_body(&mut req, ctx).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let client = match ClientRegistration::parse(&body).and_then(ClientRegistration::into_client) {
        Ok(client) => client,
        Err(e) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    };
    if let Some(id) = Route::path_param(&req.path(), "/admin/clients/") {
        if id != client.client_id {
            return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the client_id in the body differs from the URL"));
        }
    }
    let existing = registry::client(ctx, &client.client_id).await?;
    let client = client.keeping_registration(existing.as_ref());
    registry::save_client(ctx, &client).await?;
    Ok(http::no_store(http::json(201, &client.view(), "application/json")))
}

/// `GET|DELETE /admin/clients/{id}`.
pub async fn client(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    if req.method() == Method::Put {
        return put_client(req, ctx).await;
    }
    let path = req.path();
    let id = Route::path_param(&path, "/admin/clients/").unwrap_or_default();
    let Some(client) = registry::client(ctx, id).await? else {
        return Ok(http::json(404, &serde_json::json!({"error": "not_found", "error_description": "no such client"}), "application/json"));
    };
    if req.method() == Method::Delete {
        registry::delete_client(ctx, id).await?;
        return Ok(http::no_store(http::ok_json(&serde_json::json!({"deleted": client.client_id}))));
    }
    Ok(http::no_store(http::ok_json(&client.view())))
}

/// `POST /admin/users` and `PUT /admin/users/{username}`: the password is hashed with
/// PBKDF2 before anything is stored.
pub async fn put_user(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let body = match admin_body(&mut req, ctx).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let registration = match UserRegistration::parse(&body) {
        Ok(r) => r,
        Err(e) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    };
    if let Some(name) = Route::path_param(&req.path(), "/admin/users/") {
        if name != registration.username {
            return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the username in the body differs from the URL"));
        }
    }
    let user = match registration.into_user(&WebCryptoPasswordHasher, &WebCryptoRandom).await {
        Ok(user) => user,
        Err(RegistrationError::Invalid(e)) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
        Err(RegistrationError::Crypto(e)) => return Err(AppError::internal(e)),
    };
    registry::save_user(ctx, &user).await?;
    Ok(http::no_store(http::json(201, &user.view(), "application/json")))
}

/// `GET|PUT /admin/users/{username}`.
pub async fn user(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if req.method() == Method::Put {
        return put_user(req, ctx).await;
    }
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let path = req.path();
    let name = Route::path_param(&path, "/admin/users/").unwrap_or_default();
    match registry::user(ctx, name).await? {
        Some(user) => Ok(http::no_store(http::ok_json(&user.view()))),
        None => Ok(http::json(404, &serde_json::json!({"error": "not_found", "error_description": "no such user"}), "application/json")),
    }
}

/// `POST /admin/fhir/bundle`: loads a transaction or batch Bundle (any served resource type),
/// bypassing SMART scopes (the admin token is the authority).
pub async fn fhir_bundle(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    // Synthea bundles run to a few megabytes; read up to 16 MiB.
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > 16 * 1024 * 1024) {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the bundle is too large"));
    }
    let bytes = match req.bytes().await {
        Ok(bytes) if bytes.len() <= 16 * 1024 * 1024 => bytes,
        _ => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the bundle is too large or unreadable")),
    };
    let answer = super::fhir::admin_bundle(bytes, ctx).await?;
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    if answer.status != 200 {
        let why = body.pointer("/issue/0/diagnostics").and_then(serde_json::Value::as_str).unwrap_or("the bundle was refused");
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, why));
    }
    let stored = body["entry"].as_array().map_or(0, Vec::len);
    Ok(http::no_store(http::ok_json(&serde_json::json!({ "stored": stored }))))
}

/// `GET /admin/fhir/status`: the patients in the directory, and the search index: the
/// version this release builds and the re-index job's progress (`null` before the first).
pub async fn fhir_status(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let mut query = platform::fhir::search::parse("Patient", &[], false).map_err(AppError::internal)?;
    query.summary_count = true;
    query.count = 0;
    let found = platform::fhir::store::Partitions::search(&Partitions(&ctx.env), platform::fhir::store::DIRECTORY, &query).await.map_err(AppError::internal)?;
    let status = reindex_call(ctx, "/reindex/status").await?;
    Ok(http::no_store(http::ok_json(&serde_json::json!({ "patients": found.total, "index": status }))))
}

/// `POST /admin/fhir/reindex`: starts the background re-index of every partition (or answers
/// the one running), 202 with its progress; `GET /admin/fhir/status` follows it.
pub async fn fhir_reindex(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let job = reindex_call(ctx, "/reindex/start").await?;
    Ok(http::no_store(http::json(202, &job, "application/json")))
}

async fn reindex_call(ctx: &AppContext, path: &str) -> Result<serde_json::Value, AppError> {
    let stub = crate::durable::rpc::by_name(&ctx.env, "FHIR", platform::fhir::store::DIRECTORY)?;
    match crate::durable::rpc::call::<(), serde_json::Value, serde_json::Value>(&stub, path, &()).await? {
        Ok(value) => Ok(value),
        Err(other) => Err(AppError::internal(format!("{path}: {other}"))),
    }
}
