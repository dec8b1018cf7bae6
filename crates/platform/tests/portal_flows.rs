//! The EHR launch portal natively (`platform::portal::{page, launch}` over the in-memory
//! adapters): who sees which patients, the refusals of a patient outside the user's reach and
//! of an encounter of another patient, forms without the session's CSRF token, and a launch
//! whose `launch` value the sign-in accepts for the user who made it only.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::oauth::memory::MemoryAuthServer;
use platform::portal::{self, PortalAnswer, PortalQuery, PortalView, ENCOUNTER_REFUSED, PATIENT_REFUSED, PORTAL_PATH};
use platform::signin::{self, AuthorizationCall, Browser, Page, SetCookie, Shown, SignInAnswer, Visit};
use serde_json::json;
use smart_protocol::pkce::CodeVerifier;
use support::*;
use url::Url;

fn portal_server() -> MemoryAuthServer {
    let server = server();
    add_users(&server, &[("alice", "Practitioner/pr-1"), ("bob", "Practitioner/pr-2"), ("pat", "Patient/p-2")]);
    server.patients.add_patient(json!({"resourceType": "Patient", "id": "p-1", "name": [{"given": ["Amy"], "family": "Shaw"}], "birthDate": "1987-02-20"}));
    server.patients.add_patient(json!({"resourceType": "Patient", "id": "p-2", "name": [{"given": ["Pat"], "family": "Ient"}]}));
    server.patients.add_encounter("p-1", json!({"resourceType": "Encounter", "id": "e-1", "status": "finished"}));
    server.patients.add_encounter("p-2", json!({"resourceType": "Encounter", "id": "e-2", "status": "finished"}));
    let registration = json!({"client_id": "ehr-app", "client_name": "EHR App", "client_type": "public", "redirect_uris": [REDIRECT],
        "launch_uri": "https://app.example/launch", "scope": "launch openid fhirUser patient/*.rs"});
    server.clients.add(platform::clients::ClientRegistration::parse(&registration.to_string()).unwrap().into_client().unwrap());
    server
}

fn page(server: &MemoryAuthServer, browser: &Browser, query: &[(&str, &str)]) -> PortalAnswer {
    let pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    block_on(portal::page(&server.signin_ports(), browser, &PortalQuery::parse(&pairs))).unwrap()
}

fn view(answer: PortalAnswer) -> PortalView {
    match answer {
        PortalAnswer::Page(view) => *view,
        other => panic!("not the portal page: {other:?}"),
    }
}

fn launch(server: &MemoryAuthServer, browser: &Browser, pairs: &[(&str, &str)]) -> PortalAnswer {
    block_on(portal::launch(&server.signin_ports(), &server.ports(), &page_form(browser, pairs))).unwrap()
}

fn refused(status: u16, title: &'static str, message: &str) -> PortalAnswer {
    PortalAnswer::Refused { status, title, message: message.to_owned() }
}

#[test]
fn each_user_sees_the_patients_within_reach_and_no_other() {
    let server = portal_server();
    assert_eq!(page(&server, &Browser::default(), &[]), PortalAnswer::SignIn);

    let alice = signed_in(&server, "alice");
    let directory = view(page(&server, &alice, &[]));
    assert_eq!((directory.status, directory.searchable, directory.total), (200, true, 2));
    assert_eq!(directory.csrf, session_csrf(&alice));
    assert!(directory.chosen.is_none() && directory.apps.is_empty());
    let chosen = view(page(&server, &alice, &[("patient", "p-1")]));
    let patient = chosen.chosen.as_ref().unwrap();
    assert_eq!((patient.patient.name.as_str(), patient.encounters.len()), ("Amy Shaw", 1));
    assert_eq!(patient.encounters[0].0, "e-1");
    assert_eq!(chosen.apps.iter().map(|a| a.client_id.as_str()).collect::<Vec<_>>(), vec!["ehr-app"]);
    assert!(chosen.csp().contains("https://app.example"));
    assert!(chosen.render().contains("data-patient-id=\"p-1\""));
    let missing = view(page(&server, &alice, &[("patient", "p-9")]));
    assert_eq!((missing.status, missing.error, missing.chosen), (403, Some(PATIENT_REFUSED), None));

    let pat = signed_in(&server, "pat");
    let own = view(page(&server, &pat, &[]));
    assert_eq!((own.searchable, own.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()), (false, vec!["p-2"]));
    let other = view(page(&server, &pat, &[("patient", "p-1")]));
    assert_eq!((other.status, other.error, other.chosen, other.apps), (403, Some(PATIENT_REFUSED), None, Vec::new()));
}

