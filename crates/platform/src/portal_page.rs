//! The EHR launch portal's HTML: the patient list (search, paging), the chosen patient's
//! banner, the apps to launch, and the embedded app. Server-rendered, no JavaScript, every
//! value escaped, sent with [`crate::portal::csp`]. Stable ids and classes for tests:
//! `#patient-search`, `#search-submit`, `.patient-row` (`data-patient-id`), `.patient-link`,
//! `#prev-page`, `#next-page`, `#patient-banner`, `#encounter`, `.app-row`
//! (`data-client-id`), `.open-here`, `.open-tab`, `#app-frame`, `#logout`.

use crate::pages::escape;
use crate::portal::{App, PortalQuery, PAGE_SIZE};
use std::fmt::Write;

/// One patient as the list and the banner show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientRow {
    pub id: String,
    pub name: String,
    pub birth_date: String,
    pub gender: String,
}

impl PatientRow {
    pub fn of(patient: &serde_json::Value) -> Self {
        let text = |k: &str| patient.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
        Self { id: text("id"), name: crate::fhir::store::patient_name(patient), birth_date: text("birthDate"), gender: text("gender") }
    }
}

/// The patient list: the rows of one page, the total, and the paging links.
pub struct PatientList<'a> {
    pub rows: &'a [PatientRow],
    pub total: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
    /// Whether the user may search (a practitioner) or sees only their own record.
    pub searchable: bool,
}

/// The chosen patient and what can be launched about them.
pub struct Chosen<'a> {
    pub patient: &'a PatientRow,
    /// `(id, label)` of the patient's encounters, newest first.
    pub encounters: &'a [(String, String)],
    pub apps: &'a [App],
    /// The launch URL of an app opened here (drawn in an iframe under the banner).
    pub embedded: Option<(&'a str, &'a str)>,
}

pub struct PortalPage<'a> {
    pub server_name: &'a str,
    pub user_name: &'a str,
    pub csrf: &'a str,
    pub query: &'a PortalQuery,
    pub list: PatientList<'a>,
    pub chosen: Option<Chosen<'a>>,
    pub error: Option<&'a str>,
}

fn banner(p: &PatientRow) -> String {
    format!(
        "<section id=\"patient-banner\" class=\"banner\" aria-label=\"Patient\" data-patient-id=\"{id}\"><strong class=\"banner-name\">{name}</strong>\
         <span>Gender: <span class=\"banner-gender\">{gender}</span></span><span>Born: <span class=\"banner-birth\">{birth}</span></span>\
         <span class=\"muted\">{id}</span></section>",
        id = escape(&p.id),
        name = escape(&p.name),
        gender = escape(if p.gender.is_empty() { "unknown" } else { &p.gender }),
        birth = escape(if p.birth_date.is_empty() { "unknown" } else { &p.birth_date })
    )
}

fn patient_list(page: &PortalPage<'_>) -> String {
    let q = page.query;
    let mut out = String::from("<section class=\"patients\" aria-labelledby=\"patients-title\"><h2 id=\"patients-title\">Patients</h2>");
    if page.list.searchable {
        let _ = write!(
            out,
            "<form method=\"get\" action=\"{action}\" role=\"search\"><label for=\"patient-search\">Search by name</label>\
             <input type=\"text\" id=\"patient-search\" name=\"q\" value=\"{value}\" placeholder=\"Family or given name\" autocomplete=\"off\">\
             <button type=\"submit\" id=\"search-submit\">Search</button></form>",
            action = crate::portal::PORTAL_PATH,
            value = escape(&q.q)
        );
    } else {
        out.push_str("<p class=\"muted\">You can open only your own record.</p>");
    }
    if page.list.rows.is_empty() {
        out.push_str("<p id=\"no-patients\">No patient found.</p>");
    } else {
        out.push_str("<table class=\"patient-table\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Birth date</th><th scope=\"col\">Gender</th></tr></thead><tbody>");
        for row in page.list.rows {
            let selected = q.patient.as_deref() == Some(row.id.as_str());
            let _ = write!(
                out,
                "<tr class=\"patient-row{sel}\" data-patient-id=\"{id}\"><td><a class=\"patient-link\" href=\"{href}\"{current}>{name}</a></td><td>{birth}</td><td>{gender}</td></tr>",
                sel = if selected { " selected" } else { "" },
                current = if selected { " aria-current=\"true\"" } else { "" },
                id = escape(&row.id),
                href = escape(&q.url(q.offset, Some(&row.id))),
                name = escape(if row.name.is_empty() { &row.id } else { &row.name }),
                birth = escape(&row.birth_date),
                gender = escape(&row.gender)
            );
        }
        out.push_str("</tbody></table>");
    }
    if page.list.searchable && page.list.total > 0 {
        let first = q.offset + 1;
        let last = (q.offset + page.list.rows.len()).max(first);
        let _ = write!(out, "<nav class=\"paging\" aria-label=\"Pages\"><span id=\"page-info\">{first}–{last} of {}</span>", page.list.total);
        if let Some(prev) = &page.list.previous {
            let _ = write!(out, " <a id=\"prev-page\" href=\"{}\">← Previous {PAGE_SIZE}</a>", escape(prev));
        }
        if let Some(next) = &page.list.next {
            let _ = write!(out, " <a id=\"next-page\" href=\"{}\">Next {PAGE_SIZE} →</a>", escape(next));
        }
        out.push_str("</nav>");
    }
    out.push_str("</section>");
    out
}

