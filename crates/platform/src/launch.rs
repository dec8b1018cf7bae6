//! EHR launch contexts (SMART App Launch 2.2 §2.0.7 "EHR launch" and §2.0.10 "Launch
//! context"): the EHR creates one for a client, gets an opaque `launch` value back, and opens
//! `<launch_uri>?iss=<fhir base>&launch=<value>`.
//!
//! The `launch` value is a short-lived ES256 JWT signed by this server (`typ:
//! smart-launch+jwt`): any isolate in any location can check it without a storage round trip,
//! it is bound to its client (`aud`) and it expires ([`LAUNCH_LIFETIME_SECS`]).
//!
//! Two rules close what a signed value alone cannot: when the EHR names its `user`, only
//! that user may complete the launch (`sub`, checked by `grants::PendingAuthorization::may_complete`);
//! and a launch is single use: its `jti` is recorded by the first authorization request that
//! presents it (a strongly consistent log, the caller's port), and any later one is refused.

use crate::clients::Client;
use crate::jwt::{sign_jwt, verify_own_jwt, TokenError};
use crate::keys::{KeyError, KeyRing};
use crate::ports::{Random, Signer, Verifier};
use crate::users::is_fhir_id;
use serde::{Deserialize, Serialize};
use smart_protocol::jose::JwsAlgorithm;
use smart_protocol::ServerUrls;
use url::Url;

pub const LAUNCH_TYP: &str = "smart-launch+jwt";
/// How long an app has between the EHR's launch and its authorization request.
pub const LAUNCH_LIFETIME_SECS: i64 = 300;

/// The launch context and its `fhirContext` entries are the protocol's
/// (`smart_protocol::launch`), one definition for the launch API, the grant records that store
/// them, the token and introspection responses and the SDK.
pub use smart_protocol::datatypes::Identifier;
pub use smart_protocol::launch::{FhirContextItem, LaunchContext};

/// The EHR's request to `POST /auth/ehr/launch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub client_id: String,
    /// The EHR's signed-in user (a username here): only they may complete the launch.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(flatten)]
    pub context: LaunchContext,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("not a valid launch request: {0}")]
    Invalid(String),
    #[error("patient and encounter must be FHIR ids")]
    BadId,
    #[error("each fhirContext item needs exactly one of reference, canonical or identifier (an identifier with a system or a value)")]
    BadFhirContext,
    #[error(
        "a fhirContext item has only reference, canonical, identifier (a FHIR Identifier: use, type, system, value, period, assigner), type and role, each of its JSON type"
    )]
    BadFhirContextMember,
    #[error("smart_style_url must be an absolute https URL (http only on loopback)")]
    BadStyleUrl,
    #[error("the client is a backend service and cannot be launched")]
    NotLaunchable,
    #[error("user must be a username")]
    BadUser,
}

/// What `POST /auth/ehr/launch` answers: the `launch` value, and the URL that opens the app
/// with it when the client registered a `launch_uri` (an EHR that knows the app's address on
/// its own needs only the value).
#[derive(Debug, Clone, Serialize)]
pub struct LaunchCreated {
    pub launch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    pub expires_in: i64,
}

#[derive(Serialize, Deserialize)]
struct LaunchClaims {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    jti: String,
    /// The EHR's user, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    ctx: LaunchContext,
}

/// An accepted `launch` value: its context, the user it is bound to, and what makes it
/// single use (record `jti` until `exp`; a second authorization finds it recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLaunch {
    pub context: LaunchContext,
    pub user: Option<String>,
    pub jti: String,
    pub exp: i64,
}

/// The launch API's checks of a context.
pub trait ValidLaunchContext {
    fn validate(&self) -> Result<(), LaunchError>;
}

impl ValidLaunchContext for LaunchContext {
    fn validate(&self) -> Result<(), LaunchError> {
        for id in [&self.patient, &self.encounter].into_iter().flatten() {
            if !is_fhir_id(id) {
                return Err(LaunchError::BadId);
            }
        }
        for item in &self.fhir_context {
            let given = [item.reference.is_some(), item.canonical.is_some(), item.identifier.is_some()];
            let empty_identifier = item.identifier.as_ref().is_some_and(|i| i.system.is_none() && i.value.is_none());
            if given.iter().filter(|g| **g).count() != 1 || empty_identifier {
                return Err(LaunchError::BadFhirContext);
            }
        }
        if let Some(url) = &self.smart_style_url {
            let ok = Url::parse(url).is_ok_and(|u| u.scheme() == "https" || (u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "localhost"))));
            if !ok {
                return Err(LaunchError::BadStyleUrl);
            }
        }
        Ok(())
    }
}

