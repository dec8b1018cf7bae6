//! Sandbox error simulation end to end, natively: the admin use case sets a test client's next
//! failure, and the authorization endpoint, the token endpoint and the FHIR API answer it
//! exactly as the real failure — once — without consuming a code, rotating a refresh token or
//! starting a grant.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::clients::ClientRegistration;
use platform::oauth::memory::MemoryAuthServer;
use platform::oauth::{ClientChallenge, TokenAnswer};
use platform::signin::{self, AuthorizationCall, Browser, Shown};
use platform::simulate::{self, AdminAnswer, AdminRequest, FhirFailure, Simulation, Stage};
use serde_json::json;
use smart_protocol::pkce::CodeVerifier;
use support::*;
use url::Url;

const SCOPE: &str = "openid fhirUser offline_access launch/patient patient/*.rs";

/// The flow tests' server, with a public test client.
fn sandbox() -> MemoryAuthServer {
    let server = server();
    let registration = json!({"client_id": "test-app", "client_name": "Test App", "client_type": "public", "redirect_uris": [REDIRECT],
        "scope": SCOPE, "test_client": true});
    server.clients.add(ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap());
    server
}

fn admin(server: &MemoryAuthServer, client_id: &str, request: AdminRequest) -> AdminAnswer {
    block_on(simulate::admin(&server.simulations, &server.clients, client_id, request)).unwrap()
}

fn set(server: &MemoryAuthServer, client_id: &str, at: &str, error: &str) -> AdminAnswer {
    admin(server, client_id, AdminRequest::Set(json!({"at": at, "error": error}).to_string()))
}

fn authorization_request(client_id: &str) -> AuthorizationCall {
    let params = [
        ("response_type", "code".to_owned()),
        ("client_id", client_id.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", SCOPE.to_owned()),
        ("state", "st-9".to_owned()),
        ("aud", "https://ehr.example/fhir".to_owned()),
        ("code_challenge", CodeVerifier::parse(VERIFIER).unwrap().s256_challenge()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    let params = params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    AuthorizationCall { params: Ok(params), browser: Browser { ip: "192.0.2.9".into(), ..Browser::default() } }
}

fn test_exchange(code: &str) -> platform::oauth::FormPost {
    form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER), ("client_id", "test-app")])
}

