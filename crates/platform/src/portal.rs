//! The EHR launch portal (`/auth/portal`, reached from `/ehr/`): a signed-in user finds a
//! patient and launches a registered SMART app about them, embedded or in a new tab (SMART App
//! Launch 2.2 §2.0.7, "EHR launch": <https://hl7.org/fhir/smart-app-launch/app-launch.html>).
//!
//! The decisions live here, natively tested: who sees which patients, what the directory
//! search asks for (`Patient?name=…&_count=…&_offset=…`, never every patient at once), which
//! clients can be launched and in what order, and the launch request itself — the same
//! [`LaunchRequest`] the EHR launch API (`POST /auth/ehr/launch`) takes, bound to the signed-in
//! user, so the portal goes through [`crate::launch::create`] like any EHR integration.

use crate::clients::{Client, ClientType};
use crate::fhir::search::{self, Search, MAX_OFFSET};
use crate::launch::{LaunchContext, LaunchError, LaunchRequest, ValidLaunchContext};
use crate::users::is_fhir_id;
use url::Url;

mod flow;
pub use flow::{launch, page, ChosenPatient, PortalAnswer, PortalView, ENCOUNTER_LIMIT, ENCOUNTER_REFUSED, PATIENT_REFUSED};

/// Patients per page of the list.
pub const PAGE_SIZE: usize = 20;
/// Longest name prefix searched (longer input is cut).
pub const MAX_QUERY_CHARS: usize = 64;
/// The client listed first (the demo's app).
pub const FIRST_APP: &str = "lab-viewer";

/// What `GET /auth/portal?q=…&offset=…&patient=…` asks for, made harmless: garbage becomes the
/// default rather than an error (a person typed it or followed an old link).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortalQuery {
    /// A name prefix (no commas: a comma would make it several values).
    pub q: String,
    /// A multiple of [`PAGE_SIZE`], at most [`MAX_OFFSET`].
    pub offset: usize,
    /// The chosen patient, when it is a FHIR id.
    pub patient: Option<String>,
}

impl PortalQuery {
    pub fn parse(pairs: &[(String, String)]) -> Self {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let q: String = get("q").unwrap_or("").replace(',', " ").split_whitespace().collect::<Vec<_>>().join(" ");
        let q: String = q.chars().take(MAX_QUERY_CHARS).collect();
        let offset = get("offset").and_then(|o| o.parse::<usize>().ok()).unwrap_or(0).min(MAX_OFFSET);
        let offset = offset - offset % PAGE_SIZE;
        let patient = get("patient").filter(|p| is_fhir_id(p)).map(str::to_owned);
        Self { q: q.trim().to_owned(), offset, patient }
    }

    /// The portal URL for this query with another offset or patient (links and forms).
    pub fn url(&self, offset: usize, patient: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !self.q.is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        if offset > 0 {
            pairs.push(("offset", offset.to_string()));
        }
        if let Some(p) = patient {
            pairs.push(("patient", p.to_owned()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            PORTAL_PATH.to_owned()
        } else {
            format!("{PORTAL_PATH}?{query}")
        }
    }
}

/// Where the portal lives: below `/auth`, where the login session cookie is sent.
pub const PORTAL_PATH: &str = "/auth/portal";

/// Who the signed-in user is to the portal, from their `fhirUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A practitioner: every patient, through the directory search.
    Practitioner,
    /// A patient user: their own record only.
    Patient(String),
    /// Anyone else (RelatedPerson, Person, no FHIR user): no patient.
    Nobody,
}

impl Viewer {
    pub fn of(fhir_user: &str) -> Self {
        match fhir_user.split_once('/') {
            Some(("Practitioner" | "PractitionerRole", id)) if is_fhir_id(id) => Viewer::Practitioner,
            Some(("Patient", id)) if is_fhir_id(id) => Viewer::Patient(id.to_owned()),
            _ => Viewer::Nobody,
        }
    }

    /// Whether the user may open (and launch apps about) `patient_id`.
    pub fn may_open(&self, patient_id: &str) -> bool {
        match self {
            Viewer::Practitioner => is_fhir_id(patient_id),
            Viewer::Patient(own) => own == patient_id,
            Viewer::Nobody => false,
        }
    }
}

/// What the patient list shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// One page of the patient directory (`Patient?name=…` semantics).
    Directory(Search),
    /// Only this patient (a patient user's own record).
    Only(String),
    Nothing,
}

