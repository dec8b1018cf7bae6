//! The token endpoint's flows end to end, natively: `platform::oauth` over the
//! in-memory adapters with a test clock. The authorization half of each flow drives the
//! grant state machine the way the sign-in pages do (start → login → consent → code).
//! Each refusal is asserted by its exact OAuth `error` (RFC 6749 §5.2) and description.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::assertions;
use platform::grant_handle::GrantHandle;
use platform::grants::{self, Command, Reply};
use platform::guard::BearerError;
use platform::oauth::{ClientChallenge, FormPost, FormProblem, TokenAnswer};
use platform::ports::GrantStore;
use serde_json::json;
use smart_protocol::jose::{Jwk, Jwks};
use support::*;

#[test]
fn authorization_code_with_pkce_end_to_end() {
    let server = server();
    let code = authorize(&server, "app", "openid fhirUser profile offline_access launch/patient patient/*.rs");
    let grant_id = GrantHandle::parse(&code).unwrap().grant_id().to_owned();

    // A wrong verifier is refused and consumes nothing.
    let wrong = "x".repeat(43);
    assert_eq!(refused(&server, &exchange(&code, &wrong)), ("invalid_grant".into(), "code_verifier does not match the code_challenge".into(), None));
    let mut other_redirect = exchange(&code, VERIFIER);
    other_redirect.form.as_mut().unwrap()[2].1 = "https://app.example/other".into();
    assert_eq!(refused(&server, &other_redirect).1, "redirect_uri does not match the authorization request");
    let bogus = GrantHandle::new(grant_id.clone(), "not-the-secret").encode();
    assert_eq!(refused(&server, &exchange(&bogus, VERIFIER)).1, "the code is not valid");
    assert_eq!(refused(&server, &exchange("not-a-handle", VERIFIER)).1, "the code is not valid");

    let (response, body) = tokens(&server, &exchange(&code, VERIFIER));
    assert!(response.is_bearer());
    assert_eq!(response.expires_in, Some(3600));
    assert_eq!(response.scope.as_deref(), Some("openid fhirUser profile offline_access launch/patient patient/*.rs"));
    assert_eq!(response.context.patient.as_deref(), Some("p-1"));
    assert_eq!(body["need_patient_banner"], true, "a standalone launch: no EHR shows the patient");
    let refresh_token = GrantHandle::parse(response.refresh_token.as_deref().unwrap()).unwrap();
    assert_eq!(refresh_token.grant_id(), grant_id);
    let access = claims(&response.access_token);
    assert_eq!((access["sub"].clone(), access["client_id"].clone(), access["gid"].clone()), (json!("alice"), json!("app"), json!(grant_id)));
    assert_eq!((access["aud"].clone(), access["patient"].clone()), (json!("https://ehr.example/fhir"), json!("p-1")));
    assert_eq!(access["exp"].as_i64(), Some(START + 3600));
    let id_token = claims(response.id_token.as_deref().unwrap());
    assert_eq!((id_token["aud"].clone(), id_token["nonce"].clone()), (json!("app"), json!("n-1")));
    assert_eq!((id_token["fhirUser"].clone(), id_token["name"].clone()), (json!("https://ehr.example/fhir/Practitioner/pr-1"), json!("Alice Doe")));
    assert_eq!(bearer(&server, &response.access_token).unwrap().patient.as_deref(), Some("p-1"));
    // The management page lists the grant.
    let listed = server.accounts.grants("alice");
    assert_eq!((listed.len(), listed[0].grant_id.as_str(), listed[0].client_name.as_str()), (1, grant_id.as_str(), "App"));

    // The code again: a replay. The tokens it gave die with the grant.
    assert_eq!(
        refused(&server, &exchange(&code, VERIFIER)),
        ("invalid_grant".into(), "the code was already used; the tokens it gave are revoked".into(), None)
    );
    assert!(matches!(bearer(&server, &response.access_token), Err(BearerError::Invalid(m)) if m == "the access token has been revoked"));
    assert_eq!(refused(&server, &refresh(&refresh_token.encode())), ("invalid_grant".into(), "the grant has been revoked".into(), None));
    // Once the object has cleaned up, what is left answers the same error.
    server.clock.advance(1);
    assert_eq!(refused(&server, &refresh(&refresh_token.encode())).0, "invalid_grant");
    assert!(server.grants.record(&grant_id).is_none());
}

