//! Encoding answers: JSON and FHIR bodies, OAuth errors, CORS, and the error boundary that
//! turns an internal failure into a logged 500 instead of a crash.

use platform::fhir::{outcome, FHIR_JSON};
use platform::routes::{ErrorStyle, Misconfiguration, Route};
use serde::Serialize;
use smart_protocol::{OAuthError, OAuthErrorCode};
use std::fmt::Display;
use worker::{console_error, Headers, Response};

/// A failure that is the server's fault. The detail goes to the log, never to the client.
#[derive(Debug)]
pub struct AppError(String);

impl AppError {
    pub fn internal(detail: impl Display) -> Self {
        Self(detail.to_string())
    }
}

impl From<worker::Error> for AppError {
    fn from(e: worker::Error) -> Self {
        Self::internal(e)
    }
}

pub fn json<T: Serialize>(status: u16, body: &T, content_type: &str) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => bytes(status, text.into_bytes(), content_type),
        Err(e) => {
            console_error!("response did not serialise: {e}");
            bytes(500, br#"{"error":"server_error"}"#.to_vec(), "application/json")
        }
    }
}

/// A body already serialised as JSON, with its type.
pub fn json_text(status: u16, body: &str, content_type: &str) -> Response {
    bytes(status, body.as_bytes().to_vec(), content_type)
}

/// A text body with its type and caching policy.
pub fn text(status: u16, body: &str, content_type: &str, cache_control: &str) -> Response {
    let response = bytes(status, body.as_bytes().to_vec(), content_type);
    let _ = response.headers().set("Cache-Control", cache_control);
    response
}

fn bytes(status: u16, body: Vec<u8>, content_type: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", content_type);
    Response::from_body(worker::ResponseBody::Body(body))
        .map(|r| r.with_status(status).with_headers(headers))
        .unwrap_or_else(|_| Response::empty().expect("an empty response").with_status(500))
}

pub fn ok_json<T: Serialize>(body: &T) -> Response {
    json(200, body, "application/json")
}

/// An OAuth error body (RFC 6749 §5.2) with its status; `no-store` because error answers of
/// the authorization server must not be cached either.
pub fn oauth_error(error: &OAuthError) -> Response {
    let response = json(error.status(), error, "application/json");
    no_store(response)
}

pub fn oauth(code: OAuthErrorCode, description: &str) -> Response {
    oauth_error(&OAuthError::new(code, description))
}

pub fn fhir_error(status: u16, code: outcome::IssueType, diagnostics: &str) -> Response {
    json(status, &outcome::error(code, diagnostics), FHIR_JSON)
}

pub fn not_found(route: Route, path: &str) -> Response {
    match route.error_style() {
        ErrorStyle::Fhir => fhir_error(404, outcome::IssueType::NotFound, &format!("no FHIR endpoint at {path}")),
        ErrorStyle::OAuth => json(404, &serde_json::json!({ "error": "not_found", "error_description": format!("nothing at {path}") }), "application/json"),
    }
}

pub fn method_not_allowed(route: Route, method: &str) -> Response {
    let message = format!("{method} is not allowed here; use {}", route.methods().join(", "));
    let response = match route.error_style() {
        ErrorStyle::Fhir => fhir_error(405, outcome::IssueType::NotSupported, &message),
        ErrorStyle::OAuth => json(405, &OAuthError::new(OAuthErrorCode::InvalidRequest, message), "application/json"),
    };
    let _ = response.headers().set("Allow", &route.methods().join(", "));
    response
}

/// The 500 every internal failure becomes, logged with its detail.
pub fn internal_error(route: Route, error: &AppError) -> Response {
    console_error!("internal error on {route:?}: {}", error.0);
    match route.error_style() {
        ErrorStyle::Fhir => fhir_error(500, outcome::IssueType::Exception, "internal server error"),
        ErrorStyle::OAuth => oauth(OAuthErrorCode::ServerError, "internal server error"),
    }
}

/// The answer of a Worker whose configuration must not serve the route: 503 with the reason
/// and its fix, as an error page for browser pages, an OperationOutcome on the FHIR API, an
/// OAuth error elsewhere; and one log line saying the same.
pub fn misconfigured(route: Route, problem: Misconfiguration) -> Response {
    let reason = problem.reason();
    console_error!("{reason}");
    let response = if route.is_page() {
        error_page(503, problem.title(), reason)
    } else {
        match route.error_style() {
            ErrorStyle::Fhir => fhir_error(503, outcome::IssueType::Exception, reason),
            ErrorStyle::OAuth => json(503, &OAuthError::new(OAuthErrorCode::ServerError, reason), "application/json"),
        }
    };
    no_store(response)
}

pub fn no_store(response: Response) -> Response {
    let headers = response.headers();
    let _ = headers.set("Cache-Control", "no-store");
    let _ = headers.set("Pragma", "no-cache");
    response
}

/// CORS for public routes: any origin, no credentials (bearer tokens travel in headers).
pub fn with_cors(response: Response) -> Response {
    let headers = response.headers();
    let _ = headers.set("Access-Control-Allow-Origin", "*");
    let _ = headers.set("Access-Control-Expose-Headers", "Location, ETag, Content-Location, WWW-Authenticate, Retry-After, X-Request-Id");
    response
}

/// The answer to a CORS preflight on a public route.
pub fn preflight(route: Route) -> Response {
    let response = Response::empty().expect("an empty response").with_status(204);
    let headers = response.headers();
    let _ = headers.set("Access-Control-Allow-Methods", &[route.methods(), &["OPTIONS"]].concat().join(", "));
    let _ = headers.set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match");
    let _ = headers.set("Access-Control-Max-Age", "86400");
    with_cors(response)
}