impl LaunchRequest {
    /// The request, strictly: unknown members are refused (at the top level by serde, in a
    /// `fhirContext` item by [`read_exactly`]), where storage and the token response read the
    /// same types leniently.
    pub fn parse(body: &str) -> Result<Self, LaunchError> {
        let request: Self = serde_json::from_str(body).map_err(|e| LaunchError::Invalid(e.to_string()))?;
        if request.user.as_deref().is_some_and(|u| !crate::users::valid_username(u)) {
            return Err(LaunchError::BadUser);
        }
        let raw: serde_json::Value = serde_json::from_str(body).map_err(|e| LaunchError::Invalid(e.to_string()))?;
        // An item that names nothing is dropped when read: here it is refused for what it is.
        if raw.get("fhirContext").and_then(serde_json::Value::as_array).is_some_and(|items| items.len() != request.context.fhir_context.len()) {
            return Err(LaunchError::BadFhirContext);
        }
        if !read_exactly(raw.get("fhirContext"), &request.context.fhir_context) {
            return Err(LaunchError::BadFhirContextMember);
        }
        request.context.validate()?;
        Ok(request)
    }
}

/// Whether the `fhirContext` items were read without dropping anything: an unknown member, or
/// one of the wrong JSON type (an identifier that is no object, a `system` that is a number),
/// is read as absent, so the items written back differ from what was sent. A `null` member is
/// absent in both.
fn read_exactly(sent: Option<&serde_json::Value>, read: &[FhirContextItem]) -> bool {
    fn without_nulls(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(members) => members.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
            serde_json::Value::Array(items) => items.iter().map(without_nulls).collect(),
            other => other.clone(),
        }
    }
    match sent {
        None | Some(serde_json::Value::Null) => read.is_empty(),
        Some(sent) => serde_json::to_value(read).is_ok_and(|written| written == without_nulls(sent)),
    }
}

/// Creates the launch value and URL for `client`.
pub async fn create(
    request: &LaunchRequest,
    client: &Client,
    urls: &ServerUrls,
    ring: &KeyRing,
    signer: &dyn Signer,
    random: &dyn Random,
    now: i64,
) -> Result<Result<LaunchCreated, LaunchError>, KeyError> {
    if client.client_type == crate::clients::ClientType::Backend {
        return Ok(Err(LaunchError::NotLaunchable));
    }
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes)?;
    let claims = LaunchClaims {
        iss: urls.issuer().to_owned(),
        aud: client.client_id.clone(),
        iat: now,
        exp: now + LAUNCH_LIFETIME_SECS,
        jti: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        sub: request.user.clone(),
        ctx: request.context.clone(),
    };
    let launch = sign_jwt(ring, signer, JwsAlgorithm::ES256, LAUNCH_TYP, &claims, now).await?;
    let launch_url = client.launch_uri.as_deref().and_then(|u| Url::parse(u).ok()).map(|mut url| {
        url.query_pairs_mut().append_pair("iss", &urls.fhir_base()).append_pair("launch", &launch);
        String::from(url)
    });
    Ok(Ok(LaunchCreated { launch, launch_url, expires_in: LAUNCH_LIFETIME_SECS }))
}

/// `POST /auth/ehr/launch` and the portal's launches, as one use case: the client must be
/// registered, the user the EHR names must exist, then [`create`] (a launchable client, the
/// signed launch, the URL when it has a `launch_uri`). `Ok(Err(why))` is a request that cannot be launched (400).
pub async fn start(ports: &crate::oauth::OAuthPorts<'_>, request: &LaunchRequest) -> Result<Result<LaunchCreated, String>, crate::oauth::Failure> {
    let Some(client) = ports.clients.client(&request.client_id).await? else {
        return Ok(Err("no such client_id".into()));
    };
    if let Some(user) = &request.user {
        if ports.users.user(user).await?.is_none() {
            return Ok(Err("no such user".into()));
        }
    }
    let ring = ports.keys.key_ring().await?;
    Ok(create(request, &client, ports.urls, &ring, ports.signer, ports.random, ports.clock.now()).await?.map_err(|e| e.to_string()))
}

