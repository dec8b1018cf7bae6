//! Sandbox error simulation: an administrator sets, for a client registered as a test client
//! (`test_client: true`), the failure the NEXT matching call of that client meets — a denied
//! authorization, a token error, an expired token at the FHIR API — so that an app's error
//! handling can be tried against the real server (the SMART reference launcher's "simulate
//! error", here on the server itself). The failure is one shot: taking it clears it.
//!
//! A simulated failure is decided before anything real happens and answers exactly as the real
//! failure would (RFC 6749 §4.1.2.1 redirect, §5.2 error JSON with its status, RFC 6750 §3
//! challenge, FHIR OperationOutcome): no grant starts, no launch or code is consumed, no
//! refresh token rotates, nothing is written.
//!
//! Stored apart from the client's record, under `simulate:{client_id}` in the configuration
//! store (KV in production: eventually consistent, so in a deployment another location may
//! still see a simulation for up to a minute after it was taken; in one location, and locally,
//! it is taken once).

use crate::clients::Client;
use crate::fhir::api::FhirResponse;
use crate::fhir::outcome::IssueType;
use crate::guard::{AccessGrant, BearerError, BearerRefusal};
use crate::ports::{ClientRegistry, KvStore, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use smart_protocol::{OAuthError, OAuthErrorCode};

pub const KEY_PREFIX: &str = "simulate:";

/// Largest simulation document read.
pub const MAX_BODY_BYTES: usize = 1024;

/// Where the simulated failure happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The authorization endpoint: the error is redirected to the client (once the client,
    /// its redirect URI and the request are valid).
    Authorize,
    /// The token endpoint, for any grant type: the RFC 6749 §5.2 error.
    Token,
    /// The FHIR API, for a valid access token of the client.
    Fhir,
}

/// The errors each stage may simulate.
const AUTHORIZE_ERRORS: [&str; 9] = [
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "login_required",
    "consent_required",
    "interaction_required",
];
const TOKEN_ERRORS: [&str; 8] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "temporarily_unavailable",
    "server_error",
];
const FHIR_ERRORS: [&str; 4] = ["expired_token", "invalid_token", "insufficient_scope", "server_error"];

impl Stage {
    pub fn errors(self) -> &'static [&'static str] {
        match self {
            Stage::Authorize => &AUTHORIZE_ERRORS,
            Stage::Token => &TOKEN_ERRORS,
            Stage::Fhir => &FHIR_ERRORS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stage::Authorize => "authorize",
            Stage::Token => "token",
            Stage::Fhir => "fhir",
        }
    }
}

/// One simulated failure: `{"at": "token", "error": "invalid_grant"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simulation {
    pub at: Stage,
    pub error: String,
}

/// Why a simulation document is refused (a 400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulationError {
    #[error("not a simulation: {0} (expected {{\"at\": \"authorize\" | \"token\" | \"fhir\", \"error\": …}})")]
    Unreadable(String),
    #[error("{error:?} cannot be simulated at {at}; choose one of: {allowed}")]
    NotAtStage { at: &'static str, error: String, allowed: String },
    #[error("client {0:?} is not a test client: register it with \"test_client\": true to simulate errors")]
    NotATestClient(String),
}

impl Simulation {
    /// Reads and checks a simulation document.
    pub fn parse(body: &str) -> Result<Simulation, SimulationError> {
        let simulation: Simulation = serde_json::from_str(body).map_err(|e| SimulationError::Unreadable(e.to_string()))?;
        if !simulation.at.errors().contains(&simulation.error.as_str()) {
            return Err(SimulationError::NotAtStage { at: simulation.at.name(), error: simulation.error, allowed: simulation.at.errors().join(", ") });
        }
        Ok(simulation)
    }

    /// The OAuth error the authorization or token endpoint answers.
    pub fn oauth_error(&self) -> OAuthError {
        OAuthError::new(
            serde_json::from_value(serde_json::Value::String(self.error.clone())).unwrap_or(OAuthErrorCode::ServerError),
            format!("{} (simulated)", describe(&self.error)),
        )
    }

    /// The FHIR API's answer: a bearer refusal (401 `invalid_token` with its challenge, RFC
    /// 6750 §3.1) or a FHIR response (403 `insufficient_scope`, 500).
    pub fn fhir_failure(&self) -> FhirFailure {
        match self.error.as_str() {
            "expired_token" => FhirFailure::Unauthenticated(BearerError::Invalid("the access token has expired (simulated)".into())),
            "invalid_token" => FhirFailure::Unauthenticated(BearerError::Invalid("the access token is not valid (simulated)".into())),
            "insufficient_scope" => {
                let description = "the token's scopes do not allow this interaction (simulated)";
                FhirFailure::Response(FhirResponse {
                    insufficient_scope: Some(description.into()),
                    ..FhirResponse::outcome(403, IssueType::Security, description)
                })
            }
            _ => FhirFailure::Response(FhirResponse::outcome(500, IssueType::Exception, "the server failed (simulated)")),
        }
    }
}

