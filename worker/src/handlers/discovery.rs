//! Discovery: SMART configuration, OpenID configuration, JWKS, FHIR CapabilityStatement.

use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::{keyring, settings};
use platform::fhir::{capability, FHIR_JSON};
use platform::routes::Route;
use platform::{discovery, keys::KEY_CACHE_SECS};
use worker::Response;

fn cacheable(response: Response, seconds: i64) -> Response {
    let _ = response.headers().set("Cache-Control", &format!("public, max-age={seconds}"));
    response
}

pub async fn smart_configuration(ctx: &AppContext) -> Result<Response, AppError> {
    let settings = settings::load(ctx).await?;
    Ok(cacheable(http::ok_json(&discovery::smart_configuration(&ctx.urls, &settings)), 300))
}

pub fn openid_configuration(ctx: &AppContext) -> Response {
    cacheable(http::ok_json(&discovery::openid_configuration(&ctx.urls)), 300)
}

/// The User-access Brands Bundle, when a brand is configured (404 otherwise).
pub async fn user_access_brands(ctx: &AppContext) -> Result<Response, AppError> {
    let settings = settings::load(ctx).await?;
    let date: String = js_sys::Date::new_0().to_iso_string().into();
    Ok(match discovery::user_access_brands(&ctx.urls, &settings, &date) {
        Some(bundle) => cacheable(http::json(200, &bundle, FHIR_JSON), 300),
        None => http::not_found(Route::UserAccessBrands, "/user-access-brands.json"),
    })
}

/// The public keys. Cached no longer than isolates cache the key ring, so a rotated key is in
/// every verifier's JWKS before it signs (see `platform::keys::ROTATION_DELAY_SECS`).
pub async fn jwks(ctx: &AppContext) -> Result<Response, AppError> {
    let ring = keyring::load(ctx).await?;
    Ok(cacheable(http::json(200, &ring.public_jwks(), "application/jwk-set+json"), KEY_CACHE_SECS))
}

thread_local! {
    /// The last CapabilityStatement this isolate served, and what it was made from (the FHIR
    /// base and the settings, as JSON).
    static STATEMENT: std::cell::RefCell<Option<(String, std::rc::Rc<String>)>> = const { std::cell::RefCell::new(None) };
}

/// `GET /fhir/metadata`. The statement (≈370 KB: every type with its parameters) is made once
/// per isolate and settings, not per request: making it cost ≈6 ms of CPU, and every app
/// launch asks for it. Its `date` is when this isolate made it.
pub async fn metadata(ctx: &AppContext) -> Result<Response, AppError> {
    let settings = settings::load(ctx).await?;
    let key = format!("{}\n{}", ctx.urls.fhir_base(), serde_json::to_string(&settings).map_err(AppError::internal)?);
    let cached = STATEMENT.with(|s| s.borrow().as_ref().filter(|(k, _)| *k == key).map(|(_, body)| body.clone()));
    let body = match cached {
        Some(body) => body,
        None => {
            let date: String = js_sys::Date::new_0().to_iso_string().into();
            let body = std::rc::Rc::new(serde_json::to_string(&capability::capability_statement(&ctx.urls, &settings, &date)).map_err(AppError::internal)?);
            STATEMENT.with(|s| *s.borrow_mut() = Some((key, body.clone())));
            body
        }
    };
    Ok(http::json_text(200, &body, FHIR_JSON))
}
