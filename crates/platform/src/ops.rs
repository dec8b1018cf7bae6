//! Operating the server: the one structured log line per request, the counters written to
//! Workers Analytics Engine, and the edge rate limits (which endpoints, which keys, which
//! answer). All decisions are here; the Worker fills the values, calls the bindings and prints.
//!
//! - Log line: JSON on one line (`wrangler tail` shows it as the request's log). It names the
//!   [`Route`], never the path or the query: FHIR paths and queries carry patient ids and names,
//!   authorize queries carry `state` and PKCE challenges. No token, code, secret, password or
//!   cookie is ever a field.
//! - Counters: <https://developers.cloudflare.com/analytics/analytics-engine/> — one data point
//!   per event, `index1` = `blob1` = the metric name, `blob2` = its detail, `double1` = 1.
//! - Rate limits: <https://developers.cloudflare.com/workers/runtime-apis/bindings/rate-limit/>
//!   — one binding per endpoint and key kind (IP or client), `limit({ key })` → `success`.

use crate::fhir::rest::Interaction;
use crate::routes::Route;
use serde::Serialize;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// The longest request id or client id a log line carries (longer ones are cut).
const MAX_ID_LEN: usize = 128;

/// One request, as its log line tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestLog {
    /// Always `"request"`, so a log search can pick these lines out of the others.
    pub msg: &'static str,
    pub request_id: String,
    pub method: String,
    /// The route's name ([`route_name`]).
    pub route: String,
    pub status: u16,
    pub duration_ms: u64,
    /// The client the request names or authenticates with, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The FHIR interaction ([`interaction_name`]) of a FHIR call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fhir: Option<&'static str>,
    /// Which edge limit refused the request, as `"{endpoint}:{ip|client}"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<String>,
}

impl RequestLog {
    pub fn new(request_id: &str, method: &str, route: Route, status: u16, duration_ms: u64, notes: &Notes) -> RequestLog {
        RequestLog {
            msg: "request",
            request_id: cut(request_id),
            method: method_name(method),
            route: route_name(route),
            status,
            duration_ms,
            client_id: notes.client_id.as_deref().map(cut),
            fhir: notes.interaction,
            rate_limited: notes.rate_limited.map(|(endpoint, scope)| format!("{}:{}", endpoint.name(), scope.name())),
        }
    }

    /// The JSON line.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"msg":"request"}"#.to_owned())
    }
}

fn cut(value: &str) -> String {
    value.chars().take(MAX_ID_LEN).collect()
}

/// A method as logged: the standard ones as they are, anything else `OTHER` (a client picks the
/// method; the log does not repeat arbitrary input).
fn method_name(method: &str) -> String {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().find(|m| m.eq_ignore_ascii_case(method)).map_or("OTHER", |m| m).to_owned()
}

/// A route's name in logs: its variant name (`Token`, `Fhir`, `Authorize`, …).
pub fn route_name(route: Route) -> String {
    format!("{route:?}")
}

/// The request id: Cloudflare's `cf-ray` when the request has a well-formed one (so the log
/// line matches Cloudflare's own logs), else `random()`.
pub fn request_id(cf_ray: Option<&str>, random: impl FnOnce() -> String) -> String {
    match cf_ray {
        Some(ray) if !ray.is_empty() && ray.len() <= 64 && ray.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => ray.to_owned(),
        _ => random(),
    }
}

/// What a handler learned about its request that the log line and the counters need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notes {
    pub client_id: Option<String>,
    /// The `grant_type` of a token request, as [`grant_kind`] names it.
    pub grant_type: Option<&'static str>,
    pub interaction: Option<&'static str>,
    pub rate_limited: Option<(Limited, LimitScope)>,
}

/// A grant type as counted: the ones this server issues tokens for, anything else `other`.
pub fn grant_kind(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some("client_credentials") => "client_credentials",
        _ => "other",
    }
}

