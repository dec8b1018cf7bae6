//! Dynamic client registration (RFC 7591) and client configuration (RFC 7592) end to end,
//! natively, over the in-memory adapters: who may register what, the refusals with their RFC
//! 7591 §3.2.2 codes, a registered client completing the flows of its kind, and reading,
//! replacing and deleting a registration with its registration access token.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::clients::{hash_secret, ClientType, ConsentPolicy};
use platform::oauth::memory::MemoryAuthServer;
use platform::ports::ClientRegistry;
use platform::registration::{self, RegistrationAnswer};
use serde_json::{json, Value};
use smart_protocol::registration::ClientInformation;
use support::*;

const ADMIN: &str = "admin-token-for-tests-0123456789";
const INITIAL: &str = "initial-access-token-0123456789";

fn registration_server(open: bool) -> MemoryAuthServer {
    let server = server();
    {
        let mut settings = server.settings.0.borrow_mut();
        settings.open_registration = open;
        settings.registration_token_hash = Some(hash_secret(INITIAL));
    }
    server
}

fn post(server: &MemoryAuthServer, token: Option<&str>, body: Value) -> RegistrationAnswer {
    let authorization = token.map(|t| format!("Bearer {t}"));
    block_on(registration::register(&server.registration_ports(Some(ADMIN)), authorization.as_deref(), Ok(body.to_string()))).unwrap()
}

fn registered(answer: RegistrationAnswer) -> ClientInformation {
    match answer {
        RegistrationAnswer::Client { status: 201, information } => *information,
        other => panic!("{other:?}"),
    }
}

/// The status, `error` and challenge of a refusal.
fn refusal(answer: RegistrationAnswer) -> (u16, String, Option<String>) {
    match answer {
        RegistrationAnswer::Refused { status, error, challenge } => (status, error.error.as_str().to_owned(), challenge),
        other => panic!("{other:?}"),
    }
}

