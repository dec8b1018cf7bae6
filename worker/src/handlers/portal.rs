//! The EHR launch portal: `/ehr/` redirects to `/auth/portal`, where a user signed in with the
//! server's own login (the session of `/auth/authorize` and `/auth/manage`, whose cookie is
//! scoped to `/auth`) finds a patient and launches an app about them. Who sees what, the
//! search, the paging and the launch request are `platform::portal`; the launch itself is
//! created by the EHR launch API's own path ([`super::ehr::create`]).

use super::authorize::current_session;
use super::signin::{sign_in, SignIn};
use crate::adapters::fhir_store::Partitions;
use crate::context::AppContext;
use crate::http::{self, AppError};
use crate::{registry, settings};
use platform::accounts::{AccountState, SessionHandle};
use platform::fhir::store::{self as fhir_store, FhirStore};
use platform::grants::AuthenticatedUser;
use platform::portal::{self, Listing, Mode, PortalQuery, Viewer, PORTAL_PATH};
use platform::portal_page::{self, Chosen, PatientList, PatientRow, PortalPage};
use worker::{Request, Response};

const LOGIN_CSRF_COOKIE: &str = "se_portal_csrf";
/// Encounters offered in the launch form.
const ENCOUNTER_LIMIT: usize = 50;

/// `GET /ehr/`: the portal's public address (the query is kept).
pub fn home(req: &Request) -> Result<Response, AppError> {
    let query = req.url()?.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(http::see_other(&format!("{PORTAL_PATH}{query}")))
}

async fn login_form(req: &Request, ctx: &AppContext, error: Option<&str>, status: u16) -> Result<Response, AppError> {
    // Double-submit token for the sign-in form (there is no session to bind it to yet).
    let token = match http::cookie(req, LOGIN_CSRF_COOKIE).filter(|c| c.len() == 43) {
        Some(token) => token,
        None => crate::adapters::webcrypto::random_secret()?,
    };
    let server_name = settings::load(ctx).await?.server_name;
    let response = http::html(status, portal_page::portal_login_page(&token, &server_name, error), &platform::pages::csp(&[], &[]));
    http::set_cookie(&response, LOGIN_CSRF_COOKIE, &token, 3600, ctx.urls.issuer().starts_with("https://"));
    Ok(response)
}

/// `GET /auth/portal?q=…&offset=…&patient=…`.
pub async fn page(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let Some((handle, user)) = current_session(&req, ctx).await? else {
        return login_form(&req, ctx, None, 200).await;
    };
    let pairs: Vec<(String, String)> = req.url()?.query_pairs().into_owned().collect();
    let query = PortalQuery::parse(&pairs);
    render(ctx, &handle, &user, &query, None).await
}

/// Draws the portal for `query`, with an app embedded when one was just launched.
async fn render(
    ctx: &AppContext,
    handle: &SessionHandle,
    user: &AuthenticatedUser,
    query: &PortalQuery,
    embedded: Option<(&str, &str)>,
) -> Result<Response, AppError> {
    let viewer = Viewer::of(&user.fhir_user);
    let store = Partitions(&ctx.env);
    let (rows, total, searchable) = match portal::listing(&viewer, query) {
        Listing::Directory(search) => {
            let (patients, total) = store.patient_page(&search).await.map_err(AppError::internal)?;
            (patients.iter().map(PatientRow::of).collect::<Vec<_>>(), total, true)
        }
        Listing::Only(own) => {
            let own: Vec<PatientRow> = FhirStore::read(&store, "Patient", &own).await.map_err(AppError::internal)?.iter().map(PatientRow::of).collect();
            let total = own.len() as i64;
            (own, total, false)
        }
        Listing::Nothing => (Vec::new(), 0, false),
    };
    let (previous, next) = if searchable { portal::page_links(query, total) } else { (None, None) };

    let mut error = None;
    let mut status = 200;
    let mut patient = None;
    if let Some(id) = query.patient.as_deref() {
        let found = if viewer.may_open(id) { FhirStore::read(&store, "Patient", id).await.map_err(AppError::internal)? } else { None };
        match found {
            Some(p) => patient = Some(PatientRow::of(&p)),
            None => {
                error = Some("You cannot open this patient's record.");
                status = 403;
            }
        }
    }
    let (encounters, apps) = match &patient {
        Some(p) => {
            let encounters: Vec<(String, String)> = store
                .patient_encounters(&p.id, ENCOUNTER_LIMIT)
                .await
                .map_err(AppError::internal)?
                .iter()
                .map(|e| {
                    let (kind, date) = fhir_store::encounter_label(e);
                    (e["id"].as_str().unwrap_or_default().to_owned(), format!("{date} · {kind}"))
                })
                .collect();
            (encounters, portal::launchable_apps(&registry::all_clients(ctx).await?))
        }
        None => (Vec::new(), Vec::new()),
    };
    let server_name = settings::load(ctx).await?.server_name;
    let csrf = AccountState::csrf_for(handle);
    let body = portal_page::portal_page(&PortalPage {
        server_name: &server_name,
        user_name: &user.display_name,
        csrf: &csrf,
        query,
        list: PatientList { rows: &rows, total, previous, next, searchable },
        chosen: patient.as_ref().map(|p| Chosen { patient: p, encounters: &encounters, apps: &apps, embedded }),
        error,
    });
    Ok(http::html(status, body, &portal::csp(&apps)))
}