/// A FHIR interaction's name, in the words of the CapabilityStatement's `interaction.code`
/// (R4 §3.1.0: `read`, `vread`, `search-type`, …), plus the operation and bundle kinds.
pub fn interaction_name(interaction: &Interaction) -> &'static str {
    match interaction {
        Interaction::Capabilities => "capabilities",
        Interaction::Read { .. } => "read",
        Interaction::Vread { .. } => "vread",
        Interaction::History { .. } => "history-instance",
        Interaction::TypeHistory { .. } => "history-type",
        Interaction::Search { .. } => "search-type",
        Interaction::Create { .. } => "create",
        Interaction::Update { .. } => "update",
        Interaction::Delete { .. } => "delete",
        Interaction::ConditionalUpdate { .. } => "conditional-update",
        Interaction::ConditionalDelete { .. } => "conditional-delete",
        Interaction::Patch { .. } => "patch",
        Interaction::Everything { .. } => "operation-everything",
        Interaction::Bundle => "batch-transaction",
    }
}

/// A counted event.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A token response (any grant type).
    TokenIssued { grant_type: &'static str },
    /// A sign-in form refused the credentials, or the account was locked (not an edge limit).
    LoginFailed { route: Route },
    /// A FHIR call, with its answer's status.
    FhirCall { interaction: &'static str, status: u16 },
    /// A request refused by an edge rate limit.
    RateLimited { endpoint: Limited, scope: LimitScope },
}

/// An Analytics Engine data point: `indexes: [index]`, `blobs`, `doubles`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub index: &'static str,
    pub blobs: Vec<String>,
    pub doubles: Vec<f64>,
}

/// The metric names, as `blob1` (and `index1`) holds them.
pub mod names {
    pub const TOKEN_ISSUED: &str = "token_issued";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const FHIR_CALL: &str = "fhir_call";
    pub const RATE_LIMITED: &str = "rate_limited";
}

impl Metric {
    pub fn data_point(&self) -> DataPoint {
        let (index, detail, extra) = match self {
            Metric::TokenIssued { grant_type } => (names::TOKEN_ISSUED, grant_type.to_string(), None),
            Metric::LoginFailed { route } => (names::LOGIN_FAILED, route_name(*route), None),
            Metric::FhirCall { interaction, status } => (names::FHIR_CALL, interaction.to_string(), Some(status.to_string())),
            Metric::RateLimited { endpoint, scope } => (names::RATE_LIMITED, endpoint.name().to_owned(), Some(scope.name().to_owned())),
        };
        let mut blobs = vec![index.to_owned(), detail];
        blobs.extend(extra);
        DataPoint { index, blobs, doubles: vec![1.0] }
    }
}

/// The events a finished request counts for.
pub fn metrics(route: Route, status: u16, notes: &Notes) -> Vec<Metric> {
    if let Some((endpoint, scope)) = notes.rate_limited {
        return vec![Metric::RateLimited { endpoint, scope }];
    }
    match route {
        Route::Token if status == 200 => vec![Metric::TokenIssued { grant_type: notes.grant_type.unwrap_or("other") }],
        // The sign-in forms answer a refused password with 401 and a locked account with 429
        // (`signin::password::PasswordCheck::refusal`).
        Route::Login | Route::PortalLogin | Route::ManageLogin if matches!(status, 401 | 429) => vec![Metric::LoginFailed { route }],
        Route::Fhir => notes.interaction.map(|interaction| vec![Metric::FhirCall { interaction, status }]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// An endpoint behind an edge rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The sign-in forms: `/auth/login`, `/auth/portal/login`, `/auth/manage/login`.
    Login,
    /// `/auth/token`.
    Token,
    /// `/auth/register` and `/auth/register/{client_id}`.
    Registration,
}

/// What a limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The client's address (`CF-Connecting-IP`).
    Ip,
    /// The client id the request names.
    Client,
}

impl LimitScope {
    pub fn name(self) -> &'static str {
        match self {
            LimitScope::Ip => "ip",
            LimitScope::Client => "client",
        }
    }
}

/// The `Retry-After` of a refusal when `RATE_LIMIT_PERIOD` is not set: the longest period a
/// rate-limiting binding can have.
pub const DEFAULT_PERIOD_SECS: u32 = 60;

/// The words of the sign-in forms' refusal.
pub fn login_refusal(retry_after: u32) -> String {
    format!("Too many sign-in attempts from your network. Try again in {retry_after} seconds.")
}