fn chosen(page: &PortalPage<'_>, c: &Chosen<'_>) -> String {
    let q = page.query;
    let mut out = format!("<section class=\"chosen\" aria-labelledby=\"apps-title\">{}", banner(c.patient));
    if let Some((name, url)) = c.embedded {
        let _ = write!(
            out,
            "<iframe id=\"app-frame\" name=\"app-frame\" title=\"{name}\" src=\"{url}\"></iframe>\
             <p class=\"muted\">{name} is open for this patient. <a href=\"{back}\">Close it</a></p>",
            name = escape(name),
            url = escape(url),
            back = escape(&q.url(q.offset, Some(&c.patient.id)))
        );
    }
    let _ = write!(
        out,
        "<h2 id=\"apps-title\">Open an app</h2><form method=\"post\" action=\"{action}/launch\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"patient\" value=\"{patient}\">\
         <input type=\"hidden\" name=\"q\" value=\"{qv}\"><input type=\"hidden\" name=\"offset\" value=\"{offset}\">",
        action = crate::portal::PORTAL_PATH,
        csrf = escape(page.csrf),
        patient = escape(&c.patient.id),
        qv = escape(&q.q),
        offset = q.offset
    );
    out.push_str(
        "<label for=\"encounter\">Encounter (optional)</label><select id=\"encounter\" name=\"encounter\"><option value=\"\">No particular encounter</option>",
    );
    for (id, label) in c.encounters {
        let _ = write!(out, "<option value=\"{}\">{}</option>", escape(id), escape(label));
    }
    out.push_str("</select>");
    if c.apps.is_empty() {
        out.push_str("<p id=\"no-apps\">No registered app has a launch URL.</p>");
    }
    out.push_str("<ul class=\"apps\">");
    for app in c.apps {
        let _ = write!(
            out,
            "<li class=\"app-row\" data-client-id=\"{id}\"><span class=\"app-name\">{name}</span>\
             <button type=\"submit\" class=\"open-here\" name=\"embed\" value=\"{id}\">Open here</button>\
             <button type=\"submit\" class=\"open-tab secondary\" name=\"tab\" value=\"{id}\" formtarget=\"_blank\">Open in a new tab</button></li>",
            id = escape(&app.client_id),
            name = escape(&app.name)
        );
    }
    out.push_str("</ul><p class=\"muted\">Each opening creates a new single-use launch for you and this patient.</p></form></section>");
    out
}

