//! What the grant state machine's unit tests share: a pending authorization, its user, and a
//! code issued and presented.

use super::*;
use crate::authorize::{AuthorizationRequest, Prompt};
use crate::clients::ConsentPolicy;
use crate::launch::LaunchContext;

pub(super) fn pending(scope: &str, launch: Option<LaunchContext>) -> PendingAuthorization {
    PendingAuthorization {
        request: AuthorizationRequest {
            client_id: "app".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: scope.into(),
            state: "st".into(),
            code_challenge: "c".repeat(43),
            launch: None,
            nonce: Some("n".into()),
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
        },
        client_name: "App".into(),
        consent_policy: ConsentPolicy::Ask,
        allowed_scope: "launch launch/patient launch/encounter openid fhirUser offline_access online_access patient/*.rs".into(),
        launch,
        launch_user: None,
        browser_hash: "b".into(),
        public_client: true,
        csrf: "t".into(),
        created_at: 0,
        user: None,
        patient: None,
        encounter: None,
        encounter_chosen: false,
        granted_scope: None,
    }
}

pub(super) fn user() -> AuthenticatedUser {
    AuthenticatedUser { username: "u".into(), display_name: "U".into(), fhir_user: "Practitioner/1".into(), auth_time: 5, session_id: "s".into() }
}

pub(super) fn run(record: GrantRecord, command: Command) -> (GrantRecord, Reply) {
    apply(Some(record), command, 10).unwrap()
}

pub(super) fn b() -> String {
    "b".into()
}

pub(super) fn t() -> String {
    "t".into()
}

pub(super) fn issued(scope: &str) -> GrantRecord {
    let (record, _) = apply(None, Command::Start { pending: Box::new(pending(scope, None)) }, 0).unwrap();
    let (record, _) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
    let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
    let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: crate::secret::opaque_hash("code-secret") });
    record
}

/// RFC 7636 Appendix B's verifier; `pending()` uses a dummy challenge, so set it.
pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub(super) fn with_challenge(mut record: GrantRecord) -> GrantRecord {
    if let GrantRecord::CodeIssued { grant, .. } = &mut record {
        grant.code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into();
    }
    record
}

pub(super) fn exchange(verifier: &str, redirect: &str) -> Command {
    Command::Exchange {
        code_hash: crate::secret::opaque_hash("code-secret"),
        client_id: "app".into(),
        redirect_uri: Some(redirect.into()),
        code_verifier: verifier.into(),
        refresh_secret: "r1".into(),
        refresh_lifetime: 1000,
    }
}

pub(super) fn refresh_cmd(presented: &str, next: &str, grace_secs: i64, scope: Option<&str>) -> Command {
    Command::Refresh {
        presented_hash: crate::secret::opaque_hash(presented),
        client_id: None,
        next_secret: next.into(),
        grace_secs,
        scope: scope.map(str::to_owned),
    }
}
