//! One authorization grant, from the authorization request to the code (and, with the token
//! endpoint, to its tokens). It lives in one Durable Object per grant, addressed by the id
//! that starts the interaction handle and the code, so every step on it is strictly ordered:
//! a code is issued once, consumed once, and a second use is seen.
//!
//! [`apply`] is the whole state machine, pure: the Durable Object loads the record, applies a
//! [`Command`], stores the result and answers the [`Reply`].

use crate::authorize::AuthorizationRequest;
use crate::clients::ConsentPolicy;
use crate::launch::LaunchContext;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::{Scope, ScopeSet};
use subtle::ConstantTimeEq;

/// How long a user has to log in, pick and consent.
pub const INTERACTION_LIFETIME_SECS: i64 = 900;
/// How long an authorization code is valid (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_LIFETIME_SECS: i64 = 60;

/// The user the grant is for, as the login established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedUser {
    pub username: String,
    pub display_name: String,
    pub fhir_user: String,
    /// When the user actually typed their password (OpenID Connect `auth_time`).
    pub auth_time: i64,
    pub session_id: String,
}

impl AuthenticatedUser {
    pub fn patient_id(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
}

/// A pending authorization: the checked request and what the user has done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub request: AuthorizationRequest,
    pub client_name: String,
    pub consent_policy: ConsentPolicy,
    /// The scopes the client may hold, when the request was made.
    pub allowed_scope: String,
    /// The EHR launch context, for an EHR launch.
    pub launch: Option<LaunchContext>,
    /// SHA-256 of the browser-binding cookie: only the browser that started may continue.
    pub browser_hash: String,
    /// The anti-CSRF token every form of this interaction carries.
    pub csrf: String,
    pub created_at: i64,
    pub user: Option<AuthenticatedUser>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub encounter_chosen: bool,
    pub granted_scope: Option<String>,
}