#[test]
fn a_code_is_for_its_client_for_a_minute_and_only_with_pkce() {
    let server = server();
    let code = authorize(&server, "app", "openid patient/*.rs");
    // No client_id: the public client is not named.
    let anonymous = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    assert_eq!(refused(&server, &anonymous), ("invalid_client".into(), "client_id is required".into(), Some(ClientChallenge::Bearer)));
    let mut unknown = exchange(&code, VERIFIER);
    unknown.form.as_mut().unwrap()[4].1 = "nobody".into();
    assert_eq!(refused(&server, &unknown), ("invalid_client".into(), "unknown client".into(), Some(ClientChallenge::Bearer)));
    // The confidential client with a wrong secret, then with its own: not its code.
    let web = |secret: &str| {
        basic(form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]), "web", secret)
    };
    assert_eq!(refused(&server, &web("wrong")), ("invalid_client".into(), "client authentication failed".into(), Some(ClientChallenge::Basic)));
    assert_eq!(refused(&server, &web(&"s".repeat(40))), ("invalid_grant".into(), "the code was issued to another client".into(), None));
    // The client is checked before the code and the verifier.
    let short = form(&[("grant_type", "authorization_code"), ("code", &code), ("code_verifier", "short")]);
    assert_eq!(refused(&server, &short).1, "client_id is required");
    assert_eq!(refused(&server, &exchange(&code, "short")).0, "invalid_grant");
    // No refresh token without offline_access / online_access; no ID token without openid.
    let (response, _) = tokens(&server, &exchange(&code, VERIFIER));
    assert!(response.refresh_token.is_none() && response.id_token.is_some());

    let late = authorize(&server, "app", "patient/*.rs");
    server.clock.advance(grants::CODE_LIFETIME_SECS - 1);
    let (error, description, _) = refused(&server, &exchange(&late, VERIFIER.replace('d', "e").as_str()));
    assert_eq!((error.as_str(), description.as_str()), ("invalid_grant", "code_verifier does not match the code_challenge"));
    server.clock.advance(1);
    // Expired: the object's alarm removes the record at that moment, so the description is
    // the state machine's ("the code has expired") or the missing record's.
    assert_eq!(refused(&server, &exchange(&late, VERIFIER)).0, "invalid_grant");
}

#[test]
fn refresh_rotates_tolerates_a_second_tab_in_the_grace_window_and_revokes_on_reuse() {
    let server = server();
    let code = authorize(&server, "app", "openid offline_access patient/*.rs");
    let (first, _) = tokens(&server, &exchange(&code, VERIFIER));
    let r1 = first.refresh_token.clone().unwrap();

    server.clock.advance(100);
    let (second, _) = tokens(&server, &refresh(&r1));
    let r2 = second.refresh_token.clone().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(GrantHandle::parse(&r2).unwrap().grant_id(), GrantHandle::parse(&r1).unwrap().grant_id());
    assert!(first.id_token.is_some() && second.id_token.is_none(), "the ID token is the code exchange's only (OpenID Connect Core §12.2)");
    assert_eq!(claims(&second.access_token)["iat"].as_i64(), Some(START + 100));

    // A second tab with r1 inside the grace window gets the same r2.
    server.clock.advance(grants::REFRESH_GRACE_SECS - 1);
    assert_eq!(tokens(&server, &refresh(&r1)).0.refresh_token.as_deref(), Some(r2.as_str()));
    // A wider scope is invalid_scope and rotates nothing.
    let wide = form(&[("grant_type", "refresh_token"), ("refresh_token", &r2), ("scope", "patient/*.cruds")]);
    assert_eq!(refused(&server, &wide), ("invalid_scope".into(), "scope may only narrow the original grant".into(), None));

    // r1 again after the window: someone else holds a copy. The grant is revoked.
    server.clock.advance(1);
    assert_eq!(
        refused(&server, &refresh(&r1)),
        ("invalid_grant".into(), "the refresh token was already used or has expired; the grant is revoked".into(), None)
    );
    assert_eq!(refused(&server, &refresh(&r2)), ("invalid_grant".into(), "the grant has been revoked".into(), None));
    assert!(bearer(&server, &second.access_token).is_err(), "revocation reaches the resource server");
    assert_eq!(refused(&server, &refresh("garbage")), ("invalid_grant".into(), "the refresh token is not valid".into(), None));
}