impl Limited {
    /// The endpoint a request goes to, if it is limited (the forms only when posted).
    pub fn for_route(route: Route, method: &str) -> Option<Limited> {
        match route {
            Route::Login | Route::PortalLogin | Route::ManageLogin if method == "POST" => Some(Limited::Login),
            Route::Token => Some(Limited::Token),
            Route::Register | Route::RegisteredClient => Some(Limited::Registration),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Limited::Login => "login",
            Limited::Token => "token",
            Limited::Registration => "registration",
        }
    }

    /// The rate-limiting binding (wrangler.toml `[[ratelimits]]`) of this endpoint and scope,
    /// if the scope applies. A binding the Worker does not have is no limit.
    pub fn binding(self, scope: LimitScope) -> Option<&'static str> {
        match (self, scope) {
            (Limited::Login, LimitScope::Ip) => Some("RATE_LIMIT_LOGIN_IP"),
            // The forms are posted by users' browsers, not by clients, and each username is
            // throttled by its account already (`accounts`): by address only.
            (Limited::Login, LimitScope::Client) => None,
            (Limited::Token, LimitScope::Ip) => Some("RATE_LIMIT_TOKEN_IP"),
            (Limited::Token, LimitScope::Client) => Some("RATE_LIMIT_TOKEN_CLIENT"),
            (Limited::Registration, LimitScope::Ip) => Some("RATE_LIMIT_REGISTRATION_IP"),
            (Limited::Registration, LimitScope::Client) => Some("RATE_LIMIT_REGISTRATION_CLIENT"),
        }
    }

    /// The OAuth error of a refused token or registration request (429 with `Retry-After`).
    /// Neither RFC 6749 §5.2 nor RFC 7591 §3.2.2 has a code for it; `temporarily_unavailable`
    /// is RFC 6749's (§4.1.2.1) for a server that cannot answer now and will later, which is
    /// what a client should do: wait `Retry-After` seconds and try again.
    pub fn oauth_refusal(self, scope: LimitScope, retry_after: u32) -> OAuthError {
        let who = match scope {
            LimitScope::Ip => "this address",
            LimitScope::Client => "this client",
        };
        OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, format!("too many {} requests from {who}; retry after {retry_after} seconds", self.name()))
    }
}

/// The status of every rate-limit refusal (RFC 6585 §4).
pub const TOO_MANY_REQUESTS: u16 = 429;

/// The key a limit counts an address under. An IPv6 address counts by its /64 (one subscriber
/// usually holds a whole /64, so the single address would be trivial to change); IPv4 by the
/// address. An address that does not parse (the header is missing outside Cloudflare's edge)
/// counts as `unknown`.
pub fn ip_key(ip: Option<&str>) -> String {
    match ip.map(str::trim).and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}

/// The key a limit counts a client under (client ids are the client's own words: cut, so a
/// huge one costs nothing).
pub fn client_key(client_id: &str) -> String {
    cut(client_id)
}

/// `RATE_LIMIT_PERIOD` (seconds): the period the bindings count over, sent as `Retry-After`.
/// A binding's period is 10 or 60; anything else falls back to [`DEFAULT_PERIOD_SECS`].
pub fn retry_after(period_var: Option<&str>) -> u32 {
    match period_var.map(str::trim) {
        Some("10") => 10,
        _ => DEFAULT_PERIOD_SECS,
    }
}

