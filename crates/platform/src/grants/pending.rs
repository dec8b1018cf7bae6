//! The pending authorization: the checked request, while the user signs in, picks the launch
//! context and consents. What step comes next ([`PendingAuthorization::step`]), what the sign-in does
//! about it ([`next_action`]), and how each form moves it on ([`apply`]) until the code is
//! issued or the user says no.

use super::{code, ct_eq, invalid_grant, AuthenticatedUser, Command, GrantError, GrantRecord, Reply};
use crate::authorize::AuthorizationRequest;
use crate::clients::ConsentPolicy;
use crate::launch::LaunchContext;
use crate::scope_policy::{self, Holder};
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::{Scope, ScopeSet};

/// How long a user has to log in, pick and consent.
pub const SIGN_IN_LIFETIME_SECS: i64 = 900;

/// A pending authorization: the checked request and what the user has done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub request: AuthorizationRequest,
    pub client_name: String,
    pub consent_policy: ConsentPolicy,
    /// The scopes the client may hold, when the request was made.
    pub allowed_scope: String,
    /// The EHR launch context, for an EHR launch.
    pub launch: Option<LaunchContext>,
    /// The EHR's user the launch was made for: only they may complete it.
    #[serde(default)]
    pub launch_user: Option<String>,
    /// SHA-256 of the browser-binding cookie: only the browser that started may continue.
    pub browser_hash: String,
    /// Whether the client is public: only then may a refresh come without client
    /// authentication (SMART 2.2 §2.0.9).
    #[serde(default)]
    pub public_client: bool,
    /// The anti-CSRF token every form of this sign-in carries.
    pub csrf: String,
    pub created_at: i64,
    pub user: Option<AuthenticatedUser>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub encounter_chosen: bool,
    pub granted_scope: Option<String>,
}

/// The next thing the user must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Login,
    PickPatient,
    PickEncounter,
    Consent,
    Complete,
}

impl PendingAuthorization {
    pub fn requested(&self) -> ScopeSet {
        ScopeSet::parse(&self.request.scope).unwrap_or_default()
    }

    /// What the user may approve: requested ∩ allowed, only what the server can enforce
    /// (see [`crate::scope_policy`]).
    pub fn grantable(&self) -> ScopeSet {
        scope_policy::grantable(&self.requested(), &ScopeSet::parse(&self.allowed_scope).unwrap_or_default(), Holder::Interactive)
    }

    /// Whether `user` may complete this authorization: the launch's own user if the EHR named
    /// one, and a patient user only about themselves, whatever the launch says.
    pub fn may_complete(&self, user: &AuthenticatedUser) -> Result<(), GrantError> {
        if self.launch_user.as_deref().is_some_and(|u| u != user.username) {
            return Err(GrantError::NotLaunchUser);
        }
        match (user.patient_id(), self.patient()) {
            (Some(own), Some(patient)) if own != patient => Err(GrantError::OtherPatient),
            _ => Ok(()),
        }
    }

    /// Whether a login session of `user` may sign them in here at `now`: not when the client
    /// asks for a fresh login (`prompt=login`, `max_age=0`), nor when the session's sign-in is
    /// older than `max_age`, nor when the `login_hint` names someone else (OpenID Connect Core
    /// §3.1.2.1).
    pub fn may_adopt(&self, user: &AuthenticatedUser, now: i64) -> bool {
        !self.request.forces_login() && self.request.accepts_auth_time(user.auth_time, now) && self.request.session_matches_hint(&user.username)
    }

    /// The refusal of the signed-in user, if any.
    pub(super) fn refused(&self) -> Option<GrantError> {
        self.user.as_ref().and_then(|u| self.may_complete(u).err())
    }

    fn launch_patient(&self) -> Option<&str> {
        self.launch.as_ref().and_then(|l| l.patient.as_deref())
    }

    pub fn step(&self) -> Step {
        let grantable = self.grantable();
        if self.user.is_none() {
            Step::Login
        } else if grantable.contains(&Scope::LaunchPatient) && self.launch_patient().is_none() && self.patient.is_none() {
            Step::PickPatient
        } else if grantable.contains(&Scope::LaunchEncounter) && self.launch.as_ref().and_then(|l| l.encounter.as_ref()).is_none() && !self.encounter_chosen {
            Step::PickEncounter
        } else if self.granted_scope.is_none() {
            Step::Consent
        } else {
            Step::Complete
        }
    }

    /// The patient the grant will be about: the EHR's, or the one picked.
    pub fn patient(&self) -> Option<&str> {
        self.launch_patient().or(self.patient.as_deref())
    }

