//! The route table: every path the Worker answers, one line each. The Worker only maps a
//! [`Route`] to its handler; deciding what a path means is done here, natively tested.

use smart_protocol::urls::AUTH_PREFIX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    OpenIdConfiguration,
    Jwks,
    SmartConfiguration,
    Metadata,
    Token,
    Introspect,
    Revoke,
    Userinfo,
    /// The authorization endpoint (GET and POST).
    Authorize,
    /// The sign-in's steps page: the next page of a pending authorization (`?interaction=…`,
    /// the grant id).
    SignIn,
    Login,
    /// Ends the browser's login session.
    Logout,
    Pick,
    Consent,
    /// The user's management page (`management_endpoint`).
    Manage,
    ManageLogin,
    ManageRevoke,
    AuthStylesheet,
    /// The EHR-side API that creates launch contexts.
    EhrLaunch,
    /// `/ehr/`: the EHR launch portal's public address (redirects to [`Route::Portal`]).
    EhrHome,
    /// The EHR launch portal (below `/auth`, where the login session cookie is sent).
    Portal,
    PortalLogin,
    /// Creates a launch from the portal (a form POST with the session-bound CSRF token).
    PortalLaunch,
    /// RFC 7591 client registration endpoint (`POST /auth/register`).
    Register,
    /// RFC 7592 client configuration endpoint (`/auth/register/{client_id}`).
    RegisteredClient,
    /// The User-access Brands Bundle (SMART App Launch 2.2), when configured.
    UserAccessBrands,
    AdminSettings,
    AdminClients,
    /// `/admin/clients/{client_id}`.
    AdminClient,
    /// `/admin/clients/{client_id}/simulate`: the test client's next failure on purpose
    /// (`platform::simulate`).
    AdminClientSimulate,
    AdminUsers,
    /// `/admin/users/{username}`.
    AdminUser,
    AdminFhirBundle,
    /// How many patients are loaded (for `npm start`'s "unless already loaded").
    AdminFhirStatus,
    /// `POST /admin/fhir/reindex`: starts the background re-index of every partition.
    AdminFhirReindex,
    AdminRotateKeys,
    /// `GET /admin/backup[?cursor=…]`: one page of the NDJSON backup (`crate::backup`).
    AdminBackup,
    /// `POST /admin/restore`: one page of a backup, into an empty deployment.
    AdminRestore,
    /// Signs a caller-supplied claims set; only when `DEV_ROUTES` is on (tests, benchmarks).
    DevSign,
    /// Derives password hashes; only with `DEV_ROUTES` (benchmarks).
    DevPbkdf2,
    /// A bare Durable Object point read (the FHIR benchmark's ceiling); only with `DEV_ROUTES`.
    DevDoRead,
    /// Panics on purpose: the test that the Worker's entry restarts the wasm instance after a
    /// panic; only with `DEV_ROUTES`.
    DevPanic,
    /// Everything else below the FHIR base: the RESTful API (`fhir::rest::Interaction`).
    Fhir,
    /// Bulk Data `$export`: kick-off, status, files (`fhir::bulk::BulkPath`).
    BulkExport,
    /// Nothing here (answered with a JSON error).
    NotFound,
}

/// Which kind of error body a route's failures are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    OAuth,
    Fhir,
}

