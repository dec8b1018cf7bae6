//! The whole launch → ready → request → refresh → logout flow, natively: an in-memory browser
//! ([`MemoryEnv`]) against an in-memory SMART server ([`FakeServer`]) that checks PKCE, state,
//! `aud`, rotates refresh tokens, signs ID tokens and pages search results.

use super::authorize::{authorize, AuthorizeOptions};
use super::client::{in_patient_compartment, Client, FhirCall, Paging};
use super::env::{Area, Environment, HttpRequest, HttpResponse, SignatureCheck, Target};
use super::error::SdkError;
use super::ready::ready;
use super::url;
use base64::Engine;
use futures::executor::block_on;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

const FHIR: &str = "https://ehr.example/fhir";
const APP: &str = "https://app.example/index.html";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A test signature: SHA-256 of the signing input and the key's `n` (the browser checks real
/// RS256/ES256 with WebCrypto in the Chromium tests).
fn fake_sign(input: &[u8], key: &str) -> Vec<u8> {
    Sha256::new().chain_update(input).chain_update(key.as_bytes()).finalize().to_vec()
}

#[derive(Default)]
struct Grant {
    challenge: String,
    redirect: String,
    nonce: Option<String>,
    scope: String,
}

#[derive(Default)]
struct FakeServer {
    codes: HashMap<String, Grant>,
    access: HashMap<String, i64>,
    refresh: HashMap<String, String>,
    revoked: Vec<String>,
    refreshes: usize,
    next: usize,
    now: i64,
    nonce_override: Option<String>,
    seen_aud: Vec<String>,
}

impl FakeServer {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }

    fn handle(&mut self, req: &HttpRequest) -> HttpResponse {
        let ok = |body: Value| HttpResponse { status: 200, body: body.to_string(), www_authenticate: None };
        let err = |status: u16, error: &str| HttpResponse { status, body: json!({"error": error}).to_string(), www_authenticate: None };
        let form: BTreeMap<String, String> = req.body.as_deref().map(|b| form_urlencoded::parse(b.as_bytes()).into_owned().collect()).unwrap_or_default();
        let path = req.url.split('?').next().unwrap_or_default();
        match path {
            "https://ehr.example/fhir/.well-known/smart-configuration" => ok(json!({
                "issuer": "https://ehr.example", "jwks_uri": "https://ehr.example/jwks", "authorization_endpoint": "https://ehr.example/authorize",
                "token_endpoint": "https://ehr.example/token", "revocation_endpoint": "https://ehr.example/revoke",
                "capabilities": ["launch-ehr"], "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"]})),
            "https://ehr.example/jwks" => ok(
                json!({"keys": [{"kty": "EC", "kid": "other", "crv": "P-256", "x": "x", "y": "y"}, {"kty": "RSA", "kid": "k1", "n": "secret-n", "e": "AQAB"}]}),
            ),
            "https://ehr.example/token" => match form.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let Some(grant) = form.get("code").and_then(|c| self.codes.remove(c)) else { return err(400, "invalid_grant") };
                    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                    if B64.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge || form.get("redirect_uri") != Some(&grant.redirect) {
                        return err(400, "invalid_grant");
                    }
                    let nonce = self.nonce_override.clone().or(grant.nonce.clone());
                    self.issue(&grant.scope, nonce)
                }
                Some("refresh_token") => {
                    let Some(scope) = form.get("refresh_token").and_then(|r| self.refresh.remove(r)) else { return err(400, "invalid_grant") };
                    self.refreshes += 1;
                    self.issue(&scope, None)
                }
                _ => err(400, "unsupported_grant_type"),
            },
            "https://ehr.example/revoke" => {
                let token = form.get("token").cloned().unwrap_or_default();
                self.access.remove(&token);
                self.refresh.remove(&token);
                self.revoked.push(token);
                ok(json!({}))
            }
            fhir if fhir.starts_with(FHIR) => self.fhir(req),
            _ => err(404, "not_found"),
        }
    }

    fn issue(&mut self, scope: &str, nonce: Option<String>) -> HttpResponse {
        let access = self.id("at");
        self.access.insert(access.clone(), self.now + 3600);
        let mut body =
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600, "scope": scope, "patient": "p1", "need_patient_banner": true});
        if scope.contains("offline_access") {
            let refresh = self.id("rt");
            self.refresh.insert(refresh.clone(), scope.to_owned());
            body["refresh_token"] = json!(refresh);
        }
        if let Some(nonce) = nonce {
            let header = B64.encode(json!({"alg": "RS256", "kid": "k1"}).to_string());
            let claims = B64.encode(json!({"iss": "https://ehr.example", "sub": "u1", "aud": "app", "exp": self.now + 300, "iat": self.now, "nonce": nonce, "fhirUser": "https://ehr.example/fhir/Practitioner/d1"}).to_string());
            let input = format!("{header}.{claims}");
            body["id_token"] = json!(format!("{input}.{}", B64.encode(fake_sign(input.as_bytes(), "secret-n"))));
        }
        HttpResponse { status: 200, body: body.to_string(), www_authenticate: None }
    }

    fn fhir(&mut self, req: &HttpRequest) -> HttpResponse {
        let bearer = req.headers.iter().find(|(k, _)| k == "Authorization").and_then(|(_, v)| v.strip_prefix("Bearer ")).unwrap_or_default();
        if self.access.get(bearer).is_none_or(|exp| *exp <= self.now) {
            return HttpResponse {
                status: 401,
                body: json!({"resourceType": "OperationOutcome", "issue": [{"code": "security", "diagnostics": "bad token"}]}).to_string(),
                www_authenticate: Some("Bearer error=\"invalid_token\"".into()),
            };
        }
        let rest = req.url.trim_start_matches(FHIR);
        let ok = |body: Value| HttpResponse { status: 200, body: body.to_string(), www_authenticate: None };
        if rest == "/Patient/p1" {
            return ok(json!({"resourceType": "Patient", "id": "p1"}));
        }
        if rest == "/Practitioner/d1" {
            return ok(json!({"resourceType": "Practitioner", "id": "d1"}));
        }
        if rest.starts_with("/Observation?") {
            let page: usize = url::param(&req.url, "page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let entries: Vec<Value> = (0..2).map(|i| json!({"resource": {"resourceType": "Observation", "id": format!("o{}", page * 2 + i)}})).collect();
            let mut bundle =
                json!({"resourceType": "Bundle", "type": "searchset", "total": 6, "entry": entries, "link": [{"relation": "self", "url": req.url}]});
            if page < 2 {
                bundle["link"].as_array_mut().unwrap().push(json!({"relation": "next", "url": format!("{FHIR}/Observation?patient=p1&page={}", page + 1)}));
            }
            return ok(bundle);
        }
        HttpResponse {
            status: 404,
            body: json!({"resourceType": "OperationOutcome", "issue": [{"code": "not-found", "diagnostics": "no such resource"}]}).to_string(),
            www_authenticate: None,
        }
    }
}

