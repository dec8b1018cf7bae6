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
use crate::scope_policy::{self, Holder};
use crate::secret::Secret;
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
    /// The EHR's user the launch was made for: only they may complete it.
    #[serde(default)]
    pub launch_user: Option<String>,
    /// SHA-256 of the browser-binding cookie: only the browser that started may continue.
    pub browser_hash: String,
    /// Whether the client is public: only then may a refresh come without client
    /// authentication (SMART 2.2 §2.0.9).
    #[serde(default)]
    pub public_client: bool,
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
    #[serde(default)]
    pub public_client: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantRecord {
    Interaction(Interaction),
    CodeIssued {
        code_hash: String,
        expires_at: i64,
        grant: AuthorizationGrant,
    },
    /// The code was exchanged: tokens are out. A second exchange of the same code (its hash
    /// is kept) is a replay and revokes it; any other code is only refused.
    Active {
        grant: AuthorizationGrant,
        issued_at: i64,
        refresh: Option<RefreshState>,
        #[serde(default)]
        code_hash: Option<String>,
    },
    /// A backend service's access token (`client_creds`), so that it can be revoked.
    Backend {
        client_id: String,
        expires_at: i64,
    },
    /// The user said no, or the grant was revoked (replayed code, reused refresh token,
    /// revocation request, session ended).
    Closed {
        reason: String,
    },
}

/// The refresh-token chain of an active grant (RFC 9700 §4.14.2: rotation with reuse
/// detection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    pub current_hash: String,
    pub previous_hash: Option<String>,
    pub rotated_at: i64,
    /// The current token in clear, kept only for [`REFRESH_GRACE_SECS`] after a rotation so a
    /// second tab refreshing with the previous token at the same moment gets the same new one
    /// instead of revoking the grant.
    pub grace_secret: Option<Secret>,
    pub expires_at: i64,
    /// End of the grace window of the last rotation (`refresh_grace_secs` when it rotated).
    #[serde(default)]
    pub grace_until: i64,
}

impl RefreshState {
    fn grace_end(&self) -> i64 {
        // Records written before `grace_until` existed had the default window.
        if self.grace_until > 0 {
            self.grace_until
        } else {
            self.rotated_at + REFRESH_GRACE_SECS
        }
    }

    fn matches(&self, presented_hash: &str) -> (bool, bool) {
        let current = ct_eq(&self.current_hash, presented_hash);
        let previous = self.previous_hash.as_deref().is_some_and(|p| ct_eq(p, presented_hash));
        (current, previous)
    }
}

/// How long a rotated-out refresh token still works (returning the current one), by default;
/// the `refresh_grace_secs` setting changes it.
pub const REFRESH_GRACE_SECS: i64 = 30;

