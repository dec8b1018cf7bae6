//! `GET|POST /auth/authorize` (RFC 6749 §4.1.1, SMART App Launch 2.2 §2.0.5): the checked
//! request becomes a new grant, bound to this browser, and the browser goes to its steps.

use super::{finish, message, steps_url, Browser, SetCookie, Shown, SignInAnswer, SignInPorts, Step, Stop};
use crate::authorize::{self, AuthorizationRequest, Checked, RedirectError};
use crate::clients::{Client, ClientType};
use crate::grants::{Command, PendingAuthorization};
use crate::launch::{self, LaunchUseError, ResolvedLaunch};
use crate::oauth::{Failure, FormProblem};
use crate::secret::{opaque_hash, random_secret};
use crate::simulate;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// The binding cookie's length (a [`random_secret`]); anything else is replaced.
const BINDING_LEN: usize = 43;

/// The authorization request's parameters (the query of a GET, the form of a POST) and the
/// browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCall {
    pub params: Result<Vec<(String, String)>, FormProblem>,
    pub browser: Browser,
}

/// The authorization endpoint.
pub async fn authorize(ports: &SignInPorts<'_>, call: AuthorizationCall) -> Result<SignInAnswer, Failure> {
    finish(run(ports, call).await)
}

async fn run(ports: &SignInPorts<'_>, call: AuthorizationCall) -> Step<SignInAnswer> {
    let params = readable(call.params)?;
    let (client, request) = checked(ports, params).await?;
    simulated(ports, &client, &request).await?;
    let launch = launch_once(ports, &client, &request).await?;
    let (binding, new_browser) = browser_binding(ports, &call.browser)?;
    let grant_id = start(ports, &client, request, launch, &binding).await?;
    let answer = SignInAnswer::from(Shown::Redirect(steps_url(&grant_id)));
    Ok(if new_browser { answer.with(SetCookie::Browser(binding)) } else { answer })
}

/// 1. A POST must be a form, and readable.
fn readable(params: Result<Vec<(String, String)>, FormProblem>) -> Step<Vec<(String, String)>> {
    params.map_err(|problem| {
        Stop::show(match problem {
            FormProblem::NotAForm => message(415, "Bad request", "An authorization POST must be application/x-www-form-urlencoded."),
            FormProblem::Unreadable => message(400, "Bad request", "The authorization request could not be read."),
        })
    })
}

/// 2. The request's own rules ([`authorize::check`]): a page until the client and redirect
///    URI are trusted, a redirect to the client after.
async fn checked(ports: &SignInPorts<'_>, params: Vec<(String, String)>) -> Step<(Client, AuthorizationRequest)> {
    let raw = authorize::parse(params).map_err(|e| Stop::show(Shown::Message { status: e.status, title: "Bad authorization request", message: e.message }))?;
    let client = ports.clients.client(&raw.client_id).await?;
    let request = match authorize::check(&raw, client.as_ref(), ports.urls) {
        Checked::Valid(request) => request,
        Checked::Page(e) => return Err(Stop::show(Shown::Message { status: e.status, title: "Bad authorization request", message: e.message })),
        Checked::Redirect(e) => return Err(Stop::show(Shown::Redirect(authorize::error_redirect(&e, ports.urls.issuer())))),
    };
    let client = client.ok_or_else(|| Failure::Unexpected("checked request without client".into()))?;
    Ok((client, request))
}

/// 2b. A test client's simulated failure ([`simulate`]), redirected as a real one would be —
///     before the launch is used or a grant starts, so nothing real changes.
async fn simulated(ports: &SignInPorts<'_>, client: &Client, request: &AuthorizationRequest) -> Step<()> {
    match simulate::take(ports.simulations, client, simulate::Stage::Authorize).await? {
        Some(simulation) => {
            let error = simulation.oauth_error();
            let description = error.error_description.clone().unwrap_or_default();
            Err(Stop::show(client_error(ports, request, error.error, &description)))
        }
        None => Ok(()),
    }
}

/// The redirect carrying an error to a trusted redirect URI.
pub(super) fn client_error(ports: &SignInPorts<'_>, request: &AuthorizationRequest, code: OAuthErrorCode, description: &str) -> Shown {
    let error = RedirectError { redirect_uri: request.redirect_uri.clone(), state: Some(request.state.clone()), error: OAuthError::new(code, description) };
    Shown::Redirect(authorize::error_redirect(&error, ports.urls.issuer()))
}

/// 3. An EHR launch: the `launch` value is ours, for this client, and used once (the first
///    authorization request that presents it records it).
async fn launch_once(ports: &SignInPorts<'_>, client: &Client, request: &AuthorizationRequest) -> Step<Option<ResolvedLaunch>> {
    let Some(value) = &request.launch else { return Ok(None) };
    let ring = ports.keys.key_ring().await?;
    let refuse = |e: LaunchUseError| Stop::show(client_error(ports, request, OAuthErrorCode::InvalidRequest, &e.to_string()));
    let resolved = launch::resolve(value, &client.client_id, ports.urls, &ring, ports.verifier, ports.clock.now()).await.map_err(refuse)?;
    if !ports.assertions.record(&format!("launch:{}", client.client_id), &resolved.jti, resolved.exp).await? {
        return Err(refuse(LaunchUseError::AlreadyUsed));
    }
    Ok(Some(resolved))
}

/// 4. The browser's binding cookie, or a new one: only this browser may continue.
fn browser_binding(ports: &SignInPorts<'_>, browser: &Browser) -> Step<(String, bool)> {
    match browser.binding.as_ref().filter(|c| c.len() == BINDING_LEN) {
        Some(binding) => Ok((binding.clone(), false)),
        None => Ok((random_secret(ports.random)?, true)),
    }
}

/// 5. A new grant holds the pending authorization.
async fn start(ports: &SignInPorts<'_>, client: &Client, request: AuthorizationRequest, launch: Option<ResolvedLaunch>, binding: &str) -> Step<String> {
    let pending = PendingAuthorization {
        client_name: client.client_name.clone(),
        consent_policy: client.consent,
        allowed_scope: client.allowed_scopes().to_string(),
        launch_user: launch.as_ref().and_then(|l| l.user.clone()),
        launch: launch.map(|l| l.context),
        browser_hash: opaque_hash(binding),
        public_client: client.client_type == ClientType::Public,
        csrf: random_secret(ports.random)?,
        created_at: ports.clock.now(),
        user: None,
        patient: None,
        encounter: None,
        encounter_chosen: false,
        granted_scope: None,
        request,
    };
    let grant_id = ports.grants.new_id()?;
    if let Err(e) = ports.grants.apply(&grant_id, &Command::Start { pending: Box::new(pending) }).await? {
        return Err(Failure::Unexpected(format!("new grant refused its start: {e}")).into());
    }
    Ok(grant_id)
}
