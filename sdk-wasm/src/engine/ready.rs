//! `ready()` (SMART App Launch 2.2 §2.0.7–2.0.8): back from the authorization server, check
//! `state`, exchange the code with the PKCE verifier, verify the ID token (OpenID Connect Core
//! §3.1.3.7: signature over the server's JWKS, `iss`, `aud`, `exp`, `nonce`), store the
//! session, and take `code` and `state` out of the address bar. On a reload, restore the
//! session instead.

use super::authorize::{authorize, AuthorizeOptions};
use super::env::{Area, Environment, HttpRequest, HttpResponse, SignatureCheck};
use super::error::SdkError;
use super::state::{load, pending_key, save, session_key, Pending, Session, CURRENT, PENDING_TTL_SECS};
use super::url;
use crate::json::Json;
use smart_protocol::jose::{split_compact, verification_candidates, CompactParts, RawHeader};
use smart_protocol::token::{check_id_token_claims, IdTokenExpected, TokenResponse};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

/// The session after the redirect, or the one this tab already has.
pub async fn ready(env: &impl Environment) -> Result<Session, SdkError> {
    let here = env.location();
    let (code, state, error) = (url::param(&here, "code"), url::param(&here, "state"), url::param(&here, "error"));
    if error.is_some() || code.is_some() {
        env.replace_location(&url::without(&here, &["code", "state", "error", "error_description", "error_uri", "iss"]));
    }
    if let Some(error) = error {
        if let Some(state) = &state {
            env.remove(Area::Shared, &pending_key(state));
        }
        let description = url::param(&here, "error_description").unwrap_or_else(|| format!("the authorization server answered {error}"));
        return Err(SdkError::new(&error, description));
    }
    match (code, state) {
        (Some(code), Some(state)) => complete(env, &code, &state).await,
        (Some(_), None) => Err(SdkError::new("invalid_state", "the redirect carries a code but no state")),
        _ => restore(env).ok_or_else(|| SdkError::new("no_session", "no authorization to complete and no session to restore: call authorize() first")),
    }
}

/// `init(options)`: the session when the page is the authorization's redirect or a session
/// exists for the server and client (and no new EHR launch asks for another); otherwise starts
/// `authorize` and answers `None` (the browser is on its way).
pub async fn init(env: &impl Environment, options: &AuthorizeOptions) -> Result<Option<Session>, SdkError> {
    let here = env.location();
    if url::param(&here, "code").is_some() || url::param(&here, "error").is_some() {
        return ready(env).await.map(Some);
    }
    let server = options.fhir_service_url.clone().or(options.iss.clone()).or_else(|| url::param(&here, "iss"));
    if let (Some(server), None) = (&server, url::param(&here, "launch")) {
        if let Some(session) = find(env, server, &options.client_id) {
            store(env, &session);
            return Ok(Some(session));
        }
    }
    authorize(env, options).await?;
    Ok(None)
}

/// The session this tab last used, if it is still stored.
pub fn restore(env: &impl Environment) -> Option<Session> {
    let key = env.get(Area::Tab, CURRENT)?;
    load(env, Area::Shared, &key)
}

/// A stored session for this server and client (for `init()`).
pub fn find(env: &impl Environment, server_url: &str, client_id: &str) -> Option<Session> {
    load(env, Area::Shared, &session_key(server_url, client_id))
}

async fn complete(env: &impl Environment, code: &str, state: &str) -> Result<Session, SdkError> {
    let key = pending_key(state);
    let pending: Pending = load(env, Area::Shared, &key)
        .ok_or_else(|| SdkError::new("invalid_state", "the state does not belong to an authorization this app started (stale, reused or tampered)"))?;
    // Single use, whatever happens next.
    env.remove(Area::Shared, &key);
    if env.now() - pending.created > PENDING_TTL_SECS {
        return Err(SdkError::new("invalid_state", "the authorization took too long; start again"));
    }
    let request = HttpRequest::form(
        &pending.endpoints.token,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.redirect_uri),
            ("client_id", &pending.client_id),
            ("code_verifier", &pending.code_verifier),
        ],
    );
    // The issuer's key set is fetched while the code is exchanged, when discovery named it and
    // an ID token is due: the JWKS round trip stays off the launch's critical path.
    let jwks = async {
        match &pending.endpoints.jwks_uri {
            Some(uri) if pending.scope.split(' ').any(|s| s == "openid") => Some(env.fetch(HttpRequest::get(uri, "application/json")).await),
            _ => None,
        }
    };
    let (tokens, prefetched) = join(token_request(env, request), jwks).await;
    let (tokens, raw) = tokens?;
    let (claims, fhir_user) = match &tokens.id_token {
        Some(id_token) => {
            let (claims, fhir_user) = verify_id_token(env, &pending, id_token, prefetched).await?;
            (Some(claims), fhir_user)
        }
        None => (None, None),
    };
    let session = Session {
        server_url: pending.server_url,
        client_id: pending.client_id,
        redirect_uri: pending.redirect_uri,
        scope: tokens.scope.clone().unwrap_or(pending.scope),
        endpoints: pending.endpoints,
        token_response: raw,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: tokens.expires_in.map(|s| env.now() + s),
        patient: tokens.context.patient,
        encounter: tokens.context.encounter,
        id_token_claims: claims,
        fhir_user,
    };
    store(env, &session);
    Ok(session)
}

