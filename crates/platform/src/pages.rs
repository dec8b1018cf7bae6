//! The authorization server's HTML pages: login, patient and encounter pickers, consent and
//! the error page. Server-rendered, no JavaScript, accessible labels, and stable element ids
//! for app developers' automated tests (`#username`, `#password`, `#login-submit`,
//! `.patient-pick`, `.encounter-pick`, `#approve`, `#deny`).
//!
//! Every value is HTML-escaped; every page is sent with the [`csp`] policy.

use smart_protocol::scopes::{Permissions, Scope, ScopeContext, ScopeSet};
use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of the authorization pages. `form_targets` are the origins a
/// form submission may end up at (the client's redirect URI, after a 303); `frame_ancestors`
/// the EHR origins allowed to embed the pages.
pub fn csp(form_targets: &[String], frame_ancestors: &[String]) -> String {
    let forms = std::iter::once("'self'".to_owned()).chain(form_targets.iter().cloned()).collect::<Vec<_>>().join(" ");
    let frames = if frame_ancestors.is_empty() { "'none'".to_owned() } else { frame_ancestors.join(" ") };
    format!("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {forms}; frame-ancestors {frames}; base-uri 'none'")
}

/// The stylesheet the pages link (served at `/auth/assets/auth.css`).
pub const STYLESHEET: &str = "\
:root{font-family:system-ui,sans-serif;color:#1b1f23;background:#f3f5f8}\
body{margin:0;padding:2rem 1rem}\
main{max-width:30rem;margin:0 auto;background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:1.5rem 2rem}\
h1{font-size:1.35rem;margin-top:0}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #9aa4ae;border-radius:4px}\
button{font-size:1rem;padding:.55rem 1.1rem;border-radius:4px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;cursor:pointer;margin-top:1rem}\
button.secondary{background:#fff;color:#0b5cad}\
.pick{display:block;width:100%;text-align:left;background:#fff;color:#1b1f23;border-color:#c3cad2;margin-top:.5rem}\
.pick:hover,.pick:focus{border-color:#0b5cad;outline:2px solid #0b5cad}\
.error{background:#fdecea;border:1px solid #e0a39c;color:#7d1d12;padding:.6rem .8rem;border-radius:4px}\
ul.scopes{list-style:none;padding:0}ul.scopes li{margin:.4rem 0}ul.scopes label{display:inline;font-weight:normal}\
.muted{color:#57606a;font-size:.9rem}\
body.portal{padding:1rem}body.portal main{max-width:78rem}\
.portal-head{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;border-bottom:1px solid #d8dde3;margin-bottom:1rem}\
.portal-head h1{margin:0;flex:1}.portal-head p{margin:0}.portal-head button{margin:0}\
.portal-grid{display:grid;grid-template-columns:minmax(18rem,26rem) 1fr;gap:1.5rem}\
@media (max-width:50rem){.portal-grid{grid-template-columns:1fr}}\
.portal h2{font-size:1.1rem}.portal form[role=search]{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}\
.portal form[role=search] label{flex-basis:100%;margin:0}.portal form[role=search] input{flex:1}.portal form[role=search] button{margin:0}\
.patient-table{width:100%;border-collapse:collapse;font-size:.95rem}.patient-table th,.patient-table td{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #e4e8ec}\
.patient-row.selected{background:#e8f1fb}.paging{margin-top:.75rem;display:flex;gap:1rem;flex-wrap:wrap}\
.banner{display:flex;flex-wrap:wrap;gap:.4rem 1.5rem;align-items:baseline;background:#0b3d6e;color:#fff;padding:.7rem 1rem;border-radius:6px}\
.banner .muted{color:#c9d6e3}.banner-name{font-size:1.15rem}\
#app-frame{display:block;width:100%;height:44rem;border:1px solid #c3cad2;border-top:0;background:#fff}\
select{font-size:1rem;padding:.4rem;max-width:100%}ul.apps{list-style:none;padding:0}\
.app-row{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;padding:.5rem 0;border-bottom:1px solid #e4e8ec}\
.app-row .app-name{flex:1;font-weight:600}.app-row button{margin:0}";

fn layout(title: &str, body: &str) -> String {
    layout_with_class(title, "", body)
}

/// The page skeleton; `class` goes on `<body>` (the portal's wider layout).
pub(crate) fn layout_with_class(title: &str, class: &str, body: &str) -> String {
    let class = if class.is_empty() { String::new() } else { format!(" class=\"{}\"", escape(class)) };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/auth/assets/auth.css\"></head>\
         <body{class}><main>{body}</main></body></html>\n",
        title = escape(title)
    )
}

fn hidden(interaction: &str, csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"interaction\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(interaction), escape(csrf))
}

pub fn error_page(title: &str, message: &str) -> String {
    layout(title, &format!("<h1>{}</h1><p class=\"error\" role=\"alert\" id=\"error\">{}</p>", escape(title), escape(message)))
}

pub struct LoginPage<'a> {
    pub interaction: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub server_name: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
}