/// The browser, in memory: one tab (its address and `sessionStorage`), the origin's
/// `localStorage`, and the server behind `fetch`.
struct MemoryEnv<'s> {
    server: &'s RefCell<FakeServer>,
    location: RefCell<String>,
    navigated: RefCell<Vec<String>>,
    storage: RefCell<BTreeMap<(Area, String), String>>,
    shared: &'s RefCell<BTreeMap<String, String>>,
    random: Cell<u8>,
}

impl<'s> MemoryEnv<'s> {
    fn new(server: &'s RefCell<FakeServer>, shared: &'s RefCell<BTreeMap<String, String>>, location: &str) -> Self {
        MemoryEnv { server, location: RefCell::new(location.into()), navigated: RefCell::default(), storage: RefCell::default(), shared, random: Cell::new(1) }
    }

    /// The authorization server's side of the redirect: it checks the request, then sends the
    /// browser back with a code (or `error`).
    fn approve(&self) {
        let to = self.navigated.borrow().last().cloned().expect("authorize() navigated");
        let p = |k: &str| url::param(&to, k).unwrap_or_default();
        assert_eq!(p("code_challenge_method"), "S256");
        self.server.borrow_mut().seen_aud.push(p("aud"));
        let code = self.server.borrow_mut().id("code");
        let grant = Grant { challenge: p("code_challenge"), redirect: p("redirect_uri"), nonce: url::param(&to, "nonce"), scope: p("scope") };
        self.server.borrow_mut().codes.insert(code.clone(), grant);
        *self.location.borrow_mut() = format!("{}?code={code}&state={}", p("redirect_uri"), p("state"));
    }
}

