//! The sign-in end to end, natively: `platform::signin` (authorization request → login →
//! patient picker → consent → code) over the in-memory adapters with a test clock, the code
//! then exchanged at the in-memory token endpoint. A browser is played by [`Tab`], which keeps
//! the cookies the answers set. Refusals are asserted by their exact page or OAuth error.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::launch::{self, LaunchRequest};
use platform::memory::FakeSigner;
use platform::memory::{Pbkdf2Hasher, SeededRandom};
use platform::oauth::memory::MemoryAuthServer;
use platform::pages::Choice;
use platform::signin::{self, AuthorizationCall, Browser, Page, PageForm, SetCookie, Shown, SignInAnswer, Visit};
use platform::users::UserRegistration;
use serde_json::json;
use smart_protocol::pkce::CodeVerifier;
use std::cell::RefCell;
use support::*;
use url::Url;

const PASSWORD: &str = "correct horse battery";

/// The server of the token flows, with three users, two patients and an EHR-launchable app.
fn signin_server() -> MemoryAuthServer {
    let server = server();
    for (username, fhir_user) in [("alice", "Practitioner/pr-1"), ("bob", "Practitioner/pr-2"), ("pat", "Patient/p-2")] {
        let registration = UserRegistration {
            username: username.into(),
            display_name: format!("{username} (display)"),
            fhir_user: fhir_user.into(),
            password: PASSWORD.into(),
        };
        server.users.add(block_on(registration.into_user(&Pbkdf2Hasher, &SeededRandom::default())).unwrap());
    }
    server.patients.add_patient(json!({"resourceType": "Patient", "id": "p-1", "name": [{"given": ["Amy"], "family": "Shaw"}], "birthDate": "1987-02-20"}));
    server.patients.add_patient(json!({"resourceType": "Patient", "id": "p-2", "name": [{"given": ["Pat"], "family": "Ient"}]}));
    let registration = json!({"client_id": "ehr-app", "client_name": "EHR App", "client_type": "public", "redirect_uris": [REDIRECT],
        "launch_uri": "https://app.example/launch", "scope": "launch openid fhirUser patient/*.rs"});
    let client = platform::clients::ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap();
    server.clients.add(client);
    server
}

/// One browser: its cookies, carried from answer to request.
struct Tab<'a> {
    server: &'a MemoryAuthServer,
    browser: RefCell<Browser>,
}

impl<'a> Tab<'a> {
    fn new(server: &'a MemoryAuthServer) -> Tab<'a> {
        Tab { server, browser: RefCell::new(Browser { ip: "192.0.2.7".into(), ..Browser::default() }) }
    }

    fn keep(&self, answer: SignInAnswer) -> Shown {
        let mut browser = self.browser.borrow_mut();
        for cookie in answer.cookies {
            match cookie {
                SetCookie::Browser(value) => browser.binding = Some(value),
                SetCookie::Session(value) => browser.session = Some(value),
                SetCookie::ClearSession => browser.session = None,
            }
        }
        answer.shown
    }

    /// `GET /auth/authorize?…`; answers the grant id when the browser is sent to its steps.
    fn authorize(&self, params: &[(&str, &str)]) -> Shown {
        let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let call = AuthorizationCall { params: Ok(params), browser: self.browser.borrow().clone() };
        self.keep(block_on(signin::authorize(&self.server.signin_ports(), call)).unwrap())
    }

    fn start(&self, params: &[(&str, &str)]) -> String {
        match self.authorize(params) {
            Shown::Redirect(location) => location.strip_prefix("/auth/sign-in?interaction=").expect("the steps page").to_owned(),
            other => panic!("{other:?}"),
        }
    }

    /// `GET /auth/sign-in?interaction={grant_id}`.
    fn visit(&self, grant_id: &str) -> Shown {
        let visit = Visit { grant_id: Some(grant_id.into()), browser: self.browser.borrow().clone() };
        self.keep(block_on(signin::visit(&self.server.signin_ports(), visit)).unwrap())
    }

    /// A page's form, posted to `/auth/{action}`.
    fn post(&self, action: &str, pairs: &[(&str, &str)]) -> Shown {
        let form = PageForm { form: Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), browser: self.browser.borrow().clone() };
        let ports = self.server.signin_ports();
        let answer = match action {
            "login" => block_on(signin::login(&ports, form)),
            "pick" => block_on(signin::pick(&ports, form)),
            "consent" => block_on(signin::consent(&ports, form)),
            "logout" => block_on(signin::logout(&ports, form)),
            "login-rate-limited" => block_on(signin::login_rate_limited(&ports, form, 10)),
            _ => unreachable!(),
        };
        self.keep(answer.unwrap())
    }

