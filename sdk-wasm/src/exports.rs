//! The wasm functions the ES module calls. They keep no state: the session is the `Client`'s
//! serialisable `state`, held by JavaScript and passed in as JSON text; answers are JSON text;
//! failures reject with the JSON of an [`SdkError`], which the module turns into a
//! `SmartError`. Options arrive as plain arguments (no JSON to decode for them).

use crate::browser::BrowserEnv;
use crate::engine::authorize::{self, AuthorizeOptions};
use crate::engine::client::{in_patient_compartment, Client, FhirCall, Paging};
use crate::engine::error::SdkError;
use crate::engine::state::{Session, Stored};
use crate::engine::ready;
use crate::json::Json;
use wasm_bindgen::prelude::*;

type Answer = Result<String, JsValue>;

fn fail(e: SdkError) -> JsValue {
    JsValue::from_str(&e.to_json().to_string())
}

fn env() -> Result<BrowserEnv, JsValue> {
    BrowserEnv::new().map_err(fail)
}

fn text(value: &impl Stored) -> Answer {
    Ok(value.to_json().to_string())
}

fn session(state: &str) -> Result<Session, JsValue> {
    let parsed = Json::parse(state).ok();
    parsed.as_ref().and_then(Session::from_json).ok_or_else(|| fail(SdkError::new("invalid_state", "the client state is not one the SDK wrote")))
}

#[allow(clippy::too_many_arguments)]
fn options(client_id: String, scope: Option<String>, redirect_uri: Option<String>, iss: Option<String>, fhir_service_url: Option<String>, launch: Option<String>, no_redirect: bool, target: Option<String>) -> AuthorizeOptions {
    AuthorizeOptions { client_id, scope, redirect_uri, iss, fhir_service_url, launch, no_redirect, target }
}

/// `authorize(options)` → the authorization URL (the browser is sent there unless `noRedirect`).
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = sdkAuthorize)]
pub async fn sdk_authorize(client_id: String, scope: Option<String>, redirect_uri: Option<String>, iss: Option<String>, fhir_service_url: Option<String>, launch: Option<String>, no_redirect: bool, target: Option<String>) -> Answer {
    let options = options(client_id, scope, redirect_uri, iss, fhir_service_url, launch, no_redirect, target);
    authorize::authorize(&env()?, &options).await.map_err(fail)
}

/// `init(options)` → the session when the page is a redirect or a session exists for the
/// server and client; otherwise starts `authorize` and answers the empty string.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = sdkInit)]
pub async fn sdk_init(client_id: String, scope: Option<String>, redirect_uri: Option<String>, iss: Option<String>, fhir_service_url: Option<String>, launch: Option<String>, no_redirect: bool, target: Option<String>) -> Answer {
    let options = options(client_id, scope, redirect_uri, iss, fhir_service_url, launch, no_redirect, target);
    match ready::init(&env()?, &options).await.map_err(fail)? {
        Some(session) => text(&session),
        None => Ok(String::new()),
    }
}

/// `discover(fhirBase)` → the server's endpoints and capabilities.
#[wasm_bindgen(js_name = sdkDiscover)]
pub async fn sdk_discover(fhir_base: String) -> Answer {
    text(&authorize::discover(&env()?, &fhir_base).await.map_err(fail)?)
}

/// `ready()` → the session.
#[wasm_bindgen(js_name = sdkReady)]
pub async fn sdk_ready() -> Answer {
    text(&ready::ready(&env()?).await.map_err(fail)?)
}

/// `request(state, …)` → `{"result": …, "session": …}` (the session changes when a refresh
/// happened). `body` is sent as is; `headers` are `name: value` lines.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = sdkRequest)]
pub async fn sdk_request(state: String, url: String, method: Option<String>, body: Option<String>, headers: Option<String>, page_limit: u32, flat: bool, in_patient: bool) -> Answer {
    let session = session(&state)?;
    let method = match method.as_deref().unwrap_or("GET").to_ascii_uppercase().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        other => return Err(fail(SdkError::new("invalid_options", format!("method {other} is not supported")))),
    };
    let headers = headers.unwrap_or_default().lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut call = FhirCall { method, url, body, headers };
    if in_patient {
        let patient = session.patient.clone().ok_or_else(|| fail(SdkError::new("no_context", "no patient in the launch context")))?;
        call.url = in_patient_compartment(&call.url, &patient);
    }
    let env = env()?;
    let mut client = Client::new(&env, session);
    let result = client.request(call, Paging { page_limit: page_limit as usize, flat }).await.map_err(fail)?;
    Ok(format!("{{\"result\":{result},\"session\":{}}}", text(&client.session)?))
}

/// `refresh(state)` → the refreshed session.
#[wasm_bindgen(js_name = sdkRefresh)]
pub async fn sdk_refresh(state: String) -> Answer {
    let env = env()?;
    let mut client = Client::new(&env, session(&state)?);
    client.refresh().await.map_err(fail)?;
    text(&client.session)
}

/// `logout(state)`: revokes, then forgets the session.
#[wasm_bindgen(js_name = sdkLogout)]
pub async fn sdk_logout(state: String) -> Answer {
    let env = env()?;
    let mut client = Client::new(&env, session(&state)?);
    client.logout().await.map_err(fail)?;
    Ok(String::new())
}
