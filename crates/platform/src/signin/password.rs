//! The password login and the login session it opens, shared by the sign-in pages, the
//! management page and the EHR launch portal (one session cookie, scoped to `/auth`).
//! Throttling is the account's ([`crate::accounts`]); the words of a refusal are the same for
//! an unknown user and a wrong password.

use super::{field, finish, message, Browser, PageForm, SetCookie, SignInAnswer, SignInPorts, Step, Stop};
use crate::accounts::{AccountState, LoginOutcome, LoginSource, SessionHandle};
use crate::grants::AuthenticatedUser;
use crate::oauth::Failure;
use crate::ports::{Accounts, LoginAttempt, StoreError, Users};
use crate::secret::{opaque_hash, Secret};

/// The refusal of an unknown user and of a wrong password alike.
pub const REJECTED: &str = "The username or password is not correct.";
/// The refusal of an empty or oversized username or password.
pub const MISSING: &str = "Enter your username and password.";
/// Longest username and password read.
pub const MAX_USERNAME_LEN: usize = 64;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// What a login form carries.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Trimmed.
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    pub fn from_form(pairs: &[(String, String)]) -> Credentials {
        Credentials { username: field(pairs, "username").unwrap_or("").trim().to_owned(), password: field(pairs, "password").unwrap_or("").into() }
    }

    /// Both present, neither too long.
    pub fn well_formed(&self) -> bool {
        let password = self.password.expose();
        !self.username.is_empty() && !password.is_empty() && self.username.len() <= MAX_USERNAME_LEN && password.len() <= MAX_PASSWORD_LEN
    }
}

/// What a password attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// A new session (`cookie`: its handle as the session cookie carries it).
    Accepted {
        cookie: String,
        user: AuthenticatedUser,
    },
    Rejected,
    /// This source may try again in `retry_after` seconds.
    Locked {
        retry_after: i64,
    },
}

impl PasswordCheck {
    /// The login form's message and status for a refused attempt.
    pub fn refusal(&self) -> Option<(String, u16)> {
        match self {
            PasswordCheck::Accepted { .. } => None,
            PasswordCheck::Rejected => Some((REJECTED.to_owned(), 401)),
            PasswordCheck::Locked { retry_after } => Some((format!("Too many failed attempts. Try again in {retry_after} seconds."), 429)),
        }
    }
}

/// Where an attempt comes from: the client's IP, and this browser's binding cookie (a browser
/// that signed in before is throttled on its own, see [`crate::accounts`]).
pub fn login_source(browser: &Browser) -> LoginSource {
    LoginSource { ip: browser.ip.clone(), browser_hash: browser.binding.as_ref().filter(|c| c.len() == 43).map(|c| opaque_hash(c)) }
}

/// Checks a password through the user's account (throttling included).
pub async fn check_password(accounts: &dyn Accounts, users: &dyn Users, credentials: &Credentials, source: LoginSource) -> Result<PasswordCheck, StoreError> {
    let user = users.user(&credentials.username).await?;
    let attempt = LoginAttempt { username: credentials.username.clone(), user: user.clone(), password: credentials.password.clone(), source };
    Ok(match (accounts.login(&attempt).await?, user) {
        (LoginOutcome::LoggedIn { session, auth_time }, Some(user)) => {
            let session_id = SessionHandle::parse(&session).map(|h| h.id).unwrap_or_default();
            let user = AuthenticatedUser { username: user.username, display_name: user.display_name, fhir_user: user.fhir_user, auth_time, session_id };
            PasswordCheck::Accepted { cookie: session, user }
        }
        (LoginOutcome::Locked { retry_after }, _) => PasswordCheck::Locked { retry_after },
        _ => PasswordCheck::Rejected,
    })
}

/// The user of a valid session handle.
pub async fn session_user(accounts: &dyn Accounts, users: &dyn Users, handle: &SessionHandle) -> Result<Option<AuthenticatedUser>, StoreError> {
    let Some(auth_time) = accounts.check_session(handle).await? else { return Ok(None) };
    let Some(user) = users.user(&handle.username).await? else { return Ok(None) };
    Ok(Some(AuthenticatedUser {
        username: user.username,
        display_name: user.display_name,
        fhir_user: user.fhir_user,
        auth_time,
        session_id: handle.id.clone(),
    }))
}

/// The browser's session, if its cookie is valid: the handle and the user.
pub async fn current_session(ports: &SignInPorts<'_>, browser: &Browser) -> Result<Option<(SessionHandle, AuthenticatedUser)>, StoreError> {
    let Some(handle) = browser.session.as_deref().and_then(SessionHandle::parse) else { return Ok(None) };
    Ok(session_user(ports.accounts, ports.users, &handle).await?.map(|user| (handle, user)))
}

/// What a sign-in form of the management page or the portal came to.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordSignIn {
    /// Signed in: the new session cookie.
    SignedIn { cookie: String },
    /// The form is refused as a whole (unreadable, or not sent by the page): a message page.
    Refused { status: u16, title: &'static str, message: String },
    /// The form again, with a message and status.
    AskAgain { message: String, status: u16 },
}

/// A sign-in form posted with its double-submit CSRF cookie (there is no session yet to bind
/// a token to): the token → the input rules → the password.
pub async fn sign_in(ports: &SignInPorts<'_>, form: &PageForm, csrf_cookie: Option<&str>) -> Result<PasswordSignIn, Failure> {
    let refused = |status, title, message: &str| Ok(PasswordSignIn::Refused { status, title, message: message.to_owned() });
    let Ok(pairs) = &form.form else { return refused(400, "Bad request", "The form could not be read.") };
    if csrf_cookie.is_none() || field(pairs, "csrf") != csrf_cookie {
        return refused(403, "This sign-in cannot continue", "The form has expired or was not sent by this page; reload and try again.");
    }
    let credentials = Credentials::from_form(pairs);
    if !credentials.well_formed() {
        return Ok(PasswordSignIn::AskAgain { message: MISSING.into(), status: 400 });
    }
    let check = check_password(ports.accounts, ports.users, &credentials, login_source(&form.browser)).await?;
    Ok(match (check.refusal(), check) {
        (_, PasswordCheck::Accepted { cookie, .. }) => PasswordSignIn::SignedIn { cookie },
        (Some((message, status)), _) => PasswordSignIn::AskAgain { message, status },
        (None, _) => return Err(Failure::Unexpected("a refused attempt without words".into())),
    })
}

/// `POST /auth/logout` (the management page's "Sign out", with its session-bound CSRF token):
/// ends this browser's session (and with it every `online_access` grant made in it) and
/// clears the cookie.
pub async fn logout(ports: &SignInPorts<'_>, form: PageForm) -> Result<SignInAnswer, Failure> {
    finish(end_session(ports, form).await)
}

async fn end_session(ports: &SignInPorts<'_>, form: PageForm) -> Step<SignInAnswer> {
    let pairs = form.form.unwrap_or_default();
    if let Some(handle) = form.browser.session.as_deref().and_then(SessionHandle::parse) {
        if field(&pairs, "csrf") != Some(AccountState::csrf_for(&handle).as_str()) {
            let refused = "The sign-out form has expired or was not sent by this site; sign out from the management page.";
            return Err(Stop::show(message(403, "Not allowed", refused)));
        }
        // Only the holder of the session's secret may end it.
        if ports.accounts.check_session(&handle).await?.is_some() {
            ports.accounts.end_session(&handle).await?;
        }
    }
    Ok(SignInAnswer::from(message(200, "Signed out", "You are signed out.")).with(SetCookie::ClearSession))
}
