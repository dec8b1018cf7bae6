//! Request dispatch: resolve the route (platform's table), check the method and the edge rate
//! limits, run the handler, add CORS; then the request id, the log line and the counters.
//! Handlers are small free functions, one module per feature.

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

use crate::context::{vars, AppContext};
use crate::http::{self, AppError};
use crate::ops;
use platform::ops::{LimitScope, Limited, Notes};
use platform::routes::Route;
use worker::{Env, Method, Request, Response};

/// Answers a request, with its `X-Request-Id`, its log line and its counters (`crate::ops`).
pub async fn dispatch(req: Request, env: Env) -> Response {
    let started = ops::now_ms();
    let request_id = ops::request_id(&req);
    let method = req.method();
    let (route, response, notes) = serve(req, env).await;
    ops::finish(response, &request_id, method.as_ref(), route, started, &notes)
}

async fn serve(req: Request, env: Env) -> (Route, Response, Notes) {
    let path = req.path();
    let ctx = match AppContext::new(&req, env) {
        Ok(ctx) => ctx,
        Err(e) => return (Route::NotFound, http::internal_error(Route::NotFound, &e), Notes::default()),
    };
    let mut route = Route::resolve(&path, ctx.urls.fhir_path());
    let public_base_url_set = ctx.env.var(vars::PUBLIC_BASE_URL).is_ok_and(|v| !v.to_string().is_empty());
    if let Some(problem) = platform::routes::refuse_configuration(
        ctx.dev_routes,
        public_base_url_set,
        ctx.urls.issuer(),
        &req.url().map(|u| u.to_string()).unwrap_or_default(),
        route,
    ) {
        http::drain_unread(<web_sys::Request as Clone>::clone(req.inner())).await;
        let response = http::misconfigured(route, problem);
        return (route, if route.cors_public() { http::with_cors(response) } else { response }, Notes::default());
    }
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
        None => match edge_limit(route, &req, &ctx).await {
            Some((limited, retry_after)) => over_limit(route, limited, retry_after, req, &ctx).await,
            None => handle(route, req, &ctx).await,
        }
        .unwrap_or_else(|e| http::internal_error(route, &e)),
    };
    // A body the handler did not read is read before answering, so that the connection stays
    // usable (answering before the upload ends makes the client see a reset).
    http::drain_unread(unread).await;
    let response = if route.cors_public() { http::with_cors(response) } else { response };
    ops::count(&ctx, route, response.status_code());
    (route, response, ctx.notes.take())
}

/// The edge rate limit a request is over before its handler runs, if any: the address, on
/// every limited endpoint. Per-client limits are counted by the platform once the client has
/// proved who it is (the token endpoint's client authentication, the client configuration
/// endpoint's registration access token), so that a stranger naming a client uses up nothing.
async fn edge_limit(route: Route, req: &Request, ctx: &AppContext) -> Option<(Limited, u32)> {
    let limited = Limited::for_route(route, req.method().as_ref())?;
    if route == Route::RegisteredClient {
        let path = req.path();
        ops::note_client(ctx, Route::path_param(&path, "/auth/register/").map(str::to_owned));
    }
    ops::check_ip(ctx, limited, req).await.map(|retry_after| (limited, retry_after))
}

/// The answer of a request over an edge limit: the endpoint's own refusal, 429 with
/// `Retry-After`.
async fn over_limit(route: Route, limited: Limited, retry_after: u32, req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let scope = ctx.notes.borrow().rate_limited.map_or(LimitScope::Ip, |(_, scope)| scope);
    let response = match route {
        Route::Login => authorize::login_rate_limited(req, ctx, retry_after).await?,
        Route::PortalLogin => portal::login_rate_limited(&req, ctx, retry_after).await?,
        Route::ManageLogin => manage::login_rate_limited(&req, ctx, retry_after).await?,
        _ => ops::oauth_refusal(limited, scope, retry_after),
    };
    Ok(ops::with_retry_after(response, retry_after))
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
        Route::AdminFhirReindex => admin::fhir_reindex(req, ctx).await,
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