/// Largest form or JSON body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTML page with the security headers every page carries.
pub fn html(status: u16, body: String, csp: &str) -> Response {
    let response = text(status, &body, "text/html; charset=utf-8", "no-store");
    let headers = response.headers();
    let _ = headers.set("Content-Security-Policy", csp);
    let _ = headers.set("X-Content-Type-Options", "nosniff");
    let _ = headers.set("Referrer-Policy", "no-referrer");
    response
}

/// The error page (no redirect: used when the client or redirect URI is not trusted).
pub fn error_page(status: u16, title: &str, message: &str) -> Response {
    html(status, platform::pages::error_page(title, message), &platform::pages::csp(&[], &[]))
}

/// A 303 See Other to `location` (after a form POST the browser follows with GET).
pub fn see_other(location: &str) -> Response {
    let response = Response::empty().expect("an empty response").with_status(303);
    let headers = response.headers();
    let _ = headers.set("Location", location);
    let _ = headers.set("Cache-Control", "no-store");
    let _ = headers.set("Referrer-Policy", "no-referrer");
    response
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie(req: &worker::Request, name: &str) -> Option<String> {
    let header = req.headers().get("Cookie").ok().flatten()?;
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

/// Adds a `Set-Cookie` for an HttpOnly cookie scoped to `/auth`. Over https the cookie is
/// `Secure; SameSite=None`, so the pages also work inside an EHR's frame (forms carry a CSRF
/// token); over plain http (local development) it is `SameSite=Lax`.
pub fn set_cookie(response: &Response, name: &str, value: &str, max_age: i64, https: bool) {
    let attrs = if https { "Secure; SameSite=None" } else { "SameSite=Lax" };
    let _ = response.headers().append("Set-Cookie", &format!("{name}={value}; Path=/auth; Max-Age={max_age}; HttpOnly; {attrs}"));
}

/// Why a form body was refused.
#[derive(Debug)]
pub enum FormError {
    WrongType,
    TooLarge,
    Unreadable,
}

/// Reads an `application/x-www-form-urlencoded` body as ordered pairs (repeats kept, so the
/// caller can refuse duplicates).
pub async fn form(req: &mut worker::Request) -> Result<Vec<(String, String)>, FormError> {
    let content_type = req.headers().get("Content-Type").ok().flatten().unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/x-www-form-urlencoded" {
        return Err(FormError::WrongType);
    }
    let bytes = body_bytes(req).await?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| FormError::Unreadable)
}

/// The request body, refusing more than [`MAX_BODY_BYTES`].
pub async fn body_bytes(req: &mut worker::Request) -> Result<Vec<u8>, FormError> {
    body_bytes_limit(req, MAX_BODY_BYTES).await
}

/// The request body, refusing more than `limit` bytes. The body is read as a stream and the
/// reading stops as soon as the limit is passed, so a chunked upload without `Content-Length`
/// (unauthenticated, on `/auth/*`) costs at most `limit` bytes of memory, not its whole size.
///
/// A refused body whose declared `Content-Length` is at most [`DRAIN_BYTES`] is still read to
/// its end (and dropped) before the answer: answering while a client is still uploading makes
/// the connection close under it, and the client sees a reset instead of the 400.
pub async fn body_bytes_limit(req: &mut worker::Request, limit: usize) -> Result<Vec<u8>, FormError> {
    use futures::StreamExt;
    let declared = declared_length(req);
    if declared.is_some_and(|len| len <= limit) {
        // The common case, read in one call: the stream reader below costs ≈0.4 ms of CPU
        // per request in workerd (its reads and `releaseLock`; bench/profile-tokens.mjs).
        let bytes = req.bytes().await.map_err(|_| FormError::Unreadable)?;
        // The runtime frames the body by its length; checked anyway, so the limit holds
        // whatever the framing.
        return if bytes.len() > limit { Err(FormError::TooLarge) } else { Ok(bytes) };
    }
    let mut stream = match req.stream() {
        Ok(stream) => stream,
        // No body at all (a GET, or an empty POST).
        Err(worker::Error::RustError(_)) => return Ok(Vec::new()),
        Err(_) => return Err(FormError::Unreadable),
    };
    if declared.is_some_and(|len| len > limit) {
        discard(&mut stream, declared).await;
        return Err(FormError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| FormError::Unreadable)?;
        if bytes.len() + chunk.len() > limit {
            discard(&mut stream, declared).await;
            return Err(FormError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The most of an unwanted body read (and dropped) so that its client gets the answer rather
/// than a reset. A larger upload, or one without a `Content-Length` (whose end may never come),
/// is answered at once.
pub const DRAIN_BYTES: usize = 1024 * 1024;

fn declared_length(req: &worker::Request) -> Option<usize> {
    req.headers().get("Content-Length").ok().flatten().and_then(|v| v.trim().parse::<usize>().ok())
}

async fn discard(stream: &mut worker::ByteStream, declared: Option<usize>) {
    use futures::StreamExt;
    if declared.is_none_or(|len| len > DRAIN_BYTES) {
        return;
    }
    let mut read = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > DRAIN_BYTES {
            return;
        }
    }
}

/// Reads and drops a body nobody read (a request answered before its body was looked at: an
/// unknown route, a wrong method or content type, a refused token), within [`DRAIN_BYTES`].
pub async fn drain_unread(raw: web_sys::Request) {
    if raw.body_used() || raw.body().is_none() {
        return;
    }
    let mut req = worker::Request::from(raw);
    let declared = declared_length(&req);
    if let Ok(mut stream) = req.stream() {
        discard(&mut stream, declared).await;
    }
}
