//! The management page natively (`platform::manage` over the in-memory adapters): the grants
//! a signed-in user gave are listed while active, and revoking one from the page ends it at
//! the token endpoint and for the resource server; forms without the session's CSRF token, or
//! without a session, change nothing; a user cannot revoke another user's grant.

#[path = "flows/support.rs"]
mod support;

use futures::executor::block_on;
use platform::grant_handle::GrantHandle;
use platform::guard::BearerError;
use platform::manage::{self, FormRefusal, ManagePage};
use platform::oauth::memory::MemoryAuthServer;
use platform::signin::{Browser, PageForm};
use support::*;

fn manage_server() -> MemoryAuthServer {
    let server = server();
    add_users(&server, &[("alice", "Practitioner/pr-1"), ("bob", "Practitioner/pr-2")]);
    server
}

fn grant_of(code: &str) -> String {
    GrantHandle::parse(code).unwrap().grant_id().to_owned()
}

fn csrf(browser: &Browser) -> String {
    session_csrf(browser)
}

fn revoke(server: &MemoryAuthServer, browser: &Browser, pairs: &[(&str, &str)]) -> Result<(), FormRefusal> {
    block_on(manage::revoke(&server.signin_ports(), &page_form(browser, pairs))).unwrap()
}

fn listed(server: &MemoryAuthServer, browser: &Browser) -> Vec<String> {
    match block_on(manage::page(&server.signin_ports(), browser)).unwrap() {
        ManagePage::Grants { grants, .. } => grants.into_iter().map(|g| g.grant_id).collect(),
        ManagePage::SignIn => panic!("not signed in"),
    }
}

#[test]
fn the_page_lists_the_users_active_grants_newest_first_or_asks_to_sign_in() {
    let server = manage_server();
    assert_eq!(block_on(manage::page(&server.signin_ports(), &Browser::default())).unwrap(), ManagePage::SignIn);
    let alice = signed_in(&server, "alice");
    let code = authorize(&server, "app", "openid offline_access patient/*.rs");
    let first = grant_of(&code);
    tokens(&server, &exchange(&code, VERIFIER));
    let code = authorize(&server, "app", "patient/*.rs");
    let second = grant_of(&code);
    tokens(&server, &exchange(&code, VERIFIER));
    let ManagePage::Grants { user_name, csrf: token, .. } = block_on(manage::page(&server.signin_ports(), &alice)).unwrap() else { panic!() };
    assert_eq!((user_name.as_str(), token), ("alice (display)", csrf(&alice)));
    assert_eq!(listed(&server, &alice), vec![second, first]);
    assert!(listed(&server, &signed_in(&server, "bob")).is_empty(), "bob gave nothing");
}

#[test]
fn revoking_from_the_page_ends_the_grant_for_the_token_endpoint_and_the_resource_server() {
    let server = manage_server();
    let alice = signed_in(&server, "alice");
    let code = authorize(&server, "app", "openid fhirUser offline_access patient/*.rs");
    let grant_id = grant_of(&code);
    let (issued, _) = tokens(&server, &exchange(&code, VERIFIER));
    let refresh_token = issued.refresh_token.clone().unwrap();

    // Not the session's token, no session, an unreadable form: refused, nothing changes.
    assert_eq!(revoke(&server, &alice, &[("csrf", "forged"), ("grant", &grant_id)]), Err(FormRefusal::Forged));
    assert_eq!(revoke(&server, &alice, &[("grant", &grant_id)]), Err(FormRefusal::Forged));
    let bob = signed_in(&server, "bob");
    assert_eq!(revoke(&server, &alice, &[("csrf", &csrf(&bob)), ("grant", &grant_id)]), Err(FormRefusal::Forged), "another session's token");
    assert_eq!(revoke(&server, &Browser::default(), &[("csrf", &csrf(&alice)), ("grant", &grant_id)]), Err(FormRefusal::NoSession));
    let unreadable = PageForm { form: Err(platform::oauth::FormProblem::Unreadable), browser: alice.clone() };
    assert_eq!(block_on(manage::revoke(&server.signin_ports(), &unreadable)).unwrap(), Err(FormRefusal::Unreadable));
    // Bob's valid form naming alice's grant: not on his list, so not revoked.
    assert_eq!(revoke(&server, &bob, &[("csrf", &csrf(&bob)), ("grant", &grant_id)]), Ok(()));
    assert!(bearer(&server, &issued.access_token).is_ok());
    assert_eq!(listed(&server, &alice), vec![grant_id.clone()]);

    assert_eq!(revoke(&server, &alice, &[("csrf", &csrf(&alice)), ("grant", &grant_id)]), Ok(()));
    assert!(listed(&server, &alice).is_empty());
    assert_eq!(refused(&server, &refresh(&refresh_token)), ("invalid_grant".into(), "the grant has been revoked".into(), None));
    assert!(matches!(bearer(&server, &issued.access_token), Err(BearerError::Invalid(m)) if m == "the access token has been revoked"));
}

#[test]
fn a_grant_ended_elsewhere_leaves_the_list() {
    let server = manage_server();
    let alice = signed_in(&server, "alice");
    let code = authorize(&server, "app", "offline_access patient/*.rs");
    let (issued, _) = tokens(&server, &exchange(&code, VERIFIER));
    assert_eq!(listed(&server, &alice).len(), 1);
    let revocation = form(&[("token", issued.refresh_token.as_deref().unwrap()), ("client_id", "app")]);
    block_on(platform::oauth::introspection::revoke(&server.ports(), &revocation)).unwrap();
    assert!(listed(&server, &alice).is_empty(), "revoked by the client");
}