/// The longest access-token lifetime a client may register (`clients`: 60 to 86,400 s).
pub const MAX_ACCESS_TOKEN_SECS: i64 = 86_400;

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
    Start {
        interaction: Box<Interaction>,
    },
    View {
        browser_hash: String,
    },
    /// The user typed their password (the form's CSRF token is checked).
    Login {
        browser_hash: String,
        csrf: String,
        user: AuthenticatedUser,
    },
    /// A still-valid session of this browser logged the user in.
    AdoptSession {
        browser_hash: String,
        user: AuthenticatedUser,
    },
    PickPatient {
        browser_hash: String,
        csrf: String,
        patient: String,
    },
    PickEncounter {
        browser_hash: String,
        csrf: String,
        encounter: Option<String>,
    },
    Consent {
        browser_hash: String,
        csrf: String,
        approved: String,
    },
    /// Consent decided by policy (pre-approved client, or a remembered consent).
    AutoConsent {
        browser_hash: String,
    },
    Deny {
        browser_hash: String,
        csrf: String,
    },
    IssueCode {
        browser_hash: String,
        code_hash: String,
    },
    /// The token endpoint's `authorization_code` grant. `refresh_secret` is a fresh secret the
    /// grant keeps (hashed) if its scopes allow a refresh token.
    Exchange {
        code_hash: String,
        client_id: String,
        redirect_uri: Option<String>,
        code_verifier: Secret,
        refresh_secret: Secret,
        refresh_lifetime: i64,
    },
    /// The `refresh_token` grant, with the next secret of the chain and the narrower `scope`
    /// asked for, if any (checked before anything rotates).
    Refresh {
        presented_hash: String,
        client_id: Option<String>,
        next_secret: Secret,
        grace_secs: i64,
        #[serde(default)]
        scope: Option<String>,
    },
    /// Records a backend service's access token (a fresh grant id), until it expires.
    StartBackend {
        client_id: String,
        expires_at: i64,
    },
    /// Ends the grant (revocation, session end).
    Revoke {
        reason: String,
    },
    /// The active grant, for introspection and the resource server.
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Interaction {
        interaction: Box<Interaction>,
        step: Step,
    },
    CodeIssued {
        redirect_uri: String,
        state: String,
    },
    Denied {
        redirect_uri: String,
        state: String,
    },
    /// Tokens with `scope` may be issued for `grant`; `refresh_token` is the secret to hand
    /// out, if any.
    Tokens {
        grant: Box<AuthorizationGrant>,
        scope: String,
        refresh_token: Option<Secret>,
    },
    Active {
        grant: Box<AuthorizationGrant>,
        refresh_hash: Option<String>,
    },
    /// A backend service's token, still valid and not revoked.
    BackendActive {
        client_id: String,
    },
    Revoked,
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
    /// The token endpoint's `invalid_grant` (RFC 6749 §5.2), with the reason.
    #[error("{reason}")]
    InvalidGrant { reason: String },
    #[error("the grant is not active")]
    Inactive,
    /// A refresh without client authentication for a confidential client's grant.
    #[error("this client must authenticate")]
    ClientMustAuthenticate,
    /// The token endpoint's `invalid_scope`.
    #[error("{reason}")]
    InvalidScope { reason: String },
    /// The EHR made this launch for another user.
    #[error("this launch was made for another user; sign in as that user, or open the app again from the EHR")]
    NotLaunchUser,
    /// A patient user and a launch about another patient.
    #[error("a patient can only open their own record")]
    OtherPatient,
}

fn invalid_grant(reason: &str) -> GrantError {
    GrantError::InvalidGrant { reason: reason.to_owned() }
}

/// Whether a grant with these scopes gets a refresh token: `offline_access` outlives the
/// user's session, `online_access` ends with it (SMART App Launch 2.2 §3.1).
pub fn wants_refresh(scope: &str) -> bool {
    let scopes = ScopeSet::parse(scope).unwrap_or_default();
    scopes.contains(&Scope::OfflineAccess) || scopes.contains(&Scope::OnlineAccess)
}

/// Whether the grant's refresh tokens die with the user's login session.
pub fn bound_to_session(scope: &str) -> bool {
    let scopes = ScopeSet::parse(scope).unwrap_or_default();
    scopes.contains(&Scope::OnlineAccess) && !scopes.contains(&Scope::OfflineAccess)
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Interaction {
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

    /// The refusal of the signed-in user, if any.
    fn refused(&self) -> Option<GrantError> {
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
            public_client: self.public_client,
        })
    }
}

