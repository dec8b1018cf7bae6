//! The portal's use cases over ports: [`page`] (`GET /auth/portal`) and [`launch`]
//! (`POST /auth/portal/launch`). The Worker decodes the browser, the query or the form, makes
//! one call and encodes the [`PortalAnswer`].

use super::{launchable_apps, listing, page_links, App, LaunchForm, Listing, Mode, PortalQuery, Viewer, PORTAL_PATH};
use crate::accounts::{AccountState, SessionHandle};
use crate::fhir::store::encounter_label;
use crate::grants::AuthenticatedUser;
use crate::manage::{session_form, FormRefusal};
use crate::oauth::{Failure, OAuthPorts};
use crate::portal_page::{portal_page, Chosen, PatientList, PatientRow, PortalPage};
use crate::signin::password::current_session;
use crate::signin::{Browser, PageForm, SignInPorts};

/// Encounters offered in the launch form.
pub const ENCOUNTER_LIMIT: usize = 50;
/// The refusal of a patient outside the user's reach (or not on file).
pub const PATIENT_REFUSED: &str = "You cannot open this patient's record.";
/// The refusal of an encounter that is not the patient's.
pub const ENCOUNTER_REFUSED: &str = "This encounter is not one of the patient's.";

/// What the portal answers.
#[derive(Debug, Clone, PartialEq)]
pub enum PortalAnswer {
    /// No valid session: the sign-in form.
    SignIn,
    /// The portal page.
    Page(Box<PortalView>),
    /// A redirect (the launch URL of an app opened in a new tab, or back to the portal).
    Redirect(String),
    /// A message page.
    Refused { status: u16, title: &'static str, message: String },
}

impl PortalAnswer {
    fn refused(status: u16, title: &'static str, message: &str) -> PortalAnswer {
        PortalAnswer::Refused { status, title, message: message.to_owned() }
    }
}

/// The chosen patient and what can be launched about them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenPatient {
    pub patient: PatientRow,
    /// `(id, label)`, newest first.
    pub encounters: Vec<(String, String)>,
    /// An app opened here: its name and launch URL.
    pub embedded: Option<(String, String)>,
}

/// The portal page, as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalView {
    pub status: u16,
    pub server_name: String,
    pub user_name: String,
    pub csrf: String,
    pub query: PortalQuery,
    pub rows: Vec<PatientRow>,
    pub total: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub searchable: bool,
    /// The launchable apps (only when a patient is chosen).
    pub apps: Vec<App>,
    pub chosen: Option<ChosenPatient>,
    pub error: Option<&'static str>,
}

impl PortalView {
    pub fn render(&self) -> String {
        portal_page(&PortalPage {
            server_name: &self.server_name,
            user_name: &self.user_name,
            csrf: &self.csrf,
            query: &self.query,
            list: PatientList { rows: &self.rows, total: self.total, previous: self.previous.clone(), next: self.next.clone(), searchable: self.searchable },
            chosen: self.chosen.as_ref().map(|c| Chosen {
                patient: &c.patient,
                encounters: &c.encounters,
                apps: &self.apps,
                embedded: c.embedded.as_ref().map(|(name, url)| (name.as_str(), url.as_str())),
            }),
            error: self.error,
        })
    }

    /// The page's Content-Security-Policy ([`super::csp`]).
    pub fn csp(&self) -> String {
        super::csp(&self.apps)
    }
}

/// `GET /auth/portal?q=…&offset=…&patient=…`: the session → the list the user may see → the
/// chosen patient, when within their reach, with encounters and apps.
pub async fn page(ports: &SignInPorts<'_>, browser: &Browser, query: &PortalQuery) -> Result<PortalAnswer, Failure> {
    let Some((handle, user)) = current_session(ports, browser).await? else { return Ok(PortalAnswer::SignIn) };
    Ok(PortalAnswer::Page(Box::new(view(ports, &handle, &user, query, None).await?)))
}

/// The patient list for `viewer`: rows, total, and whether it is the searchable directory.
async fn patient_list(ports: &SignInPorts<'_>, viewer: &Viewer, query: &PortalQuery) -> Result<(Vec<PatientRow>, i64, bool), Failure> {
    Ok(match listing(viewer, query) {
        Listing::Directory(search) => {
            let (patients, total) = ports.patients.patient_page(&search).await?;
            (patients.iter().map(PatientRow::of).collect(), total, true)
        }
        Listing::Only(own) => {
            let own: Vec<PatientRow> = ports.patients.read("Patient", &own).await?.iter().map(PatientRow::of).collect();
            let total = own.len() as i64;
            (own, total, false)
        }
        Listing::Nothing => (Vec::new(), 0, false),
    })
}

