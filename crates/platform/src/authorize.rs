//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, SMART App Launch 2.2 §2.0.5,
//! OpenID Connect Core §3.1.2.1) checked as an ordered list of small rules.
//!
//! The order matters for safety (RFC 6749 §4.1.2.1, RFC 9700 §4.11): until the client and the
//! redirect URI are verified, an error is shown on an error page and never redirected; after,
//! it is redirected to the client with `error`, `error_description`, `state` and `iss`.

use crate::clients::{Client, ClientType};
use crate::scope_policy::{self, Holder};
use smart_protocol::scopes::{Scope, ScopeSet};
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};
use url::Url;

/// Longest accepted value of any parameter, and of the whole parameter list.
pub const MAX_PARAM_LEN: usize = 4096;
pub const MAX_TOTAL_LEN: usize = 16 * 1024;

/// The parameters this server reads; any of them given twice is refused (RFC 6749 §3.1).
const KNOWN: [&str; 15] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
    "prompt",
    "max_age",
    "login_hint",
    "request",
    "request_uri",
];

/// `prompt` (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The requested scopes, normalised.
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    pub launch: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    /// `max_age` (OpenID Connect Core §3.1.2.1): the oldest sign-in, in seconds, the user may
    /// come with; older, they sign in again. `0` is `prompt=login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// `login_hint` (OpenID Connect Core §3.1.2.1): the username to prefill on the login page;
    /// a hint, never an identity (see [`AuthorizationRequest::session_matches_hint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
}

/// Longest `login_hint` kept (the login form's username limit); a longer one is ignored.
pub const MAX_LOGIN_HINT_LEN: usize = crate::signin::password::MAX_USERNAME_LEN;

impl AuthorizationRequest {
    /// Whether the user must type their password whatever their session (`prompt=login`, or
    /// `max_age=0`, which OpenID Connect Core §3.1.2.1 makes the same).
    pub fn forces_login(&self) -> bool {
        self.prompt.login || self.max_age == Some(0)
    }

    /// Whether a sign-in made at `auth_time` is recent enough at `now` for `max_age`: the
    /// elapsed time may not be greater than it (§3.1.2.1).
    pub fn accepts_auth_time(&self, auth_time: i64, now: i64) -> bool {
        match self.max_age {
            None => true,
            Some(0) => false,
            Some(max_age) => now.saturating_sub(auth_time) <= max_age,
        }
    }

    /// Whether a session of `username` may stand for this request's `login_hint`: with a hint
    /// naming someone else the session is not adopted (the login page is shown, prefilled), so
    /// the hint never silently switches users — nor logs anyone in.
    pub fn session_matches_hint(&self, username: &str) -> bool {
        self.login_hint.as_deref().is_none_or(|hint| hint == username)
    }
}

/// `max_age`: a non-negative integer of decimal digits (an empty value is no value, RFC 6749
/// §3.1); too large to count is as good as no limit.
fn parse_max_age(value: &str) -> Result<Option<i64>, ()> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(Some(value.parse::<i64>().unwrap_or(i64::MAX)))
}

/// An error shown to the user, because the client or redirect URI could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    pub status: u16,
    pub message: String,
}

/// An error sent back to the client's verified redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: OAuthError,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Valid(AuthorizationRequest),
    Page(PageError),
    Redirect(RedirectError),
}

/// The raw parameters, with the two that decide where errors go pulled out.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pairs: Vec<(String, String)>,
    pub client_id: String,
}

fn page(message: impl Into<String>) -> PageError {
    PageError { status: 400, message: message.into() }
}

/// First step: the parameter list as a whole, and a usable `client_id`. The caller then loads
/// that client and calls [`check`].
pub fn parse(pairs: Vec<(String, String)>) -> Result<RawRequest, PageError> {
    let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_TOTAL_LEN {
        return Err(page("The authorization request is too large."));
    }
    let count = |name: &str| pairs.iter().filter(|(k, _)| k == name).count();
    match count("client_id") {
        0 => return Err(page("The request has no client_id.")),
        1 => {}
        _ => return Err(page("The request has more than one client_id.")),
    }
    if count("redirect_uri") > 1 {
        return Err(page("The request has more than one redirect_uri."));
    }
    let client_id = pairs.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.clone()).unwrap_or_default();
    if client_id.is_empty() || client_id.len() > 128 {
        return Err(page("The client_id is not valid."));
    }
    Ok(RawRequest { pairs, client_id })
}

