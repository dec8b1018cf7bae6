//! Operations at the edge (the decisions are `platform::ops`): the request id, the log line,
//! the Analytics Engine data points, and the rate-limiting bindings.

use crate::context::AppContext;
use crate::http;
use platform::ops::{self, LimitScope, Limited, Notes, RequestLog};
use platform::routes::Route;
use wasm_bindgen::JsCast;
use worker::{console_error, console_log, AnalyticsEngineDataPointBuilder, Headers, Request, Response};

/// The Analytics Engine dataset binding (wrangler.toml `[[analytics_engine_datasets]]`).
pub const METRICS_BINDING: &str = "METRICS";
/// Var: the period (seconds, 10 or 60) of the rate-limiting bindings, sent as `Retry-After`.
pub const RATE_LIMIT_PERIOD: &str = "RATE_LIMIT_PERIOD";
/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The request's id: its `cf-ray`, else 128 random bits in hex.
pub fn request_id(req: &Request) -> String {
    let ray = req.headers().get("cf-ray").ok().flatten();
    ops::request_id(ray.as_deref(), crate::adapters::webcrypto::new_id)
}

/// Milliseconds on the isolate's clock (in workerd it moves on I/O, so a duration is the time
/// spent waiting for storage and subrequests).
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Adds the request id to the answer and prints the request's log line.
pub fn finish(response: Response, request_id: &str, method: &str, route: Route, started_ms: u64, notes: &Notes) -> Response {
    let response = with_header(response, REQUEST_ID_HEADER, request_id);
    let duration = now_ms().saturating_sub(started_ms);
    console_log!("{}", RequestLog::new(request_id, method, route, response.status_code(), duration, notes).line());
    response
}

/// Sets a header, on a copy of the headers when the response's own are immutable (an answer
/// passed on from a Durable Object).
fn with_header(response: Response, name: &str, value: &str) -> Response {
    if response.headers().set(name, value).is_ok() {
        return response;
    }
    let headers = Headers::new();
    for (k, v) in response.headers().entries() {
        let _ = headers.append(&k, &v);
    }
    let _ = headers.set(name, value);
    response.with_headers(headers)
}

/// Writes the request's counters, when the Worker has the dataset binding (a no-op without).
pub fn count(ctx: &AppContext, route: Route, status: u16) {
    let metrics = ops::metrics(route, status, &ctx.notes.borrow());
    if metrics.is_empty() {
        return;
    }
    let Ok(dataset) = ctx.env.analytics_engine(METRICS_BINDING) else { return };
    for metric in metrics {
        let point = metric.data_point();
        let written = AnalyticsEngineDataPointBuilder::new().indexes([point.index]).blobs(point.blobs).doubles(point.doubles).write_to(&dataset);
        if let Err(e) = written {
            console_error!("analytics engine write failed: {e}");
        }
    }
}

/// Whether the binding of `endpoint` and `scope` refuses one more request under `key`; an
/// absent binding never does, and a failing one lets the request through (logged).
async fn over(ctx: &AppContext, endpoint: Limited, scope: LimitScope, key: &str) -> bool {
    let Some(name) = endpoint.binding(scope) else { return false };
    let binding = match js_sys::Reflect::get(&ctx.env, &name.into()) {
        Ok(value) if value.is_object() => value,
        _ => return false,
    };
    // `env.NAME.limit({ key })`: the worker crate's wrapper, without its constructor-name check
    // (Miniflare's local binding and Cloudflare's are different classes).
    let limiter = worker::RateLimiter::from(binding.unchecked_into::<worker::worker_sys::RateLimiter>());
    match limiter.limit(key.to_owned()).await {
        Ok(outcome) => !outcome.success,
        Err(e) => {
            console_error!("rate limit {name} failed: {e}");
            false
        }
    }
}

/// Checks one limit: `Some(retry_after)` when the request is over it (and noted so).
pub async fn check(ctx: &AppContext, endpoint: Limited, scope: LimitScope, key: &str) -> Option<u32> {
    if !over(ctx, endpoint, scope, key).await {
        return None;
    }
    ctx.notes.borrow_mut().rate_limited = Some((endpoint, scope));
    let period = ctx.env.var(RATE_LIMIT_PERIOD).ok().map(|v| v.to_string());
    Some(ops::retry_after(period.as_deref()))
}

/// The per-address limit of a limited endpoint (`CF-Connecting-IP`, which Cloudflare's edge
/// sets; locally Miniflare sets the peer's address when the request has none).
pub async fn check_ip(ctx: &AppContext, endpoint: Limited, req: &Request) -> Option<u32> {
    let ip = req.headers().get("CF-Connecting-IP").ok().flatten();
    check(ctx, endpoint, LimitScope::Ip, &ops::ip_key(ip.as_deref())).await
}

/// The per-client limit.
pub async fn check_client(ctx: &AppContext, endpoint: Limited, client_id: &str) -> Option<u32> {
    check(ctx, endpoint, LimitScope::Client, &ops::client_key(client_id)).await
}

/// The 429 of the token and registration endpoints: their OAuth error JSON.
pub fn oauth_refusal(endpoint: Limited, scope: LimitScope, retry_after: u32) -> Response {
    let response = http::oauth_error(&endpoint.oauth_refusal(scope, retry_after)).with_status(ops::TOO_MANY_REQUESTS);
    with_retry_after(response, retry_after)
}

pub fn with_retry_after(response: Response, retry_after: u32) -> Response {
    with_header(response, "Retry-After", &retry_after.to_string())
}

/// Notes the client the request names (for the log line).
pub fn note_client(ctx: &AppContext, client_id: Option<String>) {
    if client_id.is_some() {
        ctx.notes.borrow_mut().client_id = client_id;
    }
}
