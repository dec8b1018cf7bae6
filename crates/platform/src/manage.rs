//! The management page (`/auth/manage`): a user signed in with the server's own login sees
//! the applications they gave access to and revokes any of them. The Worker decodes the
//! browser and the form, calls [`page`] or [`revoke`] and encodes the answer (the rows'
//! dates, the HTML). [`session_form`] is also the EHR portal's check of its forms.

use crate::accounts::{AccountState, GrantEntry, SessionHandle};
use crate::grants::{AuthenticatedUser, Command, Reply};
use crate::oauth::Failure;
use crate::signin::password::current_session;
use crate::signin::{Browser, PageForm, SignInPorts};

pub const MANAGE_PATH: &str = "/auth/manage";
/// Why the revocation was made, as the grant records it.
pub const REVOKED_BY_USER: &str = "revoked by the user";

/// What `GET /auth/manage` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagePage {
    /// No valid session: the sign-in form.
    SignIn,
    /// The user's grants still active, newest first, and the session's CSRF token.
    Grants { user_name: String, csrf: String, grants: Vec<GrantEntry> },
}

/// Why a form of a page behind the login session is not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormRefusal {
    /// Not a readable form: 400.
    Unreadable,
    /// No valid session: back to the page (which asks to sign in).
    NoSession,
    /// The CSRF token is not the session's: 403.
    Forged,
}

impl FormRefusal {
    /// The message page of a refusal shown as one (`None`: go back to the page).
    pub fn message(self) -> Option<(u16, &'static str, &'static str)> {
        match self {
            FormRefusal::Unreadable => Some((400, "Bad request", "The form could not be read.")),
            FormRefusal::NoSession => None,
            FormRefusal::Forged => Some((403, "Not allowed", "The form has expired or was not sent by this page; reload and try again.")),
        }
    }
}

/// A form accepted by [`session_form`]: the session, its user and the pairs.
#[derive(Debug)]
pub struct SessionPost<'f> {
    pub handle: SessionHandle,
    pub user: AuthenticatedUser,
    pub pairs: &'f [(String, String)],
}

impl SessionPost<'_> {
    /// The first value of `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A form posted by a page behind the login session: readable → a valid session → the
/// session-bound CSRF token.
pub async fn session_form<'f>(ports: &SignInPorts<'_>, form: &'f PageForm) -> Result<Result<SessionPost<'f>, FormRefusal>, Failure> {
    let Ok(pairs) = &form.form else { return Ok(Err(FormRefusal::Unreadable)) };
    let Some((handle, user)) = current_session(ports, &form.browser).await? else { return Ok(Err(FormRefusal::NoSession)) };
    let post = SessionPost { handle, user, pairs };
    if post.field("csrf") != Some(AccountState::csrf_for(&post.handle).as_str()) {
        return Ok(Err(FormRefusal::Forged));
    }
    Ok(Ok(post))
}

/// `GET /auth/manage`: the session → the user's list → only grants still active (a client may
/// have revoked one, a code replay may have ended one), newest first.
pub async fn page(ports: &SignInPorts<'_>, browser: &Browser) -> Result<ManagePage, Failure> {
    let Some((handle, user)) = current_session(ports, browser).await? else { return Ok(ManagePage::SignIn) };
    let mut grants = Vec::new();
    for entry in ports.accounts.list_grants(&user.username).await?.into_iter().rev() {
        if let Ok(Reply::Active { .. }) = ports.grants.apply(&entry.grant_id, &Command::Status).await? {
            grants.push(entry);
        }
    }
    Ok(ManagePage::Grants { user_name: user.display_name, csrf: AccountState::csrf_for(&handle), grants })
}

/// `POST /auth/manage/revoke`: the form ([`session_form`]) → the grant removed from the user's
/// list → only a grant that was on it is revoked. `Ok(())`: back to the page.
pub async fn revoke(ports: &SignInPorts<'_>, form: &PageForm) -> Result<Result<(), FormRefusal>, Failure> {
    let post = match session_form(ports, form).await? {
        Ok(post) => post,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let grant_id = post.field("grant").unwrap_or_default();
    if ports.accounts.remove_grant(&post.user.username, grant_id).await? {
        let _ = ports.grants.apply(grant_id, &Command::Revoke { reason: REVOKED_BY_USER.into() }).await?;
    }
    Ok(Ok(()))
}