pub fn login_page(p: &LoginPage<'_>) -> String {
    let intro = format!("<p><strong>{}</strong> is asking for access to health records.</p>", escape(p.client_name));
    sign_in(p.server_name, &intro, p.error, "/auth/login", &hidden(p.interaction, p.csrf), p.username)
}

/// The sign-in form both login pages share, with the stable ids app tests rely on.
fn sign_in(server_name: &str, intro: &str, error: Option<&str>, action: &str, hidden_fields: &str, username: &str) -> String {
    let mut body = format!("<h1>Sign in to {}</h1>{intro}", escape(server_name));
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>", escape(error));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{action}\">{hidden_fields}\
         <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{user}\">\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"login-submit\">Sign in</button></form>",
        action = escape(action),
        user = escape(username)
    );
    layout("Sign in", &body)
}

/// One choice on a picker page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub id: String,
    pub label: String,
    pub detail: String,
}

/// A picker: one submit button per choice, named `field`, with class `{field}-pick` and
/// `data-{field}-id` for app developers' tests.
fn picker(title: &str, question: &str, interaction: &str, csrf: &str, field: &str, choices: &[Choice], after: &str) -> String {
    let mut body = format!("<h1>{}</h1><p>{question}</p>", escape(title));
    let _ = write!(body, "<form method=\"post\" action=\"/auth/pick\">{}", hidden(interaction, csrf));
    for c in choices {
        let _ = write!(
            body,
            "<button type=\"submit\" class=\"pick {field}-pick\" name=\"{field}\" value=\"{id}\" data-{field}-id=\"{id}\">{label}<br><span class=\"muted\">{detail}</span></button>",
            id = escape(&c.id),
            label = escape(&c.label),
            detail = escape(&c.detail)
        );
    }
    body.push_str(after);
    body.push_str("</form>");
    layout(title, &body)
}

pub fn patient_picker(interaction: &str, csrf: &str, client_name: &str, patients: &[Choice]) -> String {
    let mut question = format!("Which patient's record should <strong>{}</strong> open?", escape(client_name));
    if patients.is_empty() {
        question.push_str("</p><p class=\"error\" role=\"alert\">There is no patient record you can open.");
    }
    picker("Choose a patient", &question, interaction, csrf, "patient", patients, "")
}

pub fn encounter_picker(interaction: &str, csrf: &str, client_name: &str, encounters: &[Choice]) -> String {
    let question = format!("Which encounter should <strong>{}</strong> open?", escape(client_name));
    let none = "<button type=\"submit\" class=\"pick encounter-pick\" name=\"encounter\" value=\"\" id=\"no-encounter\">No particular encounter</button>";
    picker("Choose an encounter", &question, interaction, csrf, "encounter", encounters, none)
}

pub struct ConsentPage<'a> {
    pub interaction: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub user_name: &'a str,
    pub patient_label: Option<&'a str>,
    pub scopes: &'a ScopeSet,
}

pub fn consent_page(p: &ConsentPage<'_>) -> String {
    let mut body = format!(
        "<h1>Allow {client} to access health records?</h1><p>Signed in as <strong>{user}</strong>.</p>",
        client = escape(p.client_name),
        user = escape(p.user_name)
    );
    if let Some(patient) = p.patient_label {
        let _ = write!(body, "<p>Patient: <strong>{}</strong></p>", escape(patient));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/auth/consent\">{}<fieldset><legend>{} will be able to:</legend><ul class=\"scopes\">",
        hidden(p.interaction, p.csrf),
        escape(p.client_name)
    );
    for (i, scope) in p.scopes.iter().enumerate() {
        let text = scope.to_string();
        let _ = write!(
            body,
            "<li><input type=\"checkbox\" name=\"scope\" id=\"scope-{i}\" value=\"{value}\" checked> <label for=\"scope-{i}\">{desc}</label> <span class=\"muted\">({value})</span></li>",
            value = escape(&text),
            desc = escape(&describe(scope))
        );
    }
    body.push_str(
        "</ul></fieldset><p class=\"muted\">Untick anything you do not want to share.</p>\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Allow</button> \
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
    );
    layout("Allow access?", &body)
}

/// One row of the management page.
pub struct GrantRow {
    pub grant_id: String,
    pub client_name: String,
    pub scope: ScopeSet,
    pub granted: String,
}

/// A sign-in page with a double-submit CSRF token and no pending authorization behind it
/// (the management page, the EHR portal).
pub(crate) fn sign_in_form(server_name: &str, intro: &str, error: Option<&str>, action: &str, csrf: &str) -> String {
    let hidden_fields = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(csrf));
    sign_in(server_name, intro, error, action, &hidden_fields, "")
}

/// The sign-in form of the management page (no pending authorization behind it).
pub fn manage_login_page(csrf: &str, server_name: &str, error: Option<&str>) -> String {
    sign_in_form(server_name, "<p>See and revoke the applications you gave access to.</p>", error, "/auth/manage/login", csrf)
}