impl Route {
    /// Resolves a request path against the FHIR base path (`/fhir`).
    pub fn resolve(path: &str, fhir_path: &str) -> Route {
        if let Some(rest) = path.strip_prefix(fhir_path).filter(|rest| rest.is_empty() || rest.starts_with('/')) {
            return match rest {
                "/.well-known/smart-configuration" => Route::SmartConfiguration,
                "/metadata" => Route::Metadata,
                _ if crate::fhir::bulk::BulkPath::parse(rest).is_some() => Route::BulkExport,
                _ => Route::Fhir,
            };
        }
        if let Some(rest) = path.strip_prefix(AUTH_PREFIX) {
            if Self::path_param(rest, "/register/").is_some() {
                return Route::RegisteredClient;
            }
            return match rest {
                "/register" => Route::Register,
                "/token" => Route::Token,
                "/introspect" => Route::Introspect,
                "/revoke" => Route::Revoke,
                "/userinfo" => Route::Userinfo,
                "/authorize" => Route::Authorize,
                "/sign-in" => Route::SignIn,
                "/login" => Route::Login,
                "/logout" => Route::Logout,
                "/pick" => Route::Pick,
                "/consent" => Route::Consent,
                "/manage" => Route::Manage,
                "/manage/login" => Route::ManageLogin,
                "/manage/revoke" => Route::ManageRevoke,
                "/assets/auth.css" => Route::AuthStylesheet,
                "/ehr/launch" => Route::EhrLaunch,
                "/portal" => Route::Portal,
                "/portal/login" => Route::PortalLogin,
                "/portal/launch" => Route::PortalLaunch,
                _ => Route::NotFound,
            };
        }
        match path {
            "/health" => Route::Health,
            "/ehr" | "/ehr/" => Route::EhrHome,
            "/.well-known/openid-configuration" => Route::OpenIdConfiguration,
            "/.well-known/jwks.json" => Route::Jwks,
            "/user-access-brands.json" => Route::UserAccessBrands,
            "/admin/settings" => Route::AdminSettings,
            "/admin/keys/rotate" => Route::AdminRotateKeys,
            "/admin/clients" => Route::AdminClients,
            "/admin/users" => Route::AdminUsers,
            "/admin/fhir/bundle" => Route::AdminFhirBundle,
            "/admin/fhir/status" => Route::AdminFhirStatus,
            "/admin/fhir/reindex" => Route::AdminFhirReindex,
            "/admin/backup" => Route::AdminBackup,
            "/admin/restore" => Route::AdminRestore,
            _ if Self::path_param(path, "/admin/clients/").is_some() => Route::AdminClient,
            _ if Self::simulated_client(path).is_some() => Route::AdminClientSimulate,
            _ if Self::path_param(path, "/admin/users/").is_some() => Route::AdminUser,
            "/_dev/sign" => Route::DevSign,
            "/_dev/pbkdf2" => Route::DevPbkdf2,
            "/_dev/do-read" => Route::DevDoRead,
            "/_dev/panic" => Route::DevPanic,
            _ => Route::NotFound,
        }
    }

    /// The client id of `/admin/clients/{client_id}/simulate`.
    pub fn simulated_client(path: &str) -> Option<&str> {
        Self::path_param(path.strip_suffix("/simulate")?, "/admin/clients/")
    }