impl Environment for MemoryEnv<'_> {
    fn location(&self) -> String {
        self.location.borrow().clone()
    }
    fn replace_location(&self, url: &str) {
        *self.location.borrow_mut() = url.to_owned();
    }
    fn navigate(&self, url: &str, _target: &Target) -> Result<(), SdkError> {
        self.navigated.borrow_mut().push(url.to_owned());
        Ok(())
    }
    fn get(&self, area: Area, key: &str) -> Option<String> {
        match area {
            Area::Shared => self.shared.borrow().get(key).cloned(),
            Area::Tab => self.storage.borrow().get(&(area, key.to_owned())).cloned(),
        }
    }
    fn set(&self, area: Area, key: &str, value: &str) {
        match area {
            Area::Shared => self.shared.borrow_mut().insert(key.to_owned(), value.to_owned()),
            Area::Tab => self.storage.borrow_mut().insert((area, key.to_owned()), value.to_owned()),
        };
    }
    fn remove(&self, area: Area, key: &str) {
        match area {
            Area::Shared => self.shared.borrow_mut().remove(key),
            Area::Tab => self.storage.borrow_mut().remove(&(area, key.to_owned())),
        };
    }
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, SdkError> {
        Ok(self.server.borrow_mut().handle(&request))
    }
    fn random(&self, bytes: &mut [u8]) {
        for b in bytes {
            self.random.set(self.random.get().wrapping_mul(31).wrapping_add(7));
            *b = self.random.get();
        }
    }
    async fn sha256(&self, data: &[u8]) -> Result<Vec<u8>, SdkError> {
        Ok(Sha256::digest(data).to_vec())
    }
    async fn verify(&self, check: SignatureCheck<'_>) -> Result<bool, SdkError> {
        let key = check.jwk.get("n").and_then(crate::json::Json::as_str).unwrap_or_default();
        Ok(check.alg == "RS256" && fake_sign(check.signed, key) == check.signature)
    }
    fn now(&self) -> i64 {
        self.server.borrow().now
    }
    async fn exclusive<T, F: Future<Output = T>>(&self, _name: &str, task: F) -> T {
        task.await
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn options(scope: &str) -> AuthorizeOptions {
    AuthorizeOptions { client_id: "app".into(), scope: Some(scope.into()), redirect_uri: Some("callback.html".into()), ..Default::default() }
}

#[test]
fn ehr_launch_to_ready_to_paged_requests_to_refresh_to_logout() {
    let server = RefCell::new(FakeServer::default());
    let shared = RefCell::default();
    let env = MemoryEnv::new(&server, &shared, &format!("{APP}?iss={}&launch=xyz", "https%3A%2F%2Fehr.example%2Ffhir"));
    let to = block_on(authorize(&env, &options("launch/patient openid fhirUser offline_access patient/*.rs"))).unwrap();
    assert!(to.starts_with("https://ehr.example/authorize?response_type=code&client_id=app&scope=launch+launch%2Fpatient"), "{to}");
    assert_eq!(url::param(&to, "launch").as_deref(), Some("xyz"));
    assert_eq!(url::param(&to, "redirect_uri").as_deref(), Some("https://app.example/callback.html"));
    env.approve();
    assert_eq!(server.borrow().seen_aud, vec![FHIR]);

    let session = block_on(ready(&env)).unwrap();
    assert_eq!(env.location(), "https://app.example/callback.html", "code and state leave the address bar");
    assert!(session.id_token_claims.as_ref().unwrap().to_string().contains("\"sub\":\"u1\""));
    let mut client = Client::new(&env, session);
    assert_eq!(client.patient_id(), Some("p1"));
    assert_eq!(client.user(), Some(("Practitioner".into(), "d1".into())));
    assert_eq!(json(&block_on(client.request(FhirCall::get("Patient/p1"), Paging::default())).unwrap())["id"], "p1");

    let flat = json(&block_on(client.request(FhirCall::get(in_patient_compartment("Observation", "p1")), Paging { page_limit: 0, flat: true })).unwrap());
    assert_eq!(flat.as_array().unwrap().len(), 6, "all three pages");
    let two = json(&block_on(client.request(FhirCall::get("Observation?patient=p1"), Paging { page_limit: 2, flat: false })).unwrap());
    assert_eq!(two.as_array().unwrap().len(), 2, "two bundles");
    let missing = block_on(client.request(FhirCall::get("Patient/nope"), Paging::default())).unwrap_err();
    assert_eq!((missing.code.as_str(), missing.status), ("not-found", Some(404)));
    assert!(missing.outcome.as_ref().is_some_and(|o| o.to_string().contains("OperationOutcome")));

    // Near expiry the client refreshes first; a 401 refreshes once and retries.
    server.borrow_mut().now += 3590;
    block_on(client.request(FhirCall::get("Patient/p1"), Paging::default())).unwrap();
    assert_eq!(server.borrow().refreshes, 1);
    let token = client.session.access_token.clone();
    server.borrow_mut().access.remove(&token);
    block_on(client.request(FhirCall::get("Patient/p1"), Paging::default())).unwrap();
    assert_eq!(server.borrow().refreshes, 2);
    assert_eq!(client.patient_id(), Some("p1"), "the launch context survives a refresh");

    // A reload restores the session.
    let restored = block_on(ready(&env)).unwrap();
    assert_eq!(restored.access_token, client.session.access_token);

    let (access, refresh) = (client.session.access_token.clone(), client.session.refresh_token.clone().unwrap());
    block_on(client.logout()).unwrap();
    assert_eq!(server.borrow().revoked, vec![refresh, access]);
    assert_eq!(block_on(ready(&env)).unwrap_err().code, "no_session");
}

#[test]
fn a_second_tab_adopts_the_refresh_the_first_made() {
    let server = RefCell::new(FakeServer::default());
    let shared = RefCell::default();
    let first = MemoryEnv::new(&server, &shared, APP);
    let opts = AuthorizeOptions { fhir_service_url: Some(FHIR.into()), ..options("launch/patient offline_access patient/*.rs") };
    block_on(authorize(&first, &opts)).unwrap();
    first.approve();
    let session = block_on(ready(&first)).unwrap();
    let second = MemoryEnv::new(&server, &shared, APP);
    let mut a = Client::new(&first, session.clone());
    let mut b = Client::new(&second, session);
    block_on(a.refresh()).unwrap();
    block_on(b.refresh()).unwrap();
    assert_eq!(server.borrow().refreshes, 1, "the second tab found the newer token");
    assert_eq!(a.session.access_token, b.session.access_token);
}

#[test]
fn tampered_state_wrong_nonce_and_server_errors_reject() {
    let server = RefCell::new(FakeServer::default());
    let shared = RefCell::default();
    let env = MemoryEnv::new(&server, &shared, APP);
    let opts = AuthorizeOptions { fhir_service_url: Some(FHIR.into()), ..options("openid fhirUser launch/patient") };
    block_on(authorize(&env, &opts)).unwrap();
    env.approve();
    let tampered = env.location().replace("state=", "state=x");
    env.replace_location(&tampered);
    assert_eq!(block_on(ready(&env)).unwrap_err().code, "invalid_state");

    block_on(authorize(&env, &opts)).unwrap();
    env.approve();
    server.borrow_mut().nonce_override = Some("someone-elses".into());
    let wrong = block_on(ready(&env)).unwrap_err();
    assert_eq!(wrong.code, "invalid_id_token");
    assert!(wrong.message.contains("nonce"));
    server.borrow_mut().nonce_override = None;

    block_on(authorize(&env, &opts)).unwrap();
    let state = url::param(env.navigated.borrow().last().unwrap(), "state").unwrap();
    env.replace_location(&format!("{APP}?error=access_denied&error_description=The+user+said+no&state={state}"));
    let denied = block_on(ready(&env)).unwrap_err();
    assert_eq!((denied.code.as_str(), denied.message.as_str()), ("access_denied", "The user said no"));
    assert_eq!(env.location(), APP);

    // The same code and state a second time: the state was single use.
    block_on(authorize(&env, &opts)).unwrap();
    env.approve();
    let replay = env.location();
    block_on(ready(&env)).unwrap();
    env.replace_location(&replay);
    assert_eq!(block_on(ready(&env)).unwrap_err().code, "invalid_state");
}

#[test]
fn two_sessions_in_one_origin_do_not_clobber_each_other() {
    let server = RefCell::new(FakeServer::default());
    let shared = RefCell::default();
    let env = MemoryEnv::new(&server, &shared, APP);
    let start = |client_id: &str| {
        let opts = AuthorizeOptions { client_id: client_id.into(), fhir_service_url: Some(FHIR.into()), ..options("launch/patient patient/*.rs") };
        block_on(authorize(&env, &opts)).unwrap();
        env.approve();
        block_on(ready(&env)).unwrap()
    };
    let one = start("app");
    let two = start("other-app");
    assert_ne!(one.key(), two.key());
    assert!(super::ready::find(&env, FHIR, "app").is_some());
    assert!(super::ready::find(&env, FHIR, "other-app").is_some());
}

#[test]
fn init_authorizes_then_completes_then_restores() {
    let server = RefCell::new(FakeServer::default());
    let shared = RefCell::default();
    let env = MemoryEnv::new(&server, &shared, APP);
    let opts = AuthorizeOptions { fhir_service_url: Some(FHIR.into()), ..options("launch/patient patient/*.rs") };
    assert!(block_on(super::ready::init(&env, &opts)).unwrap().is_none(), "no session: off to authorize");
    env.approve();
    let first = block_on(super::ready::init(&env, &opts)).unwrap().expect("the redirect completes");
    env.replace_location(APP);
    let again = block_on(super::ready::init(&env, &opts)).unwrap().expect("the stored session");
    assert_eq!(again.access_token, first.access_token);
    assert_eq!(env.navigated.borrow().len(), 1, "no second authorization");
}
