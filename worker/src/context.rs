//! Per-request context read from the Worker's environment (vars and secrets).

use crate::http::AppError;
use platform::ops::Notes;
use smart_protocol::ServerUrls;
use std::cell::RefCell;
use worker::{Env, Request};

/// Variables (wrangler.toml `[vars]`) and secrets the Worker reads.
pub mod vars {
    /// Public origin (optionally with a path prefix) the server is reached under. When unset,
    /// the request's own origin is used: fine for local development, but set it in production
    /// so the issuer never depends on a request header.
    pub const PUBLIC_BASE_URL: &str = "PUBLIC_BASE_URL";
    /// FHIR base path, `/fhir` by default.
    pub const FHIR_BASE_PATH: &str = "FHIR_BASE_PATH";
    /// `"true"` turns on the `/_dev/*` routes (tests and benchmarks only).
    pub const DEV_ROUTES: &str = "DEV_ROUTES";
    /// Secret: bearer token of the admin API.
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    /// Secret: `{"keys":[private JWK, …]}`; when unset, the key vault generates keys.
    pub const SIGNING_KEYS: &str = "SIGNING_KEYS";
}

pub struct AppContext {
    pub env: Env,
    pub urls: ServerUrls,
    pub dev_routes: bool,
    /// What the handlers learned for the request's log line and counters (`crate::ops`).
    pub notes: RefCell<Notes>,
}

impl AppContext {
    pub fn new(req: &Request, env: Env) -> Result<Self, AppError> {
        let base = match text_var(&env, vars::PUBLIC_BASE_URL) {
            Some(base) => base,
            None => req.url().map_err(AppError::internal)?.origin().ascii_serialization(),
        };
        let fhir_path = text_var(&env, vars::FHIR_BASE_PATH).unwrap_or_else(|| "/fhir".to_owned());
        let urls = ServerUrls::new(&base, &fhir_path).map_err(AppError::internal)?;
        let dev_routes = text_var(&env, vars::DEV_ROUTES).as_deref() == Some("true");
        Ok(Self { env, urls, dev_routes, notes: RefCell::default() })
    }

    /// A secret (or, in local development, a var of the same name).
    pub fn secret(&self, name: &str) -> Option<String> {
        self.env.secret(name).ok().map(|s| s.to_string()).filter(|s| !s.is_empty())
    }
}

fn text_var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.is_empty())
}