    /// The last path segment after `prefix`, when it is one non-empty segment.
    pub fn path_param<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
        path.strip_prefix(prefix).filter(|rest| !rest.is_empty() && !rest.contains('/'))
    }

    /// The methods the route answers (besides `OPTIONS` for CORS preflight where allowed).
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Route::Token
            | Route::Introspect
            | Route::Revoke
            | Route::AdminRotateKeys
            | Route::DevSign
            | Route::DevPbkdf2
            | Route::DevPanic
            | Route::Login
            | Route::Logout
            | Route::Pick
            | Route::Consent
            | Route::ManageLogin
            | Route::ManageRevoke
            | Route::EhrLaunch
            | Route::PortalLogin
            | Route::PortalLaunch
            | Route::AdminClients
            | Route::Register
            | Route::AdminUsers
            | Route::AdminFhirBundle
            | Route::AdminFhirReindex
            | Route::AdminRestore => &["POST"],
            Route::Authorize | Route::Userinfo => &["GET", "POST"],
            Route::AdminSettings => &["GET", "PUT"],
            Route::AdminClient | Route::RegisteredClient => &["GET", "PUT", "DELETE"],
            Route::AdminUser => &["GET", "PUT"],
            Route::AdminClientSimulate => &["GET", "PUT", "DELETE"],
            Route::NotFound => &[],
            Route::Fhir => &["GET", "POST", "PUT", "PATCH", "DELETE"],
            Route::BulkExport => &["GET", "POST", "DELETE"],
            _ => &["GET", "HEAD"],
        }
    }

    /// Development-only routes (tests and benchmarks).
    pub fn is_dev(self) -> bool {
        matches!(self, Route::DevSign | Route::DevPbkdf2 | Route::DevDoRead | Route::DevPanic)
    }

    /// Routes a browser navigates to (HTML answers): their refusals are error pages.
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Route::Authorize
                | Route::SignIn
                | Route::Login
                | Route::Logout
                | Route::Pick
                | Route::Consent
                | Route::Manage
                | Route::ManageLogin
                | Route::ManageRevoke
                | Route::EhrHome
                | Route::Portal
                | Route::PortalLogin
                | Route::PortalLaunch
        )
    }

    pub fn error_style(self) -> ErrorStyle {
        match self {
            Route::Metadata | Route::Fhir | Route::BulkExport => ErrorStyle::Fhir,
            _ => ErrorStyle::OAuth,
        }
    }

    /// Whether browsers on any origin may call the route (CORS). Discovery, keys and FHIR
    /// metadata are public documents; the token endpoint serves browser-based public clients.
    /// Admin and development routes are never cross-origin.
    pub fn cors_public(self) -> bool {
        matches!(
            self,
            Route::Health
                | Route::OpenIdConfiguration
                | Route::Jwks
                | Route::SmartConfiguration
                | Route::Metadata
                | Route::Token
                | Route::Revoke
                | Route::Userinfo
                | Route::Register
                | Route::RegisteredClient
                | Route::UserAccessBrands
                | Route::Fhir
        )
    }
}

/// A configuration the Worker must not serve with, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconfiguration {
    /// `DEV_ROUTES=true` on a non-loopback issuer.
    DevRoutesDeployed,
    /// `PUBLIC_BASE_URL` empty on a non-loopback host.
    NoPublicBaseUrl,
}

impl Misconfiguration {
    /// The message of the answer and of the log line: what is wrong and how to fix it.
    pub fn reason(self) -> &'static str {
        match self {
            Misconfiguration::DevRoutesDeployed => {
                "this deployment is misconfigured: DEV_ROUTES=true is for local development only and is refused unless the issuer (PUBLIC_BASE_URL, or the request's origin) is on loopback; set DEV_ROUTES to false"
            }
            Misconfiguration::NoPublicBaseUrl => {
                "this deployment is misconfigured: PUBLIC_BASE_URL is empty, so the OAuth issuer would follow each request's Host header (a workers.dev name and a custom domain would be two issuers); set PUBLIC_BASE_URL to the server's public https origin (npm run deploy -- --env <name> --url https://…, or PUBLIC_BASE_URL in the environment's vars in wrangler.toml) and deploy again"
            }
        }
    }

    /// The heading of the error page browsers are shown.
    pub fn title(self) -> &'static str {
        "This server is not configured yet"
    }
}

/// Whether this configuration must refuse `route`, and why.
///
/// A non-loopback issuer means a deployment. With `PUBLIC_BASE_URL` empty the issuer is the
/// request's own origin, so a plain-http request or any Host header counts too; on loopback
/// (`127.0.0.1`, `localhost`, `[::1]`) it is local development, where following the request is
/// what `npm start` and the tests want.
///
/// - `DEV_ROUTES=true` there refuses every request, `/health` included: the `/_dev/*` routes (an
///   unauthenticated partition read, a signer for arbitrary claims, a deliberate panic) would
///   hand out tokens to anyone, so nothing may look healthy.
/// - `PUBLIC_BASE_URL` empty there refuses everything but [`Route::Health`]: tokens, ID tokens
///   and discovery documents would name whichever host the caller used (a `*.workers.dev` name
///   and a custom domain would be two issuers; a forged Host another). `/health` names no issuer
///   and stays served, so that a fresh deployment can be checked to be up while its URL is
///   being set, and uptime probes keep working.
pub fn refuse_configuration(dev_routes: bool, public_base_url_set: bool, issuer: &str, request_url: &str, route: Route) -> Option<Misconfiguration> {
    // Local development is an issuer AND a request on loopback: a deployment whose
    // PUBLIC_BASE_URL was copied from a local setup (http://localhost:8787) is still reached
    // on its real host, and must not serve DEV_ROUTES there.
    if is_loopback(issuer) && is_loopback(request_url) {
        None
    } else if dev_routes {
        Some(Misconfiguration::DevRoutesDeployed)
    } else if !public_base_url_set && route != Route::Health {
        Some(Misconfiguration::NoPublicBaseUrl)
    } else {
        None
    }
}