/// The portal page.
pub fn portal_page(page: &PortalPage<'_>) -> String {
    let mut body = format!(
        "<header class=\"portal-head\"><h1>{server} · EHR</h1><p>Signed in as <strong id=\"signed-in-user\">{user}</strong></p>\
         <form method=\"post\" action=\"/auth/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"secondary\" id=\"logout\">Sign out</button></form></header>",
        server = escape(page.server_name),
        user = escape(page.user_name),
        csrf = escape(page.csrf)
    );
    if let Some(error) = page.error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\" id=\"portal-error\">{}</p>", escape(error));
    }
    body.push_str("<div class=\"portal-grid\">");
    body.push_str(&patient_list(page));
    match &page.chosen {
        Some(c) => body.push_str(&chosen(page, c)),
        None => body.push_str("<section class=\"chosen\"><p class=\"muted\" id=\"pick-hint\">Pick a patient to see the apps you can open.</p></section>"),
    }
    body.push_str("</div>");
    crate::pages::layout_with_class("EHR launch portal", "portal", &body)
}

/// The portal's sign-in form (no session yet): the shared sign-in form, posting to the
/// portal's login with a double-submit CSRF token.
pub fn portal_login_page(csrf: &str, server_name: &str, error: Option<&str>) -> String {
    crate::pages::sign_in_form(
        server_name,
        "<p>Sign in to open patient records and launch apps.</p>",
        error,
        &format!("{}/login", crate::portal::PORTAL_PATH),
        csrf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str) -> PatientRow {
        PatientRow { id: id.into(), name: name.into(), birth_date: "1970-01-31".into(), gender: "male".into() }
    }

    #[test]
    fn renders_the_list_the_banner_the_apps_and_the_frame_escaped() {
        let rows = [row("p1", "<b>Ned</b>"), row("p2", "Buster")];
        let query = PortalQuery { q: "\"x".into(), offset: 20, patient: Some("p1".into()) };
        let apps = [App { client_id: "lab-viewer".into(), name: "Lab <Viewer>".into(), origin: "http://127.0.0.1:8787".into() }];
        let encounters = [("e1".to_owned(), "Visit 2020-01-01".to_owned())];
        let page = portal_page(&PortalPage {
            server_name: "S",
            user_name: "Dr",
            csrf: "tok",
            query: &query,
            list: PatientList {
                rows: &rows,
                total: 45,
                previous: Some("/auth/portal?q=%22x".into()),
                next: Some("/auth/portal?q=%22x&offset=40".into()),
                searchable: true,
            },
            chosen: Some(Chosen {
                patient: &rows[0],
                encounters: &encounters,
                apps: &apps,
                embedded: Some(("Lab <Viewer>", "http://127.0.0.1:8787/lab-viewer/launch.html?iss=a&launch=b")),
            }),
            error: None,
        });
        assert!(!page.contains("<b>Ned</b>") && !page.contains("Lab <Viewer>") && !page.contains("value=\"\"x\""));
        assert_eq!(page.matches("class=\"patient-row").count(), 2);
        assert!(page.contains("id=\"prev-page\"") && page.contains("id=\"next-page\"") && page.contains("21–22 of 45"));
        assert!(page.contains("id=\"patient-banner\"") && page.contains("data-patient-id=\"p1\""));
        assert!(page.contains("src=\"http://127.0.0.1:8787/lab-viewer/launch.html?iss=a&amp;launch=b\""));
        assert!(page.contains("name=\"embed\" value=\"lab-viewer\"") && page.contains("formtarget=\"_blank\""));
        assert!(page.contains("name=\"csrf\" value=\"tok\"") && page.contains("<option value=\"e1\">"));
        assert!(!page.contains("<script"), "works without JavaScript");
    }

    #[test]
    fn a_patient_user_gets_no_search_box() {
        let rows = [row("p1", "Ned")];
        let query = PortalQuery::default();
        let page = portal_page(&PortalPage {
            server_name: "S",
            user_name: "Ned",
            csrf: "t",
            query: &query,
            list: PatientList { rows: &rows, total: 1, previous: None, next: None, searchable: false },
            chosen: None,
            error: Some("<oops>"),
        });
        assert!(!page.contains("id=\"patient-search\"") && !page.contains("id=\"next-page\""));
        assert!(page.contains("&lt;oops&gt;") && page.contains("id=\"pick-hint\""));
        let login = portal_login_page("c", "S", None);
        assert!(login.contains("action=\"/auth/portal/login\"") && login.contains("id=\"login-submit\"") && login.contains("name=\"csrf\" value=\"c\""));
    }
}
