//! Request dispatch: resolve the route (platform's table), check the method, run the handler,
//! add CORS. Handlers are small free functions, one module per feature.

mod admin;
mod authorize;
mod backup;
mod bulk;
mod dev;
mod discovery;
mod ehr;
mod fhir;
mod manage;
mod oauth;
mod portal;
mod registration;
mod signin;
mod simulate;
mod token;

use crate::context::AppContext;
use crate::http::{self, AppError};
use platform::routes::Route;
use worker::{Env, Method, Request, Response};

pub async fn dispatch(req: Request, env: Env) -> Response {
    let path = req.path();
    let ctx = match AppContext::new(&req, env) {
        Ok(ctx) => ctx,
        Err(e) => return http::internal_error(Route::NotFound, &e),
    };
    if let Some(reason) = platform::routes::refuse_configuration(ctx.dev_routes, ctx.urls.issuer()) {
        return http::misconfigured(reason);
    }
    let mut route = Route::resolve(&path, ctx.urls.fhir_path());
    if route.is_dev() && !ctx.dev_routes {
        route = Route::NotFound;
    }
    let method = req.method();
    // The same JS object (not `Request.clone()`, which would tee the body).
    let unread = <web_sys::Request as Clone>::clone(req.inner());
    let early = if method == Method::Options && route.cors_public() {
        Some(http::preflight(route))
    } else if route == Route::NotFound {
        Some(http::not_found(route, &path))
    } else if !route.methods().contains(&method.as_ref()) {
        Some(http::method_not_allowed(route, method.as_ref()))
    } else {
        None
    };
    let response = match early {
        Some(response) => response,
        None => handle(route, req, &ctx).await.unwrap_or_else(|e| http::internal_error(route, &e)),
    };
    // A body the handler did not read is read before answering, so that the connection stays
    // usable (answering before the upload ends makes the client see a reset).
    http::drain_unread(unread).await;
    if route.cors_public() {
        http::with_cors(response)
    } else {
        response
    }
}

async fn handle(route: Route, req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    match route {
        Route::Health => Ok(http::ok_json(&serde_json::json!({ "status": "ok" }))),
        Route::SmartConfiguration => discovery::smart_configuration(ctx).await,
        Route::UserAccessBrands => discovery::user_access_brands(ctx).await,
        Route::Register => registration::register(req, ctx).await,
        Route::RegisteredClient => registration::registered_client(req, ctx).await,
        Route::OpenIdConfiguration => Ok(discovery::openid_configuration(ctx)),
        Route::Jwks => discovery::jwks(ctx).await,
        Route::Metadata => fhir::metadata(&req, ctx).await,
        Route::Token => token::token(req, ctx).await,
        Route::Introspect => oauth::introspect(req, ctx).await,
        Route::Revoke => oauth::revoke(req, ctx).await,
        Route::Userinfo => oauth::userinfo(req, ctx).await,
        Route::Authorize => authorize::authorize(req, ctx).await,
        Route::SignIn => authorize::sign_in(req, ctx).await,
        Route::Login => authorize::login(req, ctx).await,
        Route::Logout => authorize::logout(req, ctx).await,
        Route::Pick => authorize::pick(req, ctx).await,
        Route::Consent => authorize::consent(req, ctx).await,
        Route::AuthStylesheet => Ok(authorize::stylesheet()),
        Route::Manage => manage::page(req, ctx).await,
        Route::ManageLogin => manage::login(req, ctx).await,
        Route::ManageRevoke => manage::revoke(req, ctx).await,
        Route::EhrLaunch => ehr::create_launch(req, ctx).await,
        Route::EhrHome => portal::home(&req),
        Route::Portal => portal::page(req, ctx).await,
        Route::PortalLogin => portal::login(req, ctx).await,
        Route::PortalLaunch => portal::launch(req, ctx).await,
        Route::AdminSettings => admin::settings(req, ctx).await,
        Route::AdminClients => admin::put_client(req, ctx).await,
        Route::AdminClient => admin::client(req, ctx).await,
        Route::AdminClientSimulate => simulate::admin(req, ctx).await,
        Route::AdminUsers => admin::put_user(req, ctx).await,
        Route::AdminUser => admin::user(req, ctx).await,
        Route::AdminFhirBundle => admin::fhir_bundle(req, ctx).await,
        Route::AdminFhirStatus => admin::fhir_status(req, ctx).await,
        Route::AdminRotateKeys => admin::rotate_keys(req, ctx).await,
        Route::AdminBackup => backup::export(req, ctx).await,
        Route::AdminRestore => backup::restore(req, ctx).await,
        Route::DevSign => dev::sign(req, ctx).await,
        Route::DevPbkdf2 => dev::pbkdf2(req).await,
        Route::DevDoRead => dev::do_read(req, ctx).await,
        Route::DevPanic => dev::panic(),
        Route::Fhir => fhir::handle(req, ctx).await,
        Route::BulkExport => bulk::handle(req, ctx).await,
        Route::NotFound => Ok(http::not_found(route, &req.path())),
    }
}
