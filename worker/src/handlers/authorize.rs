//! The authorization endpoint and the pages behind it: login, patient / encounter picker,
//! consent, then the redirect with the code. The flow's decisions are `platform::authorize`
//! and `platform::grants`; this module moves values between HTTP, cookies and the
//! Durable Objects.

use crate::adapters::fhir_store::Partitions;
use crate::adapters::webcrypto::{WebCryptoRandom, WebCryptoVerifier};
use crate::context::AppContext;
use crate::durable::account::{ConsentRequest, LoginRequest, SessionRequest};
use crate::durable::assertion_log::RecordRequest;
use crate::durable::rpc;
use crate::http::{self, AppError, FormError};
use crate::keyring::{self, now_secs};
use crate::{grant_status, registry, settings};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use platform::accounts::{LoginOutcome, LoginSource, SessionHandle, SESSION_LIFETIME_SECS};
use platform::authorize::{self, Checked, RedirectError};
use platform::fhir::store::{self as fhir_store, FhirStore};
use platform::grant_handle::GrantHandle;
use platform::grants::{self, Action, AuthenticatedUser, Command, GrantError, Interaction, Reply, Step};
use platform::launch;
use platform::pages::{self, Choice};
use platform::ports::Random;
use platform::secret::opaque_hash;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::{OAuthError, OAuthErrorCode};
use url::Url;
use worker::{Method, Request, Response};

const BROWSER_COOKIE: &str = "se_browser";
const SESSION_COOKIE: &str = "se_session";
/// How many patients the picker lists.
const PICKER_LIMIT: usize = 200;

fn random_token() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    WebCryptoRandom.fill(&mut bytes).map_err(AppError::internal)?;
    Ok(B64URL.encode(bytes))
}

fn is_https(ctx: &AppContext) -> bool {
    ctx.urls.issuer().starts_with("https://")
}

fn interaction_url(id: &str) -> String {
    format!("/auth/interaction?interaction={id}")
}

async fn apply(ctx: &AppContext, id: &str, command: &Command) -> Result<Result<Reply, GrantError>, AppError> {
    grant_status::apply(&ctx.env, id, command).await
}

fn grant_error_page(error: &GrantError) -> Response {
    let status = match error {
        GrantError::NotFound => 404,
        GrantError::WrongBrowser | GrantError::BadCsrf | GrantError::NotLaunchUser | GrantError::OtherPatient => 403,
        _ => 400,
    };
    http::error_page(status, "This sign-in cannot continue", &error.to_string())
}

/// The origin of the client's redirect URI: where a form submission may end up.
fn redirect_origin(interaction: &Interaction) -> Vec<String> {
    Url::parse(&interaction.request.redirect_uri).map(|u| vec![u.origin().ascii_serialization()]).unwrap_or_default()
}

async fn page(ctx: &AppContext, interaction: &Interaction, status: u16, body: String) -> Result<Response, AppError> {
    let frame_ancestors = settings::load(ctx).await?.ehr_origins;
    Ok(http::html(status, body, &pages::csp(&redirect_origin(interaction), &frame_ancestors)))
}

fn redirect_error(interaction: &Interaction, ctx: &AppContext, code: OAuthErrorCode, description: &str) -> Response {
    let error = RedirectError {
        redirect_uri: interaction.request.redirect_uri.clone(),
        state: Some(interaction.request.state.clone()),
        error: OAuthError::new(code, description),
    };
    http::see_other(&authorize::error_redirect(&error, ctx.urls.issuer()))
}