    /// Logs in on the login page the steps show.
    fn log_in(&self, grant_id: &str, username: &str, password: &str) -> Shown {
        let csrf = login_csrf(&self.visit(grant_id));
        self.post("login", &[("interaction", grant_id), ("csrf", &csrf), ("username", username), ("password", password)])
    }
}

fn login_csrf(shown: &Shown) -> String {
    match shown {
        Shown::Page { page: Page::Login { csrf, .. }, status: 200, .. } => csrf.clone(),
        other => panic!("not the login page: {other:?}"),
    }
}

fn csrf_of(shown: &Shown) -> String {
    match shown {
        Shown::Page {
            page: Page::Login { csrf, .. } | Page::PatientPicker { csrf, .. } | Page::EncounterPicker { csrf, .. } | Page::Consent { csrf, .. },
            ..
        } => csrf.clone(),
        other => panic!("not a page: {other:?}"),
    }
}

fn challenge() -> String {
    CodeVerifier::parse(VERIFIER).unwrap().s256_challenge()
}

/// A standalone launch's request (SMART App Launch 2.2 §2.0.5).
fn standalone(client_id: &str, scope: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", scope.into()),
        ("state", "st-1".into()),
        ("aud", "https://ehr.example/fhir".into()),
        ("code_challenge", challenge()),
        ("code_challenge_method", "S256".into()),
    ]
}

fn pairs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The query of a redirect to the client.
fn client_redirect(shown: &Shown) -> Vec<(String, String)> {
    let Shown::Redirect(location) = shown else { panic!("not a redirect: {shown:?}") };
    assert!(location.starts_with(REDIRECT), "{location}");
    Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

fn param<'v>(query: &'v [(String, String)], name: &str) -> Option<&'v str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn next_step(grant_id: &str) -> Shown {
    Shown::Redirect(format!("/auth/sign-in?interaction={grant_id}"))
}

