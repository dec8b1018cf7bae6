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
    let url = Url::parse(created.launch_url.as_deref().unwrap()).unwrap();
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
fn unknown_clients_users_and_backend_services_are_refused_in_that_order() {
    let server = launch_server();
    assert_eq!(start(&server, json!({"client_id": "nobody", "user": "nobody", "patient": "p-1"})).unwrap_err(), "no such client_id");
    assert_eq!(start(&server, json!({"client_id": "ehr-app", "user": "nobody", "patient": "p-1"})).unwrap_err(), "no such user");
    let without_launch_uri = start(&server, json!({"client_id": "app", "patient": "p-1"})).unwrap();
    assert_eq!(without_launch_uri.launch_url, None, "the EHR may know the app's URL: the launch value alone");
    assert_eq!(start(&server, json!({"client_id": "svc", "patient": "p-1"})).unwrap_err(), "the client is a backend service and cannot be launched");
}

/// A grant record as the server stored it before the launch context moved to smart-protocol
/// (its `fhirContext` identifier was any JSON value, written by serde_json with sorted keys).
const OLD_RECORD: &str = r#"{"state":"active","grant":{"client_id":"ehr-app","redirect_uri":"https://app.example/cb","code_challenge":"c","scope":"launch openid patient/*.rs","nonce":null,"user":{"username":"alice","display_name":"Alice","fhir_user":"Practitioner/pr-1","auth_time":1,"session_id":"s"},"context":{"patient":"p-1","encounter":"e-1","fhirContext":[{"reference":"Observation/o-1","role":"launch"},{"identifier":{"assigner":{"display":"General Hospital"},"period":{"start":"2020-01-01"},"system":"urn:mrn","type":{"coding":[{"code":"MR","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}],"text":"MRN"},"use":"official","value":"123"},"type":"Patient"}],"intent":"reconcile-medications","need_patient_banner":false,"smart_style_url":"https://ehr.example/style.json","tenant":"t-1"},"authorized_at":2,"public_client":true},"issued_at":3,"refresh":null,"code_hash":"h"}"#;

#[test]
fn a_grant_record_stored_before_reads_and_writes_back_byte_for_byte() {
    let record: platform::grants::GrantRecord = serde_json::from_str(OLD_RECORD).unwrap();
    assert_eq!(serde_json::to_string(&record).unwrap(), OLD_RECORD);
    let platform::grants::GrantRecord::Active { grant, .. } = &record else { panic!("{record:?}") };
    let identifier = grant.context.fhir_context[1].identifier.as_ref().unwrap();
    assert_eq!((identifier.system.as_deref(), identifier.value.as_deref()), (Some("urn:mrn"), Some("123")));
    assert_eq!(identifier.type_.as_ref().unwrap().coding[0].code.as_deref(), Some("MR"));
}

#[test]
fn a_stored_identifier_of_another_shape_does_not_fail_its_grant_record() {
    // Before, the launch API stored any JSON value as an identifier: unknown members and
    // wrongly typed ones are read as absent, a value that is no object as no identifier.
    let odd = OLD_RECORD
        .replace(r#""system":"urn:mrn""#, r#""system":7,"extension":[{"url":"x"}],"id":"i1""#)
        .replace(r#"{"reference":"Observation/o-1","role":"launch"}"#, r#"{"identifier":"urn:mrn|9","role":"launch"}"#);
    let record: platform::grants::GrantRecord = serde_json::from_str(&odd).unwrap();
    let platform::grants::GrantRecord::Active { grant, .. } = &record else { panic!("{record:?}") };
    // The first item's identifier reads as absent, so it names nothing and is dropped (an app
    // is never shown an item SMART says must name one thing); the second keeps its value.
    let items = &grant.context.fhir_context;
    assert_eq!(items.len(), 1);
    let identifier = items[0].identifier.as_ref().unwrap();
    assert_eq!((identifier.system.as_deref(), identifier.value.as_deref()), (None, Some("123")));
    assert_eq!(grant.context.tenant.as_deref(), Some("t-1"));
    // What is read is written (and so shown in the token response) without the odd members.
    let written = serde_json::to_value(&grant.context).unwrap();
    assert_eq!(written["fhirContext"][0]["identifier"].get("extension"), None);
}

#[test]
fn the_launch_api_takes_a_full_identifier_and_refuses_members_it_would_drop() {
    let parse = |context: serde_json::Value| {
        let mut request = json!({"client_id": "ehr-app", "patient": "p-1"});
        request["fhirContext"] = context;
        LaunchRequest::parse(&request.to_string())
    };
    let full = json!([{"identifier": {"use": "official", "type": {"coding": [{"system": "urn:t", "version": "1", "code": "MR", "display": "MRN", "userSelected": true}], "text": "MRN"},
        "system": "urn:mrn", "value": "123", "period": {"start": "2020", "end": "2030"},
        "assigner": {"reference": "Organization/o", "type": "Organization", "identifier": {"system": "urn:org", "value": "1"}, "display": "Org"}}, "type": "Patient"}]);
    let request = parse(full.clone()).unwrap();
    assert_eq!(serde_json::to_value(&request.context.fhir_context).unwrap(), full);
    // null members are absent, as before.
    assert!(parse(json!([{"reference": "Patient/p-1", "canonical": null, "identifier": null}])).is_ok());
    assert!(parse(json!([{"identifier": {"system": "urn:s", "value": null}}])).is_ok());
    for odd in [
        json!([{"reference": "Patient/p-1", "surprise": 1}]),
        json!([{"identifier": {"system": "urn:s", "extension": []}}]),
        json!([{"identifier": {"system": 7}}]),
        json!([{"identifier": {"type": {"coding": [{"code": 1}]}}}]),
        json!([{"identifier": {"assigner": {"identifier": {"value": "1", "x": 2}}}}]),
    ] {
        assert_eq!(parse(odd.clone()).unwrap_err(), launch::LaunchError::BadFhirContextMember, "{odd}");
    }
    // An identifier that is no object leaves the item naming nothing.
    assert_eq!(parse(json!([{"identifier": "urn:s|v"}])).unwrap_err(), launch::LaunchError::BadFhirContext);
    assert!(matches!(parse(json!([7])).unwrap_err(), launch::LaunchError::Invalid(_)));
    assert!(matches!(LaunchRequest::parse(r#"{"client_id":"ehr-app","surprise":1}"#).unwrap_err(), launch::LaunchError::Invalid(_)));
}
