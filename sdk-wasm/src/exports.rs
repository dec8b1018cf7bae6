//! The one wasm function the ES module calls: `sdk(operation, arguments)`. It keeps no state:
//! the session is the `Client`'s serialisable `state`, held by JavaScript and passed in with
//! the arguments (a JSON object); answers are JSON text; failures reject with the JSON of an
//! [`SdkError`], which the module turns into a `SmartError`.

use crate::browser::BrowserEnv;
use crate::engine::authorize::{self, AuthorizeOptions};
use crate::engine::client::{in_patient_compartment, Client, FhirCall, Paging};
use crate::engine::error::SdkError;
use crate::engine::ready;
use crate::engine::state::{Session, Stored};
use crate::json::Json;
use wasm_bindgen::prelude::*;

/// `sdk(operation, arguments)`: `authorize`, `init`, `ready`, `discover`, `request`, `refresh`
/// or `logout`, with its arguments as a JSON object.
#[wasm_bindgen]
pub async fn sdk(operation: String, arguments: String) -> Result<String, JsValue> {
    run(&operation, &arguments).await.map_err(|e| JsValue::from_str(&e.to_json().to_string()))
}

fn options(args: &Json) -> AuthorizeOptions {
    AuthorizeOptions {
        client_id: args.string("clientId").unwrap_or_default(),
        scope: args.string("scope"),
        redirect_uri: args.string("redirectUri"),
        iss: args.string("iss"),
        fhir_service_url: args.string("fhirServiceUrl"),
        launch: args.string("launch"),
        no_redirect: args.get("noRedirect") == Some(&Json::Bool(true)),
        target: args.string("target"),
    }
}

async fn run(operation: &str, arguments: &str) -> Result<String, SdkError> {
    let args = Json::parse(arguments).map_err(|e| SdkError::new("invalid_options", e.to_string()))?;
    let env = BrowserEnv::new()?;
    let session = || {
        let state = args.get("state").unwrap_or(&Json::Null);
        Session::from_json(state).ok_or_else(|| SdkError::new("invalid_state", "the client state is not one the SDK wrote"))
    };
    Ok(match operation {
        "authorize" => Json::from(authorize::authorize(&env, &options(&args)).await?).to_string(),
        "init" => ready::init(&env, &options(&args)).await?.map_or(Json::Null, |s| s.to_json()).to_string(),
        "ready" => ready::ready(&env).await?.to_json().to_string(),
        "discover" => authorize::discover(&env, &args.string("fhirBase").unwrap_or_default()).await?.to_json().to_string(),
        "request" => {
            let session = session()?;
            let method = match args.string("method").unwrap_or_else(|| "GET".into()).to_ascii_uppercase().as_str() {
                "GET" => "GET",
                "POST" => "POST",
                "PUT" => "PUT",
                "DELETE" => "DELETE",
                "PATCH" => "PATCH",
                other => return Err(SdkError::new("invalid_options", format!("method {other} is not supported"))),
            };
            let headers = args.list("headers").iter().filter_map(|h| Some((h.string("name")?, h.string("value")?))).collect();
            let mut call = FhirCall { method, url: args.string("url").unwrap_or_default(), body: args.string("body"), headers };
            if args.get("inPatient") == Some(&Json::Bool(true)) {
                let patient = session.patient.clone().ok_or_else(|| SdkError::new("no_context", "no patient in the launch context"))?;
                call.url = in_patient_compartment(&call.url, &patient);
            }
            let page_limit = args.get("pageLimit").and_then(Json::as_i64).map_or(1, |n| n.max(0) as usize);
            let flat = args.get("flat") == Some(&Json::Bool(true));
            let mut client = Client::new(&env, session);
            let result = client.request(call, Paging { page_limit, flat }).await?;
            format!("{{\"result\":{result},\"session\":{}}}", client.session.to_json())
        }
        "refresh" => {
            let mut client = Client::new(&env, session()?);
            client.refresh().await?;
            client.session.to_json().to_string()
        }
        "logout" => {
            Client::new(&env, session()?).logout().await?;
            "null".into()
        }
        _ => return Err(SdkError::new("internal", format!("no operation {operation}"))),
    })
}