#[test]
fn a_refresh_may_narrow_the_scope_for_one_token() {
    let server = server();
    let code = authorize(&server, "app", "openid offline_access patient/*.rs");
    let r1 = tokens(&server, &exchange(&code, VERIFIER)).0.refresh_token.unwrap();
    let narrow = form(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("scope", "patient/Observation.rs")]);
    let (narrowed, _) = tokens(&server, &narrow);
    assert_eq!(narrowed.scope.as_deref(), Some("patient/Observation.rs"));
    assert!(narrowed.id_token.is_none(), "no openid, no ID token");
    let (again, _) = tokens(&server, &refresh(&narrowed.refresh_token.unwrap()));
    assert_eq!(again.scope.as_deref(), Some("openid offline_access patient/*.rs"), "the grant keeps its scopes");
}

#[test]
fn the_grace_window_follows_the_setting_and_a_confidential_grant_never_refreshes_anonymously() {
    let server = server();
    server.settings.0.borrow_mut().refresh_grace_secs = 120;
    let code = authorize(&server, "web", "openid offline_access patient/*.rs");
    let secret = "s".repeat(40);
    let exchange =
        basic(form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]), "web", &secret);
    let r1 = tokens(&server, &exchange).0.refresh_token.unwrap();
    assert_eq!(refused(&server, &refresh(&r1)), ("invalid_client".into(), "this client must authenticate".into(), Some(ClientChallenge::Bearer)));
    assert_eq!(refused(&server, &basic(refresh(&r1), "web", "wrong")).2, Some(ClientChallenge::Basic));
    let app = form(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("client_id", "app")]);
    assert_eq!(refused(&server, &app), ("invalid_grant".into(), "the refresh token was issued to another client".into(), None));
    let r2 = tokens(&server, &basic(refresh(&r1), "web", &secret)).0.refresh_token.unwrap();
    server.clock.advance(60);
    assert_eq!(tokens(&server, &basic(refresh(&r1), "web", &secret)).0.refresh_token, Some(r2), "a second tab after 60 s of 120");
}

#[test]
fn online_access_ends_with_the_users_session() {
    let server = server();
    server.accounts.open_session("alice", "session-1");
    let code = authorize(&server, "app", "openid online_access patient/*.rs");
    let (first, _) = tokens(&server, &exchange(&code, VERIFIER));
    let (second, _) = tokens(&server, &refresh(first.refresh_token.as_deref().unwrap()));
    server.accounts.end_session("alice", "session-1");
    assert_eq!(
        refused(&server, &refresh(second.refresh_token.as_deref().unwrap())),
        ("invalid_grant".into(), "the user's session has ended (online_access)".into(), None)
    );
    assert!(bearer(&server, &second.access_token).is_err(), "the grant is revoked with the session");

    // offline_access outlives the session.
    let code = authorize(&server, "app", "openid online_access offline_access patient/*.rs");
    let (offline, _) = tokens(&server, &exchange(&code, VERIFIER));
    assert!(matches!(answer(&server, &refresh(offline.refresh_token.as_deref().unwrap())), TokenAnswer::Tokens(_)));
}