/// What the sign-in (`crate::signin`) does next for an interaction at its current step.
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
    if let Some(refusal) = interaction.refused() {
        let description = match refusal {
            GrantError::NotLaunchUser => "the launch was made for another user",
            _ => "a patient can only open their own record",
        };
        return Action::Fail(E::AccessDenied, description);
    }
    match interaction.step() {
        Step::Login if session_available && !prompt.login => Action::TrySession,
        Step::Login if prompt.none => Action::Fail(E::LoginRequired, "the user is not signed in"),
        Step::Login => Action::ShowLogin,
        Step::PickPatient | Step::PickEncounter if prompt.none => Action::Fail(E::InteractionRequired, "the user must choose the launch context"),
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

impl GrantRecord {
    /// When the record next needs tidying: the end of a refresh grace window (its clear-text
    /// copy of the current token is then dropped).
    pub fn next_cleanup(&self) -> Option<i64> {
        match self {
            GrantRecord::Active { refresh: Some(chain), .. } if chain.grace_secret.is_some() => Some(chain.grace_end()),
            _ => None,
        }
    }

    /// When nothing in the record can matter any more, so that its storage may be deleted (a
    /// missing record answers exactly as a closed one: inactive, `invalid_grant`, not found):
    /// a closed grant at once; an unfinished interaction, an unused code or a backend token
    /// when it expires; an active grant when its refresh chain and the access tokens it gave
    /// (at most [`MAX_ACCESS_TOKEN_SECS`] after the last issue) have expired.
    pub fn deletable_at(&self) -> i64 {
        match self {
            GrantRecord::Closed { .. } => 0,
            GrantRecord::Interaction(i) => i.created_at + INTERACTION_LIFETIME_SECS,
            GrantRecord::CodeIssued { expires_at, .. } | GrantRecord::Backend { expires_at, .. } => *expires_at,
            GrantRecord::Active { issued_at, refresh, .. } => match refresh {
                Some(chain) => chain.expires_at.max(chain.rotated_at + MAX_ACCESS_TOKEN_SECS),
                None => issued_at + MAX_ACCESS_TOKEN_SECS,
            },
        }
    }

    /// When the object should wake up next: the earlier of a cleanup and the deletion.
    pub fn next_alarm(&self) -> i64 {
        self.next_cleanup().map_or(self.deletable_at(), |at| at.min(self.deletable_at()))
    }

    /// Drops what is kept only for a while (the grace copy of a refresh token).
    pub fn cleanup(&mut self, now: i64) {
        if let GrantRecord::Active { refresh: Some(chain), .. } = self {
            if now >= chain.grace_end() {
                chain.grace_secret = None;
            }
        }
    }
}

fn interaction_reply(interaction: &Interaction) -> Reply {
    Reply::Interaction { interaction: Box::new(interaction.clone()), step: interaction.step() }
}

/// Applies `command` to the stored record (`None` when the grant is new). On success returns
/// the record to store and the reply; on error nothing changes.
///
/// Knowing a grant id (it starts every code and refresh token) proves nothing: only a
/// presented code or refresh token whose hash matches the stored one may change an issued
/// grant, revocation on replay included.
pub fn apply(record: Option<GrantRecord>, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    let closed = |reason: &str| GrantRecord::Closed { reason: reason.to_owned() };
    match (record, command) {
        (None, Command::Start { interaction }) => {
            let reply = interaction_reply(&interaction);
            Ok((GrantRecord::Interaction(*interaction), reply))
        }
        (None, Command::StartBackend { client_id, expires_at }) => {
            let reply = Reply::BackendActive { client_id: client_id.clone() };
            Ok((GrantRecord::Backend { client_id, expires_at }, reply))
        }
        (Some(_), Command::Start { .. } | Command::StartBackend { .. }) => Err(GrantError::AlreadyExists),
        (Some(_), Command::Revoke { reason }) => Ok((closed(&reason), Reply::Revoked)),
        (Some(GrantRecord::Interaction(interaction)), command) => step(interaction, command, now),
        (
            Some(GrantRecord::CodeIssued { code_hash, expires_at, grant }),
            Command::Exchange { code_hash: presented, client_id, redirect_uri, code_verifier, refresh_secret, refresh_lifetime },
        ) => {
            if !ct_eq(&code_hash, &presented) {
                return Err(invalid_grant("the code is not valid"));
            }
            if now >= expires_at {
                return Err(invalid_grant("the code has expired"));
            }
            if client_id != grant.client_id {
                return Err(invalid_grant("the code was issued to another client"));
            }
            if redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
                return Err(invalid_grant("redirect_uri does not match the authorization request"));
            }
            let verifier = smart_protocol::pkce::CodeVerifier::parse(code_verifier.expose()).map_err(|e| invalid_grant(&e.to_string()))?;
            if !ct_eq(&verifier.s256_challenge(), &grant.code_challenge) {
                return Err(invalid_grant("code_verifier does not match the code_challenge"));
            }
            let refresh = wants_refresh(&grant.scope).then(|| RefreshState {
                current_hash: crate::secret::opaque_hash(refresh_secret.expose()),
                previous_hash: None,
                rotated_at: now,
                grace_secret: None,
                expires_at: now + refresh_lifetime,
                grace_until: now,
            });
            // A grant stored before a scope rule existed issues only what may be held now.
            let scope = crate::scope_policy::refresh_scope(&grant.scope, None).map(|s| s.to_string()).unwrap_or_default();
            let reply = Reply::Tokens { grant: Box::new(grant.clone()), scope, refresh_token: refresh.as_ref().map(|_| refresh_secret) };
            Ok((GrantRecord::Active { grant, issued_at: now, refresh, code_hash: Some(code_hash) }, reply))
        }
        // A second exchange of the used code: a replay. Revoke what the first one issued
        // (RFC 6749 §4.1.2, RFC 9700 §4.2.4). Any other code is just not valid.
        (Some(GrantRecord::Active { code_hash, .. }), Command::Exchange { code_hash: presented, .. }) => {
            if code_hash.as_deref().is_some_and(|h| ct_eq(h, &presented)) {
                Ok((closed("authorization code replayed"), Reply::Revoked))
            } else {
                Err(invalid_grant("the code is not valid"))
            }
        }
        (
            Some(GrantRecord::Active { grant, issued_at, refresh, code_hash }),
            Command::Refresh { presented_hash, client_id, next_secret, grace_secs, scope },
        ) => {
            let Some(mut chain) = refresh else { return Err(invalid_grant("the grant has no refresh token")) };
            let (current, previous) = chain.matches(&presented_hash);
            if !current && !previous {
                return Err(invalid_grant("the refresh token is not valid"));
            }
            match client_id.as_deref() {
                Some(id) if id != grant.client_id => return Err(invalid_grant("the refresh token was issued to another client")),
                // Checked before anything rotates: an anonymous request must not rotate a
                // confidential client's token away from it.
                None if !grant.public_client => return Err(GrantError::ClientMustAuthenticate),
                _ => {}
            }
            if now >= chain.expires_at {
                return Ok((closed("refresh token expired"), Reply::Revoked));
            }
            let in_grace = now < chain.grace_end();
            let reissue = match (current, in_grace, chain.grace_secret.clone()) {
                (true, _, _) => None,
                (false, true, Some(current)) => Some(current),
                // A rotated-out token used again after the grace window: someone else holds
                // a copy. Revoke the whole grant.
                _ => return Ok((closed("refresh token reused"), Reply::Revoked)),
            };
            // Before anything rotates: a bad scope must not burn the chain.
            let scope = crate::scope_policy::refresh_scope(&grant.scope, scope.as_deref())
                .map_err(|e| GrantError::InvalidScope { reason: e.error_description.unwrap_or_default() })?
                .to_string();
            let refresh_token = match reissue {
                Some(current) => current,
                None => {
                    chain.previous_hash = Some(chain.current_hash.clone());
                    chain.current_hash = crate::secret::opaque_hash(next_secret.expose());
                    chain.rotated_at = now;
                    chain.grace_until = now + grace_secs.max(0);
                    chain.grace_secret = Some(next_secret.clone());
                    next_secret
                }
            };
            let reply = Reply::Tokens { grant: Box::new(grant.clone()), scope, refresh_token: Some(refresh_token) };
            Ok((GrantRecord::Active { grant, issued_at, refresh: Some(chain), code_hash }, reply))
        }
        (Some(GrantRecord::Active { grant, issued_at, refresh, code_hash }), Command::Status) => {
            let refresh_hash = refresh.as_ref().filter(|r| now < r.expires_at).map(|r| r.current_hash.clone());
            let reply = Reply::Active { grant: Box::new(grant.clone()), refresh_hash };
            Ok((GrantRecord::Active { grant, issued_at, refresh, code_hash }, reply))
        }
        (Some(GrantRecord::Backend { client_id, expires_at }), Command::Status) if now < expires_at => {
            let reply = Reply::BackendActive { client_id: client_id.clone() };
            Ok((GrantRecord::Backend { client_id, expires_at }, reply))
        }
        (Some(GrantRecord::Closed { .. }), Command::Exchange { .. } | Command::Refresh { .. }) => Err(invalid_grant("the grant has been revoked")),
        (Some(GrantRecord::CodeIssued { .. } | GrantRecord::Backend { .. }), Command::Refresh { .. }) => Err(invalid_grant("the refresh token is not valid")),
        (Some(GrantRecord::Backend { .. }), Command::Exchange { .. }) => Err(invalid_grant("the code is not valid")),
        (_, Command::Status) => Err(GrantError::Inactive),
        _ => Err(GrantError::NotFound),
    }
}