/// The client a token, introspection or revocation form names: `client_id` (form or Basic),
/// else the `iss` of its `client_assertion` (RFC 7523 §3). Unverified: fit for a log line and a
/// limit's key, never for a decision.
pub fn named_client(post: &crate::oauth::FormPost) -> Option<String> {
    let pairs = post.form.as_ref().ok()?;
    match crate::oauth::request::parse_client_auth(pairs, post.authorization.as_deref()).ok()? {
        crate::oauth::request::ClientAuth::Assertion { client_id: None, assertion } => crate::assertions::claimed_client(&assertion).ok(),
        auth => auth.client_id().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::FormPost;

    #[test]
    fn the_log_line_has_its_fields_and_nothing_else() {
        let notes = Notes { client_id: Some("lab-viewer".into()), grant_type: Some("authorization_code"), ..Notes::default() };
        let line = RequestLog::new("8f2c3a-AMS", "POST", Route::Token, 200, 12, &notes).line();
        assert_eq!(
            line,
            r#"{"msg":"request","request_id":"8f2c3a-AMS","method":"POST","route":"Token","status":200,"duration_ms":12,"client_id":"lab-viewer"}"#
        );
        let fhir = Notes { client_id: Some("app".into()), interaction: Some("read"), ..Notes::default() };
        let value: serde_json::Value = serde_json::from_str(&RequestLog::new("r1", "GET", Route::Fhir, 200, 3, &fhir).line()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"msg":"request","request_id":"r1","method":"GET","route":"Fhir","status":200,"duration_ms":3,"client_id":"app","fhir":"read"})
        );
        let limited = Notes { rate_limited: Some((Limited::Token, LimitScope::Client)), ..Notes::default() };
        assert!(RequestLog::new("r2", "POST", Route::Token, 429, 0, &limited).line().ends_with(r#""rate_limited":"token:client"}"#));
    }

    #[test]
    fn the_log_line_repeats_no_arbitrary_input() {
        let notes = Notes { client_id: Some("x".repeat(1000) + "\n\"}"), ..Notes::default() };
        let log = RequestLog::new("r", "BREW\n", Route::NotFound, 404, 0, &notes);
        assert_eq!(log.method, "OTHER");
        assert_eq!(log.client_id.as_ref().map(String::len), Some(MAX_ID_LEN));
        let line = log.line();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap()["route"], "NotFound");
    }

    #[test]
    fn the_request_id_is_cf_ray_when_well_formed() {
        assert_eq!(request_id(Some("8f2c3a1b2c3d4e5f-AMS"), || "random".into()), "8f2c3a1b2c3d4e5f-AMS");
        assert_eq!(request_id(None, || "random".into()), "random");
        assert_eq!(request_id(Some(""), || "random".into()), "random");
        assert_eq!(request_id(Some("a b"), || "random".into()), "random");
        assert_eq!(request_id(Some(&"a".repeat(65)), || "random".into()), "random");
    }

    #[test]
    fn counts_tokens_failed_logins_fhir_calls_and_refusals() {
        let token = Notes { grant_type: Some(grant_kind(Some("refresh_token"))), ..Notes::default() };
        assert_eq!(metrics(Route::Token, 200, &token), vec![Metric::TokenIssued { grant_type: "refresh_token" }]);
        assert_eq!(metrics(Route::Token, 400, &token), vec![]);
        assert_eq!(metrics(Route::Login, 401, &Notes::default()), vec![Metric::LoginFailed { route: Route::Login }]);
        assert_eq!(metrics(Route::ManageLogin, 429, &Notes::default()), vec![Metric::LoginFailed { route: Route::ManageLogin }]);
        assert_eq!(metrics(Route::PortalLogin, 303, &Notes::default()), vec![]);
        assert_eq!(metrics(Route::Login, 400, &Notes::default()), vec![], "a form without credentials is no failed login");
        let fhir = Notes { interaction: Some("search-type"), ..Notes::default() };
        assert_eq!(metrics(Route::Fhir, 200, &fhir), vec![Metric::FhirCall { interaction: "search-type", status: 200 }]);
        assert_eq!(metrics(Route::Fhir, 404, &Notes::default()), vec![], "not an interaction");
        let limited = Notes { rate_limited: Some((Limited::Login, LimitScope::Ip)), ..Notes::default() };
        assert_eq!(metrics(Route::Login, 429, &limited), vec![Metric::RateLimited { endpoint: Limited::Login, scope: LimitScope::Ip }]);
        assert_eq!(metrics(Route::Health, 200, &Notes::default()), vec![]);
    }

    #[test]
    fn data_points_have_the_documented_shape() {
        let point = Metric::TokenIssued { grant_type: "client_credentials" }.data_point();
        assert_eq!(point, DataPoint { index: "token_issued", blobs: vec!["token_issued".into(), "client_credentials".into()], doubles: vec![1.0] });
        let point = Metric::FhirCall { interaction: "read", status: 404 }.data_point();
        assert_eq!(point.blobs, vec!["fhir_call", "read", "404"]);
        assert_eq!(Metric::LoginFailed { route: Route::PortalLogin }.data_point().blobs, vec!["login_failed", "PortalLogin"]);
        let point = Metric::RateLimited { endpoint: Limited::Registration, scope: LimitScope::Ip }.data_point();
        assert_eq!((point.index, point.blobs), ("rate_limited", vec!["rate_limited".to_owned(), "registration".into(), "ip".into()]));
    }

    #[test]
    fn grant_types_and_interactions_have_closed_names() {
        assert_eq!(grant_kind(Some("authorization_code")), "authorization_code");
        assert_eq!(grant_kind(Some("urn:anything")), "other");
        assert_eq!(grant_kind(None), "other");
        let read = Interaction::parse("GET", "/Patient/p1").unwrap();
        assert_eq!(interaction_name(&read), "read");
        assert_eq!(interaction_name(&Interaction::parse("GET", "/Observation").unwrap()), "search-type");
        assert_eq!(interaction_name(&Interaction::parse("POST", "/Observation").unwrap()), "create");
    }

    #[test]
    fn limited_endpoints_and_their_bindings() {
        assert_eq!(Limited::for_route(Route::Login, "POST"), Some(Limited::Login));
        assert_eq!(Limited::for_route(Route::PortalLogin, "POST"), Some(Limited::Login));
        assert_eq!(Limited::for_route(Route::ManageLogin, "POST"), Some(Limited::Login));
        assert_eq!(Limited::for_route(Route::Token, "POST"), Some(Limited::Token));
        assert_eq!(Limited::for_route(Route::Register, "POST"), Some(Limited::Registration));
        assert_eq!(Limited::for_route(Route::RegisteredClient, "GET"), Some(Limited::Registration));
        assert_eq!(Limited::for_route(Route::Authorize, "GET"), None);
        assert_eq!(Limited::for_route(Route::Fhir, "GET"), None);
        assert_eq!(Limited::Token.binding(LimitScope::Client), Some("RATE_LIMIT_TOKEN_CLIENT"));
        assert_eq!(Limited::Login.binding(LimitScope::Ip), Some("RATE_LIMIT_LOGIN_IP"));
        assert_eq!(Limited::Login.binding(LimitScope::Client), None);
        let error = Limited::Token.oauth_refusal(LimitScope::Ip, 10);
        assert_eq!(error.error.as_str(), "temporarily_unavailable");
        assert_eq!(error.error_description.as_deref(), Some("too many token requests from this address; retry after 10 seconds"));
        assert_eq!(login_refusal(60), "Too many sign-in attempts from your network. Try again in 60 seconds.");
    }

    #[test]
    fn addresses_count_by_ipv4_or_ipv6_slash_64() {
        assert_eq!(ip_key(Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(ip_key(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(ip_key(Some("2001:db8:1:2:bbbb::7")), ip_key(Some("2001:db8:1:2:aaaa::1")));
        assert_eq!(ip_key(Some("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(ip_key(Some("not an address")), "unknown");
        assert_eq!(ip_key(None), "unknown");
        assert_eq!(client_key(&"c".repeat(500)).len(), MAX_ID_LEN);
    }

    #[test]
    fn retry_after_follows_the_configured_period() {
        assert_eq!(retry_after(Some("10")), 10);
        assert_eq!(retry_after(Some("60")), 60);
        assert_eq!(retry_after(Some("5")), 60);
        assert_eq!(retry_after(None), 60);
    }

    #[test]
    fn the_named_client_comes_from_the_form_basic_or_assertion() {
        let post = |pairs: &[(&str, &str)], authorization: Option<&str>| FormPost {
            form: Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            authorization: authorization.map(str::to_owned),
        };
        assert_eq!(named_client(&post(&[("grant_type", "refresh_token"), ("client_id", "app")], None)).as_deref(), Some("app"));
        // "confidential:s3cret" in Basic.
        assert_eq!(named_client(&post(&[("grant_type", "client_credentials")], Some("Basic Y29uZmlkZW50aWFsOnMzY3JldA=="))).as_deref(), Some("confidential"));
        assert_eq!(named_client(&post(&[("grant_type", "refresh_token")], None)), None);
        assert_eq!(named_client(&FormPost { form: Err(crate::oauth::FormProblem::NotAForm), authorization: None }), None);
    }
}