/// `GET|POST /auth/authorize`.
pub async fn authorize(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs: Vec<(String, String)> = if req.method() == Method::Post {
        match http::form(&mut req).await {
            Ok(pairs) => pairs,
            Err(FormError::WrongType) => {
                return Ok(http::error_page(415, "Bad request", "An authorization POST must be application/x-www-form-urlencoded."))
            }
            Err(_) => return Ok(http::error_page(400, "Bad request", "The authorization request could not be read.")),
        }
    } else {
        req.url()?.query_pairs().into_owned().collect()
    };
    let raw = match authorize::parse(pairs) {
        Ok(raw) => raw,
        Err(e) => return Ok(http::error_page(e.status, "Bad authorization request", &e.message)),
    };
    let client = registry::client(ctx, &raw.client_id).await?;
    let request = match authorize::check(&raw, client.as_ref(), &ctx.urls) {
        Checked::Page(e) => return Ok(http::error_page(e.status, "Bad authorization request", &e.message)),
        Checked::Redirect(e) => return Ok(http::see_other(&authorize::error_redirect(&e, ctx.urls.issuer()))),
        Checked::Valid(request) => request,
    };
    let Some(client) = client else { return Err(AppError::internal("checked request without client")) };
    let fail = |code: OAuthErrorCode, description: &str| {
        let error = RedirectError {
            redirect_uri: request.redirect_uri.clone(),
            state: Some(request.state.clone()),
            error: OAuthError::new(code, description),
        };
        http::see_other(&authorize::error_redirect(&error, ctx.urls.issuer()))
    };
    let launch = match &request.launch {
        None => None,
        Some(value) => {
            let ring = keyring::load(ctx).await?;
            let resolved = match launch::resolve(value, &client.client_id, &ctx.urls, &ring, &WebCryptoVerifier, now_secs()).await {
                Ok(resolved) => resolved,
                Err(e) => return Ok(fail(OAuthErrorCode::InvalidRequest, &e.to_string())),
            };
            // Single use: the first authorization request that presents the launch records it.
            let log = rpc::by_name(&ctx.env, "ASSERTIONS", &format!("launch:{}", client.client_id))?;
            let record = RecordRequest { jti: resolved.jti.clone(), exp: resolved.exp };
            if !rpc::call::<_, bool, serde_json::Value>(&log, "/record", &record).await?.unwrap_or(false) {
                return Ok(fail(OAuthErrorCode::InvalidRequest, &launch::LaunchUseError::AlreadyUsed.to_string()));
            }
            Some(resolved)
        }
    };

    let (browser_secret, new_browser) = match http::cookie(&req, BROWSER_COOKIE).filter(|c| c.len() == 43) {
        Some(secret) => (secret, false),
        None => (random_token()?, true),
    };
    let interaction = Interaction {
        client_name: client.client_name.clone(),
        consent_policy: client.consent,
        allowed_scope: client.allowed_scopes().to_string(),
        launch_user: launch.as_ref().and_then(|l| l.user.clone()),
        launch: launch.map(|l| l.context),
        browser_hash: opaque_hash(&browser_secret),
        public_client: client.client_type == platform::clients::ClientType::Public,
        csrf: random_token()?,
        created_at: now_secs(),
        user: None,
        patient: None,
        encounter: None,
        encounter_chosen: false,
        granted_scope: None,
        request,
    };
    let namespace = ctx.env.durable_object("GRANTS")?;
    let id = namespace.unique_id()?.to_string();
    match apply(ctx, &id, &Command::Start { interaction: Box::new(interaction) }).await? {
        Ok(_) => {}
        Err(e) => return Err(AppError::internal(format!("new grant refused its start: {e}"))),
    }
    let response = http::see_other(&interaction_url(&id));
    if new_browser {
        http::set_cookie(&response, BROWSER_COOKIE, &browser_secret, 400 * 24 * 3600, is_https(ctx));
    }
    Ok(response)
}

/// The interaction id and this browser's binding hash, or the page to show instead.
fn binding(req: &Request, id: Option<&str>) -> Result<(String, String), Response> {
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return Err(http::error_page(400, "Bad request", "The sign-in request is missing."));
    };
    let Some(browser) = http::cookie(req, BROWSER_COOKIE) else {
        return Err(http::error_page(400, "Cookies needed", "This sign-in needs cookies; allow them for this site and start again from the application."));
    };
    Ok((id.to_owned(), opaque_hash(&browser)))
}

