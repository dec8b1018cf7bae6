//! Introspection (RFC 7662), revocation (RFC 7009) and userinfo (OpenID Connect Core §5.3)
//! end to end, natively, over the in-memory adapters: who may ask, what they learn, and that
//! a revocation reaches every token of the grant (the refresh chain, the resource server,
//! introspection, userinfo).

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::clients::ClientRegistration;
use platform::guard::BearerError;
use platform::oauth::introspection::{self, Answer};
use platform::oauth::userinfo::{self, UserinfoAnswer};
use platform::oauth::{ClientChallenge, FormPost, FormProblem, TokenAnswer};
use platform::settings::IntrospectionStyle;
use platform::users::User;
use serde_json::{json, Value};
use smart_protocol::jose::Jwks;
use support::*;

const SECRET_OTHER: &str = "oooooooooooooooooooooooooooooooooooooooo";
const SECRET_RS: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

/// The shared server, plus another confidential client and a resource server.
fn server_with_callers() -> platform::oauth::memory::MemoryAuthServer {
    let server = server();
    for (id, secret, resource_server) in [("other", SECRET_OTHER, false), ("rs", SECRET_RS, true)] {
        let json = json!({"client_id": id, "client_name": id, "client_type": "confidential-symmetric", "redirect_uris": [REDIRECT],
            "scope": "openid", "client_secrets": [secret], "resource_server": resource_server});
        server.clients.add(ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap());
    }
    server.users.add(User { username: "alice".into(), display_name: "Alice Doe".into(), fhir_user: "Practitioner/pr-1".into(), password_hash: String::new() });
    server
}

fn web_secret() -> String {
    "s".repeat(40)
}

/// Tokens for the confidential web app, through the code flow.
fn web_tokens(server: &platform::oauth::memory::MemoryAuthServer, scope: &str) -> smart_protocol::token::TokenResponse {
    let code = authorize(server, "web", scope);
    let exchange =
        basic(form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]), "web", &web_secret());
    tokens(server, &exchange).0
}

fn introspect(server: &platform::oauth::memory::MemoryAuthServer, post: &FormPost) -> Answer {
    block_on(introspection::introspect(&server.ports(), post)).unwrap()
}

fn revoke(server: &platform::oauth::memory::MemoryAuthServer, post: &FormPost) -> Answer {
    block_on(introspection::revoke(&server.ports(), post)).unwrap()
}

/// The body of a 200 JSON answer.
fn json_body(answer: Answer) -> Value {
    match answer {
        Answer::Json { status: 200, body } => body,
        other => panic!("{other:?}"),
    }
}

fn as_caller(id: &str, secret: &str, token: &str) -> FormPost {
    basic(form(&[("token", token)]), id, secret)
}

#[test]
fn introspection_describes_a_token_to_its_client_or_a_resource_server_only() {
    let server = server_with_callers();
    let issued = web_tokens(&server, "openid fhirUser offline_access launch/patient patient/*.rs");
    let access = json_body(introspect(&server, &as_caller("web", &web_secret(), &issued.access_token)));
    assert_eq!((access["active"].clone(), access["token_type"].clone()), (json!(true), json!("Bearer")));
    assert_eq!((access["client_id"].clone(), access["sub"].clone(), access["patient"].clone()), (json!("web"), json!("alice"), json!("p-1")));
    assert_eq!((access["iss"].clone(), access["aud"].clone()), (json!(BASE), json!("https://ehr.example/fhir")));
    assert_eq!(access["exp"].as_i64(), Some(START + 3600));
    let refresh = json_body(introspect(&server, &as_caller("rs", SECRET_RS, issued.refresh_token.as_deref().unwrap())));
    assert_eq!(
        (refresh["token_type"].clone(), refresh["fhirUser"].clone(), refresh["patient"].clone()),
        (json!("refresh_token"), json!("https://ehr.example/fhir/Practitioner/pr-1"), json!("p-1"))
    );
    // SMART 2.2 lists exp among what introspection SHALL give: the refresh token's own expiry.
    assert_eq!(refresh["exp"].as_i64(), Some(START + i64::from(platform::clients::DEFAULT_REFRESH_LIFETIME)));
    // Another client learns nothing, exactly as for an unknown token.
    assert_eq!(json_body(introspect(&server, &as_caller("other", SECRET_OTHER, &issued.access_token))), json!({"active": false}));
    assert_eq!(json_body(introspect(&server, &as_caller("web", &web_secret(), "nonsense"))), json!({"active": false}));
    // The Smile CDR style answers an inactive token with a 404 and every field empty.
    server.settings.0.borrow_mut().introspection_style = IntrospectionStyle::SmileCdr;
    assert!(
        matches!(introspect(&server, &as_caller("web", &web_secret(), "nonsense")), Answer::Json { status: 404, body } if body["active"] == false && body["sub"] == "")
    );
}