#[test]
fn a_grant_whose_client_was_deleted_refreshes_no_more() {
    let server = server();
    let code = authorize(&server, "app", "offline_access patient/*.rs");
    let r1 = tokens(&server, &exchange(&code, VERIFIER)).0.refresh_token.unwrap();
    server.clients.remove("app");
    assert_eq!(refused(&server, &refresh(&r1)), ("invalid_grant".into(), "the client of this grant no longer exists".into(), None));
}

#[test]
fn backend_services_with_a_jti_used_once() {
    let server = server();
    let k1 = service_key("k1");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![k1.to_public()] });
    let now = START;
    let signed = |key: &Jwk, jti: &str| assertion(key, json!({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 240, "jti": jti}));

    let first = signed(&k1, "j-1");
    let (response, body) = tokens(&server, &backend_call(&first, Some("system/Observation.rs")));
    assert_eq!((response.expires_in, response.scope.as_deref()), (Some(300), Some("system/Observation.rs")));
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let access = bearer(&server, &response.access_token).unwrap();
    assert_eq!((access.sub.as_str(), access.client_id.as_str()), ("svc", "svc"));

    // The same assertion again: a replay.
    assert_eq!(
        refused(&server, &backend_call(&first, None)),
        ("invalid_client".into(), "this client_assertion (jti) was already used".into(), Some(ClientChallenge::Bearer))
    );
    // Everything it may hold when it asks for nothing; never what it may not.
    assert_eq!(tokens(&server, &backend_call(&signed(&k1, "j-2"), None)).0.scope.as_deref(), Some("system/Patient.rs system/Observation.rs"));
    assert_eq!(refused(&server, &backend_call(&signed(&k1, "j-3"), Some("system/Condition.rs"))).0, "invalid_scope");
    // A refused request writes nothing: its jti is recorded with the token's grant, in one step.
    assert!(matches!(answer(&server, &backend_call(&signed(&k1, "j-3"), Some("system/Patient.rs"))), TokenAnswer::Tokens(_)));
    assert_eq!(refused(&server, &backend_call(&signed(&k1, "j-3"), None)).1, "this client_assertion (jti) was already used");
    // Claims are checked: another audience.
    let elsewhere = assertion(&k1, json!({"iss": "svc", "sub": "svc", "aud": "https://other.example/token", "exp": now + 240, "jti": "j-4"}));
    assert_eq!(refused(&server, &backend_call(&elsewhere, None)).1, "client_assertion aud must be the token endpoint URL");

    // The service rotates to k2: its kid is unknown to the cached set, so the JWKS is fetched
    // again — but not within 10 s of the last fetch (nobody can make us fetch per request).
    let fetches = server.client_keys.fetches();
    let k2 = service_key("k2-rotated");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![k2.to_public()] });
    assert_eq!(refused(&server, &backend_call(&signed(&k2, "j-5"), None)).1, "no registered key matches the assertion's kid and alg");
    assert_eq!(server.client_keys.fetches(), fetches);
    server.clock.advance(assertions::JWKS_REFETCH_MIN_SECS);
    assert!(matches!(answer(&server, &backend_call(&signed(&k2, "j-6"), None)), TokenAnswer::Tokens(_)));
    assert_eq!(server.client_keys.fetches(), fetches + 1);

    // Revoking the backend token's grant ends it at the resource server. The grant is one of
    // the client's backend grants (an id of 96 hex digits), not an object of its own.
    let grant_id = access.grant_id.clone().unwrap();
    assert!(platform::grant_handle::is_backend_grant_id(&grant_id) && !platform::grant_handle::is_grant_id(&grant_id), "{grant_id}");
    assert_eq!(block_on(server.grants.apply(&grant_id, &Command::Revoke { reason: "revoked by the client".into() })).unwrap(), Ok(Reply::Revoked));
    assert!(matches!(bearer(&server, &response.access_token), Err(BearerError::Invalid(m)) if m == "the access token has been revoked"));
}