/// `GET /auth/interaction?interaction=…`: runs the automatic steps, then shows the page the
/// user must act on, or redirects to the client.
pub async fn interaction(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let url = req.url()?;
    let id = url.query_pairs().find(|(k, _)| k == "interaction").map(|(_, v)| v.into_owned());
    let (id, browser_hash) = match binding(&req, id.as_deref()) {
        Ok(b) => b,
        Err(page) => return Ok(page),
    };
    let mut reply = match apply(ctx, &id, &Command::View { browser_hash: browser_hash.clone() }).await? {
        Ok(reply) => reply,
        Err(e) => return Ok(grant_error_page(&e)),
    };
    let session = http::cookie(&req, SESSION_COOKIE).and_then(|c| SessionHandle::parse(&c));
    let mut session_available = session.is_some();
    let mut remembered = None;
    // Each pass applies one automatic step; a grant has at most four, so this ends.
    for _ in 0..8 {
        let Reply::Interaction { interaction, .. } = &reply else { break };
        let interaction = interaction.as_ref().clone();
        let command = match grants::next_action(&interaction, session_available, remembered) {
            Action::TrySession => {
                let handle = session.clone().ok_or_else(|| AppError::internal("no session"))?;
                match adopt_session(ctx, &handle).await? {
                    // The session's user may not complete this launch: someone else may sign in.
                    Some(user) if interaction.may_complete(&user).is_err() => {
                        session_available = false;
                        continue;
                    }
                    Some(user) => Command::AdoptSession { browser_hash: browser_hash.clone(), user },
                    None => {
                        session_available = false;
                        continue;
                    }
                }
            }
            Action::CheckRememberedConsent => {
                let user = interaction.user.as_ref().ok_or_else(|| AppError::internal("consent without user"))?;
                let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &user.username)?;
                let request = ConsentRequest { client_id: interaction.request.client_id.clone(), scope: interaction.grantable().to_string() };
                remembered = Some(rpc::call::<_, bool, serde_json::Value>(&stub, "/consent/check", &request).await?.unwrap_or(false));
                continue;
            }
            Action::AutoConsent => Command::AutoConsent { browser_hash: browser_hash.clone() },
            Action::IssueCode => {
                let code = GrantHandle::new(id.as_str(), random_token()?);
                let command = Command::IssueCode { browser_hash: browser_hash.clone(), code_hash: code.secret_hash() };
                return match apply(ctx, &id, &command).await? {
                    Ok(Reply::CodeIssued { redirect_uri, state }) => {
                        Ok(http::see_other(&authorize::code_redirect(&redirect_uri, &code.encode(), &state, ctx.urls.issuer())))
                    }
                    Ok(_) => Err(AppError::internal("IssueCode answered something else")),
                    Err(e) => Ok(grant_error_page(&e)),
                };
            }
            Action::Fail(code, description) => {
                let _ = apply(ctx, &id, &Command::Deny { browser_hash: browser_hash.clone(), csrf: interaction.csrf.clone() }).await?;
                return Ok(redirect_error(&interaction, ctx, code, description));
            }
            Action::ShowLogin => return login_page(ctx, &id, &interaction, None, "", 200).await,
            Action::ShowPatientPicker => return patient_picker(ctx, &id, &interaction).await,
            Action::ShowEncounterPicker => return encounter_picker(ctx, &id, &interaction).await,
            Action::AskConsent => return consent_page(ctx, &id, &interaction).await,
        };
        reply = match apply(ctx, &id, &command).await? {
            Ok(reply) => reply,
            Err(e) => return Ok(grant_error_page(&e)),
        };
    }
    Err(AppError::internal("interaction did not settle"))
}

async fn adopt_session(ctx: &AppContext, handle: &SessionHandle) -> Result<Option<AuthenticatedUser>, AppError> {
    let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &handle.username)?;
    let request = SessionRequest { id: handle.id.clone(), secret: handle.secret.clone() };
    let Ok(Some(auth_time)) = rpc::call::<_, Option<i64>, serde_json::Value>(&stub, "/session/check", &request).await? else {
        return Ok(None);
    };
    let Some(user) = registry::user(ctx, &handle.username).await? else { return Ok(None) };
    Ok(Some(AuthenticatedUser {
        username: user.username,
        display_name: user.display_name,
        fhir_user: user.fhir_user,
        auth_time,
        session_id: handle.id.clone(),
    }))
}

async fn login_page(ctx: &AppContext, id: &str, interaction: &Interaction, error: Option<&str>, username: &str, status: u16) -> Result<Response, AppError> {
    let server_name = settings::load(ctx).await?.server_name;
    let body = pages::login_page(&pages::LoginPage {
        interaction: id,
        csrf: &interaction.csrf,
        client_name: &interaction.client_name,
        server_name: &server_name,
        error,
        username,
    });
    page(ctx, interaction, status, body).await
}