/// The list for `viewer` and `query`.
pub fn listing(viewer: &Viewer, query: &PortalQuery) -> Listing {
    match viewer {
        Viewer::Practitioner => {
            // In family-name order (ties by id), as a person scans a list.
            let mut pairs: Vec<(String, String)> = vec![("_sort".to_owned(), "family".to_owned())];
            if !query.q.is_empty() {
                pairs.push(("name".to_owned(), query.q.clone()));
            }
            match search::parse("Patient", &pairs, true) {
                Ok(mut s) => {
                    s.count = PAGE_SIZE;
                    s.offset = query.offset;
                    Listing::Directory(s)
                }
                Err(_) => Listing::Nothing,
            }
        }
        Viewer::Patient(own) => Listing::Only(own.clone()),
        Viewer::Nobody => Listing::Nothing,
    }
}

/// The previous and next page links of a directory page with `total` matches.
pub fn page_links(query: &PortalQuery, total: i64) -> (Option<String>, Option<String>) {
    let previous = (query.offset > 0).then(|| query.url(query.offset.saturating_sub(PAGE_SIZE), None));
    let next_offset = query.offset + PAGE_SIZE;
    let next = ((next_offset as i64) < total && next_offset <= MAX_OFFSET).then(|| query.url(next_offset, None));
    (previous, next)
}

/// An app the portal can launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub client_id: String,
    pub name: String,
    /// The origin of its `launch_uri` (the portal's CSP lets it be framed and submitted to).
    pub origin: String,
}

/// The registered clients that can be launched (a `launch_uri`, not a backend service),
/// [`FIRST_APP`] first, then by name. A client anyone registered (open RFC 7591 registration,
/// no initial access token) is not offered: the portal lists, frames and posts to apps an
/// administrator or a holder of an initial access token vouched for.
pub fn launchable_apps(clients: &[Client]) -> Vec<App> {
    let mut apps: Vec<App> = clients
        .iter()
        .filter(|c| c.client_type != ClientType::Backend)
        .filter(|c| !c.registration.as_ref().is_some_and(|r| r.open))
        .filter_map(|c| {
            let url = Url::parse(c.launch_uri.as_deref()?).ok()?;
            Some(App { client_id: c.client_id.clone(), name: c.client_name.clone(), origin: url.origin().ascii_serialization() })
        })
        .collect();
    apps.sort_by(|a, b| (a.client_id != FIRST_APP, a.name.to_lowercase(), &a.client_id).cmp(&(b.client_id != FIRST_APP, b.name.to_lowercase(), &b.client_id)));
    apps
}

/// How the app opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In an iframe under the portal's patient banner.
    Embedded,
    /// In a new tab (the form targets `_blank`, the answer redirects to the launch URL).
    NewTab,
}

/// The launch form (`POST /auth/portal/launch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchForm {
    pub csrf: String,
    pub client_id: String,
    pub mode: Mode,
    pub patient: String,
    pub encounter: Option<String>,
    /// Where the user was in the list (to draw it again).
    pub query: PortalQuery,
}

impl LaunchForm {
    /// The button pressed names the app: `embed=<client_id>` or `tab=<client_id>`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, &'static str> {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let (mode, client_id) = match (get("embed"), get("tab")) {
            (Some(c), None) => (Mode::Embedded, c),
            (None, Some(c)) => (Mode::NewTab, c),
            _ => return Err("Choose one app to open."),
        };
        if client_id.is_empty() || client_id.len() > 128 {
            return Err("Choose one app to open.");
        }
        let patient = get("patient").filter(|p| is_fhir_id(p)).ok_or("Choose a patient first.")?;
        let encounter = match get("encounter").filter(|e| !e.is_empty()) {
            Some(e) if !is_fhir_id(e) => return Err("That encounter is not valid."),
            other => other.map(str::to_owned),
        };
        let mut query = PortalQuery::parse(pairs);
        query.patient = Some(patient.to_owned());
        Ok(Self { csrf: get("csrf").unwrap_or_default().to_owned(), client_id: client_id.to_owned(), mode, patient: patient.to_owned(), encounter, query })
    }

    /// The EHR launch request for this form: bound to the signed-in `username` (only they may
    /// complete it), the patient and the encounter. The same request `POST /auth/ehr/launch`
    /// parses, created by the same [`crate::launch::create`]. Embedded, the portal draws the
    /// patient banner itself, so it tells the app `need_patient_banner: false` (SMART 2.2
    /// §2.0.10 launch context); in a tab of its own the app shows one.
    pub fn launch_request(&self, username: &str) -> Result<LaunchRequest, LaunchError> {
        let request = LaunchRequest {
            client_id: self.client_id.clone(),
            user: Some(username.to_owned()),
            context: LaunchContext {
                patient: Some(self.patient.clone()),
                encounter: self.encounter.clone(),
                need_patient_banner: (self.mode == Mode::Embedded).then_some(false),
                ..LaunchContext::default()
            },
        };
        if !crate::users::valid_username(username) {
            return Err(LaunchError::BadUser);
        }
        request.context.validate()?;
        Ok(request)
    }
}

