//! `GET /auth/sign-in?interaction={grant id}`: the automatic steps of a pending
//! authorization ([`grants::next_action`]: adopt a session, consent by policy, issue the code),
//! then the one page the user must act on, or the redirect to the client.

use super::authorization::client_error;
use super::password::session_user;
use super::{apply, bound, finish, view_pending, Browser, Page, Shown, SignInAnswer, SignInPorts, Step};
use crate::accounts::SessionHandle;
use crate::authorize;
use crate::fhir::store as fhir_store;
use crate::grant_handle::GrantHandle;
use crate::grants::{self, Action, Command, PendingAuthorization, Reply};
use crate::oauth::Failure;
use crate::pages::Choice;
use crate::secret::random_secret;
use url::Url;

/// How many patients the picker lists.
pub const PICKER_LIMIT: usize = 200;
/// How many encounters the encounter picker lists (and a picked one must be among).
pub const ENCOUNTER_LIMIT: usize = 50;

/// A visit to the grant's steps page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The `interaction` query parameter: the grant id.
    pub grant_id: Option<String>,
    pub browser: Browser,
}

/// The steps page.
pub async fn visit(ports: &SignInPorts<'_>, visit: Visit) -> Result<SignInAnswer, Failure> {
    finish(run(ports, visit).await.map(SignInAnswer::from))
}

/// What the automatic steps know so far.
struct Progress {
    session: Option<SessionHandle>,
    remembered: Option<bool>,
}

async fn run(ports: &SignInPorts<'_>, visit: Visit) -> Step<Shown> {
    let (grant_id, browser_hash) = bound(visit.grant_id.as_deref(), &visit.browser)?;
    let mut pending = view_pending(ports, &grant_id, &browser_hash).await?;
    let mut progress = Progress { session: visit.browser.session.as_deref().and_then(SessionHandle::parse), remembered: None };
    // Each pass takes one automatic step; a grant has at most four, so this ends.
    for _ in 0..8 {
        let command = match grants::next_action(&pending, progress.session.is_some(), progress.remembered) {
            Action::TrySession => match adopt_session(ports, &pending, &mut progress, &browser_hash).await? {
                Some(command) => command,
                None => continue,
            },
            Action::CheckRememberedConsent => {
                progress.remembered = Some(remembered_consent(ports, &pending).await?);
                continue;
            }
            Action::AutoConsent => Command::AutoConsent { browser_hash: browser_hash.clone() },
            Action::IssueCode => return issue_code(ports, &grant_id, &browser_hash).await,
            Action::Fail(code, description) => {
                let _ = ports.grants.apply(&grant_id, &Command::Deny { browser_hash: browser_hash.clone(), csrf: pending.csrf.clone() }).await?;
                return Ok(client_error(ports, &pending.request, code, description));
            }
            // The login page, prefilled with the client's `login_hint` (only prefilled).
            Action::ShowLogin => return login_page(ports, &grant_id, &pending, None, pending.request.login_hint.as_deref().unwrap_or(""), 200).await,
            Action::ShowPatientPicker => return patient_picker(ports, &grant_id, &pending).await,
            Action::ShowEncounterPicker => return encounter_picker(ports, &grant_id, &pending).await,
            Action::AskConsent => return consent_page(ports, &grant_id, &pending).await,
        };
        pending = match apply(ports, &grant_id, &command).await? {
            Reply::Pending { pending, .. } => *pending,
            _ => return Err(Failure::Unexpected("an automatic step left the pending authorization".into()).into()),
        };
    }
    Err(Failure::Unexpected("the pending authorization did not settle".into()).into())
}

/// The browser's session, if valid, recent enough for `max_age`, of the user a `login_hint`
/// names, and its user may complete this authorization (else the login page: the session is
/// set aside).
async fn adopt_session(ports: &SignInPorts<'_>, pending: &PendingAuthorization, progress: &mut Progress, browser_hash: &str) -> Step<Option<Command>> {
    let handle = progress.session.take().ok_or_else(|| Failure::Unexpected("no session".into()))?;
    let Some(user) = session_user(ports.accounts, ports.users, &handle).await? else { return Ok(None) };
    if !pending.may_adopt(&user, ports.clock.now()) || pending.may_complete(&user).is_err() {
        return Ok(None);
    }
    progress.session = Some(handle);
    Ok(Some(Command::AdoptSession { browser_hash: browser_hash.to_owned(), user }))
}

/// Whether the user remembered a consent that covers what may be granted.
async fn remembered_consent(ports: &SignInPorts<'_>, pending: &PendingAuthorization) -> Step<bool> {
    let user = pending.user.as_ref().ok_or_else(|| Failure::Unexpected("consent without user".into()))?;
    Ok(ports.accounts.consent_covers(&user.username, &pending.request.client_id, &pending.grantable().to_string()).await?)
}

