//! `authorize(options)` (SMART App Launch 2.2 §2.0.5–2.0.6): find the server's endpoints,
//! then send the browser to its authorization endpoint with PKCE (S256), a random `state` and
//! `nonce`, `aud` = the FHIR base and, for an EHR launch, the `launch` value.

use super::env::{Area, Environment, HttpRequest, Target};
use super::error::SdkError;
use super::state::{pending_key, save, Endpoints, Pending};
use super::url;
use crate::json::Json;
use smart_protocol::discovery::SmartConfiguration;
use smart_protocol::pkce::{s256_challenge_of_digest, CodeVerifier};

/// `authorize()`'s options, with fhirclient.js's names.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeOptions {
    pub client_id: String,
    pub scope: Option<String>,
    pub redirect_uri: Option<String>,
    /// The FHIR base the EHR launched from (else the page's `iss` parameter).
    pub iss: Option<String>,
    /// A standalone launch against this FHIR base (the page's `iss` and `launch` are ignored).
    pub fhir_service_url: Option<String>,
    pub launch: Option<String>,
    pub no_redirect: bool,
    pub target: Option<String>,
}

const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The SMART configuration of `server`, or the oauth-uris of its CapabilityStatement.
pub async fn discover(env: &impl Environment, server: &str) -> Result<Endpoints, SdkError> {
    let base = server.trim_end_matches('/');
    let well_known = format!("{base}/.well-known/smart-configuration");
    if let Ok(res) = env.fetch(HttpRequest::get(&well_known, "application/json")).await {
        if res.status == 200 {
            if let Ok(c) = Json::parse(&res.body).map_err(drop).and_then(|doc| SmartConfiguration::read(&doc).map_err(drop)) {
                if let Some(authorize) = c.authorization_endpoint {
                    return Ok(Endpoints {
                        authorize,
                        token: c.token_endpoint,
                        revoke: c.revocation_endpoint,
                        issuer: c.issuer,
                        jwks_uri: c.jwks_uri,
                        capabilities: c.capabilities,
                    });
                }
            }
        }
    }
    // SMART 1.0 servers: the CapabilityStatement's rest.security extension.
    let metadata = format!("{base}/metadata");
    let res = env.fetch(HttpRequest::get(&metadata, "application/fhir+json")).await?;
    if res.status != 200 {
        return Err(SdkError::new("discovery_failed", format!("neither {well_known} nor {metadata} describes the server's OAuth endpoints")));
    }
    let capability = Json::parse(&res.body).map_err(|_| SdkError::new("discovery_failed", format!("{metadata} is not JSON")))?;
    let list = |v: Option<&Json>| v.and_then(Json::as_array).unwrap_or_default().to_vec();
    let with_url = |items: &[Json], url: &str| items.iter().find(|e| e.get("url").and_then(Json::as_str) == Some(url)).cloned();
    let rest = list(capability.get("rest"));
    let extensions = list(rest.first().and_then(|r| r.get("security")).and_then(|s| s.get("extension")));
    let uris = list(with_url(&extensions, OAUTH_URIS).as_ref().and_then(|e| e.get("extension")));
    let uri = |name: &str| with_url(&uris, name).and_then(|e| e.get("valueUri").and_then(Json::as_str).map(str::to_owned));
    match (uri("authorize"), uri("token")) {
        (Some(authorize), Some(token)) => Ok(Endpoints { authorize, token, revoke: uri("revoke"), ..Default::default() }),
        _ => Err(SdkError::new("discovery_failed", format!("{metadata} has no SMART oauth-uris"))),
    }
}

fn random_token(env: &impl Environment, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    env.random(&mut buf);
    smart_protocol::b64url::encode(buf)
}

/// The page the authorization server sends the browser back to: the option, or the current
/// page without its query.
fn redirect_uri(env: &impl Environment, option: Option<&str>) -> String {
    let here = env.location();
    match option {
        Some(uri) if url::is_absolute(uri) => uri.to_owned(),
        Some(relative) => {
            let dir = here.split(['?', '#']).next().unwrap_or_default();
            let dir = dir.rfind('/').and_then(|i| dir.get(..=i)).unwrap_or(dir);
            format!("{dir}{}", relative.trim_start_matches("./"))
        }
        None => here.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Starts an authorization: answers the URL of the authorization request (and, unless
/// `noRedirect`, sends the browser there).
pub async fn authorize(env: &impl Environment, options: &AuthorizeOptions) -> Result<String, SdkError> {
    if options.client_id.is_empty() {
        return Err(SdkError::new("invalid_options", "clientId is required"));
    }
    let here = env.location();
    let (server, launch) = match (&options.fhir_service_url, &options.iss) {
        (Some(fhir), _) => (fhir.clone(), None),
        (None, Some(iss)) => (iss.clone(), options.launch.clone().or_else(|| url::param(&here, "launch"))),
        (None, None) => match url::param(&here, "iss") {
            Some(iss) => (iss, options.launch.clone().or_else(|| url::param(&here, "launch"))),
            None => return Err(SdkError::new("invalid_options", "no FHIR server: give iss or fhirServiceUrl, or open the page with ?iss=…")),
        },
    };
    if !url::is_absolute(&server) {
        return Err(SdkError::new("invalid_options", format!("{server} is not an absolute http(s) URL")));
    }
    let server = server.trim_end_matches('/').to_owned();
    let mut scope = options.scope.clone().unwrap_or_else(|| "launch/patient openid fhirUser".into());
    if launch.is_some() && !scope.split(' ').any(|s| s == "launch") {
        scope = format!("launch {scope}");
    }
    let endpoints = discover(env, &server).await?;
    let verifier = CodeVerifier::from_random_bytes(&{
        let mut b = [0u8; 32];
        env.random(&mut b);
        b
    });
    let challenge = s256_challenge_of_digest(&env.sha256(verifier.secret().as_bytes()).await?);
    let state = random_token(env, 24);
    let nonce = random_token(env, 24);
    let redirect = redirect_uri(env, options.redirect_uri.as_deref());
    let mut pairs: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), options.client_id.clone()),
        ("scope".into(), scope.clone()),
        ("redirect_uri".into(), redirect.clone()),
        ("aud".into(), server.clone()),
        ("state".into(), state.clone()),
        ("code_challenge".into(), challenge),
        ("code_challenge_method".into(), "S256".into()),
    ];
    if scope.split(' ').any(|s| s == "openid") {
        pairs.push(("nonce".into(), nonce.clone()));
    }
    if let Some(launch) = &launch {
        pairs.push(("launch".into(), launch.clone()));
    }
    let pending = Pending {
        server_url: server,
        client_id: options.client_id.clone(),
        redirect_uri: redirect,
        scope,
        code_verifier: verifier.secret().to_owned(),
        nonce,
        endpoints: endpoints.clone(),
        created: env.now(),
    };
    // Shared: a popup or a new tab finishes the authorization in another window.
    save(env, Area::Shared, &pending_key(&state), &pending);
    let location = url::with_query(&endpoints.authorize, &pairs);
    if !options.no_redirect {
        env.navigate(&location, &Target::parse(options.target.as_deref()))?;
    }
    Ok(location)
}