    pub(super) fn check(&self, browser_hash: &str, csrf: Option<&str>, now: i64) -> Result<(), GrantError> {
        if now >= self.created_at + SIGN_IN_LIFETIME_SECS {
            return Err(GrantError::Expired);
        }
        if !ct_eq(&self.browser_hash, browser_hash) {
            return Err(GrantError::WrongBrowser);
        }
        match csrf {
            Some(csrf) if !ct_eq(&self.csrf, csrf) => Err(GrantError::BadCsrf),
            _ => Ok(()),
        }
    }
}

/// What the sign-in (`crate::signin`) does next for a pending authorization at its current step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check the browser's session cookie; call again with `session_available = false` if it
    /// is not valid.
    TrySession,
    ShowLogin,
    ShowPatientPicker,
    ShowEncounterPicker,
    /// Look up a remembered consent; call again with `remembered = Some(found)`.
    CheckRememberedConsent,
    AutoConsent,
    AskConsent,
    IssueCode,
    /// `prompt=none` and the user would have to interact (OpenID Connect Core §3.1.2.6).
    Fail(smart_protocol::OAuthErrorCode, &'static str),
}

/// Decides the next action (OpenID Connect `prompt`, the client's consent policy).
pub fn next_action(pending: &PendingAuthorization, session_available: bool, remembered: Option<bool>) -> Action {
    use smart_protocol::OAuthErrorCode as E;
    let prompt = pending.request.prompt;
    if let Some(refusal) = pending.refused() {
        let description = match refusal {
            GrantError::NotLaunchUser => "the launch was made for another user",
            _ => "a patient can only open their own record",
        };
        return Action::Fail(E::AccessDenied, description);
    }
    match pending.step() {
        Step::Login if session_available && !pending.request.forces_login() => Action::TrySession,
        Step::Login if prompt.none => Action::Fail(E::LoginRequired, "the user is not signed in"),
        Step::Login => Action::ShowLogin,
        Step::PickPatient | Step::PickEncounter if prompt.none => Action::Fail(E::InteractionRequired, "the user must choose the launch context"),
        Step::PickPatient => Action::ShowPatientPicker,
        Step::PickEncounter => Action::ShowEncounterPicker,
        Step::Consent if prompt.consent => Action::AskConsent,
        Step::Consent => match (pending.consent_policy, remembered) {
            (ConsentPolicy::PreApproved, _) | (ConsentPolicy::Remember, Some(true)) => Action::AutoConsent,
            (ConsentPolicy::Remember, None) => Action::CheckRememberedConsent,
            _ if prompt.none => Action::Fail(E::ConsentRequired, "the user has not approved this application"),
            _ => Action::AskConsent,
        },
        Step::Complete => Action::IssueCode,
    }
}

/// Whether `user` may open `patient_id`'s record in the picker: a patient user only their
/// own; other users any patient (their finer rights are the resource server's business).
pub fn may_pick_patient(user: &AuthenticatedUser, patient_id: &str) -> bool {
    user.patient_id().is_none_or(|own| own == patient_id)
}

pub(super) fn pending_reply(pending: &PendingAuthorization) -> Reply {
    Reply::Pending { pending: Box::new(pending.clone()), step: pending.step() }
}