/// Why an authorization request's `launch` was refused.
#[derive(Debug, thiserror::Error)]
pub enum LaunchUseError {
    #[error("the launch value is not valid: {0}")]
    Invalid(#[from] TokenError),
    #[error("the launch value was issued for another client")]
    OtherClient,
    #[error("the launch value was already used; open the app again from the EHR")]
    AlreadyUsed,
}

/// Checks the `launch` parameter of an authorization request and returns what it carries.
/// The caller then records [`ResolvedLaunch::jti`] (single use).
pub async fn resolve(
    launch: &str,
    client_id: &str,
    urls: &ServerUrls,
    ring: &KeyRing,
    verifier: &dyn Verifier,
    now: i64,
) -> Result<ResolvedLaunch, LaunchUseError> {
    let claims = verify_own_jwt(ring, verifier, launch, LAUNCH_TYP, urls.issuer(), now).await?;
    let claims: LaunchClaims = serde_json::from_value(serde_json::Value::Object(claims))
        .map_err(|e| LaunchUseError::Invalid(TokenError::Malformed(smart_protocol::jose::JwsError::BadHeader(e.to_string()))))?;
    if claims.aud != client_id {
        return Err(LaunchUseError::OtherClient);
    }
    if claims.jti.is_empty() {
        // Every launch this server signs has one; without it the launch could not be used once.
        return Err(LaunchUseError::AlreadyUsed);
    }
    Ok(ResolvedLaunch { context: claims.ctx, user: claims.sub, jti: claims.jti, exp: claims.exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistration;
    use crate::keys::ensure_keys;
    use crate::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier, MemoryKeyStore, SeededRandom};
    use futures::executor::block_on;

    fn client(launch_uri: Option<&str>) -> Client {
        let mut json = serde_json::json!({"client_id": "app", "client_name": "App", "client_type": "public",
            "redirect_uris": ["https://app.example/cb"], "scope": "launch patient/*.rs"});
        if let Some(uri) = launch_uri {
            json["launch_uri"] = uri.into();
        }
        ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap()
    }

    #[test]
    fn a_launch_round_trips_for_its_client_until_it_expires() {
        let urls = ServerUrls::new("https://ehr.example", "/fhir").unwrap();
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        let request = LaunchRequest::parse(
            r#"{"client_id":"app","user":"dr.who","patient":"p1","encounter":"e1","intent":"reconcile-medications",
            "need_patient_banner":false,"fhirContext":[{"reference":"Observation/o1","role":"launch"}],"tenant":"t1"}"#,
        )
        .unwrap();
        let random = SeededRandom::default();
        let created = block_on(create(&request, &client(Some("https://app.example/launch?x=1")), &urls, &ring, &FakeSigner, &random, 1000)).unwrap().unwrap();
        let url = Url::parse(created.launch_url.as_deref().unwrap()).unwrap();
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(query[0], ("x".into(), "1".into()));
        assert_eq!(query[1], ("iss".into(), "https://ehr.example/fhir".into()));
        assert_eq!(query[2], ("launch".into(), created.launch.clone()));

        let resolved = block_on(resolve(&created.launch, "app", &urls, &ring, &FakeVerifier, 1000 + LAUNCH_LIFETIME_SECS - 1)).unwrap();
        assert_eq!(resolved.context, request.context);
        assert_eq!(resolved.user.as_deref(), Some("dr.who"));
        assert_eq!(resolved.exp, 1000 + LAUNCH_LIFETIME_SECS);
        assert_eq!(resolved.jti.len(), 32);
        let again = block_on(create(&request, &client(Some("https://app.example/launch")), &urls, &ring, &FakeSigner, &random, 1000)).unwrap().unwrap();
        let other = block_on(resolve(&again.launch, "app", &urls, &ring, &FakeVerifier, 1000)).unwrap();
        assert_ne!(other.jti, resolved.jti, "each launch has its own jti");
        assert!(matches!(block_on(resolve(&created.launch, "other", &urls, &ring, &FakeVerifier, 1000)), Err(LaunchUseError::OtherClient)));
        assert!(block_on(resolve(&created.launch, "app", &urls, &ring, &FakeVerifier, 1000 + LAUNCH_LIFETIME_SECS)).is_err());
        assert!(block_on(resolve("garbage", "app", &urls, &ring, &FakeVerifier, 1000)).is_err());
    }

    #[test]
    fn refuses_bad_launch_requests() {
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","patient":"bad id"}"#).unwrap_err(), LaunchError::BadId);
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","user":"bad user!"}"#).unwrap_err(), LaunchError::BadUser);
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","fhirContext":[{"role":"x"}]}"#).unwrap_err(), LaunchError::BadFhirContext);
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","fhirContext":[{"identifier":{}}]}"#).unwrap_err(), LaunchError::BadFhirContext);
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","fhirContext":[{"identifier":{"use":"official"}}]}"#).unwrap_err(), LaunchError::BadFhirContext);
        assert!(LaunchRequest::parse(r#"{"client_id":"app","fhirContext":[{"identifier":{"value":"123"}}]}"#).is_ok());
        assert_eq!(LaunchRequest::parse(r#"{"client_id":"app","smart_style_url":"http://evil.example/s.json"}"#).unwrap_err(), LaunchError::BadStyleUrl);
        assert!(matches!(LaunchRequest::parse(r#"{"client_id":"app","surprise":1}"#).unwrap_err(), LaunchError::Invalid(_)));
        let urls = ServerUrls::new("https://ehr.example", "/fhir").unwrap();
        let ring = block_on(ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), 0)).unwrap();
        // A client without launch_uri still gets a launch value (the EHR knows the app's URL).
        let request = LaunchRequest::parse(r#"{"client_id":"app","patient":"p1"}"#).unwrap();
        let created = block_on(create(&request, &client(None), &urls, &ring, &FakeSigner, &SeededRandom::default(), 0)).unwrap().unwrap();
        assert_eq!(created.launch_url, None);
        assert_eq!(serde_json::to_value(&created).unwrap().get("launch_url"), None, "absent, not null");
        let resolved = block_on(resolve(&created.launch, "app", &urls, &ring, &FakeVerifier, 1)).unwrap();
        assert_eq!(resolved.context.patient.as_deref(), Some("p1"));
    }
}