/// Saves the session and makes it this tab's current one.
pub fn store(env: &impl Environment, session: &Session) {
    save(env, Area::Shared, &session.key(), session);
    env.set(Area::Tab, CURRENT, &session.key());
}

/// Posts to the token endpoint: the token response, read and as sent.
pub async fn token_request(env: &impl Environment, request: HttpRequest) -> Result<(TokenResponse, Json), SdkError> {
    let res = env.fetch(request).await?;
    if res.status != 200 {
        return Err(SdkError::from_response(res.status, &res.body, "the token endpoint"));
    }
    let invalid = |e: &dyn std::fmt::Display| SdkError::new("invalid_token_response", format!("the token response is not valid: {e}"));
    let body = Json::parse(&res.body).map_err(|e| invalid(&e))?;
    let tokens = TokenResponse::read(&body).map_err(|e| invalid(&e))?;
    if !tokens.is_bearer() || tokens.access_token.is_empty() {
        return Err(SdkError::new("invalid_token_response", "the token response has no Bearer access token"));
    }
    Ok((tokens, body))
}

fn id_error(message: impl Into<String>) -> SdkError {
    SdkError::new("invalid_id_token", message)
}

/// The issuer's JWKS URL: from the SMART configuration, else OpenID discovery.
async fn jwks_uri(env: &impl Environment, pending: &Pending, issuer: &str) -> Result<String, SdkError> {
    if let Some(uri) = &pending.endpoints.jwks_uri {
        return Ok(uri.clone());
    }
    let config = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let res = env.fetch(HttpRequest::get(&config, "application/json")).await?;
    let doc = Json::parse(&res.body).unwrap_or(Json::Null);
    doc.get("jwks_uri").and_then(Json::as_str).map(str::to_owned).ok_or_else(|| id_error(format!("cannot find the key set of {issuer}")))
}

/// Both futures' outputs, the two running at once (one task: no spawning needed).
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (out_a, out_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// Verifies an ID token and answers its claims (as sent) and its `fhirUser`. `prefetched` is
/// the answer of the key set URL discovery named, when it was fetched ahead.
pub async fn verify_id_token(
    env: &impl Environment,
    pending: &Pending,
    token: &str,
    prefetched: Option<Result<HttpResponse, SdkError>>,
) -> Result<(Json, Option<String>), SdkError> {
    let jws = split_compact(token).map_err(|e| id_error(e.to_string()))?;
    let text_of = |bytes: &[u8], what: &str| {
        std::str::from_utf8(bytes).ok().and_then(|t| Json::parse(t).ok()).ok_or_else(|| id_error(format!("the ID token's {what} is not JSON")))
    };
    let raw = RawHeader::read(&text_of(&jws.header, "header")?).map_err(|e| id_error(format!("the ID token's header is not valid: {e}")))?;
    let header = CompactParts::header(raw, false).map_err(|e| id_error(e.to_string()))?;
    let claims = text_of(&jws.payload, "payload")?;
    if !matches!(claims, Json::Object(_)) {
        return Err(id_error("the ID token's payload is not a JSON object"));
    }
    let expected = IdTokenExpected { issuer: pending.endpoints.issuer.as_deref(), client_id: &pending.client_id, nonce: &pending.nonce, now: env.now() };
    let issuer = check_id_token_claims(&claims, &expected).map_err(|e| id_error(e.message()))?;
    // The signature, over the key set the issuer publishes.
    let uri = jwks_uri(env, pending, &issuer).await?;
    let res = match prefetched {
        Some(res) if pending.endpoints.jwks_uri.as_deref() == Some(uri.as_str()) => res?,
        _ => env.fetch(HttpRequest::get(&uri, "application/json")).await?,
    };
    let set = Json::parse(&res.body).map_err(|_| id_error(format!("{uri} is not a key set")))?;
    let alg = header.alg.as_str();
    let candidates = verification_candidates(set.get("keys").and_then(Json::as_array).unwrap_or_default(), &header);
    for jwk in candidates {
        if env.verify(SignatureCheck { alg, jwk, signed: jws.signing_input.as_bytes(), signature: &jws.signature }).await? {
            let fhir_user = claims.get("fhirUser").and_then(Json::as_str).map(str::to_owned);
            return Ok((claims, fhir_user));
        }
    }
    Err(id_error("the ID token's signature does not verify with the issuer's keys"))
}