/// The code, and the browser back to the client with it.
async fn issue_code(ports: &SignInPorts<'_>, grant_id: &str, browser_hash: &str) -> Step<Shown> {
    let code = GrantHandle::new(grant_id, random_secret(ports.random)?);
    let command = Command::IssueCode { browser_hash: browser_hash.to_owned(), code_hash: code.secret_hash() };
    match apply(ports, grant_id, &command).await? {
        Reply::CodeIssued { redirect_uri, state } => Ok(Shown::Redirect(authorize::code_redirect(&redirect_uri, &code.encode(), &state, ports.urls.issuer()))),
        _ => Err(Failure::Unexpected("IssueCode answered something else".into()).into()),
    }
}

/// A page of this authorization: its forms may end at the client's origin, and the EHRs the
/// settings name may frame it.
async fn shown(ports: &SignInPorts<'_>, pending: &PendingAuthorization, status: u16, page: Page, retry_after: Option<i64>) -> Step<Shown> {
    let frame_ancestors = ports.settings.settings().await?.ehr_origins;
    let form_targets = Url::parse(&pending.request.redirect_uri).map(|u| vec![u.origin().ascii_serialization()]).unwrap_or_default();
    Ok(Shown::Page { status, page, form_targets, frame_ancestors, retry_after })
}

/// The login page, with the error of a failed attempt.
pub(super) async fn login_page(
    ports: &SignInPorts<'_>,
    grant_id: &str,
    pending: &PendingAuthorization,
    error: Option<String>,
    username: &str,
    status: u16,
) -> Step<Shown> {
    login_page_after(ports, grant_id, pending, error, username, status, None).await
}

/// The login page for a locked source, which may try again after `retry_after` seconds.
pub(super) async fn login_page_after(
    ports: &SignInPorts<'_>,
    grant_id: &str,
    pending: &PendingAuthorization,
    error: Option<String>,
    username: &str,
    status: u16,
    retry_after: Option<i64>,
) -> Step<Shown> {
    let server_name = ports.settings.settings().await?.server_name;
    let page = Page::Login {
        interaction: grant_id.to_owned(),
        csrf: pending.csrf.clone(),
        client_name: pending.client_name.clone(),
        server_name,
        error,
        username: username.to_owned(),
    };
    shown(ports, pending, status, page, retry_after).await
}

/// The patients the user may choose from: a patient user only themselves.
async fn patient_picker(ports: &SignInPorts<'_>, grant_id: &str, pending: &PendingAuthorization) -> Step<Shown> {
    let user = pending.user.as_ref().ok_or_else(|| Failure::Unexpected("picker without user".into()))?;
    let patients = match user.patient_id() {
        Some(own) => ports.patients.read("Patient", own).await?.into_iter().collect(),
        None => ports.patients.list_patients(PICKER_LIMIT).await?,
    };
    let patients = patients
        .iter()
        .map(|p| Choice { id: p["id"].as_str().unwrap_or_default().to_owned(), label: fhir_store::patient_name(p), detail: fhir_store::patient_detail(p) })
        .collect();
    let page = Page::PatientPicker { interaction: grant_id.to_owned(), csrf: pending.csrf.clone(), client_name: pending.client_name.clone(), patients };
    shown(ports, pending, 200, page, None).await
}

/// The patient's encounters.
async fn encounter_picker(ports: &SignInPorts<'_>, grant_id: &str, pending: &PendingAuthorization) -> Step<Shown> {
    let patient = pending.patient().ok_or_else(|| Failure::Unexpected("encounter picker without patient".into()))?;
    let encounters = ports.patients.patient_encounters(patient, ENCOUNTER_LIMIT).await?;
    let encounters = encounters
        .iter()
        .map(|e| {
            let (label, date) = fhir_store::encounter_label(e);
            Choice { id: e["id"].as_str().unwrap_or_default().to_owned(), label, detail: date }
        })
        .collect();
    let page = Page::EncounterPicker { interaction: grant_id.to_owned(), csrf: pending.csrf.clone(), client_name: pending.client_name.clone(), encounters };
    shown(ports, pending, 200, page, None).await
}

/// What the user is asked to approve, about whom.
async fn consent_page(ports: &SignInPorts<'_>, grant_id: &str, pending: &PendingAuthorization) -> Step<Shown> {
    let user = pending.user.as_ref().ok_or_else(|| Failure::Unexpected("consent without user".into()))?;
    let patient_label = match pending.patient() {
        Some(id) => ports.patients.read("Patient", id).await?.map(|p| fhir_store::patient_name(&p)),
        None => None,
    };
    let page = Page::Consent {
        interaction: grant_id.to_owned(),
        csrf: pending.csrf.clone(),
        client_name: pending.client_name.clone(),
        user_name: user.display_name.clone(),
        patient_label,
        scopes: pending.grantable(),
    };
    shown(ports, pending, 200, page, None).await
}