/// The applications a user granted access to, each with a revoke button.
pub fn manage_page(user_name: &str, csrf: &str, grants: &[GrantRow]) -> String {
    let mut body = format!("<h1>Applications with access</h1><p>Signed in as <strong>{}</strong>.</p>", escape(user_name));
    if grants.is_empty() {
        body.push_str("<p id=\"no-grants\">No application has access.</p>");
    }
    for g in grants {
        let _ = write!(
            body,
            "<section class=\"grant-row\" data-grant-id=\"{id}\"><h2>{name}</h2><p class=\"muted\">Since {date}</p><ul class=\"scopes\">",
            id = escape(&g.grant_id),
            name = escape(&g.client_name),
            date = escape(&g.granted)
        );
        for scope in g.scope.iter() {
            let _ = write!(body, "<li>{} <span class=\"muted\">({})</span></li>", escape(&describe(scope)), escape(&scope.to_string()));
        }
        let _ = write!(
            body,
            "</ul><form method=\"post\" action=\"/auth/manage/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"secondary revoke-grant\" name=\"grant\" value=\"{id}\">Revoke access</button></form></section>",
            csrf = escape(csrf),
            id = escape(&g.grant_id)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/auth/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"secondary\" id=\"logout\">Sign out</button></form>",
        escape(csrf)
    );
    layout("Applications with access", &body)
}

/// A scope in plain words.
pub fn describe(scope: &Scope) -> String {
    match scope {
        Scope::OpenId => "Confirm who you are".into(),
        Scope::FhirUser => "Know your user record (who you are in the health record)".into(),
        Scope::Profile => "See your name".into(),
        Scope::Launch => "Open with the context the EHR launched it in (patient, encounter)".into(),
        Scope::LaunchPatient => "Know which patient record is open".into(),
        Scope::LaunchEncounter => "Know which encounter is open".into(),
        Scope::OfflineAccess => "Keep access after you sign out, until you revoke it".into(),
        Scope::OnlineAccess => "Keep access while you stay signed in".into(),
        Scope::Other(s) => format!("Use the permission \"{s}\""),
        Scope::Resource(r) => {
            let verbs: Vec<&str> = [
                (Permissions::READ, "read"),
                (Permissions::SEARCH, "search"),
                (Permissions::CREATE, "create"),
                (Permissions::UPDATE, "change"),
                (Permissions::DELETE, "delete"),
            ]
            .iter()
            .filter(|(p, _)| r.permissions.contains(*p))
            .map(|(_, v)| *v)
            .collect();
            let verbs = match verbs.as_slice() {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            };
            let what = match &r.resource {
                None => "all kinds of health data".to_owned(),
                Some(t) => format!("{t} records"),
            };
            let whose = match r.context {
                ScopeContext::Patient => "of the open patient",
                ScopeContext::User => "that you can see",
                ScopeContext::System => "of every patient",
            };
            let mut text = format!("{}{} {what} {whose}", verbs[..1].to_uppercase(), &verbs[1..]);
            if !r.query.is_empty() {
                let only: Vec<String> = r.query.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                let _ = write!(text, " (only where {})", only.join(" and "));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_break_out() {
        assert_eq!(escape(r#"<script>"x" & 'y'</script>"#), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;");
        let page =
            login_page(&LoginPage { interaction: "i\"><x", csrf: "c", client_name: "<b>Evil</b>", server_name: "S", error: Some("<i>"), username: "\"u" });
        assert!(!page.contains("<b>Evil</b>") && !page.contains("i\"><x") && !page.contains("<i>"));
        for id in ["id=\"username\"", "id=\"password\"", "id=\"login-submit\"", "for=\"username\"", "for=\"password\""] {
            assert!(page.contains(id), "{id}");
        }
    }

    #[test]
    fn describes_scopes_in_plain_words() {
        let d = |s: &str| describe(&Scope::parse(s).unwrap());
        assert_eq!(d("patient/*.read"), "Read and search all kinds of health data of the open patient");
        assert_eq!(d("user/Observation.cruds"), "Read, search, create, change and delete Observation records that you can see");
        assert_eq!(
            d("patient/Observation.rs?category=laboratory"),
            "Read and search Observation records of the open patient (only where category = laboratory)"
        );
        assert_eq!(d("system/Patient.r"), "Read Patient records of every patient");
    }

    #[test]
    fn consent_lists_each_scope_as_a_ticked_box() {
        let scopes = ScopeSet::parse("openid patient/*.rs").unwrap();
        let page =
            consent_page(&ConsentPage { interaction: "i", csrf: "c", client_name: "App", user_name: "Dr", patient_label: Some("Jane"), scopes: &scopes });
        assert_eq!(page.matches("type=\"checkbox\" name=\"scope\"").count(), 2);
        assert!(page.contains("value=\"patient/*.rs\" checked"));
        assert!(page.contains("id=\"approve\"") && page.contains("id=\"deny\""));
    }

    #[test]
    fn csp_allows_forms_to_end_at_the_client_and_framing_only_by_ehrs() {
        assert_eq!(
            csp(&["https://app.example".into()], &[]),
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https://app.example; frame-ancestors 'none'; base-uri 'none'"
        );
        assert!(csp(&[], &["https://ehr.example".into()]).contains("frame-ancestors https://ehr.example;"));
    }
}