fn public_metadata() -> Value {
    json!({"client_name": "Registered App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "scope": "openid fhirUser launch/patient offline_access patient/*.rs"})
}

fn exchange_as(code: &str, client_id: &str) -> platform::oauth::FormPost {
    form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER), ("client_id", client_id)])
}

#[test]
fn open_registration_of_a_public_client_then_the_code_flow() {
    let server = registration_server(true);
    let info = registered(post(&server, None, public_metadata()));
    assert_eq!(info.token_endpoint_auth_method, "none");
    assert_eq!(info.client_secret, None);
    assert_eq!(info.client_secret_expires_at, None);
    assert_eq!(info.client_id_issued_at, START);
    assert_eq!(info.registration_client_uri, format!("{BASE}/auth/register/{}", info.client_id));
    assert_eq!(info.grant_types, vec!["authorization_code", "refresh_token"]);
    let stored = block_on(server.clients.client(&info.client_id)).unwrap().unwrap();
    assert_eq!(stored.client_type, ClientType::Public);
    assert!(!serde_json::to_string(&stored).unwrap().contains(&info.registration_access_token), "the registration access token is stored hashed");

    let code = authorize(&server, &info.client_id, "openid fhirUser launch/patient offline_access patient/*.rs");
    let (response, _) = tokens(&server, &exchange_as(&code, &info.client_id));
    assert!(response.refresh_token.is_some());
    assert_eq!(claims(&response.access_token)["client_id"], info.client_id.as_str());
}

#[test]
fn without_open_registration_a_public_client_needs_an_initial_access_token() {
    let server = registration_server(false);
    let (status, error, challenge) = refusal(post(&server, None, public_metadata()));
    assert_eq!((status, error.as_str()), (401, "invalid_token"));
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"smart-edge registration\""), "no error attribute without a token (RFC 6750 §3.1)");
    registered(post(&server, Some(ADMIN), public_metadata()));
    registered(post(&server, Some(INITIAL), public_metadata()));
}

#[test]
fn a_bad_initial_access_token_is_refused_even_where_none_is_needed() {
    let server = registration_server(true);
    let (status, error, challenge) = refusal(post(&server, Some("not-the-token"), public_metadata()));
    assert_eq!((status, error.as_str()), (401, "invalid_token"));
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let server = registration_server(true);
    server.settings.0.borrow_mut().registration_token_hash = None;
    assert_eq!(refusal(post(&server, Some(INITIAL), public_metadata())).1, "invalid_token", "the hash setting is the only other token");
}

#[test]
fn a_confidential_client_needs_an_initial_access_token_and_gets_a_secret_once() {
    let server = registration_server(true);
    let mut metadata = public_metadata();
    metadata["token_endpoint_auth_method"] = "client_secret_basic".into();
    assert_eq!(refusal(post(&server, None, metadata.clone())).0, 401);

    let info = registered(post(&server, Some(INITIAL), metadata));
    let secret = info.client_secret.clone().expect("a client_secret for client_secret_basic");
    assert_eq!(info.client_secret_expires_at, Some(0));
    let stored = block_on(server.clients.client(&info.client_id)).unwrap().unwrap();
    assert_eq!(stored.client_type, ClientType::ConfidentialSymmetric);
    assert!(!serde_json::to_string(&stored).unwrap().contains(&secret), "the secret is stored hashed");

    let code = authorize(&server, &info.client_id, "openid patient/*.rs");
    let call = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    tokens(&server, &basic(call, &info.client_id, &secret));
    let code = authorize(&server, &info.client_id, "openid patient/*.rs");
    let call = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    assert_eq!(refused(&server, &basic(call, &info.client_id, &"x".repeat(43))).0, "invalid_client");
}

#[test]
fn a_backend_client_registers_with_its_keys_and_system_scopes_only() {
    let server = registration_server(false);
    let key = service_key("reg-1");
    let metadata = json!({"client_name": "Bulk", "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
        "jwks": {"keys": [serde_json::to_value(key.to_public()).unwrap()]}, "scope": "system/Patient.rs"});
    assert_eq!(refusal(post(&server, None, metadata.clone())).0, 401);
    let mut patient_scoped = metadata.clone();
    patient_scoped["scope"] = "patient/*.rs".into();
    assert_eq!(refusal(post(&server, Some(ADMIN), patient_scoped)).1, "invalid_client_metadata");

    let info = registered(post(&server, Some(ADMIN), metadata));
    assert_eq!(info.response_types, Vec::<String>::new());
    let stored = block_on(server.clients.client(&info.client_id)).unwrap().unwrap();
    assert_eq!(stored.client_type, ClientType::Backend);
    let id = info.client_id.as_str();
    let signed = assertion(&key, json!({"iss": id, "sub": id, "aud": TOKEN_URL, "exp": START + 240, "jti": "j-1"}));
    let (response, _) = tokens(&server, &backend_call(&signed, None));
    assert_eq!(response.scope.as_deref(), Some("system/Patient.rs"));
}

#[test]
fn refusals_carry_the_rfc_7591_codes() {
    let server = registration_server(true);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"redirect_uris": ["http://app.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://app.example/cb#x"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (json!({"redirect_uris": "https://app.example/cb"}), "invalid_client_metadata"),
        (json!({"grant_types": ["implicit"]}), "invalid_client_metadata"),
        (json!({"response_types": ["token"]}), "invalid_client_metadata"),
        (json!({"token_endpoint_auth_method": "tls_client_auth"}), "invalid_client_metadata"),
        (json!({"scope": "openid system/*.rs"}), "invalid_client_metadata"),
        (json!({"scope": "patient/Observation.rs?foo=bar"}), "invalid_client_metadata"),
        (json!({"scope": "patient/Observation.sr"}), "invalid_client_metadata"),
        (json!({"logo_uri": "javascript:alert(1)"}), "invalid_client_metadata"),
        (json!({"jwks_uri": "https://app.example/jwks"}), "invalid_client_metadata"),
        (json!({"client_name": ""}), "invalid_client_metadata"),
        (json!({"software_statement": "not a jwt"}), "invalid_software_statement"),
        (json!({"software_statement": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"}), "unapproved_software_statement"),
    ];
    for (patch, code) in cases {
        let mut metadata = public_metadata();
        for (k, v) in patch.as_object().unwrap() {
            metadata[k] = v.clone();
        }
        let (status, error, challenge) = refusal(post(&server, None, metadata));
        assert_eq!((status, error.as_str(), challenge), (400, code, None), "{patch}");
    }
    let not_json = block_on(registration::register(&server.registration_ports(None), None, Ok("{".into()))).unwrap();
    assert_eq!(refusal(not_json).1, "invalid_client_metadata");
    let array = block_on(registration::register(&server.registration_ports(None), None, Ok("[]".into()))).unwrap();
    assert_eq!(refusal(array).1, "invalid_client_metadata");
}

#[test]
fn a_registered_client_reaches_no_more_than_an_admin_registered_one() {
    let server = registration_server(true);
    let mut metadata = public_metadata();
    // Admin-only fields are not client metadata: ignored (RFC 7591 §2), not obeyed.
    metadata["consent"] = "pre-approved".into();
    metadata["resource_server"] = true.into();
    metadata["access_token_lifetime"] = 86_400.into();
    metadata["client_id"] = "app".into();
    let info = registered(post(&server, None, metadata));
    assert_ne!(info.client_id, "app", "the server chooses the client_id");
    let stored = block_on(server.clients.client(&info.client_id)).unwrap().unwrap();
    assert_eq!((stored.consent, stored.resource_server, stored.access_token_lifetime), (ConsentPolicy::Ask, false, 3600));
    assert_eq!(block_on(server.clients.client("app")).unwrap().unwrap().client_name, "App", "the admin's client is untouched");
    // Without a scope, the default read-only set.
    let mut bare = public_metadata();
    bare.as_object_mut().unwrap().remove("scope");
    assert_eq!(registered(post(&server, None, bare)).scope, registration::DEFAULT_SCOPE);
}

fn manage(server: &MemoryAuthServer, method: &str, client_id: &str, token: Option<&str>, body: Option<Value>) -> RegistrationAnswer {
    let ports = server.registration_ports(Some(ADMIN));
    let authorization = token.map(|t| format!("Bearer {t}"));
    let authorization = authorization.as_deref();
    match method {
        "GET" => block_on(registration::read_client(&ports, client_id, authorization)),
        "DELETE" => block_on(registration::delete_client(&ports, client_id, authorization)),
        _ => block_on(registration::update_client(&ports, client_id, authorization, Ok(body.unwrap().to_string()))),
    }
    .unwrap()
}

#[test]
fn rfc_7592_read_replace_delete_with_the_registration_access_token() {
    let server = registration_server(true);
    let mut metadata = public_metadata();
    metadata["token_endpoint_auth_method"] = "client_secret_post".into();
    let info = registered(post(&server, Some(INITIAL), metadata.clone()));
    let (id, token, secret) = (info.client_id.as_str(), info.registration_access_token.as_str(), info.client_secret.clone().unwrap());

    let RegistrationAnswer::Client { status: 200, information: read } = manage(&server, "GET", id, Some(token), None) else { panic!() };
    assert_eq!((read.client_secret.as_deref(), read.client_secret_expires_at), (None, Some(0)), "the secret is never shown again");
    assert_eq!(read.registration_access_token, token);
    assert_eq!(read.token_endpoint_auth_method, "client_secret_post");

    for (bad, who) in [(Some("wrong"), id), (None, id), (Some(token), "app"), (Some(token), "no-such-client")] {
        let (status, error, _) = refusal(manage(&server, "GET", who, bad, None));
        assert_eq!((status, error.as_str()), (401, "invalid_token"), "{bad:?} {who}");
    }
    let other = registered(post(&server, None, public_metadata()));
    assert_eq!(refusal(manage(&server, "GET", id, Some(&other.registration_access_token), None)).1, "invalid_token", "another client's token");

    let mut update = metadata.clone();
    update["client_id"] = id.into();
    update["redirect_uris"] = json!(["https://app.example/cb", "https://app.example/other"]);
    update["client_name"] = "Renamed".into();
    let RegistrationAnswer::Client { status: 200, information: updated } = manage(&server, "PUT", id, Some(token), Some(update.clone())) else { panic!() };
    assert_eq!(updated.client_name, "Renamed");
    assert_eq!(updated.redirect_uris.len(), 2);
    let stored = block_on(server.clients.client(id)).unwrap().unwrap();
    assert!(stored.secret_matches(&secret), "the secret stays");
    assert!(stored.has_redirect_uri("https://app.example/other"));

    let patched = |patch: Value| {
        let mut body = update.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        refusal(manage(&server, "PUT", id, Some(token), Some(body)))
    };
    assert_eq!(patched(json!({"client_id": "app"})).1, "invalid_client_metadata");
    assert_eq!(patched(json!({"client_secret": "not-the-secret"})).1, "invalid_client_metadata");
    assert_eq!(patched(json!({"token_endpoint_auth_method": "none"})).1, "invalid_client_metadata", "the kind cannot change");
    assert_eq!(patched(json!({"redirect_uris": ["http://evil.example/cb"]})).1, "invalid_redirect_uri");
    assert_eq!(patched(json!({"scope": "system/*.rs"})).1, "invalid_client_metadata");
    let mut with_secret = update.clone();
    with_secret["client_secret"] = secret.clone().into();
    assert!(matches!(manage(&server, "PUT", id, Some(token), Some(with_secret)), RegistrationAnswer::Client { status: 200, .. }));

    // An openly registered public client cannot turn itself confidential.
    let mut upgrade = public_metadata();
    upgrade["client_id"] = other.client_id.clone().into();
    upgrade["token_endpoint_auth_method"] = "client_secret_basic".into();
    assert_eq!(refusal(manage(&server, "PUT", &other.client_id, Some(&other.registration_access_token), Some(upgrade))).1, "invalid_client_metadata");

    let code = authorize(&server, id, "openid patient/*.rs");
    let call = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER), ("client_id", id)]);
    let (_, _) = tokens(&server, &form_with_secret(call.clone(), &secret));
    assert!(matches!(manage(&server, "DELETE", id, Some(token), None), RegistrationAnswer::Deleted));
    assert_eq!(refusal(manage(&server, "GET", id, Some(token), None)).0, 401, "gone: 401 (RFC 7592 §2.1)");
    assert!(block_on(server.clients.client(id)).unwrap().is_none());
    let code = authorize(&server, id, "openid patient/*.rs");
    let call = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER), ("client_id", id)]);
    assert_eq!(refused(&server, &form_with_secret(call, &secret)).0, "invalid_client");
}

/// `client_secret_post`: the secret in the form.
fn form_with_secret(call: platform::oauth::FormPost, secret: &str) -> platform::oauth::FormPost {
    let mut pairs = call.form.unwrap();
    pairs.push(("client_secret".into(), secret.into()));
    platform::oauth::FormPost { form: Ok(pairs), authorization: None }
}

#[test]
fn an_admin_registered_client_has_no_registration_access_token() {
    let server = registration_server(true);
    let (status, error, _) = refusal(manage(&server, "GET", "app", Some("anything"), None));
    assert_eq!((status, error.as_str()), (401, "invalid_token"));
}

/// The per-client limit as the edge would answer it: every client id asked is kept, and the
/// ones in `over` are over their limit.
struct Limits {
    asked: std::cell::RefCell<Vec<String>>,
    over: Vec<String>,
}

#[async_trait::async_trait(?Send)]
impl platform::ports::ClientLimits for Limits {
    async fn over_limit(&self, client_id: &str) -> Result<Option<u32>, platform::ports::StoreError> {
        self.asked.borrow_mut().push(client_id.to_owned());
        Ok(self.over.iter().any(|c| c == client_id).then_some(60))
    }
}

#[test]
fn the_client_configuration_limit_counts_only_a_caller_with_the_registration_access_token() {
    // Review finding (M2, registration half): counted on the client id in the path, a stranger
    // could use up a client's limit and keep it from managing its registration.
    let server = registration_server(true);
    let info = registered(post(&server, None, public_metadata()));
    let limits = Limits { asked: Default::default(), over: vec![info.client_id.clone()] };
    let mut ports = server.registration_ports(Some(ADMIN));
    ports.client_limits = &limits;
    let read = |token: Option<&str>| {
        let authorization = token.map(|t| format!("Bearer {t}"));
        block_on(registration::read_client(&ports, &info.client_id, authorization.as_deref())).unwrap()
    };
    // Strangers: no token, a wrong one, another client's: 401, nothing counted.
    let other = registered(post(&server, None, public_metadata()));
    for token in [None, Some("wrong"), Some(other.registration_access_token.as_str())] {
        assert_eq!(refusal(read(token)).0, 401, "{token:?}");
    }
    assert!(limits.asked.borrow().is_empty());
    // The client itself, over its limit: 429 after the token was checked, for every method.
    assert!(matches!(read(Some(&info.registration_access_token)), RegistrationAnswer::Limited { retry_after: 60 }));
    let authorization = format!("Bearer {}", info.registration_access_token);
    let deleted = block_on(registration::delete_client(&ports, &info.client_id, Some(&authorization))).unwrap();
    assert!(matches!(deleted, RegistrationAnswer::Limited { .. }), "{deleted:?}");
    assert!(block_on(server.clients.client(&info.client_id)).unwrap().is_some(), "nothing deleted");
    assert_eq!(*limits.asked.borrow(), vec![info.client_id.clone(), info.client_id.clone()]);
    // Another client under its limit is served.
    let authorization = format!("Bearer {}", other.registration_access_token);
    assert!(matches!(
        block_on(registration::read_client(&ports, &other.client_id, Some(&authorization))).unwrap(),
        RegistrationAnswer::Client { status: 200, .. }
    ));
}