#[test]
fn introspection_and_revocation_refuse_callers_in_order() {
    let server = server_with_callers();
    let refusal = |answer: Answer| match answer {
        Answer::Refused { error, challenge } => (error.error.as_str().to_owned(), error.error_description.unwrap_or_default(), challenge),
        other => panic!("{other:?}"),
    };
    let not_a_form = FormPost { form: Err(FormProblem::NotAForm), authorization: None };
    assert_eq!(
        refusal(introspect(&server, &not_a_form)),
        ("invalid_request".into(), "the body must be an application/x-www-form-urlencoded form".into(), None)
    );
    assert_eq!(refusal(introspect(&server, &form(&[("token", "a"), ("token", "b")]))).1, "token is given more than once");
    let malformed = FormPost { authorization: Some("Basic !!!".into()), ..form(&[("token", "t")]) };
    assert_eq!(
        refusal(introspect(&server, &malformed)),
        ("invalid_client".into(), "the Basic credentials are malformed".into(), Some(ClientChallenge::Bearer))
    );
    assert_eq!(
        refusal(introspect(&server, &form(&[("token", "t")]))),
        ("invalid_client".into(), "client authentication is required".into(), Some(ClientChallenge::Bearer))
    );
    assert_eq!(
        refusal(introspect(&server, &as_caller("web", "wrong", "t"))),
        ("invalid_client".into(), "client authentication failed".into(), Some(ClientChallenge::Basic))
    );
    let public = form(&[("token", "t"), ("client_id", "app")]);
    assert_eq!(
        refusal(introspect(&server, &public)),
        ("invalid_client".into(), "introspection needs a client that authenticates".into(), Some(ClientChallenge::Bearer))
    );
    assert_eq!(refusal(introspect(&server, &basic(form(&[]), "web", &web_secret()))), ("invalid_request".into(), "token is required".into(), None));
    // A public client may revoke (naming itself).
    assert_eq!(revoke(&server, &public), Answer::Done);
}

#[test]
fn revocation_ends_the_grant_for_every_token_it_gave() {
    let server = server_with_callers();
    let code = authorize(&server, "app", "openid fhirUser offline_access patient/*.rs");
    let (issued, _) = tokens(&server, &exchange(&code, VERIFIER));
    let refresh_token = issued.refresh_token.clone().unwrap();
    // Another client's revocation is answered 200 and changes nothing.
    assert_eq!(revoke(&server, &as_caller("web", &web_secret(), &refresh_token)), Answer::Done);
    assert!(bearer(&server, &issued.access_token).is_ok());
    // The app revokes its refresh token: the whole grant ends.
    assert_eq!(revoke(&server, &form(&[("token", &refresh_token), ("client_id", "app")])), Answer::Done);
    assert!(matches!(bearer(&server, &issued.access_token), Err(BearerError::Invalid(m)) if m == "the access token has been revoked"));
    assert_eq!(refused(&server, &refresh(&refresh_token)), ("invalid_grant".into(), "the grant has been revoked".into(), None));
    assert!(matches!(
        block_on(userinfo::userinfo(&server.ports(), Some(&format!("Bearer {}", issued.access_token)))).unwrap(),
        UserinfoAnswer::Unauthenticated(_)
    ));

    // An expired access token still revokes its grant (RFC 7009 §2.2 allows it; the refresh
    // chain it belongs to ends).
    let code = authorize(&server, "web", "offline_access patient/*.rs");
    let exchange =
        basic(form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]), "web", &web_secret());
    let (issued, _) = tokens(&server, &exchange);
    server.clock.advance(3600);
    assert!(bearer(&server, &issued.access_token).is_err(), "expired");
    assert_eq!(revoke(&server, &as_caller("web", &web_secret(), &issued.access_token)), Answer::Done);
    let again = basic(refresh(issued.refresh_token.as_deref().unwrap()), "web", &web_secret());
    assert_eq!(refused(&server, &again).1, "the grant has been revoked");
}