async fn patient_picker(ctx: &AppContext, id: &str, interaction: &Interaction) -> Result<Response, AppError> {
    let user = interaction.user.as_ref().ok_or_else(|| AppError::internal("picker without user"))?;
    let store = Partitions(&ctx.env);
    let patients = match user.patient_id() {
        Some(own) => store.read("Patient", own).await.map_err(AppError::internal)?.into_iter().collect(),
        None => store.list_patients(PICKER_LIMIT).await.map_err(AppError::internal)?,
    };
    let choices: Vec<Choice> = patients
        .iter()
        .map(|p| Choice {
            id: p["id"].as_str().unwrap_or_default().to_owned(),
            label: fhir_store::patient_name(p),
            detail: fhir_store::patient_detail(p),
        })
        .collect();
    page(ctx, interaction, 200, pages::patient_picker(id, &interaction.csrf, &interaction.client_name, &choices)).await
}

async fn encounter_picker(ctx: &AppContext, id: &str, interaction: &Interaction) -> Result<Response, AppError> {
    let patient = interaction.patient().ok_or_else(|| AppError::internal("encounter picker without patient"))?;
    let encounters = Partitions(&ctx.env).patient_encounters(patient, 50).await.map_err(AppError::internal)?;
    let choices: Vec<Choice> = encounters
        .iter()
        .map(|e| {
            let (label, date) = fhir_store::encounter_label(e);
            Choice { id: e["id"].as_str().unwrap_or_default().to_owned(), label, detail: date }
        })
        .collect();
    page(ctx, interaction, 200, pages::encounter_picker(id, &interaction.csrf, &interaction.client_name, &choices)).await
}

async fn consent_page(ctx: &AppContext, id: &str, interaction: &Interaction) -> Result<Response, AppError> {
    let user = interaction.user.as_ref().ok_or_else(|| AppError::internal("consent without user"))?;
    let patient_label = match interaction.patient() {
        Some(pid) => Partitions(&ctx.env).read("Patient", pid).await.map_err(AppError::internal)?.map(|p| fhir_store::patient_name(&p)),
        None => None,
    };
    let scopes = interaction.grantable();
    let body = pages::consent_page(&pages::ConsentPage {
        interaction: id,
        csrf: &interaction.csrf,
        client_name: &interaction.client_name,
        user_name: &user.display_name,
        patient_label: patient_label.as_deref(),
        scopes: &scopes,
    });
    page(ctx, interaction, 200, body).await
}

/// Reads a page's form and checks it belongs to this browser's interaction.
async fn form_interaction(req: &mut Request, ctx: &AppContext) -> Result<Result<(Vec<(String, String)>, String, String, Interaction), Response>, AppError> {
    let pairs = match http::form(req).await {
        Ok(pairs) => pairs,
        Err(_) => return Ok(Err(http::error_page(400, "Bad request", "The form could not be read."))),
    };
    let (id, browser_hash) = match binding(req, http::field(&pairs, "interaction")) {
        Ok(b) => b,
        Err(page) => return Ok(Err(page)),
    };
    let interaction = match apply(ctx, &id, &Command::View { browser_hash: browser_hash.clone() }).await? {
        Ok(Reply::Interaction { interaction, .. }) => *interaction,
        Ok(_) => return Ok(Err(grant_error_page(&GrantError::NotFound))),
        Err(e) => return Ok(Err(grant_error_page(&e))),
    };
    // Checked here too, before any password work; the grant checks it again on every step.
    if http::field(&pairs, "csrf") != Some(interaction.csrf.as_str()) {
        return Ok(Err(grant_error_page(&GrantError::BadCsrf)));
    }
    Ok(Ok((pairs, id, browser_hash, interaction)))
}