/// How the FHIR API answers a simulated failure.
#[derive(Debug)]
pub enum FhirFailure {
    /// As a failed bearer authentication (`BearerError::refusal`).
    Unauthenticated(BearerError),
    Response(FhirResponse),
}

impl FhirFailure {
    /// The bearer refusal, for the unauthenticated kind.
    pub fn refusal(&self, realm: &str) -> Option<BearerRefusal> {
        match self {
            FhirFailure::Unauthenticated(e) => e.refusal(realm),
            FhirFailure::Response(_) => None,
        }
    }
}

fn describe(error: &str) -> &'static str {
    match error {
        "access_denied" => "the user or the server denied the request",
        "invalid_request" => "the request is not valid",
        "unauthorized_client" => "the client may not use this grant",
        "invalid_scope" => "the scope is not valid",
        "server_error" => "the server failed",
        "temporarily_unavailable" => "the server is temporarily unavailable",
        "login_required" => "the user is not signed in",
        "consent_required" => "the user has not approved this application",
        "interaction_required" => "the user must interact",
        "invalid_client" => "the client authentication failed",
        "invalid_grant" => "the code or refresh token is not valid",
        "unsupported_grant_type" => "the grant type is not supported",
        _ => "error",
    }
}

/// The simulations, per client.
#[async_trait(?Send)]
pub trait Simulations {
    async fn get(&self, client_id: &str) -> Result<Option<Simulation>, StoreError>;
    /// Sets the client's simulation (`None` clears it).
    async fn set(&self, client_id: &str, simulation: Option<&Simulation>) -> Result<(), StoreError>;
}

/// A simulation as the configuration store keeps it, under `simulate:{client_id}`.
pub async fn load(kv: &dyn KvStore, client_id: &str) -> Result<Option<Simulation>, StoreError> {
    crate::ports::load_json(kv, &format!("{KEY_PREFIX}{client_id}")).await
}

/// Stores (or, with `None`, deletes) a client's simulation.
pub async fn store(kv: &dyn KvStore, client_id: &str, simulation: Option<&Simulation>) -> Result<(), StoreError> {
    let key = format!("{KEY_PREFIX}{client_id}");
    match simulation {
        Some(simulation) => crate::ports::save_json(kv, &key, simulation).await,
        None => kv.delete(&key).await,
    }
}

/// The in-memory configuration store holds them too (native tests).
#[async_trait(?Send)]
impl Simulations for crate::memory::MemoryKv {
    async fn get(&self, client_id: &str) -> Result<Option<Simulation>, StoreError> {
        load(self, client_id).await
    }

    async fn set(&self, client_id: &str, simulation: Option<&Simulation>) -> Result<(), StoreError> {
        store(self, client_id, simulation).await
    }
}

/// Takes `client`'s simulation for `stage`, if it is a test client and one is set: it is
/// cleared, so only this call fails. A simulation for another stage stays.
pub async fn take(simulations: &dyn Simulations, client: &Client, stage: Stage) -> Result<Option<Simulation>, StoreError> {
    if !client.test_client {
        return Ok(None);
    }
    match simulations.get(&client.client_id).await? {
        Some(simulation) if simulation.at == stage => {
            simulations.set(&client.client_id, None).await?;
            Ok(Some(simulation))
        }
        _ => Ok(None),
    }
}

/// [`take`] for the client `client_id` names, if it is registered.
pub async fn take_for(simulations: &dyn Simulations, clients: &dyn ClientRegistry, client_id: &str, stage: Stage) -> Result<Option<Simulation>, StoreError> {
    match clients.client(client_id).await? {
        Some(client) => take(simulations, &client, stage).await,
        None => Ok(None),
    }
}

/// The FHIR API's simulated failure for the token's client, if one is due.
pub async fn at_fhir(simulations: &dyn Simulations, clients: &dyn ClientRegistry, grant: &AccessGrant) -> Result<Option<FhirFailure>, StoreError> {
    Ok(take_for(simulations, clients, &grant.client_id, Stage::Fhir).await?.map(|s| s.fhir_failure()))
}

/// What the admin API answers about a client's simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAnswer {
    /// 200: the simulation now set (`None`: none).
    Current(Option<Simulation>),
    /// 404: no such client.
    NoClient,
    /// 400 `invalid_request`.
    Refused(String),
}

/// The admin API's request: `GET`, `PUT` (with the document) or `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Read,
    Set(String),
    Clear,
}