/// Second step: every rule, given the client `raw.client_id` names (None when unknown).
pub fn check(raw: &RawRequest, client: Option<&Client>, urls: &ServerUrls) -> Checked {
    let get = |name: &str| raw.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    // Until both are verified, errors go to a page.
    let Some(client) = client else {
        return Checked::Page(page(format!("No application is registered as {:?}.", raw.client_id)));
    };
    if client.client_type == ClientType::Backend {
        return Checked::Page(page("This application is a backend service and cannot ask users for access."));
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return Checked::Page(page("The request has no redirect_uri."));
    };
    if !client.has_redirect_uri(redirect_uri) {
        return Checked::Page(page("The redirect_uri is not one the application registered."));
    }

    // From here on, errors are redirected to the client.
    let state = get("state").filter(|s| !s.is_empty() && s.len() <= 1024).map(str::to_owned);
    let fail = |code: OAuthErrorCode, description: &str| {
        Checked::Redirect(RedirectError { redirect_uri: redirect_uri.to_owned(), state: state.clone(), error: OAuthError::new(code, description) })
    };
    if let Some(name) = KNOWN.iter().find(|name| raw.pairs.iter().filter(|(k, _)| k == *name).count() > 1) {
        return fail(OAuthErrorCode::InvalidRequest, &format!("{name} is given more than once"));
    }
    if let Some((name, _)) = raw.pairs.iter().find(|(_, v)| v.len() > MAX_PARAM_LEN) {
        return fail(OAuthErrorCode::InvalidRequest, &format!("{name} is too long"));
    }
    if get("request").is_some() {
        return fail(OAuthErrorCode::Extension("request_not_supported".into()), "request objects are not supported");
    }
    if get("request_uri").is_some() {
        return fail(OAuthErrorCode::Extension("request_uri_not_supported".into()), "request_uri is not supported");
    }
    match get("response_type") {
        None | Some("") => return fail(OAuthErrorCode::InvalidRequest, "response_type is required"),
        Some("code") => {}
        Some(_) => return fail(OAuthErrorCode::UnsupportedResponseType, "only response_type=code is supported"),
    }
    let Some(state) = state.clone() else {
        return fail(OAuthErrorCode::InvalidRequest, "state is required (1 to 1024 characters)");
    };
    match get("aud") {
        None | Some("") => return fail(OAuthErrorCode::InvalidRequest, "aud is required: the FHIR base URL"),
        Some(aud) if aud.trim_end_matches('/') != urls.fhir_base() => return fail(OAuthErrorCode::InvalidRequest, "aud is not this server's FHIR base URL"),
        Some(_) => {}
    }
    match get("code_challenge_method") {
        Some("S256") => {}
        Some("plain") => return fail(OAuthErrorCode::InvalidRequest, "code_challenge_method plain is not allowed; use S256"),
        None => return fail(OAuthErrorCode::InvalidRequest, "PKCE is required: code_challenge_method=S256"),
        Some(_) => return fail(OAuthErrorCode::InvalidRequest, "code_challenge_method must be S256"),
    }
    // An S256 challenge is a base64url SHA-256: exactly 43 characters.
    let code_challenge = match get("code_challenge") {
        Some(c) if c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => c,
        Some(_) => return fail(OAuthErrorCode::InvalidRequest, "code_challenge is not a base64url S256 value"),
        None => return fail(OAuthErrorCode::InvalidRequest, "code_challenge is required"),
    };
    let requested = match get("scope").map(ScopeSet::parse) {
        None => return fail(OAuthErrorCode::InvalidScope, "scope is required"),
        Some(Err(e)) => return fail(OAuthErrorCode::InvalidScope, &e.to_string()),
        Some(Ok(set)) if set.is_empty() => return fail(OAuthErrorCode::InvalidScope, "scope is required"),
        Some(Ok(set)) => set,
    };
    if let Err(e) = scope_policy::check_requested(&requested) {
        return fail(OAuthErrorCode::InvalidScope, e.error_description.as_deref().unwrap_or("scope is not valid"));
    }
    if scope_policy::grantable(&requested, &client.allowed_scopes(), Holder::Interactive).is_empty() {
        return fail(OAuthErrorCode::InvalidScope, "none of the requested scopes is allowed for this application");
    }
    let launch = get("launch").filter(|l| !l.is_empty()).map(str::to_owned);
    let prompt_words: Vec<&str> = get("prompt").unwrap_or("").split(' ').filter(|w| !w.is_empty()).collect();
    let prompt = Prompt { none: prompt_words.contains(&"none"), login: prompt_words.contains(&"login"), consent: prompt_words.contains(&"consent") };
    if prompt.none && prompt_words.len() > 1 {
        return fail(OAuthErrorCode::InvalidRequest, "prompt=none cannot be combined with other values");
    }
    let Ok(max_age) = parse_max_age(get("max_age").unwrap_or("")) else {
        return fail(OAuthErrorCode::InvalidRequest, "max_age must be a non-negative whole number of seconds");
    };
    let login_hint =
        get("login_hint").map(str::trim).filter(|h| !h.is_empty() && h.len() <= MAX_LOGIN_HINT_LEN && !h.chars().any(char::is_control)).map(str::to_owned);
    let nonce = get("nonce").filter(|n| !n.is_empty()).map(str::to_owned);
    if requested.contains(&Scope::OpenId) && nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return fail(OAuthErrorCode::InvalidRequest, "nonce is too long");
    }
    Checked::Valid(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: requested.to_string(),
        state,
        code_challenge: code_challenge.to_owned(),
        launch,
        nonce,
        prompt,
        max_age,
        login_hint,
    })
}

