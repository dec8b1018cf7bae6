//! The sign-in pages' forms: `POST /auth/login`, `/auth/pick`, `/auth/consent`. Each reads
//! the form → finds this browser's pending authorization → checks the form's CSRF token
//! (before any password work; the grant checks it again on every command) → the step's own
//! checks → the grant's command → back to the steps page (or to the client).

use super::authorization::client_error;
use super::password::{check_password, login_source, Credentials, PasswordCheck, MISSING};
use super::steps::{login_page, login_page_after, ENCOUNTER_LIMIT};
use super::{apply, bound, finish, message, refused, steps_url, view_pending, PageForm, SetCookie, Shown, SignInAnswer, SignInPorts, Step, Stop};
use crate::clients::ConsentPolicy;
use crate::grants::{self, AuthenticatedUser, Command, GrantError, PendingAuthorization, Reply, Step as GrantStep};
use crate::oauth::Failure;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::OAuthErrorCode;

/// A page's form, once it is known to belong to this browser's pending authorization.
struct Posted {
    pairs: Vec<(String, String)>,
    grant_id: String,
    browser_hash: String,
    pending: PendingAuthorization,
}

impl Posted {
    fn field(&self, name: &str) -> Option<&str> {
        super::field(&self.pairs, name)
    }
}

/// The form → the browser's grant → the form's CSRF token.
async fn posted(ports: &SignInPorts<'_>, form: &PageForm) -> Step<Posted> {
    let Ok(pairs) = &form.form else { return Err(Stop::show(message(400, "Bad request", "The form could not be read."))) };
    let (grant_id, browser_hash) = bound(form.field("interaction"), &form.browser)?;
    let pending = view_pending(ports, &grant_id, &browser_hash).await?;
    if form.field("csrf") != Some(pending.csrf.as_str()) {
        return Err(Stop::show(refused(&GrantError::BadCsrf)));
    }
    Ok(Posted { pairs: pairs.clone(), grant_id, browser_hash, pending })
}

fn next_step(grant_id: &str) -> Step<SignInAnswer> {
    Ok(Shown::Redirect(steps_url(grant_id)).into())
}

/// `POST /auth/login`.
pub async fn login(ports: &SignInPorts<'_>, form: PageForm) -> Result<SignInAnswer, Failure> {
    finish(log_in(ports, &form).await)
}

async fn log_in(ports: &SignInPorts<'_>, form: &PageForm) -> Step<SignInAnswer> {
    let posted = posted(ports, form).await?;
    let (grant_id, pending) = (&posted.grant_id, &posted.pending);
    // A login is due at the login step, or again when the client asked for one (prompt=login,
    // max_age=0).
    if pending.step() != GrantStep::Login && !pending.request.forces_login() {
        return next_step(grant_id);
    }
    let credentials = Credentials::from_form(&posted.pairs);
    if !credentials.well_formed() {
        return Ok(login_page(ports, grant_id, pending, Some(MISSING.into()), &credentials.username, 400).await?.into());
    }
    let (cookie, user) = match check_password(ports.accounts, ports.users, &credentials, login_source(&form.browser)).await? {
        PasswordCheck::Accepted { cookie, user } => (cookie, user),
        refused @ PasswordCheck::Locked { retry_after } => {
            let (words, status) = refused.refusal().unwrap_or_default();
            return Ok(login_page_after(ports, grant_id, pending, Some(words), &credentials.username, status, Some(retry_after)).await?.into());
        }
        refused @ PasswordCheck::Rejected => {
            let (words, status) = refused.refusal().unwrap_or_default();
            return Ok(login_page(ports, grant_id, pending, Some(words), &credentials.username, status).await?.into());
        }
    };
    let shown = signed_in(ports, &posted, user).await?;
    Ok(SignInAnswer::from(shown).with(SetCookie::Session(cookie)))
}

/// `POST /auth/login` refused before any password work because its address is over the edge's
/// rate limit (`ops`): the login page again, with the message, 429 and `Retry-After`. A form
/// that is not this browser's pending authorization's gets the message alone (429 too).
pub async fn login_rate_limited(ports: &SignInPorts<'_>, form: PageForm, retry_after: u32) -> Result<SignInAnswer, Failure> {
    finish(login_limited(ports, &form, retry_after).await)
}

async fn login_limited(ports: &SignInPorts<'_>, form: &PageForm, retry_after: u32) -> Step<SignInAnswer> {
    let words = crate::ops::login_refusal(retry_after);
    let status = crate::ops::TOO_MANY_REQUESTS;
    let posted = match posted(ports, form).await {
        Ok(posted) => posted,
        Err(Stop::Show(_)) => return Err(Stop::show(message(status, "Too many sign-in attempts", &words))),
        Err(fail) => return Err(fail),
    };
    let username = Credentials::from_form(&posted.pairs).username;
    Ok(login_page_after(ports, &posted.grant_id, &posted.pending, Some(words), &username, status, Some(retry_after.into())).await?.into())
}