#[test]
fn a_backend_service_revokes_its_token_with_an_assertion_for_the_revocation_url() {
    let server = server_with_callers();
    let key = service_key("k1");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![key.to_public()] });
    let signed = |aud: &str, jti: &str| assertion(&key, json!({"iss": "svc", "sub": "svc", "aud": aud, "exp": START + 240, "jti": jti}));
    let TokenAnswer::Tokens(body) = answer(&server, &backend_call(&signed(TOKEN_URL, "j-1"), None)) else { panic!() };
    let access = body.access_token.clone();
    let with_assertion =
        |assertion: &str| form(&[("token", &access), ("client_assertion_type", platform::oauth::request::JWT_BEARER), ("client_assertion", assertion)]);
    // Introspecting its own token, with an assertion for the introspection URL.
    let described = json_body(introspect(&server, &with_assertion(&signed("https://ehr.example/auth/introspect", "j-2"))));
    assert_eq!((described["client_id"].clone(), described["scope"].clone()), (json!("svc"), json!("system/Patient.rs system/Observation.rs")));
    // An assertion for another endpoint's URL is refused.
    let Answer::Refused { error, .. } = revoke(&server, &with_assertion(&signed("https://ehr.example/auth/introspect", "j-3"))) else { panic!() };
    assert_eq!(error.error_description.as_deref(), Some("client_assertion aud must be the token endpoint URL"));
    assert_eq!(revoke(&server, &with_assertion(&signed("https://ehr.example/auth/revoke", "j-4"))), Answer::Done);
    assert!(matches!(bearer(&server, &access), Err(BearerError::Invalid(m)) if m == "the access token has been revoked"));
    assert_eq!(json_body(introspect(&server, &with_assertion(&signed(TOKEN_URL, "j-5")))), json!({"active": false}));
}

#[test]
fn userinfo_answers_the_claims_the_scopes_allow() {
    let server = server_with_callers();
    let ask = |token: &str| block_on(userinfo::userinfo(&server.ports(), Some(&format!("Bearer {token}")))).unwrap();
    let full = web_tokens(&server, "openid fhirUser profile patient/*.rs");
    let UserinfoAnswer::Claims(claims) = ask(&full.access_token) else { panic!() };
    assert_eq!(serde_json::to_value(&claims).unwrap(), json!({"sub": "alice", "fhirUser": "https://ehr.example/fhir/Practitioner/pr-1", "name": "Alice Doe"}));
    let bare = web_tokens(&server, "openid patient/*.rs");
    let UserinfoAnswer::Claims(claims) = ask(&bare.access_token) else { panic!() };
    assert_eq!(serde_json::to_value(&claims).unwrap(), json!({"sub": "alice"}));
    let no_openid = web_tokens(&server, "patient/*.rs");
    let UserinfoAnswer::InsufficientScope { error, challenge } = ask(&no_openid.access_token) else { panic!() };
    assert_eq!((error.error.as_str(), error.error_description.as_deref()), ("insufficient_scope", Some("userinfo needs the openid scope")));
    assert_eq!(challenge, "Bearer realm=\"smart-edge\", error=\"insufficient_scope\", error_description=\"userinfo needs the openid scope\"");
    assert!(matches!(block_on(userinfo::userinfo(&server.ports(), None)).unwrap(), UserinfoAnswer::Unauthenticated(BearerError::Missing)));
    assert!(matches!(ask("not-a-token"), UserinfoAnswer::Unauthenticated(BearerError::Invalid(_))));
}
