//! The EHR launch API's use case natively (`platform::launch::start` over the in-memory
//! adapters): what it refuses, in order, and that the launch it makes names the app, the
//! FHIR base and a value the authorization endpoint accepts for that client only.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::launch::{self, LaunchRequest};
use platform::memory::{Pbkdf2Hasher, SeededRandom};
use platform::oauth::memory::MemoryAuthServer;
use platform::users::UserRegistration;
use serde_json::json;
use support::*;
use url::Url;

fn launch_server() -> MemoryAuthServer {
    let server = server();
    let registration = UserRegistration {
        username: "alice".into(),
        display_name: "Alice".into(),
        fhir_user: "Practitioner/pr-1".into(),
        password: "a long enough password".into(),
    };
    server.users.add(block_on(registration.into_user(&Pbkdf2Hasher, &SeededRandom::default())).unwrap());
    let registration = json!({"client_id": "ehr-app", "client_name": "EHR App", "client_type": "public", "redirect_uris": [REDIRECT],
        "launch_uri": "https://app.example/launch", "scope": "launch openid fhirUser patient/*.rs"});
    server.clients.add(platform::clients::ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap());
    server
}

fn start(server: &MemoryAuthServer, request: serde_json::Value) -> Result<launch::LaunchCreated, String> {
    let request = LaunchRequest::parse(&request.to_string()).unwrap();
    block_on(launch::start(&server.ports(), &request)).unwrap()
}

#[test]
fn a_launch_names_the_app_the_fhir_base_and_a_value_only_that_client_can_use() {
    let server = launch_server();
    let created = start(&server, json!({"client_id": "ehr-app", "user": "alice", "patient": "p-1"})).unwrap();
    let url = Url::parse(&created.launch_url).unwrap();
    assert_eq!((url.host_str(), url.path()), (Some("app.example"), "/launch"));
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(query, vec![("iss".into(), format!("{BASE}/fhir")), ("launch".into(), created.launch.clone())]);
    assert_eq!(created.expires_in, launch::LAUNCH_LIFETIME_SECS);

    let ring = block_on(platform::ports::SigningKeys::key_ring(&server.keys)).unwrap();
    let now = platform::ports::Clock::now(server.clock.as_ref());
    let resolved = block_on(launch::resolve(&created.launch, "ehr-app", &server.urls, &ring, &platform::memory::FakeVerifier, now)).unwrap();
    assert_eq!(resolved.context.patient.as_deref(), Some("p-1"));
    assert_eq!(resolved.user.as_deref(), Some("alice"));
    assert!(block_on(launch::resolve(&created.launch, "app", &server.urls, &ring, &platform::memory::FakeVerifier, now)).is_err(), "another client's launch");
}

#[test]
fn unknown_clients_users_and_clients_that_cannot_be_launched_are_refused_in_that_order() {
    let server = launch_server();
    assert_eq!(start(&server, json!({"client_id": "nobody", "user": "nobody", "patient": "p-1"})).unwrap_err(), "no such client_id");
    assert_eq!(start(&server, json!({"client_id": "ehr-app", "user": "nobody", "patient": "p-1"})).unwrap_err(), "no such user");
    assert_eq!(start(&server, json!({"client_id": "app", "patient": "p-1"})).unwrap_err(), "the client has no launch_uri registered");
    assert_eq!(start(&server, json!({"client_id": "svc", "patient": "p-1"})).unwrap_err(), "the client is a backend service and cannot be launched");
}