/// `GET|PUT|DELETE /admin/clients/{id}/simulate`: only a registered test client may have a
/// simulation; a document that is not one, or an error its stage cannot answer, is refused.
pub async fn admin(simulations: &dyn Simulations, clients: &dyn ClientRegistry, client_id: &str, request: AdminRequest) -> Result<AdminAnswer, StoreError> {
    let Some(client) = clients.client(client_id).await? else { return Ok(AdminAnswer::NoClient) };
    match request {
        AdminRequest::Read => Ok(AdminAnswer::Current(simulations.get(client_id).await?)),
        AdminRequest::Clear => {
            simulations.set(client_id, None).await?;
            Ok(AdminAnswer::Current(None))
        }
        AdminRequest::Set(body) => {
            if !client.test_client {
                return Ok(AdminAnswer::Refused(SimulationError::NotATestClient(client_id.to_owned()).to_string()));
            }
            match Simulation::parse(&body) {
                Ok(simulation) => {
                    simulations.set(client_id, Some(&simulation)).await?;
                    Ok(AdminAnswer::Current(Some(simulation)))
                }
                Err(e) => Ok(AdminAnswer::Refused(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKv;
    use futures::executor::block_on;

    #[test]
    fn a_simulation_names_an_error_its_stage_can_answer() {
        let ok = |json: &str| Simulation::parse(json).unwrap();
        assert_eq!(ok(r#"{"at":"authorize","error":"access_denied"}"#), Simulation { at: Stage::Authorize, error: "access_denied".into() });
        for (at, errors) in [("authorize", &AUTHORIZE_ERRORS[..]), ("token", &TOKEN_ERRORS[..]), ("fhir", &FHIR_ERRORS[..])] {
            for error in errors {
                ok(&format!(r#"{{"at":"{at}","error":"{error}"}}"#));
            }
        }
        for bad in [
            r#"{"at":"authorize","error":"invalid_grant"}"#,
            r#"{"at":"token","error":"access_denied"}"#,
            r#"{"at":"fhir","error":"invalid_client"}"#,
            r#"{"at":"userinfo","error":"server_error"}"#,
            r#"{"at":"token"}"#,
            r#"{"at":"token","error":"invalid_grant","extra":1}"#,
            "not json",
        ] {
            assert!(Simulation::parse(bad).is_err(), "{bad}");
        }
        let refused = Simulation::parse(r#"{"at":"token","error":"access_denied"}"#).unwrap_err().to_string();
        assert!(refused.contains("invalid_grant") && refused.contains("token"), "{refused}");
    }

    #[test]
    fn each_error_has_the_status_and_challenge_of_the_real_one() {
        let sim = |at, error: &str| Simulation { at, error: error.into() };
        let status = |s: Simulation| s.oauth_error().error.http_status();
        assert_eq!(status(sim(Stage::Token, "invalid_client")), 401);
        assert_eq!(status(sim(Stage::Token, "invalid_grant")), 400);
        assert_eq!(status(sim(Stage::Token, "invalid_scope")), 400);
        assert_eq!(status(sim(Stage::Token, "temporarily_unavailable")), 503);
        assert_eq!(sim(Stage::Authorize, "access_denied").oauth_error().error, OAuthErrorCode::AccessDenied);
        assert!(sim(Stage::Token, "invalid_grant").oauth_error().error_description.unwrap().contains("simulated"));

        let expired = sim(Stage::Fhir, "expired_token").fhir_failure().refusal("r").unwrap();
        assert_eq!((expired.status, expired.body.error.as_str()), (401, "invalid_token"));
        assert!(expired.challenge.starts_with("Bearer realm=\"r\", error=\"invalid_token\""), "{}", expired.challenge);
        let FhirFailure::Response(forbidden) = sim(Stage::Fhir, "insufficient_scope").fhir_failure() else { panic!() };
        assert_eq!(forbidden.status, 403);
        assert!(forbidden.insufficient_scope.is_some() && forbidden.body.contains("OperationOutcome"));
        let FhirFailure::Response(failed) = sim(Stage::Fhir, "server_error").fhir_failure() else { panic!() };
        assert_eq!(failed.status, 500);
        assert!(failed.body.contains("\"exception\""), "{}", failed.body);
    }

    #[test]
    fn taking_is_one_shot_per_stage_and_only_for_test_clients() {
        let kv = MemoryKv::default();
        let sims: &dyn Simulations = &kv;
        let json = serde_json::json!({"client_id": "t", "client_name": "T", "client_type": "public", "redirect_uris": ["https://t.example/cb"],
            "scope": "openid", "test_client": true});
        let test_client = crate::clients::ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap();
        let plain = Client { test_client: false, ..test_client.clone() };
        let token_error = Simulation { at: Stage::Token, error: "invalid_grant".into() };
        block_on(sims.set("t", Some(&token_error))).unwrap();
        assert_eq!(block_on(take(sims, &plain, Stage::Token)).unwrap(), None, "not a test client (any more): nothing");
        assert_eq!(block_on(take(sims, &test_client, Stage::Authorize)).unwrap(), None, "another stage: it stays");
        assert_eq!(block_on(take(sims, &test_client, Stage::Token)).unwrap(), Some(token_error));
        assert_eq!(block_on(take(sims, &test_client, Stage::Token)).unwrap(), None, "one shot");
        assert_eq!(block_on(KvStore::get(&kv, "simulate:t")).unwrap(), None);
    }
}