/// The grant takes the user — unless they may not complete this launch: then the authorization
/// ends here and the client hears `access_denied` (the session stays open either way).
async fn signed_in(ports: &SignInPorts<'_>, posted: &Posted, user: AuthenticatedUser) -> Step<Shown> {
    let (grant_id, browser_hash, csrf) = (&posted.grant_id, &posted.browser_hash, &posted.pending.csrf);
    let command = Command::Login { browser_hash: browser_hash.clone(), csrf: csrf.clone(), user };
    match ports.grants.apply(grant_id, &command).await? {
        Ok(_) => Ok(Shown::Redirect(steps_url(grant_id))),
        Err(e @ (GrantError::NotLaunchUser | GrantError::OtherPatient)) => {
            let _ = ports.grants.apply(grant_id, &Command::Deny { browser_hash: browser_hash.clone(), csrf: csrf.clone() }).await?;
            Ok(client_error(ports, &posted.pending.request, OAuthErrorCode::AccessDenied, &e.to_string()))
        }
        // Any other refusal: its page, without the session cookie.
        Err(e) => Err(Stop::show(refused(&e))),
    }
}

/// `POST /auth/pick`: a patient or an encounter from the pickers.
pub async fn pick(ports: &SignInPorts<'_>, form: PageForm) -> Result<SignInAnswer, Failure> {
    finish(picked(ports, &form).await)
}

async fn picked(ports: &SignInPorts<'_>, form: &PageForm) -> Step<SignInAnswer> {
    let posted = posted(ports, form).await?;
    let Some(user) = &posted.pending.user else { return next_step(&posted.grant_id) };
    let (browser_hash, csrf) = (posted.browser_hash.clone(), posted.pending.csrf.clone());
    let command = if let Some(patient) = posted.field("patient") {
        patient_within_reach(ports, user, patient).await?;
        Command::PickPatient { browser_hash, csrf, patient: patient.to_owned() }
    } else if let Some(encounter) = posted.field("encounter") {
        let encounter = Some(encounter.to_owned()).filter(|e| !e.is_empty());
        encounter_of_the_patient(ports, &posted.pending, encounter.as_deref()).await?;
        Command::PickEncounter { browser_hash, csrf, encounter }
    } else {
        return Err(Stop::show(message(400, "Bad request", "Choose a patient or an encounter.")));
    };
    apply(ports, &posted.grant_id, &command).await?;
    next_step(&posted.grant_id)
}

/// A patient that exists, and that the user may open (a patient user only themselves).
async fn patient_within_reach(ports: &SignInPorts<'_>, user: &AuthenticatedUser, patient: &str) -> Step<()> {
    let exists = crate::users::is_fhir_id(patient) && ports.patients.read("Patient", patient).await?.is_some();
    if !exists || !grants::may_pick_patient(user, patient) {
        return Err(Stop::show(message(403, "Not allowed", "You cannot open this patient's record.")));
    }
    Ok(())
}

/// No encounter, or one of the patient's.
async fn encounter_of_the_patient(ports: &SignInPorts<'_>, pending: &PendingAuthorization, encounter: Option<&str>) -> Step<()> {
    let (Some(chosen), Some(patient)) = (encounter, pending.patient()) else { return Ok(()) };
    let encounters = ports.patients.patient_encounters(patient, ENCOUNTER_LIMIT).await?;
    if !encounters.iter().any(|e| e["id"].as_str() == Some(chosen)) {
        return Err(Stop::show(message(403, "Not allowed", "This encounter is not one of the patient's.")));
    }
    Ok(())
}

/// `POST /auth/consent`: the ticked scopes, approve or deny.
pub async fn consent(ports: &SignInPorts<'_>, form: PageForm) -> Result<SignInAnswer, Failure> {
    finish(decided(ports, &form).await)
}

async fn decided(ports: &SignInPorts<'_>, form: &PageForm) -> Step<SignInAnswer> {
    let posted = posted(ports, form).await?;
    let (browser_hash, csrf) = (posted.browser_hash.clone(), posted.pending.csrf.clone());
    if posted.field("decision") == Some("deny") {
        apply(ports, &posted.grant_id, &Command::Deny { browser_hash, csrf }).await?;
        return Ok(client_error(ports, &posted.pending.request, OAuthErrorCode::AccessDenied, "the user denied access").into());
    }
    let approved: Vec<&str> = posted.pairs.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).collect();
    let approved = ScopeSet::parse(&approved.join(" ")).unwrap_or_default();
    let reply = apply(ports, &posted.grant_id, &Command::Consent { browser_hash, csrf, approved: approved.to_string() }).await?;
    remember(ports, &posted.pending, &reply).await?;
    next_step(&posted.grant_id)
}

/// A client whose policy is to remember consents: the user is not asked again for the same or
/// fewer scopes.
async fn remember(ports: &SignInPorts<'_>, before: &PendingAuthorization, reply: &Reply) -> Step<()> {
    let (Reply::Pending { pending: after, .. }, ConsentPolicy::Remember) = (reply, before.consent_policy) else { return Ok(()) };
    if let (Some(user), Some(granted)) = (&after.user, &after.granted_scope) {
        ports.accounts.remember_consent(&user.username, &after.request.client_id, granted).await?;
    }
    Ok(())
}