/// `POST /auth/portal/login`.
pub async fn login(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    match sign_in(&mut req, ctx, LOGIN_CSRF_COOKIE, PORTAL_PATH).await? {
        SignIn::Done(response) => Ok(response),
        SignIn::AskAgain(message, status) => login_form(&req, ctx, Some(&message), status).await,
    }
}

/// `POST /auth/portal/launch`: creates a single-use launch for the signed-in user, the chosen
/// patient and encounter, and opens the app here (iframe) or in the new tab the form targets.
pub async fn launch(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let pairs = match http::form(&mut req).await {
        Ok(pairs) => pairs,
        Err(_) => return Ok(http::error_page(400, "Bad request", "The form could not be read.")),
    };
    let Some((handle, user)) = current_session(&req, ctx).await? else {
        return Ok(http::see_other(PORTAL_PATH));
    };
    if http::field(&pairs, "csrf") != Some(AccountState::csrf_for(&handle).as_str()) {
        return Ok(http::error_page(403, "Not allowed", "The form has expired or was not sent by this page; reload and try again."));
    }
    let form = match portal::LaunchForm::parse(&pairs) {
        Ok(form) => form,
        Err(message) => return Ok(http::error_page(400, "Bad request", message)),
    };
    let store = Partitions(&ctx.env);
    let viewer = Viewer::of(&user.fhir_user);
    if !viewer.may_open(&form.patient) || FhirStore::read(&store, "Patient", &form.patient).await.map_err(AppError::internal)?.is_none() {
        return Ok(http::error_page(403, "Not allowed", "You cannot open this patient's record."));
    }
    if let Some(chosen) = &form.encounter {
        let encounters = store.patient_encounters(&form.patient, ENCOUNTER_LIMIT).await.map_err(AppError::internal)?;
        if !encounters.iter().any(|e| e["id"].as_str() == Some(chosen)) {
            return Ok(http::error_page(403, "Not allowed", "This encounter is not one of the patient's."));
        }
    }
    let apps = portal::launchable_apps(&registry::all_clients(ctx).await?);
    let Some(app) = apps.iter().find(|a| a.client_id == form.client_id) else {
        return Ok(http::error_page(400, "Bad request", "There is no such app to open."));
    };
    let request = match form.launch_request(&user.username) {
        Ok(request) => request,
        Err(e) => return Ok(http::error_page(400, "Bad request", &e.to_string())),
    };
    let created = match super::ehr::create(ctx, &request).await? {
        Ok(created) => created,
        Err(description) => return Ok(http::error_page(400, "The app cannot be opened", &description)),
    };
    match form.mode {
        Mode::NewTab => Ok(http::see_other(&created.launch_url)),
        Mode::Embedded => render(ctx, &handle, &user, &form.query, Some((&app.name, &created.launch_url))).await,
    }
}