/// `POST /auth/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let (pairs, id, browser_hash, interaction) = match form_interaction(&mut req, ctx).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if interaction.step() != Step::Login && !interaction.request.prompt.login {
        return Ok(http::see_other(&interaction_url(&id)));
    }
    let username = http::field(&pairs, "username").unwrap_or("").trim().to_owned();
    let password = http::field(&pairs, "password").unwrap_or("").to_owned();
    if username.is_empty() || password.is_empty() || username.len() > 64 || password.len() > 1024 {
        return login_page(ctx, &id, &interaction, Some("Enter your username and password."), &username, 400).await;
    }
    let (cookie, user, auth_time) = match password_login(ctx, &username, password, login_source(&req)).await? {
        Ok(found) => found,
        Err(LoginFailure::Locked(retry_after)) => {
            let message = format!("Too many failed attempts. Try again in {retry_after} seconds.");
            let response = login_page(ctx, &id, &interaction, Some(&message), &username, 429).await?;
            let _ = response.headers().set("Retry-After", &retry_after.to_string());
            return Ok(response);
        }
        Err(LoginFailure::Rejected) => {
            return login_page(ctx, &id, &interaction, Some(LoginFailure::MESSAGE), &username, 401).await
        }
    };
    let session_id = SessionHandle::parse(&cookie).map(|h| h.id).unwrap_or_default();
    let authenticated = AuthenticatedUser {
        username: user.username,
        display_name: user.display_name,
        fhir_user: user.fhir_user,
        auth_time,
        session_id,
    };
    let command = Command::Login { browser_hash: browser_hash.clone(), csrf: interaction.csrf.clone(), user: authenticated };
    match apply(ctx, &id, &command).await? {
        Ok(_) => {}
        // The right password, but not a user who may complete this launch: the authorization
        // ends here, and the client hears access_denied.
        Err(e @ (GrantError::NotLaunchUser | GrantError::OtherPatient)) => {
            let _ = apply(ctx, &id, &Command::Deny { browser_hash, csrf: interaction.csrf.clone() }).await?;
            let response = redirect_error(&interaction, ctx, OAuthErrorCode::AccessDenied, &e.to_string());
            set_session_cookie(ctx, &response, &cookie);
            return Ok(response);
        }
        Err(e) => return Ok(grant_error_page(&e)),
    }
    let response = http::see_other(&interaction_url(&id));
    set_session_cookie(ctx, &response, &cookie);
    Ok(response)
}

/// `POST /auth/logout` (the management page's "Sign out", with its session-bound CSRF token):
/// ends this browser's session (and with it every `online_access` grant made in it) and
/// clears the cookie.
pub async fn logout(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs = http::form(&mut req).await.unwrap_or_default();
    if let Some(handle) = http::cookie(&req, SESSION_COOKIE).and_then(|c| SessionHandle::parse(&c)) {
        if http::field(&pairs, "csrf") != Some(platform::accounts::AccountState::csrf_for(&handle).as_str()) {
            return Ok(http::error_page(403, "Not allowed", "The sign-out form has expired or was not sent by this site; sign out from the management page."));
        }
        let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &handle.username)?;
        // Only the holder of the session's secret may end it.
        let request = SessionRequest { id: handle.id.clone(), secret: handle.secret.clone() };
        if let Ok(Some(_)) = rpc::call::<_, Option<i64>, serde_json::Value>(&stub, "/session/check", &request).await? {
            let _ = rpc::call::<_, bool, serde_json::Value>(&stub, "/session/end", &request).await?;
        }
    }
    let response = http::error_page(200, "Signed out", "You are signed out.");
    http::set_cookie(&response, SESSION_COOKIE, "", 0, is_https(ctx));
    Ok(response)
}

pub enum LoginFailure {
    Rejected,
    Locked(i64),
}

impl LoginFailure {
    /// The same words for an unknown user and a wrong password.
    pub const MESSAGE: &'static str = "The username or password is not correct.";
}

/// Where a login attempt comes from: the client's IP (set by Cloudflare, not by the client)
/// and this browser's binding cookie, for per-source throttling (`platform::accounts`).
pub fn login_source(req: &Request) -> LoginSource {
    LoginSource {
        ip: req.headers().get("CF-Connecting-IP").ok().flatten().unwrap_or_default(),
        browser_hash: http::cookie(req, BROWSER_COOKIE).filter(|c| c.len() == 43).map(|c| opaque_hash(&c)),
    }
}

/// Checks a password through the user's account object (throttling included) and returns the
/// new session cookie value, the user and the authentication time. An unknown username goes
/// to a shared object instead, so trying names creates no object per name.
pub async fn password_login(ctx: &AppContext, username: &str, password: String, source: LoginSource) -> Result<Result<(String, platform::users::User, i64), LoginFailure>, AppError> {
    let user = registry::user(ctx, username).await?;
    let unknown = user.is_none();
    let object = if unknown { platform::accounts::unknown_user_shard(username) } else { username.to_owned() };
    let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &object)?;
    let request = LoginRequest { username: username.to_owned(), user: user.clone(), password, source, unknown };
    let outcome: LoginOutcome = rpc::call::<_, _, serde_json::Value>(&stub, "/login", &request)
        .await?
        .map_err(|e| AppError::internal(format!("login: {e}")))?;
    Ok(match (outcome, user) {
        (LoginOutcome::LoggedIn { session, auth_time }, Some(user)) => Ok((session, user, auth_time)),
        (LoginOutcome::Locked { retry_after }, _) => Err(LoginFailure::Locked(retry_after)),
        _ => Err(LoginFailure::Rejected),
    })
}

