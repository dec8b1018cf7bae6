//! The sign-in: what a user's browser goes through between the client's authorization request
//! and the redirect with the code (RFC 6749 §4.1.1–4.1.2, SMART App Launch 2.2 §2.0.5–2.0.7,
//! OpenID Connect Core §3.1.2). The pending authorization itself is a grant record
//! ([`crate::grants::PendingAuthorization`], one `Grant` Durable Object per grant); this module runs
//! the pages around it over the ports in [`SignInPorts`]:
//!
//! - [`authorize`] (`GET|POST /auth/authorize`): read the parameters → the request's own rules
//!   ([`crate::authorize`]: a page until the client and redirect URI are trusted, a redirect
//!   after) → the EHR `launch`, once → bind the browser → start the grant → go to its steps.
//! - [`visit`] (`GET /auth/sign-in`): the browser's grant → adopt a valid session →
//!   remembered or pre-approved consent → the code; or the one page the user must act on
//!   (login, patient picker, encounter picker, consent), or the client's error (`prompt=none`,
//!   a user who may not complete the launch).
//! - [`login`], [`pick`], [`consent`] (the pages' forms): the browser's grant → its CSRF
//!   token → the step's own checks (input limits and throttled password, a patient within the
//!   user's reach, an encounter of the patient's, approve or deny) → the grant's command.
//! - [`logout`] and [`password::sign_in`] (the management page and the EHR portal, which
//!   share the login session).
//!
//! The Worker decodes a request once (a [`Browser`] and the parameters), calls one of these
//! and encodes the [`SignInAnswer`]; the same code runs natively over the in-memory adapters
//! (`crate::oauth::memory`, [`memory`]).

mod authorization;
mod forms;
pub mod memory;
pub mod password;
mod steps;

pub use authorization::{authorize, AuthorizationCall};
pub use forms::{consent, login, login_rate_limited, pick};
pub use password::logout;
pub use steps::{visit, Visit};

use crate::fhir::store::FhirStore;
use crate::grants::{Command, GrantError, PendingAuthorization, Reply};
use crate::oauth::{Failure, FormProblem};
use crate::pages::{self, Choice};
use crate::ports::{Accounts, AssertionLog, ClientRegistry, Clock, GrantStore, Random, Settings, SigningKeys, Users, Verifier};
use smart_protocol::scopes::ScopeSet;
use smart_protocol::ServerUrls;
use std::fmt;

/// What the sign-in works with.
pub struct SignInPorts<'a> {
    pub urls: &'a ServerUrls,
    pub grants: &'a dyn GrantStore,
    pub clients: &'a dyn ClientRegistry,
    pub users: &'a dyn Users,
    pub accounts: &'a dyn Accounts,
    /// Where an EHR launch's `jti` is recorded (single use), under `launch:{client_id}`.
    pub assertions: &'a dyn AssertionLog,
    pub keys: &'a dyn SigningKeys,
    pub settings: &'a dyn Settings,
    /// The patients and encounters the pickers offer.
    pub patients: &'a dyn FhirStore,
    pub verifier: &'a dyn Verifier,
    pub random: &'a dyn Random,
    pub clock: &'a dyn Clock,
    /// A test client's next failure on purpose ([`crate::simulate`]).
    pub simulations: &'a dyn crate::simulate::Simulations,
}

/// What every sign-in request carries about the browser, decoded at the edge.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Browser {
    /// The browser-binding cookie (`se_browser`).
    pub binding: Option<String>,
    /// The login session cookie (`se_session`).
    pub session: Option<String>,
    /// The client's IP address (`CF-Connecting-IP`, set by Cloudflare), for throttling.
    pub ip: String,
}

impl fmt::Debug for Browser {
    /// The cookies are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |c: &Option<String>| c.as_ref().map(|_| crate::secret::Redacted);
        f.debug_struct("Browser").field("binding", &redacted(&self.binding)).field("session", &redacted(&self.session)).field("ip", &self.ip).finish()
    }
}