/// Whether the URL's host is a loopback address (or `localhost`).
fn is_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_table() {
        let cases = [
            ("/fhir/.well-known/smart-configuration", Route::SmartConfiguration),
            ("/fhir/metadata", Route::Metadata),
            ("/fhir", Route::Fhir),
            ("/fhir/Patient/1", Route::Fhir),
            ("/fhir/$export", Route::BulkExport),
            ("/fhir/Group/g1/$export", Route::BulkExport),
            ("/fhir/bulk/j1/Patient-0.ndjson", Route::BulkExport),
            ("/fhir/Patient/$everything", Route::Fhir),
            ("/fhirx/metadata", Route::NotFound),
            ("/.well-known/openid-configuration", Route::OpenIdConfiguration),
            ("/.well-known/jwks.json", Route::Jwks),
            ("/auth/token", Route::Token),
            ("/auth/nothing", Route::NotFound),
            ("/health", Route::Health),
            ("/admin/settings", Route::AdminSettings),
            ("/auth/authorize", Route::Authorize),
            ("/auth/sign-in", Route::SignIn),
            ("/auth/interaction", Route::NotFound),
            ("/auth/ehr/launch", Route::EhrLaunch),
            ("/admin/clients", Route::AdminClients),
            ("/admin/clients/lab-viewer", Route::AdminClient),
            ("/admin/clients/", Route::NotFound),
            ("/admin/clients/a/b", Route::NotFound),
            ("/admin/clients/lab-viewer/simulate", Route::AdminClientSimulate),
            ("/admin/clients//simulate", Route::NotFound),
            ("/admin/clients/a/b/simulate", Route::NotFound),
            ("/admin/users/dr.smith", Route::AdminUser),
            ("/admin/backup", Route::AdminBackup),
            ("/admin/restore", Route::AdminRestore),
            ("/ehr/", Route::EhrHome),
            ("/ehr", Route::EhrHome),
            ("/ehr/x", Route::NotFound),
            ("/auth/portal", Route::Portal),
            ("/auth/portal/login", Route::PortalLogin),
            ("/auth/portal/launch", Route::PortalLaunch),
            ("/auth/register", Route::Register),
            ("/auth/register/abc-1", Route::RegisteredClient),
            ("/auth/register/", Route::NotFound),
            ("/auth/register/a/b", Route::NotFound),
            ("/user-access-brands.json", Route::UserAccessBrands),
            ("/", Route::NotFound),
        ];
        for (path, route) in cases {
            assert_eq!(Route::resolve(path, "/fhir"), route, "{path}");
        }
    }

    #[test]
    fn follows_a_configured_fhir_base() {
        assert_eq!(Route::resolve("/r4/metadata", "/r4"), Route::Metadata);
        assert_eq!(Route::resolve("/fhir/metadata", "/r4"), Route::NotFound);
    }

    #[test]
    fn admin_and_dev_routes_are_never_cross_origin() {
        for route in [
            Route::AdminSettings,
            Route::AdminRotateKeys,
            Route::DevSign,
            Route::AdminClient,
            Route::AdminClientSimulate,
            Route::AdminBackup,
            Route::AdminRestore,
            Route::Login,
            Route::Consent,
            Route::EhrLaunch,
            Route::Portal,
            Route::PortalLaunch,
        ] {
            assert!(!route.cors_public());
        }
    }

    #[test]
    fn dev_routes_are_refused_unless_the_issuer_is_on_loopback() {
        let refused = |issuer: &str, route| refuse_configuration(true, true, issuer, issuer, route);
        assert_eq!(refused("https://ehr.example", Route::Token), Some(Misconfiguration::DevRoutesDeployed));
        assert_eq!(refused("https://ehr.example", Route::Health), Some(Misconfiguration::DevRoutesDeployed), "nothing looks healthy");
        assert!(refused("http://ehr.example", Route::Fhir).is_some(), "a plain-http request to a deployment");
        assert!(refused("http://smart-edge.example.workers.dev:80", Route::Jwks).is_some());
        assert!(refused("http://127.0.0.1.example", Route::Jwks).is_some(), "a name that only starts like loopback");
        assert!(refused("http://127.0.0.1:8787", Route::DevSign).is_none());
        assert!(refused("http://localhost:8787", Route::DevSign).is_none());
        assert!(refused("http://[::1]:8787", Route::DevSign).is_none());
        assert!(refuse_configuration(false, true, "https://ehr.example", "https://ehr.example", Route::Token).is_none());
        assert!(refuse_configuration(false, true, "http://ehr.example", "http://ehr.example", Route::Token).is_none());
        // Review finding: a loopback PUBLIC_BASE_URL on a deployment reached at its real host.
        assert_eq!(
            refuse_configuration(true, true, "http://localhost:8787", "https://ehr.example/_dev/sign", Route::DevSign),
            Some(Misconfiguration::DevRoutesDeployed)
        );
        assert!(refuse_configuration(false, true, "http://localhost:8787", "https://ehr.example/fhir/metadata", Route::Metadata).is_none());
        // Both wrong: the DEV_ROUTES reason comes first (it refuses /health too).
        assert_eq!(refuse_configuration(true, false, "https://ehr.example", "https://ehr.example", Route::Health), Some(Misconfiguration::DevRoutesDeployed));
    }

    #[test]
    fn an_empty_public_base_url_is_refused_on_a_deployed_host_except_health() {
        let refused = |issuer: &str, route| refuse_configuration(false, false, issuer, issuer, route);
        for route in [
            Route::OpenIdConfiguration,
            Route::Jwks,
            Route::SmartConfiguration,
            Route::Metadata,
            Route::Token,
            Route::Authorize,
            Route::Login,
            Route::Manage,
            Route::Portal,
            Route::EhrHome,
            Route::EhrLaunch,
            Route::Register,
            Route::AdminSettings,
            Route::Fhir,
            Route::BulkExport,
            Route::NotFound,
        ] {
            assert_eq!(refused("https://smart-edge.example.workers.dev", route), Some(Misconfiguration::NoPublicBaseUrl), "{route:?}");
            assert_eq!(refused("http://ehr.example.org", route), Some(Misconfiguration::NoPublicBaseUrl), "{route:?}");
        }
        assert_eq!(refused("https://ehr.example.org", Route::Health), None, "a deploy can be checked");
        // Local development follows the request, as `npm start` and the tests do.
        for issuer in ["http://127.0.0.1:8787", "http://localhost:8787", "http://[::1]:8787", "http://127.0.0.2:9000"] {
            assert_eq!(refused(issuer, Route::Token), None, "{issuer}");
            assert_eq!(refused(issuer, Route::Authorize), None, "{issuer}");
        }
        // Set, any host: served (the issuer is PUBLIC_BASE_URL, whatever the request's Host).
        assert_eq!(refuse_configuration(false, true, "https://ehr.example.org", "https://ehr.example.org", Route::Token), None);
        assert!(Misconfiguration::NoPublicBaseUrl.reason().contains("set PUBLIC_BASE_URL"));
    }

    #[test]
    fn pages_are_the_browser_routes() {
        for route in [Route::Authorize, Route::SignIn, Route::Login, Route::Consent, Route::Manage, Route::Portal, Route::EhrHome] {
            assert!(route.is_page(), "{route:?}");
        }
        for route in [Route::Token, Route::Jwks, Route::Fhir, Route::AdminSettings, Route::EhrLaunch, Route::Health] {
            assert!(!route.is_page(), "{route:?}");
        }
    }
}