/// Applies `command` to a pending authorization: each form is checked (the browser, its CSRF
/// token, the current step) before it moves the authorization on; the last step issues the
/// code ([`code::issue`]), a denial closes the grant.
pub(super) fn apply(mut i: PendingAuthorization, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    match command {
        Command::Start { .. } | Command::StartBackend { .. } => return Err(GrantError::AlreadyExists),
        Command::Exchange { .. } | Command::Refresh { .. } => return Err(invalid_grant("the authorization is not complete")),
        Command::Status => return Err(GrantError::Inactive),
        Command::Revoke { reason } => return Ok((GrantRecord::Closed { reason }, Reply::Revoked)),
        Command::View { browser_hash } => i.check(&browser_hash, None, now)?,
        Command::Login { browser_hash, csrf, user } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::Login && i.user.is_some() && !i.request.forces_login() {
                return Err(GrantError::WrongStep);
            }
            i.may_complete(&user)?;
            i.user = Some(user);
        }
        Command::AdoptSession { browser_hash, user } => {
            i.check(&browser_hash, None, now)?;
            // A session is no sign-in for prompt=login or max_age=0, nor one older than max_age.
            if i.step() != Step::Login || !i.may_adopt(&user, now) {
                return Err(GrantError::WrongStep);
            }
            i.may_complete(&user)?;
            i.user = Some(user);
        }
        Command::PickPatient { browser_hash, csrf, patient } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::PickPatient {
                return Err(GrantError::WrongStep);
            }
            if i.user.as_ref().is_some_and(|u| !may_pick_patient(u, &patient)) {
                return Err(GrantError::OtherPatient);
            }
            i.patient = Some(patient);
        }
        Command::PickEncounter { browser_hash, csrf, encounter } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::PickEncounter {
                return Err(GrantError::WrongStep);
            }
            i.encounter = encounter;
            i.encounter_chosen = true;
        }
        Command::Consent { browser_hash, csrf, approved } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::Consent {
                return Err(GrantError::WrongStep);
            }
            let approved = ScopeSet::parse(&approved).unwrap_or_default();
            // Narrowing merges constraints: keep only what can still be enforced.
            i.granted_scope = Some(scope_policy::holdable_only(&i.grantable().intersect(&approved), Holder::Interactive).to_string());
        }
        Command::AutoConsent { browser_hash } => {
            i.check(&browser_hash, None, now)?;
            if i.step() != Step::Consent {
                return Err(GrantError::WrongStep);
            }
            i.granted_scope = Some(i.grantable().to_string());
        }
        Command::Deny { browser_hash, csrf } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            let reply = Reply::Denied { redirect_uri: i.request.redirect_uri.clone(), state: i.request.state.clone() };
            return Ok((GrantRecord::Closed { reason: "denied by the user".into() }, reply));
        }
        Command::IssueCode { browser_hash, code_hash } => {
            i.check(&browser_hash, None, now)?;
            return code::issue(&i, code_hash, now);
        }
    }
    let reply = pending_reply(&i);
    Ok((GrantRecord::Pending(i), reply))
}

#[cfg(test)]
mod tests {
    use crate::authorize::Prompt;
    use crate::clients::ConsentPolicy;
    use crate::grants::test_support::*;
    use crate::grants::*;
    use crate::launch::LaunchContext;