fn test_refresh(token: &str) -> platform::oauth::FormPost {
    form(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", "test-app")])
}

#[test]
fn only_a_registered_test_client_may_have_a_simulation() {
    let server = sandbox();
    let AdminAnswer::Refused(why) = set(&server, "app", "token", "invalid_grant") else { panic!("a client not marked test_client") };
    assert!(why.contains("test_client"), "{why}");
    assert_eq!(set(&server, "nobody", "token", "invalid_grant"), AdminAnswer::NoClient);
    let AdminAnswer::Refused(why) = set(&server, "test-app", "token", "access_denied") else { panic!("an error the stage cannot answer") };
    assert!(why.contains("invalid_grant"), "the allowed errors are listed: {why}");
    assert!(matches!(admin(&server, "test-app", AdminRequest::Set("{\"at\":\"token\"}".into())), AdminAnswer::Refused(_)));

    let simulation = Simulation { at: Stage::Token, error: "invalid_grant".into() };
    assert_eq!(set(&server, "test-app", "token", "invalid_grant"), AdminAnswer::Current(Some(simulation.clone())));
    assert_eq!(admin(&server, "test-app", AdminRequest::Read), AdminAnswer::Current(Some(simulation)));
    assert_eq!(admin(&server, "test-app", AdminRequest::Clear), AdminAnswer::Current(None));
    assert_eq!(admin(&server, "test-app", AdminRequest::Read), AdminAnswer::Current(None));
}

#[test]
fn authorize_redirects_the_simulated_error_once_and_starts_no_grant() {
    let server = sandbox();
    set(&server, "test-app", "authorize", "access_denied");
    let answer = block_on(signin::authorize(&server.signin_ports(), authorization_request("test-app"))).unwrap();
    let Shown::Redirect(location) = &answer.shown else { panic!("{answer:?}") };
    let query: Vec<(String, String)> = Url::parse(location).unwrap().query_pairs().into_owned().collect();
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!((get("error"), get("state"), get("iss")), (Some("access_denied"), Some("st-9"), Some(BASE)));
    assert!(get("error_description").unwrap().contains("simulated"));
    assert!(answer.cookies.is_empty(), "no browser binding: no grant was started");

    // One shot: the next request goes to the sign-in.
    let answer = block_on(signin::authorize(&server.signin_ports(), authorization_request("test-app"))).unwrap();
    let Shown::Redirect(location) = &answer.shown else { panic!() };
    assert!(location.starts_with("/auth/sign-in?interaction="), "{location}");
    // A simulation for the token endpoint leaves the authorization endpoint alone, and a
    // client that is not a test client never meets one (a stale record is ignored).
    set(&server, "test-app", "token", "invalid_grant");
    let Shown::Redirect(location) = block_on(signin::authorize(&server.signin_ports(), authorization_request("test-app"))).unwrap().shown else { panic!() };
    assert!(location.starts_with("/auth/sign-in"), "{location}");
    block_on(simulate::store(&server.simulations, "app", Some(&Simulation { at: Stage::Authorize, error: "access_denied".into() }))).unwrap();
    let Shown::Redirect(location) = block_on(signin::authorize(&server.signin_ports(), authorization_request("app"))).unwrap().shown else { panic!() };
    assert!(location.starts_with("/auth/sign-in"), "{location}");
}

#[test]
fn the_token_endpoint_answers_each_simulated_error_and_consumes_nothing() {
    let server = sandbox();
    let code = authorize(&server, "test-app", SCOPE);
    for (error, status, challenge) in [
        ("invalid_client", 401, Some(ClientChallenge::Bearer)),
        ("invalid_grant", 400, None),
        ("invalid_scope", 400, None),
        ("temporarily_unavailable", 503, None),
    ] {
        set(&server, "test-app", "token", error);
        let TokenAnswer::Refused { error: refused, challenge: got } = answer(&server, &test_exchange(&code)) else { panic!("{error}: tokens") };
        assert_eq!((refused.error.as_str(), refused.status(), got), (error, status, challenge), "{error}");
    }
    // The code was never consumed: it still exchanges, once.
    let (issued, _) = tokens(&server, &test_exchange(&code));
    let refresh_token = issued.refresh_token.expect("offline_access");

    // A simulated refused refresh rotates nothing: the same refresh token works afterwards
    // (a rotated one would now be a reuse and revoke the grant).
    set(&server, "test-app", "token", "invalid_grant");
    let (error, _, _) = refused(&server, &test_refresh(&refresh_token));
    assert_eq!(error, "invalid_grant");
    let (rotated, _) = tokens(&server, &test_refresh(&refresh_token));
    assert!(rotated.refresh_token.is_some_and(|next| next != refresh_token));
    assert!(bearer(&server, &rotated.access_token).is_ok());
    // One shot: nothing left.
    assert_eq!(admin(&server, "test-app", AdminRequest::Read), AdminAnswer::Current(None));
}

#[test]
fn the_fhir_api_answers_each_simulated_error_once() {
    let server = sandbox();
    let code = authorize(&server, "test-app", SCOPE);
    let (issued, _) = tokens(&server, &test_exchange(&code));
    let grant = bearer(&server, &issued.access_token).unwrap();
    let at_fhir = || block_on(simulate::at_fhir(&server.simulations, &server.clients, &grant)).unwrap();
    assert!(at_fhir().is_none(), "nothing set");

    set(&server, "test-app", "fhir", "expired_token");
    let failure = at_fhir().expect("the simulated failure");
    let refusal = failure.refusal("smart-edge").expect("a bearer refusal");
    assert_eq!((refusal.status, refusal.body.error.as_str()), (401, "invalid_token"));
    assert!(refusal.challenge.starts_with("Bearer realm=\"smart-edge\", error=\"invalid_token\""), "{}", refusal.challenge);
    assert!(at_fhir().is_none(), "one shot");

    set(&server, "test-app", "fhir", "insufficient_scope");
    let Some(FhirFailure::Response(forbidden)) = at_fhir() else { panic!() };
    assert_eq!(forbidden.status, 403);
    assert!(forbidden.insufficient_scope.is_some());
    let outcome: serde_json::Value = serde_json::from_str(&forbidden.body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    set(&server, "test-app", "fhir", "server_error");
    let Some(FhirFailure::Response(failed)) = at_fhir() else { panic!() };
    assert_eq!(failed.status, 500);
    let outcome: serde_json::Value = serde_json::from_str(&failed.body).unwrap();
    assert_eq!(outcome["issue"][0]["code"], "exception");
    // The token itself was never touched.
    assert!(bearer(&server, &issued.access_token).is_ok());
}