/// A form POSTed by a sign-in page: its pairs in order, or why it could not be read.
#[derive(Clone, PartialEq, Eq)]
pub struct PageForm {
    pub form: Result<Vec<(String, String)>, FormProblem>,
    pub browser: Browser,
}

impl fmt::Debug for PageForm {
    /// Parameter names only: the values hold passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Result<Vec<&str>, _> = self.form.as_ref().map(|pairs| pairs.iter().map(|(k, _)| k.as_str()).collect());
        f.debug_struct("PageForm").field("form", &names).field("browser", &self.browser).finish()
    }
}

impl PageForm {
    /// The first value of `name`.
    fn field(&self, name: &str) -> Option<&str> {
        field(self.form.as_deref().unwrap_or_default(), name)
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A sign-in page to show, with what it shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Login { interaction: String, csrf: String, client_name: String, server_name: String, error: Option<String>, username: String },
    PatientPicker { interaction: String, csrf: String, client_name: String, patients: Vec<Choice> },
    EncounterPicker { interaction: String, csrf: String, client_name: String, encounters: Vec<Choice> },
    Consent { interaction: String, csrf: String, client_name: String, user_name: String, patient_label: Option<String>, scopes: ScopeSet },
}

impl Page {
    /// The page's HTML.
    pub fn render(&self) -> String {
        match self {
            Page::Login { interaction, csrf, client_name, server_name, error, username } => {
                pages::login_page(&pages::LoginPage { interaction, csrf, client_name, server_name, error: error.as_deref(), username })
            }
            Page::PatientPicker { interaction, csrf, client_name, patients } => pages::patient_picker(interaction, csrf, client_name, patients),
            Page::EncounterPicker { interaction, csrf, client_name, encounters } => pages::encounter_picker(interaction, csrf, client_name, encounters),
            Page::Consent { interaction, csrf, client_name, user_name, patient_label, scopes } => {
                pages::consent_page(&pages::ConsentPage { interaction, csrf, client_name, user_name, patient_label: patient_label.as_deref(), scopes })
            }
        }
    }
}

/// What the browser is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// A sign-in page: its forms may post to `form_targets` (the client's origin, where the
    /// last one ends), and the EHRs in `frame_ancestors` may frame it.
    Page { status: u16, page: Page, form_targets: Vec<String>, frame_ancestors: Vec<String>, retry_after: Option<i64> },
    /// `303 See Other`: the next step, or the client's redirect URI with a code or an error.
    Redirect(String),
    /// A page with a title and a message only: errors that must not reach the client (it or
    /// its redirect URI is not trusted, the browser is not the one that started) and notices.
    Message { status: u16, title: &'static str, message: String },
}

/// A cookie the answer sets.
#[derive(Clone, PartialEq, Eq)]
pub enum SetCookie {
    /// The new browser-binding cookie.
    Browser(String),
    /// The new login session cookie.
    Session(String),
    /// The session cookie, cleared.
    ClearSession,
}

impl fmt::Debug for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetCookie::Browser(_) => f.write_str("Browser([redacted])"),
            SetCookie::Session(_) => f.write_str("Session([redacted])"),
            SetCookie::ClearSession => f.write_str("ClearSession"),
        }
    }
}

/// A sign-in step's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SignInAnswer {
    pub shown: Shown,
    pub cookies: Vec<SetCookie>,
}

impl From<Shown> for SignInAnswer {
    fn from(shown: Shown) -> SignInAnswer {
        SignInAnswer { shown, cookies: Vec::new() }
    }
}

impl SignInAnswer {
    fn with(mut self, cookie: SetCookie) -> SignInAnswer {
        self.cookies.push(cookie);
        self
    }
}

/// Where the browser goes for the grant's next step.
pub fn steps_url(grant_id: &str) -> String {
    format!("/auth/sign-in?interaction={grant_id}")
}

fn message(status: u16, title: &'static str, message: &str) -> Shown {
    Shown::Message { status, title, message: message.to_owned() }
}