/// What the token endpoint needs from a completed authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub user: AuthenticatedUser,
    pub context: LaunchContext,
    pub authorized_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantRecord {
    Interaction(Interaction),
    CodeIssued { code_hash: String, expires_at: i64, grant: AuthorizationGrant },
    /// The code was exchanged; a second exchange attempt is a replay.
    CodeUsed { grant: AuthorizationGrant, used_at: i64 },
    /// The user said no, or the grant was revoked.
    Closed { reason: String },
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Start { interaction: Box<Interaction> },
    View { browser_hash: String },
    /// The user typed their password (the form's CSRF token is checked).
    Login { browser_hash: String, csrf: String, user: AuthenticatedUser },
    /// A still-valid session of this browser logged the user in.
    AdoptSession { browser_hash: String, user: AuthenticatedUser },
    PickPatient { browser_hash: String, csrf: String, patient: String },
    PickEncounter { browser_hash: String, csrf: String, encounter: Option<String> },
    Consent { browser_hash: String, csrf: String, approved: String },
    /// Consent decided by policy (pre-approved client, or a remembered consent).
    AutoConsent { browser_hash: String },
    Deny { browser_hash: String, csrf: String },
    IssueCode { browser_hash: String, code_hash: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Interaction { interaction: Box<Interaction>, step: Step },
    CodeIssued { redirect_uri: String, state: String },
    Denied { redirect_uri: String, state: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum GrantError {
    #[error("this sign-in request does not exist or has finished")]
    NotFound,
    #[error("this sign-in request has expired; go back to the application and start again")]
    Expired,
    #[error("this sign-in request was started in another browser")]
    WrongBrowser,
    #[error("the form has expired or was not sent by this page; reload and try again")]
    BadCsrf,
    #[error("this step is not the current one")]
    WrongStep,
    #[error("the request already exists")]
    AlreadyExists,
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Interaction {
    pub fn requested(&self) -> ScopeSet {
        ScopeSet::parse(&self.request.scope).unwrap_or_default()
    }

    /// What the user may approve: requested ∩ allowed.
    pub fn grantable(&self) -> ScopeSet {
        self.requested().intersect(&ScopeSet::parse(&self.allowed_scope).unwrap_or_default())
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
        } else if grantable.contains(&Scope::LaunchEncounter)
            && self.launch.as_ref().and_then(|l| l.encounter.as_ref()).is_none()
            && !self.encounter_chosen
        {
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

    fn check(&self, browser_hash: &str, csrf: Option<&str>, now: i64) -> Result<(), GrantError> {
        if now >= self.created_at + INTERACTION_LIFETIME_SECS {
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

    fn grant(&self, now: i64) -> Option<AuthorizationGrant> {
        let user = self.user.clone()?;
        let scope = self.granted_scope.clone()?;
        let mut context = self.launch.clone().unwrap_or_default();
        let granted = ScopeSet::parse(&scope).unwrap_or_default();
        if context.patient.is_none() {
            context.patient = self.patient.clone();
            if context.patient.is_some() {
                // A standalone app has no EHR around it to show who the patient is.
                context.need_patient_banner = Some(true);
            }
        }
        if context.encounter.is_none() {
            context.encounter = self.encounter.clone();
        }
        if !granted.contains(&Scope::LaunchPatient) && !granted.contains(&Scope::Launch) {
            context.patient = None;
        }
        if !granted.contains(&Scope::LaunchEncounter) && !granted.contains(&Scope::Launch) {
            context.encounter = None;
        }
        Some(AuthorizationGrant {
            client_id: self.request.client_id.clone(),
            redirect_uri: self.request.redirect_uri.clone(),
            code_challenge: self.request.code_challenge.clone(),
            scope,
            nonce: self.request.nonce.clone(),
            user,
            context,
            authorized_at: now,
        })
    }
}

/// What the Worker does next for an interaction at its current step.
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
pub fn next_action(interaction: &Interaction, session_available: bool, remembered: Option<bool>) -> Action {
    use smart_protocol::OAuthErrorCode as E;
    let prompt = interaction.request.prompt;
    match interaction.step() {
        Step::Login if session_available && !prompt.login => Action::TrySession,
        Step::Login if prompt.none => Action::Fail(E::LoginRequired, "the user is not signed in"),
        Step::Login => Action::ShowLogin,
        Step::PickPatient | Step::PickEncounter if prompt.none => {
            Action::Fail(E::InteractionRequired, "the user must choose the launch context")
        }
        Step::PickPatient => Action::ShowPatientPicker,
        Step::PickEncounter => Action::ShowEncounterPicker,
        Step::Consent if prompt.consent => Action::AskConsent,
        Step::Consent => match (interaction.consent_policy, remembered) {
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

fn interaction_reply(interaction: &Interaction) -> Reply {
    Reply::Interaction { interaction: Box::new(interaction.clone()), step: interaction.step() }
}

/// Applies `command` to the stored record (`None` when the grant is new). On success returns
/// the record to store and the reply; on error nothing changes.
pub fn apply(record: Option<GrantRecord>, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    match (record, command) {
        (None, Command::Start { interaction }) => {
            let reply = interaction_reply(&interaction);
            Ok((GrantRecord::Interaction(*interaction), reply))
        }
        (Some(_), Command::Start { .. }) => Err(GrantError::AlreadyExists),
        (Some(GrantRecord::Interaction(interaction)), command) => step(interaction, command, now),
        _ => Err(GrantError::NotFound),
    }
}

fn step(mut i: Interaction, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    match command {
        Command::Start { .. } => return Err(GrantError::AlreadyExists),
        Command::View { browser_hash } => i.check(&browser_hash, None, now)?,
        Command::Login { browser_hash, csrf, user } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::Login && i.user.is_some() && !i.request.prompt.login {
                return Err(GrantError::WrongStep);
            }
            i.user = Some(user);
        }
        Command::AdoptSession { browser_hash, user } => {
            i.check(&browser_hash, None, now)?;
            if i.step() != Step::Login || i.request.prompt.login {
                return Err(GrantError::WrongStep);
            }
            i.user = Some(user);
        }
        Command::PickPatient { browser_hash, csrf, patient } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::PickPatient {
                return Err(GrantError::WrongStep);
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
            i.granted_scope = Some(i.grantable().intersect(&approved).to_string());
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
            if i.step() != Step::Complete {
                return Err(GrantError::WrongStep);
            }
            let grant = i.grant(now).ok_or(GrantError::WrongStep)?;
            let reply = Reply::CodeIssued { redirect_uri: grant.redirect_uri.clone(), state: i.request.state.clone() };
            return Ok((GrantRecord::CodeIssued { code_hash, expires_at: now + CODE_LIFETIME_SECS, grant }, reply));
        }
    }
    let reply = interaction_reply(&i);
    Ok((GrantRecord::Interaction(i), reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::Prompt;

    fn interaction(scope: &str, launch: Option<LaunchContext>) -> Interaction {
        Interaction {
            request: AuthorizationRequest {
                client_id: "app".into(),
                redirect_uri: "https://app.example/cb".into(),
                scope: scope.into(),
                state: "st".into(),
                code_challenge: "c".repeat(43),
                launch: None,
                nonce: Some("n".into()),
                prompt: Prompt::default(),
            },
            client_name: "App".into(),
            consent_policy: ConsentPolicy::Ask,
            allowed_scope: "launch launch/patient launch/encounter openid fhirUser patient/*.rs".into(),
            launch,
            browser_hash: "b".into(),
            csrf: "t".into(),
            created_at: 0,
            user: None,
            patient: None,
            encounter: None,
            encounter_chosen: false,
            granted_scope: None,
        }
    }

    fn user() -> AuthenticatedUser {
        AuthenticatedUser { username: "u".into(), display_name: "U".into(), fhir_user: "Practitioner/1".into(), auth_time: 5, session_id: "s".into() }
    }

    fn run(record: GrantRecord, command: Command) -> (GrantRecord, Reply) {
        apply(Some(record), command, 10).unwrap()
    }

    fn b() -> String {
        "b".into()
    }

    fn t() -> String {
        "t".into()
    }

    #[test]
    fn standalone_launch_walks_login_picker_consent_code() {
        let (record, reply) = apply(None, Command::Start { interaction: Box::new(interaction("launch/patient launch/encounter openid patient/*.rs", None)) }, 0).unwrap();
        assert!(matches!(reply, Reply::Interaction { step: Step::Login, .. }));
        let (record, reply) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        assert!(matches!(reply, Reply::Interaction { step: Step::PickPatient, .. }));
        let (record, reply) = run(record, Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p1".into() });
        assert!(matches!(reply, Reply::Interaction { step: Step::PickEncounter, .. }));
        let (record, reply) = run(record, Command::PickEncounter { browser_hash: b(), csrf: t(), encounter: Some("e1".into()) });
        assert!(matches!(reply, Reply::Interaction { step: Step::Consent, .. }));
        // The user unticks the resource scope.
        let (record, reply) = run(record, Command::Consent { browser_hash: b(), csrf: t(), approved: "launch/patient launch/encounter openid".into() });
        assert!(matches!(reply, Reply::Interaction { step: Step::Complete, .. }));
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
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("launch openid patient/*.rs", Some(ctx))) }, 0).unwrap();
        let (record, reply) = run(record, Command::AdoptSession { browser_hash: b(), user: user() });
        assert!(matches!(reply, Reply::Interaction { step: Step::Consent, .. }));
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
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("launch/patient openid", None)) }, 0).unwrap();
        let err = |command| apply(Some(record.clone()), command, 10).unwrap_err();
        assert_eq!(err(Command::View { browser_hash: "other".into() }), GrantError::WrongBrowser);
        assert_eq!(err(Command::Login { browser_hash: b(), csrf: "forged".into(), user: user() }), GrantError::BadCsrf);
        assert_eq!(err(Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p".into() }), GrantError::WrongStep);
        assert_eq!(err(Command::IssueCode { browser_hash: b(), code_hash: "h".into() }), GrantError::WrongStep);
        assert_eq!(err(Command::Start { interaction: Box::new(interaction("openid", None)) }), GrantError::AlreadyExists);
        assert_eq!(apply(Some(record.clone()), Command::View { browser_hash: b() }, INTERACTION_LIFETIME_SECS).unwrap_err(), GrantError::Expired);
        assert_eq!(apply(None, Command::View { browser_hash: b() }, 0).unwrap_err(), GrantError::NotFound);
    }

    #[test]
    fn prompt_login_refuses_a_session_and_deny_closes_the_grant() {
        let mut i = interaction("openid", None);
        i.request.prompt.login = true;
        let (record, _) = apply(None, Command::Start { interaction: Box::new(i) }, 0).unwrap();
        assert_eq!(apply(Some(record.clone()), Command::AdoptSession { browser_hash: b(), user: user() }, 1).unwrap_err(), GrantError::WrongStep);
        let (closed, reply) = run(record, Command::Deny { browser_hash: b(), csrf: t() });
        assert!(matches!(reply, Reply::Denied { .. }));
        assert_eq!(apply(Some(closed), Command::View { browser_hash: b() }, 1).unwrap_err(), GrantError::NotFound);
    }

    #[test]
    fn next_action_follows_prompt_and_consent_policy() {
        use smart_protocol::OAuthErrorCode as E;
        let mut i = interaction("openid", None);
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
    fn a_code_is_issued_once() {
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("openid", None)) }, 0).unwrap();
        let (record, _) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
        let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: "h".into() });
        assert_eq!(apply(Some(record), Command::IssueCode { browser_hash: b(), code_hash: "h2".into() }, 11).unwrap_err(), GrantError::NotFound);
    }
}