/// The portal page's Content-Security-Policy: the auth pages' policy, plus the launchable
/// apps' origins as frame and form targets (the embedded app, and "Open in a new tab", whose
/// POST answers a redirect to the app). `'self'` is always a frame source: the app's
/// authorization request comes back to this server's pages inside the frame.
pub fn csp(apps: &[App]) -> String {
    let mut origins: Vec<String> = apps.iter().map(|a| a.origin.clone()).collect();
    origins.sort();
    origins.dedup();
    let frames = std::iter::once("'self'".to_owned()).chain(origins.iter().cloned()).collect::<Vec<_>>().join(" ");
    crate::pages::csp(&origins, &[]).replace("; frame-ancestors", &format!("; frame-src {frames}; frame-ancestors"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistration;
    use crate::fhir::search::Clause;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn practitioners_page_through_the_directory_and_patients_see_themselves() {
        assert_eq!(Viewer::of("Practitioner/f4bf5265"), Viewer::Practitioner);
        assert_eq!(Viewer::of("Patient/p1"), Viewer::Patient("p1".into()));
        for other in ["RelatedPerson/r1", "Person/x", "", "Patient/bad id", "Practitioner/"] {
            assert_eq!(Viewer::of(other), Viewer::Nobody, "{other}");
        }
        let query = PortalQuery::parse(&pairs(&[("q", " Hintz "), ("offset", "40")]));
        let Listing::Directory(s) = listing(&Viewer::Practitioner, &query) else { panic!() };
        assert_eq!((s.resource_type.as_str(), s.count, s.offset), ("Patient", PAGE_SIZE, 40));
        assert_eq!(s.clauses, vec![Clause::Text { name: "name".into(), any_of: vec!["hintz".into()], exact: false }], "Patient?name= prefix semantics");
        let Listing::Directory(all) = listing(&Viewer::Practitioner, &PortalQuery::default()) else { panic!() };
        assert!(all.clauses.is_empty() && all.count == PAGE_SIZE, "one page, never every patient");
        assert_eq!(all.sort, Some(("family".into(), false)), "in family-name order");
        assert_eq!(listing(&Viewer::Patient("p1".into()), &query), Listing::Only("p1".into()), "a patient user's search finds only themselves");
        assert_eq!(listing(&Viewer::Nobody, &query), Listing::Nothing);

        assert!(Viewer::Practitioner.may_open("anyone"));
        assert!(Viewer::Patient("p1".into()).may_open("p1"));
        assert!(!Viewer::Patient("p1".into()).may_open("p2"));
        assert!(!Viewer::Nobody.may_open("p1"));
    }

    #[test]
    fn garbage_queries_become_defaults() {
        let q = PortalQuery::parse(&pairs(&[("q", "a,b"), ("offset", "-5"), ("patient", "../x")]));
        assert_eq!(q, PortalQuery { q: "a b".into(), offset: 0, patient: None });
        assert_eq!(PortalQuery::parse(&pairs(&[("offset", "99999999999999999999999")])).offset, 0);
        assert_eq!(PortalQuery::parse(&pairs(&[("offset", "10000000")])).offset, MAX_OFFSET);
        assert_eq!(PortalQuery::parse(&pairs(&[("offset", "45")])).offset, 40);
        assert_eq!(PortalQuery::parse(&pairs(&[("q", &"x".repeat(500))])).q.len(), MAX_QUERY_CHARS);
        // Whatever comes in, the search parses (no 5xx, no 400 for the user to puzzle over).
        for q in ["%", "'; drop table res; --", "\u{0}", "ÄÖ", "a\u{301}"] {
            let query = PortalQuery::parse(&pairs(&[("q", q)]));
            assert!(matches!(listing(&Viewer::Practitioner, &query), Listing::Directory(_)), "{q:?}");
        }
    }

    #[test]
    fn paging_links_keep_the_search() {
        let q = PortalQuery::parse(&pairs(&[("q", "Ned Hintz")]));
        assert_eq!(page_links(&q, 5), (None, None));
        assert_eq!(page_links(&q, 21), (None, Some("/auth/portal?q=Ned+Hintz&offset=20".into())));
        let second = PortalQuery { offset: 20, ..q.clone() };
        assert_eq!(page_links(&second, 40), (Some("/auth/portal?q=Ned+Hintz".into()), None));
        let deep = PortalQuery { offset: MAX_OFFSET - MAX_OFFSET % PAGE_SIZE, q: String::new(), patient: None };
        assert_eq!(page_links(&deep, 1_000_000).1, None, "no page past the deepest offset the store serves");
        assert_eq!(q.url(0, Some("p1")), "/auth/portal?q=Ned+Hintz&patient=p1");
    }

    fn client(id: &str, name: &str, launch_uri: Option<&str>, client_type: &str) -> Client {
        let mut json = serde_json::json!({"client_id": id, "client_name": name, "client_type": client_type,
            "redirect_uris": ["https://app.example/cb"], "scope": "launch patient/*.rs"});
        if client_type == "backend" {
            json = serde_json::json!({"client_id": id, "client_name": name, "client_type": "backend", "scope": "system/*.rs",
                "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "kid": "k"}]}});
        }
        if let Some(uri) = launch_uri {
            json["launch_uri"] = uri.into();
        }
        ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap()
    }

    #[test]
    fn apps_with_a_launch_uri_lab_viewer_first() {
        let clients = vec![
            client("zeta", "Alpha app", Some("https://alpha.example/launch"), "public"),
            client("no-launch", "No launch", None, "public"),
            client("lab-viewer", "Lab Viewer", Some("http://127.0.0.1:8787/lab-viewer/launch.html"), "public"),
            client("beta", "beta app", Some("https://beta.example/l"), "public"),
        ];
        let apps = launchable_apps(&clients);
        let ids: Vec<&str> = apps.iter().map(|a| a.client_id.as_str()).collect();
        assert_eq!(ids, ["lab-viewer", "zeta", "beta"]);
        assert_eq!(apps[0].origin, "http://127.0.0.1:8787");
        let policy = csp(&apps);
        assert!(policy.contains("frame-src 'self' http://127.0.0.1:8787 https://alpha.example https://beta.example;"), "{policy}");
        assert!(policy.contains("form-action 'self' http://127.0.0.1:8787 https://alpha.example https://beta.example;"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'") && policy.starts_with("default-src 'none'"));
    }

    #[test]
    fn an_openly_registered_app_is_not_offered() {
        let registration = |open| crate::clients::DynamicRegistration { token_hash: "h".into(), issued_at: 0, open };
        let mut open = client("open", "Open", Some("https://open.example/launch"), "public");
        open.registration = Some(registration(true));
        let mut vouched = client("vouched", "Vouched", Some("https://vouched.example/launch"), "public");
        vouched.registration = Some(registration(false));
        let apps = launchable_apps(&[open, vouched]);
        assert_eq!(apps.iter().map(|a| a.client_id.as_str()).collect::<Vec<_>>(), ["vouched"]);
        assert!(!csp(&apps).contains("open.example"));
    }

    #[test]
    fn the_launch_form_becomes_an_ehr_launch_request_bound_to_the_user() {
        let form = LaunchForm::parse(&pairs(&[("csrf", "c"), ("patient", "p1"), ("encounter", "e1"), ("embed", "lab-viewer"), ("q", "ned"), ("offset", "20")]))
            .unwrap();
        assert_eq!((form.mode, form.client_id.as_str(), form.encounter.as_deref()), (Mode::Embedded, "lab-viewer", Some("e1")));
        assert_eq!(form.query, PortalQuery { q: "ned".into(), offset: 20, patient: Some("p1".into()) });
        let request = form.launch_request("dr.smith").unwrap();
        assert_eq!(request.user.as_deref(), Some("dr.smith"));
        assert_eq!(request.client_id, "lab-viewer");
        assert_eq!(
            request.context,
            LaunchContext { patient: Some("p1".into()), encounter: Some("e1".into()), need_patient_banner: Some(false), ..Default::default() }
        );
        // The same request the EHR launch API would parse from JSON.
        let api = LaunchRequest::parse(r#"{"client_id":"lab-viewer","user":"dr.smith","patient":"p1","encounter":"e1","need_patient_banner":false}"#).unwrap();
        assert_eq!((api.client_id, api.user, api.context), (request.client_id, request.user, request.context));

        let tab = LaunchForm::parse(&pairs(&[("patient", "p1"), ("encounter", ""), ("tab", "app")])).unwrap();
        assert_eq!((tab.mode, tab.encounter.clone(), tab.csrf.as_str()), (Mode::NewTab, None, ""));
        assert_eq!(tab.launch_request("dr.smith").unwrap().context.need_patient_banner, None, "in its own tab the app draws the banner");
        for bad in [
            vec![("patient", "p1")],
            vec![("patient", "p1"), ("embed", "a"), ("tab", "b")],
            vec![("embed", "a")],
            vec![("patient", "bad id"), ("embed", "a")],
            vec![("patient", "p1"), ("encounter", "x y"), ("embed", "a")],
            vec![("patient", "p1"), ("embed", "")],
        ] {
            assert!(LaunchForm::parse(&pairs(&bad)).is_err(), "{bad:?}");
        }
        assert_eq!(form.launch_request("bad user!").unwrap_err(), LaunchError::BadUser);
    }
}