/// The page for a grant that refuses this browser's step.
fn refused(error: &GrantError) -> Shown {
    let status = match error {
        GrantError::NotFound => 404,
        GrantError::WrongBrowser | GrantError::BadCsrf | GrantError::NotLaunchUser | GrantError::OtherPatient => 403,
        _ => 400,
    };
    message(status, "This sign-in cannot continue", &error.to_string())
}

/// Why a step stopped: the page to show, or a failure of ours.
enum Stop {
    Show(Box<Shown>),
    Fail(Failure),
}

impl Stop {
    fn show(shown: Shown) -> Stop {
        Stop::Show(Box::new(shown))
    }
}

macro_rules! failure_stops {
    ($($error:ty),*) => {$(
        impl From<$error> for Stop {
            fn from(e: $error) -> Stop {
                Stop::Fail(e.into())
            }
        }
    )*};
}
failure_stops!(Failure, crate::ports::StoreError, crate::ports::CryptoError, crate::keys::KeyError);

type Step<T> = Result<T, Stop>;

/// The answer of a flow written with `?` over [`Stop`].
fn finish(result: Step<SignInAnswer>) -> Result<SignInAnswer, Failure> {
    match result {
        Ok(answer) => Ok(answer),
        Err(Stop::Show(shown)) => Ok((*shown).into()),
        Err(Stop::Fail(failure)) => Err(failure),
    }
}

/// Applies a command to the browser's grant: a refusal becomes its page.
async fn apply(ports: &SignInPorts<'_>, grant_id: &str, command: &Command) -> Step<Reply> {
    ports.grants.apply(grant_id, command).await?.map_err(|e| Stop::show(refused(&e)))
}

/// The grant id a request names and this browser's binding hash.
fn bound(grant_id: Option<&str>, browser: &Browser) -> Step<(String, String)> {
    let Some(grant_id) = grant_id.filter(|i| !i.is_empty()) else {
        return Err(Stop::show(message(400, "Bad request", "The sign-in request is missing.")));
    };
    let Some(binding) = &browser.binding else {
        return Err(Stop::show(message(400, "Cookies needed", "This sign-in needs cookies; allow them for this site and start again from the application.")));
    };
    Ok((grant_id.to_owned(), crate::secret::opaque_hash(binding)))
}

/// The pending authorization this browser started, as the grant shows it.
async fn view_pending(ports: &SignInPorts<'_>, grant_id: &str, browser_hash: &str) -> Step<PendingAuthorization> {
    match apply(ports, grant_id, &Command::View { browser_hash: browser_hash.to_owned() }).await? {
        Reply::Pending { pending, .. } => Ok(*pending),
        _ => Err(Stop::show(refused(&GrantError::NotFound))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use password::Credentials;

    #[test]
    fn debug_hides_cookies_and_form_values() {
        let browser = Browser { binding: Some("b1nding".into()), session: Some("alice~id~s3ssion".into()), ip: "192.0.2.1".into() };
        let form = PageForm { form: Ok(vec![("password".into(), "hunter2".into())]), browser: browser.clone() };
        let cookies = [SetCookie::Browser("b1nding".into()), SetCookie::Session("alice~id~s3ssion".into())];
        let text = format!("{browser:?} {form:?} {cookies:?}");
        for secret in ["b1nding", "s3ssion", "hunter2"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("password") && text.contains("192.0.2.1"), "{text}");
    }

    #[test]
    fn credentials_are_trimmed_and_bounded() {
        let form = |u: &str, p: &str| Credentials::from_form(&[("username".into(), u.into()), ("password".into(), p.into())]);
        assert_eq!(form("  alice ", "pw").username, "alice");
        assert!(form("alice", "pw").well_formed());
        assert!(!form(" ", "pw").well_formed());
        assert!(!form("alice", "").well_formed());
        assert!(!form(&"a".repeat(password::MAX_USERNAME_LEN + 1), "pw").well_formed());
        assert!(!form("alice", &"p".repeat(password::MAX_PASSWORD_LEN + 1)).well_formed());
        assert!(!format!("{:?}", form("alice", "hunter2")).contains("hunter2"));
    }
}
