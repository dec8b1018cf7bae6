//! The FHIR R4 RESTful API (`[base]/{type}…`): decode the request once, authenticate the
//! bearer token, hand both to `platform::fhir::api` (where the one gate decides), encode
//! the answer. No access rule lives here.

use super::oauth::bearer_refusal;
use crate::adapters::auth_server::KvClients;
use crate::adapters::fhir_store::Partitions;
use crate::adapters::simulations::KvSimulations;
use crate::adapters::webcrypto::{new_id, WebCryptoVerifier};
use crate::context::AppContext;
use crate::grant_status::DoGrantStatus;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use platform::fhir::api::{self, Fhir, FhirRequest, FhirResponse};
use platform::fhir::outcome::IssueType;
use platform::fhir::rest::{Interaction, RestError};
use platform::fhir::validate::MAX_RESOURCE_BYTES;
use platform::fhir::FHIR_JSON;
use platform::guard;
use platform::simulate::{self, FhirFailure};
use smart_protocol::error::bearer_challenge;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Request, Response};

/// Largest transaction or batch Bundle read.
const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

fn outcome(status: u16, code: IssueType, message: &str) -> Response {
    http::fhir_error(status, code, message)
}

/// The interaction, or the answer for a path or method that is none.
fn interaction(req: &Request, ctx: &AppContext) -> Result<Interaction, Response> {
    let path = req.path();
    let rest = path.strip_prefix(ctx.urls.fhir_path()).unwrap_or_default();
    Interaction::parse(req.method().as_ref(), rest).map_err(|e| match e {
        RestError::UnknownType(_) | RestError::NoSuchPath => outcome(404, IssueType::NotFound, &e.to_string()),
        RestError::BadId(_) => outcome(400, IssueType::Invalid, &e.to_string()),
        RestError::Method(_) => outcome(405, IssueType::NotSupported, &e.to_string()),
    })
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Decodes the rest of the request into the typed value the use cases take.
async fn decode(req: &mut Request, interaction: Interaction) -> Result<FhirRequest, Response> {
    let prefer = header(req, "Prefer").unwrap_or_default();
    let mut query: Vec<(String, String)> = req.url().map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default();
    let mut body = Vec::new();
    match &interaction {
        Interaction::Search { .. } if req.method() == worker::Method::Post => match http::form(req).await {
            // POST [type]/_search: the parameters come as a form (R4 §3.1.1.3).
            Ok(form) => query.extend(form),
            Err(_) => return Err(outcome(400, IssueType::Invalid, "POST _search takes an application/x-www-form-urlencoded body")),
        },
        Interaction::Create { .. }
        | Interaction::Update { .. }
        | Interaction::Patch { .. }
        | Interaction::ConditionalUpdate { .. }
        | Interaction::Everything { .. } => match http::body_bytes_limit(req, MAX_RESOURCE_BYTES).await {
            Ok(bytes) => body = bytes,
            Err(_) => return Err(outcome(413, IssueType::Invalid, "the resource is larger than 1 MiB")),
        },
        Interaction::Bundle => match http::body_bytes_limit(req, MAX_BUNDLE_BYTES).await {
            Ok(bytes) => body = bytes,
            Err(_) => return Err(outcome(413, IssueType::Invalid, "the bundle is larger than 16 MiB")),
        },
        _ => {}
    }
    Ok(FhirRequest {
        query,
        strict: prefer.contains("handling=strict"),
        minimal: prefer.contains("return=minimal"),
        outcome: prefer.contains("return=OperationOutcome"),
        if_match: header(req, "If-Match"),
        if_none_match: header(req, "If-None-Match"),
        if_modified_since: header(req, "If-Modified-Since"),
        if_none_exist: header(req, "If-None-Exist"),
        content_type: header(req, "Content-Type"),
        body,
        interaction: Some(interaction),
    })
}

/// The HTTP response of a use case's answer.
pub(super) fn encode(answer: FhirResponse) -> Response {
    let response = if answer.status == 304 {
        // Not Modified: no body (RFC 7232 §4.1); ETag and Last-Modified below.
        let response = Response::empty().map(|r| r.with_status(304)).unwrap_or_else(|_| http::text(500, "", FHIR_JSON, "no-store"));
        let _ = response.headers().set("Cache-Control", "no-store");
        response
    } else if answer.body.is_empty() {
        http::text(answer.status, "", FHIR_JSON, "no-store")
    } else {
        http::text(answer.status, &answer.body, FHIR_JSON, "no-store")
    };
    let headers = response.headers();
    if let Some(version) = answer.version {
        let _ = headers.set("ETag", &format!("W/\"{version}\""));
    }
    if let Some(millis) = answer.last_updated.map(|t| js_sys::Date::parse(&t)).filter(|m| m.is_finite()) {
        let utc: String = js_sys::Date::new(&millis.into()).to_utc_string().into();
        let _ = headers.set("Last-Modified", &utc);
    }
    if let Some(location) = &answer.location {
        let _ = headers.set("Location", location);
    }
    if let Some(description) = &answer.insufficient_scope {
        let error = OAuthError::new(OAuthErrorCode::InsufficientScope, description.clone());
        let _ = headers.set("WWW-Authenticate", &bearer_challenge("smart-edge", Some(&error)));
    }
    response
}

/// The answer for a request for or in a format other than FHIR JSON (406 / 415), if so.
fn refuse_format(req: &Request) -> Option<Response> {
    let query: Vec<(String, String)> = req.url().map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default();
    let body_type = header(req, "Content-Type").filter(|_| !matches!(req.method(), worker::Method::Get | worker::Method::Head | worker::Method::Delete));
    api::refuse_format(&query, header(req, "Accept").as_deref(), body_type.as_deref()).map(encode)
}

/// `GET [base]/metadata`: the CapabilityStatement, in JSON only.
pub async fn metadata(req: &Request, ctx: &AppContext) -> Result<Response, AppError> {
    match refuse_format(req) {
        Some(refusal) => Ok(refusal),
        None => super::discovery::metadata(ctx).await,
    }
}

/// A failed bearer authentication: 401, an OperationOutcome, the RFC 6750 challenge.
pub(super) fn unauthenticated(e: &guard::BearerError) -> Result<Response, AppError> {
    let refusal = bearer_refusal(e, "smart-edge")?;
    let response = http::json(401, &platform::fhir::outcome::error(IssueType::Security, &e.to_string()), FHIR_JSON);
    if let Some(challenge) = refusal.headers().get("WWW-Authenticate").ok().flatten() {
        let _ = response.headers().set("WWW-Authenticate", &challenge);
    }
    Ok(response)
}

pub async fn handle(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let interaction = match interaction(&req, ctx) {
        Ok(i) => i,
        Err(refusal) => return Ok(refusal),
    };
    ctx.notes.borrow_mut().interaction = Some(platform::ops::interaction_name(&interaction));
    // JSON only: a request for or in another format is answered before anything else.
    if let Some(refusal) = refuse_format(&req) {
        return Ok(refusal);
    }
    if interaction == Interaction::Capabilities {
        return super::discovery::metadata(ctx).await;
    }
    // Authentication (RFC 6750), then the use case behind the gate.
    let ring = keyring::load(ctx).await?;
    let authorization = header(&req, "Authorization");
    let grant = match guard::authenticate(authorization.as_deref(), &ring, &WebCryptoVerifier, &DoGrantStatus(&ctx.env), &ctx.urls, now_secs()).await {
        Ok(grant) => grant,
        Err(e) => return unauthenticated(&e),
    };
    crate::ops::note_client(ctx, Some(grant.client_id.clone()));
    // A test client's simulated failure, before anything is read or done.
    if let Some(failure) = simulate::at_fhir(&KvSimulations(ctx), &KvClients(ctx), &grant).await.map_err(AppError::internal)? {
        return match failure {
            FhirFailure::Response(answer) => Ok(encode(answer)),
            FhirFailure::Unauthenticated(e) => unauthenticated(&e),
        };
    }
    if let Some(refusal) = api::refuse_unread(&grant, &interaction) {
        return Ok(encode(refusal));
    }
    let request = match decode(&mut req, interaction).await {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    let base = ctx.urls.fhir_base();
    let store = Partitions(&ctx.env);
    let fhir = Fhir { store: &store, base: &base, new_id: &new_id };
    let answer = api::handle(&fhir, &grant, &request).await.map_err(AppError::internal)?;
    Ok(encode(answer))
}

/// `POST /admin/fhir/bundle`'s authority: the transaction code with a `system/*.cruds` grant.
pub async fn admin_bundle(body: Vec<u8>, ctx: &AppContext) -> Result<FhirResponse, AppError> {
    let grant = guard::AccessGrant::service("admin", smart_protocol::scopes::ScopeSet::parse("system/*.cruds").map_err(AppError::internal)?);
    let request = FhirRequest { interaction: Some(Interaction::Bundle), body, ..Default::default() };
    let base = ctx.urls.fhir_base();
    let store = Partitions(&ctx.env);
    let fhir = Fhir { store: &store, base: &base, new_id: &new_id };
    api::handle(&fhir, &grant, &request).await.map_err(AppError::internal)
}