/// An assertion whose header names no key (authlib's default), signed by `key`.
fn assertion_without_kid(key: &Jwk, claims: serde_json::Value) -> String {
    let b64 = |v: serde_json::Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string());
    let input = format!("{}.{}", b64(json!({"alg": "ES384", "typ": "JWT"})), b64(claims));
    smart_protocol::jose::compact(&input, &block_on(platform::ports::Signer::sign(&platform::memory::FakeSigner, key, input.as_bytes())).unwrap())
}

#[test]
fn an_assertion_without_kid_follows_a_rotation_at_most_every_ten_seconds() {
    let server = server();
    let k1 = service_key("k1");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![k1.to_public()] });
    let signed =
        |key: &Jwk, jti: &str, now: i64| assertion_without_kid(key, json!({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 240, "jti": jti}));
    assert!(matches!(answer(&server, &backend_call(&signed(&k1, "j-1", START), None)), TokenAnswer::Tokens(_)));
    let fetches = server.client_keys.fetches();

    // The service replaces k1 by k2: the cached set still has a key of the alg, so only the
    // failed verification tells; the set is fetched again, once, and k2 verifies.
    server.clock.advance(assertions::JWKS_REFETCH_MIN_SECS);
    let k2 = service_key("k2-rotated");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![k2.to_public()] });
    assert!(matches!(answer(&server, &backend_call(&signed(&k2, "j-2", START + 10), None)), TokenAnswer::Tokens(_)));
    assert_eq!(server.client_keys.fetches(), fetches + 1);

    // Within ten seconds of that fetch, a key nobody has seen is refused without a fetch, and
    // the refusal names the keys tried.
    let k3 = service_key("k3-rotated-again");
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![k3.to_public()] });
    assert_eq!(
        refused(&server, &backend_call(&signed(&k3, "j-3", START + 10), None)).1,
        "the client_assertion signature does not verify with the registered key(s) tried: k2-rotated"
    );
    assert_eq!(server.client_keys.fetches(), fetches + 1);
    // A replayed kid-less assertion is refused like any other.
    assert_eq!(refused(&server, &backend_call(&signed(&k2, "j-2", START + 10), None)).1, "this client_assertion (jti) was already used");
}