    #[test]
    fn standalone_launch_walks_login_picker_consent_code() {
        let (record, reply) =
            apply(None, Command::Start { pending: Box::new(pending("launch/patient launch/encounter openid patient/*.rs", None)) }, 0).unwrap();
        assert!(matches!(reply, Reply::Pending { step: Step::Login, .. }));
        let (record, reply) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        assert!(matches!(reply, Reply::Pending { step: Step::PickPatient, .. }));
        let (record, reply) = run(record, Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p1".into() });
        assert!(matches!(reply, Reply::Pending { step: Step::PickEncounter, .. }));
        let (record, reply) = run(record, Command::PickEncounter { browser_hash: b(), csrf: t(), encounter: Some("e1".into()) });
        assert!(matches!(reply, Reply::Pending { step: Step::Consent, .. }));
        // The user unticks the resource scope.
        let (record, reply) = run(record, Command::Consent { browser_hash: b(), csrf: t(), approved: "launch/patient launch/encounter openid".into() });
        assert!(matches!(reply, Reply::Pending { step: Step::Complete, .. }));
        let (record, reply) = run(record, Command::IssueCode { browser_hash: b(), code_hash: "h".into() });
        assert_eq!(reply, Reply::CodeIssued { redirect_uri: "https://app.example/cb".into(), state: "st".into() });
        let GrantRecord::CodeIssued { grant, expires_at, .. } = record else { panic!() };
        assert_eq!(expires_at, 10 + CODE_LIFETIME_SECS);
        assert_eq!(grant.scope, "launch/patient launch/encounter openid");
        assert_eq!(grant.context.patient.as_deref(), Some("p1"));
        assert_eq!(grant.context.encounter.as_deref(), Some("e1"));
        assert_eq!(grant.context.need_patient_banner, Some(true));
        assert_eq!(grant.nonce.as_deref(), Some("n"));
    }

    #[test]
    fn ehr_launch_needs_no_picker_and_keeps_the_ehr_context() {
        let ctx = LaunchContext { patient: Some("p9".into()), intent: Some("reconcile".into()), ..LaunchContext::default() };
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("launch openid patient/*.rs", Some(ctx))) }, 0).unwrap();
        let (record, reply) = run(record, Command::AdoptSession { browser_hash: b(), user: user() });
        assert!(matches!(reply, Reply::Pending { step: Step::Consent, .. }));
        let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
        let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: "h".into() });
        let GrantRecord::CodeIssued { grant, .. } = record else { panic!() };
        assert_eq!(grant.scope, "launch openid patient/*.rs");
        assert_eq!(grant.context.patient.as_deref(), Some("p9"));
        assert_eq!(grant.context.intent.as_deref(), Some("reconcile"));
        assert_eq!(grant.context.need_patient_banner, None);
    }

    #[test]
    fn refuses_other_browsers_forged_forms_skipped_steps_and_late_users() {
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("launch/patient openid", None)) }, 0).unwrap();
        let err = |command| apply(Some(record.clone()), command, 10).unwrap_err();
        assert_eq!(err(Command::View { browser_hash: "other".into() }), GrantError::WrongBrowser);
        assert_eq!(err(Command::Login { browser_hash: b(), csrf: "forged".into(), user: user() }), GrantError::BadCsrf);
        assert_eq!(err(Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p".into() }), GrantError::WrongStep);
        assert_eq!(err(Command::IssueCode { browser_hash: b(), code_hash: "h".into() }), GrantError::WrongStep);
        assert_eq!(err(Command::Start { pending: Box::new(pending("openid", None)) }), GrantError::AlreadyExists);
        assert_eq!(apply(Some(record.clone()), Command::View { browser_hash: b() }, SIGN_IN_LIFETIME_SECS).unwrap_err(), GrantError::Expired);
        assert_eq!(apply(None, Command::View { browser_hash: b() }, 0).unwrap_err(), GrantError::NotFound);
    }

    #[test]
    fn prompt_login_refuses_a_session_and_deny_closes_the_grant() {
        let mut i = pending("openid", None);
        i.request.prompt.login = true;
        let (record, _) = apply(None, Command::Start { pending: Box::new(i) }, 0).unwrap();
        assert_eq!(apply(Some(record.clone()), Command::AdoptSession { browser_hash: b(), user: user() }, 1).unwrap_err(), GrantError::WrongStep);
        let (closed, reply) = run(record, Command::Deny { browser_hash: b(), csrf: t() });
        assert!(matches!(reply, Reply::Denied { .. }));
        assert_eq!(apply(Some(closed), Command::View { browser_hash: b() }, 1).unwrap_err(), GrantError::NotFound);
    }

    #[test]
    fn max_age_and_login_hint_decide_whether_a_session_signs_in() {
        // user() signed in at 5.
        let start = |max_age: Option<i64>, hint: Option<&str>| {
            let mut i = pending("openid", None);
            i.request.max_age = max_age;
            i.request.login_hint = hint.map(str::to_owned);
            apply(None, Command::Start { pending: Box::new(i) }, 0).unwrap().0
        };
        let adopt = |record: &GrantRecord, now| apply(Some(record.clone()), Command::AdoptSession { browser_hash: b(), user: user() }, now);
        let ten = start(Some(10), None);
        assert!(adopt(&ten, 15).is_ok(), "elapsed 10 is not greater than max_age 10");
        assert_eq!(adopt(&ten, 16).unwrap_err(), GrantError::WrongStep, "elapsed 11: sign in again");
        assert_eq!(adopt(&start(Some(0), None), 5).unwrap_err(), GrantError::WrongStep, "max_age=0 is prompt=login");
        assert!(adopt(&start(None, Some("u")), 100).is_ok());
        assert_eq!(adopt(&start(None, Some("someone-else")), 10).unwrap_err(), GrantError::WrongStep, "a hint for another user");
        // A fresh login always passes (its auth_time is now), max_age=0 included.
        let fresh = AuthenticatedUser { auth_time: 20, ..user() };
        assert!(apply(Some(start(Some(0), None)), Command::Login { browser_hash: b(), csrf: t(), user: fresh }, 20).is_ok());

        let GrantRecord::Pending(mut i) = start(Some(0), None) else { panic!() };
        assert_eq!(next_action(&i, true, None), Action::ShowLogin, "max_age=0 does not even look at the session");
        i.request.max_age = Some(60);
        assert_eq!(next_action(&i, true, None), Action::TrySession, "a session may be recent enough");
        assert!(i.may_adopt(&user(), 65) && !i.may_adopt(&user(), 66));
    }

    #[test]
    fn next_action_follows_prompt_and_consent_policy() {
        use smart_protocol::OAuthErrorCode as E;
        let mut i = pending("openid", None);
        assert_eq!(next_action(&i, true, None), Action::TrySession);
        assert_eq!(next_action(&i, false, None), Action::ShowLogin);
        i.request.prompt.none = true;
        assert_eq!(next_action(&i, false, None), Action::Fail(E::LoginRequired, "the user is not signed in"));
        i.user = Some(user());
        assert!(matches!(next_action(&i, false, None), Action::Fail(E::ConsentRequired, _)));
        i.consent_policy = ConsentPolicy::Remember;
        assert_eq!(next_action(&i, false, None), Action::CheckRememberedConsent);
        assert_eq!(next_action(&i, false, Some(true)), Action::AutoConsent);
        i.request.prompt = Prompt { consent: true, ..Prompt::default() };
        assert_eq!(next_action(&i, false, Some(true)), Action::AskConsent);
        i.consent_policy = ConsentPolicy::PreApproved;
        i.request.prompt = Prompt::default();
        assert_eq!(next_action(&i, false, None), Action::AutoConsent);
        i.request.prompt.login = true;
        i.user = None;
        assert_eq!(next_action(&i, true, None), Action::ShowLogin, "prompt=login ignores the session");
    }

    #[test]
    fn patient_users_pick_only_themselves() {
        let mut u = user();
        assert!(may_pick_patient(&u, "anyone"));
        u.fhir_user = "Patient/p1".into();
        assert!(may_pick_patient(&u, "p1"));
        assert!(!may_pick_patient(&u, "p2"));
    }

    #[test]
    fn a_launch_is_completed_only_by_its_user_and_a_patient_only_about_themselves() {
        let ctx = LaunchContext { patient: Some("p-b".into()), ..LaunchContext::default() };
        let mut i = pending("launch openid patient/*.rs", Some(ctx));
        i.launch_user = Some("u".into());
        let (record, _) = apply(None, Command::Start { pending: Box::new(i) }, 0).unwrap();
        let other = AuthenticatedUser { username: "someone".into(), ..user() };
        assert_eq!(
            apply(Some(record.clone()), Command::Login { browser_hash: b(), csrf: t(), user: other.clone() }, 1).unwrap_err(),
            GrantError::NotLaunchUser
        );
        assert_eq!(apply(Some(record.clone()), Command::AdoptSession { browser_hash: b(), user: other }, 1).unwrap_err(), GrantError::NotLaunchUser);
        assert!(apply(Some(record), Command::Login { browser_hash: b(), csrf: t(), user: user() }, 1).is_ok());

        // A patient user with a launch for another patient, whoever launched it.
        let ctx = LaunchContext { patient: Some("p-b".into()), ..LaunchContext::default() };
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("launch openid patient/*.rs", Some(ctx))) }, 0).unwrap();
        let ned = AuthenticatedUser { username: "ned".into(), fhir_user: "Patient/p-a".into(), ..user() };
        assert_eq!(apply(Some(record.clone()), Command::Login { browser_hash: b(), csrf: t(), user: ned.clone() }, 1).unwrap_err(), GrantError::OtherPatient);
        // A record that already holds such a user (written before the rule) never gets a code.
        let GrantRecord::Pending(mut stale) = record else { panic!() };
        stale.user = Some(ned.clone());
        stale.granted_scope = Some("launch openid patient/*.rs".into());
        assert_eq!(next_action(&stale, false, None), Action::Fail(smart_protocol::OAuthErrorCode::AccessDenied, "a patient can only open their own record"));
        let stale = GrantRecord::Pending(stale);
        assert_eq!(apply(Some(stale), Command::IssueCode { browser_hash: b(), code_hash: "h".into() }, 2).unwrap_err(), GrantError::OtherPatient);
        // Standalone: the picker refuses another patient in the state machine too.
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("launch/patient openid patient/*.rs", None)) }, 0).unwrap();
        let (record, _) = apply(Some(record), Command::Login { browser_hash: b(), csrf: t(), user: ned }, 1).unwrap();
        assert_eq!(
            apply(Some(record.clone()), Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p-b".into() }, 2).unwrap_err(),
            GrantError::OtherPatient
        );
        assert!(apply(Some(record), Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p-a".into() }, 2).is_ok());
    }

    #[test]
    fn unenforceable_scopes_are_never_granted_asked_remembered_or_forged() {
        let mut i = pending("openid patient/Observation.rs?category=laboratory&foo=bar patient/Observation.rs?category=laboratory", None);
        i.allowed_scope = "openid patient/Observation.rs?category=laboratory".into();
        assert_eq!(i.grantable().to_string(), "openid patient/Observation.rs?category=laboratory");
        i.user = Some(user());
        let (record, _) = apply(None, Command::Start { pending: Box::new(i) }, 0).unwrap();
        // A forged consent form asking for the wider scope.
        let (record, _) =
            run(record, Command::Consent { browser_hash: b(), csrf: t(), approved: "patient/Observation.rs?category=laboratory&foo=bar openid".into() });
        let GrantRecord::Pending(i) = record else { panic!() };
        assert_eq!(i.granted_scope.as_deref(), Some("openid"));
    }
}