#[test]
fn standalone_launch_login_picker_consent_code_then_tokens() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid fhirUser offline_access launch/patient patient/*.rs")));
    assert_eq!(tab.browser.borrow().binding.as_ref().map(String::len), Some(43), "the browser is bound");

    let login = tab.visit(&grant_id);
    let Shown::Page { page: Page::Login { client_name, error: None, .. }, form_targets, .. } = &login else { panic!("{login:?}") };
    assert_eq!((client_name.as_str(), form_targets.as_slice()), ("App", ["https://app.example".to_owned()].as_slice()));
    assert_eq!(tab.log_in(&grant_id, "alice", PASSWORD), next_step(&grant_id));
    assert!(tab.browser.borrow().session.as_deref().is_some_and(|s| s.starts_with("alice~")), "a login session");

    let picker = tab.visit(&grant_id);
    let Shown::Page { page: Page::PatientPicker { patients, .. }, .. } = &picker else { panic!("{picker:?}") };
    let amy = Choice { id: "p-1".into(), label: "Amy Shaw".into(), detail: "born 1987-02-20".into() };
    assert_eq!(patients.first(), Some(&amy), "in name order");
    assert_eq!(patients.len(), 2);
    let csrf = csrf_of(&picker);
    assert_eq!(tab.post("pick", &[("interaction", &grant_id), ("csrf", &csrf), ("patient", "p-1")]), next_step(&grant_id));

    let consent = tab.visit(&grant_id);
    let Shown::Page { page: Page::Consent { patient_label, scopes, user_name, .. }, .. } = &consent else { panic!("{consent:?}") };
    assert_eq!((patient_label.as_deref(), user_name.as_str()), (Some("Amy Shaw"), "alice (display)"));
    assert_eq!(scopes.to_string(), "openid fhirUser offline_access launch/patient patient/*.rs");
    // The user unticks offline_access.
    let mut form = vec![("interaction", grant_id.as_str()), ("csrf", csrf.as_str()), ("decision", "approve")];
    form.extend(["openid", "fhirUser", "launch/patient", "patient/*.rs"].map(|s| ("scope", s)));
    assert_eq!(tab.post("consent", &form), next_step(&grant_id));

    let back = client_redirect(&tab.visit(&grant_id));
    assert_eq!((param(&back, "state"), param(&back, "iss")), (Some("st-1"), Some("https://ehr.example")));
    let code = param(&back, "code").unwrap();
    // The code is the token endpoint's, once.
    let (tokens, body) = tokens(&server, &exchange(code, VERIFIER));
    assert_eq!(tokens.scope.as_deref(), Some("openid fhirUser launch/patient patient/*.rs"));
    assert_eq!((tokens.context.patient.as_deref(), tokens.refresh_token.is_none()), (Some("p-1"), true));
    assert_eq!(body["need_patient_banner"], true);
    assert_eq!(claims(&tokens.access_token)["sub"], "alice");
    assert_eq!(refused(&server, &exchange(code, VERIFIER)).0, "invalid_grant");
    // The grant is done with its steps.
    let Shown::Message { status: 404, .. } = tab.visit(&grant_id) else { panic!() };
}

#[test]
fn a_second_authorization_adopts_the_session_and_logout_ends_it() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let scope = "openid patient/*.rs";
    let first = tab.start(&pairs(&standalone("app", scope)));
    tab.log_in(&first, "alice", PASSWORD);
    let Shown::Page { page: Page::Consent { .. }, .. } = tab.visit(&first) else { panic!() };

    // The same browser, another authorization: no login page, straight to consent.
    let second = tab.start(&pairs(&standalone("app", scope)));
    let consent = tab.visit(&second);
    let Shown::Page { page: Page::Consent { user_name, .. }, .. } = &consent else { panic!("{consent:?}") };
    assert_eq!(user_name, "alice (display)");

    // prompt=none without a session: the client hears login_required.
    let other = Tab::new(&server);
    let mut silent = standalone("app", scope);
    silent.push(("prompt", "none".into()));
    let grant = other.start(&pairs(&silent));
    let back = client_redirect(&other.visit(&grant));
    assert_eq!((param(&back, "error"), param(&back, "error_description")), (Some("login_required"), Some("the user is not signed in")));

    // Sign out: a form without the session's token is refused; with it the session ends.
    let Shown::Message { status: 403, title: "Not allowed", .. } = tab.post("logout", &[("csrf", "forged")]) else { panic!() };
    let handle = platform::accounts::SessionHandle::parse(tab.browser.borrow().session.as_deref().unwrap()).unwrap();
    let csrf = platform::accounts::AccountState::csrf_for(&handle);
    assert_eq!(tab.post("logout", &[("csrf", &csrf)]), Shown::Message { status: 200, title: "Signed out", message: "You are signed out.".into() });
    assert!(tab.browser.borrow().session.is_none());
    let third = tab.start(&pairs(&standalone("app", scope)));
    login_csrf(&tab.visit(&third));
}

/// Consents on the page the steps show and follows the redirect to the client: its code.
fn consent_and_code(tab: &Tab, grant_id: &str) -> String {
    let consent = tab.visit(grant_id);
    let Shown::Page { page: Page::Consent { csrf, .. }, .. } = &consent else { panic!("not the consent page: {consent:?}") };
    let form = [("interaction", grant_id), ("csrf", csrf.as_str()), ("decision", "approve"), ("scope", "openid"), ("scope", "patient/*.rs")];
    assert_eq!(tab.post("consent", &form), next_step(grant_id));
    let back = client_redirect(&tab.visit(grant_id));
    param(&back, "code").expect("a code").to_owned()
}

#[test]
fn max_age_asks_for_a_new_login_when_the_session_is_older_and_auth_time_tells_when() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let with_max_age = |max_age: &str| {
        let mut params = standalone("app", "openid patient/*.rs");
        params.push(("max_age", max_age.into()));
        params
    };
    let first = tab.start(&pairs(&standalone("app", "openid patient/*.rs")));
    tab.log_in(&first, "alice", PASSWORD);
    let signed_in_at = server.clock_now();
    consent_and_code(&tab, &first);

    // 10 minutes later: a session of 600 s is recent enough for max_age=600 …
    server.clock.advance(600);
    let recent = tab.start(&pairs(&with_max_age("600")));
    let code = consent_and_code(&tab, &recent);
    let (issued, _) = tokens(&server, &exchange(&code, VERIFIER));
    assert_eq!(claims(issued.id_token.as_deref().unwrap())["auth_time"], signed_in_at, "auth_time is the session's sign-in");
    // … but not for max_age=599: the login page, although the browser has a session.
    let stale = tab.start(&pairs(&with_max_age("599")));
    login_csrf(&tab.visit(&stale));
    assert_eq!(tab.log_in(&stale, "alice", PASSWORD), next_step(&stale));
    let code = consent_and_code(&tab, &stale);
    let (issued, _) = tokens(&server, &exchange(&code, VERIFIER));
    assert_eq!(claims(issued.id_token.as_deref().unwrap())["auth_time"], server.clock_now(), "a new sign-in, a new auth_time");

    // max_age=0 is prompt=login, even for a session a second old.
    server.clock.advance(1);
    let zero = tab.start(&pairs(&with_max_age("0")));
    login_csrf(&tab.visit(&zero));
    // With prompt=none, a session too old is login_required.
    server.clock.advance(100);
    let mut silent = with_max_age("50");
    silent.push(("prompt", "none".into()));
    let grant = tab.start(&pairs(&silent));
    let back = client_redirect(&tab.visit(&grant));
    assert_eq!(param(&back, "error"), Some("login_required"));
    // A malformed max_age goes back to the client as invalid_request.
    for bad in ["-1", "1.5", "soon"] {
        let back = client_redirect(&tab.authorize(&pairs(&with_max_age(bad))));
        assert_eq!((param(&back, "error"), param(&back, "state")), (Some("invalid_request"), Some("st-1")), "{bad}");
    }
}

#[test]
fn login_hint_prefills_the_login_page_and_never_switches_users() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let hinted = |hint: &str| {
        let mut params = standalone("app", "openid patient/*.rs");
        params.push(("login_hint", hint.into()));
        params
    };
    // No session: the login page, the username prefilled (the page escapes it).
    let grant = tab.start(&pairs(&hinted("bob")));
    let login = tab.visit(&grant);
    let Shown::Page { page: page @ Page::Login { username, .. }, .. } = &login else { panic!("{login:?}") };
    assert_eq!(username, "bob");
    assert!(page.render().contains(r#"value="bob""#));
    let odd = tab.start(&pairs(&hinted("\"><script>")));
    let Shown::Page { page, .. } = tab.visit(&odd) else { panic!() };
    assert!(page.render().contains("value=\"&quot;&gt;&lt;script&gt;\""), "escaped");
    // The hint is only a hint: alice signs in on bob's hinted page and is alice.
    tab.log_in(&grant, "alice", PASSWORD);
    let Shown::Page { page: Page::Consent { user_name, .. }, .. } = tab.visit(&grant) else { panic!() };
    assert_eq!(user_name, "alice (display)");

    // alice's session and a hint for bob: not adopted, the login page prefilled with bob.
    let other = tab.start(&pairs(&hinted("bob")));
    let Shown::Page { page: Page::Login { username, .. }, .. } = tab.visit(&other) else { panic!("the session was adopted") };
    assert_eq!(username, "bob");
    // A hint for alice herself: her session is adopted.
    let same = tab.start(&pairs(&hinted("alice")));
    let Shown::Page { page: Page::Consent { user_name, .. }, .. } = tab.visit(&same) else { panic!() };
    assert_eq!(user_name, "alice (display)");
    // prompt=none with a hint for someone else than the session's user: login_required.
    let mut silent = hinted("bob");
    silent.push(("prompt", "none".into()));
    let grant = tab.start(&pairs(&silent));
    assert_eq!(param(&client_redirect(&tab.visit(&grant)), "error"), Some("login_required"));
}

/// An EHR launch for `user` about patient p-1: the `launch` value the EHR opens the app with.
fn ehr_launch(server: &MemoryAuthServer, user: &str) -> String {
    let request = LaunchRequest::parse(&json!({"client_id": "ehr-app", "user": user, "patient": "p-1"}).to_string()).unwrap();
    let client = block_on(platform::ports::ClientRegistry::client(&server.clients, "ehr-app")).unwrap().unwrap();
    let now = platform::ports::Clock::now(server.clock.as_ref());
    block_on(launch::create(&request, &client, &server.urls, &server.keys.0, &FakeSigner, &server.random, now)).unwrap().unwrap().launch
}

fn ehr_request(launch: &str) -> Vec<(&'static str, String)> {
    let mut params = standalone("ehr-app", "launch openid fhirUser patient/*.rs");
    params.push(("launch", launch.into()));
    params
}

#[test]
fn ehr_launch_is_for_the_ehrs_user_once() {
    let server = signin_server();
    let launch = ehr_launch(&server, "alice");

    // Another user signs in: the right password, but not the launch's user.
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&ehr_request(&launch)));
    let back = client_redirect(&tab.log_in(&grant_id, "bob", PASSWORD));
    assert_eq!(param(&back, "error"), Some("access_denied"));
    assert_eq!(param(&back, "error_description"), Some("this launch was made for another user; sign in as that user, or open the app again from the EHR"));
    assert_eq!(param(&back, "state"), Some("st-1"));
    // The launch was used: a second authorization request with it is refused.
    let back = client_redirect(&Tab::new(&server).authorize(&pairs(&ehr_request(&launch))));
    assert_eq!(param(&back, "error"), Some("invalid_request"));
    assert_eq!(param(&back, "error_description"), Some("the launch value was already used; open the app again from the EHR"));

    // A new launch, and its user: no picker (the EHR chose the patient), consent, code.
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&ehr_request(&ehr_launch(&server, "alice"))));
    assert_eq!(tab.log_in(&grant_id, "alice", PASSWORD), next_step(&grant_id));
    let consent = tab.visit(&grant_id);
    let Shown::Page { page: Page::Consent { patient_label: Some(label), .. }, .. } = &consent else { panic!("{consent:?}") };
    assert_eq!(label, "Amy Shaw");
    let csrf = csrf_of(&consent);
    let mut form = vec![("interaction", grant_id.as_str()), ("csrf", csrf.as_str())];
    form.extend(["launch", "openid", "fhirUser", "patient/*.rs"].map(|s| ("scope", s)));
    tab.post("consent", &form);
    let back = client_redirect(&tab.visit(&grant_id));
    let mut call = exchange(param(&back, "code").unwrap(), VERIFIER);
    call.form.as_mut().unwrap()[4].1 = "ehr-app".into();
    let (tokens, body) = tokens(&server, &call);
    assert_eq!(tokens.context.patient.as_deref(), Some("p-1"));
    assert_eq!(body.get("need_patient_banner"), None, "the EHR shows the patient");
}

#[test]
fn consent_denied_redirects_access_denied() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid patient/*.rs")));
    tab.log_in(&grant_id, "alice", PASSWORD);
    let csrf = csrf_of(&tab.visit(&grant_id));
    let back = client_redirect(&tab.post("consent", &[("interaction", &grant_id), ("csrf", &csrf), ("decision", "deny")]));
    assert_eq!(
        back,
        [("error", "access_denied"), ("error_description", "the user denied access"), ("state", "st-1"), ("iss", "https://ehr.example")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    // The grant is closed: nothing more happens on it.
    let Shown::Message { status: 404, .. } = tab.visit(&grant_id) else { panic!() };
}

#[test]
fn a_form_without_the_grants_csrf_token_or_from_another_browser_is_refused() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid patient/*.rs")));
    login_csrf(&tab.visit(&grant_id));
    let refused = tab.post("login", &[("interaction", &grant_id), ("csrf", "forged"), ("username", "alice"), ("password", PASSWORD)]);
    let csrf_refusal = "the form has expired or was not sent by this page; reload and try again";
    assert_eq!(refused, Shown::Message { status: 403, title: "This sign-in cannot continue", message: csrf_refusal.into() });
    assert!(tab.browser.borrow().session.is_none(), "no password work, no session");
    assert_eq!(server.accounts.state("alice").sessions.len(), 0);

    // Another browser with the right token: not the browser that started.
    let csrf = login_csrf(&tab.visit(&grant_id));
    let other = Tab::new(&server);
    other.browser.borrow_mut().binding = Some("b".repeat(43));
    let refused = other.post("login", &[("interaction", &grant_id), ("csrf", &csrf), ("username", "alice"), ("password", PASSWORD)]);
    let Shown::Message { status: 403, message, .. } = refused else { panic!("{refused:?}") };
    assert_eq!(message, "this sign-in request was started in another browser");
    // And a browser without the binding cookie is told it needs cookies.
    let none = Tab::new(&server);
    let Shown::Message { status: 400, title: "Cookies needed", .. } = none.visit(&grant_id) else { panic!() };
}

#[test]
fn login_input_rules_and_throttling() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid patient/*.rs")));
    let csrf = login_csrf(&tab.visit(&grant_id));
    let attempt =
        |username: &str, password: &str| tab.post("login", &[("interaction", &grant_id), ("csrf", &csrf), ("username", username), ("password", password)]);
    let page = |shown: Shown| match shown {
        Shown::Page { status, page: Page::Login { error, username, .. }, retry_after, .. } => (status, error.unwrap_or_default(), username, retry_after),
        other => panic!("{other:?}"),
    };
    assert_eq!(page(attempt("  alice ", "")), (400, "Enter your username and password.".into(), "alice".into(), None));
    assert_eq!(page(attempt(&"a".repeat(65), PASSWORD)).0, 400);
    // Unknown users and wrong passwords read the same.
    assert_eq!(page(attempt("nobody", PASSWORD)), (401, "The username or password is not correct.".into(), "nobody".into(), None));
    for _ in 0..platform::accounts::FREE_FAILURES {
        assert_eq!(page(attempt("alice", "wrong")).0, 401);
    }
    // The source is locked now, even with the right password.
    let locked = page(attempt("alice", PASSWORD));
    assert_eq!(locked, (429, "Too many failed attempts. Try again in 60 seconds.".into(), "alice".into(), Some(60)));
    server.clock.advance(60);
    assert_eq!(attempt("alice", PASSWORD), next_step(&grant_id));
}

#[test]
fn a_login_over_the_edge_rate_limit_gets_the_login_page_with_the_message_and_no_password_work() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid patient/*.rs")));
    let csrf = login_csrf(&tab.visit(&grant_id));
    let limited = tab.post("login-rate-limited", &[("interaction", &grant_id), ("csrf", &csrf), ("username", "alice"), ("password", PASSWORD)]);
    let Shown::Page { status, page: Page::Login { error, username, csrf: again, .. }, retry_after, .. } = limited else { panic!("{limited:?}") };
    assert_eq!(
        (status, error.as_deref(), username.as_str(), retry_after),
        (429, Some("Too many sign-in attempts from your network. Try again in 10 seconds."), "alice", Some(10))
    );
    assert_eq!(again, csrf, "the same form, to try again later");
    assert!(tab.browser.borrow().session.is_none());
    assert_eq!(server.accounts.state("alice").sessions.len(), 0);
    // A form that is not this browser's pending authorization's: the message alone.
    let forged = tab.post("login-rate-limited", &[("interaction", &grant_id), ("csrf", "forged"), ("username", "alice"), ("password", PASSWORD)]);
    let message = "Too many sign-in attempts from your network. Try again in 10 seconds.";
    assert_eq!(forged, Shown::Message { status: 429, title: "Too many sign-in attempts", message: message.into() });
}

#[test]
fn the_picker_refuses_a_patient_outside_the_users_reach() {
    let server = signin_server();
    let tab = Tab::new(&server);
    let grant_id = tab.start(&pairs(&standalone("app", "openid launch/patient patient/*.rs")));
    tab.log_in(&grant_id, "pat", PASSWORD);
    // A patient user is offered only their own record.
    let picker = tab.visit(&grant_id);
    let Shown::Page { page: Page::PatientPicker { patients, .. }, .. } = &picker else { panic!("{picker:?}") };
    assert_eq!(patients.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["p-2"]);
    let csrf = csrf_of(&picker);
    let not_allowed = Shown::Message { status: 403, title: "Not allowed", message: "You cannot open this patient's record.".into() };
    for patient in ["p-1", "p-404", "bad id"] {
        assert_eq!(tab.post("pick", &[("interaction", &grant_id), ("csrf", &csrf), ("patient", patient)]), not_allowed, "{patient}");
    }
    let Shown::Message { status: 400, .. } = tab.post("pick", &[("interaction", &grant_id), ("csrf", &csrf)]) else { panic!() };
    assert_eq!(tab.post("pick", &[("interaction", &grant_id), ("csrf", &csrf), ("patient", "p-2")]), next_step(&grant_id));
    let Shown::Page { page: Page::Consent { patient_label: Some(label), .. }, .. } = tab.visit(&grant_id) else { panic!() };
    assert_eq!(label, "Pat Ient");
}

#[test]
fn the_encounter_picker_and_a_remembered_consent() {
    let server = signin_server();
    let registration = json!({"client_id": "rem-app", "client_name": "Rem", "client_type": "public", "redirect_uris": [REDIRECT],
        "consent": "remember", "scope": "openid launch/patient launch/encounter patient/*.rs"});
    server.clients.add(platform::clients::ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap());
    server
        .patients
        .add_encounter("p-1", json!({"resourceType": "Encounter", "id": "e-1", "type": [{"text": "Checkup"}], "period": {"start": "2026-01-02T10:00:00Z"}}));
    server.patients.add_encounter("p-2", json!({"resourceType": "Encounter", "id": "e-9"}));
    let tab = Tab::new(&server);
    let scope = "openid launch/patient launch/encounter patient/*.rs";
    let pick_patient_p1 = |grant_id: &str| {
        let csrf = csrf_of(&tab.visit(grant_id));
        assert_eq!(tab.post("pick", &[("interaction", grant_id), ("csrf", &csrf), ("patient", "p-1")]), next_step(grant_id));
        let encounters = tab.visit(grant_id);
        let Shown::Page { page: Page::EncounterPicker { encounters: choices, .. }, .. } = &encounters else { panic!("{encounters:?}") };
        assert_eq!(choices, &[Choice { id: "e-1".into(), label: "Checkup".into(), detail: "2026-01-02".into() }]);
        csrf
    };

    let first = tab.start(&pairs(&standalone("rem-app", scope)));
    tab.log_in(&first, "alice", PASSWORD);
    let csrf = pick_patient_p1(&first);
    let not_the_patients = Shown::Message { status: 403, title: "Not allowed", message: "This encounter is not one of the patient's.".into() };
    assert_eq!(tab.post("pick", &[("interaction", &first), ("csrf", &csrf), ("encounter", "e-9")]), not_the_patients);
    assert_eq!(tab.post("pick", &[("interaction", &first), ("csrf", &csrf), ("encounter", "e-1")]), next_step(&first));
    let mut form = vec![("interaction", first.as_str()), ("csrf", csrf.as_str())];
    form.extend(["openid", "launch/patient", "launch/encounter", "patient/*.rs"].map(|s| ("scope", s)));
    assert_eq!(tab.post("consent", &form), next_step(&first));
    let code = client_redirect(&tab.visit(&first));
    let mut call = exchange(param(&code, "code").unwrap(), VERIFIER);
    call.form.as_mut().unwrap()[4].1 = "rem-app".into();
    let (tokens, body) = tokens(&server, &call);
    assert_eq!((tokens.context.patient.as_deref(), body["encounter"].as_str()), (Some("p-1"), Some("e-1")));

    // Again in the same browser: the session is adopted and the remembered consent covers
    // the request, so after the pickers the browser goes straight back with a code.
    let second = tab.start(&pairs(&standalone("rem-app", scope)));
    let csrf = pick_patient_p1(&second);
    assert_eq!(tab.post("pick", &[("interaction", &second), ("csrf", &csrf), ("encounter", "")]), next_step(&second));
    let back = client_redirect(&tab.visit(&second));
    assert!(param(&back, "code").is_some(), "{back:?}");
}