#[test]
fn client_credentials_is_for_backend_services_with_an_assertion_only() {
    let server = server();
    let secret = "s".repeat(40);
    let with_secret = basic(form(&[("grant_type", "client_credentials")]), "web", &secret);
    assert_eq!(
        refused(&server, &with_secret),
        ("invalid_client".into(), "client_credentials needs a private_key_jwt client assertion".into(), Some(ClientChallenge::Basic))
    );
    let unregistered = assertion(&service_key("k1"), json!({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": START + 60, "jti": "j"}));
    let (error, description, _) = refused(&server, &backend_call(&unregistered, None));
    assert_eq!((error.as_str(), description.as_str()), ("invalid_client", "the client's keys could not be read: https://svc.example/jwks answered 404"));
    // A backend service may not use the other grant types.
    server.client_keys.publish("https://svc.example/jwks", Jwks { keys: vec![service_key("k1").to_public()] });
    let code = authorize(&server, "app", "patient/*.rs");
    let mut as_code = backend_call(&unregistered, None);
    as_code
        .form
        .as_mut()
        .unwrap()
        .splice(0..1, [("grant_type".into(), "authorization_code".into()), ("code".into(), code), ("code_verifier".into(), VERIFIER.into())]);
    assert_eq!(refused(&server, &as_code), ("unauthorized_client".into(), "this client may not use this grant_type".into(), None));
}

#[test]
fn requests_that_are_not_token_requests() {
    let server = server();
    let not_a_form = FormPost { form: Err(FormProblem::NotAForm), authorization: None };
    assert_eq!(refused(&server, &not_a_form), ("invalid_request".into(), "the body must be application/x-www-form-urlencoded".into(), None));
    let unreadable = FormPost { form: Err(FormProblem::Unreadable), authorization: None };
    assert_eq!(refused(&server, &unreadable).1, "the body is too large or unreadable");
    assert_eq!(refused(&server, &form(&[("grant_type", "password")])).0, "unsupported_grant_type");
    assert_eq!(refused(&server, &form(&[("grant_type", "refresh_token"), ("grant_type", "refresh_token")])).1, "grant_type is given more than once");
    // Malformed Basic credentials: invalid_client, and (the scheme unknown) a Bearer challenge.
    let malformed = FormPost { authorization: Some("Basic !!!".into()), ..form(&[("grant_type", "client_credentials")]) };
    assert_eq!(refused(&server, &malformed), ("invalid_client".into(), "the Basic credentials are malformed".into(), Some(ClientChallenge::Bearer)));
}

/// Introspection by `caller` (a confidential client with the shared secret) of `token`: the
/// JSON body of its 200 answer.
fn introspected(server: &platform::oauth::memory::MemoryAuthServer, caller: &str, token: &str) -> serde_json::Value {
    let call = basic(form(&[("token", token)]), caller, &"s".repeat(40));
    match block_on(platform::oauth::introspection::introspect(&server.ports(), &call)).unwrap() {
        platform::oauth::introspection::Answer::Json { status: 200, body } => body,
        other => panic!("{other:?}"),
    }
}

/// The confidential web app's tokens for `scope`, through the code flow (an EHR launch with
/// `launch` when given).
fn web_tokens(
    server: &platform::oauth::memory::MemoryAuthServer,
    client_id: &str,
    scope: &str,
    launch: Option<platform::launch::LaunchContext>,
) -> serde_json::Value {
    let code = authorize_launch(server, client_id, scope, launch);
    let call = form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    tokens(server, &basic(call, client_id, &"s".repeat(40))).1
}

#[test]
fn introspection_gives_the_id_tokens_sub_and_fhir_user_and_fhir_user_only_with_openid_and_fhir_user() {
    let server = server();
    let body = web_tokens(&server, "web", "openid fhirUser offline_access launch/patient patient/*.rs", None);
    let id_token = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id_token["fhirUser"], "https://ehr.example/fhir/Practitioner/pr-1");
    for token in [&body["access_token"], &body["refresh_token"]] {
        let described = introspected(&server, "web", token.as_str().unwrap());
        assert_eq!((&described["sub"], &described["fhirUser"], &described["iss"]), (&id_token["sub"], &id_token["fhirUser"], &id_token["iss"]), "{described}");
    }
    // Without fhirUser the ID token names no fhirUser, and neither does introspection; without
    // openid there is no ID token at all.
    for scope in ["openid offline_access launch/patient patient/*.rs", "fhirUser offline_access launch/patient patient/*.rs"] {
        let body = web_tokens(&server, "web", scope, None);
        let id_token = body["id_token"].as_str().map(claims);
        assert!(id_token.is_none_or(|claims| !claims.contains_key("fhirUser")), "{scope}");
        assert_eq!(body.get("id_token").is_some(), scope.starts_with("openid"));
        for token in [&body["access_token"], &body["refresh_token"]] {
            let described = introspected(&server, "web", token.as_str().unwrap());
            assert_eq!((described["active"].clone(), described.get("fhirUser")), (json!(true), None), "{scope}: {described}");
            assert_eq!(described["sub"], "alice");
        }
    }
}

#[test]
fn introspection_echoes_the_launch_context_the_token_response_gave() {
    let server = server();
    let registration = json!({"client_id": "ehr-web", "client_name": "EHR Web", "client_type": "confidential-symmetric", "redirect_uris": [REDIRECT],
        "scope": "launch openid fhirUser offline_access patient/*.rs", "client_secrets": ["s".repeat(40)], "launch_uri": "https://app.example/launch"});
    server.clients.add(platform::clients::ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap());
    let context: platform::launch::LaunchContext = serde_json::from_value(json!({
        "patient": "p-1", "encounter": "e-1", "intent": "reconcile-medications", "need_patient_banner": false,
        "smart_style_url": "https://ehr.example/style.json", "tenant": "t-1",
        "fhirContext": [{"reference": "Observation/o-1", "role": "launch"}, {"canonical": "http://q.example/Questionnaire/q|1", "type": "Questionnaire"},
            {"identifier": {"system": "urn:mrn", "value": "123", "use": "official", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "period": {"start": "2020-01-01"}, "assigner": {"display": "General Hospital"}}, "type": "Patient"}]
    }))
    .unwrap();
    let body = web_tokens(&server, "ehr-web", "launch openid fhirUser offline_access patient/*.rs", Some(context.clone()));
    let members = ["patient", "encounter", "fhirContext", "need_patient_banner", "smart_style_url", "intent", "tenant"];
    assert_eq!(serde_json::from_value::<platform::launch::LaunchContext>(body.clone()).unwrap(), context, "the token response carries the launch context");
    let echoes = |tokens: &serde_json::Value| {
        for token in [&tokens["access_token"], &tokens["refresh_token"]] {
            let described = introspected(&server, "ehr-web", token.as_str().unwrap());
            for member in members {
                assert!(!tokens[member].is_null(), "{member}");
                assert_eq!((member, &described[member]), (member, &tokens[member]), "{described}");
            }
        }
    };
    echoes(&body);
    let refreshed = tokens(&server, &basic(refresh(body["refresh_token"].as_str().unwrap()), "ehr-web", &"s".repeat(40))).1;
    assert_eq!(serde_json::from_value::<platform::launch::LaunchContext>(refreshed.clone()).unwrap(), context, "a refresh carries it too");
    echoes(&refreshed);
    // Another client learns nothing of it.
    assert_eq!(introspected(&server, "web", body["access_token"].as_str().unwrap()), json!({"active": false}));
}

/// The per-client limit as the edge would answer it: `web` is over, and every id asked is kept.
#[derive(Default)]
struct OverLimit(std::cell::RefCell<Vec<String>>);

#[async_trait::async_trait(?Send)]
impl platform::ports::ClientLimits for OverLimit {
    async fn over_limit(&self, client_id: &str) -> Result<Option<u32>, platform::ports::StoreError> {
        self.0.borrow_mut().push(client_id.to_owned());
        Ok((client_id == "web").then_some(60))
    }
}

#[test]
fn the_per_client_limit_counts_only_a_client_that_authenticated_and_never_a_public_one() {
    // Review finding: counted on the name alone, anyone naming `web` could use up its limit.
    let server = server();
    let limits = OverLimit::default();
    let mut ports = server.ports();
    ports.client_limits = &limits;
    let code = authorize(&server, "web", "openid patient/*.rs");
    let call = |secret: &str| {
        basic(form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]), "web", secret)
    };
    // A stranger with the wrong secret: refused as invalid_client, nothing counted.
    let stranger = futures::executor::block_on(platform::oauth::token(&ports, &call("wrong"))).unwrap();
    assert!(matches!(stranger, TokenAnswer::Refused { ref error, .. } if error.error.as_str() == "invalid_client"), "{stranger:?}");
    assert!(limits.0.borrow().is_empty());
    // The client itself, over its limit: 429 with Retry-After, and its code not used up.
    let limited = futures::executor::block_on(platform::oauth::token(&ports, &call(&"s".repeat(40)))).unwrap();
    assert!(matches!(limited, TokenAnswer::Limited { retry_after: 60 }), "{limited:?}");
    assert_eq!(*limits.0.borrow(), vec!["web".to_owned()]);
    assert!(matches!(answer(&server, &call(&"s".repeat(40))), TokenAnswer::Tokens(_)), "the code still works once the limit allows");
    // A public client is not counted per client (the per-address limit covers it).
    let public = authorize(&server, "app", "openid patient/*.rs");
    assert!(matches!(futures::executor::block_on(platform::oauth::token(&ports, &exchange(&public, VERIFIER))).unwrap(), TokenAnswer::Tokens(_)));
    assert_eq!(limits.0.borrow().len(), 1);
}