/// The patient `id`, when the viewer may open it and it is on file.
async fn reachable_patient(ports: &SignInPorts<'_>, viewer: &Viewer, id: &str) -> Result<Option<PatientRow>, Failure> {
    if !viewer.may_open(id) {
        return Ok(None);
    }
    Ok(ports.patients.read("Patient", id).await?.as_ref().map(PatientRow::of))
}

/// `(id, label)` of the patient's latest encounters.
async fn encounters(ports: &SignInPorts<'_>, patient_id: &str) -> Result<Vec<(String, String)>, Failure> {
    let found = ports.patients.patient_encounters(patient_id, ENCOUNTER_LIMIT).await?;
    Ok(found
        .iter()
        .map(|e| {
            let (kind, date) = encounter_label(e);
            (e["id"].as_str().unwrap_or_default().to_owned(), format!("{date} · {kind}"))
        })
        .collect())
}

/// The portal for `query`, with an app embedded when one was just launched.
async fn view(
    ports: &SignInPorts<'_>,
    handle: &SessionHandle,
    user: &AuthenticatedUser,
    query: &PortalQuery,
    embedded: Option<(String, String)>,
) -> Result<PortalView, Failure> {
    let viewer = Viewer::of(&user.fhir_user);
    let (rows, total, searchable) = patient_list(ports, &viewer, query).await?;
    let (previous, next) = if searchable { page_links(query, total) } else { (None, None) };
    let patient = match query.patient.as_deref() {
        Some(id) => Some(reachable_patient(ports, &viewer, id).await?),
        None => None,
    };
    let error = matches!(patient, Some(None)).then_some(PATIENT_REFUSED);
    let (chosen, apps) = match patient.flatten() {
        Some(patient) => {
            let encounters = encounters(ports, &patient.id).await?;
            (Some(ChosenPatient { patient, encounters, embedded }), launchable_apps(&ports.clients.all().await?))
        }
        None => (None, Vec::new()),
    };
    let server_name = ports.settings.settings().await?.server_name;
    Ok(PortalView {
        status: if error.is_some() { 403 } else { 200 },
        server_name,
        user_name: user.display_name.clone(),
        csrf: AccountState::csrf_for(handle),
        query: query.clone(),
        rows,
        total,
        previous,
        next,
        searchable,
        apps,
        chosen,
        error,
    })
}

/// `POST /auth/portal/launch`: the form ([`session_form`]) → its fields → a patient within the
/// user's reach → an encounter of that patient's → a launchable app → the launch, bound to
/// the user ([`crate::launch::start`], as the EHR launch API) → the app in a new tab, or
/// embedded in the portal.
pub async fn launch(ports: &SignInPorts<'_>, launcher: &OAuthPorts<'_>, form: &PageForm) -> Result<PortalAnswer, Failure> {
    let post = match session_form(ports, form).await? {
        Ok(post) => post,
        Err(refusal) => return Ok(form_refused(refusal)),
    };
    let form = match LaunchForm::parse(post.pairs) {
        Ok(form) => form,
        Err(message) => return Ok(PortalAnswer::refused(400, "Bad request", message)),
    };
    let viewer = Viewer::of(&post.user.fhir_user);
    if reachable_patient(ports, &viewer, &form.patient).await?.is_none() {
        return Ok(PortalAnswer::refused(403, "Not allowed", PATIENT_REFUSED));
    }
    if let Some(chosen) = &form.encounter {
        if !encounters(ports, &form.patient).await?.iter().any(|(id, _)| id == chosen) {
            return Ok(PortalAnswer::refused(403, "Not allowed", ENCOUNTER_REFUSED));
        }
    }
    let apps = launchable_apps(&ports.clients.all().await?);
    let Some(app) = apps.iter().find(|a| a.client_id == form.client_id) else {
        return Ok(PortalAnswer::refused(400, "Bad request", "There is no such app to open."));
    };
    let request = match form.launch_request(&post.user.username) {
        Ok(request) => request,
        Err(e) => return Ok(PortalAnswer::refused(400, "Bad request", &e.to_string())),
    };
    let created = match crate::launch::start(launcher, &request).await? {
        Ok(created) => created,
        Err(description) => return Ok(PortalAnswer::refused(400, "The app cannot be opened", &description)),
    };
    // The portal lists only apps with a launch_uri, so the launch has a URL.
    let Some(launch_url) = created.launch_url else {
        return Ok(PortalAnswer::refused(400, "The app cannot be opened", "The app has no launch address registered."));
    };
    Ok(match form.mode {
        Mode::NewTab => PortalAnswer::Redirect(launch_url),
        Mode::Embedded => PortalAnswer::Page(Box::new(view(ports, &post.handle, &post.user, &form.query, Some((app.name.clone(), launch_url))).await?)),
    })
}

fn form_refused(refusal: FormRefusal) -> PortalAnswer {
    match refusal.message() {
        Some((status, title, message)) => PortalAnswer::refused(status, title, message),
        None => PortalAnswer::Redirect(PORTAL_PATH.to_owned()),
    }
}