#[test]
fn launch_forms_are_refused_in_order() {
    let server = portal_server();
    let alice = signed_in(&server, "alice");
    let token = session_csrf(&alice);
    let form = |patient, encounter| vec![("csrf", token.as_str()), ("tab", "ehr-app"), ("patient", patient), ("encounter", encounter)];

    let unreadable = platform::signin::PageForm { form: Err(platform::oauth::FormProblem::NotAForm), browser: alice.clone() };
    assert_eq!(
        block_on(portal::launch(&server.signin_ports(), &server.ports(), &unreadable)).unwrap(),
        refused(400, "Bad request", "The form could not be read.")
    );
    assert_eq!(launch(&server, &Browser::default(), &form("p-1", "")), PortalAnswer::Redirect(PORTAL_PATH.into()));
    let forged = [("csrf", "forged"), ("tab", "ehr-app"), ("patient", "p-1")];
    let expired = "The form has expired or was not sent by this page; reload and try again.";
    assert_eq!(launch(&server, &alice, &forged), refused(403, "Not allowed", expired));
    let bob = signed_in(&server, "bob");
    assert_eq!(launch(&server, &bob, &form("p-1", "")), refused(403, "Not allowed", expired), "alice's token in bob's session");
    assert_eq!(launch(&server, &alice, &[("csrf", &token), ("patient", "p-1")]), refused(400, "Bad request", "Choose one app to open."));
    assert_eq!(launch(&server, &alice, &form("p-9", "")), refused(403, "Not allowed", PATIENT_REFUSED), "not on file");
    assert_eq!(launch(&server, &alice, &form("p-1", "e-2")), refused(403, "Not allowed", ENCOUNTER_REFUSED), "p-2's encounter");
    let unknown_app = [("csrf", token.as_str()), ("tab", "app"), ("patient", "p-1")];
    assert_eq!(launch(&server, &alice, &unknown_app), refused(400, "Bad request", "There is no such app to open."), "no launch_uri");

    let pat = signed_in(&server, "pat");
    let pats = session_csrf(&pat);
    assert_eq!(launch(&server, &pat, &[("csrf", &pats), ("tab", "ehr-app"), ("patient", "p-1")]), refused(403, "Not allowed", PATIENT_REFUSED));
    assert!(matches!(launch(&server, &pat, &[("csrf", &pats), ("tab", "ehr-app"), ("patient", "p-2"), ("encounter", "e-2")]), PortalAnswer::Redirect(_)));
}

#[test]
fn an_embedded_launch_draws_the_app_under_the_banner() {
    let server = portal_server();
    let alice = signed_in(&server, "alice");
    let token = session_csrf(&alice);
    let shown = view(launch(&server, &alice, &[("csrf", &token), ("embed", "ehr-app"), ("patient", "p-1"), ("encounter", "e-1"), ("q", "sh")]));
    assert_eq!((shown.status, shown.query.q.as_str(), shown.query.patient.as_deref()), (200, "sh", Some("p-1")));
    let (name, url) = shown.chosen.unwrap().embedded.unwrap();
    assert_eq!(name, "EHR App");
    assert!(url.starts_with("https://app.example/launch?iss="), "{url}");
}

/// A browser's cookies, kept across the sign-in's answers.
fn keep(browser: &mut Browser, answer: SignInAnswer) -> Shown {
    for cookie in answer.cookies {
        match cookie {
            SetCookie::Browser(value) => browser.binding = Some(value),
            SetCookie::Session(value) => browser.session = Some(value),
            SetCookie::ClearSession => browser.session = None,
        }
    }
    answer.shown
}

/// The app's authorization request with `launch`, then `username` logs in on the sign-in
/// page: what the sign-in answers.
fn sign_in_with(server: &MemoryAuthServer, launch: &str, username: &str) -> Shown {
    let mut browser = Browser { ip: "192.0.2.8".into(), ..Browser::default() };
    let challenge = CodeVerifier::parse(VERIFIER).unwrap().s256_challenge();
    let params = [
        ("response_type", "code"),
        ("client_id", "ehr-app"),
        ("redirect_uri", REDIRECT),
        ("scope", "launch openid fhirUser patient/*.rs"),
        ("state", "st-1"),
        ("aud", "https://ehr.example/fhir"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("launch", launch),
    ];
    let call = AuthorizationCall { params: Ok(params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), browser: browser.clone() };
    let Shown::Redirect(location) = keep(&mut browser, block_on(signin::authorize(&server.signin_ports(), call)).unwrap()) else { panic!("not to the steps") };
    let grant_id = location.strip_prefix("/auth/sign-in?interaction=").unwrap().to_owned();
    let visit = Visit { grant_id: Some(grant_id.clone()), browser: browser.clone() };
    let Shown::Page { page: Page::Login { csrf, .. }, .. } = keep(&mut browser, block_on(signin::visit(&server.signin_ports(), visit)).unwrap()) else {
        panic!("not the login page")
    };
    let form = page_form(&browser, &[("interaction", &grant_id), ("csrf", &csrf), ("username", username), ("password", USER_PASSWORD)]);
    keep(&mut browser, block_on(signin::login(&server.signin_ports(), form)).unwrap())
}

fn launch_value(answer: PortalAnswer) -> String {
    let PortalAnswer::Redirect(url) = answer else { panic!("not a redirect: {answer:?}") };
    let url = Url::parse(&url).unwrap();
    assert_eq!((url.host_str(), url.path()), (Some("app.example"), "/launch"));
    url.query_pairs().find(|(k, _)| k == "launch").unwrap().1.into_owned()
}

#[test]
fn a_portal_launch_is_accepted_by_the_sign_in_for_its_user_only() {
    let server = portal_server();
    let alice = signed_in(&server, "alice");
    let token = session_csrf(&alice);
    let form = [("csrf", token.as_str()), ("tab", "ehr-app"), ("patient", "p-1")];

    let bobs_try = sign_in_with(&server, &launch_value(launch(&server, &alice, &form)), "bob");
    let Shown::Redirect(back) = bobs_try else { panic!("{bobs_try:?}") };
    let query: Vec<(String, String)> = Url::parse(&back).unwrap().query_pairs().into_owned().collect();
    assert!(query.contains(&("error".into(), "access_denied".into())), "{back}");
    let described = "this launch was made for another user; sign in as that user, or open the app again from the EHR";
    assert!(query.contains(&("error_description".into(), described.into())), "{back}");

    let alices = sign_in_with(&server, &launch_value(launch(&server, &alice, &form)), "alice");
    let Shown::Redirect(next) = alices else { panic!("{alices:?}") };
    assert!(next.starts_with("/auth/sign-in?interaction="), "alice goes on to the next step: {next}");
}