/// The redirect carrying an error (RFC 6749 §4.1.2.1, with RFC 9207 `iss`).
pub fn error_redirect(error: &RedirectError, issuer: &str) -> String {
    let mut pairs = vec![("error", error.error.error.as_str().to_owned())];
    if let Some(description) = &error.error.error_description {
        pairs.push(("error_description", description.clone()));
    }
    if let Some(state) = &error.state {
        pairs.push(("state", state.clone()));
    }
    pairs.push(("iss", issuer.to_owned()));
    append_query(&error.redirect_uri, &pairs)
}

/// The redirect carrying the authorization code (RFC 6749 §4.1.2, RFC 9207 `iss`).
pub fn code_redirect(redirect_uri: &str, code: &str, state: &str, issuer: &str) -> String {
    append_query(redirect_uri, &[("code", code.to_owned()), ("state", state.to_owned()), ("iss", issuer.to_owned())])
}

/// Adds parameters to a registered redirect URI, keeping its own query (RFC 6749 §3.1.2).
fn append_query(uri: &str, pairs: &[(&str, String)]) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in pairs {
                    query.append_pair(k, v);
                }
            }
            url.into()
        }
        // Registered URIs are validated; this cannot happen, and if it did, no redirect.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistration;

    fn urls() -> ServerUrls {
        ServerUrls::new("https://ehr.example", "/fhir").unwrap()
    }

    fn client() -> Client {
        ClientRegistration::parse(
            &serde_json::json!({"client_id": "app", "client_name": "App", "client_type": "public",
                "redirect_uris": ["https://app.example/cb?tenant=1"], "scope": "launch launch/patient openid fhirUser patient/*.rs"})
            .to_string(),
        )
        .unwrap()
        .into_client()
        .unwrap()
    }

    fn good() -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb?tenant=1"),
            ("scope", "openid patient/*.read launch/patient"),
            ("state", "abc"),
            ("aud", "https://ehr.example/fhir"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn run(pairs: Vec<(String, String)>) -> Checked {
        match parse(pairs) {
            Ok(raw) => {
                let client = client();
                check(&raw, (raw.client_id == "app").then_some(&client), &urls())
            }
            Err(page) => Checked::Page(page),
        }
    }

    fn with(name: &str, value: Option<&str>) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = good().into_iter().filter(|(k, _)| k != name).collect();
        if let Some(v) = value {
            pairs.push((name.to_owned(), v.to_owned()));
        }
        pairs
    }

    fn redirect_code(checked: Checked) -> String {
        match checked {
            Checked::Redirect(r) => {
                assert_eq!(r.redirect_uri, "https://app.example/cb?tenant=1");
                r.error.error.to_string()
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes() {
        let Checked::Valid(req) = run(good()) else { panic!() };
        assert_eq!(req.scope, "openid patient/*.read launch/patient");
        assert_eq!(req.state, "abc");
        assert_eq!(run(with("aud", Some("https://ehr.example/fhir/"))).clone(), run(good()));
    }

    #[test]
    fn untrusted_client_or_redirect_goes_to_a_page() {
        for pairs in [
            with("client_id", None),
            with("client_id", Some("unknown")),
            with("redirect_uri", None),
            with("redirect_uri", Some("https://app.example/cb")),
            with("redirect_uri", Some("https://evil.example/cb")),
            [good(), vec![("client_id".into(), "app".into())]].concat(),
            [good(), vec![("redirect_uri".into(), "https://app.example/cb?tenant=1".into())]].concat(),
            with("state", Some(&"x".repeat(MAX_TOTAL_LEN))),
        ] {
            assert!(matches!(run(pairs.clone()), Checked::Page(_)), "{pairs:?}");
        }
    }

    #[test]
    fn each_rule_redirects_its_exact_error() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (with("response_type", None), "invalid_request"),
            (with("response_type", Some("token")), "unsupported_response_type"),
            (with("state", None), "invalid_request"),
            (with("aud", None), "invalid_request"),
            (with("aud", Some("https://other.example/fhir")), "invalid_request"),
            (with("code_challenge_method", None), "invalid_request"),
            (with("code_challenge_method", Some("plain")), "invalid_request"),
            (with("code_challenge", None), "invalid_request"),
            (with("code_challenge", Some("short")), "invalid_request"),
            (with("scope", None), "invalid_scope"),
            (with("scope", Some("patient/Observation.sr")), "invalid_scope"),
            (with("scope", Some("system/*.rs")), "invalid_scope"),
            (with("scope", Some("openid patient/Observation.rs?category=laboratory&foo=bar")), "invalid_scope"),
            (with("scope", Some("patient/*.rs?_count=5")), "invalid_scope"),
            (with("request", Some("eyJ...")), "request_not_supported"),
            (with("prompt", Some("none login")), "invalid_request"),
            ([good(), vec![("scope".into(), "openid".into())]].concat(), "invalid_request"),
            ([good(), vec![("state".into(), "other".into())]].concat(), "invalid_request"),
            (with("nonce", Some(&"n".repeat(MAX_PARAM_LEN + 1))), "invalid_request"),
            (with("max_age", Some("-1")), "invalid_request"),
            (with("max_age", Some("1.5")), "invalid_request"),
            (with("max_age", Some("+5")), "invalid_request"),
            (with("max_age", Some(" 5")), "invalid_request"),
            (with("max_age", Some("ten")), "invalid_request"),
            ([good(), vec![("max_age".into(), "5".into()), ("max_age".into(), "6".into())]].concat(), "invalid_request"),
        ];
        for (pairs, code) in cases {
            assert_eq!(redirect_code(run(pairs.clone())), code, "{pairs:?}");
        }
    }

    #[test]
    fn max_age_and_login_hint_are_read_and_decide_the_session() {
        let valid = |pairs| match run(pairs) {
            Checked::Valid(req) => req,
            other => panic!("expected a valid request, got {other:?}"),
        };
        assert_eq!(valid(good()).max_age, None);
        assert_eq!(valid(with("max_age", Some(""))).max_age, None, "an empty value is no value");
        assert_eq!(valid(with("max_age", Some("0"))).max_age, Some(0));
        assert_eq!(valid(with("max_age", Some("300"))).max_age, Some(300));
        assert_eq!(valid(with("max_age", Some("99999999999999999999999"))).max_age, Some(i64::MAX));

        let req = valid(with("max_age", Some("300")));
        assert!(req.accepts_auth_time(1000, 1300), "elapsed 300 is not greater than 300");
        assert!(!req.accepts_auth_time(1000, 1301));
        assert!(!req.forces_login());
        let zero = valid(with("max_age", Some("0")));
        assert!(zero.forces_login() && !zero.accepts_auth_time(1000, 1000), "max_age=0 is prompt=login");
        assert!(valid(good()).accepts_auth_time(0, i64::MAX));
        assert!(valid(with("prompt", Some("login"))).forces_login());

        let hinted = valid(with("login_hint", Some("  alice ")));
        assert_eq!(hinted.login_hint.as_deref(), Some("alice"));
        assert!(hinted.session_matches_hint("alice") && !hinted.session_matches_hint("bob"));
        assert!(valid(good()).session_matches_hint("bob"), "no hint, any session");
        for ignored in ["", "   ", "a\nb"] {
            assert_eq!(valid(with("login_hint", Some(ignored))).login_hint, None, "{ignored:?}");
        }
        assert_eq!(valid(with("login_hint", Some(&"a".repeat(MAX_LOGIN_HINT_LEN + 1)))).login_hint, None, "too long to be a username");
    }

    #[test]
    fn error_redirect_keeps_the_registered_query_and_adds_state_and_iss() {
        let Checked::Redirect(r) = run(with("response_type", Some("token"))) else { panic!() };
        let url = Url::parse(&error_redirect(&r, "https://ehr.example")).unwrap();
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("tenant".into(), "1".into()));
        assert_eq!(q[1], ("error".into(), "unsupported_response_type".into()));
        assert!(q.contains(&("state".into(), "abc".into())));
        assert!(q.contains(&("iss".into(), "https://ehr.example".into())));
        let ok = Url::parse(&code_redirect("https://app.example/cb?tenant=1", "c0de", "abc", "https://ehr.example")).unwrap();
        assert_eq!(ok.query(), Some("tenant=1&code=c0de&state=abc&iss=https%3A%2F%2Fehr.example"));
    }
}