fn step(mut i: Interaction, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    match command {
        Command::Start { .. } | Command::StartBackend { .. } => return Err(GrantError::AlreadyExists),
        Command::Exchange { .. } | Command::Refresh { .. } => return Err(invalid_grant("the authorization is not complete")),
        Command::Status => return Err(GrantError::Inactive),
        Command::Revoke { reason } => return Ok((GrantRecord::Closed { reason }, Reply::Revoked)),
        Command::View { browser_hash } => i.check(&browser_hash, None, now)?,
        Command::Login { browser_hash, csrf, user } => {
            i.check(&browser_hash, Some(&csrf), now)?;
            if i.step() != Step::Login && i.user.is_some() && !i.request.prompt.login {
                return Err(GrantError::WrongStep);
            }
            i.may_complete(&user)?;
            i.user = Some(user);
        }
        Command::AdoptSession { browser_hash, user } => {
            i.check(&browser_hash, None, now)?;
            if i.step() != Step::Login || i.request.prompt.login {
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
            if i.step() != Step::Complete {
                return Err(GrantError::WrongStep);
            }
            if let Some(refusal) = i.refused() {
                return Err(refusal);
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
        let (record, reply) =
            apply(None, Command::Start { interaction: Box::new(interaction("launch/patient launch/encounter openid patient/*.rs", None)) }, 0).unwrap();
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

    fn issued(scope: &str) -> GrantRecord {
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction(scope, None)) }, 0).unwrap();
        let (record, _) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
        let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: crate::secret::opaque_hash("code-secret") });
        record
    }

    /// RFC 7636 Appendix B's verifier; `interaction()` uses a dummy challenge, so set it.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn with_challenge(mut record: GrantRecord) -> GrantRecord {
        if let GrantRecord::CodeIssued { grant, .. } = &mut record {
            grant.code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into();
        }
        record
    }

    fn exchange(verifier: &str, redirect: &str) -> Command {
        Command::Exchange {
            code_hash: crate::secret::opaque_hash("code-secret"),
            client_id: "app".into(),
            redirect_uri: Some(redirect.into()),
            code_verifier: verifier.into(),
            refresh_secret: "r1".into(),
            refresh_lifetime: 1000,
        }
    }

    #[test]
    fn the_code_exchange_checks_pkce_redirect_client_and_expiry() {
        let record = with_challenge(issued("openid offline_access"));
        let bad = |command, now| match apply(Some(record.clone()), command, now) {
            Err(GrantError::InvalidGrant { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(bad(exchange(&"x".repeat(43), "https://app.example/cb"), 10).contains("code_verifier"));
        assert!(bad(exchange("short", "https://app.example/cb"), 10).contains("43"));
        assert!(bad(exchange(VERIFIER, "https://app.example/other"), 10).contains("redirect_uri"));
        assert!(bad(exchange(VERIFIER, "https://app.example/cb"), 10 + CODE_LIFETIME_SECS).contains("expired"));
        let Command::Exchange { code_hash, redirect_uri, code_verifier, refresh_secret, refresh_lifetime, .. } = exchange(VERIFIER, "https://app.example/cb")
        else {
            panic!()
        };
        let other_client = Command::Exchange { code_hash, client_id: "other".into(), redirect_uri, code_verifier, refresh_secret, refresh_lifetime };
        assert!(bad(other_client, 10).contains("another client"));
        let wrong_code = Command::Exchange {
            code_hash: "nope".into(),
            client_id: "app".into(),
            redirect_uri: Some("https://app.example/cb".into()),
            code_verifier: VERIFIER.into(),
            refresh_secret: "r".into(),
            refresh_lifetime: 1,
        };
        assert!(bad(wrong_code, 10).contains("not valid"));

        let (active, reply) = apply(Some(record), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let Reply::Tokens { refresh_token, grant, .. } = reply else { panic!() };
        assert_eq!(refresh_token.as_ref().map(Secret::expose), Some("r1"));
        assert_eq!(grant.scope, "openid offline_access");
        // The replay revokes the grant.
        let (revoked, reply) = apply(Some(active), exchange(VERIFIER, "https://app.example/cb"), 11).unwrap();
        assert_eq!(reply, Reply::Revoked);
        assert_eq!(apply(Some(revoked), Command::Status, 12).unwrap_err(), GrantError::Inactive);
    }

    #[test]
    fn no_refresh_token_without_offline_or_online_access() {
        let (_, reply) = apply(Some(with_challenge(issued("openid patient/*.rs"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: None, .. }));
    }

    #[test]
    fn refresh_rotates_tolerates_a_concurrent_tab_and_revokes_on_late_reuse() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let refresh = |record: &GrantRecord, presented: &str, next: &str, now| {
            apply(
                Some(record.clone()),
                Command::Refresh {
                    presented_hash: crate::secret::opaque_hash(presented),
                    client_id: None,
                    next_secret: next.into(),
                    grace_secs: REFRESH_GRACE_SECS,
                    scope: None,
                },
                now,
            )
        };
        let (r2, reply) = refresh(&active, "r1", "r2", 100).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"));
        // A second tab with r1 inside the grace window gets the same r2.
        let (r2b, reply) = refresh(&r2, "r1", "r3", 100 + REFRESH_GRACE_SECS - 1).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"));
        assert_eq!(r2b.next_cleanup(), Some(100 + REFRESH_GRACE_SECS));
        let mut cleaned = r2b.clone();
        cleaned.cleanup(100 + REFRESH_GRACE_SECS);
        assert!(!serde_json::to_string(&cleaned).unwrap().contains("\"r2\""), "the clear copy is dropped after the window");
        // r1 again after the window: reuse, the grant is revoked.
        let (closed, reply) = refresh(&r2, "r1", "r4", 100 + REFRESH_GRACE_SECS).unwrap();
        assert_eq!(reply, Reply::Revoked);
        assert!(matches!(refresh(&closed, "r2", "r5", 200), Err(GrantError::InvalidGrant { .. })));
        // Unknown tokens and other clients are invalid_grant without revoking.
        assert!(matches!(refresh(&r2, "nonsense", "x", 101), Err(GrantError::InvalidGrant { .. })));
        let other = apply(
            Some(r2.clone()),
            Command::Refresh {
                presented_hash: crate::secret::opaque_hash("r2"),
                client_id: Some("other".into()),
                next_secret: "x".into(),
                grace_secs: REFRESH_GRACE_SECS,
                scope: None,
            },
            101,
        );
        assert!(matches!(other, Err(GrantError::InvalidGrant { .. })));
        // A confidential client's grant never refreshes anonymously.
        let mut confidential = r2.clone();
        if let GrantRecord::Active { grant, .. } = &mut confidential {
            grant.public_client = false;
        }
        assert_eq!(refresh(&confidential, "r2", "x", 101).unwrap_err(), GrantError::ClientMustAuthenticate);
        // Expiry of the chain.
        assert_eq!(refresh(&r2, "r2", "x", 10 + 1000).unwrap().1, Reply::Revoked);
    }

    #[test]
    fn session_binding_follows_online_and_offline_access() {
        assert!(bound_to_session("openid online_access"));
        assert!(!bound_to_session("openid online_access offline_access"));
        assert!(wants_refresh("online_access") && wants_refresh("offline_access") && !wants_refresh("openid"));
    }

    #[test]
    fn a_code_is_issued_once() {
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("openid", None)) }, 0).unwrap();
        let (record, _) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
        let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: "h".into() });
        assert_eq!(apply(Some(record), Command::IssueCode { browser_hash: b(), code_hash: "h2".into() }, 11).unwrap_err(), GrantError::NotFound);
    }

    fn refresh_cmd(presented: &str, next: &str, grace_secs: i64, scope: Option<&str>) -> Command {
        Command::Refresh {
            presented_hash: crate::secret::opaque_hash(presented),
            client_id: None,
            next_secret: next.into(),
            grace_secs,
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn knowing_the_grant_id_revokes_nothing() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        // `{grant id}.anything` as a code: refused, the grant stays active.
        let mut bogus = exchange(VERIFIER, "https://app.example/cb");
        if let Command::Exchange { code_hash, .. } = &mut bogus {
            *code_hash = crate::secret::opaque_hash("anything");
        }
        assert!(matches!(apply(Some(active.clone()), bogus, 11), Err(GrantError::InvalidGrant { .. })));
        // ... and as a refresh token, even once the chain has expired.
        assert!(matches!(apply(Some(active.clone()), refresh_cmd("anything", "x", 30, None), 11), Err(GrantError::InvalidGrant { .. })));
        assert!(matches!(apply(Some(active.clone()), refresh_cmd("anything", "x", 30, None), 10 + 1000), Err(GrantError::InvalidGrant { .. })));
        assert!(matches!(apply(Some(active.clone()), Command::Status, 12), Ok((_, Reply::Active { .. }))));
        // The real code again is the replay that revokes.
        assert_eq!(apply(Some(active), exchange(VERIFIER, "https://app.example/cb"), 12).unwrap().1, Reply::Revoked);
    }

    #[test]
    fn a_bad_refresh_scope_is_refused_before_the_chain_rotates() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let err = apply(Some(active.clone()), refresh_cmd("r1", "r2", 30, Some("patient/*.cruds")), 20).unwrap_err();
        assert!(matches!(err, GrantError::InvalidScope { .. }), "{err:?}");
        // Nothing rotated (the error changes nothing): r1 still works, once.
        let (_, reply) = apply(Some(active), refresh_cmd("r1", "r2", 30, Some("openid")), 21).unwrap();
        assert!(matches!(reply, Reply::Tokens { ref scope, refresh_token: Some(ref t), .. } if scope == "openid" && t == "r2"));
    }

    #[test]
    fn debug_never_shows_a_verifier_or_a_refresh_secret() {
        let text = format!("{:?}", exchange(VERIFIER, "https://app.example/cb"));
        assert!(!text.contains(VERIFIER) && text.contains("[redacted]"), "{text}");
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let (rotated, reply) = apply(Some(active), refresh_cmd("r1", "next-s3cret", 30, None), 100).unwrap();
        let text = format!("{rotated:?} {reply:?} {:?}", refresh_cmd("r1", "next-s3cret", 30, None));
        assert!(!text.contains("next-s3cret"), "{text}");
    }

    #[test]
    fn a_grace_window_longer_than_the_default_is_kept() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let (mut r2, _) = apply(Some(active), refresh_cmd("r1", "r2", 120, None), 100).unwrap();
        assert_eq!(r2.next_cleanup(), Some(220), "the alarm waits for the configured window");
        r2.cleanup(100 + REFRESH_GRACE_SECS + 1);
        let (_, reply) = apply(Some(r2.clone()), refresh_cmd("r1", "r3", 120, None), 100 + 60).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"), "a second tab after 60 s of 120");
        r2.cleanup(220);
        assert_eq!(apply(Some(r2), refresh_cmd("r1", "r3", 120, None), 220).unwrap().1, Reply::Revoked);
    }

    #[test]
    fn a_launch_is_completed_only_by_its_user_and_a_patient_only_about_themselves() {
        let ctx = LaunchContext { patient: Some("p-b".into()), ..LaunchContext::default() };
        let mut i = interaction("launch openid patient/*.rs", Some(ctx));
        i.launch_user = Some("u".into());
        let (record, _) = apply(None, Command::Start { interaction: Box::new(i) }, 0).unwrap();
        let other = AuthenticatedUser { username: "someone".into(), ..user() };
        assert_eq!(
            apply(Some(record.clone()), Command::Login { browser_hash: b(), csrf: t(), user: other.clone() }, 1).unwrap_err(),
            GrantError::NotLaunchUser
        );
        assert_eq!(apply(Some(record.clone()), Command::AdoptSession { browser_hash: b(), user: other }, 1).unwrap_err(), GrantError::NotLaunchUser);
        assert!(apply(Some(record), Command::Login { browser_hash: b(), csrf: t(), user: user() }, 1).is_ok());

        // A patient user with a launch for another patient, whoever launched it.
        let ctx = LaunchContext { patient: Some("p-b".into()), ..LaunchContext::default() };
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("launch openid patient/*.rs", Some(ctx))) }, 0).unwrap();
        let ned = AuthenticatedUser { username: "ned".into(), fhir_user: "Patient/p-a".into(), ..user() };
        assert_eq!(apply(Some(record.clone()), Command::Login { browser_hash: b(), csrf: t(), user: ned.clone() }, 1).unwrap_err(), GrantError::OtherPatient);
        // A record that already holds such a user (written before the rule) never gets a code.
        let GrantRecord::Interaction(mut stale) = record else { panic!() };
        stale.user = Some(ned.clone());
        stale.granted_scope = Some("launch openid patient/*.rs".into());
        assert_eq!(next_action(&stale, false, None), Action::Fail(smart_protocol::OAuthErrorCode::AccessDenied, "a patient can only open their own record"));
        let stale = GrantRecord::Interaction(stale);
        assert_eq!(apply(Some(stale), Command::IssueCode { browser_hash: b(), code_hash: "h".into() }, 2).unwrap_err(), GrantError::OtherPatient);
        // Standalone: the picker refuses another patient in the state machine too.
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("launch/patient openid patient/*.rs", None)) }, 0).unwrap();
        let (record, _) = apply(Some(record), Command::Login { browser_hash: b(), csrf: t(), user: ned }, 1).unwrap();
        assert_eq!(
            apply(Some(record.clone()), Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p-b".into() }, 2).unwrap_err(),
            GrantError::OtherPatient
        );
        assert!(apply(Some(record), Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p-a".into() }, 2).is_ok());
    }

    #[test]
    fn unenforceable_scopes_are_never_granted_asked_remembered_or_forged() {
        let mut i = interaction("openid patient/Observation.rs?category=laboratory&foo=bar patient/Observation.rs?category=laboratory", None);
        i.allowed_scope = "openid patient/Observation.rs?category=laboratory".into();
        assert_eq!(i.grantable().to_string(), "openid patient/Observation.rs?category=laboratory");
        i.user = Some(user());
        let (record, _) = apply(None, Command::Start { interaction: Box::new(i) }, 0).unwrap();
        // A forged consent form asking for the wider scope.
        let (record, _) =
            run(record, Command::Consent { browser_hash: b(), csrf: t(), approved: "patient/Observation.rs?category=laboratory&foo=bar openid".into() });
        let GrantRecord::Interaction(i) = record else { panic!() };
        assert_eq!(i.granted_scope.as_deref(), Some("openid"));
    }

    #[test]
    fn a_backend_token_is_a_grant_that_can_be_revoked_and_expires() {
        let (record, reply) = apply(None, Command::StartBackend { client_id: "svc".into(), expires_at: 300 }, 0).unwrap();
        assert_eq!(reply, Reply::BackendActive { client_id: "svc".into() });
        assert_eq!(apply(Some(record.clone()), Command::Status, 299).unwrap().1, Reply::BackendActive { client_id: "svc".into() });
        assert_eq!(apply(Some(record.clone()), Command::Status, 300).unwrap_err(), GrantError::Inactive);
        assert!(matches!(apply(Some(record.clone()), refresh_cmd("x", "y", 30, None), 1), Err(GrantError::InvalidGrant { .. })));
        let (revoked, _) = apply(Some(record), Command::Revoke { reason: "by the client".into() }, 1).unwrap();
        assert_eq!(apply(Some(revoked), Command::Status, 2).unwrap_err(), GrantError::Inactive);
    }

    #[test]
    fn a_record_is_deletable_only_when_nothing_in_it_can_matter() {
        let (record, _) = apply(None, Command::Start { interaction: Box::new(interaction("openid", None)) }, 0).unwrap();
        assert_eq!(record.deletable_at(), INTERACTION_LIFETIME_SECS);
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert_eq!(active.deletable_at(), (10 + 1000).max(10 + MAX_ACCESS_TOKEN_SECS), "the last access token may live a day");
        let (rotated, _) = apply(Some(active), refresh_cmd("r1", "r2", 30, None), 500).unwrap();
        assert_eq!(rotated.deletable_at(), 500 + MAX_ACCESS_TOKEN_SECS);
        assert_eq!(rotated.next_alarm(), 530, "the grace cleanup comes first");
        let (no_refresh, _) = apply(Some(with_challenge(issued("openid"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert_eq!(no_refresh.deletable_at(), 10 + MAX_ACCESS_TOKEN_SECS);
        let (backend, _) = apply(None, Command::StartBackend { client_id: "svc".into(), expires_at: 300 }, 0).unwrap();
        assert_eq!(backend.deletable_at(), 300);
        let (closed, _) = apply(Some(backend), Command::Revoke { reason: "x".into() }, 1).unwrap();
        assert_eq!(closed.deletable_at(), 0);
        // A deleted record answers as the closed one did.
        assert_eq!(apply(None, Command::Status, 2).unwrap_err(), GrantError::Inactive);
        assert!(matches!(apply(None, refresh_cmd("r2", "r3", 30, None), 2), Err(GrantError::NotFound)));
        assert!(matches!(apply(None, exchange(VERIFIER, "https://app.example/cb"), 2), Err(GrantError::NotFound)));
    }
}