/// Sets the session cookie on `response`.
pub fn set_session_cookie(ctx: &AppContext, response: &Response, value: &str) {
    http::set_cookie(response, SESSION_COOKIE, value, SESSION_LIFETIME_SECS, is_https(ctx));
}

/// The browser's session, if its cookie is valid: the handle and the user's name.
pub async fn current_session(req: &Request, ctx: &AppContext) -> Result<Option<(SessionHandle, AuthenticatedUser)>, AppError> {
    let Some(handle) = http::cookie(req, SESSION_COOKIE).and_then(|c| SessionHandle::parse(&c)) else { return Ok(None) };
    Ok(adopt_session(ctx, &handle).await?.map(|user| (handle, user)))
}

/// `POST /auth/pick`: a patient or an encounter from the pickers.
pub async fn pick(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let (pairs, id, browser_hash, interaction) = match form_interaction(&mut req, ctx).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let user = match &interaction.user {
        Some(user) => user.clone(),
        None => return Ok(http::see_other(&interaction_url(&id))),
    };
    let store = Partitions(&ctx.env);
    let csrf = interaction.csrf.clone();
    let command = if let Some(patient) = http::field(&pairs, "patient") {
        let exists = platform::users::is_fhir_id(patient) && store.read("Patient", patient).await.map_err(AppError::internal)?.is_some();
        if !exists || !grants::may_pick_patient(&user, patient) {
            return Ok(http::error_page(403, "Not allowed", "You cannot open this patient's record."));
        }
        Command::PickPatient { browser_hash, csrf, patient: patient.to_owned() }
    } else if let Some(encounter) = http::field(&pairs, "encounter") {
        let encounter = Some(encounter.to_owned()).filter(|e| !e.is_empty());
        if let (Some(chosen), Some(patient)) = (&encounter, interaction.patient()) {
            let encounters = store.patient_encounters(patient, 50).await.map_err(AppError::internal)?;
            if !encounters.iter().any(|e| e["id"].as_str() == Some(chosen)) {
                return Ok(http::error_page(403, "Not allowed", "This encounter is not one of the patient's."));
            }
        }
        Command::PickEncounter { browser_hash, csrf, encounter }
    } else {
        return Ok(http::error_page(400, "Bad request", "Choose a patient or an encounter."));
    };
    match apply(ctx, &id, &command).await? {
        Ok(_) => Ok(http::see_other(&interaction_url(&id))),
        Err(e) => Ok(grant_error_page(&e)),
    }
}

/// `POST /auth/consent`: the ticked scopes, approve or deny.
pub async fn consent(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let (pairs, id, browser_hash, interaction) = match form_interaction(&mut req, ctx).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let csrf = interaction.csrf.clone();
    if http::field(&pairs, "decision") == Some("deny") {
        return match apply(ctx, &id, &Command::Deny { browser_hash, csrf }).await? {
            Ok(_) => Ok(redirect_error(&interaction, ctx, OAuthErrorCode::AccessDenied, "the user denied access")),
            Err(e) => Ok(grant_error_page(&e)),
        };
    }
    let approved: Vec<&str> = pairs.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).collect();
    let approved = ScopeSet::parse(&approved.join(" ")).unwrap_or_default();
    let reply = match apply(ctx, &id, &Command::Consent { browser_hash, csrf, approved: approved.to_string() }).await? {
        Ok(reply) => reply,
        Err(e) => return Ok(grant_error_page(&e)),
    };
    if let (Reply::Interaction { interaction: after, .. }, platform::clients::ConsentPolicy::Remember) = (&reply, interaction.consent_policy) {
        if let (Some(user), Some(granted)) = (&after.user, &after.granted_scope) {
            let stub = rpc::by_name(&ctx.env, "ACCOUNTS", &user.username)?;
            let request = ConsentRequest { client_id: after.request.client_id.clone(), scope: granted.clone() };
            let _ = rpc::call::<_, bool, serde_json::Value>(&stub, "/consent/remember", &request).await?;
        }
    }
    Ok(http::see_other(&interaction_url(&id)))
}

/// `GET /auth/assets/auth.css`.
pub fn stylesheet() -> Response {
    http::text(200, pages::STYLESHEET, "text/css; charset=utf-8", "public, max-age=3600")
}
